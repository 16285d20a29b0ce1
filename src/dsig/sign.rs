//! Owns XMLDSig signing of one element by Id (exc-c14n SignedInfo, exc-c14n [+ SMEV transform] [+ enveloped] reference, X509 KeyInfo).
//! Must not rebuild or re-serialize the document: it returns a ds:Signature fragment and splices it into the original text.

use std::path::Path;

use openssl::ecdsa::EcdsaSig;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Padding;
use openssl::sign::{RsaPssSaltlen, Signer};
use openssl::x509::X509;
use roxmltree::{Document, Node};

use super::algorithms::{DSIG_NS, DigestAlg, ENVELOPED, SignatureAlg};
use super::gost::Crypto;
use super::keys::{certificate_key, load_certificates, load_private_key};
use super::{DsigError, malformed, verify::resolve_id};
use crate::xml::c14n::{self, EXC_C14N, Options, write_escaped_attr};
use crate::xml::smev_transform;

/// A signing key with its certificate, prepared once per node (not per message): the key is
/// parsed, checked against the certificate and the algorithm, and the certificate is kept
/// base64-encoded for KeyInfo.
pub struct SigningKey {
    key: PKey<Private>,
    alg: SignatureAlg,
    md: MessageDigest,
    cert: X509,
    cert_b64: String,
    /// ECDSA: byte length of r and s in the raw r||s form.
    ec_len: usize,
}

impl SigningKey {
    /// Checks that `key` fits `alg` (SHA-1 is refused: it is for verification only) and
    /// matches `cert`. GOST needs `crypto` to have the engine.
    pub fn new(
        key: PKey<Private>,
        cert: &X509,
        alg: SignatureAlg,
        crypto: Crypto,
    ) -> Result<Self, DsigError> {
        if alg.is_weak() {
            return Err(DsigError::WeakAlgorithm(alg.uri().to_owned()));
        }
        let md = alg.message_digest(&crypto)?;
        alg.check_key(&key)?;
        let ec_len = if alg.is_ecdsa() {
            (key.ec_key()?.group().degree() as usize).div_ceil(8)
        } else {
            0
        };
        if !certificate_key(cert, &crypto)?.public_eq(&key) {
            return Err(DsigError::KeyMismatch(
                "certificate does not belong to the key".into(),
            ));
        }
        Ok(SigningKey {
            key,
            alg,
            md,
            cert: cert.clone(),
            cert_b64: openssl::base64::encode_block(&cert.to_der()?),
            ec_len,
        })
    }

    /// Loads the key file (PEM, DER, PKCS#8, or PKCS#12 opened with `password`) and the
    /// certificate (from `cert_path`, else from the key file itself, as PKCS#12 carries it).
    /// `alg` defaults to the key's natural algorithm ([`SignatureAlg::default_for`]).
    pub fn from_files(
        key_path: &Path,
        cert_path: Option<&Path>,
        password: Option<&str>,
        alg: Option<SignatureAlg>,
        crypto: Crypto,
    ) -> Result<Self, DsigError> {
        let material = load_private_key(key_path, password, &crypto)?;
        let cert = match cert_path {
            Some(p) => load_certificates(p)?.remove(0),
            None => material.certificate.ok_or_else(|| {
                DsigError::Key(format!(
                    "{}: no certificate in the key file; give the certificate file",
                    key_path.display()
                ))
            })?,
        };
        let alg = match alg {
            Some(a) => a,
            None => SignatureAlg::default_for(&material.key)?,
        };
        Self::new(material.key, &cert, alg, crypto)
    }

    pub fn algorithm(&self) -> SignatureAlg {
        self.alg
    }

    /// The signer's certificate (what KeyInfo carries).
    pub fn certificate(&self) -> &X509 {
        &self.cert
    }

    /// Signs `data`; ECDSA values come out raw r||s as XMLDSig wants, GOST values as the
    /// engine produces them (s||r, the form xmlsec and SMEV use).
    pub fn sign(&self, data: &[u8]) -> Result<Vec<u8>, DsigError> {
        let mut signer = Signer::new(self.md, &self.key)?;
        if self.alg.is_pss() {
            signer.set_rsa_padding(Padding::PKCS1_PSS)?;
            signer.set_rsa_mgf1_md(self.md)?;
            signer.set_rsa_pss_saltlen(RsaPssSaltlen::DIGEST_LENGTH)?;
        }
        let der = signer.sign_oneshot_to_vec(data)?;
        if !self.alg.is_ecdsa() {
            return Ok(der);
        }
        let sig = EcdsaSig::from_der(&der)?;
        let n = i32::try_from(self.ec_len).map_err(|_| malformed("EC size"))?;
        let mut raw = sig.r().to_vec_padded(n)?;
        raw.extend_from_slice(&sig.s().to_vec_padded(n)?);
        Ok(raw)
    }
}

/// What the Reference looks like.
#[derive(Clone, Copy, Debug)]
pub struct SignOptions {
    pub digest: DigestAlg,
    /// Add `urn://smev-gov-ru/xmldsig/transform` after exc-c14n.
    pub smev_transform: bool,
    /// Add the enveloped-signature transform (the signature goes inside the signed element).
    pub enveloped: bool,
}

