//! `Directory`: the facade messaging uses to resolve recipients. It streams the union of groups,
//! segments and explicit contact ids in keyset-paginated batches (no OFFSET; each contact once, because
//! the union is one condition over the contacts table), minus exclusions, minus contacts opted out of the
//! channel type, with the delivery address for that channel type resolved. It also finds or creates the
//! contact behind an inbound sender.

use chrono::Utc;
use sea_orm::sea_query::{Condition, Expr, ExprTrait, Query};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, PaginatorTrait, QueryFilter,
    QuerySelect, Set,
};
use serde_json::{Value, json};
use uuid::Uuid;

use super::audience::{AudienceStream, Keyset, RecipientStream};
use super::entity::{contact, contact_identity, group_member};
use super::filter::opted_out_expr;
use super::service::{ContactInput, Contacts, new_contact, normalise_input};
use super::store;
use crate::domain::channel_type::{AddressKind, address_kind};
use crate::error::{AppError, AppResult, FieldError};
use crate::modules::accounts::AccountScope;
use crate::modules::events::EventBus;

/// Who a message goes to. Empty `group_ids`, `segment_ids` and `contact_ids` select nobody.
#[derive(Debug, Clone, Default)]
pub struct Audience {
    pub group_ids: Vec<Uuid>,
    pub segment_ids: Vec<Uuid>,
    pub contact_ids: Vec<Uuid>,
    pub exclude_contact_ids: Vec<Uuid>,
    pub exclude_group_ids: Vec<Uuid>,
}

/// A contact as messaging sees it (template variables, time zone, language).
#[derive(Debug, Clone, PartialEq, sea_orm::FromQueryResult)]
pub struct DirectoryContact {
    pub id: Uuid,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub display_name: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub language: Option<String>,
    pub timezone: Option<String>,
    pub attributes: Value,
    pub channel_identities: Value,
    /// The channel type the contact prefers (`preferred` group sends).
    pub preferred_channel: Option<String>,
    /// The channel types the contact opted out of (a JSON array of strings).
    pub opted_out_channels: Value,
}

impl DirectoryContact {
    /// Whether the contact opted out of `channel_type`.
    pub fn opted_out_of(&self, channel_type: &str) -> bool {
        self.opted_out_channels.as_array().is_some_and(|a| a.iter().any(|v| v == channel_type))
    }

    /// The contact's address on `channel_type`, or why it has none to send to: `opted_out` or
    /// `no_address` (the reasons a group send reports).
    pub fn address_on(&self, channel_type: &str) -> Result<String, &'static str> {
        let kind = address_kind(channel_type).ok_or("no_address")?;
        if self.opted_out_of(channel_type) {
            return Err("opted_out");
        }
        address_of(self, kind).ok_or("no_address")
    }

    /// Whether and where the contact can be reached on `channel_type`.
    pub fn reach(self, channel_type: &str) -> Reach {
        match self.address_on(channel_type) {
            Ok(address) => Reach::Reachable(Recipient { contact: self, address }),
            Err("opted_out") => Reach::OptedOut(self),
            Err(_) => Reach::NoAddress(self),
        }
    }
}

impl From<contact::Model> for DirectoryContact {
    fn from(c: contact::Model) -> Self {
        DirectoryContact {
            id: c.id,
            first_name: c.first_name,
            last_name: c.last_name,
            display_name: c.display_name,
            phone: c.phone,
            email: c.email,
            language: c.language,
            timezone: c.timezone,
            attributes: c.attributes,
            channel_identities: c.channel_identities,
            preferred_channel: c.preferred_channel,
            opted_out_channels: c.opted_out_channels,
        }
    }
}

/// A recipient: the contact and its address on the channel type.
#[derive(Debug, Clone, PartialEq)]
pub struct Recipient {
    pub contact: DirectoryContact,
    pub address: String,
}

/// Whether a contact can be reached on a channel type, and where.
#[derive(Debug, Clone, PartialEq)]
pub enum Reach {
    Reachable(Recipient),
    /// The contact opted out of the channel type.
    OptedOut(DirectoryContact),
    /// The contact has no address for the channel type.
    NoAddress(DirectoryContact),
}

pub(super) fn address_of(c: &DirectoryContact, kind: AddressKind) -> Option<String> {
    match kind {
        AddressKind::Phone => c.phone.clone(),
        AddressKind::Email => c.email.clone(),
        AddressKind::Identity(t) => c.channel_identities.get(t).and_then(|v| v.as_str()).map(str::to_string),
    }
}

#[derive(Clone)]
pub struct Directory {
    contacts: Contacts,
}

impl Directory {
    pub fn new(contacts: Contacts) -> Self {
        Directory { contacts }
    }

