//! CSV import (SPEC §4): the upload is spooled to a file in the data directory (never held in memory;
//! larger than the limit → 413), an import job row is created, and a background task streams the rows:
//! a blocking reader thread parses, normalises and de-duplicates them (CPU work beside the database
//! work), the async writer stores batches of 500 in one transaction each, together with the job's
//! progress and the batch's events — so the report always accounts for exactly the rows written, even
//! after a crash. Bad rows are reported (`row`, `field`, `message`; the first 1,000 kept) and never abort
//! the good ones.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Duration, Utc};
use futures_util::StreamExt;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, Set, Value};
use serde::{Deserialize, Serialize};
use serde_json::{Map, json};
use utoipa::ToSchema;
use uuid::Uuid;

use super::entity::{contact, contact_identity, contact_import, contact_tag, group, group_member, tag};
use super::normalise::{infer_attribute, valid_key};
use super::service::{ContactInput, Contacts, DEFAULT_TAG_COLOR, Normalised, assign, new_contact, normalise_input};
use super::store;
use crate::app::AppState;
use crate::channel_type::is_channel_type;
use crate::http::ctx::{AccountScope, RequestCtx};
use crate::http::envelope::{self, Envelope, ListEnvelope};
use crate::http::error::{AppError, AppResult, ErrorBody, FieldError};
use crate::http::list::{Field, Kind, ListQuery};
use crate::modules::events::{EventBus, EventMeta};

pub const BATCH_ROWS: usize = 500;
pub const MAX_REPORTED_ERRORS: usize = 1000;
/// A running import that has not written a batch for this long is marked failed (its process died).
pub const STALE_AFTER_SECS: i64 = 300;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnDuplicate {
    Skip,
    Update,
}

/// Options of an import job (stored with it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportOptions {
    /// CSV header → target (`phone`, `attributes.program_name`, `channel_identities.telegram`, `tags`).
    pub mapping: Option<HashMap<String, String>>,
    pub on_duplicate: OnDuplicate,
    pub group_id: Option<Uuid>,
    #[serde(default)]
    pub tag_ids: Vec<Uuid>,
}

