//! Certificate revocation: the CRLs named in `trust.crl` (each proven to come from a trust anchor when loaded),
//! the check of a verified signer against them, and development CRLs for `pki revoke`. It must not verify XML.

use std::path::{Path, PathBuf};

use openssl::asn1::{Asn1Object, Asn1OctetString, Asn1Time};
use openssl::ec::PointConversionForm;
use openssl::hash::{MessageDigest, hash};
use openssl::pkey::{PKey, Private};
use openssl::x509::{CrlStatus, X509, X509Crl, X509CrlBuilder, X509Extension, X509RevokedBuilder};

use crate::trust::TrustError;

/// One loaded CRL: who issued it (DER of the issuer name, for matching) and where it came from.
struct Loaded {
    path: PathBuf,
    issuer_der: Vec<u8>,
    crl: X509Crl,
}

/// The node's revocation lists. Empty when `trust.crl` names none: then nothing is checked.
#[derive(Default)]
pub struct Revocations {
    lists: Vec<Loaded>,
}

impl std::fmt::Debug for Revocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.lists.iter().map(|l| l.path.display().to_string()))
            .finish()
    }
}

impl Revocations {
    /// Loads every CRL in `paths`. Each must be signed by one of `anchors` (the `trust.ca` certificates);
    /// a CRL from anyone else could revoke, or fail to revoke, at an attacker's will. An out-of-date CRL
    /// is still used (better than none) and reported in the log and by `doctor`.
    pub fn load(paths: &[PathBuf], anchors: &[X509]) -> Result<Revocations, TrustError> {
        let mut lists = Vec::with_capacity(paths.len());
        for path in paths {
            let crl = read_crl(path)?;
            let issuer_der = crl.issuer_name().to_der()?;
            let signed_by_anchor = anchors.iter().any(|a| {
                a.subject_name().to_der().ok().as_deref() == Some(issuer_der.as_slice())
                    && a.public_key().and_then(|k| crl.verify(&k)).unwrap_or(false)
            });
            if !signed_by_anchor {
                return Err(crl_error(
                    path,
                    "it is not signed by any certificate in trust.ca (add its issuer to trust.ca)",
                ));
            }
            if let Some(stale) = staleness(&crl) {
                tracing::warn!(
                    "CRL {} {stale}: revocation is checked against old data; install a current one",
                    path.display()
                );
            }
            lists.push(Loaded {
                path: path.clone(),
                issuer_der,
                crl,
            });
        }
        Ok(Revocations { lists })
    }

    pub fn is_empty(&self) -> bool {
        self.lists.is_empty()
    }

    /// Why `cert` must be refused, when a CRL from its issuer lists it. A certificate whose issuer
    /// has no CRL here passes: revocation is checked where the admin provided the data.
    pub fn check(&self, cert: &X509) -> Result<(), String> {
        if self.lists.is_empty() {
            return Ok(());
        }
        let Ok(issuer) = cert.issuer_name().to_der() else {
            return Err("the certificate's issuer name cannot be read".into());
        };
        for list in self.lists.iter().filter(|l| l.issuer_der == issuer) {
            if let CrlStatus::Revoked(entry) = list.crl.get_by_cert(cert) {
                let reason = entry
                    .extension::<openssl::x509::ReasonCode>()
                    .ok()
                    .flatten()
                    .map(|(_, code)| format!(", reason: {}", reason_name(code.get_i64().ok())))
                    .unwrap_or_default();
                return Err(format!(
                    "the certificate is revoked since {}{reason} (CRL {})",
                    entry.revocation_date(),
                    list.path.display()
                ));
            }
        }
        Ok(())
    }