    /// The condition selecting the audience: the union of its groups, segments and contacts (each
    /// contact once), minus its exclusions. Groups and segments of another account are 404s.
    async fn audience_condition(&self, scope: AccountScope, audience: &Audience) -> AppResult<Condition> {
        let members = |groups: &[Uuid]| {
            Query::select()
                .column(group_member::Column::ContactId)
                .from(group_member::Entity)
                .and_where(group_member::Column::GroupId.is_in(groups.to_vec()))
                .to_owned()
        };
        for g in audience.group_ids.iter().chain(&audience.exclude_group_ids) {
            self.contacts.get_group(scope, *g).await?;
        }
        let mut any = Condition::any();
        if !audience.group_ids.is_empty() {
            any = any.add(contact::Column::Id.in_subquery(members(&audience.group_ids)));
        }
        for s in &audience.segment_ids {
            let segment = self.contacts.get_segment(scope, *s).await?;
            any = any.add(self.contacts.segment_condition(&segment)?);
        }
        if !audience.contact_ids.is_empty() {
            any = any.add(contact::Column::Id.is_in(audience.contact_ids.clone()));
        }
        let nobody =
            audience.group_ids.is_empty() && audience.segment_ids.is_empty() && audience.contact_ids.is_empty();
        let mut all = Condition::all();
        all = if nobody { all.add(Expr::val(1).eq(0)) } else { all.add(any) };
        if !audience.exclude_contact_ids.is_empty() {
            all = all.add(contact::Column::Id.is_not_in(audience.exclude_contact_ids.clone()));
        }
        if !audience.exclude_group_ids.is_empty() {
            all = all.add(contact::Column::Id.not_in_subquery(members(&audience.exclude_group_ids)));
        }
        Ok(all)
    }

    /// The condition selecting the audience's reachable contacts on `channel_type`.
    async fn condition(
        &self,
        scope: AccountScope,
        audience: &Audience,
        channel_type: &str,
    ) -> AppResult<(Condition, AddressKind)> {
        let kind =
            address_kind(channel_type).ok_or_else(|| AppError::field("channel_type", "is not a channel type"))?;
        let backend = self.contacts.backend();
        let mut all = Condition::all().add(self.audience_condition(scope, audience).await?);
        all = all.add(opted_out_expr(channel_type, backend).not());
        all = all.add(match kind {
            AddressKind::Phone => contact::Column::Phone.is_not_null(),
            AddressKind::Email => contact::Column::Email.is_not_null(),
            AddressKind::Identity(t) => {
                let has = Query::select()
                    .column(contact_identity::Column::ContactId)
                    .from(contact_identity::Entity)
                    .and_where(contact_identity::Column::AccountId.eq(scope.account_id()))
                    .and_where(contact_identity::Column::ChannelType.eq(t))
                    .to_owned();
                contact::Column::Id.in_subquery(has)
            }
        });
        Ok((all, kind))
    }

    fn keyset(&self, scope: AccountScope, condition: Condition, batch_size: u64, after: Option<Uuid>) -> Keyset {
        Keyset {
            db: self.contacts.db.clone(),
            scope,
            condition,
            batch: batch_size.clamp(1, 10_000),
            after,
            done: false,
        }
    }

    /// Streams the audience's contacts reachable on `channel_type` in batches of `batch_size`, ordered
    /// by contact id. Groups and segments of another account are 404s.
    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn stream(
        &self,
        scope: AccountScope,
        audience: &Audience,
        channel_type: &str,
        batch_size: u64,
        after: Option<Uuid>,
    ) -> AppResult<RecipientStream> {
        let (condition, kind) = self.condition(scope, audience, channel_type).await?;
        Ok(RecipientStream { rows: self.keyset(scope, condition, batch_size, after), kind })
    }

    /// Streams every contact of the audience (reachable or not) in batches of `batch_size`, ordered by
    /// contact id, after `after` (a stored [`AudienceStream::position`]).
    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn members(
        &self,
        scope: AccountScope,
        audience: &Audience,
        batch_size: u64,
        after: Option<Uuid>,
    ) -> AppResult<AudienceStream> {
        let condition = self.audience_condition(scope, audience).await?;
        Ok(AudienceStream { rows: self.keyset(scope, condition, batch_size, after) })
    }

