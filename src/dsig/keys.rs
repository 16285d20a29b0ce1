//! Owns key material: private keys from PEM, DER, PKCS#8 (optionally encrypted) and PKCS#12 files, certificates from PEM/DER files and KeyInfo, and the trust store with its per-certificate cache.
//! Must not sign or verify XML, and must not trust a certificate that does not chain to the configured anchors.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use openssl::asn1::Asn1Time;
use openssl::pkcs12::Pkcs12;
use openssl::pkey::{PKey, Private, Public};
use openssl::stack::Stack;
use openssl::x509::store::{X509Store, X509StoreBuilder};
use openssl::x509::verify::X509VerifyFlags;
use openssl::x509::{X509, X509StoreContext, X509VerifyResult};

use openssl::md_ctx::MdCtx;

use super::DsigError;
use super::algorithms::SignatureAlg;
use super::gost::{Crypto, mentions_gost_key};
use super::sign::copy_context;
use super::verify::verify_context_for;

/// A private key with the certificates that came with it (PKCS#12, or a PEM holding both).
pub struct KeyMaterial {
    pub key: PKey<Private>,
    /// The key's own certificate, when the file carried it.
    pub certificate: Option<X509>,
    /// Further certificates from the file (CA chain).
    pub chain: Vec<X509>,
}

fn key_error(what: impl Into<String>) -> DsigError {
    DsigError::Key(what.into())
}

fn read_file(path: &Path) -> Result<Vec<u8>, DsigError> {
    std::fs::read(path).map_err(|e| key_error(format!("cannot read {}: {e}", path.display())))
}

/// PEM, possibly after a text preamble (`openssl x509 -text` output keeps one).
fn is_pem(bytes: &[u8]) -> bool {
    bytes.windows(11).any(|w| w == b"-----BEGIN ")
}

/// The DER inside every PEM block, for recognising GOST keys in error messages.
fn pem_payloads(bytes: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(bytes);
    let mut out = Vec::new();
    let mut body = String::new();
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("-----BEGIN ") {
            inside = true;
            body.clear();
        } else if line.starts_with("-----END ") {
            inside = false;
            if let Ok(der) = openssl::base64::decode_block(&body) {
                out.extend_from_slice(&der);
            }
        } else if inside && !line.contains(':') {
            body.push_str(line);
        }
    }
    out
}

/// Maps a decoding failure to "GOST not available" when the data names a GOST key and the
/// engine is missing; otherwise to a key error saying what failed.
fn decode_failure(bytes: &[u8], crypto: &Crypto, what: String) -> DsigError {
    let gost = if is_pem(bytes) {
        mentions_gost_key(&pem_payloads(bytes))
    } else {
        mentions_gost_key(bytes)
    };
    if gost && !crypto.gost_available() {
        DsigError::GostUnavailable
    } else {
        key_error(what)
    }
}

