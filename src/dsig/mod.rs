//! Owns XMLDSig signing and verification of one same-document Reference (SMEV 3 profile: exc-c14n, SMEV transform, enveloped-signature; RSA/ECDSA via OpenSSL, GOST via its engine), keys and trust.
//! Must not parse transport framing or untrusted bytes itself (callers hand in documents from `xml::parse`), nor accept a Reference that resolves to anything but exactly one expected element.

pub mod algorithms;
pub mod gost;
pub mod keys;
mod sign;
pub mod smev;
pub mod tools;
mod verify;

pub use algorithms::{DSIG_NS, DigestAlg, DigestSink, KeyFamily, SignatureAlg};
pub use gost::{Crypto, GOST_UNAVAILABLE};
pub use keys::{
    KeyMaterial, TrustStore, certificates_from_bytes, load_certificates, load_private_key,
    private_key_from_bytes, public_key_from_bytes,
};
pub use sign::{
    SignOptions, SigningKey, insert_as_last_child, insert_signature, sign_element,
    signature_fragment,
};
pub use smev::{SignatureFault, sign_message, verify_message};
pub use verify::{
    Expect, KeySource, ReferenceCheck, Verified, VerifiedElement, check_reference, resolve_id,
    verify,
};

use crate::xml::c14n::C14nError;
use crate::xml::smev_transform::SmevTransformError;

/// Errors raised while signing or verifying.
#[derive(Debug, thiserror::Error)]
pub enum DsigError {
    #[error("unsupported algorithm `{0}`")]
    UnsupportedAlgorithm(String),
    #[error("GOST not available: install libengine-gost-openssl")]
    GostUnavailable,
    #[error("`{0}` is too weak to sign with (accepted for verification only)")]
    WeakAlgorithm(String),
    #[error("key: {0}")]
    Key(String),
    #[error("signature covers the wrong element: {0}")]
    WrongTarget(String),
    #[error("certificate is not valid now: {0}")]
    CertificateExpired(String),
    #[error("no ds:Signature where the signature belongs")]
    NoSignature,
    #[error("malformed signature: {0}")]
    Malformed(String),
    #[error("reference `{0}` resolves to no element")]
    ReferenceNotFound(String),
    #[error("reference `{id}` resolves to {count} elements (signature wrapping?)")]
    AmbiguousReference { id: String, count: usize },
    #[error("ds:SignedInfo holds {0} References; the profile expects exactly one")]
    ReferenceCount(usize),
    #[error("unsupported reference URI `{0}`")]
    UnsupportedUri(String),
    #[error("unsupported transform chain: {0}")]
    UnsupportedTransforms(String),
    #[error("digest of the referenced data does not match DigestValue")]
    DigestMismatch,
    #[error("SignatureValue does not verify")]
    BadSignature,
    #[error("no verification key: KeyInfo carries no X509Certificate")]
    NoKey,
    #[error("key does not fit the algorithm: {0}")]
    KeyMismatch(String),
    #[error("certificate not trusted: {0}")]
    Untrusted(String),
    #[error(transparent)]
    C14n(#[from] C14nError),
    #[error(transparent)]
    Smev(#[from] SmevTransformError),
    #[error("openssl: {0}")]
    Openssl(#[from] openssl::error::ErrorStack),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

fn malformed(what: impl Into<String>) -> DsigError {
    DsigError::Malformed(what.into())
}

/// Decodes base64 element content, ignoring whitespace (line breaks are common).
pub(crate) fn decode_base64(text: &str) -> Result<Vec<u8>, DsigError> {
    // Values without line breaks (what the node and most peers write) need no compact copy.
    let owned;
    let compact = if text.bytes().any(|b| b.is_ascii_whitespace()) {
        owned = text
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect::<String>();
        owned.as_str()
    } else {
        text
    };
    if compact.is_empty() {
        return Err(malformed("empty base64 value"));
    }
    openssl::base64::decode_block(compact).map_err(|_| malformed("invalid base64 value"))
}
