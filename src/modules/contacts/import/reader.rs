//! Reading an import's CSV: the mapping from header columns to contact fields, and the blocking reader
//! that parses, normalises and de-duplicates rows into batches (CPU work beside the database work, over a
//! bounded channel so memory stays constant).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Map;
use utoipa::ToSchema;

use super::{BATCH_ROWS, ImportOptions};
use crate::domain::channel_type::is_channel_type;
use crate::error::{AppError, AppResult, FieldError};
use crate::modules::contacts::normalise::{infer_attribute, valid_key};
use crate::modules::contacts::service::{ContactInput, Normalised, normalise_input};

/// Contact fields a column can be mapped to (besides `attributes.<key>`, `channel_identities.<type>`).
pub const MAPPABLE: &[&str] = &[
    "first_name",
    "last_name",
    "display_name",
    "phone",
    "email",
    "preferred_channel",
    "language",
    "timezone",
    "opted_out_channels",
    "tags",
];

/// A mapping target, checked.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Target {
    Field(&'static str),
    Attribute(String),
    Identity(String),
}

fn parse_target(t: &str) -> Option<Target> {
    let t = t.trim();
    if let Some(f) = MAPPABLE.iter().find(|f| **f == t) {
        return Some(Target::Field(f));
    }
    if let Some(k) = t.strip_prefix("attributes.") {
        return valid_key(k).then(|| Target::Attribute(k.to_string()));
    }
    if let Some(k) = t.strip_prefix("channel_identities.") {
        return is_channel_type(k).then(|| Target::Identity(k.to_string()));
    }
    None
}

