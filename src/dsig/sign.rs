//! Owns XMLDSig signing of one element by Id (exc-c14n SignedInfo, exc-c14n [+ SMEV transform] [+ enveloped] reference, X509 KeyInfo).
//! Must not rebuild or re-serialize the document: it returns a ds:Signature fragment and splices it into the original text.

use std::path::Path;
use std::sync::Mutex;

use foreign_types::ForeignType;
use openssl::ecdsa::EcdsaSig;
use openssl::hash::MessageDigest;
use openssl::md::{Md, MdRef};
use openssl::md_ctx::MdCtx;
use openssl::pkey::{PKey, Private};
use openssl::pkey_ctx::PkeyCtxRef;
use openssl::rsa::Padding;
use openssl::sign::RsaPssSaltlen;
use openssl::x509::X509;
use roxmltree::{Document, Node};

use super::algorithms::{DSIG_NS, DigestAlg, ENVELOPED, SignatureAlg};
use super::gost::Crypto;
use super::keys::{certificate_key, load_certificates, load_private_key};
use super::{DsigError, malformed, verify::resolve_id};
use crate::xml::c14n::{self, EXC_C14N, Options, write_escaped_attr};
use crate::xml::scan::Insertion;
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
    /// A DigestSign context set up once for this key (digest, padding): each signature works
    /// on a copy of it, which skips the algorithm and key look-ups OpenSSL 3 repeats on every
    /// fresh initialization. `None` when the provider or engine cannot copy such contexts
    /// (then every signature initializes its own, as before).
    template: Option<Mutex<MdCtx>>,
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
        let mut signing_key = SigningKey {
            key,
            alg,
            md,
            cert: cert.clone(),
            cert_b64: openssl::base64::encode_block(&cert.to_der()?),
            ec_len,
            template: None,
        };
        signing_key.template = signing_key.new_template().map(Mutex::new);
        Ok(signing_key)
    }

    /// The context every signature copies, or `None` when it cannot be prepared or copied
    /// (checked once here, so a copy failing later is unexpected and falls back quietly).
    fn new_template(&self) -> Option<MdCtx> {
        let ctx = self.init_context().ok();
        let usable = ctx.as_ref().and_then(copy_context).is_some();
        // A refused copy leaves errors queued; they belong to no caller.
        let _ = openssl::error::ErrorStack::get();
        ctx.filter(|_| usable)
    }

    /// A DigestSign context initialized from scratch for this key.
    fn init_context(&self) -> Result<MdCtx, DsigError> {
        let md = Md::from_nid(self.md.type_())
            .ok_or_else(|| DsigError::UnsupportedAlgorithm(self.alg.uri().to_owned()))?;
        let mut ctx = MdCtx::new()?;
        let pctx = ctx.digest_sign_init(Some(md), &self.key)?;
        if self.alg.is_pss() {
            configure_pss(pctx, md)?;
        }
        Ok(ctx)
    }

    /// A fresh DigestSign context for one signature: a copy of the template when there is one.
    fn context(&self) -> Result<MdCtx, DsigError> {
        let copy = self
            .template
            .as_ref()
            .and_then(|t| t.lock().ok())
            .and_then(|t| copy_context(&t));
        match copy {
            Some(ctx) => Ok(ctx),
            None => self.init_context(),
        }
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
        let mut ctx = self.context()?;
        let mut der = Vec::new();
        ctx.digest_sign_to_vec(data, &mut der)?;
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

/// RSASSA-PSS as XMLDSig names it: MGF1 with the signature's digest, salt as long as the digest.
pub(crate) fn configure_pss<T>(pctx: &mut PkeyCtxRef<T>, md: &MdRef) -> Result<(), DsigError> {
    pctx.set_rsa_padding(Padding::PKCS1_PSS)?;
    pctx.set_rsa_mgf1_md(md)?;
    pctx.set_rsa_pss_saltlen(RsaPssSaltlen::DIGEST_LENGTH)?;
    Ok(())
}

/// A copy of an initialized digest-sign (or digest-verify) context, `None` if OpenSSL refuses.
pub(crate) fn copy_context(template: &MdCtx) -> Option<MdCtx> {
    let copy = MdCtx::new().ok()?;
    // SAFETY: both pointers are live EVP_MD_CTX objects owned by the callers' MdCtx values; the
    // source is only read (and callers that share it serialize the copy behind a lock).
    let rc = unsafe { openssl_sys::EVP_MD_CTX_copy_ex(copy.as_ptr(), template.as_ptr()) };
    (rc == 1).then_some(copy)
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
    // The signature is not in the document yet: the enveloped transform would remove
    // exactly what is about to be inserted, so digest the element as it is.
    let mut sink = opts.digest.sink()?;
    if opts.smev_transform {
        smev_transform::transform(element, None, &mut sink)?;
    } else {
        c14n::canonicalize(element, &Options::EXCLUSIVE, None, &mut sink)?;
    }
    signature_fragment(id, &sink.finish()?, key, opts)
}

/// The `ds:Signature` element, as XML text, for a Reference to `#id` whose transformed
/// content has the digest `digest` (computed with `opts.digest` over what `opts` says).
pub fn signature_fragment(
    id: &str,
    digest: &[u8],
    key: &SigningKey,
    opts: &SignOptions,
) -> Result<String, DsigError> {
    if opts.digest.is_weak() {
        return Err(DsigError::WeakAlgorithm(opts.digest.uri().to_owned()));
    }
    let digest = openssl::base64::encode_block(digest);

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
    let si = std::str::from_utf8(&si).map_err(|_| malformed("SignedInfo is not UTF-8"))?;
    // Pieces appended to one buffer of the right size (no formatting pass over 2 KB of text).
    const HEAD: &str = "<ds:Signature xmlns:ds=\"";
    const VALUE: &str = "<ds:SignatureValue>";
    const CERT: &str = "</ds:SignatureValue><ds:KeyInfo><ds:X509Data><ds:X509Certificate>";
    const TAIL: &str = "</ds:X509Certificate></ds:X509Data></ds:KeyInfo></ds:Signature>";
    let pieces = [
        HEAD,
        DSIG_NS,
        "\">",
        si,
        VALUE,
        &value,
        CERT,
        &key.cert_b64,
        TAIL,
    ];
    let mut fragment = String::with_capacity(pieces.iter().map(|p| p.len()).sum());
    for p in pieces {
        fragment.push_str(p);
    }
    Ok(fragment)
}

/// Returns `xml` with `fragment` placed where a tree-less scan found the holder's end
/// ([`crate::xml::scan::Insertion`]), touching nothing else.
pub fn insert_signature(xml: &str, at: &Insertion, fragment: &str) -> Result<String, DsigError> {
    let outside = || malformed("insertion point outside the text");
    let mut out = String::with_capacity(xml.len() + fragment.len() + 32);
    match at {
        Insertion::BeforeEndTag(close) => {
            out.push_str(xml.get(..*close).ok_or_else(outside)?);
            out.push_str(fragment);
            out.push_str(xml.get(*close..).ok_or_else(outside)?);
        }
        Insertion::ExpandEmpty { slash, qname } => {
            // <a .../> becomes <a ...>FRAGMENT</a>
            out.push_str(xml.get(..*slash).ok_or_else(outside)?);
            out.push('>');
            out.push_str(fragment);
            out.push_str("</");
            out.push_str(xml.get(qname.clone()).ok_or_else(outside)?);
            out.push('>');
            out.push_str(xml.get(slash + 2..).ok_or_else(outside)?);
        }
    }
    Ok(out)
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
    let at = if src.ends_with("/>") {
        let name_len = src[1..]
            .find(|c: char| c.is_ascii_whitespace() || c == '/' || c == '>')
            .unwrap_or(src.len() - 1);
        Insertion::ExpandEmpty {
            slash: range.end - 2,
            qname: range.start + 1..range.start + 1 + name_len,
        }
    } else {
        let close = src
            .rfind("</")
            .ok_or_else(|| malformed("element has no end tag"))?;
        Insertion::BeforeEndTag(range.start + close)
    };
    insert_signature(xml, &at, fragment)
}
