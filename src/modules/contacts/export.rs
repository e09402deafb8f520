//! CSV export: `GET /v1/contacts/export?filter=…|segment_id=…|group_id=…` streams every matching contact
//! (keyset pages by id, constant memory) with one column per attribute key and per channel identity
//! type. The header uses the import's field names, so an export imports back unchanged.

use actix_web::{HttpResponse, web};
use futures_util::stream;
use sea_orm::sea_query::{Condition, Query};
use sea_orm::{ColumnTrait, ConnectionTrait, DbBackend, QueryFilter, QueryOrder, QuerySelect, QueryTrait, Statement};
use uuid::Uuid;

use super::entity::contact;
use super::service::{Contacts, opt_outs};
use super::store;
use crate::app::AppState;
use crate::http::ctx::{AccountScope, RequestCtx};
use crate::http::error::{AppError, AppResult, ErrorBody};
use crate::http::list::ListQuery;

const PAGE: u64 = 1000;
/// `id`, then the import's mappable fields in their order, then the timestamps: the header an export
/// writes is one the import reads back (`id` and the timestamps are ignored there).
fn fixed_columns() -> Vec<&'static str> {
    let mut cols = vec!["id"];
    cols.extend_from_slice(super::import::MAPPABLE);
    cols.extend(["created_at", "updated_at"]);
    cols
}

/// What to export: the account's contacts narrowed by a filter, a segment or a group.
pub struct ExportPlan {
    pub scope: AccountScope,
    pub condition: Condition,
    pub attribute_keys: Vec<String>,
    pub identity_keys: Vec<String>,
}

impl Contacts {
    /// Resolves `filter`s / `segment_id` / `group_id` into one condition (404 for a foreign segment or group).
    pub async fn export_condition(
        &self,
        scope: AccountScope,
        filters: &[crate::http::list::Filter],
        segment_id: Option<Uuid>,
        group_id: Option<Uuid>,
    ) -> AppResult<Condition> {
        let mut cond = Condition::all().add(self.compile(filters)?);
        if let Some(s) = segment_id {
            let s = self.get_segment(scope, s).await?;
            cond = cond.add(self.segment_condition(&s)?);
        }
        if let Some(g) = group_id {
            self.get_group(scope, g).await?;
            let members = Query::select()
                .column(super::entity::group_member::Column::ContactId)
                .from(super::entity::group_member::Entity)
                .and_where(super::entity::group_member::Column::GroupId.eq(g))
                .to_owned();
            cond = cond.add(contact::Column::Id.in_subquery(members));
        }
        Ok(cond)
    }

    pub async fn export_plan(&self, scope: AccountScope, condition: Condition) -> AppResult<ExportPlan> {
        let attribute_keys = self.distinct_keys(scope, &condition, "attributes").await?;
        let identity_keys = self.distinct_keys(scope, &condition, "channel_identities").await?;
        Ok(ExportPlan { scope, condition, attribute_keys, identity_keys })
    }

    /// Every key used in a JSON object column by the matching contacts, sorted.
    async fn distinct_keys(&self, scope: AccountScope, condition: &Condition, column: &str) -> AppResult<Vec<String>> {
        let backend = self.backend();
        let ids = store::contacts_in(scope).select_only().column(contact::Column::Id).filter(condition.clone());
        let (sub, values) = match backend {
            DbBackend::Postgres => ids.into_query().build(sea_orm::sea_query::PostgresQueryBuilder),
            _ => ids.into_query().build(sea_orm::sea_query::SqliteQueryBuilder),
        };
        let sql = match backend {
            DbBackend::Postgres => format!(
                r#"SELECT DISTINCT jsonb_object_keys(c."{column}") AS k FROM contacts c WHERE c.id IN ({sub}) ORDER BY 1"#
            ),
            _ => format!(
                r#"SELECT DISTINCT j.key AS k FROM contacts c, json_each(c."{column}") j WHERE c.id IN ({sub}) ORDER BY 1"#
            ),
        };
        let rows = self.db.query_all_raw(Statement::from_sql_and_values(backend, sql, values)).await?;
        rows.iter().map(|r| r.try_get::<String>("", "k").map_err(AppError::from)).collect()
    }

