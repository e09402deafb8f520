//! Single messages (SPEC §6.2): `POST /v1/messages` validates, renders and writes the message row and
//! its dispatch event in one transaction (201 `queued`; the dispatcher delivers it); `Idempotency-Key`
//! replays; the history with filters, sorts and keyset cursors; cancel, metadata edits and deletion.

use chrono::{Duration, SubsecRound, Utc};
use sea_orm::{ActiveModelTrait, IntoActiveModel, ModelTrait, Set, TryIntoModel};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use super::entity::message::{self, Direction, MessageStatus};
use super::entity::template::FallbackStrategy;
use super::intake::{Accepted, Keyed, Written};
use super::render::Variables;
use super::service::Messaging;
use super::store::{self, Position};
use super::templates::{Attachment, check_attachments, recipient_zone, render_template};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sea_orm::Order;

use crate::db::list::{ListQuery, Page};
use crate::domain::channel_type::{AddressKind, ChannelType};
use crate::domain::{EmailAddress, PhoneE164, default_region};
use crate::error::{AppError, AppResult, FieldError};
use crate::modules::accounts::{AccountScope, CurrentUser};
use crate::modules::channels::{Channel, analyse_sms};
use crate::modules::contacts::{DirectoryContact, Reach};
use crate::modules::events::{EventBus, EventMeta};

/// Longest message body, in characters.
pub const MAX_BODY_CHARS: usize = 10_000;
/// Longest `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;
/// How long an idempotency key replays its first answer.
pub const IDEMPOTENCY_HOURS: i64 = 24;

/// The body of `POST /v1/messages`: a channel, a contact or an address (or both: the address wins), and
/// a template with `custom_values` or a `message_body`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMessage {
    pub channel_id: Uuid,
    pub contact_id: Option<Uuid>,
    pub delivery_address: Option<String>,
    pub template_id: Option<Uuid>,
    #[schema(value_type = Option<Object>)]
    pub custom_values: Option<Map<String, Value>>,
    pub message_body: Option<String>,
    pub attachments: Option<Vec<Attachment>>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
}

/// A page of messages and, when the order allows it and more may follow, the cursor of the next page.
pub struct MessagePage {
    pub page: Page<message::Model>,
    pub next_cursor: Option<String>,
    /// More messages match than were counted (`total` is then a lower bound).
    pub total_is_lower_bound: bool,
}

/// Signs and reads history cursors: `base64url(json).base64url(hmac)`, so a cursor that was altered is a
/// 400 rather than a position somewhere else.
#[derive(Clone)]
pub struct Cursors {
    key: std::sync::Arc<aws_lc_rs::hmac::Key>,
}

impl Cursors {
    pub fn new(secret: [u8; 32]) -> Self {
        Cursors { key: std::sync::Arc::new(aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &secret)) }
    }

    pub fn encode(&self, p: Position) -> String {
        let body = json!({
            "t": p.created_at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            "i": p.id,
            "d": p.descending,
        })
        .to_string();
        let body = URL_SAFE_NO_PAD.encode(body);
        let tag = aws_lc_rs::hmac::sign(&self.key, body.as_bytes());
        format!("{body}.{}", URL_SAFE_NO_PAD.encode(&tag.as_ref()[..16]))
    }

    pub fn decode(&self, raw: &str) -> AppResult<Position> {
        let bad = || AppError::bad_request("cursor: not a cursor this server issued (use meta.next_cursor as it is)");
        let (body, tag) = raw.split_once('.').ok_or_else(bad)?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| bad())?;
        let expected = aws_lc_rs::hmac::sign(&self.key, body.as_bytes());
        if tag.len() != 16 || !crate::secret::constant_time_eq(&tag, &expected.as_ref()[..16]) {
            return Err(bad());
        }
        let v: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).map_err(|_| bad())?).map_err(|_| bad())?;
        let created_at = v["t"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(bad)?;
        let id = v["i"].as_str().and_then(|i| Uuid::parse_str(i).ok()).ok_or_else(bad)?;
        let descending = v["d"].as_bool().ok_or_else(bad)?;
        Ok(Position { created_at, id, descending })
    }
}

/// What a send with an `Idempotency-Key` answers: the first answer again, or a new message.
pub enum Sent {
    Created(Box<message::Model>),
    /// The stored answer of the first request with this key and body.
    Replayed {
        status: u16,
        body: Value,
    },
}