/// Reads a private key from `bytes`: PEM (PKCS#8, encrypted PKCS#8, traditional RSA/EC; a
/// CERTIFICATE block in the same file is taken as the key's certificate), DER (PKCS#8,
/// encrypted PKCS#8, traditional) or PKCS#12 (`password` opens it; empty when `None`).
pub fn private_key_from_bytes(
    bytes: &[u8],
    password: Option<&str>,
    crypto: &Crypto,
) -> Result<KeyMaterial, DsigError> {
    if is_pem(bytes) {
        let key = match password {
            Some(pw) => PKey::private_key_from_pem_passphrase(bytes, pw.as_bytes()),
            // An empty passphrase, never OpenSSL's terminal prompt.
            None => PKey::private_key_from_pem_passphrase(bytes, b""),
        }
        .map_err(|e| {
            let encrypted = String::from_utf8_lossy(bytes).contains("ENCRYPTED");
            let why = if encrypted && password.is_none() {
                "the key is encrypted and no password was given".to_owned()
            } else {
                format!("not a readable PEM private key ({e})")
            };
            decode_failure(bytes, crypto, why)
        })?;
        let mut certs = if String::from_utf8_lossy(bytes).contains("-----BEGIN CERTIFICATE") {
            X509::stack_from_pem(bytes).map_err(|e| key_error(format!("certificate: {e}")))?
        } else {
            Vec::new()
        };
        let certificate = (!certs.is_empty()).then(|| certs.remove(0));
        return Ok(KeyMaterial {
            key,
            certificate,
            chain: certs,
        });
    }
    if let Ok(p12) = Pkcs12::from_der(bytes) {
        let parsed = p12.parse2(password.unwrap_or("")).map_err(|e| {
            decode_failure(
                bytes,
                crypto,
                format!("cannot open the PKCS#12 file (wrong password?): {e}"),
            )
        })?;
        let key = parsed
            .pkey
            .ok_or_else(|| key_error("the PKCS#12 file holds no private key"))?;
        let chain = parsed
            .ca
            .map(|s| s.into_iter().collect())
            .unwrap_or_default();
        return Ok(KeyMaterial {
            key,
            certificate: parsed.cert,
            chain,
        });
    }
    let key = match password {
        Some(pw) => PKey::private_key_from_pkcs8_passphrase(bytes, pw.as_bytes()),
        None => PKey::private_key_from_der(bytes),
    }
    .map_err(|e| {
        decode_failure(
            bytes,
            crypto,
            format!("not a readable DER private key ({e})"),
        )
    })?;
    Ok(KeyMaterial {
        key,
        certificate: None,
        chain: Vec::new(),
    })
}

/// [`private_key_from_bytes`] over a file.
pub fn load_private_key(
    path: &Path,
    password: Option<&str>,
    crypto: &Crypto,
) -> Result<KeyMaterial, DsigError> {
    let bytes = read_file(path)?;
    private_key_from_bytes(&bytes, password, crypto).map_err(|e| match e {
        DsigError::Key(why) => key_error(format!("{}: {why}", path.display())),
        other => other,
    })
}

/// Reads certificates from `bytes`: one or more PEM blocks, or one DER certificate.
pub fn certificates_from_bytes(bytes: &[u8]) -> Result<Vec<X509>, DsigError> {
    let certs = if is_pem(bytes) {
        X509::stack_from_pem(bytes).map_err(|e| key_error(format!("certificate: {e}")))?
    } else {
        vec![X509::from_der(bytes).map_err(|e| key_error(format!("certificate: {e}")))?]
    };
    if certs.is_empty() {
        return Err(key_error("no certificate found"));
    }
    Ok(certs)
}

/// [`certificates_from_bytes`] over a file.
pub fn load_certificates(path: &Path) -> Result<Vec<X509>, DsigError> {
    let bytes = read_file(path)?;
    certificates_from_bytes(&bytes).map_err(|e| match e {
        DsigError::Key(why) => key_error(format!("{}: {why}", path.display())),
        other => other,
    })
}

/// Reads a public key from PEM/DER: a SubjectPublicKeyInfo or a certificate.
pub fn public_key_from_bytes(bytes: &[u8], crypto: &Crypto) -> Result<PKey<Public>, DsigError> {
    let key = if is_pem(bytes) {
        PKey::public_key_from_pem(bytes)
            .or_else(|_| X509::from_pem(bytes).and_then(|c| c.public_key()))
    } else {
        PKey::public_key_from_der(bytes)
            .or_else(|_| X509::from_der(bytes).and_then(|c| c.public_key()))
    };
    key.map_err(|e| {
        decode_failure(
            bytes,
            crypto,
            format!("not a public key or certificate ({e})"),
        )
    })
}

/// The public key of `cert`, reporting a GOST key without the engine as "GOST not available".
pub(crate) fn certificate_key(cert: &X509, crypto: &Crypto) -> Result<PKey<Public>, DsigError> {
    cert.public_key().map_err(|e| {
        let der = cert.to_der().unwrap_or_default();
        decode_failure(&der, crypto, format!("certificate public key: {e}"))
    })
}

