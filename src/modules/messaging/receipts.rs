//! Delivery statuses (SPEC §5.2): a provider's receipt — a webhook item or an SMPP `deliver_sm` — moves
//! the outbound message it names, found by `(channel_id, provider_message_id)`, forward only:
//! `sent → delivered`; `read` records `read_at` (and `delivered` when the receipt for it never came);
//! `failed` after `sent` is final (`permanently_failed`: the provider took the message and could not
//! deliver it; sending it again is not ours to decide). A late `sent`, or a `delivered` after a failure,
//! changes nothing.
//!
//! A multi-part SMS has an id per part, and a receipt per part: each part's id leads to the message
//! (`message_parts`), so the first part reported delivered makes the message `delivered` and the
//! others change nothing more.
//!
//! A receipt can beat the send's own record (the provider's webhook arrives while the dispatcher is
//! still writing the provider's answer down). It is then parked, and the dispatcher's record of that
//! send matches it in the same transaction. Both sides take the same transaction-scoped lock on
//! `(channel_id, provider_message_id)` first (PostgreSQL advisory lock; SQLite has one writer), so
//! whichever commits second sees the other: no receipt is lost, and nothing polls for it.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, Func};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, QueryTrait, Set, Statement,
};
use serde_json::json;
use sha2::Digest;
use uuid::Uuid;

use super::entity::message::{self, Direction, MessageStatus};
use super::entity::{message_part, parked_receipt};
use super::group_store::Tallies;
use super::store;
use crate::error::AppResult;
use crate::modules::accounts::AccountScope;
use crate::modules::events::EventBus;

/// A delivery status as a provider reported it.
#[derive(Debug, Clone)]
pub struct Receipt {
    pub channel_id: Uuid,
    pub provider_message_id: String,
    /// sent | delivered | read | failed
    pub status: String,
    pub error: Option<String>,
    pub at: Option<DateTime<Utc>>,
}

/// What a receipt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The message moved (to this status; `read` for a read receipt).
    Moved(&'static str),
    /// The message is there but the receipt would not move it forward.
    Ignored,
    /// No message has this provider id yet: kept until its send is recorded.
    Parked,
}

/// Applies a receipt inside the consumer's transaction (see the module documentation).
pub async fn apply(
    txn: &DatabaseTransaction,
    bus: &mut EventBus,
    scope: AccountScope,
    r: &Receipt,
) -> AppResult<Applied> {
    lock(txn, &[(r.channel_id, r.provider_message_id.as_str())]).await?;
    let mut found = store::messages_in(scope)
        .filter(message::Column::ChannelId.eq(r.channel_id))
        .filter(message::Column::ProviderMessageId.eq(r.provider_message_id.as_str()))
        .filter(message::Column::Direction.eq(Direction::Outbound))
        .one(txn)
        .await?;
    if found.is_none() {
        // Another part of a multi-part SMS: the part's id leads to its message.
        let part = message_part::Entity::find_by_id((r.channel_id, r.provider_message_id.clone())).one(txn).await?;
        if let Some(part) = part {
            found = store::find_message(txn, scope, part.message_id).await?;
        }
    }
    let Some(m) = found else {
        parked_receipt::ActiveModel {
            id: Set(Uuid::now_v7()),
            account_id: Set(scope.account_id()),
            channel_id: Set(r.channel_id),
            provider_message_id: Set(r.provider_message_id.clone()),
            status: Set(r.status.clone()),
            error: Set(r.error.clone()),
            reported_at: Set(r.at),
            parked_at: Set(Utc::now()),
        }
        .insert(txn)
        .await?;
        metrics::counter!("receipts_parked_total").increment(1);
        return Ok(Applied::Parked);
    };
    let mut tallies = Tallies::default();
    let applied = move_forward(txn, bus, &m, r, &mut tallies).await?;
    tallies.apply(txn, bus).await?;
    Ok(applied)
}

