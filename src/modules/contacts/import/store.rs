//! Queries of contact imports: the job rows, and the bulk writes of a batch. Every function takes the
//! [`AccountScope`] of the job (or a job id checked against it earlier).

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, Set, Value};
use serde_json::json;
use uuid::Uuid;

use super::{BATCH_ROWS, Progress};
use crate::db::list::{Field, Kind, ListQuery, Page};
use crate::error::{AppError, AppResult};
use crate::modules::accounts::AccountScope;
use crate::modules::contacts::entity::contact_import::{IMPORT_STATUSES, ImportStatus};
use crate::modules::contacts::entity::{
    contact, contact_identity, contact_import, contact_tag, group, group_member, tag,
};
use crate::modules::contacts::store::contacts_in;

pub const IMPORT_FIELDS: &[Field<contact_import::Column>] = &[
    Field::new("account_id", contact_import::Column::AccountId, Kind::Uuid),
    Field::new("id", contact_import::Column::Id, Kind::Uuid),
    Field::new("status", contact_import::Column::Status, Kind::Enum(IMPORT_STATUSES)),
    Field::sortable("created_at", contact_import::Column::CreatedAt, Kind::Timestamp),
    Field::sortable("updated_at", contact_import::Column::UpdatedAt, Kind::Timestamp),
];

pub async fn insert_import<C: ConnectionTrait>(
    db: &C,
    job: contact_import::ActiveModel,
) -> AppResult<contact_import::Model> {
    Ok(job.insert(db).await?)
}

pub async fn find_import<C: ConnectionTrait>(
    db: &C,
    scope: AccountScope,
    id: Uuid,
) -> AppResult<Option<contact_import::Model>> {
    Ok(contact_import::Entity::find_by_id(id)
        .filter(contact_import::Column::AccountId.eq(scope.account_id()))
        .one(db)
        .await?)
}

pub async fn list_imports<C: ConnectionTrait>(
    db: &C,
    scope: AccountScope,
    q: &ListQuery,
) -> AppResult<Page<contact_import::Model>> {
    let select = contact_import::Entity::find().filter(contact_import::Column::AccountId.eq(scope.account_id()));
    let select = q.apply(select, IMPORT_FIELDS, contact_import::Column::Id, contact_import::Column::CreatedAt)?;
    q.fetch(db, select).await
}

pub async fn mark_import_running<C: ConnectionTrait>(db: &C, job_id: Uuid) -> AppResult<()> {
    contact_import::Entity::update_many()
        .col_expr(contact_import::Column::Status, Expr::val(ImportStatus::Running.as_str()))
        .col_expr(contact_import::Column::UpdatedAt, Expr::val(Utc::now()))
        .filter(contact_import::Column::Id.eq(job_id))
        .exec(db)
        .await?;
    Ok(())
}

/// Writes the job's totals and reported errors after a batch (in the batch's transaction).
pub async fn record_progress<C: ConnectionTrait>(db: &C, job_id: Uuid, p: &Progress) -> AppResult<()> {
    contact_import::Entity::update_many()
        .col_expr(contact_import::Column::TotalRows, Expr::val(p.total_rows as i64))
        .col_expr(contact_import::Column::Created, Expr::val(p.created as i64))
        .col_expr(contact_import::Column::Updated, Expr::val(p.updated as i64))
        .col_expr(contact_import::Column::Skipped, Expr::val(p.skipped as i64))
        .col_expr(contact_import::Column::ErrorCount, Expr::val(p.error_count as i64))
        .col_expr(contact_import::Column::Errors, Expr::val(json!(p.errors)))
        .col_expr(contact_import::Column::UpdatedAt, Expr::val(Utc::now()))
        .filter(contact_import::Column::Id.eq(job_id))
        .exec(db)
        .await?;
    Ok(())
}

/// Renews a running job's lease (its `updated_at`).
pub async fn renew_import_lease<C: ConnectionTrait>(db: &C, job_id: Uuid) -> AppResult<()> {
    contact_import::Entity::update_many()
        .col_expr(contact_import::Column::UpdatedAt, Expr::val(Utc::now()))
        .filter(contact_import::Column::Id.eq(job_id))
        .filter(contact_import::Column::Status.is_in([ImportStatus::Queued, ImportStatus::Running]))
        .exec(db)
        .await?;
    Ok(())
}

