//! The value types of mapping parameters and response fields: parsing request text into typed values,
//! and formatting database text as xs:date / xs:dateTime / xs:boolean / xs:decimal. No I/O, no SQL.

use std::fmt;

use crate::datasource::BindValue;

/// The type of a parameter or a response field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    String,
    Int,
    Decimal,
    Date,
    DateTime,
    Bool,
}

impl ValueType {
    pub const NAMES: &'static str = "string, int, decimal, date, datetime, bool";

    pub fn parse_name(name: &str) -> Option<ValueType> {
        Some(match name {
            "string" => ValueType::String,
            "int" | "integer" => ValueType::Int,
            "decimal" => ValueType::Decimal,
            "date" => ValueType::Date,
            "datetime" => ValueType::DateTime,
            "bool" | "boolean" => ValueType::Bool,
            _ => return None,
        })
    }

    /// Whether `min`/`max` make sense for the type.
    pub fn is_ordered(self) -> bool {
        matches!(self, ValueType::Int | ValueType::Decimal | ValueType::Date)
    }

    /// Parses request text (already trimmed) into a bind value, or says why it is not of this type.
    pub fn parse(self, text: &str) -> Result<BindValue, String> {
        match self {
            ValueType::String => Ok(BindValue::Text(text.to_string())),
            ValueType::Int => text
                .strip_prefix('+')
                .unwrap_or(text)
                .parse::<i64>()
                .ok()
                .filter(|_| !text.is_empty() && text.bytes().skip(1).all(|b| b.is_ascii_digit()))
                .map(BindValue::Int)
                .ok_or_else(|| "is not an integer".to_string()),
            ValueType::Decimal => {
                if is_decimal(text) {
                    Ok(BindValue::Decimal(text.to_string()))
                } else {
                    Err("is not a decimal number like 1234.56".into())
                }
            }
            ValueType::Date => {
                if is_date(text) {
                    Ok(BindValue::Date(text.to_string()))
                } else {
                    Err("is not a date YYYY-MM-DD".into())
                }
            }
            ValueType::DateTime => {
                if is_datetime(text) {
                    Ok(BindValue::DateTime(text.to_string()))
                } else {
                    Err("is not a date-time YYYY-MM-DDThh:mm:ss[.fff][Z|±hh:mm]".into())
                }
            }
            ValueType::Bool => match text {
                "true" | "1" => Ok(BindValue::Bool(true)),
                "false" | "0" => Ok(BindValue::Bool(false)),
                _ => Err("is not a boolean (true, false, 1 or 0)".into()),
            },
        }
    }

    /// Formats a database value for the response, or says why it cannot be one of this type.
    pub fn format(self, value: &str) -> Result<String, String> {
        match self {
            ValueType::String => Ok(value.to_string()),
            ValueType::Int => {
                let v = value.strip_suffix(".0").unwrap_or(value);
                if v.parse::<i64>().is_ok() {
                    Ok(v.to_string())
                } else {
                    Err(format!("`{value}` is not an integer"))
                }
            }
            ValueType::Decimal => {
                if is_decimal(value) {
                    Ok(value.to_string())
                } else {
                    Err(format!("`{value}` is not a decimal"))
                }
            }
            ValueType::Date => {
                let d = value.get(..10).unwrap_or(value);
                let rest = value.get(10..).unwrap_or("");
                if is_date(d) && (rest.is_empty() || rest.starts_with(['T', ' '])) {
                    Ok(d.to_string())
                } else {
                    Err(format!("`{value}` is not a date"))
                }
            }
            ValueType::DateTime => {
                let mut v = value.to_string();
                if v.len() == 10 && is_date(&v) {
                    v.push_str("T00:00:00");
                } else if v.as_bytes().get(10) == Some(&b' ') {
                    v.replace_range(10..11, "T");
                }
                // "+00" style zones (PostgreSQL text) become "+00:00".
                if let Some(sign_at) = v
                    .get(19..)
                    .and_then(|t| t.rfind(['+', '-']))
                    .map(|i| i + 19)
                    && v.len() - sign_at == 3
                {
                    v.push_str(":00");
                }
                if is_datetime(&v) {
                    Ok(v)
                } else {
                    Err(format!("`{value}` is not a date-time"))
                }
            }
            ValueType::Bool => match value {
                "1" | "t" | "true" | "TRUE" | "True" => Ok("true".into()),
                "0" | "f" | "false" | "FALSE" | "False" => Ok("false".into()),
                _ => Err(format!("`{value}` is not a boolean")),
            },
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ValueType::String => "string",
            ValueType::Int => "int",
            ValueType::Decimal => "decimal",
            ValueType::Date => "date",
            ValueType::DateTime => "datetime",
            ValueType::Bool => "bool",
        })
    }
}

