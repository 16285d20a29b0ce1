//! Reading an admin-edited TOML file into a typed value while keeping every problem's file:line.
//! It owns syntax, unknown-key and type errors; meaning (paths exist, names resolve) is the caller's job.

use std::ops::Range;
use std::path::Path;

use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue};

use crate::diag::Problem;

/// The typed value when the file's shape was right (it may still carry unknown keys), and every
/// problem found. An unknown key never stops the rest of the file from being checked.
pub struct Parsed<T> {
    pub value: Option<T>,
    pub problems: Vec<Problem>,
}

/// Parses `text` (the contents of `file`) into `T`.
pub fn parse<T: DeserializeOwned>(file: &Path, text: &str) -> Parsed<T> {
    let table = match DeTable::parse(text) {
        Ok(t) => t,
        Err(e) => {
            let problem = Problem::at_span(
                file,
                text,
                e.span(),
                format!("TOML syntax: {}", e.message()),
            );
            return Parsed {
                value: None,
                problems: vec![problem],
            };
        }
    };
    let deserializer = toml::Deserializer::from(table.clone());
    let mut unknown: Vec<Vec<String>> = Vec::new();
    let result: Result<T, toml::de::Error> =
        serde_ignored::deserialize(deserializer, |path| unknown.push(segments(&path)));
    let mut problems: Vec<Problem> = unknown
        .iter()
        .map(|segs| {
            let span = key_span(table.get_ref(), segs);
            Problem::at_span(
                file,
                text,
                span,
                format!("unknown key `{}`", segs.join(".")),
            )
        })
        .collect();
    let value = match result {
        Ok(v) => Some(v),
        Err(e) => {
            problems.push(Problem::at_span(
                file,
                text,
                e.span(),
                e.message().trim().to_string(),
            ));
            None
        }
    };
    Parsed { value, problems }
}

fn segments(path: &serde_ignored::Path<'_>) -> Vec<String> {
    use serde_ignored::Path as P;
    match path {
        P::Root => Vec::new(),
        P::Seq { parent, index } => {
            let mut v = segments(parent);
            v.push(index.to_string());
            v
        }
        P::Map { parent, key } => {
            let mut v = segments(parent);
            v.push(key.clone());
            v
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            segments(parent)
        }
    }
}

/// The span of the last key in `path` (table keys and array indexes), for pointing at it.
fn key_span(root: &DeTable<'_>, path: &[String]) -> Option<Range<usize>> {
    let (first, rest) = path.split_first()?;
    let (key, value) = root
        .iter()
        .find(|(k, _)| k.get_ref().as_ref() == first.as_str())?;
    if rest.is_empty() {
        return Some(key.span());
    }
    value_key_span(value.get_ref(), rest).or_else(|| Some(key.span()))
}

fn value_key_span(value: &DeValue<'_>, path: &[String]) -> Option<Range<usize>> {
    match value {
        DeValue::Table(t) => key_span(t, path),
        DeValue::Array(items) => {
            let (index, rest) = path.split_first()?;
            let item = items.get(index.parse::<usize>().ok()?)?;
            if rest.is_empty() {
                Some(item.span())
            } else {
                value_key_span(item.get_ref(), rest)
            }
        }
        _ => None,
    }
}

/// The span of the value at `path` (for pointing at a value that is well-typed but wrong).
pub fn value_span(text: &str, path: &[&str]) -> Option<Range<usize>> {
    let table = DeTable::parse(text).ok()?;
    let mut current: &DeTable<'_> = table.get_ref();
    let (last, parents) = path.split_last()?;
    for p in parents {
        let (_, v) = current.iter().find(|(k, _)| k.get_ref().as_ref() == *p)?;
        match v.get_ref() {
            DeValue::Table(t) => current = t,
            _ => return None,
        }
    }
    let (_, v) = current
        .iter()
        .find(|(k, _)| k.get_ref().as_ref() == *last)?;
    Some(v.span())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct Sample {
        a: u32,
        #[serde(default)]
        inner: Inner,
    }
    #[derive(Deserialize, Debug, Default)]
    #[allow(dead_code)]
    struct Inner {
        #[serde(default)]
        b: String,
    }

    #[test]
    fn unknown_keys_are_reported_with_their_line_and_the_value_still_parses() {
        let text = "a = 1\n\n[inner]\nb = \"x\"\nbb = 2\n";
        let parsed: Parsed<Sample> = parse(Path::new("s.toml"), text);
        assert!(parsed.value.is_some());
        assert_eq!(parsed.problems.len(), 1);
        assert_eq!(
            parsed.problems[0].to_string(),
            "s.toml:5:1: unknown key `inner.bb`"
        );
    }

    #[test]
    fn type_errors_and_syntax_errors_name_the_line() {
        let parsed: Parsed<Sample> = parse(Path::new("s.toml"), "\na = \"one\"\n");
        assert!(parsed.value.is_none());
        assert_eq!(parsed.problems[0].line, 2, "{:?}", parsed.problems);
        let parsed: Parsed<Sample> = parse(Path::new("s.toml"), "a = 1\n[inner\n");
        assert_eq!(parsed.problems[0].line, 2, "{:?}", parsed.problems);
        assert!(parsed.problems[0].message.starts_with("TOML syntax"));
    }

    #[test]
    fn value_span_points_at_the_value() {
        let text = "[server]\nlisten = \"nope\"\n";
        let span = value_span(text, &["server", "listen"]).expect("span");
        assert_eq!(&text[span], "\"nope\"");
    }
}