/// Validates the mapping's targets (422 naming each unknown one).
pub fn check_mapping(mapping: &HashMap<String, String>) -> AppResult<()> {
    let mut errors = Vec::new();
    for (column, target) in mapping {
        if parse_target(target).is_none() {
            errors.push(FieldError::new(
                format!("mapping.{column}"),
                format!("`{target}` is not a contact field; use one of {}, attributes.<key> ([a-z0-9_]+) or channel_identities.<type>", MAPPABLE.join(", ")),
            ));
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(AppError::Validation(errors)) }
}

/// Column index → target, from the header and the mapping (default: headers named like targets).
pub(super) fn plan(headers: &[String], mapping: Option<&HashMap<String, String>>) -> AppResult<Vec<Option<Target>>> {
    match mapping {
        Some(m) => {
            check_mapping(m)?;
            let mut errors = Vec::new();
            for column in m.keys() {
                if !headers.iter().any(|h| h == column) {
                    errors.push(FieldError::new(format!("mapping.{column}"), "no such column in the file's header"));
                }
            }
            if !errors.is_empty() {
                return Err(AppError::Validation(errors));
            }
            Ok(headers.iter().map(|h| m.get(h).and_then(|t| parse_target(t))).collect())
        }
        None => Ok(headers.iter().map(|h| parse_target(&h.trim().to_lowercase())).collect()),
    }
}

/// One parsed row, ready to write.
#[derive(Debug)]
pub(super) struct GoodRow {
    pub row: u64,
    pub contact: Normalised,
    pub tag_names: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct RowError {
    /// 1-based line of the file (the header is row 1).
    pub row: u64,
    pub field: String,
    pub message: String,
}

/// Rows parsed from the file, `BATCH_ROWS` at a time: the good ones ready to write, the bad ones reported.
pub(super) struct Batch {
    pub good: Vec<GoodRow>,
    pub bad: Vec<RowError>,
    /// Rows of the file this batch covers.
    pub rows: u64,
}

pub(super) enum Parsed {
    Batch(Batch),
    Fatal(String),
}

/// Checks the header against the mapping before the job starts (422 for unknown columns); returns it.
pub fn check_header(path: &Path, options: &ImportOptions) -> AppResult<Vec<String>> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .map_err(|e| AppError::bad_request(format!("cannot read the CSV: {e}")))?;
    let headers = reader.byte_headers().map_err(|e| AppError::field("file", format!("malformed CSV header: {e}")))?;
    let headers: Vec<String> = headers
        .iter()
        .map(|h| std::str::from_utf8(h).map(|s| s.trim_start_matches('\u{feff}').trim().to_string()))
        .collect::<Result<_, _>>()
        .map_err(|_| AppError::field("file", "the header row is not valid UTF-8 (save the file as UTF-8)"))?;
    if headers.iter().all(|h| h.is_empty()) {
        return Err(AppError::field("file", "the file is empty or has no header row"));
    }
    let targets = plan(&headers, options.mapping.as_ref())?;
    if targets.iter().all(Option::is_none) {
        return Err(AppError::field(
            "mapping",
            "no column maps to a contact field; name the header columns after fields (phone, email, …) or send a mapping",
        ));
    }
    Ok(headers)
}

/// Reads the CSV on a blocking thread and sends parsed batches (bounded channel: constant memory).
pub(super) fn read_rows(
    path: PathBuf,
    targets: Vec<Option<Target>>,
    width: usize,
    region: Option<phonenumber::country::Id>,
    tx: tokio::sync::mpsc::Sender<Parsed>,
) {
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) => {
            let _ = tx.blocking_send(Parsed::Fatal(format!("cannot read the upload: {e}")));
            return;
        }
    };
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(true)
        .from_reader(std::io::BufReader::with_capacity(1 << 16, file));
    let mut seen: HashMap<String, u64> = HashMap::new();
    let (mut good, mut bad, mut rows) = (Vec::new(), Vec::new(), 0u64);
    let mut record = csv::ByteRecord::new();
    loop {
        let row = reader.position().line() + 1;
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                // Rows are numbered by their first line (the header is line 1).
                let row = record.position().map(|p| p.line()).unwrap_or(row);
                rows += 1;
                match parse_row(row, &record, &targets, width, region, &mut seen) {
                    Ok(g) => good.push(g),
                    Err(e) => bad.push(e),
                }
            }
            Err(e) => {
                if let csv::ErrorKind::Io(io) = e.kind() {
                    let _ = tx.blocking_send(Parsed::Fatal(format!("cannot read the upload: {io}")));
                    return;
                }
                rows += 1;
                let line = e.position().map(|p| p.line()).unwrap_or(row);
                bad.push(RowError { row: line, field: "row".into(), message: format!("malformed CSV: {e}") });
            }
        }
        if good.len() + bad.len() >= BATCH_ROWS {
            let batch = Parsed::Batch(Batch { good: std::mem::take(&mut good), bad: std::mem::take(&mut bad), rows });
            rows = 0;
            if tx.blocking_send(batch).is_err() {
                return;
            }
        }
    }
    if rows > 0 {
        let _ = tx.blocking_send(Parsed::Batch(Batch { good, bad, rows }));
    }
}

