//! Queries of the accounts module. Tenant data (roles, memberships of an account) is only reachable
//! through an [`AccountScope`]; user rows are global (a user spans accounts).

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
    Set,
};
use serde_json::Value;
use uuid::Uuid;

use super::entity::{account, auth_code, login_failure, membership, role, user};
use super::permissions::{self, ADMIN_ROLE};
use super::tenancy::AccountScope;
use crate::db::list::{Field, Kind, ListQuery, Page};
use crate::error::{AppError, AppResult};

// Whitelisted list fields per resource (SPEC §2 filters).

pub const ACCOUNT_FIELDS: &[Field<account::Column>] = &[
    Field::new("id", account::Column::Id, Kind::Uuid),
    // The SPEC's `account_id` filter, on the accounts themselves.
    Field::new("account_id", account::Column::Id, Kind::Uuid),
    Field::sortable("name", account::Column::Name, Kind::Text),
    Field::new("status", account::Column::Status, Kind::Enum(&["active", "suspended"])),
    Field::new("parent_id", account::Column::ParentId, Kind::Uuid),
    Field::sortable("created_at", account::Column::CreatedAt, Kind::Timestamp),
    Field::sortable("updated_at", account::Column::UpdatedAt, Kind::Timestamp),
];

pub const ROLE_FIELDS: &[Field<role::Column>] = &[
    Field::new("account_id", role::Column::AccountId, Kind::Uuid),
    Field::new("id", role::Column::Id, Kind::Uuid),
    Field::sortable("name", role::Column::Name, Kind::Text),
    Field::new("is_system", role::Column::IsSystem, Kind::Bool),
    Field::sortable("created_at", role::Column::CreatedAt, Kind::Timestamp),
    Field::sortable("updated_at", role::Column::UpdatedAt, Kind::Timestamp),
];

pub const MEMBER_FIELDS: &[Field<membership::Column>] = &[
    Field::new("account_id", membership::Column::AccountId, Kind::Uuid),
    Field::new("user_id", membership::Column::UserId, Kind::Uuid),
    Field::new("role_id", membership::Column::RoleId, Kind::Uuid),
    Field::sortable("created_at", membership::Column::CreatedAt, Kind::Timestamp),
    Field::sortable("updated_at", membership::Column::UpdatedAt, Kind::Timestamp),
];

/// A page of the roles of the account.
pub async fn list_roles<C: ConnectionTrait>(
    db: &C,
    scope: AccountScope,
    q: &ListQuery,
) -> AppResult<Page<role::Model>> {
    let select = q.apply(roles_in(scope), ROLE_FIELDS, role::Column::Id, role::Column::CreatedAt)?;
    q.fetch(db, select).await
}

/// A page of the memberships of the account.
pub async fn list_memberships<C: ConnectionTrait>(
    db: &C,
    scope: AccountScope,
    q: &ListQuery,
) -> AppResult<Page<membership::Model>> {
    let select =
        q.apply(memberships_in(scope), MEMBER_FIELDS, membership::Column::Id, membership::Column::CreatedAt)?;
    q.fetch(db, select).await
}

pub async fn find_user_by_email<C: ConnectionTrait>(db: &C, email: &str) -> AppResult<Option<user::Model>> {
    Ok(user::Entity::find().filter(user::Column::Email.eq(email)).one(db).await?)
}

/// The user and, in one query, their role in `account_id` (or, when `None`, in their default account).
pub async fn user_with_role<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    account_id: Option<Uuid>,
) -> AppResult<Option<(user::Model, Option<role::Model>)>> {
    use sea_orm::sea_query::IntoCondition;
    use sea_orm::{JoinType, RelationTrait};
    let on = user::Relation::Membership.def().on_condition(move |users, memberships| {
        let account = Expr::col((memberships, membership::Column::AccountId));
        match account_id {
            Some(id) => account.eq(id).into_condition(),
            None => account.equals((users, user::Column::DefaultAccountId)).into_condition(),
        }
    });
    Ok(user::Entity::find_by_id(user_id)
        .join(JoinType::LeftJoin, on)
        .join(JoinType::LeftJoin, membership::Relation::Role.def())
        .select_also(role::Entity)
        .one(db)
        .await?)
}