/// A mapping target, checked.
#[derive(Debug, Clone, PartialEq)]
enum Target {
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
fn plan(headers: &[String], mapping: Option<&HashMap<String, String>>) -> AppResult<Vec<Option<Target>>> {
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
struct GoodRow {
    row: u64,
    contact: Normalised,
    tag_names: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct RowError {
    /// 1-based line of the file (the header is row 1).
    pub row: u64,
    pub field: String,
    pub message: String,
}

enum Parsed {
    Batch { good: Vec<GoodRow>, bad: Vec<RowError>, rows: u64 },
    Fatal(String),
}

/// Reads the CSV on a blocking thread and sends parsed batches (bounded channel: constant memory).
fn read_rows(
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
            let batch = Parsed::Batch { good: std::mem::take(&mut good), bad: std::mem::take(&mut bad), rows };
            rows = 0;
            if tx.blocking_send(batch).is_err() {
                return;
            }
        }
    }
    if rows > 0 {
        let _ = tx.blocking_send(Parsed::Batch { good, bad, rows });
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

/// Progress of a job, as written with each batch.
#[derive(Debug, Default, Clone)]
pub struct Progress {
    pub total_rows: u64,
    pub created: u64,
    pub updated: u64,
    pub skipped: u64,
    pub errors: Vec<RowError>,
    pub error_count: u64,
}

impl Contacts {
    /// Records a new import job (status `queued`).
    pub async fn create_import(
        &self,
        scope: AccountScope,
        user_id: Option<Uuid>,
        file_name: Option<String>,
        options: &ImportOptions,
    ) -> AppResult<contact_import::Model> {
        if let Some(m) = &options.mapping {
            check_mapping(m)?;
        }
        if let Some(g) = options.group_id
            && store::find_group(&self.db, scope, g).await?.is_none()
        {
            return Err(AppError::field("group_id", "no such group in this account"));
        }
        let own = store::own_tag_ids(&self.db, scope, &options.tag_ids).await?;
        if let Some(missing) = options.tag_ids.iter().find(|t| !own.contains(t)) {
            return Err(AppError::field("tag_ids", format!("no tag {missing} in this account")));
        }
        let now = Utc::now();
        Ok(contact_import::ActiveModel {
            id: Set(Uuid::now_v7()),
            account_id: Set(scope.account_id()),
            user_id: Set(user_id),
            status: Set("queued".into()),
            file_name: Set(file_name),
            options: Set(serde_json::to_value(options).map_err(AppError::internal)?),
            total_rows: Set(0),
            created: Set(0),
            updated: Set(0),
            skipped: Set(0),
            error_count: Set(0),
            errors: Set(json!([])),
            message: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
            finished_at: Set(None),
        }
        .insert(&self.db)
        .await?)
    }

    pub async fn get_import(&self, scope: AccountScope, id: Uuid) -> AppResult<contact_import::Model> {
        contact_import::Entity::find_by_id(id)
            .filter(contact_import::Column::AccountId.eq(scope.account_id()))
            .one(&self.db)
            .await?
            .ok_or(AppError::NotFound("import"))
    }

    /// Checks the header against the mapping before the job starts (422 for unknown columns).
    pub fn check_header(&self, path: &Path, options: &ImportOptions) -> AppResult<Vec<String>> {
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .from_path(path)
            .map_err(|e| AppError::bad_request(format!("cannot read the CSV: {e}")))?;
        let headers =
            reader.byte_headers().map_err(|e| AppError::field("file", format!("malformed CSV header: {e}")))?;
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

    /// Runs an import job to the end. `on_progress` sees the totals after every batch (the CLI's progress
    /// bar). The file is removed when done unless `keep_file`.
    pub async fn run_import(
        &self,
        scope: AccountScope,
        job_id: Uuid,
        path: PathBuf,
        meta: EventMeta,
        on_progress: impl Fn(&Progress),
    ) -> AppResult<Progress> {
        let job = self.get_import(scope, job_id).await?;
        let options: ImportOptions = serde_json::from_value(job.options.clone()).map_err(AppError::internal)?;
        let result = self.import_rows(scope, &job, &options, &path, &meta, &on_progress).await;
        let now = Utc::now();
        let mut active = self.get_import(scope, job_id).await?.into_active_model();
        active.updated_at = Set(now);
        active.finished_at = Set(Some(now));
        let outcome = match &result {
            Ok(_) => {
                active.status = Set("completed".into());
                "contact_import.completed"
            }
            Err(e) => {
                active.status = Set("failed".into());
                active.message = Set(Some(e.to_string()));
                "contact_import.failed"
            }
        };
        let txn = crate::db::begin_write(&self.db).await?;
        let job = active.update(&txn).await?;
        let mut bus = EventBus::new(meta);
        bus.emit(
            outcome,
            "contact_import",
            job.id,
            Some(scope.account_id()),
            json!({ "total_rows": job.total_rows, "created": job.created, "updated": job.updated, "skipped": job.skipped, "error_count": job.error_count }),
        );
        self.commit(txn, bus).await?;
        result
    }

    async fn import_rows(
        &self,
        scope: AccountScope,
        job: &contact_import::Model,
        options: &ImportOptions,
        path: &Path,
        meta: &EventMeta,
        on_progress: &impl Fn(&Progress),
    ) -> AppResult<Progress> {
        let headers = self.check_header(path, options)?;
        let targets = plan(&headers, options.mapping.as_ref())?;
        let region = self.region(scope).await?;
        contact_import::Entity::update_many()
            .col_expr(contact_import::Column::Status, Expr::val("running"))
            .col_expr(contact_import::Column::UpdatedAt, Expr::val(Utc::now()))
            .filter(contact_import::Column::Id.eq(job.id))
            .exec(&self.db)
            .await?;
        let (tx, mut rx) = tokio::sync::mpsc::channel(2);
        let width = headers.len();
        let path = path.to_path_buf();
        let reader = tokio::task::spawn_blocking(move || read_rows(path, targets, width, region, tx));
        let mut progress = Progress::default();
        let mut tags = TagCache::default();
        let mut batches = 0u64;
        while let Some(parsed) = rx.recv().await {
            match parsed {
                Parsed::Fatal(m) => return Err(AppError::bad_request(m)),
                Parsed::Batch { good, bad, rows } => {
                    self.write_batch(scope, job.id, options, good, bad, rows, &mut progress, &mut tags, meta).await?;
                    on_progress(&progress);
                    batches += 1;
                    if batches.is_power_of_two() {
                        self.refresh_statistics(false).await;
                    }
                }
            }
        }
        reader.await.map_err(AppError::internal)?;
        if batches > 1 {
            self.refresh_statistics(true).await;
        }
        Ok(progress)
    }

    #[allow(clippy::too_many_arguments)]
    async fn write_batch(
        &self,
        scope: AccountScope,
        job_id: Uuid,
        options: &ImportOptions,
        good: Vec<GoodRow>,
        bad: Vec<RowError>,
        rows: u64,
        progress: &mut Progress,
        tags: &mut TagCache,
        meta: &EventMeta,
    ) -> AppResult<()> {
        let txn = crate::db::begin_write(&self.db).await?;
        if self.backend() == sea_orm::DbBackend::Postgres {
            // A batch commits without waiting for its WAL flush. A database crash can lose the last few
            // batches, but never half of one: the job's counts commit with its rows, so the report
            // still matches what is stored, and the job is marked failed and can be re-run with
            // on_duplicate=skip. Every other write keeps the server's default.
            txn.execute_unprepared("SET LOCAL synchronous_commit = off").await?;
        }
        let mut next = progress.clone();
        next.total_rows += rows;
        let mut errors = bad;
        // Existing contacts matching the batch's phones, e-mails and identities.
        let phones: Vec<String> = good.iter().filter_map(|g| g.contact.phone.clone()).collect();
        let emails: Vec<String> = good.iter().filter_map(|g| g.contact.email.clone()).collect();
        let mut by_phone = HashMap::new();
        let mut by_email = HashMap::new();
        let mut existing: HashMap<Uuid, contact::Model> = HashMap::new();
        // Two lookups, each on its unique index (an OR of both makes SQLite scan the account).
        for (column, values) in [(contact::Column::Phone, phones), (contact::Column::Email, emails)] {
            if values.is_empty() {
                continue;
            }
            for c in store::contacts_in(scope).filter(column.is_in(values)).all(&txn).await? {
                if let Some(p) = &c.phone {
                    by_phone.insert(p.clone(), c.id);
                }
                if let Some(e) = &c.email {
                    by_email.insert(e.clone(), c.id);
                }
                existing.insert(c.id, c);
            }
        }
        let mut by_identity = HashMap::new();
        let idents: Vec<(String, String)> = good.iter().flat_map(|g| g.contact.identities()).collect();
        if !idents.is_empty() {
            let mut any = sea_orm::Condition::any();
            for (k, v) in &idents {
                any = any.add(
                    sea_orm::Condition::all()
                        .add(contact_identity::Column::ChannelType.eq(k.clone()))
                        .add(contact_identity::Column::Identity.eq(v.clone())),
                );
            }
            for row in contact_identity::Entity::find()
                .filter(contact_identity::Column::AccountId.eq(scope.account_id()))
                .filter(any)
                .all(&txn)
                .await?
            {
                by_identity.insert((row.channel_type, row.identity), row.contact_id);
            }
        }

        let mut inserts = Vec::new();
        let mut new_identities = Vec::new();
        let mut tagged: Vec<(Uuid, Vec<String>)> = Vec::new();
        let mut touched = Vec::new();
        let (mut created_ids, mut updated_ids) = (Vec::new(), Vec::new());
        for g in good {
            let mut owners: Vec<Uuid> = Vec::new();
            if let Some(id) = g.contact.phone.as_ref().and_then(|p| by_phone.get(p)) {
                owners.push(*id);
            }
            if let Some(id) = g.contact.email.as_ref().and_then(|e| by_email.get(e)) {
                owners.push(*id);
            }
            for key in g.contact.identities() {
                if let Some(id) = by_identity.get(&key) {
                    owners.push(*id);
                }
            }
            owners.dedup();
            if owners.len() > 1 {
                errors.push(RowError {
                    row: g.row,
                    field: "row".into(),
                    message: format!(
                        "matches {} different existing contacts (by phone, e-mail or identity)",
                        owners.len()
                    ),
                });
                continue;
            }
            match owners.first() {
                None => {
                    let model = new_contact(scope, &g.contact);
                    let id = *model.id.as_ref();
                    for (k, v) in g.contact.identities() {
                        new_identities.push((id, k, v));
                    }
                    inserts.push(model);
                    tagged.push((id, g.tag_names));
                    touched.push(id);
                    created_ids.push(id);
                }
                Some(_) if options.on_duplicate == OnDuplicate::Skip => next.skipped += 1,
                Some(id) => {
                    // Usually loaded by the phone/e-mail lookup above; identity matches are read here.
                    let current = match existing.get(id) {
                        Some(c) => c.clone(),
                        None => match store::find_contact(&txn, scope, *id).await? {
                            Some(c) => c,
                            None => continue,
                        },
                    };
                    let merged = merge(&current, &g.contact);
                    if let Some((field, other)) = conflict_after_merge(&merged, *id, &by_phone, &by_email) {
                        errors.push(RowError {
                            row: g.row,
                            field: field.into(),
                            message: format!("belongs to another contact ({other})"),
                        });
                        continue;
                    }
                    let mut active = current.into_active_model();
                    assign(&mut active, &merged);
                    active.updated_at = Set(Utc::now());
                    active.update(&txn).await?;
                    for (k, v) in g.contact.identities() {
                        new_identities.push((*id, k, v));
                    }
                    tagged.push((*id, g.tag_names));
                    touched.push(*id);
                    updated_ids.push(*id);
                }
            }
        }
        for chunk in inserts.chunks(BATCH_ROWS) {
            contact::Entity::insert_many(chunk.to_vec()).exec_without_returning(&txn).await?;
        }
        next.created += created_ids.len() as u64;
        next.updated += updated_ids.len() as u64;
        insert_ignore(
            &txn,
            contact_identity::Entity,
            &[
                contact_identity::Column::AccountId,
                contact_identity::Column::ChannelType,
                contact_identity::Column::Identity,
                contact_identity::Column::ContactId,
            ],
            new_identities
                .into_iter()
                .map(|(c, k, v)| vec![Value::from(scope.account_id()), Value::from(k), Value::from(v), Value::from(c)])
                .collect(),
            &[
                contact_identity::Column::AccountId,
                contact_identity::Column::ChannelType,
                contact_identity::Column::Identity,
            ],
        )
        .await?;
        // Tags: the job's tag ids for every row, plus the row's tag names (created when missing).
        let mut pairs = Vec::new();
        for (id, names) in &tagged {
            for t in &options.tag_ids {
                pairs.push(vec![Value::from(*id), Value::from(*t)]);
            }
            for name in names {
                let t = tags.id(&txn, scope, name).await?;
                pairs.push(vec![Value::from(*id), Value::from(t)]);
            }
        }
        insert_ignore(
            &txn,
            contact_tag::Entity,
            &[contact_tag::Column::ContactId, contact_tag::Column::TagId],
            pairs,
            &[contact_tag::Column::ContactId, contact_tag::Column::TagId],
        )
        .await?;
        let mut bus = EventBus::new(meta.clone());
        if let Some(group_id) = options.group_id {
            let now = Utc::now();
            let added = insert_ignore(
                &txn,
                group_member::Entity,
                &[group_member::Column::GroupId, group_member::Column::ContactId, group_member::Column::CreatedAt],
                touched.iter().map(|c| vec![Value::from(group_id), Value::from(*c), Value::from(now)]).collect(),
                &[group_member::Column::GroupId, group_member::Column::ContactId],
            )
            .await?;
            if added > 0 {
                group::Entity::update_many()
                    .col_expr(group::Column::ContactCount, Expr::col(group::Column::ContactCount).add(added as i64))
                    .col_expr(group::Column::UpdatedAt, Expr::val(now))
                    .filter(group::Column::Id.eq(group_id))
                    .filter(group::Column::AccountId.eq(scope.account_id()))
                    .exec(&txn)
                    .await?;
                bus.emit(
                    "group.members_added",
                    "group",
                    group_id,
                    Some(scope.account_id()),
                    json!({ "count": added, "import_id": job_id }),
                );
            }
        }
        next.error_count += errors.len() as u64;
        for e in errors {
            if next.errors.len() < MAX_REPORTED_ERRORS {
                next.errors.push(e);
            }
        }
        next.errors.sort_by_key(|e| e.row);
        contact_import::Entity::update_many()
            .col_expr(contact_import::Column::TotalRows, Expr::val(next.total_rows as i64))
            .col_expr(contact_import::Column::Created, Expr::val(next.created as i64))
            .col_expr(contact_import::Column::Updated, Expr::val(next.updated as i64))
            .col_expr(contact_import::Column::Skipped, Expr::val(next.skipped as i64))
            .col_expr(contact_import::Column::ErrorCount, Expr::val(next.error_count as i64))
            .col_expr(contact_import::Column::Errors, Expr::val(json!(next.errors)))
            .col_expr(contact_import::Column::UpdatedAt, Expr::val(Utc::now()))
            .filter(contact_import::Column::Id.eq(job_id))
            .exec(&txn)
            .await?;
        if !created_ids.is_empty() || !updated_ids.is_empty() {
            // One event per batch, not per row: consumers that need each contact read the ids.
            bus.emit(
                "contacts.imported",
                "contact_import",
                job_id,
                Some(scope.account_id()),
                json!({ "created": created_ids, "updated": updated_ids }),
            );
        }
        self.commit(txn, bus).await?;
        *progress = next;
        Ok(())
    }

    /// PostgreSQL plans from table statistics; a table that grew from nothing during an import still looks
    /// empty to the planner, which then scans it for every batch's duplicate lookup (measured: 100k rows
    /// took 6 minutes instead of seconds). Re-analysing as the table doubles keeps the unique indexes in
    /// use. SQLite needs nothing here.
    /// During the import only the columns its lookups filter on are sampled (a full ANALYZE of 100k
    /// contacts with their JSON attributes costs more than a batch); the whole tables are analysed once in
    /// the background when the import is over.
    async fn refresh_statistics(&self, finished: bool) {
        if self.backend() != sea_orm::DbBackend::Postgres {
            return;
        }
        if finished {
            let db = self.db.clone();
            tokio::spawn(async move {
                if let Err(e) = db.execute_unprepared("ANALYZE contacts, contact_identities, contact_tags").await {
                    tracing::warn!(error = %e, "ANALYZE after an import failed");
                }
            });
        } else if let Err(e) = self
            .db
            .execute_unprepared(
                "ANALYZE contacts (account_id, phone, email), contact_identities (account_id, channel_type, identity)",
            )
            .await
        {
            tracing::warn!(error = %e, "ANALYZE after an import batch failed");
        }
    }

    /// Marks imports whose process stopped writing (a crash or a restart) as failed. Their report still
    /// accounts for every row written before the stop.
    pub async fn fail_stale_imports(&self) -> AppResult<u64> {
        let cutoff: DateTime<Utc> = Utc::now() - Duration::seconds(STALE_AFTER_SECS);
        let res = contact_import::Entity::update_many()
            .col_expr(contact_import::Column::Status, Expr::val("failed"))
            .col_expr(
                contact_import::Column::Message,
                Expr::val("interrupted: the process running this import stopped; the counts show the rows written before it stopped — import the rest again (on_duplicate=skip makes that safe)"),
            )
            .col_expr(contact_import::Column::FinishedAt, Expr::val(Utc::now()))
            .filter(contact_import::Column::Status.is_in(["queued", "running"]))
            .filter(contact_import::Column::UpdatedAt.lt(cutoff))
            .exec(&self.db)
            .await?;
        Ok(res.rows_affected)
    }
}

/// Fields of the row replace the stored ones; attributes and identities are merged (row wins); opt-outs
/// are united.
fn merge(current: &contact::Model, row: &Normalised) -> Normalised {
    let mut attributes = current.attributes.as_object().cloned().unwrap_or_default();
    attributes.extend(row.attributes.clone());
    let mut identities = current.channel_identities.as_object().cloned().unwrap_or_default();
    identities.extend(row.channel_identities.clone());
    let mut opt_outs = super::service::opt_outs(current);
    for o in &row.opted_out_channels {
        if !opt_outs.contains(o) {
            opt_outs.push(o.clone());
        }
    }
    opt_outs.sort();
    Normalised {
        first_name: row.first_name.clone().or(current.first_name.clone()),
        last_name: row.last_name.clone().or(current.last_name.clone()),
        display_name: row.display_name.clone().or(current.display_name.clone()),
        phone: row.phone.clone().or(current.phone.clone()),
        email: row.email.clone().or(current.email.clone()),
        channel_identities: identities,
        preferred_channel: row.preferred_channel.clone().or(current.preferred_channel.clone()),
        language: row.language.clone().or(current.language.clone()),
        timezone: row.timezone.clone().or(current.timezone.clone()),
        attributes,
        opted_out_channels: opt_outs,
    }
}

fn conflict_after_merge(
    n: &Normalised,
    id: Uuid,
    by_phone: &HashMap<String, Uuid>,
    by_email: &HashMap<String, Uuid>,
) -> Option<(&'static str, Uuid)> {
    if let Some(other) = n.phone.as_ref().and_then(|p| by_phone.get(p)).filter(|o| **o != id) {
        return Some(("phone", *other));
    }
    if let Some(other) = n.email.as_ref().and_then(|e| by_email.get(e)).filter(|o| **o != id) {
        return Some(("email", *other));
    }
    None
}

/// `INSERT … ON CONFLICT DO NOTHING` in chunks; returns the rows really inserted.
async fn insert_ignore<C: ConnectionTrait, E: EntityTrait>(
    db: &C,
    entity: E,
    columns: &[E::Column],
    rows: Vec<Vec<Value>>,
    conflict: &[E::Column],
) -> AppResult<u64> {
    let mut inserted = 0;
    // At most ~8,000 bound values per statement (SQLite allows 32,766; PostgreSQL 65,535).
    let per = (8000 / columns.len().max(1)).max(1);
    for chunk in rows.chunks(per) {
        let mut q = Query::insert();
        q.into_table(entity).columns(columns.to_vec());
        for row in chunk {
            q.values_panic(row.iter().cloned().map(Into::into));
        }
        q.on_conflict(OnConflict::columns(conflict.to_vec()).do_nothing().to_owned());
        inserted += db.execute(&q).await?.rows_affected();
    }
    Ok(inserted)
}

/// Tag names → ids for one import, creating missing tags.
#[derive(Default)]
struct TagCache(HashMap<String, Uuid>);

impl TagCache {
    async fn id<C: ConnectionTrait>(&mut self, db: &C, scope: AccountScope, name: &str) -> AppResult<Uuid> {
        if let Some(id) = self.0.get(name) {
            return Ok(*id);
        }
        let found = store::tags_in(scope).filter(tag::Column::Name.eq(name)).one(db).await?;
        let id = match found {
            Some(t) => t.id,
            None => {
                let now = Utc::now();
                let t = tag::ActiveModel {
                    id: Set(Uuid::now_v7()),
                    account_id: Set(scope.account_id()),
                    name: Set(name.to_string()),
                    color: Set(DEFAULT_TAG_COLOR.into()),
                    created_at: Set(now),
                    updated_at: Set(now),
                };
                t.insert(db).await?.id
            }
        };
        self.0.insert(name.to_string(), id);
        Ok(id)
    }
}

// ------------------------------------------------------------------ HTTP

#[derive(Debug, Serialize, ToSchema)]
pub struct ImportJobDto {
    pub id: Uuid,
    /// queued | running | completed | failed
    pub status: String,
    pub file_name: Option<String>,
    pub total_rows: i64,
    pub created: i64,
    pub updated: i64,
    pub skipped: i64,
    /// All bad rows; `errors` lists the first 1,000.
    pub error_count: i64,
    pub errors: Vec<RowError>,
    /// Why a failed job stopped.
    pub message: Option<String>,
    pub on_duplicate: OnDuplicate,
    pub group_id: Option<Uuid>,
    pub tag_ids: Vec<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<contact_import::Model> for ImportJobDto {
    fn from(j: contact_import::Model) -> Self {
        let options: Option<ImportOptions> = serde_json::from_value(j.options.clone()).ok();
        ImportJobDto {
            id: j.id,
            status: j.status,
            file_name: j.file_name,
            total_rows: j.total_rows,
            created: j.created,
            updated: j.updated,
            skipped: j.skipped,
            error_count: j.error_count,
            errors: serde_json::from_value(j.errors).unwrap_or_default(),
            message: j.message,
            on_duplicate: options.as_ref().map(|o| o.on_duplicate).unwrap_or(OnDuplicate::Skip),
            group_id: options.as_ref().and_then(|o| o.group_id),
            tag_ids: options.map(|o| o.tag_ids).unwrap_or_default(),
            created_at: j.created_at,
            updated_at: j.updated_at,
            finished_at: j.finished_at,
        }
    }
}

pub const IMPORT_FIELDS: &[Field<contact_import::Column>] = &[
    Field::new("id", contact_import::Column::Id, Kind::Uuid),
    Field::new("status", contact_import::Column::Status, Kind::Enum(&["queued", "running", "completed", "failed"])),
    Field::sortable("created_at", contact_import::Column::CreatedAt, Kind::Timestamp),
    Field::sortable("updated_at", contact_import::Column::UpdatedAt, Kind::Timestamp),
];

/// Raw option values, from multipart fields or the query string.
#[derive(Default)]
struct RawOptions {
    mapping: Option<String>,
    on_duplicate: Option<String>,
    group_id: Option<String>,
    tag_ids: Vec<String>,
}

impl RawOptions {
    fn set(&mut self, key: &str, value: String) -> AppResult<()> {
        match key {
            "mapping" => self.mapping = Some(value),
            "on_duplicate" => self.on_duplicate = Some(value),
            "group_id" => self.group_id = Some(value),
            "tag_ids" | "tag_ids[]" | "tag_id" => {
                let v = value.trim();
                if v.starts_with('[') {
                    let ids: Vec<String> = serde_json::from_str(v).map_err(|_| {
                        AppError::field("tag_ids", "must be a JSON array of tag ids or comma-separated ids")
                    })?;
                    self.tag_ids.extend(ids);
                } else {
                    self.tag_ids.extend(v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()));
                }
            }
            other => {
                return Err(AppError::field(
                    other,
                    "unknown import option; use mapping, on_duplicate, group_id, tag_ids",
                ));
            }
        }
        Ok(())
    }

    fn parse(self) -> AppResult<ImportOptions> {
        let mapping = match self.mapping.filter(|m| !m.trim().is_empty()) {
            None => None,
            Some(m) => Some(
                serde_json::from_str::<HashMap<String, String>>(&m)
                    .map_err(|_| AppError::field("mapping", "must be a JSON object of column name → field"))?,
            ),
        };
        let on_duplicate = match self.on_duplicate.as_deref().map(str::trim) {
            None | Some("") | Some("skip") => OnDuplicate::Skip,
            Some("update") => OnDuplicate::Update,
            Some(_) => return Err(AppError::field("on_duplicate", "must be skip or update")),
        };
        let group_id = match self.group_id.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            None => None,
            Some(g) => Some(Uuid::parse_str(g).map_err(|_| AppError::field("group_id", "must be a UUID"))?),
        };
        let tag_ids = self
            .tag_ids
            .iter()
            .map(|t| Uuid::parse_str(t).map_err(|_| AppError::field("tag_ids", format!("`{t}` is not a UUID"))))
            .collect::<AppResult<Vec<_>>>()?;
        Ok(ImportOptions { mapping, on_duplicate, group_id, tag_ids })
    }
}

/// Where uploads are spooled while they are imported.
pub fn spool_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("imports")
}

/// Streams the body to a file, refusing (413) more than `limit` bytes.
async fn spool<S, E>(mut stream: S, file: &mut std::fs::File, limit: usize) -> AppResult<u64>
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut written = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| AppError::bad_request(format!("upload interrupted: {e}")))?;
        written += chunk.len() as u64;
        if written > limit as u64 {
            return Err(AppError::PayloadTooLarge { limit });
        }
        file.write_all(&chunk).map_err(AppError::internal)?;
    }
    Ok(written)
}

