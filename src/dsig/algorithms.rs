//! Owns the XMLDSig algorithm identifiers (digest, signature, transforms) and the streaming digest sink.
//! Must not parse XML or touch keys beyond mapping algorithms to OpenSSL/RustCrypto primitives.

use std::io::Write;

use openssl::hash::{Hasher, MessageDigest};
use openssl::nid::Nid;
use openssl::pkey::{HasPublic, Id, PKeyRef};

use super::DsigError;
use super::gost::{Crypto, NID_GOST3410_2012_256, NID_GOST3410_2012_512, engine_digest};

pub const DSIG_NS: &str = "http://www.w3.org/2000/09/xmldsig#";
pub const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
pub const XPATH: &str = "http://www.w3.org/TR/1999/REC-xpath-19991116";

/// Reference digest algorithms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DigestAlg {
    /// SHA-1: accepted when verifying other parties' signatures, flagged weak, never used to sign.
    Sha1,
    Sha256,
    Sha384,
    Sha512,
    /// GOST R 34.11-2012 256 bit (Streebog-256).
    Gost256,
    /// GOST R 34.11-2012 512 bit (Streebog-512).
    Gost512,
}

impl DigestAlg {
    pub fn from_uri(uri: &str) -> Result<Self, DsigError> {
        Ok(match uri {
            "http://www.w3.org/2000/09/xmldsig#sha1" => DigestAlg::Sha1,
            "http://www.w3.org/2001/04/xmlenc#sha256" => DigestAlg::Sha256,
            "http://www.w3.org/2001/04/xmldsig-more#sha384" => DigestAlg::Sha384,
            "http://www.w3.org/2001/04/xmlenc#sha512" => DigestAlg::Sha512,
            "urn:ietf:params:xml:ns:cpxmlsec:algorithms:gostr34112012-256"
            | "http://www.w3.org/2001/04/xmldsig-more#gostr34112012-256" => DigestAlg::Gost256,
            "urn:ietf:params:xml:ns:cpxmlsec:algorithms:gostr34112012-512"
            | "http://www.w3.org/2001/04/xmldsig-more#gostr34112012-512" => DigestAlg::Gost512,
            other => return Err(DsigError::UnsupportedAlgorithm(other.to_owned())),
        })
    }

    pub fn uri(self) -> &'static str {
        match self {
            DigestAlg::Sha1 => "http://www.w3.org/2000/09/xmldsig#sha1",
            DigestAlg::Sha256 => "http://www.w3.org/2001/04/xmlenc#sha256",
            DigestAlg::Sha384 => "http://www.w3.org/2001/04/xmldsig-more#sha384",
            DigestAlg::Sha512 => "http://www.w3.org/2001/04/xmlenc#sha512",
            DigestAlg::Gost256 => "urn:ietf:params:xml:ns:cpxmlsec:algorithms:gostr34112012-256",
            DigestAlg::Gost512 => "urn:ietf:params:xml:ns:cpxmlsec:algorithms:gostr34112012-512",
        }
    }

    /// Whether the algorithm is too weak to sign with (verification reports it).
    pub fn is_weak(self) -> bool {
        self == DigestAlg::Sha1
    }

    /// A fresh streaming sink for this digest.
    pub fn sink(self) -> Result<DigestSink, DsigError> {
        DigestSink::new(self)
    }
}

/// Signature algorithms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignatureAlg {
    EcdsaSha256,
    EcdsaSha384,
    EcdsaSha512,
    /// RSA PKCS#1 v1.5 with SHA-1: verification only, flagged weak.
    RsaSha1,
    RsaSha256,
    RsaSha384,
    RsaSha512,
    /// RSASSA-PSS, SHA-256, MGF1-SHA-256, salt length 32 (RFC 6931).
    RsaPssSha256,
    /// RSASSA-PSS with SHA-384 (salt 48).
    RsaPssSha384,
    /// RSASSA-PSS with SHA-512 (salt 64).
    RsaPssSha512,
    /// GOST R 34.10-2012 with GOST R 34.11-2012 256 (needs the OpenSSL GOST engine).
    Gost2012_256,
    /// GOST R 34.10-2012 with GOST R 34.11-2012 512 (needs the OpenSSL GOST engine).
    Gost2012_512,
}

/// The key family a signature algorithm needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyFamily {
    Rsa,
    Ec,
    Gost256,
    Gost512,
}

