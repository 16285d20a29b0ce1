//! Trust on the wire: the node's signing key, its trust store, who a verified signer is (sender identity),
//! and the development PKI (`pki init`). Loaded once at start; it must not parse SOAP or decide faults.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{BasicConstraints, KeyUsage};
use openssl::x509::{X509, X509NameBuilder};

use crate::config::Config;
use crate::dsig::tools::DevKeyAlg;
use crate::dsig::{Crypto, KeyFamily, SignatureAlg, SigningKey, TrustStore};
use crate::revocation::Revocations;

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error(
        "private key {path} is readable by group or others (mode {mode:o}): fix it with `chmod 600 {path}`"
    )]
    KeyPermissions { path: String, mode: u32 },
    #[error("{0}")]
    Dsig(#[from] crate::dsig::DsigError),
    #[error("key password: {0}")]
    Password(String),
    #[error(
        "no trust store: set trust.ca to the CA certificates whose signatures this node accepts (verification cannot be turned off)"
    )]
    NoTrustStore,
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Crl(String),
    #[error("certificates: {0}")]
    Openssl(#[from] openssl::error::ErrorStack),
}

/// How the sender's mnemonic is read from a verified certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SenderFrom {
    /// The subject's common name is the mnemonic.
    CommonName,
    /// The subject's OGRN (1.2.643.100.1), mapped through `trust.senders`.
    Ogrn,
    /// The subject's SNILS (1.2.643.100.3), mapped through `trust.senders`.
    Snils,
    /// The certificate's SHA-256 fingerprint (hex), mapped through `trust.senders`.
    Fingerprint,
}

/// Everything the node needs to verify and sign, built once.
pub struct Trust {
    pub crypto: Crypto,
    pub key: SigningKey,
    pub store: TrustStore,
    /// `trust.crl`: a verified signer listed there is refused.
    pub revocations: Revocations,
    pub sender_from: SenderFrom,
    /// OGRN / SNILS / fingerprint → mnemonic.
    pub senders: HashMap<String, String>,
}

impl Trust {
    /// Loads the configured key (or generates development keys into data_dir) and the trust store.
    pub fn load(config: &Config) -> Result<Trust, TrustError> {
        let crypto = Crypto::load();
        if let Some(why) = crypto.gost_status() {
            tracing::warn!("{why}; RSA and ECDSA keep working");
        }
        let key = match (&config.keys.private_key, &config.keys.certificate) {
            (Some(key), cert) => {
                check_private_permissions(key)?;
                let password = password(config)?;
                SigningKey::from_files(
                    key,
                    cert.as_deref(),
                    password.as_deref(),
                    config.keys.algorithm,
                    crypto,
                )?
            }
            (None, _) => {
                let alg = config.keys.algorithm.unwrap_or(if crypto.gost_available() {
                    SignatureAlg::Gost2012_256
                } else {
                    SignatureAlg::EcdsaSha256
                });
                development_key(&config.data_dir, &config.node.mnemonic, alg, crypto)?
            }
        };
        if config.trust.ca.is_empty() {
            return Err(TrustError::NoTrustStore);
        }
        let store = TrustStore::from_files(&config.trust.ca, crypto)?;
        let revocations = if config.trust.crl.is_empty() {
            Revocations::default()
        } else {
            let mut anchors = Vec::new();
            for path in &config.trust.ca {
                anchors.extend(crate::dsig::load_certificates(path)?);
            }
            Revocations::load(&config.trust.crl, &anchors)?
        };
        Ok(Trust {
            crypto,
            key,
            store,
            revocations,
            sender_from: config.trust.sender_from.clone(),
            senders: config.trust.senders.clone(),
        })
    }

