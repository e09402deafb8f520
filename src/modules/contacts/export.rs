//! CSV export (`GET /v1/contacts/export`, `turumba contacts export`): every matching contact in keyset
//! pages by id (constant memory), with one column per attribute key and per channel identity type. The
//! header uses the import's field names, so an export imports back unchanged.

use sea_orm::ColumnTrait;
use sea_orm::sea_query::{Condition, Query};
use uuid::Uuid;

use super::entity::contact;
use super::service::{Contacts, opt_outs};
use super::store;
use crate::db::list::Filter;
use crate::error::{AppError, AppResult};
use crate::modules::accounts::AccountScope;

const PAGE: u64 = 1000;
/// `id`, then the import's mappable fields in their order, then the timestamps: the header an export
/// writes is one the import reads back (`id` and the timestamps are ignored there).
fn fixed_columns() -> Vec<&'static str> {
    let mut cols = vec!["id"];
    cols.extend_from_slice(super::import::MAPPABLE);
    cols.extend(["created_at", "updated_at"]);
    cols
}

/// What an export selects: the account's contacts narrowed by list filters, a segment, a group and a
/// `q` search (each optional).
#[derive(Debug, Clone, Default)]
pub struct ExportSelection {
    pub filters: Vec<Filter>,
    pub segment_id: Option<Uuid>,
    pub group_id: Option<Uuid>,
    pub search: Option<String>,
}

/// What to export: the selection resolved into one condition, and the columns it needs.
pub struct ExportPlan {
    pub scope: AccountScope,
    pub condition: Condition,
    pub attribute_keys: Vec<String>,
    pub identity_keys: Vec<String>,
}

impl Contacts {
    /// Resolves the selection into one condition (404 for a foreign segment or group) and finds the
    /// attribute and identity columns the export will have.
    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn plan_export(&self, scope: AccountScope, selection: &ExportSelection) -> AppResult<ExportPlan> {
        let mut cond = Condition::all().add(self.compile(&selection.filters)?);
        if let Some(text) = &selection.search
            && let Some(search) = super::filter::search(text)
        {
            cond = cond.add(search);
        }
        if let Some(s) = selection.segment_id {
            let s = self.get_segment(scope, s).await?;
            cond = cond.add(self.segment_condition(&s)?);
        }
        if let Some(g) = selection.group_id {
            self.get_group(scope, g).await?;
            let members = Query::select()
                .column(super::entity::group_member::Column::ContactId)
                .from(super::entity::group_member::Entity)
                .and_where(super::entity::group_member::Column::GroupId.eq(g))
                .to_owned();
            cond = cond.add(contact::Column::Id.in_subquery(members));
        }
        self.export_plan(scope, cond).await
    }

    async fn export_plan(&self, scope: AccountScope, condition: Condition) -> AppResult<ExportPlan> {
        let attribute_keys = store::distinct_json_keys(&self.db, scope, &condition, "attributes").await?;
        let identity_keys = store::distinct_json_keys(&self.db, scope, &condition, "channel_identities").await?;
        Ok(ExportPlan { scope, condition, attribute_keys, identity_keys })
    }

    /// One page of the export after `after` (keyset by id), as CSV bytes; `None` when done.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn export_page(
        &self,
        plan: &ExportPlan,
        after: Option<Uuid>,
        header: bool,
    ) -> AppResult<Option<(Vec<u8>, Uuid, u64)>> {
        let rows = store::contacts_after(&self.db, plan.scope, plan.condition.clone(), after, PAGE).await?;
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