    /// One page of the export after `after` (keyset by id), as CSV bytes; `None` when done.
    pub async fn export_page(
        &self,
        plan: &ExportPlan,
        after: Option<Uuid>,
        header: bool,
    ) -> AppResult<Option<(Vec<u8>, Uuid, u64)>> {
        let mut q = store::contacts_in(plan.scope).filter(plan.condition.clone());
        if let Some(a) = after {
            q = q.filter(contact::Column::Id.gt(a));
        }
        let rows = q.order_by_asc(contact::Column::Id).limit(PAGE).all(&self.db).await?;
        let Some(last) = rows.last().map(|c| c.id) else {
            return Ok(None);
        };
        let count = rows.len() as u64;
        let views = self.views(plan.scope, rows).await?;
        let mut w = csv::Writer::from_writer(Vec::with_capacity(256 * views.len()));
        let csv_err = |e: csv::Error| AppError::internal(e);
        if header {
            let mut h: Vec<String> = fixed_columns().iter().map(|s| s.to_string()).collect();
            h.extend(plan.identity_keys.iter().map(|k| format!("channel_identities.{k}")));
            h.extend(plan.attribute_keys.iter().map(|k| format!("attributes.{k}")));
            w.write_record(&h).map_err(csv_err)?;
        }
        for v in views {
            let c = &v.contact;
            let s = |o: &Option<String>| o.clone().unwrap_or_default();
            let mut rec = vec![
                c.id.to_string(),
                s(&c.first_name),
                s(&c.last_name),
                s(&c.display_name),
                s(&c.phone),
                s(&c.email),
                s(&c.preferred_channel),
                s(&c.language),
                s(&c.timezone),
                opt_outs(c).join(";"),
                v.tags.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(";"),
                c.created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                c.updated_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            ];
            for k in &plan.identity_keys {
                rec.push(c.channel_identities.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_string());
            }
            for k in &plan.attribute_keys {
                rec.push(match c.attributes.get(k) {
                    None | Some(serde_json::Value::Null) => String::new(),
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                });
            }
            w.write_record(&rec).map_err(csv_err)?;
        }
        let bytes = w.into_inner().map_err(|e| AppError::internal(e.to_string()))?;
        Ok(Some((bytes, last, count)))
    }
}

/// Streams the contacts as CSV. Options: `filter=` (repeatable), `segment_id=`, `group_id=`, `q=`.
#[utoipa::path(get, path = "/v1/contacts/export", tag = "contacts",
    params(("filter" = Option<Vec<String>>, Query), ("segment_id" = Option<Uuid>, Query), ("group_id" = Option<Uuid>, Query)),
    responses((status = 200, content_type = "text/csv", description = "CSV, streamed"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn export_contacts(state: web::Data<AppState>, ctx: RequestCtx, q: ListQuery) -> AppResult<HttpResponse> {
    ctx.require("contacts:export")?;
    let mut segment_id = None;
    let mut group_id = None;
    let mut search = None;
    for (k, v) in &q.extra {
        let id = || Uuid::parse_str(v).map_err(|_| AppError::bad_request(format!("{k} must be a UUID")));
        match k.as_str() {
            "segment_id" => segment_id = Some(id()?),
            "group_id" => group_id = Some(id()?),
            "q" => search = super::filter::search(v),
            _ => {}
        }
    }
    let mut cond = state.contacts.export_condition(ctx.scope(), &q.filters, segment_id, group_id).await?;
    if let Some(s) = search {
        cond = cond.add(s);
    }
    let plan = state.contacts.export_plan(ctx.scope(), cond).await?;
    // The first page is produced before answering, so an error there is still a proper error response.
    let Some(first) = state.contacts.export_page(&plan, None, true).await? else {
        return Ok(csv_response().body(header_only()));
    };
    let first = Some(first);
    let contacts = state.contacts.clone();
    let body = stream::unfold((first, Some(plan), contacts), |(ready, plan, contacts)| async move {
        let plan = plan?;
        match ready {
            Some((bytes, last, _)) => {
                let next = contacts.export_page(&plan, Some(last), false).await;
                let next = match next {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::error!(error = %e, "contact export stopped");
                        None
                    }
                };
                Some((Ok::<_, actix_web::Error>(bytes::Bytes::from(bytes)), (next, Some(plan), contacts)))
            }
            None => None,
        }
    });
    Ok(csv_response().streaming(body))
}

fn csv_response() -> actix_web::HttpResponseBuilder {
    let mut r = HttpResponse::Ok();
    r.content_type("text/csv; charset=utf-8")
        .insert_header(("content-disposition", "attachment; filename=\"contacts.csv\""));
    r
}

/// The CSV of an empty selection still has its header (the first page writes it only when a row exists).
pub fn header_only() -> Vec<u8> {
    let mut h = fixed_columns().join(",");
    h.push('\n');
    h.into_bytes()
}

/// Used by the CLI: writes the whole export to `out`, returns the number of contacts.
pub async fn export_to<W: std::io::Write>(contacts: &Contacts, plan: &ExportPlan, out: &mut W) -> AppResult<u64> {
    let mut after = None;
    let mut first = true;
    let mut n = 0u64;
    while let Some((bytes, last, count)) = contacts.export_page(plan, after, first).await? {
        out.write_all(&bytes).map_err(AppError::internal)?;
        first = false;
        after = Some(last);
        n += count;
    }
    if first {
        out.write_all(&header_only()).map_err(AppError::internal)?;
    }
    Ok(n)
}
