//! `/v1/contacts/import` (multipart or `text/csv`, spooled to disk while it streams in) and the import
//! jobs at `/v1/contacts/imports*`.

use std::collections::HashMap;
use std::io::Write;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::db::list::ListQuery;
use crate::error::{AppError, AppResult, ErrorBody};
use crate::http::envelope::{self, Envelope, ListEnvelope};
use crate::modules::accounts::RequestCtx;
use crate::modules::contacts::Contacts;
use crate::modules::contacts::entity::contact_import;
use crate::modules::contacts::import::{ImportOptions, OnDuplicate, RowError};

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
            status: j.status.to_string(),
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
    contacts: web::Data<Contacts>,
    ctx: RequestCtx,
    req: HttpRequest,
    payload: web::Payload,
) -> AppResult<HttpResponse> {
    ctx.require("contacts:import")?;
    let content_type =
        req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    let (limit, mut file, path) = contacts.new_upload()?;
    if let Some(len) =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok())
        && len > limit as u64 + 64 * 1024
    {
        return Err(AppError::PayloadTooLarge { limit });
    }
    let mut raw = RawOptions::default();
    let mut file_name = None;
    if content_type.starts_with("multipart/form-data") {
        let mut multipart = actix_multipart::Multipart::new(req.headers(), payload);
        let mut got_file = false;
        while let Some(field) = multipart.next().await {
            let mut field = field.map_err(|e| AppError::bad_request(format!("malformed multipart body: {e}")))?;
            let name = field.name().unwrap_or_default().to_string();
            if name == "file" {
                // A second file would be appended to the first (its header read as a data row).
                if got_file {
                    return Err(AppError::field(
                        "file",
                        "send one file per import (this request has several `file` parts)",
                    ));
                }
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
    let job = contacts.start_import(ctx.scope(), ctx.user_id(), file_name, &options, path, ctx.meta()).await?;
    Ok(HttpResponse::Accepted().json(Envelope { success: true, data: ImportJobDto::from(job), message: None }))
}

#[utoipa::path(get, path = "/v1/contacts/imports", tag = "contacts", params(("filter" = Option<Vec<String>>, Query), ("sort" = Option<Vec<String>>, Query), ("skip" = Option<u64>, Query), ("limit" = Option<u64>, Query)),
    responses((status = 200, body = ListEnvelope<ImportJobDto>)), security(("bearer" = [])))]
pub async fn list_imports(contacts: web::Data<Contacts>, ctx: RequestCtx, q: ListQuery) -> AppResult<HttpResponse> {
    ctx.require("contacts:import")?;
    Ok(envelope::list(contacts.list_imports(ctx.scope(), &q).await?.map(ImportJobDto::from)))
}

#[utoipa::path(get, path = "/v1/contacts/imports/{id}", tag = "contacts", responses((status = 200, body = Envelope<ImportJobDto>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_import(
    contacts: web::Data<Contacts>,
    ctx: RequestCtx,
    id: web::Path<Uuid>,
) -> AppResult<HttpResponse> {
    ctx.require("contacts:import")?;
    Ok(envelope::ok(ImportJobDto::from(contacts.get_import(ctx.scope(), id.into_inner()).await?)))
}

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/v1/contacts/import").route(web::post().to(start_import)))
        .service(web::resource("/v1/contacts/imports").route(web::get().to(list_imports)))
        .service(web::resource("/v1/contacts/imports/{id}").route(web::get().to(get_import)));
}

#[cfg(test)]
mod tests {
    use super::*;

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
