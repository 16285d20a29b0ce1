//! Owns what the `sign`, `verify` and `keys generate` subcommands do: signing a file's element by Id, a human report of a file's signature, and development keys with a self-signed certificate.
//! Must not parse command lines or print: the CLI module calls these and turns the results into output and exit codes.

use std::fmt;
use std::path::{Path, PathBuf};

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, Private};
use openssl::pkey_ctx::PkeyCtx;
use openssl::rsa::Rsa;
use openssl::x509::{X509, X509NameBuilder};
use roxmltree::Node;

use super::DsigError;
use super::algorithms::DSIG_NS;
use super::gost::{Crypto, NID_GOST3410_2012_256, NID_GOST3410_2012_512, gost_paramset};
use super::keys::TrustStore;
use super::sign::{SignOptions, SigningKey, insert_as_last_child, sign_element};
use super::verify::{Expect, KeySource, resolve_id, verify};
use crate::config::XmlLimits;

/// Signs the element whose `Id` is `id` with the SMEV profile. The signature goes into an
/// empty `...Signature` holder element that follows the signed element as a sibling (as
/// `CallerInformationSystemSignature` follows `SenderProvidedRequestData`); without one, it
/// goes inside the signed element (enveloped).
pub fn sign_document(xml: &str, id: &str, key: &SigningKey) -> Result<String, DsigError> {
    let doc = crate::xml::parse(xml, &XmlLimits::default())
        .map_err(|e| DsigError::Malformed(format!("input: {e}")))?;
    let target = resolve_id(&doc, id)?;
    let holder = target.next_siblings().skip(1).find(|n| {
        n.is_element()
            && n.tag_name().name().ends_with("Signature")
            && !n.has_tag_name((DSIG_NS, "Signature"))
            && !n.children().any(|c| c.is_element())
    });
    let mut opts = SignOptions::smev_for(key.algorithm());
    opts.enveloped = holder.is_none();
    let fragment = sign_element(&doc, target, key, &opts)?;
    insert_as_last_child(xml, holder.unwrap_or(target), &fragment)
}

/// What `verify` found out about one signature.
#[derive(Debug)]
pub struct SignatureReport {
    /// The signed element: `{namespace}local` and its Id (or "the whole document").
    pub element: String,
    /// Subject of the signer's certificate, when KeyInfo carried one.
    pub signer: Option<String>,
    pub signature_alg: Option<String>,
    pub digest_alg: Option<String>,
    pub weak: bool,
    /// Whether the certificate was checked against trust anchors.
    pub trust_checked: bool,
    /// `Ok` when the signature is valid; otherwise exactly why not.
    pub outcome: Result<(), DsigError>,
}

impl SignatureReport {
    pub fn is_valid(&self) -> bool {
        self.outcome.is_ok()
    }
}

impl fmt::Display for SignatureReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "signed element: {}", self.element)?;
        if let Some(s) = &self.signer {
            writeln!(f, "signer: {s}")?;
        }
        if let Some(a) = &self.signature_alg {
            writeln!(f, "signature algorithm: {a}")?;
        }
        if let Some(d) = &self.digest_alg {
            writeln!(f, "digest algorithm: {d}")?;
        }
        if self.weak {
            writeln!(f, "warning: SHA-1 is weak")?;
        }
        match &self.outcome {
            Ok(()) if self.trust_checked => write!(f, "OK"),
            Ok(()) => write!(
                f,
                "OK (signature valid; the certificate was not checked against a trust anchor: give --trusted)"
            ),
            Err(e) => write!(f, "FAILED: {e} ({})", e.smev_fault().as_str()),
        }
    }
}

fn describe(n: Node<'_, '_>) -> String {
    if n.is_root() {
        return "the whole document".into();
    }
    let name = match n.tag_name().namespace() {
        Some(ns) => format!("{{{ns}}}{}", n.tag_name().name()),
        None => n.tag_name().name().to_owned(),
    };
    match n
        .attribute("Id")
        .or(n.attribute("ID"))
        .or(n.attribute("id"))
    {
        Some(id) => format!("{name} Id=\"{id}\""),
        None => name,
    }
}

