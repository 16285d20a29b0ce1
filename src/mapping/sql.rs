//! The mapping SQL's `:name` placeholders: finding them (for `check`) and rewriting them to PostgreSQL's
//! `$n` form. Only placeholders are rewritten; values are always bound, never spliced into the text.

use std::collections::BTreeSet;

use crate::datasource::PositionalSql;

/// One placeholder: its name and byte range (including the colon) in the SQL.
struct Placeholder<'a> {
    name: &'a str,
    start: usize,
    end: usize,
}

/// Scans `sql`, skipping string literals, quoted identifiers, comments, dollar quotes and `::` casts.
fn placeholders(sql: &str) -> Vec<Placeholder<'_>> {
    let bytes = sql.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            q @ (b'\'' | b'"') => {
                i += 1;
                while i < bytes.len() && bytes[i] != q {
                    i += 1;
                }
                i += 1;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < bytes.len() && !(bytes[i] == b'*' && bytes[i + 1] == b'/') {
                    i += 1;
                }
                i += 2;
            }
            b'$' => {
                // $tag$ ... $tag$ (PostgreSQL dollar quoting); a lone `$1` is left alone.
                let tag_end = sql[i + 1..]
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .map(|n| i + 1 + n);
                match tag_end {
                    Some(e)
                        if bytes[e] == b'$'
                            && !sql[i + 1..e].starts_with(|c: char| c.is_ascii_digit()) =>
                    {
                        let tag = &sql[i..=e];
                        match sql[e + 1..].find(tag) {
                            Some(close) => i = e + 1 + close + tag.len(),
                            None => i = bytes.len(),
                        }
                    }
                    _ => i += 1,
                }
            }
            b':' if bytes.get(i + 1) == Some(&b':') => i += 2,
            b':' => {
                let start = i + 1;
                let mut end = start;
                while end < bytes.len()
                    && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_')
                {
                    end += 1;
                }
                if end > start && !bytes[start].is_ascii_digit() {
                    found.push(Placeholder {
                        name: &sql[start..end],
                        start: i,
                        end,
                    });
                }
                i = end.max(i + 1);
            }
            _ => i += 1,
        }
    }
    found
}

/// The `:name` placeholders in `sql`.
pub fn parameter_names(sql: &str) -> BTreeSet<&str> {
    placeholders(sql).into_iter().map(|p| p.name).collect()
}

/// `:name` → `$n` (the same name always gets the same number), for PostgreSQL.
pub fn to_positional(sql: &str) -> PositionalSql {
    let mut names: Vec<String> = Vec::new();
    let mut out = String::with_capacity(sql.len());
    let mut last = 0;
    for p in placeholders(sql) {
        let n = match names.iter().position(|x| x == p.name) {
            Some(i) => i + 1,
            None => {
                names.push(p.name.to_string());
                names.len()
            }
        };
        out.push_str(&sql[last..p.start]);
        out.push_str(&format!("${n}"));
        last = p.end;
    }
    out.push_str(&sql[last..]);
    PositionalSql { sql: out, names }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_skip_literals_comments_casts_and_dollar_quotes() {
        let sql = "SELECT ':no', x::text, $q$ :dollar $q$ FROM t -- :nope\nWHERE /* :c */ a = :series AND b = :number AND c = \":q\"";
        let names: Vec<&str> = parameter_names(sql).into_iter().collect();
        assert_eq!(names, vec!["number", "series"]);
    }

    #[test]
    fn positional_numbers_each_name_once() {
        let p = to_positional("SELECT :a, :b::int, :a WHERE ':a' = x");
        assert_eq!(p.sql, "SELECT $1, $2::int, $1 WHERE ':a' = x");
        assert_eq!(p.names, vec!["a", "b"]);
    }
}