    /// Checks that an audience names only the account's own groups, segments and contacts: each
    /// problem names its field (`contact_group_ids`, `segment_ids`, `contact_ids`,
    /// `exclude_contact_ids`).
    pub async fn check_audience(&self, scope: AccountScope, audience: &Audience) -> AppResult<()> {
        let mut errors = Vec::new();
        for g in &audience.group_ids {
            if let Err(AppError::NotFound(_)) = self.contacts.get_group(scope, *g).await {
                errors.push(FieldError::new("contact_group_ids", format!("{g} is not a group of this account")));
            }
        }
        for s in &audience.segment_ids {
            if let Err(AppError::NotFound(_)) = self.contacts.get_segment(scope, *s).await {
                errors.push(FieldError::new("segment_ids", format!("{s} is not a segment of this account")));
            }
        }
        for (field, ids) in
            [("contact_ids", &audience.contact_ids), ("exclude_contact_ids", &audience.exclude_contact_ids)]
        {
            for chunk in ids.chunks(1_000) {
                let found: Vec<Uuid> = store::contacts_in(scope)
                    .select_only()
                    .column(contact::Column::Id)
                    .filter(contact::Column::Id.is_in(chunk.iter().copied()))
                    .into_tuple()
                    .all(&self.contacts.db)
                    .await?;
                if let Some(missing) = chunk.iter().find(|id| !found.contains(id)) {
                    errors.push(FieldError::new(field, format!("{missing} is not a contact of this account")));
                    break;
                }
            }
        }
        match errors.is_empty() {
            true => Ok(()),
            false => Err(AppError::Validation(errors)),
        }
    }

    /// How many recipients the audience has on `channel_type`.
    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn count(&self, scope: AccountScope, audience: &Audience, channel_type: &str) -> AppResult<u64> {
        let (condition, _) = self.condition(scope, audience, channel_type).await?;
        Ok(store::contacts_in(scope).filter(condition).count(&self.contacts.db).await?)
    }

    pub async fn get(&self, scope: AccountScope, id: Uuid) -> AppResult<Option<DirectoryContact>> {
        Ok(store::find_contact(&self.contacts.db, scope, id).await?.map(Into::into))
    }

    /// Whether the account's contact `id` can be reached on `channel_type` (a single send); `None` when
    /// there is no such contact in the account.
    pub async fn reach(&self, scope: AccountScope, id: Uuid, channel_type: &str) -> AppResult<Option<Reach>> {
        if address_kind(channel_type).is_none() {
            return Err(AppError::field("channel_type", "is not a channel type"));
        }
        let Some(model) = store::find_contact(&self.contacts.db, scope, id).await? else { return Ok(None) };
        Ok(Some(DirectoryContact::from(model).reach(channel_type)))
    }

    /// When each of these contacts of the account last wrote to us (contacts that never did, or are not
    /// the account's, are absent): the WhatsApp and Messenger customer-service window.
    pub async fn last_inbound(
        &self,
        scope: AccountScope,
        ids: &[Uuid],
    ) -> AppResult<std::collections::HashMap<Uuid, chrono::DateTime<Utc>>> {
        if ids.is_empty() {
            return Ok(Default::default());
        }
        let rows: Vec<(Uuid, Option<chrono::DateTime<Utc>>)> = store::contacts_in(scope)
            .select_only()
            .column(contact::Column::Id)
            .column(contact::Column::LastInboundAt)
            .filter(contact::Column::Id.is_in(ids.iter().copied()))
            .into_tuple()
            .all(&self.contacts.db)
            .await?;
        Ok(rows.into_iter().filter_map(|(id, at)| at.map(|at| (id, at))).collect())
    }

    /// The contact reached at `address` on `channel_type` (phone for sms/smpp/whatsapp, e-mail for
    /// email, the channel identity for telegram/messenger).
    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn find_by_address(
        &self,
        scope: AccountScope,
        channel_type: &str,
        address: &str,
    ) -> AppResult<Option<DirectoryContact>> {
        Ok(self.find_model_by_address(&self.contacts.db, scope, channel_type, address).await?.map(Into::into))
    }

    async fn find_model_by_address<C: ConnectionTrait>(
        &self,
        db: &C,
        scope: AccountScope,
        channel_type: &str,
        address: &str,
    ) -> AppResult<Option<contact::Model>> {
        let kind =
            address_kind(channel_type).ok_or_else(|| AppError::field("channel_type", "is not a channel type"))?;
        Ok(match kind {
            AddressKind::Phone => {
                let region = self.contacts.region(scope).await?;
                let Ok(p) = super::normalise::normalise_phone(address, region) else { return Ok(None) };
                store::contacts_in(scope).filter(contact::Column::Phone.eq(p)).one(db).await?
            }
            AddressKind::Email => {
                let e = crate::domain::EmailAddress::canonical(address);
                store::contacts_in(scope).filter(contact::Column::Email.eq(e)).one(db).await?
            }
            AddressKind::Identity(t) => store::find_by_identity(db, scope, t, address.trim()).await?,
        })
    }