/// Matches the receipts parked for sends just recorded (`(message, channel_id, provider_message_id)`),
/// inside the dispatcher's recording transaction.
pub async fn match_parked(
    txn: &DatabaseTransaction,
    bus: &mut EventBus,
    sent: &[(message::Model, String)],
    tallies: &mut Tallies,
) -> AppResult<usize> {
    if sent.is_empty() {
        return Ok(0);
    }
    let keys: Vec<(Uuid, &str)> = sent.iter().map(|(m, id)| (m.channel_id, id.as_str())).collect();
    lock(txn, &keys).await?;
    let accounts: Vec<Uuid> = sent.iter().map(|(m, _)| m.account_id).collect();
    let parked = parked_receipt::Entity::find()
        .filter(parked_receipt::Column::AccountId.is_in(accounts))
        .filter(parked_receipt::Column::ChannelId.is_in(keys.iter().map(|k| k.0).collect::<Vec<_>>()))
        .filter(parked_receipt::Column::ProviderMessageId.is_in(keys.iter().map(|k| k.1).collect::<Vec<_>>()))
        .order_by_asc(parked_receipt::Column::ParkedAt)
        .all(txn)
        .await?;
    let mut matched = 0;
    for p in parked {
        let Some((m, _)) = sent.iter().find(|(m, id)| m.channel_id == p.channel_id && *id == p.provider_message_id)
        else {
            continue;
        };
        // The row as the dispatcher just left it: `sent` (or `delivered`) with this provider id.
        let m = message::Model { provider_message_id: Some(p.provider_message_id.clone()), ..m.clone() };
        let r = Receipt {
            channel_id: p.channel_id,
            provider_message_id: p.provider_message_id.clone(),
            status: p.status.clone(),
            error: p.error.clone(),
            at: p.reported_at,
        };
        move_forward(txn, bus, &m, &r, tallies).await?;
        parked_receipt::Entity::delete_by_id(p.id).exec(txn).await?;
        metrics::counter!("receipts_unparked_total").increment(1);
        matched += 1;
    }
    Ok(matched)
}

/// The statement that records the other parts' provider ids of a multi-part send (see the module
/// documentation); none for a message of one part.
pub fn parts_statement(backend: DbBackend, m: &message::Model, part_ids: &[String]) -> Option<Statement> {
    if part_ids.is_empty() {
        return None;
    }
    let rows = part_ids.iter().map(|id| message_part::ActiveModel {
        channel_id: Set(m.channel_id),
        provider_message_id: Set(id.clone()),
        message_id: Set(m.id),
    });
    let insert = message_part::Entity::insert_many(rows).on_conflict(
        sea_orm::sea_query::OnConflict::columns([
            message_part::Column::ChannelId,
            message_part::Column::ProviderMessageId,
        ])
        .do_nothing()
        .to_owned(),
    );
    Some(insert.build(backend))
}

/// Whether a receipt is parked for any of these sends (`(message, provider_message_id)`): a read, for a
/// record written as one statement list, which then matches them with [`match_parked`] in a
/// transaction of its own.
pub async fn any_parked(db: &DatabaseConnection, sent: &[(message::Model, String)]) -> AppResult<bool> {
    let found = parked_receipt::Entity::find()
        .filter(parked_receipt::Column::AccountId.is_in(sent.iter().map(|(m, _)| m.account_id).collect::<Vec<_>>()))
        .filter(parked_receipt::Column::ChannelId.is_in(sent.iter().map(|(m, _)| m.channel_id).collect::<Vec<_>>()))
        .filter(
            parked_receipt::Column::ProviderMessageId.is_in(sent.iter().map(|(_, id)| id.as_str()).collect::<Vec<_>>()),
        )
        .limit(1)
        .all(db)
        .await?;
    Ok(!found.is_empty())
}

/// Deletes receipts parked before `before` that never matched a send (their send's answer was lost:
/// the message was sent again under another provider id). Returns how many.
pub async fn expire_parked<C: ConnectionTrait>(db: &C, before: DateTime<Utc>) -> AppResult<u64> {
    let res =
        parked_receipt::Entity::delete_many().filter(parked_receipt::Column::ParkedAt.lt(before)).exec(db).await?;
    Ok(res.rows_affected)
}

