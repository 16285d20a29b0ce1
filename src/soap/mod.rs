//! The SMEV 3 message-exchange protocol as the node speaks it: versions, namespaces, MessageIDs,
//! typed envelopes, faults and replies. It must not touch storage, SQL or keys.

pub mod envelope;
pub mod fault;
pub mod reply;

pub use envelope::{Envelope, EnvelopeError, Operation, SendRequest};
pub use fault::{Fault, FaultCode, SignatureFaultCode, SmevFault};

/// SOAP 1.1, the only envelope the node accepts.
pub const SOAP11_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// SOAP 1.2: recognised only to answer with a VersionMismatch fault.
pub const SOAP12_NS: &str = "http://www.w3.org/2003/05/soap-envelope";
/// XML digital signatures.
pub const DS_NS: &str = "http://www.w3.org/2000/09/xmldsig#";

const TYPES_PREFIX: &str = "urn://x-artefacts-smev-gov-ru/services/message-exchange/types/";

/// The SMEV message-exchange schema version a caller used; replies go out in the same one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Version {
    V1_1,
    V1_2,
    V1_3,
}

impl Version {
    pub const ALL: [Version; 3] = [Version::V1_1, Version::V1_2, Version::V1_3];
    /// Used when the caller's version cannot be known (the request was unreadable).
    pub const NEWEST: Version = Version::V1_3;

    pub fn as_str(self) -> &'static str {
        match self {
            Version::V1_1 => "1.1",
            Version::V1_2 => "1.2",
            Version::V1_3 => "1.3",
        }
    }

    /// `urn://x-artefacts-smev-gov-ru/services/message-exchange/types/1.X`
    pub fn types_ns(self) -> &'static str {
        match self {
            Version::V1_1 => "urn://x-artefacts-smev-gov-ru/services/message-exchange/types/1.1",
            Version::V1_2 => "urn://x-artefacts-smev-gov-ru/services/message-exchange/types/1.2",
            Version::V1_3 => "urn://x-artefacts-smev-gov-ru/services/message-exchange/types/1.3",
        }
    }

    /// `.../types/basic/1.X`
    pub fn basic_ns(self) -> &'static str {
        match self {
            Version::V1_1 => {
                "urn://x-artefacts-smev-gov-ru/services/message-exchange/types/basic/1.1"
            }
            Version::V1_2 => {
                "urn://x-artefacts-smev-gov-ru/services/message-exchange/types/basic/1.2"
            }
            Version::V1_3 => {
                "urn://x-artefacts-smev-gov-ru/services/message-exchange/types/basic/1.3"
            }
        }
    }

    /// `.../types/faults/1.X`
    pub fn faults_ns(self) -> &'static str {
        match self {
            Version::V1_1 => {
                "urn://x-artefacts-smev-gov-ru/services/message-exchange/types/faults/1.1"
            }
            Version::V1_2 => {
                "urn://x-artefacts-smev-gov-ru/services/message-exchange/types/faults/1.2"
            }
            Version::V1_3 => {
                "urn://x-artefacts-smev-gov-ru/services/message-exchange/types/faults/1.3"
            }
        }
    }

    /// The version whose types namespace is `ns`.
    pub fn from_types_ns(ns: &str) -> Option<Version> {
        Version::ALL.into_iter().find(|v| v.types_ns() == ns)
    }

    /// Whether `ns` is any version's basic namespace (gateways mix minor versions; be lenient).
    pub fn is_basic_ns(ns: &str) -> bool {
        ns.strip_prefix(TYPES_PREFIX)
            .and_then(|rest| rest.strip_prefix("basic/"))
            .is_some_and(|v| ["1.1", "1.2", "1.3"].contains(&v))
    }
}

/// A MessageID as SMEV requires it: a lowercase, hyphenated RFC 4122 version 1 UUID.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(String);

/// Why a string is not a valid MessageID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("MessageID `{value}` is not a lowercase RFC 4122 version 1 UUID: {reason}")]
pub struct MessageIdError {
    pub value: String,
    pub reason: &'static str,
}

impl MessageId {
    /// Validates `text` (surrounding whitespace is tolerated, nothing else).
    pub fn parse(text: &str) -> Result<MessageId, MessageIdError> {
        let value = text.trim();
        let fail = |reason| {
            Err(MessageIdError {
                value: value.chars().take(80).collect(),
                reason,
            })
        };
        let bytes = value.as_bytes();
        if bytes.len() != 36 {
            return fail("it must be 36 characters long");
        }
        for (i, b) in bytes.iter().enumerate() {
            let ok = match i {
                8 | 13 | 18 | 23 => *b == b'-',
                _ => b.is_ascii_digit() || (b'a'..=b'f').contains(b),
            };
            if !ok {
                return if b.is_ascii_uppercase() {
                    fail("it must be lowercase")
                } else {
                    fail("it must be hex digits in 8-4-4-4-12 groups")
                };
            }
        }
        if bytes[14] != b'1' {
            return fail("its version digit must be 1 (time-based)");
        }
        if !matches!(bytes[19], b'8' | b'9' | b'a' | b'b') {
            return fail("its variant must be RFC 4122");
        }
        Ok(MessageId(value.to_string()))
    }

    /// A fresh time-based MessageID for a message this node creates.
    pub fn generate(node: &[u8; 6]) -> MessageId {
        MessageId(uuid::Uuid::now_v1(node).hyphenated().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for MessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_id_accepts_only_lowercase_v1() {
        assert!(MessageId::parse("e3867df0-effb-11f1-a485-076090a46bf4").is_ok());
        assert!(MessageId::parse(" e3867df0-effb-11f1-a485-076090a46bf4\n").is_ok());
        let upper = MessageId::parse("E3867DF0-EFFB-11F1-A485-076090A46BF4").unwrap_err();
        assert_eq!(upper.reason, "it must be lowercase");
        let v4 = MessageId::parse("e3867df0-effb-41f1-a485-076090a46bf4").unwrap_err();
        assert!(v4.reason.contains("version"));
        assert!(MessageId::parse("e3867df0-effb-11f1-c485-076090a46bf4").is_err());
        assert!(MessageId::parse("e3867df0effb11f1a485076090a46bf4").is_err());
        assert!(MessageId::parse("").is_err());
    }

    #[test]
    fn generated_ids_are_valid_v1_and_distinct() {
        let node = [1, 2, 3, 4, 5, 6];
        let a = MessageId::generate(&node);
        let b = MessageId::generate(&node);
        assert_ne!(a, b);
        assert!(MessageId::parse(a.as_str()).is_ok(), "{a}");
    }

    #[test]
    fn versions_map_namespaces_both_ways() {
        for v in Version::ALL {
            assert_eq!(Version::from_types_ns(v.types_ns()), Some(v));
            assert!(Version::is_basic_ns(v.basic_ns()));
        }
        assert!(!Version::is_basic_ns(Version::V1_3.types_ns()));
    }
}