/// xs:decimal: optional sign, digits with an optional fraction; no exponent.
pub fn is_decimal(s: &str) -> bool {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    !(int.is_empty() && frac.is_empty())
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
        && !(body.ends_with('.') && int.is_empty())
}

fn digits(s: &str, n: usize) -> Option<u32> {
    (s.len() == n && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// `YYYY-MM-DD`, a real calendar day.
pub fn is_date(s: &str) -> bool {
    let mut parts = s.split('-');
    let (Some(y), Some(m), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let (Some(y), Some(m), Some(d)) = (digits(y, 4), digits(m, 2), digits(d, 2)) else {
        return false;
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&d)
}

/// `YYYY-MM-DDThh:mm:ss[.f+][Z|±hh:mm]`.
pub fn is_datetime(s: &str) -> bool {
    let Some((date, time)) = s.split_once('T') else {
        return false;
    };
    if !is_date(date) || time.len() < 8 {
        return false;
    }
    let (clock, mut rest) = time.split_at(8);
    let mut hms = clock.split(':');
    let ok = match (hms.next(), hms.next(), hms.next(), hms.next()) {
        (Some(h), Some(m), Some(sec), None) => {
            digits(h, 2).is_some_and(|h| h < 24)
                && digits(m, 2).is_some_and(|m| m < 60)
                && digits(sec, 2).is_some_and(|s| s < 60)
        }
        _ => false,
    };
    if !ok {
        return false;
    }
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return false;
        }
        rest = &frac[n..];
    }
    match rest {
        "" | "Z" => true,
        zone => {
            let Some(z) = zone.strip_prefix(['+', '-']) else {
                return false;
            };
            match z.split_once(':') {
                Some((h, m)) => {
                    digits(h, 2).is_some_and(|h| h <= 14) && digits(m, 2).is_some_and(|m| m < 60)
                }
                None => false,
            }
        }
    }
}

/// A decimal with exactly `scale` fraction digits: padded with zeros, or rounded when longer.
pub fn with_scale(decimal: &str, scale: usize) -> String {
    let (int, frac) = decimal.split_once('.').unwrap_or((decimal, ""));
    if frac.len() <= scale {
        let mut out = int.to_string();
        if scale > 0 {
            out.push('.');
            out.push_str(frac);
            out.extend(std::iter::repeat_n('0', scale - frac.len()));
        }
        return out;
    }
    match decimal.parse::<f64>() {
        Ok(f) => format!("{f:.scale$}"),
        Err(_) => decimal.to_string(),
    }
}

/// Compares two values of an ordered type (as written in the request or the mapping).
pub fn compare(ty: ValueType, a: &BindValue, b: &BindValue) -> Option<std::cmp::Ordering> {
    match (ty, a, b) {
        (ValueType::Int, BindValue::Int(x), BindValue::Int(y)) => Some(x.cmp(y)),
        (ValueType::Decimal, BindValue::Decimal(x), BindValue::Decimal(y)) => compare_decimal(x, y),
        (ValueType::Date, BindValue::Date(x), BindValue::Date(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// Exact comparison of two xs:decimal strings (no float rounding).
fn compare_decimal(a: &str, b: &str) -> Option<std::cmp::Ordering> {
    use std::cmp::Ordering;
    fn split(s: &str) -> (bool, String, String) {
        let neg = s.starts_with('-');
        let body = s.trim_start_matches(['+', '-']);
        let (i, f) = body.split_once('.').unwrap_or((body, ""));
        let i = i.trim_start_matches('0').to_string();
        let f = f.trim_end_matches('0').to_string();
        let zero = i.is_empty() && f.is_empty();
        (neg && !zero, i, f)
    }
    let (na, ia, fa) = split(a);
    let (nb, ib, fb) = split(b);
    let magnitude = ia
        .len()
        .cmp(&ib.len())
        .then_with(|| ia.cmp(&ib))
        .then_with(|| fa.cmp(&fb));
    Some(match (na, nb) {
        (false, true) => Ordering::Greater,
        (true, false) => Ordering::Less,
        (false, false) => magnitude,
        (true, true) => magnitude.reverse(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering;

    #[test]
    fn request_values_parse_by_type() {
        assert_eq!(ValueType::Int.parse("42"), Ok(BindValue::Int(42)));
        assert_eq!(ValueType::Int.parse("-7"), Ok(BindValue::Int(-7)));
        assert!(ValueType::Int.parse("4 2").is_err());
        assert!(ValueType::Int.parse("1e3").is_err());
        assert!(ValueType::Int.parse("99999999999999999999").is_err());
        assert!(ValueType::Decimal.parse("12.50").is_ok());
        assert!(ValueType::Decimal.parse("1e5").is_err());
        assert!(ValueType::Decimal.parse(".").is_err());
        assert!(ValueType::Date.parse("2024-02-29").is_ok());
        assert!(ValueType::Date.parse("2023-02-29").is_err());
        assert!(
            ValueType::DateTime
                .parse("2024-01-02T03:04:05.123+03:00")
                .is_ok()
        );
        assert!(ValueType::DateTime.parse("2024-01-02 03:04:05").is_err());
        assert_eq!(ValueType::Bool.parse("1"), Ok(BindValue::Bool(true)));
        assert!(ValueType::Bool.parse("yes").is_err());
    }

    #[test]
    fn database_values_format_as_xml_schema_types() {
        assert_eq!(
            ValueType::Date.format("2006-03-10 00:00:00").as_deref(),
            Ok("2006-03-10")
        );
        assert_eq!(
            ValueType::DateTime.format("2006-03-10 12:30:00").as_deref(),
            Ok("2006-03-10T12:30:00")
        );
        assert_eq!(
            ValueType::DateTime
                .format("2006-03-10 12:30:00+03")
                .as_deref(),
            Ok("2006-03-10T12:30:00+03:00")
        );
        assert_eq!(ValueType::Bool.format("1").as_deref(), Ok("true"));
        assert_eq!(ValueType::Int.format("12.0").as_deref(), Ok("12"));
        assert!(ValueType::Date.format("yesterday").is_err());
    }

    #[test]
    fn decimals_get_their_scale() {
        assert_eq!(with_scale("120000", 2), "120000.00");
        assert_eq!(with_scale("35000.5", 2), "35000.50");
        assert_eq!(with_scale("4550.0751", 2), "4550.08");
        assert_eq!(with_scale("7", 0), "7");
    }

    #[test]
    fn decimals_compare_exactly() {
        assert_eq!(compare_decimal("10.5", "9.99"), Some(Ordering::Greater));
        assert_eq!(compare_decimal("-1", "0.0"), Some(Ordering::Less));
        assert_eq!(compare_decimal("0010.50", "10.5"), Some(Ordering::Equal));
        assert_eq!(compare_decimal("-2", "-10"), Some(Ordering::Greater));
    }
}
