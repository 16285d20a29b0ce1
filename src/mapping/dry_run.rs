//! The dry run behind `smev-adapter mapping test`: extraction → SQL → rows → XML for one request file,
//! every step kept for printing; it must not change any database (a writing mapping is rolled back).

use std::path::PathBuf;

use super::{MappingSet, Outcome, ParamError};
use crate::config::XmlLimits;
use crate::datasource::{BindValue, Datasources, Rows};
use crate::soap::envelope::{self, Operation};
use crate::xml::{self, XmlError};

/// Everything the dry run saw and produced.
#[derive(Debug)]
pub struct DryRun {
    pub mapping: String,
    pub file: PathBuf,
    pub params: Vec<(String, BindValue)>,
    pub sql: String,
    /// `None` when the query failed (the reason is in `outcome`).
    pub rows: Option<Rows>,
    pub outcome: Outcome,
}

#[derive(Debug, thiserror::Error)]
pub enum DryRunError {
    #[error("{0}")]
    Xml(#[from] XmlError),
    #[error("the SOAP envelope is not a SendRequest: {0}")]
    Envelope(String),
    #[error("no mapping handles {0} (mappings: {1})")]
    NoRoute(String, String),
    #[error("no mapping named `{0}` (mappings: {1})")]
    NoSuchMapping(String, String),
    #[error("the request is invalid for mapping `{mapping}`:\n{}", .errors.iter().map(|e| format!("  {}: {}", e.position, e.message)).collect::<Vec<_>>().join("\n"))]
    Invalid {
        mapping: String,
        errors: Vec<ParamError>,
    },
}

/// Runs one request (a SOAP SendRequest envelope, or just the payload element) through a mapping:
/// the one named, or the one its payload's QName routes to.
pub fn dry_run(
    set: &MappingSet,
    datasources: &Datasources,
    text: &str,
    mapping: Option<&str>,
    limits: &XmlLimits,
) -> Result<DryRun, DryRunError> {
    let doc = xml::parse(text, limits)?;
    let root = doc.root_element();
    let (content, message_id) = if root.tag_name().name() == "Envelope" {
        let env = envelope::parse(&doc).map_err(|e| DryRunError::Envelope(e.to_string()))?;
        match env.operation {
            Operation::SendRequest(req) => (req.content, req.message_id.to_string()),
            other => return Err(DryRunError::Envelope(format!("it is {}", other.name()))),
        }
    } else {
        (root, "00000000-0000-1000-8000-000000000000".to_string())
    };
    let known = || set.names().join(", ");
    let chosen = match mapping {
        Some(name) => set
            .by_name(name)
            .ok_or_else(|| DryRunError::NoSuchMapping(name.to_string(), known()))?,
        None => {
            let tag = content.tag_name();
            set.route(tag.namespace().unwrap_or(""), tag.name())
                .ok_or_else(|| {
                    DryRunError::NoRoute(
                        format!("{{{}}}{}", tag.namespace().unwrap_or(""), tag.name()),
                        known(),
                    )
                })?
        }
    };
    let params = chosen
        .extract(&doc, content)
        .map_err(|errors| DryRunError::Invalid {
            mapping: chosen.name.clone(),
            errors,
        })?;
    let (rows, outcome) = match chosen.query_without_writing(datasources, &params, &message_id) {
        Ok(rows) => {
            let outcome = chosen.render(&rows);
            (Some(rows), outcome)
        }
        Err(reason) => (None, Outcome::Failed(reason)),
    };
    Ok(DryRun {
        mapping: chosen.name.clone(),
        file: chosen.file.clone(),
        params: params
            .into_iter()
            .map(|(n, v)| (n.to_string(), v))
            .collect(),
        sql: chosen.sql.clone(),
        rows,
        outcome,
    })
}