pub async fn find_user<C: ConnectionTrait>(db: &C, id: Uuid) -> AppResult<Option<user::Model>> {
    Ok(user::Entity::find_by_id(id).one(db).await?)
}

pub struct NewUser<'a> {
    pub email: &'a str,
    pub password_hash: Option<String>,
    /// The user's id at an external identity provider (Cognito `sub`).
    pub provider_subject: Option<String>,
    pub full_name: &'a str,
    pub verified: bool,
    pub pending_account_name: Option<&'a str>,
    /// The invitation to accept when the e-mail is verified.
    pub pending_invitation_id: Option<Uuid>,
}

pub async fn insert_user<C: ConnectionTrait>(db: &C, new: NewUser<'_>) -> AppResult<user::Model> {
    let now = Utc::now();
    let model = user::ActiveModel {
        id: Set(Uuid::now_v7()),
        email: Set(new.email.to_string()),
        password_hash: Set(new.password_hash),
        provider_subject: Set(new.provider_subject),
        full_name: Set(new.full_name.to_string()),
        phone: Set(None),
        is_active: Set(true),
        email_verified_at: Set(new.verified.then_some(now)),
        default_account_id: Set(None),
        locale: Set(None),
        timezone: Set(None),
        pending_account_name: Set(new.pending_account_name.map(str::to_string)),
        created_at: Set(now),
        updated_at: Set(now),
        tokens_valid_after: Set(None),
        pending_invitation_id: Set(new.pending_invitation_id),
    };
    model.insert(db).await.map_err(|e| {
        if crate::db::is_unique_violation(&e) {
            AppError::conflict("a user with this e-mail already exists")
        } else {
            e.into()
        }
    })
}

pub struct NewAccount<'a> {
    pub name: &'a str,
    pub parent_id: Option<Uuid>,
    pub timezone: &'a str,
    pub default_country_code: Option<&'a str>,
    pub settings: Value,
}

/// Creates an account, its system roles and, given an owner, the owner's admin membership (a
/// sub-account starts without members: its parent's managers reach it). Run inside a transaction.
pub async fn create_account<C: ConnectionTrait>(
    db: &C,
    new: NewAccount<'_>,
    owner: Option<Uuid>,
) -> AppResult<(account::Model, role::Model)> {
    let now = Utc::now();
    let acc = account::ActiveModel {
        id: Set(Uuid::now_v7()),
        name: Set(new.name.to_string()),
        parent_id: Set(new.parent_id),
        status: Set("active".into()),
        timezone: Set(new.timezone.to_string()),
        default_country_code: Set(new.default_country_code.map(str::to_string)),
        settings: Set(new.settings),
        created_at: Set(now),
        updated_at: Set(now),
        has_sub_accounts: Set(false),
    }
    .insert(db)
    .await?;
    if let Some(parent) = new.parent_id {
        account::Entity::update_many()
            .col_expr(account::Column::HasSubAccounts, Expr::value(true))
            .filter(account::Column::Id.eq(parent))
            .exec(db)
            .await?;
    }
    let mut admin = None;
    for (name, description, perms) in permissions::system_roles() {
        let r = role::ActiveModel {
            id: Set(Uuid::now_v7()),
            account_id: Set(acc.id),
            name: Set(name.to_string()),
            description: Set(Some(description.to_string())),
            permissions: Set(perms),
            is_system: Set(true),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(db)
        .await?;
        if name == ADMIN_ROLE {
            admin = Some(r);
        }
    }
    let admin = admin.ok_or_else(|| AppError::internal("system roles lack admin"))?;
    if let Some(owner) = owner {
        insert_membership(db, acc.id, owner, admin.id).await?;
    }
    Ok((acc, admin))
}

pub async fn insert_membership<C: ConnectionTrait>(
    db: &C,
    account_id: Uuid,
    user_id: Uuid,
    role_id: Uuid,
) -> AppResult<membership::Model> {
    let now = Utc::now();
    membership::ActiveModel {
        id: Set(Uuid::now_v7()),
        account_id: Set(account_id),
        user_id: Set(user_id),
        role_id: Set(role_id),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(db)
    .await
    .map_err(|e| {
        if crate::db::is_unique_violation(&e) {
            AppError::conflict("the user is already a member of this account")
        } else {
            e.into()
        }
    })
}

pub async fn find_account<C: ConnectionTrait>(db: &C, id: Uuid) -> AppResult<Option<account::Model>> {
    Ok(account::Entity::find_by_id(id).one(db).await?)
}

/// The user's membership in an account together with its role (one query).
pub async fn membership_with_role<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    account_id: Uuid,
) -> AppResult<Option<(membership::Model, role::Model)>> {
    let row = membership::Entity::find()
        .filter(membership::Column::UserId.eq(user_id))
        .filter(membership::Column::AccountId.eq(account_id))
        .find_also_related(role::Entity)
        .one(db)
        .await?;
    Ok(row.and_then(|(m, r)| r.map(|r| (m, r))))
}

/// Every membership of a user with role and account, oldest first (one query).
pub async fn memberships_of_user<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
) -> AppResult<Vec<(membership::Model, role::Model, account::Model)>> {
    let rows = membership::Entity::find()
        .filter(membership::Column::UserId.eq(user_id))
        .order_by_asc(membership::Column::CreatedAt)
        .find_also_related(role::Entity)
        .find_also_related(account::Entity)
        .all(db)
        .await?;
    Ok(rows.into_iter().filter_map(|(m, r, a)| Some((m, r?, a?))).collect())
}