fn address_for(kind: AddressKind, raw: &str, region: Option<phonenumber::country::Id>) -> Result<String, String> {
    match kind {
        AddressKind::Phone => PhoneE164::parse(raw, region).map(PhoneE164::into_string),
        AddressKind::Email => EmailAddress::parse(raw).map(EmailAddress::into_string),
        AddressKind::Identity(_) => {
            let v = raw.trim();
            if v.is_empty() || v.len() > 256 || crate::domain::text::control_character(v).is_some() {
                Err("must be the recipient's id on the channel (1 to 256 characters)".into())
            } else {
                Ok(v.to_string())
            }
        }
    }
}

/// SHA-256 of the request as sent (its JSON, re-serialised so key order and spacing do not matter).
pub fn request_hash(request: &NewMessage) -> String {
    crate::secret::sha256_hex(serde_json::to_vec(request).unwrap_or_default())
}

impl Messaging {
    /// Creates one outbound message (`queued`) and its dispatch event, atomically. With `idempotency_key`,
    /// a repeat within 24 h answers the first answer again (same body) or 422 `idempotency_key_reused`.
    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn send_message(
        &self,
        scope: AccountScope,
        sender: &CurrentUser,
        new: NewMessage,
        idempotency_key: Option<&str>,
        meta: &EventMeta,
        render_answer: impl Fn(&message::Model) -> Value,
    ) -> AppResult<Sent> {
        // Only a keyed send needs the request's hash.
        let hash = idempotency_key.map(|_| request_hash(&new)).unwrap_or_default();
        if let Some(key) = idempotency_key {
            if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY {
                return Err(AppError::bad_request(format!(
                    "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters"
                )));
            }
            if let Some(replay) = self.replay(scope, key, &hash).await? {
                return Ok(replay);
            }
        }
        let row = self.prepare_message(scope, sender, new).await?.try_into_model()?;
        let keyed = idempotency_key.map(|key| Keyed {
            scope,
            key: key.to_string(),
            hash: hash.clone(),
            answer: render_answer(&row),
        });
        match self.intake.write(Accepted { row: row.clone(), key: keyed, meta: meta.clone() }).await? {
            Written::Created => Ok(Sent::Created(Box::new(row))),
            // Another request with this key was written first: answer as it did.
            Written::KeyTaken => match idempotency_key {
                Some(key) => self.replay(scope, key, &hash).await?.ok_or_else(|| {
                    AppError::conflict("another request with this Idempotency-Key is being written; try again")
                }),
                None => Err(AppError::internal("a send without an idempotency key found its key taken")),
            },
        }
    }

    /// The stored answer for `key`, if it is younger than 24 h: the same request replays it, another
    /// one is a 422.
    async fn replay(&self, scope: AccountScope, key: &str, hash: &str) -> AppResult<Option<Sent>> {
        let since = Utc::now() - Duration::hours(IDEMPOTENCY_HOURS);
        let Some(found) = store::find_idempotency_key(&self.db, scope, key, since).await? else { return Ok(None) };
        if found.request_hash != hash {
            return Err(AppError::Validation(vec![FieldError::new(
                "Idempotency-Key",
                "idempotency_key_reused: this key was used with a different request in the last 24 hours",
            )]));
        }
        Ok(Some(Sent::Replayed { status: found.status_code as u16, body: found.response }))
    }

    /// Validates a send and builds its row (every problem named; nothing written).
    pub(super) async fn prepare_message(
        &self,
        scope: AccountScope,
        sender: &CurrentUser,
        new: NewMessage,
    ) -> AppResult<message::ActiveModel> {
        let channel = self.channel_for_send(scope, new.channel_id).await?;
        self.prepare_message_on(scope, sender, new, channel).await
    }

    /// The channel a send names (422 `channel_id` when the account has none by that id), as sends
    /// read it (remembered between changes: `Channels::for_send`).
    pub(super) async fn channel_for_send(&self, scope: AccountScope, id: Uuid) -> AppResult<Channel> {
        match self.channels.for_send(scope, id).await {
            Ok(c) => Ok(c),
            Err(AppError::NotFound(_)) => Err(AppError::field("channel_id", "no such channel in this account")),
            Err(e) => Err(e),
        }
    }