impl SignatureAlg {
    pub fn from_uri(uri: &str) -> Result<Self, DsigError> {
        Ok(match uri {
            "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256" => SignatureAlg::EcdsaSha256,
            "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384" => SignatureAlg::EcdsaSha384,
            "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512" => SignatureAlg::EcdsaSha512,
            "http://www.w3.org/2000/09/xmldsig#rsa-sha1" => SignatureAlg::RsaSha1,
            "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256" => SignatureAlg::RsaSha256,
            "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384" => SignatureAlg::RsaSha384,
            "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512" => SignatureAlg::RsaSha512,
            "http://www.w3.org/2007/05/xmldsig-more#sha256-rsa-MGF1" => SignatureAlg::RsaPssSha256,
            "http://www.w3.org/2007/05/xmldsig-more#sha384-rsa-MGF1" => SignatureAlg::RsaPssSha384,
            "http://www.w3.org/2007/05/xmldsig-more#sha512-rsa-MGF1" => SignatureAlg::RsaPssSha512,
            "urn:ietf:params:xml:ns:cpxmlsec:algorithms:gostr34102012-gostr34112012-256"
            | "http://www.w3.org/2001/04/xmldsig-more#gostr34102012-gostr34112012-256" => {
                SignatureAlg::Gost2012_256
            }
            "urn:ietf:params:xml:ns:cpxmlsec:algorithms:gostr34102012-gostr34112012-512"
            | "http://www.w3.org/2001/04/xmldsig-more#gostr34102012-gostr34112012-512" => {
                SignatureAlg::Gost2012_512
            }
            other => return Err(DsigError::UnsupportedAlgorithm(other.to_owned())),
        })
    }

    pub fn uri(self) -> &'static str {
        match self {
            SignatureAlg::EcdsaSha256 => "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
            SignatureAlg::EcdsaSha384 => "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384",
            SignatureAlg::EcdsaSha512 => "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512",
            SignatureAlg::RsaSha1 => "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
            SignatureAlg::RsaSha256 => "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
            SignatureAlg::RsaSha384 => "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384",
            SignatureAlg::RsaSha512 => "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
            SignatureAlg::RsaPssSha256 => "http://www.w3.org/2007/05/xmldsig-more#sha256-rsa-MGF1",
            SignatureAlg::RsaPssSha384 => "http://www.w3.org/2007/05/xmldsig-more#sha384-rsa-MGF1",
            SignatureAlg::RsaPssSha512 => "http://www.w3.org/2007/05/xmldsig-more#sha512-rsa-MGF1",
            SignatureAlg::Gost2012_256 => {
                "urn:ietf:params:xml:ns:cpxmlsec:algorithms:gostr34102012-gostr34112012-256"
            }
            SignatureAlg::Gost2012_512 => {
                "urn:ietf:params:xml:ns:cpxmlsec:algorithms:gostr34102012-gostr34112012-512"
            }
        }
    }

    /// A short human name (CLI output, logs).
    pub fn name(self) -> &'static str {
        match self {
            SignatureAlg::EcdsaSha256 => "ECDSA-SHA256",
            SignatureAlg::EcdsaSha384 => "ECDSA-SHA384",
            SignatureAlg::EcdsaSha512 => "ECDSA-SHA512",
            SignatureAlg::RsaSha1 => "RSA-SHA1",
            SignatureAlg::RsaSha256 => "RSA-SHA256",
            SignatureAlg::RsaSha384 => "RSA-SHA384",
            SignatureAlg::RsaSha512 => "RSA-SHA512",
            SignatureAlg::RsaPssSha256 => "RSA-PSS-SHA256",
            SignatureAlg::RsaPssSha384 => "RSA-PSS-SHA384",
            SignatureAlg::RsaPssSha512 => "RSA-PSS-SHA512",
            SignatureAlg::Gost2012_256 => "GOST R 34.10-2012-256",
            SignatureAlg::Gost2012_512 => "GOST R 34.10-2012-512",
        }
    }

    /// Whether the algorithm is too weak to sign with (verification reports it).
    pub fn is_weak(self) -> bool {
        self == SignatureAlg::RsaSha1
    }

    /// The key family the algorithm needs.
    pub fn key_family(self) -> KeyFamily {
        match self {
            SignatureAlg::EcdsaSha256 | SignatureAlg::EcdsaSha384 | SignatureAlg::EcdsaSha512 => {
                KeyFamily::Ec
            }
            SignatureAlg::Gost2012_256 => KeyFamily::Gost256,
            SignatureAlg::Gost2012_512 => KeyFamily::Gost512,
            _ => KeyFamily::Rsa,
        }
    }

    /// The hash OpenSSL applies; GOST needs the engine (`crypto`).
    pub(crate) fn message_digest(self, crypto: &Crypto) -> Result<MessageDigest, DsigError> {
        match self {
            SignatureAlg::RsaSha1 => Ok(MessageDigest::sha1()),
            SignatureAlg::EcdsaSha256 | SignatureAlg::RsaSha256 | SignatureAlg::RsaPssSha256 => {
                Ok(MessageDigest::sha256())
            }
            SignatureAlg::EcdsaSha384 | SignatureAlg::RsaSha384 | SignatureAlg::RsaPssSha384 => {
                Ok(MessageDigest::sha384())
            }
            SignatureAlg::EcdsaSha512 | SignatureAlg::RsaSha512 | SignatureAlg::RsaPssSha512 => {
                Ok(MessageDigest::sha512())
            }
            SignatureAlg::Gost2012_256 => crypto.gost_digest(false),
            SignatureAlg::Gost2012_512 => crypto.gost_digest(true),
        }
    }

    pub(crate) fn is_ecdsa(self) -> bool {
        self.key_family() == KeyFamily::Ec
    }

    pub(crate) fn is_pss(self) -> bool {
        matches!(
            self,
            SignatureAlg::RsaPssSha256 | SignatureAlg::RsaPssSha384 | SignatureAlg::RsaPssSha512
        )
    }

    /// The algorithm a key signs with by default: ECDSA with the hash matching the curve,
    /// RSA-SHA256, or the GOST pair matching the key size.
    pub fn default_for(key: &PKeyRef<impl HasPublic>) -> Result<Self, DsigError> {
        match key.id() {
            Id::RSA => Ok(SignatureAlg::RsaSha256),
            Id::EC => {
                let bits = key.ec_key()?.group().degree();
                Ok(if bits <= 256 {
                    SignatureAlg::EcdsaSha256
                } else if bits <= 384 {
                    SignatureAlg::EcdsaSha384
                } else {
                    SignatureAlg::EcdsaSha512
                })
            }
            id if Nid::from_raw(id.as_raw()) == NID_GOST3410_2012_256 => {
                Ok(SignatureAlg::Gost2012_256)
            }
            id if Nid::from_raw(id.as_raw()) == NID_GOST3410_2012_512 => {
                Ok(SignatureAlg::Gost2012_512)
            }
            _ => Err(DsigError::KeyMismatch(
                "unsupported key type (RSA, EC or GOST R 34.10-2012 expected)".into(),
            )),
        }
    }

    /// Checks that `key` is of the family this algorithm needs.
    pub(crate) fn check_key(self, key: &PKeyRef<impl HasPublic>) -> Result<(), DsigError> {
        let raw = key.id().as_raw();
        let ok = match self.key_family() {
            KeyFamily::Rsa => key.id() == Id::RSA || key.id() == Id::RSA_PSS,
            KeyFamily::Ec => key.id() == Id::EC,
            KeyFamily::Gost256 => Nid::from_raw(raw) == NID_GOST3410_2012_256,
            KeyFamily::Gost512 => Nid::from_raw(raw) == NID_GOST3410_2012_512,
        };
        if ok {
            Ok(())
        } else {
            Err(DsigError::KeyMismatch(format!(
                "{} needs a {:?} key",
                self.name(),
                self.key_family()
            )))
        }
    }
}