/// Ids of accounts the user is a direct member of.
pub async fn account_ids_of_user<C: ConnectionTrait>(db: &C, user_id: Uuid) -> AppResult<Vec<Uuid>> {
    Ok(membership::Entity::find()
        .select_only()
        .column(membership::Column::AccountId)
        .filter(membership::Column::UserId.eq(user_id))
        .into_tuple::<Uuid>()
        .all(db)
        .await?)
}

/// The account and its ancestors, nearest first, at most `max` of them (one read per level; a tree is
/// never deeper than the depth limit).
pub async fn account_chain<C: ConnectionTrait>(db: &C, id: Uuid, max: u32) -> AppResult<Vec<account::Model>> {
    let mut chain: Vec<account::Model> = Vec::new();
    let mut next = Some(id);
    while let Some(id) = next
        && chain.len() < max as usize
    {
        let Some(acc) = find_account(db, id).await? else { break };
        next = acc.parent_id;
        chain.push(acc);
    }
    Ok(chain)
}

/// The direct sub-accounts of any of `parents`.
pub async fn children_of<C: ConnectionTrait>(db: &C, parents: &[Uuid]) -> AppResult<Vec<account::Model>> {
    if parents.is_empty() {
        return Ok(Vec::new());
    }
    Ok(account::Entity::find()
        .filter(account::Column::ParentId.is_in(parents.iter().copied()))
        .order_by_asc(account::Column::CreatedAt)
        .all(db)
        .await?)
}

/// The user's memberships with roles in any of `accounts` (one query).
pub async fn roles_in_accounts<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    accounts: &[Uuid],
) -> AppResult<Vec<(membership::Model, role::Model)>> {
    let rows = membership::Entity::find()
        .filter(membership::Column::UserId.eq(user_id))
        .filter(membership::Column::AccountId.is_in(accounts.iter().copied()))
        .find_also_related(role::Entity)
        .all(db)
        .await?;
    Ok(rows.into_iter().filter_map(|(m, r)| Some((m, r?))).collect())
}

/// A page of the accounts among `ids` (those a caller may act in).
pub async fn list_accounts_among<C: ConnectionTrait>(
    db: &C,
    ids: Vec<Uuid>,
    q: &ListQuery,
) -> AppResult<Page<account::Model>> {
    let select = account::Entity::find().filter(account::Column::Id.is_in(ids));
    let select = q.apply(select, ACCOUNT_FIELDS, account::Column::Id, account::Column::CreatedAt)?;
    q.fetch(db, select).await
}

/// A page of the direct sub-accounts of the account.
pub async fn list_sub_accounts<C: ConnectionTrait>(
    db: &C,
    scope: AccountScope,
    q: &ListQuery,
) -> AppResult<Page<account::Model>> {
    let select = account::Entity::find().filter(account::Column::ParentId.eq(scope.account_id()));
    let select = q.apply(select, ACCOUNT_FIELDS, account::Column::Id, account::Column::CreatedAt)?;
    q.fetch(db, select).await
}