/// Ids of the queued and running jobs (a system query across accounts, for upload housekeeping).
pub async fn live_import_ids<C: ConnectionTrait>(db: &C) -> AppResult<Vec<Uuid>> {
    Ok(contact_import::Entity::find()
        .select_only()
        .column(contact_import::Column::Id)
        .filter(contact_import::Column::Status.is_in([ImportStatus::Queued, ImportStatus::Running]))
        .into_tuple::<Uuid>()
        .all(db)
        .await?)
}

/// Marks queued or running jobs whose lease is older than `cutoff` as failed with `message`; returns
/// their ids.
pub async fn fail_imports_idle_since<C: ConnectionTrait>(
    db: &C,
    cutoff: DateTime<Utc>,
    message: &str,
) -> AppResult<Vec<Uuid>> {
    fail_live_imports(db, contact_import::Column::UpdatedAt.lt(cutoff), message).await
}

/// Marks the queued or running jobs of `owner` as failed with `message`; returns their ids.
pub async fn fail_imports_of_owner<C: ConnectionTrait>(db: &C, owner: &str, message: &str) -> AppResult<Vec<Uuid>> {
    fail_live_imports(db, contact_import::Column::Owner.eq(owner), message).await
}

/// Fails the live jobs matching `which`: the ids are read, then only those still live are updated, so
/// a job that finished in between keeps its outcome.
async fn fail_live_imports<C: ConnectionTrait>(db: &C, which: Expr, message: &str) -> AppResult<Vec<Uuid>> {
    let live = [ImportStatus::Queued, ImportStatus::Running];
    let ids: Vec<Uuid> = contact_import::Entity::find()
        .select_only()
        .column(contact_import::Column::Id)
        .filter(contact_import::Column::Status.is_in(live))
        .filter(which)
        .into_tuple()
        .all(db)
        .await?;
    if ids.is_empty() {
        return Ok(ids);
    }
    contact_import::Entity::update_many()
        .col_expr(contact_import::Column::Status, Expr::val(ImportStatus::Failed.as_str()))
        .col_expr(contact_import::Column::Message, Expr::val(message))
        .col_expr(contact_import::Column::FinishedAt, Expr::val(Utc::now()))
        .filter(contact_import::Column::Status.is_in(live))
        .filter(contact_import::Column::Id.is_in(ids.clone()))
        .exec(db)
        .await?;
    Ok(ids)
}

/// The account's contacts whose phone or e-mail is among these. Two lookups, each on its unique index
/// (an OR of both makes SQLite scan the account).
pub async fn contacts_by_phone_or_email<C: ConnectionTrait>(
    db: &C,
    scope: AccountScope,
    phones: Vec<String>,
    emails: Vec<String>,
) -> AppResult<Vec<contact::Model>> {
    let mut found = Vec::new();
    for (column, values) in [(contact::Column::Phone, phones), (contact::Column::Email, emails)] {
        if !values.is_empty() {
            found.extend(contacts_in(scope).filter(column.is_in(values)).all(db).await?);
        }
    }
    Ok(found)
}

/// The identity rows of the account among these `(channel_type, identity)` pairs.
pub async fn identities_among<C: ConnectionTrait>(
    db: &C,
    scope: AccountScope,
    pairs: &[(String, String)],
) -> AppResult<Vec<contact_identity::Model>> {
    if pairs.is_empty() {
        return Ok(Vec::new());
    }
    // One `channel_type = ? AND identity IN (…)` per type: each is a range of the primary key
    // (account_id, channel_type, identity). An OR of one (type, identity) pair per row made SQLite scan
    // the account's identities once per batch (an import of 100,000 contacts with Telegram ids took
    // minutes instead of seconds).
    let mut by_type: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for (k, v) in pairs {
        by_type.entry(k.as_str()).or_default().push(v.as_str());
    }
    let mut any = sea_orm::Condition::any();
    for (k, values) in by_type {
        any = any.add(
            sea_orm::Condition::all()
                .add(contact_identity::Column::ChannelType.eq(k))
                .add(contact_identity::Column::Identity.is_in(values)),
        );
    }
    Ok(contact_identity::Entity::find()
        .filter(contact_identity::Column::AccountId.eq(scope.account_id()))
        .filter(any)
        .all(db)
        .await?)
}