/// A certificate that chained to the anchors once; its key is kept parsed and its validity
/// period as Unix seconds, so a repeat costs a map lookup and a clock read.
pub(crate) struct TrustedCert {
    pub(crate) cert: X509,
    pub(crate) key: PKey<Public>,
    not_before: i64,
    not_after: i64,
    /// DigestVerify contexts set up for this key, one per signature algorithm it was used
    /// with (`None`: OpenSSL cannot copy them): a verification works on a copy instead of
    /// initializing from scratch (as `SigningKey` does for signing).
    verify_templates: Mutex<Vec<(SignatureAlg, Option<MdCtx>)>>,
}

impl TrustedCert {
    /// A fresh DigestVerify context for `alg` with this certificate's key.
    pub(crate) fn verify_context(
        &self,
        alg: SignatureAlg,
        crypto: &Crypto,
    ) -> Result<MdCtx, DsigError> {
        if let Ok(mut templates) = self.verify_templates.lock() {
            let slot = match templates.iter().position(|(a, _)| *a == alg) {
                Some(i) => i,
                None => {
                    let template = verify_context_for(&self.key, alg, crypto)
                        .ok()
                        .filter(|t| copy_context(t).is_some());
                    // A refused copy leaves errors queued; they belong to no caller.
                    let _ = openssl::error::ErrorStack::get();
                    templates.push((alg, template));
                    templates.len() - 1
                }
            };
            if let Some(ctx) = templates[slot].1.as_ref().and_then(copy_context) {
                return Ok(ctx);
            }
        }
        verify_context_for(&self.key, alg, crypto)
    }
}

/// Most distinct KeyInfo certificate sets remembered; beyond it the cache starts over.
const CACHE_LIMIT: usize = 1024;

/// The node's trust anchors (CA, intermediate or self-signed certificates) and a cache of
/// signer certificates that already chained to them, so each signer costs one chain check
/// per process, not one per message. Build it once at start or reload.
pub struct TrustStore {
    store: X509Store,
    crypto: Crypto,
    /// Keyed by the KeyInfo's X509Certificate texts exactly as they appear (joined by `|`).
    cache: RwLock<HashMap<String, Arc<TrustedCert>>>,
}

impl TrustStore {
    /// A store trusting exactly `anchors`.
    pub fn new(anchors: impl IntoIterator<Item = X509>, crypto: Crypto) -> Result<Self, DsigError> {
        let mut b = X509StoreBuilder::new()?;
        // An anchor may be an intermediate CA or the signer's own certificate: the chain
        // ends at any configured certificate, not only at a self-signed root.
        b.set_flags(X509VerifyFlags::PARTIAL_CHAIN)?;
        let mut n = 0;
        for cert in anchors {
            b.add_cert(cert)?;
            n += 1;
        }
        if n == 0 {
            return Err(key_error("the trust store needs at least one certificate"));
        }
        Ok(TrustStore {
            store: b.build(),
            crypto,
            cache: RwLock::new(HashMap::new()),
        })
    }

    /// A store trusting every certificate in the given PEM/DER files.
    pub fn from_files<P: AsRef<Path>>(paths: &[P], crypto: Crypto) -> Result<Self, DsigError> {
        let mut anchors = Vec::new();
        for p in paths {
            anchors.extend(load_certificates(p.as_ref())?);
        }
        Self::new(anchors, crypto)
    }

    /// Which algorithms this store's verifications may use.
    pub fn crypto(&self) -> Crypto {
        self.crypto
    }