/// Starts an import: a multipart upload (`file` plus `mapping`, `on_duplicate`, `group_id`, `tag_ids`
/// fields) or a `text/csv` body with the options in the query string. Answers 202 with the job;
/// `GET /v1/contacts/imports/{id}` shows its progress.
#[utoipa::path(post, path = "/v1/contacts/import", tag = "contacts",
    params(("mapping" = Option<String>, Query, description = "URL-encoded JSON {column: field} (text/csv bodies)"), ("on_duplicate" = Option<OnDuplicate>, Query), ("group_id" = Option<Uuid>, Query), ("tag_ids" = Option<String>, Query, description = "comma-separated")),
    request_body(content = String, content_type = "text/csv", description = "CSV with a header row (or multipart/form-data with a `file` part), at most 50 MiB"),
    responses((status = 202, body = Envelope<ImportJobDto>), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn start_import(
    state: web::Data<AppState>,
    ctx: RequestCtx,
    req: HttpRequest,
    payload: web::Payload,
) -> AppResult<HttpResponse> {
    ctx.require("contacts:import")?;
    let content_type =
        req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    let limit = state.settings.http.import_body_limit;
    if let Some(len) =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok())
        && len > limit as u64 + 64 * 1024
    {
        return Err(AppError::PayloadTooLarge { limit });
    }
    let dir = spool_dir(&state.settings.data_dir);
    std::fs::create_dir_all(&dir).map_err(AppError::internal)?;
    let spooled =
        tempfile::Builder::new().prefix("upload-").suffix(".csv").tempfile_in(&dir).map_err(AppError::internal)?;
    let (mut file, path) = spooled.into_parts();
    let mut raw = RawOptions::default();
    let mut file_name = None;
    if content_type.starts_with("multipart/form-data") {
        let mut multipart = actix_multipart::Multipart::new(req.headers(), payload);
        let mut got_file = false;
        while let Some(field) = multipart.next().await {
            let mut field = field.map_err(|e| AppError::bad_request(format!("malformed multipart body: {e}")))?;
            let name = field.name().unwrap_or_default().to_string();
            if name == "file" {
                file_name = field.content_disposition().and_then(|d| d.get_filename()).map(str::to_string);
                spool(&mut field, &mut file, limit).await?;
                got_file = true;
            } else {
                let mut value = Vec::new();
                while let Some(chunk) = field.next().await {
                    let chunk = chunk.map_err(|e| AppError::bad_request(format!("malformed multipart body: {e}")))?;
                    value.extend_from_slice(&chunk);
                    if value.len() > 64 * 1024 {
                        return Err(AppError::field(name, "form field is too large"));
                    }
                }
                let value =
                    String::from_utf8(value).map_err(|_| AppError::field(name.clone(), "must be UTF-8 text"))?;
                raw.set(&name, value)?;
            }
        }
        if !got_file {
            return Err(AppError::field("file", "a multipart import needs a `file` part with the CSV"));
        }
    } else if content_type.starts_with("text/csv")
        || content_type.starts_with("application/csv")
        || content_type.starts_with("text/plain")
    {
        for (k, v) in form_urlencoded::parse(req.query_string().as_bytes()) {
            raw.set(&k, v.into_owned())?;
        }
        spool(payload, &mut file, limit).await?;
    } else {
        return Err(AppError::bad_request(
            "send the CSV as text/csv (options in the query string) or as multipart/form-data",
        ));
    }
    file.flush().map_err(AppError::internal)?;
    drop(file);
    let options = raw.parse()?;
    state.contacts.check_header(&path, &options)?;
    let job = state.contacts.create_import(ctx.scope(), Some(ctx.user_id()), file_name, &options).await?;
    // The job owns the file from here; it is removed when the job ends.
    let path = path.keep().map_err(AppError::internal)?;
    let contacts = state.contacts.clone();
    let (scope, job_id, meta) = (ctx.scope(), job.id, ctx.meta());
    state.tasks.spawn(async move {
        if let Err(e) = contacts.run_import(scope, job_id, path.clone(), meta, |_| {}).await {
            tracing::warn!(import_id = %job_id, error = %e, "contact import failed");
        }
        let _ = std::fs::remove_file(&path);
    });
    Ok(HttpResponse::Accepted().json(Envelope { success: true, data: ImportJobDto::from(job), message: None }))
}

