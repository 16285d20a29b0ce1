//! Owns XMLDSig verification: SignedInfo parsing (exactly one Reference), Id resolution (exactly one, expected element), the reference digest, the signer's key and the SignatureValue check.
//! Must not decide trust itself (the caller's TrustStore does), skip an unknown algorithm or transform, nor follow external or XPointer URIs.

use openssl::md::Md;
use openssl::md_ctx::MdCtx;
use openssl::pkey::{PKeyRef, Public};
use openssl::x509::X509;
use roxmltree::{Document, Node};

use super::algorithms::{DSIG_NS, DigestAlg, ENVELOPED, SignatureAlg, XPATH};
use super::gost::Crypto;
use super::keys::{TrustStore, certificate_key, pick_leaf};
use super::sign::configure_pss;
use super::{DsigError, decode_base64, malformed};
use crate::xml::c14n::{self, Algorithm, Options};
use crate::xml::smev_transform;

const EXC_NS: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";

/// Where the verification key comes from.
pub enum KeySource<'k> {
    /// The signer's certificate from `KeyInfo/X509Data` (the leaf among the X509Certificate
    /// elements; the others only help build the chain), which must chain to the store.
    Trusted(&'k TrustStore),
    /// The KeyInfo certificate without any trust decision (diagnostics and interop tests only).
    Untrusted(Crypto),
    /// A key known out of band (KeyInfo is ignored).
    Key(&'k PKeyRef<Public>, Crypto),
}

impl KeySource<'_> {
    fn crypto(&self) -> Crypto {
        match self {
            KeySource::Trusted(t) => t.crypto(),
            KeySource::Untrusted(c) | KeySource::Key(_, c) => *c,
        }
    }
}

/// What the single Reference in SignedInfo must cover (the signing profile). Anything else
/// in SignedInfo (a second Reference, another URI form) fails verification.
#[derive(Clone, Copy, Debug)]
pub enum Expect<'a, 'i> {
    /// `URI="#id"` resolving to exactly this element: the one the caller goes on to process
    /// (SMEV: `SenderProvidedRequestData`, `SenderProvidedResponseData`, `MessageMetadata`).
    Element(Node<'a, 'i>),
    /// `URI="#id"` resolving to exactly one element, whichever it is.
    AnyElement,
    /// `URI=""`: the whole document (with an enveloped-signature transform).
    Document,
    /// Either of the two forms above.
    Any,
}

/// The node a signature covers. Only [`verify`] constructs it, so code that takes a
/// `VerifiedElement` can only be handed content whose signature was checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifiedElement<'a, 'i>(Node<'a, 'i>);

impl<'a, 'i> VerifiedElement<'a, 'i> {
    /// The covered node: an element, or the document root for `URI=""`.
    pub fn node(&self) -> Node<'a, 'i> {
        self.0
    }

    /// Whether the signature covers the whole document (`URI=""`).
    pub fn is_document(&self) -> bool {
        self.0.is_root()
    }
}

/// A successful verification.
#[derive(Debug)]
pub struct Verified<'a, 'i> {
    /// The node the Reference covers; process this and nothing else.
    pub element: VerifiedElement<'a, 'i>,
    /// The signer's certificate (from KeyInfo), unless the key was given out of band.
    pub certificate: Option<X509>,
    pub signature_alg: SignatureAlg,
    pub digest_alg: DigestAlg,
    /// SHA-1 was involved (digest or signature): valid, but weak.
    pub weak: bool,
}

/// The outcome of the reference check alone (digest matched).
#[derive(Debug, Clone, Copy)]
pub struct ReferenceCheck<'a, 'i> {
    pub element: Node<'a, 'i>,
    pub digest_alg: DigestAlg,
}

/// Finds the single element whose `Id`/`ID`/`id` attribute (any namespace) equals `id`.
/// Zero or several matches are errors: several means someone may be wrapping the signature.
pub fn resolve_id<'a, 'i>(doc: &'a Document<'i>, id: &str) -> Result<Node<'a, 'i>, DsigError> {
    let mut found = None;
    let mut count = 0usize;
    for n in doc.descendants().filter(|n| n.is_element()) {
        if n.attributes()
            .any(|a| matches!(a.name(), "Id" | "ID" | "id") && a.value() == id)
        {
            count += 1;
            found.get_or_insert(n);
        }
    }
    match (count, found) {
        (1, Some(n)) => Ok(n),
        (0, _) | (_, None) => Err(DsigError::ReferenceNotFound(id.to_owned())),
        (count, _) => Err(DsigError::AmbiguousReference {
            id: id.to_owned(),
            count,
        }),
    }
}