/// Ids of the accounts whose own status is `suspended`.
pub async fn suspended_account_ids<C: ConnectionTrait>(db: &C) -> AppResult<Vec<Uuid>> {
    Ok(account::Entity::find()
        .select_only()
        .column(account::Column::Id)
        .filter(account::Column::Status.eq(super::suspension::SUSPENDED))
        .into_tuple::<Uuid>()
        .all(db)
        .await?)
}

pub async fn has_sub_accounts<C: ConnectionTrait>(db: &C, scope: AccountScope) -> AppResult<bool> {
    Ok(account::Entity::find().filter(account::Column::ParentId.eq(scope.account_id())).count(db).await? > 0)
}

// ---- roles (tenant data) ----

pub fn roles_in(scope: AccountScope) -> sea_orm::Select<role::Entity> {
    role::Entity::find().filter(role::Column::AccountId.eq(scope.account_id()))
}

pub async fn find_role<C: ConnectionTrait>(db: &C, scope: AccountScope, id: Uuid) -> AppResult<Option<role::Model>> {
    Ok(roles_in(scope).filter(role::Column::Id.eq(id)).one(db).await?)
}

pub async fn admin_role<C: ConnectionTrait>(db: &C, scope: AccountScope) -> AppResult<role::Model> {
    roles_in(scope)
        .filter(role::Column::Name.eq(ADMIN_ROLE))
        .filter(role::Column::IsSystem.eq(true))
        .one(db)
        .await?
        .ok_or_else(|| AppError::internal("account has no admin role"))
}

pub async fn role_in_use<C: ConnectionTrait>(db: &C, scope: AccountScope, role_id: Uuid) -> AppResult<bool> {
    Ok(memberships_in(scope).filter(membership::Column::RoleId.eq(role_id)).count(db).await? > 0)
}

// ---- memberships (tenant data) ----

pub fn memberships_in(scope: AccountScope) -> sea_orm::Select<membership::Entity> {
    membership::Entity::find().filter(membership::Column::AccountId.eq(scope.account_id()))
}

pub async fn find_membership<C: ConnectionTrait>(
    db: &C,
    scope: AccountScope,
    user_id: Uuid,
) -> AppResult<Option<membership::Model>> {
    Ok(memberships_in(scope).filter(membership::Column::UserId.eq(user_id)).one(db).await?)
}

pub async fn count_admins<C: ConnectionTrait>(db: &C, scope: AccountScope) -> AppResult<u64> {
    let admin = admin_role(db, scope).await?;
    Ok(memberships_in(scope).filter(membership::Column::RoleId.eq(admin.id)).count(db).await?)
}

pub async fn users_by_ids<C: ConnectionTrait>(db: &C, ids: Vec<Uuid>) -> AppResult<Vec<user::Model>> {
    Ok(user::Entity::find().filter(user::Column::Id.is_in(ids)).all(db).await?)
}

pub async fn roles_by_ids<C: ConnectionTrait>(
    db: &C,
    scope: AccountScope,
    ids: Vec<Uuid>,
) -> AppResult<Vec<role::Model>> {
    Ok(roles_in(scope).filter(role::Column::Id.is_in(ids)).all(db).await?)
}

// ---- one-time codes ----

pub async fn replace_code<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    purpose: &str,
    code_hash: String,
    expires_at: DateTime<Utc>,
) -> AppResult<()> {
    auth_code::Entity::delete_many()
        .filter(auth_code::Column::UserId.eq(user_id))
        .filter(auth_code::Column::Purpose.eq(purpose))
        .exec(db)
        .await?;
    auth_code::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(user_id),
        purpose: Set(purpose.to_string()),
        code_hash: Set(code_hash),
        attempts: Set(0),
        expires_at: Set(expires_at),
        consumed_at: Set(None),
        created_at: Set(Utc::now()),
    }
    .insert(db)
    .await?;
    Ok(())
}

pub async fn live_code<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    purpose: &str,
) -> AppResult<Option<auth_code::Model>> {
    Ok(auth_code::Entity::find()
        .filter(auth_code::Column::UserId.eq(user_id))
        .filter(auth_code::Column::Purpose.eq(purpose))
        .filter(auth_code::Column::ConsumedAt.is_null())
        .order_by_desc(auth_code::Column::CreatedAt)
        .one(db)
        .await?)
}

