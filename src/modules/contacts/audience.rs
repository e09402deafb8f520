//! Streaming an audience: keyset-paginated batches of contacts in id order (no OFFSET), on SQLite as
//! one JSON document per batch. [`super::Directory`] builds the streams.

use sea_orm::sea_query::Condition;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, QueryFilter, QueryOrder, QuerySelect, QueryTrait,
    Statement, TransactionTrait,
};
use serde_json::{Value, json};
use uuid::Uuid;

use super::directory::{DirectoryContact, Recipient, address_of};
use super::entity::contact;
use super::store;
use crate::domain::channel_type::AddressKind;
use crate::error::{AppError, AppResult};
use crate::modules::accounts::AccountScope;

/// A keyset cursor over the contacts a condition selects, in id order.
pub(super) struct Keyset {
    pub(super) db: DatabaseConnection,
    pub(super) scope: AccountScope,
    pub(super) condition: Condition,
    pub(super) batch: u64,
    pub(super) after: Option<Uuid>,
    pub(super) done: bool,
}

impl Keyset {
    async fn next(&mut self) -> AppResult<Option<Vec<DirectoryContact>>> {
        if self.done {
            return Ok(None);
        }
        let mut q = store::contacts_in(self.scope).filter(self.condition.clone());
        if let Some(a) = self.after {
            q = q.filter(contact::Column::Id.gt(a));
        }
        let db = &self.db;
        let mut rows: Vec<DirectoryContact> = if db.get_database_backend() == DbBackend::Sqlite {
            sqlite_batch(db, q, self.batch).await?
        } else {
            // A page walks the account's contacts in id order from where the last one stopped: the
            // whole stream reads each contact once. PostgreSQL, unable to estimate a segment's filter,
            // planned every page as a read of the whole table and a sort.
            let txn = db.begin().await?;
            crate::db::prefer_index_walks(&txn).await?;
            let rows = q
                .select_only()
                .columns(RECIPIENT_COLUMNS)
                .order_by_asc(contact::Column::Id)
                .limit(self.batch)
                .into_model()
                .all(&txn)
                .await?;
            txn.commit().await?;
            rows
        };
        rows.sort_unstable_by_key(|c| c.id);
        if (rows.len() as u64) < self.batch {
            self.done = true;
        }
        let Some(last) = rows.last().map(|c| c.id) else {
            return Ok(None);
        };
        self.after = Some(last);
        Ok(Some(rows))
    }
}

/// A keyset cursor over an audience's contacts reachable on one channel type.
pub struct RecipientStream {
    pub(super) rows: Keyset,
    pub(super) kind: AddressKind,
}

impl RecipientStream {
    /// The next batch (at most the batch size), or `None` when the audience is exhausted.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn next_batch(&mut self) -> AppResult<Option<Vec<Recipient>>> {
        let Some(rows) = self.rows.next().await? else { return Ok(None) };
        let out: Vec<Recipient> = rows
            .into_iter()
            .filter_map(|c| {
                let address = address_of(&c, self.kind)?;
                Some(Recipient { contact: c, address })
            })
            .collect();
        Ok(Some(out))
    }

    /// Where the stream is (store it to resume after a restart).
    pub fn position(&self) -> Option<Uuid> {
        self.rows.after
    }
}

/// A keyset cursor over ALL of an audience's contacts (opted out and address-less ones too, so that
/// a send can report each skip with its reason: see [`DirectoryContact::reach`]).
pub struct AudienceStream {
    pub(super) rows: Keyset,
}

impl AudienceStream {
    /// The next batch (at most the batch size, in id order), or `None` when the audience is exhausted.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn next_batch(&mut self) -> AppResult<Option<Vec<DirectoryContact>>> {
        self.rows.next().await
    }

    /// The last contact returned (give it back to [`Directory::members`] to resume after it).
    pub fn position(&self) -> Option<Uuid> {
        self.rows.after
    }
}

/// Only the columns a recipient needs (no timestamps, no opt-outs: the condition handled those).
const RECIPIENT_COLUMNS: [contact::Column; 12] = [
    contact::Column::Id,
    contact::Column::FirstName,
    contact::Column::LastName,
    contact::Column::DisplayName,
    contact::Column::Phone,
    contact::Column::Email,
    contact::Column::Language,
    contact::Column::Timezone,
    contact::Column::Attributes,
    contact::Column::ChannelIdentities,
    contact::Column::PreferredChannel,
    contact::Column::OptedOutChannels,
];

/// One SQLite batch as ONE row: a JSON array built by `json_group_array`. sqlx hands SQLite rows from
/// its worker thread to the runtime one at a time, so a batch of 5,000 rows costs 5,000 channel hops and
/// wake-ups; one JSON document per batch costs one, and serde parses it faster than the rows decode.
async fn sqlite_batch(
    db: &sea_orm::DatabaseConnection,
    q: sea_orm::Select<contact::Entity>,
    batch: u64,
) -> AppResult<Vec<DirectoryContact>> {
    #[derive(serde::Deserialize)]
    struct Row {
        id: String,
        first_name: Option<String>,
        last_name: Option<String>,
        display_name: Option<String>,
        phone: Option<String>,
        email: Option<String>,
        language: Option<String>,
        timezone: Option<String>,
        attributes: Option<Value>,
        channel_identities: Option<Value>,
        preferred_channel: Option<String>,
        opted_out_channels: Option<Value>,
    }
    let inner = q.select_only().columns(RECIPIENT_COLUMNS).order_by_asc(contact::Column::Id).limit(batch);
    let (sql, values) = inner.into_query().build(sea_orm::sea_query::SqliteQueryBuilder);
    // Ids are 16-byte blobs on SQLite (JSON cannot hold blobs): hex() them, Uuid parses the simple form.
    let sql = format!(
        "SELECT json_group_array(json_object('id', hex(id), 'first_name', first_name, 'last_name', last_name, \
         'display_name', display_name, 'phone', phone, 'email', email, 'language', language, \
         'timezone', timezone, 'attributes', json(attributes), 'channel_identities', json(channel_identities), 'preferred_channel', preferred_channel, \
         'opted_out_channels', json(opted_out_channels))) \
         AS j FROM ({sql}) AS b"
    );
    let row = db.query_one_raw(Statement::from_sql_and_values(DbBackend::Sqlite, sql, values)).await?;
    let Some(row) = row else { return Ok(Vec::new()) };
    let text: String = row.try_get("", "j")?;
    let rows: Vec<Row> = serde_json::from_str(&text).map_err(AppError::internal)?;
    rows.into_iter()
        .map(|r| {
            Ok(DirectoryContact {
                id: Uuid::parse_str(&r.id).map_err(AppError::internal)?,
                first_name: r.first_name,
                last_name: r.last_name,
                display_name: r.display_name,
                phone: r.phone,
                email: r.email,
                language: r.language,
                timezone: r.timezone,
                attributes: r.attributes.unwrap_or_else(|| json!({})),
                channel_identities: r.channel_identities.unwrap_or_else(|| json!({})),
                preferred_channel: r.preferred_channel,
                opted_out_channels: r.opted_out_channels.unwrap_or_else(|| json!([])),
            })
        })
        .collect()
}