fn children<'a, 'i>(node: Node<'a, 'i>) -> impl Iterator<Item = Node<'a, 'i>> {
    node.children().filter(|c| c.is_element())
}

fn expect_child<'a, 'i>(
    it: &mut impl Iterator<Item = Node<'a, 'i>>,
    local: &str,
) -> Result<Node<'a, 'i>, DsigError> {
    match it.next() {
        Some(n) if n.has_tag_name((DSIG_NS, local)) => Ok(n),
        Some(n) => Err(malformed(format!(
            "expected ds:{local}, found {}",
            n.tag_name().name()
        ))),
        None => Err(malformed(format!("missing ds:{local}"))),
    }
}

fn algorithm<'a>(node: Node<'a, '_>) -> Result<&'a str, DsigError> {
    node.attribute("Algorithm")
        .ok_or_else(|| malformed(format!("{} without Algorithm", node.tag_name().name())))
}

/// InclusiveNamespaces PrefixList under a c14n method/transform element.
fn prefix_list<'a>(node: Node<'a, '_>) -> Vec<&'a str> {
    children(node)
        .find(|c| c.has_tag_name((EXC_NS, "InclusiveNamespaces")))
        .and_then(|c| c.attribute("PrefixList"))
        .map(|l| c14n::split_prefix_list(l).collect())
        .unwrap_or_default()
}

struct SignedInfo<'a, 'i> {
    node: Node<'a, 'i>,
    c14n: (Algorithm, bool),
    c14n_prefixes: Vec<&'a str>,
    signature_alg: SignatureAlg,
    reference: Node<'a, 'i>,
}

fn parse_signed_info<'a, 'i>(signature: Node<'a, 'i>) -> Result<SignedInfo<'a, 'i>, DsigError> {
    if !signature.has_tag_name((DSIG_NS, "Signature")) {
        return Err(malformed("not a ds:Signature element"));
    }
    let mut kids = children(signature);
    let node = expect_child(&mut kids, "SignedInfo")?;
    let mut si = children(node);
    let cm = expect_child(&mut si, "CanonicalizationMethod")?;
    let c14n = Algorithm::from_uri(algorithm(cm)?)?;
    let sm = expect_child(&mut si, "SignatureMethod")?;
    let signature_alg = SignatureAlg::from_uri(algorithm(sm)?)?;
    let reference = expect_child(&mut si, "Reference")?;
    let mut count = 1;
    for extra in si {
        if !extra.has_tag_name((DSIG_NS, "Reference")) {
            return Err(malformed(format!(
                "unexpected <{}> in ds:SignedInfo",
                extra.tag_name().name()
            )));
        }
        count += 1;
    }
    if count != 1 {
        return Err(DsigError::ReferenceCount(count));
    }
    Ok(SignedInfo {
        node,
        c14n,
        c14n_prefixes: prefix_list(cm),
        signature_alg,
        reference,
    })
}

/// Checks that `xpath` is `not(ancestor-or-self::P:Signature)` with P bound to the dsig namespace.
fn is_not_signature_xpath(xpath_el: Node<'_, '_>) -> bool {
    let text: String = xpath_el
        .text()
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let Some(qname) = text
        .strip_prefix("not(ancestor-or-self::")
        .and_then(|r| r.strip_suffix(')'))
    else {
        return false;
    };
    match qname.split_once(':') {
        Some((p, "Signature")) => xpath_el.lookup_namespace_uri(Some(p)) == Some(DSIG_NS),
        _ => false,
    }
}

/// Resolves the Reference as `expect` demands, runs its transforms straight into the digest
/// and compares with DigestValue (the SignatureValue is not checked).
pub fn check_reference<'a, 'i>(
    doc: &'a Document<'i>,
    signature: Node<'a, 'i>,
    expect: Expect<'a, 'i>,
) -> Result<ReferenceCheck<'a, 'i>, DsigError> {
    let si = parse_signed_info(signature)?;
    check_parsed_reference(doc, signature, &si, expect)
}