    /// The mnemonic of the signer, or why it is not a registered sender.
    pub fn sender_of(&self, cert: &X509) -> Result<String, String> {
        let subject = |nid: Option<Nid>, oid: &str| -> Option<String> {
            cert.subject_name().entries().find_map(|e| {
                let matches =
                    nid.is_some_and(|n| e.object().nid() == n) || e.object().to_string() == oid;
                matches.then(|| String::from_utf8_lossy(e.data().as_slice()).into_owned())
            })
        };
        let mapped = |key: Option<String>, what: &str| -> Result<String, String> {
            let key = key.ok_or_else(|| format!("the certificate has no {what}"))?;
            self.senders
                .get(&key)
                .cloned()
                .ok_or_else(|| format!("{what} {key} is not in trust.senders"))
        };
        match self.sender_from {
            SenderFrom::CommonName => subject(Some(Nid::COMMONNAME), "2.5.4.3")
                .filter(|cn| !cn.is_empty())
                .ok_or_else(|| "the certificate has no common name".to_string()),
            SenderFrom::Ogrn => mapped(
                subject(None, "1.2.643.100.1").or_else(|| subject(None, "OGRN")),
                "OGRN",
            ),
            SenderFrom::Snils => mapped(
                subject(None, "1.2.643.100.3").or_else(|| subject(None, "SNILS")),
                "SNILS",
            ),
            SenderFrom::Fingerprint => {
                let digest = cert
                    .digest(MessageDigest::sha256())
                    .map_err(|e| e.to_string())?;
                mapped(
                    Some(digest.iter().map(|b| format!("{b:02x}")).collect()),
                    "certificate fingerprint",
                )
            }
        }
    }
}

/// Compares a presented token with the configured one without leaking where they first differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A private key file must be readable by its owner only.
pub fn check_private_permissions(path: &Path) -> Result<(), TrustError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|source| TrustError::Io {
            what: format!("private key {}", path.display()),
            source,
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(TrustError::KeyPermissions {
                path: path.display().to_string(),
                mode,
            });
        }
    }
    Ok(())
}

fn password(config: &Config) -> Result<Option<String>, TrustError> {
    if let Some(file) = &config.keys.password_file {
        return crate::config::read_secret_file(file)
            .map(Some)
            .map_err(TrustError::Password);
    }
    if let Some(var) = &config.keys.password_env {
        return std::env::var(var)
            .map(Some)
            .map_err(|_| TrustError::Password(format!("environment variable {var} is not set")));
    }
    Ok(None)
}

/// The development key in `data_dir/dev-keys/` for `alg`, created on first use (and again when the
/// algorithm changed) with a loud warning.
fn development_key(
    data_dir: &Path,
    mnemonic: &str,
    alg: SignatureAlg,
    crypto: Crypto,
) -> Result<SigningKey, TrustError> {
    let dir = data_dir.join("dev-keys");
    let (key, cert) = (dir.join("node.key"), dir.join("node.crt"));
    let existing = key
        .exists()
        .then(|| SigningKey::from_files(&key, Some(&cert), None, Some(alg), crypto));
    let signing = match existing {
        Some(Ok(signing)) => signing,
        Some(Err(e)) if key_family_changed(&e) => {
            tracing::warn!(
                "the development key in {} does not fit {}: making a new one",
                dir.display(),
                alg.name()
            );
            new_development_key(&dir, mnemonic, alg, crypto)?
        }
        Some(Err(e)) => return Err(e.into()),
        None => new_development_key(&dir, mnemonic, alg, crypto)?,
    };
    tracing::warn!(
        "DEVELOPMENT KEYS: no [keys] in the config, so this node signs ({}) with a self-generated key in {} — \
         for development only; production needs keys.private_key and keys.certificate from your CA",
        alg.name(),
        dir.display()
    );
    check_private_permissions(&key)?;
    Ok(signing)
}

fn key_family_changed(e: &crate::dsig::DsigError) -> bool {
    matches!(e, crate::dsig::DsigError::KeyMismatch(_))
}

fn new_development_key(
    dir: &Path,
    mnemonic: &str,
    alg: SignatureAlg,
    crypto: Crypto,
) -> Result<SigningKey, TrustError> {
    std::fs::create_dir_all(dir).map_err(|source| TrustError::Io {
        what: format!("creating {}", dir.display()),
        source,
    })?;
    let kind = match alg.key_family() {
        KeyFamily::Gost256 => DevKeyAlg::Gost2012_256,
        KeyFamily::Gost512 => DevKeyAlg::Gost2012_512,
        KeyFamily::Rsa => DevKeyAlg::Rsa,
        KeyFamily::Ec => DevKeyAlg::Ecdsa,
    };
    let k = crate::dsig::tools::generate_key(kind, &crypto)?;
    let c = crate::dsig::tools::self_signed_certificate(&k, mnemonic, 365, &crypto)?;
    let (key, cert) = (dir.join("node.key"), dir.join("node.crt"));
    write_private(&key, &k.private_key_to_pem_pkcs8()?)?;
    write_file(&cert, &c.to_pem()?)?;
    Ok(SigningKey::new(k, &c, alg, crypto)?)
}