    /// The contact behind an inbound sender, inside the caller's transaction (its events join `bus`):
    /// found by address, or created (`contact.created`); `last_inbound_at` is set to `at`. Returns the
    /// contact, whether it was created, and whether it is opted out of `channel_type`. A new sender
    /// created at the same time by another transaction is a conflict: the caller retries, and then
    /// finds it.
    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn upsert_inbound(
        &self,
        txn: &DatabaseTransaction,
        bus: &mut EventBus,
        scope: AccountScope,
        sender: InboundSender<'_>,
    ) -> AppResult<InboundContact> {
        let InboundSender { channel_type, address, display_name, at } = sender;
        if let Some(found) = self.find_model_by_address(txn, scope, channel_type, address).await? {
            store::touch_last_inbound(txn, scope, found.id, at).await?;
            return Ok(InboundContact::of(found, channel_type, false));
        }
        let kind =
            address_kind(channel_type).ok_or_else(|| AppError::field("channel_type", "is not a channel type"))?;
        let mut input = ContactInput { display_name: display_name.map(str::to_string), ..Default::default() };
        match kind {
            AddressKind::Phone => input.phone = Some(address.to_string()),
            AddressKind::Email => input.email = Some(address.to_string()),
            AddressKind::Identity(t) => input.channel_identities = Some(json!({ t: address })),
        }
        let region = self.contacts.region_in(txn, scope).await?;
        let n = normalise_input(&input, region).map_err(AppError::Validation)?;
        let mut active = new_contact(scope, &n);
        active.last_inbound_at = Set(Some(at));
        let c = match active.insert(txn).await {
            Ok(c) => c,
            Err(e) if crate::db::is_unique_violation(&e) => {
                return Err(AppError::conflict("the sender's contact was created concurrently; retry"));
            }
            Err(e) => return Err(e.into()),
        };
        store::bump_contact_total(txn, scope, 1).await?;
        // A concurrent writer that took the identity first is a conflict too.
        store::set_identities(txn, scope, c.id, &n.identities()).await?;
        bus.emit(
            "contact.created",
            "contact",
            c.id,
            Some(scope.account_id()),
            json!({ "source": "inbound", "channel_type": channel_type }),
        );
        Ok(InboundContact::of(c, channel_type, true))
    }

    /// Opts the contact out of (or back into) `channel_type` inside the caller's transaction, as a
    /// STOP or START keyword asks; `contact.opted_out` or `contact.opted_in` joins `bus`. False when it
    /// was so already.
    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn set_opted_out(
        &self,
        txn: &DatabaseTransaction,
        bus: &mut EventBus,
        scope: AccountScope,
        id: Uuid,
        channel_type: &str,
        opted_out: bool,
    ) -> AppResult<bool> {
        let c = store::find_contact(txn, scope, id).await?.ok_or(AppError::NotFound("contact"))?;
        let mut channels: Vec<String> = c
            .opted_out_channels
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        let had = channels.iter().any(|t| t == channel_type);
        if had == opted_out {
            return Ok(false);
        }
        if opted_out {
            channels.push(channel_type.to_string());
        } else {
            channels.retain(|t| t != channel_type);
        }
        contact::Entity::update_many()
            .col_expr(contact::Column::OptedOutChannels, Expr::val(json!(channels)))
            .col_expr(contact::Column::UpdatedAt, Expr::val(Utc::now()))
            .filter(contact::Column::Id.eq(id))
            .filter(contact::Column::AccountId.eq(scope.account_id()))
            .exec(txn)
            .await?;
        let topic = if opted_out { "contact.opted_out" } else { "contact.opted_in" };
        bus.emit(
            topic,
            "contact",
            id,
            Some(scope.account_id()),
            json!({ "channels": [channel_type], "source": "keyword" }),
        );
        Ok(true)
    }
}

/// Who wrote to us: the sender's address on the channel type, the name the provider gave, and when.
#[derive(Debug, Clone, Copy)]
pub struct InboundSender<'a> {
    pub channel_type: &'a str,
    pub address: &'a str,
    pub display_name: Option<&'a str>,
    pub at: chrono::DateTime<Utc>,
}

/// The contact behind an inbound message.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundContact {
    pub contact: DirectoryContact,
    pub created: bool,
    /// Opted out of the channel type the message came on.
    pub opted_out: bool,
}

impl InboundContact {
    fn of(c: contact::Model, channel_type: &str, created: bool) -> Self {
        let opted_out = c.opted_out_channels.as_array().is_some_and(|a| a.iter().any(|v| v == channel_type));
        InboundContact { contact: c.into(), created, opted_out }
    }
}

#[allow(unused_imports)]
use ExprTrait as _;