fn check_parsed_reference<'a, 'i>(
    doc: &'a Document<'i>,
    signature: Node<'a, 'i>,
    si: &SignedInfo<'a, 'i>,
    expect: Expect<'a, 'i>,
) -> Result<ReferenceCheck<'a, 'i>, DsigError> {
    let reference = si.reference;
    let uri = reference
        .attribute("URI")
        .ok_or_else(|| DsigError::UnsupportedUri("(absent)".into()))?;
    let apex = if uri.is_empty() {
        if matches!(expect, Expect::Element(_) | Expect::AnyElement) {
            return Err(DsigError::WrongTarget(
                "the Reference covers the whole document, not the expected element".into(),
            ));
        }
        doc.root()
    } else if let Some(id) = uri
        .strip_prefix('#')
        .filter(|id| !id.is_empty() && !id.starts_with("xpointer("))
    {
        let n = resolve_id(doc, id)?;
        match expect {
            Expect::Document => {
                return Err(DsigError::WrongTarget(format!(
                    "the Reference covers `#{id}`, not the whole document"
                )));
            }
            Expect::Element(target) if target != n => {
                return Err(DsigError::WrongTarget(format!(
                    "the Reference covers `#{id}` (<{}>), not the element being processed (<{}>)",
                    n.tag_name().name(),
                    target.tag_name().name()
                )));
            }
            _ => {}
        }
        n
    } else {
        return Err(DsigError::UnsupportedUri(uri.to_owned()));
    };

    let mut rk = children(reference).peekable();
    let mut exclude_signature = false;
    let mut xpath_filter = false;
    let mut c14n: Option<((Algorithm, bool), Vec<&str>)> = None;
    let mut smev = false;
    if rk
        .peek()
        .is_some_and(|n| n.has_tag_name((DSIG_NS, "Transforms")))
    {
        let transforms = rk.next().ok_or_else(|| malformed("Transforms"))?;
        for t in children(transforms) {
            if !t.has_tag_name((DSIG_NS, "Transform")) {
                return Err(malformed("unexpected element in ds:Transforms"));
            }
            let alg = algorithm(t)?;
            let after_octets = c14n.is_some();
            match alg {
                ENVELOPED if !after_octets => exclude_signature = true,
                XPATH if !after_octets => {
                    let ok = children(t)
                        .find(|c| c.has_tag_name((DSIG_NS, "XPath")))
                        .is_some_and(is_not_signature_xpath);
                    if !ok {
                        return Err(DsigError::UnsupportedTransforms(
                            "only the XPath not(ancestor-or-self::ds:Signature) is supported"
                                .into(),
                        ));
                    }
                    exclude_signature = true;
                    xpath_filter = true;
                }
                smev_transform::ALGORITHM if after_octets && !smev => smev = true,
                _ => match Algorithm::from_uri(alg) {
                    Ok(a) if !after_octets => c14n = Some((a, prefix_list(t))),
                    Ok(_) => {
                        return Err(DsigError::UnsupportedTransforms(
                            "two canonicalizations in one chain".into(),
                        ));
                    }
                    Err(_) => {
                        return Err(DsigError::UnsupportedTransforms(format!(
                            "transform `{alg}` (unknown, or not allowed at this position)"
                        )));
                    }
                },
            }
        }
    }
    let dm = expect_child(&mut rk, "DigestMethod")?;
    let digest_alg = DigestAlg::from_uri(algorithm(dm)?)?;
    let dv = expect_child(&mut rk, "DigestValue")?;
    let expected = decode_base64(dv.text().unwrap_or(""))?;

    if xpath_filter {
        // The XPath drops every ds:Signature; we only drop this one, so there must be no other.
        let others = apex
            .descendants()
            .filter(|n| n.has_tag_name((DSIG_NS, "Signature")) && *n != signature)
            .filter(|n| !n.ancestors().any(|a| a == signature))
            .count();
        if others > 0 {
            return Err(DsigError::UnsupportedTransforms(
                "XPath filter over several ds:Signature elements".into(),
            ));
        }
    }
    let exclude = exclude_signature.then(|| signature.id());

    // Same-document references drop comments whatever the c14n method says.
    let mut sink = digest_alg.sink()?;
    match c14n {
        Some(((Algorithm::ExcC14n, _), _)) if smev => {
            // transform(exc-c14n(x)) is computed straight from the tree.
            smev_transform::transform(apex, exclude, &mut sink)?;
        }
        Some(((alg, _), prefixes)) if smev => {
            let opts = Options {
                algorithm: alg,
                with_comments: false,
                inclusive_prefixes: &prefixes,
            };
            let octets = c14n::canonicalize_to_vec(apex, &opts, exclude)?;
            let text =
                String::from_utf8(octets).map_err(|_| malformed("canonical form is not UTF-8"))?;
            smev_transform::transform_xml(&text, &mut sink)?;
        }
        Some(((alg, _), prefixes)) => {
            let opts = Options {
                algorithm: alg,
                with_comments: false,
                inclusive_prefixes: &prefixes,
            };
            c14n::canonicalize(apex, &opts, exclude, &mut sink)?;
        }
        None => {
            let opts = Options::new(Algorithm::C14n10, false);
            c14n::canonicalize(apex, &opts, exclude, &mut sink)?;
        }
    }
    let actual = sink.finish()?;
    if actual.len() != expected.len() || !openssl::memcmp::eq(&actual, &expected) {
        return Err(DsigError::DigestMismatch);
    }
    Ok(ReferenceCheck {
        element: apex,
        digest_alg,
    })
}