    /// Finds the signer among the KeyInfo certificates (base64 texts), checks that it chains
    /// to the anchors (the other certificates may help build the chain; they are not trusted
    /// themselves) and that it is valid now. A certificate set seen before is only re-checked
    /// for its validity period.
    pub(crate) fn check_key_info(&self, texts: &[&str]) -> Result<Arc<TrustedCert>, DsigError> {
        // One certificate (the usual KeyInfo) is its own key: no joined copy per message. The
        // key is the same string `join` gives for one text, so nothing changes in what matches
        // (a text holding `|` is not base64: it only matches the set it spells out).
        let joined;
        let cache_key: &str = match texts {
            [one] => one,
            _ => {
                joined = texts.join("|");
                &joined
            }
        };
        let cached = self
            .cache
            .read()
            .ok()
            .and_then(|c| c.get(cache_key).cloned());
        if let Some(t) = cached {
            check_validity(&t)?;
            return Ok(t);
        }
        let certs: Vec<X509> = texts
            .iter()
            .map(|t| {
                let der = super::decode_base64(t)?;
                X509::from_der(&der)
                    .map_err(|e| DsigError::Malformed(format!("X509Certificate: {e}")))
            })
            .collect::<Result<_, _>>()?;
        let leaf = pick_leaf(&certs)?;
        let mut chain = Stack::new()?;
        for (i, c) in certs.iter().enumerate() {
            if i != leaf {
                chain.push(c.clone())?;
            }
        }
        let cert = certs[leaf].clone();
        let mut ctx = X509StoreContext::new()?;
        let failure = ctx.init(&self.store, &cert, &chain, |c| {
            let ok = c.verify_cert()?;
            Ok(if ok { None } else { Some(c.error()) })
        })?;
        if let Some(err) = failure {
            return Err(chain_error(err));
        }
        let key = certificate_key(&cert, &self.crypto)?;
        let epoch = Asn1Time::from_unix(0)?;
        let unix = |t: &openssl::asn1::Asn1TimeRef| -> Result<i64, DsigError> {
            let d = epoch.diff(t)?;
            Ok(i64::from(d.days) * 86_400 + i64::from(d.secs))
        };
        let trusted = Arc::new(TrustedCert {
            not_before: unix(cert.not_before())?,
            not_after: unix(cert.not_after())?,
            cert,
            key,
            verify_templates: Mutex::new(Vec::new()),
        });
        if let Ok(mut c) = self.cache.write() {
            if c.len() >= CACHE_LIMIT {
                c.clear();
            }
            c.insert(cache_key.to_owned(), trusted.clone());
        }
        Ok(trusted)
    }
}

/// The signer's certificate among several: the one that issued none of the others. With one
/// certificate, that one; when it cannot be told apart, verification fails.
pub(crate) fn pick_leaf(certs: &[X509]) -> Result<usize, DsigError> {
    if certs.len() == 1 {
        return Ok(0);
    }
    let mut leaves = (0..certs.len()).filter(|&i| {
        !certs
            .iter()
            .enumerate()
            .any(|(j, other)| j != i && certs[i].issued(other) == X509VerifyResult::OK)
    });
    match (leaves.next(), leaves.next()) {
        (Some(i), None) => Ok(i),
        _ => Err(DsigError::Malformed(
            "KeyInfo holds several certificates and the signer's cannot be told apart".into(),
        )),
    }
}

fn chain_error(err: X509VerifyResult) -> DsigError {
    // X509_V_ERR_CERT_NOT_YET_VALID = 9, X509_V_ERR_CERT_HAS_EXPIRED = 10.
    match err.as_raw() {
        9 | 10 => DsigError::CertificateExpired(err.error_string().to_owned()),
        _ => DsigError::Untrusted(err.error_string().to_owned()),
    }
}

fn check_validity(t: &TrustedCert) -> Result<(), DsigError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    if now < t.not_before {
        return Err(DsigError::CertificateExpired(
            "certificate is not yet valid".into(),
        ));
    }
    if now > t.not_after {
        return Err(DsigError::CertificateExpired(
            "certificate has expired".into(),
        ));
    }
    Ok(())
}