impl SignOptions {
    /// The SMEV 3 profile with a detached (sibling) signature.
    pub const SMEV_GOST: SignOptions = SignOptions {
        digest: DigestAlg::Gost256,
        smev_transform: true,
        enveloped: false,
    };
}

/// Signs `element` (which must carry a unique `Id`) and returns the `ds:Signature` element as
/// XML text, to be placed with [`insert_as_last_child`] (inside `element` when enveloped).
pub fn sign_element(
    doc: &Document<'_>,
    element: Node<'_, '_>,
    key: &SigningKey,
    opts: &SignOptions,
) -> Result<String, DsigError> {
    let id = element
        .attribute("Id")
        .ok_or_else(|| malformed("the signed element has no Id attribute"))?;
    if resolve_id(doc, id)? != element {
        return Err(malformed("Id does not resolve to the signed element"));
    }
    if opts.digest.is_weak() {
        return Err(DsigError::WeakAlgorithm(opts.digest.uri().to_owned()));
    }
    // The signature is not in the document yet: the enveloped transform would remove
    // exactly what is about to be inserted, so digest the element as it is.
    let mut sink = opts.digest.sink()?;
    if opts.smev_transform {
        smev_transform::transform(element, None, &mut sink)?;
    } else {
        c14n::canonicalize(element, &Options::EXCLUSIVE, None, &mut sink)?;
    }
    let digest = openssl::base64::encode_block(&sink.finish()?);

    // SignedInfo is written directly in its exclusive canonical form (it declares the one
    // prefix it uses), so the bytes signed are the bytes embedded.
    let mut si: Vec<u8> = Vec::with_capacity(1024);
    si.extend_from_slice(b"<ds:SignedInfo xmlns:ds=\"");
    si.extend_from_slice(DSIG_NS.as_bytes());
    si.extend_from_slice(b"\"><ds:CanonicalizationMethod Algorithm=\"");
    si.extend_from_slice(EXC_C14N.as_bytes());
    si.extend_from_slice(b"\"></ds:CanonicalizationMethod><ds:SignatureMethod Algorithm=\"");
    si.extend_from_slice(key.alg.uri().as_bytes());
    si.extend_from_slice(b"\"></ds:SignatureMethod><ds:Reference URI=\"#");
    write_escaped_attr(&mut si, id)?;
    si.extend_from_slice(b"\"><ds:Transforms>");
    let mut transform = |uri: &str| {
        si.extend_from_slice(b"<ds:Transform Algorithm=\"");
        si.extend_from_slice(uri.as_bytes());
        si.extend_from_slice(b"\"></ds:Transform>");
    };
    if opts.enveloped {
        transform(ENVELOPED);
    }
    transform(EXC_C14N);
    if opts.smev_transform {
        transform(smev_transform::ALGORITHM);
    }
    si.extend_from_slice(b"</ds:Transforms><ds:DigestMethod Algorithm=\"");
    si.extend_from_slice(opts.digest.uri().as_bytes());
    si.extend_from_slice(b"\"></ds:DigestMethod><ds:DigestValue>");
    si.extend_from_slice(digest.as_bytes());
    si.extend_from_slice(b"</ds:DigestValue></ds:Reference></ds:SignedInfo>");

    let value = openssl::base64::encode_block(&key.sign(&si)?);
    let si = String::from_utf8(si).map_err(|_| malformed("SignedInfo is not UTF-8"))?;
    Ok(format!(
        "<ds:Signature xmlns:ds=\"{DSIG_NS}\">{si}<ds:SignatureValue>{value}</ds:SignatureValue>\
         <ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data>\
         </ds:KeyInfo></ds:Signature>",
        key.cert_b64
    ))
}

/// Returns `xml` (the text `doc` was parsed from) with `fragment` inserted as the last child
/// of `parent`, touching nothing else (no whitespace added).
pub fn insert_as_last_child(
    xml: &str,
    parent: Node<'_, '_>,
    fragment: &str,
) -> Result<String, DsigError> {
    if !parent.is_element() || !std::ptr::eq(parent.document().input_text(), xml) {
        return Err(malformed(
            "parent must be an element of the document parsed from xml",
        ));
    }
    let range = parent.range();
    let src = xml
        .get(range.clone())
        .ok_or_else(|| malformed("element range outside the text"))?;
    let mut out = String::with_capacity(xml.len() + fragment.len() + 32);
    if src.ends_with("/>") {
        // <a .../> becomes <a ...>FRAGMENT</a>
        let qname_end = src[1..]
            .find(|c: char| c.is_ascii_whitespace() || c == '/' || c == '>')
            .map_or(src.len(), |i| i + 1);
        out.push_str(&xml[..range.end - 2]);
        out.push('>');
        out.push_str(fragment);
        out.push_str("</");
        out.push_str(&src[1..qname_end]);
        out.push('>');
    } else {
        let close = src
            .rfind("</")
            .ok_or_else(|| malformed("element has no end tag"))?;
        out.push_str(&xml[..range.start + close]);
        out.push_str(fragment);
        out.push_str(&xml[range.start + close..range.end]);
    }
    out.push_str(&xml[range.end..]);
    Ok(out)
}