/// One conditional update per receipt kind: it applies only from the statuses it moves forward from
/// (a read receipt tries `sent` first, then `delivered`, so the move it counts is the one it made).
/// The move joins `tallies` when the message belongs to a group send.
async fn move_forward(
    txn: &DatabaseTransaction,
    bus: &mut EventBus,
    m: &message::Model,
    r: &Receipt,
    tallies: &mut Tallies,
) -> AppResult<Applied> {
    use message::Column as C;
    let at = r.at.unwrap_or_else(Utc::now);
    let now = Utc::now();
    let base = || message::Entity::update_many().col_expr(C::UpdatedAt, Expr::val(now)).filter(C::Id.eq(m.id));
    // Each try: the update, the status it moves from, the status it moves to.
    let tries = match r.status.as_str() {
        "delivered" => vec![(
            base()
                .col_expr(C::Status, Expr::val(MessageStatus::Delivered.as_str()))
                .col_expr(C::DeliveredAt, Expr::val(at))
                .filter(C::Status.eq(MessageStatus::Sent)),
            MessageStatus::Sent,
            MessageStatus::Delivered,
        )],
        "read" => [MessageStatus::Sent, MessageStatus::Delivered]
            .into_iter()
            .map(|from| {
                (
                    base()
                        .col_expr(C::Status, Expr::val(MessageStatus::Delivered.as_str()))
                        .col_expr(C::DeliveredAt, Func::coalesce([Expr::col(C::DeliveredAt), Expr::val(at)]).into())
                        .col_expr(C::ReadAt, Expr::val(at))
                        .filter(C::Status.eq(from))
                        .filter(C::ReadAt.is_null()),
                    from,
                    MessageStatus::Delivered,
                )
            })
            .collect(),
        "failed" => vec![(
            base()
                .col_expr(C::Status, Expr::val(MessageStatus::PermanentlyFailed.as_str()))
                .col_expr(C::FailedAt, Expr::val(at))
                .col_expr(
                    C::ErrorDetails,
                    Expr::val(json!({
                        "code": "undelivered",
                        "message": r.error.clone().unwrap_or_else(|| "the provider could not deliver the message".into()),
                        "provider_code": null,
                    })),
                )
                .filter(C::Status.eq(MessageStatus::Sent)),
            MessageStatus::Sent,
            MessageStatus::PermanentlyFailed,
        )],
        // `sent` (we knew) or a status we do not know: nothing to move.
        _ => return Ok(Applied::Ignored),
    };
    let status = match r.status.as_str() {
        "failed" => "permanently_failed",
        "read" => "read",
        _ => "delivered",
    };
    let mut moved = false;
    for (update, from, to) in tries {
        if update.exec(txn).await?.rows_affected == 1 {
            tallies.moved(m.group_message_id, from, to, 1);
            moved = true;
            break;
        }
    }
    if !moved {
        metrics::counter!("message_status_updates_total", "outcome" => "ignored").increment(1);
        return Ok(Applied::Ignored);
    }
    metrics::counter!("message_status_updates_total", "outcome" => status).increment(1);
    let data = json!({ "channel_id": m.channel_id, "provider_message_id": r.provider_message_id, "at": at });
    super::messages::emit_status(bus, status, m.account_id, &[m.id], data);
    Ok(Applied::Moved(status))
}

/// Takes the transaction-scoped lock of each `(channel_id, provider_message_id)`, in key order (on
/// SQLite the write transaction already excludes every other writer).
async fn lock(txn: &DatabaseTransaction, keys: &[(Uuid, &str)]) -> AppResult<()> {
    if txn.get_database_backend() != DbBackend::Postgres || keys.is_empty() {
        return Ok(());
    }
    let mut ids: Vec<i64> = keys
        .iter()
        .map(|(channel, id)| {
            let mut h = sha2::Sha256::new();
            h.update(channel.as_bytes());
            h.update(id.as_bytes());
            let d = h.finalize();
            i64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    // Numbers we computed, not input: written into the statement, one round trip for the whole batch.
    let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    let sql = format!("SELECT pg_advisory_xact_lock(k) FROM unnest(ARRAY[{list}]::bigint[]) AS k ORDER BY k");
    txn.execute_raw(Statement::from_string(DbBackend::Postgres, sql)).await?;
    Ok(())
}