enum SinkInner {
    Openssl(Hasher),
    Streebog256(streebog::Streebog256),
    Streebog512(streebog::Streebog512),
}

/// A `Write` that digests what canonicalization streams into it, batching the many small
/// writes into one buffer before they reach the hash.
pub struct DigestSink {
    inner: SinkInner,
    buf: Vec<u8>,
}

const SINK_BUF: usize = 4096;

impl DigestSink {
    pub fn new(alg: DigestAlg) -> Result<Self, DsigError> {
        let inner = match alg {
            DigestAlg::Sha1 => SinkInner::Openssl(Hasher::new(MessageDigest::sha1())?),
            DigestAlg::Sha256 => SinkInner::Openssl(Hasher::new(MessageDigest::sha256())?),
            DigestAlg::Sha384 => SinkInner::Openssl(Hasher::new(MessageDigest::sha384())?),
            DigestAlg::Sha512 => SinkInner::Openssl(Hasher::new(MessageDigest::sha512())?),
            DigestAlg::Gost256 => match engine_digest(false) {
                Some(md) => SinkInner::Openssl(Hasher::new(md)?),
                None => SinkInner::Streebog256(Default::default()),
            },
            DigestAlg::Gost512 => match engine_digest(true) {
                Some(md) => SinkInner::Openssl(Hasher::new(md)?),
                None => SinkInner::Streebog512(Default::default()),
            },
        };
        Ok(DigestSink {
            inner,
            buf: Vec::with_capacity(SINK_BUF),
        })
    }

    fn hash(inner: &mut SinkInner, data: &[u8]) -> std::io::Result<()> {
        use streebog::Digest;
        match inner {
            SinkInner::Openssl(h) => h.update(data).map_err(std::io::Error::other)?,
            SinkInner::Streebog256(h) => h.update(data),
            SinkInner::Streebog512(h) => h.update(data),
        }
        Ok(())
    }

    fn drain(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            Self::hash(&mut self.inner, &self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    /// The digest of everything written.
    pub fn finish(mut self) -> Result<Vec<u8>, DsigError> {
        use streebog::Digest;
        self.drain()?;
        Ok(match self.inner {
            SinkInner::Openssl(mut h) => h.finish()?.to_vec(),
            SinkInner::Streebog256(h) => h.finalize().to_vec(),
            SinkInner::Streebog512(h) => h.finalize().to_vec(),
        })
    }
}

impl DigestSink {
    #[cold]
    fn write_through(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.drain()?;
        if data.len() >= SINK_BUF {
            Self::hash(&mut self.inner, data)
        } else {
            self.buf.extend_from_slice(data);
            Ok(())
        }
    }
}

impl Write for DigestSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.write_all(data)?;
        Ok(data.len())
    }

    // Canonicalization writes many pieces of a few bytes each: the common case (room left in
    // the buffer) is inlined into the writer, the rest goes through `write_through`.
    #[inline]
    fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        if self.buf.len() + data.len() <= SINK_BUF {
            self.buf.extend_from_slice(data);
            Ok(())
        } else {
            self.write_through(data)
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