#[utoipa::path(get, path = "/v1/contacts/imports", tag = "contacts", params(("filter" = Option<Vec<String>>, Query), ("sort" = Option<Vec<String>>, Query), ("skip" = Option<u64>, Query), ("limit" = Option<u64>, Query)),
    responses((status = 200, body = ListEnvelope<ImportJobDto>)), security(("bearer" = [])))]
pub async fn list_imports(state: web::Data<AppState>, ctx: RequestCtx, q: ListQuery) -> AppResult<HttpResponse> {
    ctx.require("contacts:import")?;
    let select = contact_import::Entity::find().filter(contact_import::Column::AccountId.eq(ctx.account_id()));
    let select = q.apply(select, IMPORT_FIELDS, contact_import::Column::Id, contact_import::Column::CreatedAt)?;
    Ok(envelope::list(q.fetch(&state.db, select).await?.map(ImportJobDto::from)))
}

#[utoipa::path(get, path = "/v1/contacts/imports/{id}", tag = "contacts", responses((status = 200, body = Envelope<ImportJobDto>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_import(state: web::Data<AppState>, ctx: RequestCtx, id: web::Path<Uuid>) -> AppResult<HttpResponse> {
    ctx.require("contacts:import")?;
    Ok(envelope::ok(ImportJobDto::from(state.contacts.get_import(ctx.scope(), id.into_inner()).await?)))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/contacts/import", web::post().to(start_import))
        .route("/v1/contacts/imports", web::get().to(list_imports))
        .route("/v1/contacts/imports/{id}", web::get().to(get_import));
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

    #[test]
    fn options_parse_from_strings() {
        let mut raw = RawOptions::default();
        raw.set("mapping", r#"{"Phone Number": "phone"}"#.into()).unwrap();
        raw.set("on_duplicate", "update".into()).unwrap();
        raw.set("tag_ids", "0190f7a0-0000-7000-8000-000000000000".into()).unwrap();
        let o = raw.parse().unwrap();
        assert_eq!(o.on_duplicate, OnDuplicate::Update);
        assert_eq!(o.tag_ids.len(), 1);
        let mut raw = RawOptions::default();
        raw.set("on_duplicate", "merge".into()).unwrap();
        assert!(matches!(raw.parse(), Err(AppError::Validation(_))));
        assert!(RawOptions::default().set("colour", "x".into()).is_err());
    }
}