    /// One line per CRL for `doctor`: issuer, update times, entries, and whether it is out of date.
    pub fn describe(&self) -> Vec<(String, Result<String, String>)> {
        self.lists
            .iter()
            .map(|l| {
                let entries = l.crl.get_revoked().map_or(0, |r| r.len());
                let next = l.crl.next_update().map_or_else(
                    || "no next update".to_string(),
                    |t| format!("next update {t}"),
                );
                let summary = format!(
                    "{} revoked, issued {}, {next}",
                    entries,
                    l.crl.last_update()
                );
                let verdict = match staleness(&l.crl) {
                    None => Ok(summary),
                    Some(stale) => Err(format!("{summary}: {stale}")),
                };
                (l.path.display().to_string(), verdict)
            })
            .collect()
    }
}

fn read_crl(path: &Path) -> Result<X509Crl, TrustError> {
    let bytes = std::fs::read(path).map_err(|source| TrustError::Io {
        what: format!("reading CRL {}", path.display()),
        source,
    })?;
    let parsed = if bytes.windows(10).any(|w| w == b"-----BEGIN") {
        X509Crl::from_pem(&bytes)
    } else {
        X509Crl::from_der(&bytes)
    };
    parsed.map_err(|e| crl_error(path, &format!("not a PEM or DER CRL ({e})")))
}

fn crl_error(path: &Path, why: &str) -> TrustError {
    TrustError::Crl(format!("CRL {}: {why}", path.display()))
}

/// "is out of date since …" when the CRL's next update has passed.
fn staleness(crl: &X509Crl) -> Option<String> {
    let next = crl.next_update()?;
    let now = Asn1Time::days_from_now(0).ok()?;
    (next < now).then(|| format!("is out of date since {next}"))
}

fn reason_name(code: Option<i64>) -> &'static str {
    // RFC 5280 §5.3.1 CRLReason.
    match code {
        Some(0) => "unspecified",
        Some(1) => "keyCompromise",
        Some(2) => "cACompromise",
        Some(3) => "affiliationChanged",
        Some(4) => "superseded",
        Some(5) => "cessationOfOperation",
        Some(6) => "certificateHold",
        Some(9) => "privilegeWithdrawn",
        Some(10) => "aACompromise",
        _ => "unknown",
    }
}

/// Adds the named parties' certificates of a `pki init` folder to `DIR/ca.crl` (created when missing,
/// earlier entries kept), signed by the folder's CA, valid for 30 days. Returns the CRL's path.
pub fn pki_revoke(dir: &Path, names: &[&str]) -> Result<PathBuf, TrustError> {
    let read = |p: PathBuf| {
        std::fs::read(&p).map_err(|source| TrustError::Io {
            what: format!("reading {}", p.display()),
            source,
        })
    };
    let ca = X509::from_pem(&read(dir.join("ca.crt"))?)?;
    let ca_key: PKey<Private> = PKey::private_key_from_pem(&read(dir.join("ca.key"))?)?;
    let crl_path = dir.join("ca.crl");
    let previous = if crl_path.exists() {
        Some(read_crl(&crl_path)?)
    } else {
        None
    };
    let mut b = X509CrlBuilder::new()?;
    b.set_issuer_name(ca.subject_name())?;
    let now = Asn1Time::days_from_now(0)?;
    let next = Asn1Time::days_from_now(30)?;
    b.set_last_update(&now)?;
    b.set_next_update(&next)?;
    let mut number = 1;
    if let Some(prev) = &previous {
        for entry in prev.get_revoked().into_iter().flatten() {
            let mut r = X509RevokedBuilder::new()?;
            r.set_serial_number(entry.serial_number())?;
            r.set_revocation_date(entry.revocation_date())?;
            b.add_revoked(r.build())?;
        }
        number += prev
            .extension::<openssl::x509::CrlNumber>()
            .ok()
            .flatten()
            .and_then(|(_, n)| n.to_bn().ok())
            .and_then(|n| n.to_dec_str().ok()?.parse::<u32>().ok())
            .unwrap_or(0);
    }
    for name in names {
        let cert = X509::from_pem(&read(dir.join(format!("{}.crt", name.to_lowercase())))?)?;
        let mut r = X509RevokedBuilder::new()?;
        r.set_serial_number(cert.serial_number())?;
        r.set_revocation_date(&now)?;
        b.add_revoked(r.build())?;
    }
    b.append_extension(authority_key_identifier(&ca)?)?;
    b.append_extension(crl_number(number)?)?;
    b.sort()?;
    b.sign(&ca_key, MessageDigest::sha256())?;
    let crl = b.build()?;
    std::fs::write(&crl_path, crl.to_pem()?).map_err(|source| TrustError::Io {
        what: format!("writing {}", crl_path.display()),
        source,
    })?;
    Ok(crl_path)
}