    /// [`Self::prepare_message`] with the channel already read (the scheduler reads each channel once
    /// per look).
    pub(super) async fn prepare_message_on(
        &self,
        scope: AccountScope,
        sender: &CurrentUser,
        new: NewMessage,
        channel: Channel,
    ) -> AppResult<message::ActiveModel> {
        if !channel.is_enabled {
            return Err(AppError::field("channel_id", "the channel is disabled"));
        }
        let channel_type = ChannelType::parse(&channel.channel_type)
            .ok_or_else(|| AppError::internal(format!("channel {} has an unknown type", channel.id)))?;
        let kind = channel_type.address_kind();
        // The account is read only when something needs it: a template (its name and time zone), or a
        // national phone number on a channel without a country of its own (the account's country).
        let national_number = matches!(kind, AddressKind::Phone)
            && channel.default_country_code.is_none()
            && new.delivery_address.as_deref().is_some_and(|a| !a.trim_start().starts_with('+'));
        let account = match new.template_id.is_some() || national_number {
            true => Some(self.accounts.get_account(scope).await?),
            false => None,
        };
        let region = default_region(
            channel
                .default_country_code
                .as_deref()
                .or(account.as_ref().and_then(|a| a.default_country_code.as_deref())),
        );

        // Who: the contact (which must be reachable on this channel type) and where.
        let mut contact: Option<DirectoryContact> = None;
        let mut address: Option<String> = None;
        if let Some(cid) = new.contact_id {
            match self.directory.reach(scope, cid, channel_type.as_str()).await? {
                None => return Err(AppError::field("contact_id", "no such contact in this account")),
                Some(Reach::OptedOut(_)) => {
                    return Err(AppError::field(
                        "contact_id",
                        format!("opted_out: the contact opted out of {channel_type}"),
                    ));
                }
                Some(Reach::NoAddress(c)) => contact = Some(c),
                Some(Reach::Reachable(r)) => {
                    address = Some(r.address);
                    contact = Some(r.contact);
                }
            }
        }
        if let Some(raw) = new.delivery_address.as_deref() {
            address = Some(address_for(kind, raw, region).map_err(|m| AppError::field("delivery_address", m))?);
        }
        let Some(address) = address else {
            return Err(match contact {
                Some(_) => AppError::field("contact_id", format!("the contact has no address for {channel_type}")),
                None => AppError::field("contact_id", "give contact_id or delivery_address"),
            });
        };

        // What: a template rendered for the recipient, or a body.
        let (body, original_template, template_attachments) = match (new.template_id, new.message_body) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(AppError::field("message_body", "give exactly one of template_id or message_body"));
            }
            (None, Some(body)) => {
                if body.trim().is_empty() {
                    return Err(AppError::field("message_body", "must not be empty"));
                }
                (body, None, Vec::new())
            }
            (Some(tid), None) => {
                let account = account.as_ref().ok_or_else(|| AppError::internal("the account was not read"))?;
                let t = match self.get_template(scope, tid).await {
                    Ok(t) => t,
                    Err(AppError::NotFound(_)) => {
                        return Err(AppError::field("template_id", "no such template in this account"));
                    }
                    Err(e) => return Err(e),
                };
                if !t.is_active {
                    return Err(AppError::field("template_id", "the template is not active"));
                }
                let vars = Variables {
                    recipient: None,
                    custom: new.custom_values.as_ref(),
                    contact: contact.as_ref(),
                    account_name: Some(&account.name),
                    sender_name: Some(channel.sender_name.as_deref().unwrap_or(&sender.full_name)),
                    sender_email: Some(&sender.email),
                    timezone: recipient_zone(contact.as_ref(), &account.timezone),
                    now: None,
                };
                let rendered = render_template(&t, &vars);
                if t.fallback_strategy == FallbackStrategy::SkipContact
                    && let Some(reason) = rendered.skip_reason()
                {
                    return Err(AppError::field(
                        "custom_values",
                        format!("{reason}: the template skips recipients without it; give it in custom_values"),
                    ));
                }
                let attachments: Vec<Attachment> = serde_json::from_value(t.attachments.clone()).unwrap_or_default();
                (rendered.text, Some(t.body), attachments)
            }
        };
        if body.chars().count() > MAX_BODY_CHARS {
            return Err(AppError::field("message_body", format!("must be at most {MAX_BODY_CHARS} characters")));
        }
        let attachments = new.attachments.unwrap_or(template_attachments);
        check_attachments(&attachments, "attachments").map_err(AppError::Validation)?;
        if !attachments.is_empty() && !self.channels.sends_attachments(&channel) {
            let provider = channel.provider.as_deref().map(|p| format!(" ({p})")).unwrap_or_default();
            return Err(AppError::field(
                "attachments",
                format!(
                    "{channel_type}{provider} channels cannot send files; send the text alone or use another channel"
                ),
            ));
        }
        let mut metadata = new.metadata.unwrap_or_default();
        if metadata.keys().any(|k| matches!(k.as_str(), "segments" | "encoding")) {
            return Err(AppError::field("metadata", "segments and encoding are set by Turumba"));
        }
        if serde_json::to_vec(&metadata).map_or(0, |v| v.len()) > 16 * 1024 {
            return Err(AppError::field("metadata", "must be at most 16 KiB of JSON"));
        }
        if matches!(channel_type, ChannelType::Sms | ChannelType::Smpp | ChannelType::Sandbox) {
            let sms = analyse_sms(&body);
            metadata.insert("segments".into(), json!(sms.segments));
            metadata.insert("encoding".into(), json!(sms.encoding.as_str()));
        }
        // Microseconds, as both databases keep them: the answer is the row as it will be read back.
        let now = Utc::now().trunc_subsecs(6);
        let mut row = store::new_message(scope, channel.id, channel_type, Direction::Outbound, address, body, now);
        row.contact_id = Set(contact.as_ref().map(|c| c.id));
        row.sent_by_user_id = Set(Some(sender.id));
        row.template_id = Set(new.template_id);
        row.original_template = Set(original_template);
        row.attachments = Set(json!(attachments));
        row.metadata = Set(Value::Object(metadata));
        Ok(row)
    }

    /// A page of the account's messages (or of one contact's conversation, both directions). With the
    /// default order or a `created_at` sort, a full page carries `next_cursor`; `cursor=` continues from
    /// it at the cost of a first page, however deep.
    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn list_messages(
        &self,
        scope: AccountScope,
        contact_id: Option<Uuid>,
        q: &ListQuery,
    ) -> AppResult<MessagePage> {
        let keyset_descending = match q.sorts.as_slice() {
            [] => Some(true),
            [(field, order)] if field == "created_at" => Some(matches!(order, Order::Desc)),
            _ => None,
        };
        let cursor = q.extra.iter().find(|(k, _)| k == "cursor").map(|(_, v)| v.as_str()).filter(|c| !c.is_empty());
        let position = match cursor {
            None => None,
            Some(raw) => {
                let descending = keyset_descending.ok_or_else(|| {
                    AppError::bad_request("cursor: cursors follow created_at; sort by created_at only")
                })?;
                if q.skip != 0 {
                    return Err(AppError::bad_request("cursor: give a cursor or skip, not both"));
                }
                let p = self.cursors.decode(raw)?;
                if p.descending != descending {
                    return Err(AppError::bad_request("cursor: it was issued for the other sort direction"));
                }
                Some(p)
            }
        };
        let exact = match q.extra.iter().find(|(k, _)| k == "count").map(|(_, v)| v.as_str()) {
            None => false,
            Some("exact") => true,
            Some(_) => return Err(AppError::bad_request("count: give `exact` or leave it out")),
        };
        if let Some(c) = contact_id
            && self.directory.get(scope, c).await?.is_none()
        {
            return Err(AppError::NotFound("contact"));
        }
        let page = store::list_messages(&self.db, scope, contact_id, q, position, exact).await?;
        let next_cursor = match keyset_descending {
            Some(descending) if page.items.len() as u64 == q.limit => page
                .items
                .last()
                .map(|m| self.cursors.encode(Position { created_at: m.created_at, id: m.id, descending })),
            _ => None,
        };
        let total_is_lower_bound = !exact && page.total > store::MAX_COUNTED;
        Ok(MessagePage { page, next_cursor, total_is_lower_bound })
    }

    pub async fn get_message(&self, scope: AccountScope, id: Uuid) -> AppResult<message::Model> {
        store::find_message(&self.db, scope, id).await?.ok_or(AppError::NotFound("message"))
    }

    /// `PATCH`: cancels a queued message (`status: "cancelled"`) and/or replaces its caller metadata.
    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn update_message(
        &self,
        scope: AccountScope,
        id: Uuid,
        status: Option<&str>,
        metadata: Option<Map<String, Value>>,
        meta: &EventMeta,
    ) -> AppResult<message::Model> {
        let m = self.get_message(scope, id).await?;
        let mut active = m.clone().into_active_model();
        let mut bus = EventBus::new(meta.clone());
        match status {
            None => {}
            Some("cancelled") => {
                if m.status != MessageStatus::Queued {
                    return Err(AppError::Conflict {
                        message: format!("only a queued message can be cancelled; this one is {}", m.status),
                        details: json!({ "field": "status", "status": m.status }),
                    });
                }
                active.status = Set(MessageStatus::Cancelled);
                emit_status(&mut bus, "cancelled", scope.account_id(), &[m.id], json!({ "channel_id": m.channel_id }));
            }
            Some(_) => return Err(AppError::field("status", "only `cancelled` can be set")),
        }
        if let Some(mut caller) = metadata {
            if caller.keys().any(|k| matches!(k.as_str(), "segments" | "encoding")) {
                return Err(AppError::field("metadata", "segments and encoding are set by Turumba"));
            }
            for key in ["segments", "encoding"] {
                if let Some(v) = m.metadata.get(key) {
                    caller.insert(key.into(), v.clone());
                }
            }
            // Who changed what is in the audit log: the edit is an event of its own.
            bus.before(json!({ "metadata": m.metadata }));
            bus.emit("message.updated", "message", m.id, Some(scope.account_id()), json!({ "metadata": caller }));
            active.metadata = Set(Value::Object(caller));
        }
        active.updated_at = Set(Utc::now());
        let txn = crate::db::begin_write(&self.db).await?;
        // Cancelling only wins over a dispatcher that has not claimed the message yet.
        if status.is_some() {
            if !store::cancel_if_queued(&txn, m.id).await? {
                return Err(AppError::conflict("the message was handed to the dispatcher in the meantime"));
            }
            let mut tallies = super::group_store::Tallies::default();
            tallies.moved(m.group_message_id, MessageStatus::Queued, MessageStatus::Cancelled, 1);
            tallies.apply(&txn, &mut bus).await?;
        }
        // The status is written by the conditional cancel above, never from the row read earlier.
        active.status = sea_orm::ActiveValue::NotSet;
        let updated = if active.is_changed() { active.update(&txn).await? } else { m.clone() };
        let updated = store::find_message(&txn, scope, updated.id).await?.unwrap_or(updated);
        self.events.commit(txn, bus).await?;
        Ok(updated)
    }

    /// Deletes a final message (sent, delivered, permanently failed, cancelled, or inbound).
    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn delete_message(&self, scope: AccountScope, id: Uuid, meta: &EventMeta) -> AppResult<()> {
        let m = self.get_message(scope, id).await?;
        if m.direction == Direction::Outbound && !m.status.is_final() {
            return Err(AppError::Conflict {
                message: format!("a {} message is still being handled; cancel it first or wait", m.status),
                details: json!({ "status": m.status }),
            });
        }
        let txn = crate::db::begin_write(&self.db).await?;
        let mut bus = EventBus::new(meta.clone());
        bus.emit(
            "message.deleted",
            "message",
            m.id,
            Some(m.account_id),
            json!({ "channel_id": m.channel_id, "contact_id": m.contact_id, "status": m.status }),
        );
        m.delete(&txn).await?;
        self.events.commit(txn, bus).await?;
        Ok(())
    }
}