/// Verifies `signature` (a ds:Signature element of `doc`): SignedInfo must hold exactly one
/// Reference, covering what `expect` says and resolving to exactly one element; its digest
/// must match; the key (see [`KeySource`]) must verify SignatureValue over the canonical
/// SignedInfo. Returns the covered node as a [`VerifiedElement`].
pub fn verify<'a, 'i>(
    doc: &'a Document<'i>,
    signature: Node<'a, 'i>,
    expect: Expect<'a, 'i>,
    keys: &KeySource<'_>,
) -> Result<Verified<'a, 'i>, DsigError> {
    let crypto = keys.crypto();
    let si = parse_signed_info(signature)?;
    // Refuse GOST before doing any work when the engine is not available.
    si.signature_alg.message_digest(&crypto)?;
    let mut kids = children(signature);
    let _ = kids.next(); // SignedInfo
    let sv = expect_child(&mut kids, "SignatureValue")?;
    let signature_value = decode_base64(sv.text().unwrap_or(""))?;
    let key_info = kids.find(|n| n.has_tag_name((DSIG_NS, "KeyInfo")));

    let reference = check_parsed_reference(doc, signature, &si, expect)?;

    let opts = Options {
        algorithm: si.c14n.0,
        with_comments: si.c14n.1,
        inclusive_prefixes: &si.c14n_prefixes,
    };
    let signed_info = c14n::canonicalize_to_vec(si.node, &opts, None)?;

    let (certificate, owned_key, trusted);
    let key: &PKeyRef<Public> = match keys {
        KeySource::Key(k, _) => {
            certificate = None;
            trusted = None;
            k
        }
        KeySource::Untrusted(crypto) => {
            let ki = key_info.ok_or(DsigError::NoKey)?;
            let mut certs: Vec<X509> = key_info_certificate_nodes(ki)
                .map(|n| {
                    let der = decode_base64(n.text().unwrap_or(""))?;
                    X509::from_der(&der).map_err(|e| malformed(format!("X509Certificate: {e}")))
                })
                .collect::<Result<_, _>>()?;
            if certs.is_empty() {
                return Err(DsigError::NoKey);
            }
            check_certificate_count(certs.len())?;
            let cert = certs.swap_remove(pick_leaf(&certs)?);
            owned_key = certificate_key(&cert, crypto)?;
            certificate = Some(cert);
            trusted = None;
            &owned_key
        }
        KeySource::Trusted(store) => {
            let ki = key_info.ok_or(DsigError::NoKey)?;
            let texts: Vec<&str> = key_info_certificate_nodes(ki)
                .map(|n| n.text().unwrap_or(""))
                .collect();
            if texts.is_empty() {
                return Err(DsigError::NoKey);
            }
            check_certificate_count(texts.len())?;
            trusted = Some(store.check_key_info(&texts)?);
            let t = trusted.as_ref().ok_or(DsigError::NoKey)?;
            certificate = Some(t.cert.clone());
            &t.key
        }
    };
    si.signature_alg.check_key(key)?;
    // A trusted signer's key keeps a prepared context per algorithm; other keys get a new one.
    let ctx = match &trusted {
        Some(t) => t.verify_context(si.signature_alg, &crypto)?,
        None => verify_context_for(key, si.signature_alg, &crypto)?,
    };
    verify_signature_value(si.signature_alg, key, ctx, &signed_info, &signature_value)?;
    Ok(Verified {
        element: VerifiedElement(reference.element),
        certificate,
        signature_alg: si.signature_alg,
        digest_alg: reference.digest_alg,
        weak: si.signature_alg.is_weak() || reference.digest_alg.is_weak(),
    })
}

/// Most certificates KeyInfo may carry (the signer and its CA chain); finding the signer
/// among them is quadratic, so a hostile KeyInfo must not hold thousands.
const MAX_KEY_INFO_CERTIFICATES: usize = 8;