/// AuthorityKeyIdentifier { keyIdentifier = SHA-1 of the CA's public key bits } (RFC 5280 §4.2.1.2).
fn authority_key_identifier(ca: &X509) -> Result<X509Extension, TrustError> {
    let key = ca.public_key()?;
    let bits = match key.ec_key() {
        Ok(ec) => {
            let mut ctx = openssl::bn::BigNumContext::new()?;
            ec.public_key()
                .to_bytes(ec.group(), PointConversionForm::UNCOMPRESSED, &mut ctx)?
        }
        Err(_) => key.public_key_to_der()?,
    };
    let id = hash(MessageDigest::sha1(), &bits)?;
    // SEQUENCE { [0] IMPLICIT OCTET STRING (20 bytes) }
    let mut der = vec![0x30, 0x16, 0x80, 0x14];
    der.extend_from_slice(&id);
    let oid = Asn1Object::from_str("2.5.29.35")?;
    let value = Asn1OctetString::new_from_bytes(&der)?;
    Ok(X509Extension::new_from_der(&oid, false, &value)?)
}

/// CRLNumber ::= INTEGER (DER: minimal big-endian two's complement).
fn crl_number(n: u32) -> Result<X509Extension, TrustError> {
    let mut content: Vec<u8> = n
        .to_be_bytes()
        .into_iter()
        .skip_while(|&b| b == 0)
        .collect();
    if content.first().is_none_or(|&b| b & 0x80 != 0) {
        content.insert(0, 0);
    }
    let mut der = vec![0x02, content.len() as u8];
    der.extend_from_slice(&content);
    let oid = Asn1Object::from_str("2.5.29.20")?;
    let value = Asn1OctetString::new_from_bytes(&der)?;
    Ok(X509Extension::new_from_der(&oid, false, &value)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_cert(path: &Path) -> X509 {
        X509::from_pem(&std::fs::read(path).expect("read")).expect("certificate")
    }

    #[test]
    fn a_crl_works_the_same_in_pem_and_in_der() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki =
            crate::trust::pki_init(dir.path(), "NODE", &["AGENCY_B", "AGENCY_C"]).expect("pki");
        let pem = pki_revoke(dir.path(), &["AGENCY_C"]).expect("revoke");
        let der = dir.path().join("ca.der.crl");
        let crl = X509Crl::from_pem(&std::fs::read(&pem).expect("pem")).expect("crl");
        std::fs::write(&der, crl.to_der().expect("to der")).expect("write der");
        let anchors = [read_cert(&pki.ca)];
        let cert = |name: &str| {
            let party = pki.parties.iter().find(|p| p.0 == name).expect("party");
            read_cert(&party.2)
        };
        for path in [pem, der] {
            let lists = Revocations::load(std::slice::from_ref(&path), &anchors)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let refused = lists
                .check(&cert("AGENCY_C"))
                .expect_err("AGENCY_C is revoked");
            assert!(
                refused.contains("revoked since") && refused.contains(&path.display().to_string()),
                "{refused}"
            );
            assert_eq!(lists.check(&cert("AGENCY_B")), Ok(()), "{}", path.display());
        }
    }

    #[test]
    fn a_file_that_is_no_crl_is_refused_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("junk.crl");
        std::fs::write(&path, b"\x30\x03\x02\x01\x00").expect("write");
        let err = Revocations::load(std::slice::from_ref(&path), &[]).expect_err("junk");
        assert!(err.to_string().contains("junk.crl"), "{err}");
    }
}