/// `message.status.<status>` for messages of one account that moved to `status`: ONE event naming them
/// all in `data.message_ids` (a dispatcher pass moves hundreds at once), the first as its aggregate,
/// with `data`'s other fields.
pub(super) fn emit_status(bus: &mut EventBus, status: &str, account_id: Uuid, ids: &[Uuid], data: serde_json::Value) {
    let Some(first) = ids.first() else { return };
    let mut data = data;
    data["message_ids"] = json!(ids);
    bus.emit(&format!("message.status.{status}"), "message", *first, Some(account_id), data);
}

/// `message.dispatch.<type>` for messages just queued, one doorbell per channel naming every id: the
/// dispatchers' wake-up (a single send, a batch of accepts, a look of the scheduler).
pub(super) fn emit_dispatch<'a>(bus: &mut EventBus, queued: impl IntoIterator<Item = &'a message::Model>) {
    let mut by_channel: std::collections::BTreeMap<Uuid, (&message::Model, Vec<Uuid>)> = Default::default();
    for m in queued {
        by_channel.entry(m.channel_id).or_insert_with(|| (m, Vec::new())).1.push(m.id);
    }
    for (channel, (first, ids)) in by_channel {
        bus.emit(
            &format!("message.dispatch.{}", first.channel_type.as_str()),
            "message",
            first.id,
            Some(first.account_id),
            json!({ "channel_id": channel, "message_ids": ids }),
        );
    }
}
