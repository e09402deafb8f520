//! Queries of the contacts module. Every function takes an [`AccountScope`]: there is no unscoped query on
//! contact data.

use std::collections::HashMap;

use chrono::Utc;
use sea_orm::sea_query::{Condition, Expr, ExprTrait, OnConflict, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait, Select, Value,
};
use uuid::Uuid;

use super::entity::{contact, contact_identity, contact_tag, contact_total, group, group_member, segment, tag};
use super::filter::CONTACT_FIELDS;
use crate::db::list::{Field, Kind, ListQuery, Page};
use crate::error::{AppError, AppResult};
use crate::modules::accounts::AccountScope;

// Whitelisted list fields per resource (SPEC §2 filters); contacts' are the filter language's.

pub const TAG_FIELDS: &[Field<tag::Column>] = &[
    Field::new("account_id", tag::Column::AccountId, Kind::Uuid),
    Field::new("id", tag::Column::Id, Kind::Uuid),
    Field::sortable("name", tag::Column::Name, Kind::Text),
    Field::new("color", tag::Column::Color, Kind::Text),
    Field::sortable("created_at", tag::Column::CreatedAt, Kind::Timestamp),
    Field::sortable("updated_at", tag::Column::UpdatedAt, Kind::Timestamp),
];

pub const GROUP_FIELDS: &[Field<group::Column>] = &[
    Field::new("account_id", group::Column::AccountId, Kind::Uuid),
    Field::new("id", group::Column::Id, Kind::Uuid),
    Field::sortable("name", group::Column::Name, Kind::Text),
    Field::sortable("contact_count", group::Column::ContactCount, Kind::Int),
    Field::sortable("created_at", group::Column::CreatedAt, Kind::Timestamp),
    Field::sortable("updated_at", group::Column::UpdatedAt, Kind::Timestamp),
];

pub const SEGMENT_FIELDS: &[Field<segment::Column>] = &[
    Field::new("account_id", segment::Column::AccountId, Kind::Uuid),
    Field::new("id", segment::Column::Id, Kind::Uuid),
    Field::sortable("name", segment::Column::Name, Kind::Text),
    Field::sortable("created_at", segment::Column::CreatedAt, Kind::Timestamp),
    Field::sortable("updated_at", segment::Column::UpdatedAt, Kind::Timestamp),
];

/// A page of `select` (already scoped and filtered) with the caller's sorting and paging. `known_total`:
/// how many `select` matches when that is known without counting (the whole list: [`contact_total`]).
pub async fn list_contacts<C: ConnectionTrait>(
    db: &C,
    select: Select<contact::Entity>,
    q: &ListQuery,
    known_total: Option<u64>,
) -> AppResult<Page<contact::Model>> {
    let select = q.sort(select, CONTACT_FIELDS, contact::Column::Id, contact::Column::CreatedAt)?;
    match known_total {
        Some(total) => q.fetch_counted(db, select, total).await,
        None => q.fetch(db, select).await,
    }
}

/// How many contacts the account has (`contact_totals`).
pub async fn contact_total<C: ConnectionTrait>(db: &C, scope: AccountScope) -> AppResult<u64> {
    let row = contact_total::Entity::find_by_id(scope.account_id()).one(db).await?;
    Ok(row.map_or(0, |r| u64::try_from(r.total).unwrap_or(0)))
}