fn parse_row(
    row: u64,
    record: &csv::ByteRecord,
    targets: &[Option<Target>],
    width: usize,
    region: Option<phonenumber::country::Id>,
    seen: &mut HashMap<String, u64>,
) -> Result<GoodRow, RowError> {
    let err = |field: &str, message: String| RowError { row, field: field.to_string(), message };
    if record.len() != width {
        return Err(err("row", format!("has {} columns, expected {width}", record.len())));
    }
    let mut input = ContactInput::default();
    let mut attributes = Map::new();
    let mut identities = Map::new();
    let mut tag_names = Vec::new();
    for (i, raw) in record.iter().enumerate() {
        let Some(target) = &targets[i] else { continue };
        let cell = std::str::from_utf8(raw).map_err(|_| {
            let name = match target {
                Target::Field(f) => f.to_string(),
                Target::Attribute(k) => format!("attributes.{k}"),
                Target::Identity(k) => format!("channel_identities.{k}"),
            };
            err(&name, "is not valid UTF-8 (save the file as UTF-8)".into())
        })?;
        let cell = cell.trim();
        if cell.is_empty() {
            continue;
        }
        let s = Some(cell.to_string());
        match target {
            Target::Field("first_name") => input.first_name = s,
            Target::Field("last_name") => input.last_name = s,
            Target::Field("display_name") => input.display_name = s,
            Target::Field("phone") => input.phone = s,
            Target::Field("email") => input.email = s,
            Target::Field("preferred_channel") => input.preferred_channel = s,
            Target::Field("language") => input.language = s,
            Target::Field("timezone") => input.timezone = s,
            Target::Field("opted_out_channels") => {
                input.opted_out_channels =
                    Some(cell.split(';').map(|c| c.trim().to_string()).filter(|c| !c.is_empty()).collect())
            }
            Target::Field("tags") => {
                for name in cell.split(';').map(str::trim).filter(|n| !n.is_empty()) {
                    if name.chars().count() > 100 {
                        return Err(err("tags", format!("tag `{name}` is longer than 100 characters")));
                    }
                    tag_names.push(name.to_string());
                }
            }
            Target::Field(_) => {}
            Target::Attribute(k) => {
                attributes.insert(k.clone(), infer_attribute(cell));
            }
            Target::Identity(k) => {
                identities.insert(k.clone(), serde_json::Value::String(cell.to_string()));
            }
        }
    }
    if !attributes.is_empty() {
        input.attributes = Some(serde_json::Value::Object(attributes));
    }
    if !identities.is_empty() {
        input.channel_identities = Some(serde_json::Value::Object(identities));
    }
    let contact = normalise_input(&input, region).map_err(|errors| {
        let first = errors.into_iter().next().unwrap_or_else(|| FieldError::new("row", "invalid"));
        err(&first.field, first.message)
    })?;
    // The same person twice in one file is a mistake to report, not a silent merge.
    let mut keys = Vec::new();
    if let Some(p) = &contact.phone {
        keys.push(("phone", format!("p:{p}")));
    }
    if let Some(e) = &contact.email {
        keys.push(("email", format!("e:{e}")));
    }
    for (k, v) in contact.identities() {
        keys.push(("channel_identities", format!("i:{k}:{v}")));
    }
    for (field, key) in &keys {
        if let Some(first) = seen.get(key) {
            return Err(err(field, format!("duplicates row {first} of this file")));
        }
    }
    for (_, key) in keys {
        seen.insert(key, row);
    }
    tag_names.sort();
    tag_names.dedup();
    Ok(GoodRow { row, contact, tag_names })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_unknown_ones_are_rejected() {
        assert_eq!(parse_target("phone"), Some(Target::Field("phone")));
        assert_eq!(parse_target("attributes.program_name"), Some(Target::Attribute("program_name".into())));
        assert_eq!(parse_target("channel_identities.telegram"), Some(Target::Identity("telegram".into())));
        assert_eq!(parse_target("attributes.Program"), None);
        assert_eq!(parse_target("shoe_size"), None);
        let m: HashMap<String, String> = [("Phone".to_string(), "telephone".to_string())].into();
        assert!(matches!(check_mapping(&m), Err(AppError::Validation(e)) if e[0].field == "mapping.Phone"));
    }

    #[test]
    fn default_plan_matches_headers_to_fields() {
        let headers: Vec<String> =
            ["Phone", "email", "attributes.program", "Notes"].iter().map(|s| s.to_string()).collect();
        let plan = plan(&headers, None).unwrap();
        assert_eq!(
            plan,
            vec![
                Some(Target::Field("phone")),
                Some(Target::Field("email")),
                Some(Target::Attribute("program".into())),
                None
            ]
        );
        let m: HashMap<String, String> = [("Missing".to_string(), "phone".to_string())].into();
        assert!(plan_err(&headers, &m).contains("no such column"));
    }

    fn plan_err(headers: &[String], m: &HashMap<String, String>) -> String {
        match plan(headers, Some(m)) {
            Err(AppError::Validation(e)) => e[0].message.clone(),
            other => panic!("expected 422, got {other:?}"),
        }
    }
}
