//! Owns the SMEV 3 profile over whole messages: signing an element by Id into its signature holder, verifying the signature in a holder against the element the node will process, the Reference options per key, and the SMEV fault each failure maps to.
//! Must not route, authorize or read business content, and must not hand out any element but the verified one.

use roxmltree::{Document, Node};

use super::DsigError;
use super::algorithms::{DSIG_NS, DigestAlg, SignatureAlg};
use super::keys::TrustStore;
use super::sign::{SignOptions, SigningKey, insert_signature, signature_fragment};
use super::verify::{Expect, KeySource, Verified, verify};
use crate::config::XmlLimits;
use crate::xml::scan::{self, ScanError};

impl SignOptions {
    /// The SMEV reference for `alg`: exclusive c14n then the SMEV transform, the signature in a
    /// separate holder element (not enveloped), and the digest of the signature's own family
    /// (Streebog-256/512 for GOST, SHA-256/384/512 otherwise).
    pub fn smev_for(alg: SignatureAlg) -> SignOptions {
        let digest = match alg {
            SignatureAlg::Gost2012_256 => DigestAlg::Gost256,
            SignatureAlg::Gost2012_512 => DigestAlg::Gost512,
            SignatureAlg::EcdsaSha384 | SignatureAlg::RsaSha384 | SignatureAlg::RsaPssSha384 => {
                DigestAlg::Sha384
            }
            SignatureAlg::EcdsaSha512 | SignatureAlg::RsaSha512 | SignatureAlg::RsaPssSha512 => {
                DigestAlg::Sha512
            }
            _ => DigestAlg::Sha256,
        };
        SignOptions {
            digest,
            smev_transform: true,
            enveloped: false,
        }
    }
}

/// Signs the element of `xml` whose `Id` is `id` (e.g. `SenderProvidedResponseData`) with the
/// SMEV profile for `key`, and returns `xml` with the `ds:Signature` appended inside the single
/// element named `holder` (namespace, local name; e.g. `CallerInformationSystemSignature`).
/// Nothing else in the text changes.
///
/// `xml` is read in one tree-less pass ([`crate::xml::scan`]) that refuses DTDs, undeclared
/// prefixes, unknown references and anything past `limits`, and digests the element as it goes
/// by: the node signs every answer it writes, and building a tree of its own output only to walk
/// one element of it once cost more than the rest of the XML work together.
pub fn sign_message(
    xml: &str,
    limits: &XmlLimits,
    id: &str,
    holder: (&str, &str),
    key: &SigningKey,
) -> Result<String, DsigError> {
    let opts = SignOptions::smev_for(key.algorithm());
    let sink = opts.digest.sink()?;
    let (sink, at) =
        scan::transform_for_signing(xml, limits, id, holder, sink).map_err(|e| match e {
            ScanError::IdNotFound(id) => DsigError::ReferenceNotFound(id),
            ScanError::IdAmbiguous { id, count } => DsigError::AmbiguousReference { id, count },
            ScanError::Transform(e) => DsigError::Smev(e),
            other => DsigError::Malformed(format!("document to sign: {other}")),
        })?;
    let fragment = signature_fragment(id, &sink.finish()?, key, &opts)?;
    insert_signature(xml, &at, &fragment)
}

/// Verifies the one `ds:Signature` child of `holder` (e.g. `CallerInformationSystemSignature`)
/// against `store`, requiring its single Reference to cover exactly `target` (e.g. the
/// `SenderProvidedRequestData` the node will process). The result's `element` is `target`.
pub fn verify_message<'a, 'i>(
    doc: &'a Document<'i>,
    target: Node<'a, 'i>,
    holder: Node<'a, 'i>,
    store: &TrustStore,
) -> Result<Verified<'a, 'i>, DsigError> {
    let mut signatures = holder
        .children()
        .filter(|n| n.has_tag_name((DSIG_NS, "Signature")));
    let signature = match (signatures.next(), signatures.next()) {
        (Some(s), None) => s,
        (None, _) => return Err(DsigError::NoSignature),
        _ => {
            return Err(DsigError::Malformed(
                "several ds:Signature elements in one holder".into(),
            ));
        }
    };
    verify(
        doc,
        signature,
        Expect::Element(target),
        &KeySource::Trusted(store),
    )
}

/// The SMEV `SignatureVerificationFault` reasons (faults 1.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureFault {
    PoorSoapEnvelopeFormat,
    NoSignatureFound,
    IncorrectSignatureTarget,
    SignatureIsInvalid,
    CertificateIsNotFound,
    CertificateIsExpired,
}

impl SignatureFault {
    /// The element name used in the SMEV fault.
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureFault::PoorSoapEnvelopeFormat => "PoorSOAPEnvelopeFormat",
            SignatureFault::NoSignatureFound => "NoSignatureFound",
            SignatureFault::IncorrectSignatureTarget => "IncorrectSignatureTarget",
            SignatureFault::SignatureIsInvalid => "SignatureIsInvalid",
            SignatureFault::CertificateIsNotFound => "CertificateIsNotFound",
            SignatureFault::CertificateIsExpired => "CertificateIsExpired",
        }
    }
}

impl DsigError {
    /// Which SMEV signature fault reports this failure to the sender.
    pub fn smev_fault(&self) -> SignatureFault {
        match self {
            DsigError::NoSignature => SignatureFault::NoSignatureFound,
            DsigError::Malformed(_) => SignatureFault::PoorSoapEnvelopeFormat,
            DsigError::WrongTarget(_)
            | DsigError::ReferenceNotFound(_)
            | DsigError::AmbiguousReference { .. }
            | DsigError::ReferenceCount(_)
            | DsigError::UnsupportedUri(_) => SignatureFault::IncorrectSignatureTarget,
            DsigError::NoKey | DsigError::Untrusted(_) => SignatureFault::CertificateIsNotFound,
            DsigError::CertificateExpired(_) => SignatureFault::CertificateIsExpired,
            DsigError::UnsupportedAlgorithm(_)
            | DsigError::GostUnavailable
            | DsigError::WeakAlgorithm(_)
            | DsigError::UnsupportedTransforms(_)
            | DsigError::DigestMismatch
            | DsigError::BadSignature
            | DsigError::KeyMismatch(_)
            | DsigError::Key(_)
            | DsigError::C14n(_)
            | DsigError::Smev(_)
            | DsigError::Openssl(_)
            | DsigError::Io(_) => SignatureFault::SignatureIsInvalid,
        }
    }
}