/// Adds `by` contacts (fewer when negative) to the account's total: in the transaction that inserts or
/// deletes them, so the total is exact whatever runs beside it.
pub async fn bump_contact_total<C: ConnectionTrait>(db: &C, scope: AccountScope, by: i64) -> AppResult<()> {
    if by == 0 {
        return Ok(());
    }
    let row = contact_total::ActiveModel { account_id: sea_orm::Set(scope.account_id()), total: sea_orm::Set(by) };
    let total = (contact_total::Entity, contact_total::Column::Total);
    contact_total::Entity::insert(row)
        .on_conflict(
            OnConflict::column(contact_total::Column::AccountId)
                .value(contact_total::Column::Total, Expr::col(total).add(Expr::cust("excluded.total")))
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

pub async fn list_tags<C: ConnectionTrait>(db: &C, scope: AccountScope, q: &ListQuery) -> AppResult<Page<tag::Model>> {
    let select = q.apply(tags_in(scope), TAG_FIELDS, tag::Column::Id, tag::Column::CreatedAt)?;
    q.fetch(db, select).await
}

pub async fn list_groups<C: ConnectionTrait>(
    db: &C,
    scope: AccountScope,
    q: &ListQuery,
) -> AppResult<Page<group::Model>> {
    let select = q.apply(groups_in(scope), GROUP_FIELDS, group::Column::Id, group::Column::CreatedAt)?;
    q.fetch(db, select).await
}

pub async fn list_segments<C: ConnectionTrait>(
    db: &C,
    scope: AccountScope,
    q: &ListQuery,
) -> AppResult<Page<segment::Model>> {
    let select = q.apply(segments_in(scope), SEGMENT_FIELDS, segment::Column::Id, segment::Column::CreatedAt)?;
    q.fetch(db, select).await
}

pub fn contacts_in(scope: AccountScope) -> Select<contact::Entity> {
    contact::Entity::find().filter(contact::Column::AccountId.eq(scope.account_id()))
}

pub fn tags_in(scope: AccountScope) -> Select<tag::Entity> {
    tag::Entity::find().filter(tag::Column::AccountId.eq(scope.account_id()))
}

pub fn groups_in(scope: AccountScope) -> Select<group::Entity> {
    group::Entity::find().filter(group::Column::AccountId.eq(scope.account_id()))
}

pub fn segments_in(scope: AccountScope) -> Select<segment::Entity> {
    segment::Entity::find().filter(segment::Column::AccountId.eq(scope.account_id()))
}

pub async fn find_contact<C: ConnectionTrait>(
    db: &C,
    scope: AccountScope,
    id: Uuid,
) -> AppResult<Option<contact::Model>> {
    Ok(contacts_in(scope).filter(contact::Column::Id.eq(id)).one(db).await?)
}

pub async fn find_tag<C: ConnectionTrait>(db: &C, scope: AccountScope, id: Uuid) -> AppResult<Option<tag::Model>> {
    Ok(tags_in(scope).filter(tag::Column::Id.eq(id)).one(db).await?)
}

pub async fn find_group<C: ConnectionTrait>(db: &C, scope: AccountScope, id: Uuid) -> AppResult<Option<group::Model>> {
    Ok(groups_in(scope).filter(group::Column::Id.eq(id)).one(db).await?)
}

pub async fn find_segment<C: ConnectionTrait>(
    db: &C,
    scope: AccountScope,
    id: Uuid,
) -> AppResult<Option<segment::Model>> {
    Ok(segments_in(scope).filter(segment::Column::Id.eq(id)).one(db).await?)
}

/// The contact that already has this phone or e-mail (other than `except`), and which field matched.
pub async fn find_duplicate<C: ConnectionTrait>(
    db: &C,
    scope: AccountScope,
    phone: Option<&str>,
    email: Option<&str>,
    except: Option<Uuid>,
) -> AppResult<Option<(&'static str, Uuid)>> {
    let mut any = Condition::any();
    if let Some(p) = phone {
        any = any.add(contact::Column::Phone.eq(p));
    }
    if let Some(e) = email {
        any = any.add(contact::Column::Email.eq(e));
    }
    if phone.is_none() && email.is_none() {
        return Ok(None);
    }
    let mut q = contacts_in(scope).filter(any);
    if let Some(id) = except {
        q = q.filter(contact::Column::Id.ne(id));
    }
    let found = q.limit(2).all(db).await?;
    Ok(found.into_iter().next().map(|c| {
        let field = if phone.is_some() && c.phone.as_deref() == phone { "phone" } else { "email" };
        (field, c.id)
    }))
}

/// The contact holding one of these identities (other than `except`).
pub async fn find_identity_owner<C: ConnectionTrait>(
    db: &C,
    scope: AccountScope,
    identities: &[(String, String)],
    except: Option<Uuid>,
) -> AppResult<Option<(String, Uuid)>> {
    for (kind, id) in identities {
        let row = contact_identity::Entity::find_by_id((scope.account_id(), kind.clone(), id.clone())).one(db).await?;
        if let Some(row) = row
            && Some(row.contact_id) != except
        {
            return Ok(Some((kind.clone(), row.contact_id)));
        }
    }
    Ok(None)
}

/// Replaces the identity index rows of a contact.
pub async fn set_identities<C: ConnectionTrait>(
    db: &C,
    scope: AccountScope,
    contact_id: Uuid,
    identities: &[(String, String)],
) -> AppResult<()> {
    contact_identity::Entity::delete_many()
        .filter(contact_identity::Column::AccountId.eq(scope.account_id()))
        .filter(contact_identity::Column::ContactId.eq(contact_id))
        .exec(db)
        .await?;
    if identities.is_empty() {
        return Ok(());
    }
    let rows = identities.iter().map(|(kind, id)| contact_identity::ActiveModel {
        account_id: sea_orm::Set(scope.account_id()),
        channel_type: sea_orm::Set(kind.clone()),
        identity: sea_orm::Set(id.clone()),
        contact_id: sea_orm::Set(contact_id),
    });
    // The caller checked the identities are free; a concurrent writer can still take one first.
    contact_identity::Entity::insert_many(rows).exec_without_returning(db).await.map_err(|e| {
        if crate::db::is_unique_violation(&e) {
            AppError::conflict("a channel identity of this contact belongs to another contact")
        } else {
            e.into()
        }
    })?;
    Ok(())
}

/// The tags of each contact, in name order (only this account's tags).
pub async fn tags_of<C: ConnectionTrait>(
    db: &C,
    scope: AccountScope,
    contact_ids: &[Uuid],
) -> AppResult<HashMap<Uuid, Vec<tag::Model>>> {
    let mut out: HashMap<Uuid, Vec<tag::Model>> = HashMap::new();
    if contact_ids.is_empty() {
        return Ok(out);
    }
    for chunk in contact_ids.chunks(500) {
        let rows = contact_tag::Entity::find()
            .filter(contact_tag::Column::ContactId.is_in(chunk.to_vec()))
            .find_also_related(tag::Entity)
            .filter(tag::Column::AccountId.eq(scope.account_id()))
            .order_by_asc(tag::Column::Name)
            .all(db)
            .await?;
        for (ct, t) in rows {
            if let Some(t) = t {
                out.entry(ct.contact_id).or_default().push(t);
            }
        }
    }
    Ok(out)
}

/// Tag ids of this account among `ids` (foreign or unknown ids are dropped).
pub async fn own_tag_ids<C: ConnectionTrait>(db: &C, scope: AccountScope, ids: &[Uuid]) -> AppResult<Vec<Uuid>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(tags_in(scope)
        .select_only()
        .column(tag::Column::Id)
        .filter(tag::Column::Id.is_in(ids.to_vec()))
        .into_tuple::<Uuid>()
        .all(db)
        .await?)
}

/// Contact ids of this account among `ids`.
pub async fn own_contact_ids<C: ConnectionTrait>(db: &C, scope: AccountScope, ids: &[Uuid]) -> AppResult<Vec<Uuid>> {
    let mut out = Vec::new();
    for chunk in ids.chunks(500) {
        out.extend(
            contacts_in(scope)
                .select_only()
                .column(contact::Column::Id)
                .filter(contact::Column::Id.is_in(chunk.to_vec()))
                .into_tuple::<Uuid>()
                .all(db)
                .await?,
        );
    }
    Ok(out)
}

/// Inserts (contact, tag) pairs for every contact of the account matching `cond`; returns how many
/// were new.
pub async fn tag_matching<C: ConnectionTrait>(
    db: &C,
    scope: AccountScope,
    tag_id: Uuid,
    cond: Condition,
) -> AppResult<u64> {
    let select = contacts_in(scope)
        .select_only()
        .column(contact::Column::Id)
        .column_as(Expr::val(tag_id), "tag_id")
        .filter(cond)
        .into_query();
    let insert = Query::insert()
        .into_table(contact_tag::Entity)
        .columns([contact_tag::Column::ContactId, contact_tag::Column::TagId])
        .select_from(select)
        .map_err(|e| sea_orm::DbErr::Custom(e.to_string()))?
        .on_conflict(
            OnConflict::columns([contact_tag::Column::ContactId, contact_tag::Column::TagId]).do_nothing().to_owned(),
        )
        .to_owned();
    Ok(db.execute(&insert).await?.rows_affected())
}

/// Removes a tag from every contact of the account matching `cond`.
pub async fn untag_matching<C: ConnectionTrait>(
    db: &C,
    scope: AccountScope,
    tag_id: Uuid,
    cond: Condition,
) -> AppResult<u64> {
    let ids = contacts_in(scope).select_only().column(contact::Column::Id).filter(cond).into_query();
    let res = contact_tag::Entity::delete_many()
        .filter(contact_tag::Column::TagId.eq(tag_id))
        .filter(contact_tag::Column::ContactId.in_subquery(ids))
        .exec(db)
        .await?;
    Ok(res.rows_affected)
}

/// Adds every contact of the account matching `cond` to the group and keeps `contact_count` exact
/// (incremented by the rows really inserted). Returns how many were added.
pub async fn add_members_matching<C: ConnectionTrait>(
    db: &C,
    scope: AccountScope,
    group_id: Uuid,
    cond: Condition,
) -> AppResult<u64> {
    let select = contacts_in(scope)
        .select_only()
        .column_as(Expr::val(group_id), "group_id")
        .column(contact::Column::Id)
        .column_as(Expr::val(Value::from(Utc::now())), "created_at")
        .filter(cond)
        .into_query();
    let insert = Query::insert()
        .into_table(group_member::Entity)
        .columns([group_member::Column::GroupId, group_member::Column::ContactId, group_member::Column::CreatedAt])
        .select_from(select)
        .map_err(|e| sea_orm::DbErr::Custom(e.to_string()))?
        .on_conflict(
            OnConflict::columns([group_member::Column::GroupId, group_member::Column::ContactId])
                .do_nothing()
                .to_owned(),
        )
        .to_owned();
    let added = db.execute(&insert).await?.rows_affected();
    bump_count(db, scope, group_id, added as i64).await?;
    Ok(added)
}

/// Removes the matching contacts from the group (count kept exact).
pub async fn remove_members_matching<C: ConnectionTrait>(
    db: &C,
    scope: AccountScope,
    group_id: Uuid,
    cond: Condition,
) -> AppResult<u64> {
    let ids = contacts_in(scope).select_only().column(contact::Column::Id).filter(cond).into_query();
    let removed = group_member::Entity::delete_many()
        .filter(group_member::Column::GroupId.eq(group_id))
        .filter(group_member::Column::ContactId.in_subquery(ids))
        .exec(db)
        .await?
        .rows_affected;
    bump_count(db, scope, group_id, -(removed as i64)).await?;
    Ok(removed)
}

async fn bump_count<C: ConnectionTrait>(db: &C, scope: AccountScope, group_id: Uuid, by: i64) -> AppResult<()> {
    if by == 0 {
        return Ok(());
    }
    group::Entity::update_many()
        .col_expr(group::Column::ContactCount, Expr::col(group::Column::ContactCount).add(by))
        .col_expr(group::Column::UpdatedAt, Expr::val(Utc::now()))
        .filter(group::Column::Id.eq(group_id))
        .filter(group::Column::AccountId.eq(scope.account_id()))
        .exec(db)
        .await?;
    Ok(())
}

/// Before a contact is deleted: one less member in every group it belongs to.
pub async fn leave_all_groups<C: ConnectionTrait>(
    db: &C,
    scope: AccountScope,
    contact_id: Uuid,
) -> AppResult<Vec<Uuid>> {
    let groups: Vec<Uuid> = group_member::Entity::find()
        .select_only()
        .column(group_member::Column::GroupId)
        .filter(group_member::Column::ContactId.eq(contact_id))
        .into_tuple()
        .all(db)
        .await?;
    if !groups.is_empty() {
        group::Entity::update_many()
            .col_expr(group::Column::ContactCount, Expr::col(group::Column::ContactCount).sub(1))
            .filter(group::Column::Id.is_in(groups.clone()))
            .filter(group::Column::AccountId.eq(scope.account_id()))
            .exec(db)
            .await?;
    }
    Ok(groups)
}

/// Members of a group, as a contact select (the caller adds filters, sorting and paging).
pub fn group_contacts(scope: AccountScope, group_id: Uuid) -> Select<contact::Entity> {
    let members = Query::select()
        .column(group_member::Column::ContactId)
        .from(group_member::Entity)
        .and_where(group_member::Column::GroupId.eq(group_id))
        .to_owned();
    contacts_in(scope).filter(contact::Column::Id.in_subquery(members))
}

/// The account's contact with this channel identity (`channel_type`, `identity`), if any.
pub async fn find_by_identity<C: ConnectionTrait>(
    db: &C,
    scope: AccountScope,
    channel_type: &str,
    identity: &str,
) -> AppResult<Option<contact::Model>> {
    let key = (scope.account_id(), channel_type.to_string(), identity.to_string());
    match contact_identity::Entity::find_by_id(key).one(db).await? {
        Some(row) => find_contact(db, scope, row.contact_id).await,
        None => Ok(None),
    }
}

pub async fn touch_last_inbound<C: ConnectionTrait>(
    db: &C,
    scope: AccountScope,
    id: Uuid,
    at: chrono::DateTime<Utc>,
) -> AppResult<()> {
    contact::Entity::update_many()
        .col_expr(contact::Column::LastInboundAt, Expr::val(at))
        .filter(contact::Column::Id.eq(id))
        .filter(contact::Column::AccountId.eq(scope.account_id()))
        .exec(db)
        .await?;
    Ok(())
}

/// Replaces the contact's tags with these (ids checked against the account).
pub async fn set_contact_tags<C: ConnectionTrait>(db: &C, contact_id: Uuid, tags: &[Uuid]) -> AppResult<()> {
    contact_tag::Entity::delete_many().filter(contact_tag::Column::ContactId.eq(contact_id)).exec(db).await?;
    if !tags.is_empty() {
        let rows = tags
            .iter()
            .map(|t| contact_tag::ActiveModel { contact_id: sea_orm::Set(contact_id), tag_id: sea_orm::Set(*t) });
        contact_tag::Entity::insert_many(rows).exec_without_returning(db).await?;
    }
    Ok(())
}

/// Up to `limit` of the account's contacts matching `condition`, in id order after `after` (keyset).
pub async fn contacts_after<C: ConnectionTrait>(
    db: &C,
    scope: AccountScope,
    condition: Condition,
    after: Option<Uuid>,
    limit: u64,
) -> AppResult<Vec<contact::Model>> {
    let mut q = contacts_in(scope).filter(condition);
    if let Some(a) = after {
        q = q.filter(contact::Column::Id.gt(a));
    }
    Ok(q.order_by_asc(contact::Column::Id).limit(limit).all(db).await?)
}

/// Every key used in a JSON object column (`attributes`, `channel_identities`) by the account's
/// contacts matching `condition`, sorted.
pub async fn distinct_json_keys<C: ConnectionTrait>(
    db: &C,
    scope: AccountScope,
    condition: &Condition,
    column: &str,
) -> AppResult<Vec<String>> {
    use sea_orm::{DbBackend, Statement};
    let backend = db.get_database_backend();
    let ids = contacts_in(scope).select_only().column(contact::Column::Id).filter(condition.clone());
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
    let rows = db.query_all_raw(Statement::from_sql_and_values(backend, sql, values)).await?;
    rows.iter().map(|r| r.try_get::<String>("", "k").map_err(AppError::from)).collect()
}
