//! PostgreSQL values ⇄ the engine's text forms: parameters go out as text for the server to convert,
//! binary result columns are decoded to text; it must not decide formats (that is the mapping's job).

use std::error::Error;

use bytes::BytesMut;
use tokio_postgres::types::{Format, FromSql, IsNull, ToSql, Type, to_sql_checked};

use super::BindValue;

type BoxError = Box<dyn Error + Sync + Send>;

/// A bound parameter, always sent in text format so PostgreSQL converts it to the type it expects.
#[derive(Debug)]
pub struct PgParam<'a>(pub &'a BindValue);

impl ToSql for PgParam<'_> {
    fn to_sql(&self, _ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match self.0.as_text() {
            None => Ok(IsNull::Yes),
            Some(text) => {
                out.extend_from_slice(text.as_bytes());
                Ok(IsNull::No)
            }
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    fn encode_format(&self, _ty: &Type) -> Format {
        Format::Text
    }

    to_sql_checked!();
}

/// A result value decoded to text; `None` is NULL.
pub struct PgText(pub Option<String>);

/// Raised for a column type the decoder does not know; the caller names the column.
#[derive(Debug, thiserror::Error)]
#[error("unsupported type {0}")]
pub struct Unsupported(pub String);

pub fn supported(ty: &Type) -> bool {
    matches!(
        *ty,
        Type::BOOL
            | Type::INT2
            | Type::INT4
            | Type::INT8
            | Type::OID
            | Type::FLOAT4
            | Type::FLOAT8
            | Type::NUMERIC
            | Type::TEXT
            | Type::VARCHAR
            | Type::BPCHAR
            | Type::NAME
            | Type::CHAR
            | Type::UNKNOWN
            | Type::DATE
            | Type::TIMESTAMP
            | Type::TIMESTAMPTZ
            | Type::TIME
            | Type::UUID
            | Type::JSON
            | Type::JSONB
    )
}

impl<'a> FromSql<'a> for PgText {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        Ok(PgText(Some(decode(ty, raw)?)))
    }

    fn from_sql_null(_ty: &Type) -> Result<Self, BoxError> {
        Ok(PgText(None))
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }
}

fn be<const N: usize>(raw: &[u8]) -> Result<[u8; N], BoxError> {
    raw.get(..N)
        .and_then(|s| <[u8; N]>::try_from(s).ok())
        .ok_or_else(|| "value too short".into())
}

fn decode(ty: &Type, raw: &[u8]) -> Result<String, BoxError> {
    Ok(match *ty {
        Type::BOOL => (raw.first() == Some(&1)).to_string(),
        Type::INT2 => i16::from_be_bytes(be(raw)?).to_string(),
        Type::INT4 => i32::from_be_bytes(be(raw)?).to_string(),
        Type::OID => u32::from_be_bytes(be(raw)?).to_string(),
        Type::INT8 => i64::from_be_bytes(be(raw)?).to_string(),
        Type::FLOAT4 => f32::from_be_bytes(be(raw)?).to_string(),
        Type::FLOAT8 => f64::from_be_bytes(be(raw)?).to_string(),
        Type::NUMERIC => numeric(raw)?,
        Type::TEXT
        | Type::VARCHAR
        | Type::BPCHAR
        | Type::NAME
        | Type::CHAR
        | Type::UNKNOWN
        | Type::JSON => std::str::from_utf8(raw)?.to_string(),
        Type::JSONB => std::str::from_utf8(raw.get(1..).unwrap_or_default())?.to_string(),
        Type::DATE => {
            let days = i32::from_be_bytes(be(raw)?);
            match days {
                i32::MAX => "infinity".into(),
                i32::MIN => "-infinity".into(),
                d => date_from_pg_days(i64::from(d)),
            }
        }
        Type::TIMESTAMP | Type::TIMESTAMPTZ => {
            let micros = i64::from_be_bytes(be(raw)?);
            match micros {
                i64::MAX => "infinity".into(),
                i64::MIN => "-infinity".into(),
                m => {
                    let mut s = timestamp(m);
                    if *ty == Type::TIMESTAMPTZ {
                        s.push('Z');
                    }
                    s
                }
            }
        }
        Type::TIME => time_of_day(i64::from_be_bytes(be(raw)?)),
        Type::UUID => {
            let b: [u8; 16] = be(raw)?;
            uuid::Uuid::from_bytes(b).hyphenated().to_string()
        }
        ref other => return Err(Box::new(Unsupported(other.name().to_string()))),
    })
}