/// Counts one attempt at the code before it is compared, in one statement: false when the code already
/// had `max` attempts (or was consumed), so however many attempts arrive at once, at most `max` are
/// ever compared.
pub async fn claim_code_attempt<C: ConnectionTrait>(db: &C, id: Uuid, max: i32) -> AppResult<bool> {
    let res = auth_code::Entity::update_many()
        .col_expr(auth_code::Column::Attempts, Expr::col(auth_code::Column::Attempts).add(1))
        .filter(auth_code::Column::Id.eq(id))
        .filter(auth_code::Column::Attempts.lt(max))
        .filter(auth_code::Column::ConsumedAt.is_null())
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Consumes a code exactly once; false when it was consumed concurrently.
pub async fn consume_code<C: ConnectionTrait>(db: &C, id: Uuid) -> AppResult<bool> {
    let res = auth_code::Entity::update_many()
        .col_expr(auth_code::Column::ConsumedAt, Expr::value(Utc::now()))
        .filter(auth_code::Column::Id.eq(id))
        .filter(auth_code::Column::ConsumedAt.is_null())
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

// ---- login throttling ----

/// Claims one login attempt for `email` before its password is checked: recorded as a failure (until
/// the attempt succeeds and clears them) when fewer than `limit` failures fall in the window from
/// `since`; otherwise `Err` with the oldest of them (for `Retry-After`). Claims for one address are
/// serialised — a transaction-scoped advisory lock on PostgreSQL, the single writer on SQLite — so
/// however many attempts arrive at once, at most `limit` are ever evaluated.
pub async fn claim_login_attempt(
    db: &sea_orm::DatabaseConnection,
    email: &str,
    since: DateTime<Utc>,
    limit: u64,
) -> AppResult<Result<Uuid, Option<DateTime<Utc>>>> {
    let txn = crate::db::begin_write(db).await?;
    if txn.get_database_backend() == sea_orm::DbBackend::Postgres {
        txn.execute_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock(hashtext($1))",
            [email.into()],
        ))
        .await?;
    }
    let (failures, oldest) = login_failures_since(&txn, email, since).await?;
    if failures >= limit {
        txn.rollback().await?;
        return Ok(Err(oldest));
    }
    let id = Uuid::now_v7();
    login_failure::ActiveModel { id: Set(id), email: Set(email.to_string()), created_at: Set(Utc::now()) }
        .insert(&txn)
        .await?;
    txn.commit().await?;
    Ok(Ok(id))
}

/// Withdraws a claimed attempt that turned out not to be a wrong password.
pub async fn release_login_claim<C: ConnectionTrait>(db: &C, id: Uuid) -> AppResult<()> {
    login_failure::Entity::delete_by_id(id).exec(db).await?;
    Ok(())
}

/// Failures since `since` and the oldest of them (to compute Retry-After).
pub async fn login_failures_since<C: ConnectionTrait>(
    db: &C,
    email: &str,
    since: DateTime<Utc>,
) -> AppResult<(u64, Option<DateTime<Utc>>)> {
    let q = login_failure::Entity::find()
        .filter(login_failure::Column::Email.eq(email))
        .filter(login_failure::Column::CreatedAt.gte(since));
    let count = q.clone().count(db).await?;
    let oldest = if count > 0 {
        q.order_by_asc(login_failure::Column::CreatedAt).one(db).await?.map(|f| f.created_at)
    } else {
        None
    };
    Ok((count, oldest))
}

pub async fn clear_login_failures<C: ConnectionTrait>(db: &C, email: &str) -> AppResult<()> {
    login_failure::Entity::delete_many().filter(login_failure::Column::Email.eq(email)).exec(db).await?;
    Ok(())
}

/// Removes every membership of the account (before the account itself: memberships reference its roles).
pub async fn delete_memberships_of<C: ConnectionTrait>(db: &C, scope: AccountScope) -> AppResult<()> {
    membership::Entity::delete_many().filter(membership::Column::AccountId.eq(scope.account_id())).exec(db).await?;
    Ok(())
}