fn check_certificate_count(n: usize) -> Result<(), DsigError> {
    if n > MAX_KEY_INFO_CERTIFICATES {
        return Err(malformed(format!(
            "KeyInfo carries {n} certificates (at most {MAX_KEY_INFO_CERTIFICATES})"
        )));
    }
    Ok(())
}

/// Every `X509Data/X509Certificate` under KeyInfo, in document order.
fn key_info_certificate_nodes<'a, 'i>(
    key_info: Node<'a, 'i>,
) -> impl Iterator<Item = Node<'a, 'i>> {
    key_info
        .children()
        .filter(|n| n.has_tag_name((DSIG_NS, "X509Data")))
        .flat_map(children)
        .filter(|n| n.has_tag_name((DSIG_NS, "X509Certificate")))
}

/// DER `SEQUENCE { INTEGER r, INTEGER s }` from the raw big-endian halves of an XMLDSig
/// ECDSA value (what OpenSSL's verifier takes), without bignum round trips.
fn ecdsa_der(r: &[u8], s: &[u8]) -> Vec<u8> {
    fn integer(out: &mut Vec<u8>, v: &[u8]) {
        let v = &v[v.iter().position(|b| *b != 0).unwrap_or(v.len())..];
        let pad = v.first().is_none_or(|b| *b & 0x80 != 0);
        let len = v.len() + usize::from(pad);
        out.push(0x02);
        push_len(out, len);
        if pad {
            out.push(0);
        }
        out.extend_from_slice(v);
    }
    fn push_len(out: &mut Vec<u8>, len: usize) {
        if len < 0x80 {
            out.push(len as u8);
        } else if len < 0x100 {
            out.extend_from_slice(&[0x81, len as u8]);
        } else {
            out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]);
        }
    }
    let mut body = Vec::with_capacity(r.len() + s.len() + 8);
    integer(&mut body, r);
    integer(&mut body, s);
    let mut out = Vec::with_capacity(body.len() + 4);
    out.push(0x30);
    push_len(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

/// A DigestVerify context for `alg` over `key`, initialized from scratch.
pub(crate) fn verify_context_for(
    key: &PKeyRef<Public>,
    alg: SignatureAlg,
    crypto: &Crypto,
) -> Result<MdCtx, DsigError> {
    let md = Md::from_nid(alg.message_digest(crypto)?.type_())
        .ok_or_else(|| DsigError::UnsupportedAlgorithm(alg.uri().to_owned()))?;
    let mut ctx = MdCtx::new()?;
    let pctx = ctx.digest_verify_init(Some(md), key)?;
    if alg.is_pss() {
        configure_pss(pctx, md)?;
    }
    Ok(ctx)
}

/// Checks `sig` over `data` with `ctx` (a DigestVerify context for `alg` and `key`).
fn verify_signature_value(
    alg: SignatureAlg,
    key: &PKeyRef<Public>,
    mut ctx: MdCtx,
    data: &[u8],
    sig: &[u8],
) -> Result<(), DsigError> {
    let ok = if alg.is_ecdsa() {
        let ec = key.ec_key()?;
        let n = (ec.group().degree() as usize).div_ceil(8);
        if sig.len() != 2 * n {
            return Err(DsigError::BadSignature);
        }
        let der = ecdsa_der(&sig[..n], &sig[n..]);
        ctx.digest_verify(data, &der).unwrap_or(false)
    } else {
        ctx.digest_verify(data, sig).unwrap_or(false)
    };
    // A failed verification may leave errors queued; they belong to this message only.
    let _ = openssl::error::ErrorStack::get();
    if ok {
        Ok(())
    } else {
        Err(DsigError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::ecdsa_der;
    use openssl::bn::BigNum;
    use openssl::ecdsa::EcdsaSig;

    #[test]
    fn ecdsa_der_matches_openssl_encoding() {
        let cases: &[(Vec<u8>, Vec<u8>)] = &[
            (vec![0x01; 32], vec![0x7f; 32]),
            (vec![0x80; 32], vec![0xff; 32]),
            ([vec![0; 5], vec![0x9a; 27]].concat(), vec![0; 32]),
            (vec![0x00, 0x80, 0x01], vec![0x00, 0x00, 0x05]),
            (vec![0xc3; 66], [vec![0, 1], vec![0xee; 64]].concat()),
        ];
        for (r, s) in cases {
            let expected = EcdsaSig::from_private_components(
                BigNum::from_slice(r).expect("r"),
                BigNum::from_slice(s).expect("s"),
            )
            .and_then(|sig| sig.to_der())
            .expect("der");
            assert_eq!(ecdsa_der(r, s), expected, "r={r:02x?} s={s:02x?}");
        }
    }
}