/// Verifies every `ds:Signature` in `xml` that is not itself inside a signed object's
/// content (one report each; none when the document has no signature). With `trust`, the
/// signer's certificate must chain to it.
pub fn verify_document(
    xml: &str,
    trust: Option<&TrustStore>,
    crypto: Crypto,
) -> Result<Vec<SignatureReport>, DsigError> {
    let doc = crate::xml::parse(xml, &XmlLimits::default())
        .map_err(|e| DsigError::Malformed(format!("input: {e}")))?;
    let mut reports = Vec::new();
    for sig in doc
        .descendants()
        .filter(|n| n.has_tag_name((DSIG_NS, "Signature")))
    {
        let keys = match trust {
            Some(t) => KeySource::Trusted(t),
            None => KeySource::Untrusted(crypto),
        };
        let signed_info = sig
            .children()
            .find(|n| n.has_tag_name((DSIG_NS, "SignedInfo")));
        let attr_of = |local: &str| {
            signed_info
                .and_then(|si| si.descendants().find(|n| n.has_tag_name((DSIG_NS, local))))
                .and_then(|n| n.attribute("Algorithm"))
                .map(str::to_owned)
        };
        let uri = signed_info
            .and_then(|si| {
                si.children()
                    .find(|n| n.has_tag_name((DSIG_NS, "Reference")))
            })
            .and_then(|r| r.attribute("URI"))
            .unwrap_or("(none)");
        let mut report = SignatureReport {
            element: format!("reference `{uri}`"),
            signer: None,
            signature_alg: attr_of("SignatureMethod"),
            digest_alg: attr_of("DigestMethod"),
            weak: false,
            trust_checked: trust.is_some(),
            outcome: Ok(()),
        };
        match verify(&doc, sig, Expect::Any, &keys) {
            Ok(v) => {
                report.element = describe(v.element.node());
                report.signer = v.certificate.as_ref().map(subject);
                report.signature_alg = Some(format!(
                    "{} ({})",
                    v.signature_alg.name(),
                    v.signature_alg.uri()
                ));
                report.digest_alg = Some(v.digest_alg.uri().to_owned());
                report.weak = v.weak;
            }
            Err(e) => report.outcome = Err(e),
        }
        reports.push(report);
    }
    Ok(reports)
}

fn subject(cert: &X509) -> String {
    cert.subject_name()
        .entries()
        .filter_map(|e| {
            let key = e.object().nid().short_name().ok()?;
            let value = e.data().to_string().ok()?;
            Some(format!("{key}={value}"))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Key types `keys generate` can make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DevKeyAlg {
    Gost2012_256,
    Gost2012_512,
    Rsa,
    Ecdsa,
}

impl DevKeyAlg {
    /// `gost2012-256`, `gost2012-512`, `rsa`, `ecdsa`.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "gost2012-256" => DevKeyAlg::Gost2012_256,
            "gost2012-512" => DevKeyAlg::Gost2012_512,
            "rsa" => DevKeyAlg::Rsa,
            "ecdsa" => DevKeyAlg::Ecdsa,
            _ => return None,
        })
    }
}

/// A fresh private key: RSA 3072, ECDSA P-256, or GOST R 34.10-2012 (paramset A) with the engine.
pub fn generate_key(alg: DevKeyAlg, crypto: &Crypto) -> Result<PKey<Private>, DsigError> {
    Ok(match alg {
        DevKeyAlg::Rsa => PKey::from_rsa(Rsa::generate(3072)?)?,
        DevKeyAlg::Ecdsa => {
            let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
            PKey::from_ec_key(EcKey::generate(&group)?)?
        }
        DevKeyAlg::Gost2012_256 | DevKeyAlg::Gost2012_512 => {
            crypto.require_gost()?;
            let nid = if alg == DevKeyAlg::Gost2012_256 {
                NID_GOST3410_2012_256
            } else {
                NID_GOST3410_2012_512
            };
            let mut ctx = PkeyCtx::new_id(Id::from_raw(nid.as_raw()))?;
            ctx.keygen_init()?;
            gost_paramset(&mut ctx, "A")?;
            ctx.keygen()?
        }
    })
}

/// A self-signed certificate for `key`, valid for `days` from now, with `common_name`.
pub fn self_signed_certificate(
    key: &PKey<Private>,
    common_name: &str,
    days: u32,
    crypto: &Crypto,
) -> Result<X509, DsigError> {
    let alg = super::algorithms::SignatureAlg::default_for(key)?;
    let md: MessageDigest = alg.message_digest(crypto)?;
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::COMMONNAME, common_name)?;
    let name = name.build();
    let mut b = X509::builder()?;
    b.set_version(2)?;
    let mut serial = BigNum::new()?;
    serial.rand(127, MsbOption::MAYBE_ZERO, false)?;
    let serial = serial.to_asn1_integer()?;
    b.set_serial_number(&serial)?;
    b.set_subject_name(&name)?;
    b.set_issuer_name(&name)?;
    let not_before = Asn1Time::days_from_now(0)?;
    let not_after = Asn1Time::days_from_now(days)?;
    b.set_not_before(&not_before)?;
    b.set_not_after(&not_after)?;
    b.set_pubkey(key)?;
    b.sign(key, md)?;
    Ok(b.build())
}

/// Writes development keys: `dir/key.pem` (PKCS#8, owner-only) and `dir/cert.pem` (a
/// self-signed certificate for a year). Returns both paths.
pub fn generate_dev_keys(
    alg: DevKeyAlg,
    dir: &Path,
    crypto: &Crypto,
) -> Result<(PathBuf, PathBuf), DsigError> {
    let key = generate_key(alg, crypto)?;
    let cert = self_signed_certificate(&key, "smev-adapter development key", 365, crypto)?;
    std::fs::create_dir_all(dir)?;
    let key_path = dir.join("key.pem");
    let cert_path = dir.join("cert.pem");
    write_private(&key_path, &key.private_key_to_pem_pkcs8()?)?;
    std::fs::write(&cert_path, cert.to_pem()?)?;
    Ok((key_path, cert_path))
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path)?;
    f.write_all(bytes)
}