/// Days since 2000-01-01 → `YYYY-MM-DD` (proleptic Gregorian; H. Hinnant's civil_from_days).
fn date_from_pg_days(days: i64) -> String {
    let z = days + 10_957 + 719_468; // 1970-01-01 is day 10957 before 2000-01-01
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn time_of_day(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let mut s = format!(
        "{:02}:{:02}:{:02}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    );
    if frac != 0 {
        let f = format!("{frac:06}");
        s.push('.');
        s.push_str(f.trim_end_matches('0'));
    }
    s
}

/// Microseconds since 2000-01-01T00:00:00 → `YYYY-MM-DDTHH:MM:SS[.ffffff]`.
fn timestamp(micros: i64) -> String {
    let day_micros = 86_400_000_000i64;
    let days = micros.div_euclid(day_micros);
    let rest = micros.rem_euclid(day_micros);
    format!("{}T{}", date_from_pg_days(days), time_of_day(rest))
}

/// NUMERIC's binary form (base-10000 digits) → its decimal text.
fn numeric(raw: &[u8]) -> Result<String, BoxError> {
    let ndigits = i16::from_be_bytes(be(raw)?);
    let weight = i16::from_be_bytes(be(raw.get(2..).unwrap_or_default())?);
    let sign = u16::from_be_bytes(be(raw.get(4..).unwrap_or_default())?);
    let dscale = u16::from_be_bytes(be(raw.get(6..).unwrap_or_default())?);
    if sign == 0xC000 {
        return Ok("NaN".into());
    }
    let mut digits = Vec::with_capacity(ndigits.max(0) as usize);
    for i in 0..ndigits.max(0) as usize {
        let at = 8 + 2 * i;
        digits.push(i16::from_be_bytes(be(raw.get(at..).unwrap_or_default())?));
    }
    let mut out = String::new();
    if sign == 0x4000 {
        out.push('-');
    }
    // Integer part: groups 0..=weight.
    if weight < 0 {
        out.push('0');
    } else {
        for g in 0..=weight as usize {
            let d = digits.get(g).copied().unwrap_or(0);
            if g == 0 {
                out.push_str(&d.to_string());
            } else {
                out.push_str(&format!("{d:04}"));
            }
        }
    }
    if dscale > 0 {
        let mut frac = String::new();
        let mut g = i32::from(weight) + 1;
        while frac.len() < dscale as usize {
            let d = if g < 0 {
                0
            } else {
                digits.get(g as usize).copied().unwrap_or(0)
            };
            frac.push_str(&format!("{d:04}"));
            g += 1;
        }
        frac.truncate(dscale as usize);
        out.push('.');
        out.push_str(&frac);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_timestamps_count_from_2000() {
        assert_eq!(date_from_pg_days(0), "2000-01-01");
        assert_eq!(date_from_pg_days(-1), "1999-12-31");
        assert_eq!(date_from_pg_days(2_260), "2006-03-10");
        assert_eq!(
            timestamp(86_400_000_000 + 3_723_500_000),
            "2000-01-02T01:02:03.5"
        );
    }

    fn num(ndigits: i16, weight: i16, sign: u16, dscale: u16, digits: &[i16]) -> Vec<u8> {
        let mut v = Vec::new();
        for x in [ndigits, weight] {
            v.extend_from_slice(&x.to_be_bytes());
        }
        v.extend_from_slice(&sign.to_be_bytes());
        v.extend_from_slice(&dscale.to_be_bytes());
        for d in digits {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v
    }

    #[test]
    fn numerics_decode_with_their_scale() {
        // 12345.67 = [1, 2345, 6700], weight 1
        assert_eq!(
            numeric(&num(3, 1, 0, 2, &[1, 2345, 6700])).expect("ok"),
            "12345.67"
        );
        assert_eq!(
            numeric(&num(1, -1, 0x4000, 3, &[50])).expect("ok"),
            "-0.005"
        );
        assert_eq!(numeric(&num(0, 0, 0, 2, &[])).expect("ok"), "0.00");
        assert_eq!(numeric(&num(1, 1, 0, 0, &[7])).expect("ok"), "70000");
    }
}