fn ec_key() -> Result<PKey<Private>, TrustError> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    Ok(PKey::from_ec_key(EcKey::generate(&group)?)?)
}

/// A certificate for `key` with CN `cn`, issued by `issuer` (or self-signed), valid for `days`.
fn certificate(
    key: &PKey<Private>,
    cn: &str,
    issuer: Option<(&X509, &PKey<Private>)>,
    days: u32,
) -> Result<X509, TrustError> {
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::COMMONNAME, cn)?;
    let name = name.build();
    let mut b = X509::builder()?;
    b.set_version(2)?;
    let mut serial = BigNum::new()?;
    serial.rand(127, MsbOption::MAYBE_ZERO, false)?;
    let serial = serial.to_asn1_integer()?;
    b.set_serial_number(&serial)?;
    b.set_subject_name(&name)?;
    let (not_before, not_after) = (Asn1Time::days_from_now(0)?, Asn1Time::days_from_now(days)?);
    b.set_not_before(&not_before)?;
    b.set_not_after(&not_after)?;
    b.set_pubkey(key)?;
    match issuer {
        Some((ca, ca_key)) => {
            b.set_issuer_name(ca.subject_name())?;
            b.append_extension(
                KeyUsage::new()
                    .critical()
                    .digital_signature()
                    .non_repudiation()
                    .build()?,
            )?;
            b.sign(ca_key, MessageDigest::sha256())?;
        }
        None => {
            b.set_issuer_name(&name)?;
            b.append_extension(BasicConstraints::new().critical().ca().build()?)?;
            b.append_extension(
                KeyUsage::new()
                    .critical()
                    .key_cert_sign()
                    .crl_sign()
                    .digital_signature()
                    .build()?,
            )?;
            b.sign(key, MessageDigest::sha256())?;
        }
    }
    Ok(b.build())
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TrustError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let io = |source| TrustError::Io {
        what: format!("writing {}", path.display()),
        source,
    };
    let mut f = options.open(path).map_err(io)?;
    f.write_all(bytes).map_err(io)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), TrustError> {
    std::fs::write(path, bytes).map_err(|source| TrustError::Io {
        what: format!("writing {}", path.display()),
        source,
    })
}

/// What `pki init` wrote.
#[derive(Debug, Clone)]
pub struct Pki {
    pub ca: PathBuf,
    /// (mnemonic, key, certificate) for the node and each other agency.
    pub parties: Vec<(String, PathBuf, PathBuf)>,
}

/// Creates a development PKI in `dir`: a test CA, a certificate for `node` and one per agency in `others`
/// (ECDSA P-256; the CN is the mnemonic). Keys are written owner-only.
pub fn pki_init(dir: &Path, node: &str, others: &[&str]) -> Result<Pki, TrustError> {
    std::fs::create_dir_all(dir).map_err(|source| TrustError::Io {
        what: format!("creating {}", dir.display()),
        source,
    })?;
    let ca_key = ec_key()?;
    // A unique name: chain building finds issuers by name, so two development CAs must not share one.
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let ca = certificate(
        &ca_key,
        &format!("smev-adapter development CA {}", &suffix[..8]),
        None,
        3650,
    )?;
    let ca_path = dir.join("ca.crt");
    write_file(&ca_path, &ca.to_pem()?)?;
    write_private(&dir.join("ca.key"), &ca_key.private_key_to_pem_pkcs8()?)?;
    let mut parties = Vec::new();
    for name in std::iter::once(node).chain(others.iter().copied()) {
        let key = ec_key()?;
        let cert = certificate(&key, name, Some((&ca, &ca_key)), 1825)?;
        let stem = name.to_lowercase();
        let (key_path, cert_path) = (
            dir.join(format!("{stem}.key")),
            dir.join(format!("{stem}.crt")),
        );
        write_private(&key_path, &key.private_key_to_pem_pkcs8()?)?;
        write_file(&cert_path, &cert.to_pem()?)?;
        parties.push((name.to_string(), key_path, cert_path));
    }
    Ok(Pki {
        ca: ca_path,
        parties,
    })
}