/// Inserts new contacts of the account in chunks, and counts them into its total.
pub async fn insert_contacts<C: ConnectionTrait>(
    db: &C,
    scope: AccountScope,
    rows: Vec<contact::ActiveModel>,
) -> AppResult<()> {
    crate::modules::contacts::store::bump_contact_total(db, scope, rows.len() as i64).await?;
    for chunk in rows.chunks(BATCH_ROWS) {
        contact::Entity::insert_many(chunk.to_vec()).exec_without_returning(db).await?;
    }
    Ok(())
}

/// Indexes `(contact, channel type, identity)` triples; ones already indexed are left alone.
pub async fn insert_identities<C: ConnectionTrait>(
    db: &C,
    scope: AccountScope,
    identities: Vec<(Uuid, String, String)>,
) -> AppResult<u64> {
    insert_ignore(
        db,
        contact_identity::Entity,
        &[
            contact_identity::Column::AccountId,
            contact_identity::Column::ChannelType,
            contact_identity::Column::Identity,
            contact_identity::Column::ContactId,
        ],
        identities
            .into_iter()
            .map(|(c, k, v)| vec![Value::from(scope.account_id()), Value::from(k), Value::from(v), Value::from(c)])
            .collect(),
        &[
            contact_identity::Column::AccountId,
            contact_identity::Column::ChannelType,
            contact_identity::Column::Identity,
        ],
    )
    .await
}

/// Tags `(contact, tag)` pairs whose ids were checked against the account; pairs already there stay.
pub async fn insert_contact_tags<C: ConnectionTrait>(db: &C, pairs: Vec<(Uuid, Uuid)>) -> AppResult<u64> {
    insert_ignore(
        db,
        contact_tag::Entity,
        &[contact_tag::Column::ContactId, contact_tag::Column::TagId],
        pairs.into_iter().map(|(c, t)| vec![Value::from(c), Value::from(t)]).collect(),
        &[contact_tag::Column::ContactId, contact_tag::Column::TagId],
    )
    .await
}

/// Adds the contacts to the account's group, keeping `contact_count` exact; returns how many were new.
pub async fn add_group_members<C: ConnectionTrait>(
    db: &C,
    scope: AccountScope,
    group_id: Uuid,
    contact_ids: &[Uuid],
) -> AppResult<u64> {
    let now = Utc::now();
    let added = insert_ignore(
        db,
        group_member::Entity,
        &[group_member::Column::GroupId, group_member::Column::ContactId, group_member::Column::CreatedAt],
        contact_ids.iter().map(|c| vec![Value::from(group_id), Value::from(*c), Value::from(now)]).collect(),
        &[group_member::Column::GroupId, group_member::Column::ContactId],
    )
    .await?;
    if added > 0 {
        group::Entity::update_many()
            .col_expr(group::Column::ContactCount, Expr::col(group::Column::ContactCount).add(added as i64))
            .col_expr(group::Column::UpdatedAt, Expr::val(now))
            .filter(group::Column::Id.eq(group_id))
            .filter(group::Column::AccountId.eq(scope.account_id()))
            .exec(db)
            .await?;
    }
    Ok(added)
}

/// The id of the account's tag with this name, created (with `color`) when missing.
pub async fn tag_id_by_name<C: ConnectionTrait>(
    db: &C,
    scope: AccountScope,
    name: &str,
    color: &str,
) -> AppResult<Uuid> {
    use crate::modules::contacts::store::tags_in;
    if let Some(t) = tags_in(scope).filter(tag::Column::Name.eq(name)).one(db).await? {
        return Ok(t.id);
    }
    let now = Utc::now();
    let t = tag::ActiveModel {
        id: Set(Uuid::now_v7()),
        account_id: Set(scope.account_id()),
        name: Set(name.to_string()),
        color: Set(color.to_string()),
        created_at: Set(now),
        updated_at: Set(now),
    };
    Ok(t.insert(db).await?.id)
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
        inserted += db.execute(&q).await.map_err(AppError::from)?.rows_affected();
    }
    Ok(inserted)
}
