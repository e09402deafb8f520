//! Inbound messages (SPEC §5.2): a message from a contact becomes a `Message(direction=inbound,
//! status=delivered)` in the contact's history, the contact found by its address on the channel type
//! or created, through `Directory` inside the consumer's transaction (`last_inbound_at` kept: the
//! WhatsApp customer-service window and "unresponsive" segments read it). The same provider message
//! twice is stored once.
//!
//! Keywords: a message that is only an opt-out keyword (`STOP`, `UNSUBSCRIBE`) opts the contact out of
//! the channel type, `START` opts it back in; each account may set its own lists in its settings
//! (`opt_out_keywords`, `opt_in_keywords`: arrays of words, matched without regard to case) and the
//! confirmation texts (`opt_out_reply`, `opt_in_reply`; an empty text sends none). The confirmation is
//! a `system` message queued for the dispatcher in the same transaction (not on e-mail channels, where
//! an unsubscribe is not answered).

use chrono::{DateTime, Utc};
use sea_orm::{ActiveModelTrait, ColumnTrait, DatabaseTransaction, QueryFilter, QuerySelect, Set};
use serde_json::{Value, json};
use uuid::Uuid;

use super::entity::message::{self, Direction};
use super::service::Messaging;
use super::store;
use crate::domain::channel_type::ChannelType;
use crate::error::{AppError, AppResult};
use crate::modules::accounts::AccountScope;
use crate::modules::contacts::InboundSender;
use crate::modules::events::EventBus;

const DEFAULT_OPT_OUT: &[&str] = &["STOP", "UNSUBSCRIBE"];
const DEFAULT_OPT_IN: &[&str] = &["START"];
/// Messages longer than this are never keywords.
const MAX_KEYWORD_CHARS: usize = 64;
const DEFAULT_OPT_OUT_REPLY: &str =
    "You are unsubscribed and will get no more messages here. Reply START to subscribe again.";
const DEFAULT_OPT_IN_REPLY: &str = "You are subscribed again. Reply STOP to unsubscribe.";

/// A message from a contact, as the provider delivered it.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub channel_id: Uuid,
    pub channel_type: ChannelType,
    pub provider_message_id: String,
    pub from: String,
    pub from_name: Option<String>,
    pub text: String,
    pub at: Option<DateTime<Utc>>,
}

/// The account's keywords and confirmation texts.
#[derive(Debug, Clone, PartialEq)]
pub struct Keywords {
    opt_out: Vec<String>,
    opt_in: Vec<String>,
    opt_out_reply: String,
    opt_in_reply: String,
}

impl Keywords {
    /// Reads the account settings; a key that is missing or not of the right shape takes the default.
    pub fn from_settings(settings: &Value) -> Self {
        let words = |key: &str, default: &[&str]| -> Vec<String> {
            match settings.get(key).and_then(Value::as_array) {
                Some(list) => list.iter().filter_map(Value::as_str).map(|w| w.trim().to_uppercase()).collect(),
                None => default.iter().map(|w| w.to_string()).collect(),
            }
        };
        let text = |key: &str, default: &str| -> String {
            settings.get(key).and_then(Value::as_str).unwrap_or(default).trim().to_string()
        };
        Keywords {
            opt_out: words("opt_out_keywords", DEFAULT_OPT_OUT),
            opt_in: words("opt_in_keywords", DEFAULT_OPT_IN),
            opt_out_reply: text("opt_out_reply", DEFAULT_OPT_OUT_REPLY),
            opt_in_reply: text("opt_in_reply", DEFAULT_OPT_IN_REPLY),
        }
    }

    /// `Some(true)` for an opt-out keyword, `Some(false)` for an opt-in one: the whole message, with
    /// surrounding spaces and a final full stop or exclamation mark ignored, in any case.
    pub fn classify(&self, text: &str) -> Option<bool> {
        let word = text.trim().trim_end_matches(['.', '!']).trim().to_uppercase();
        if word.is_empty() {
            None
        } else if self.opt_out.contains(&word) {
            Some(true)
        } else if self.opt_in.contains(&word) {
            Some(false)
        } else {
            None
        }
    }

    fn reply(&self, opted_out: bool) -> &str {
        if opted_out { &self.opt_out_reply } else { &self.opt_in_reply }
    }
}

impl Messaging {
    /// Stores an inbound message inside the consumer's transaction (see the module documentation).
    /// Returns the new message's id, or `None` when this provider message was stored before.
    pub(super) async fn receive(
        &self,
        txn: &DatabaseTransaction,
        bus: &mut EventBus,
        scope: AccountScope,
        i: Inbound,
    ) -> AppResult<Option<Uuid>> {
        let seen: Option<Uuid> = store::messages_in(scope)
            .select_only()
            .column(message::Column::Id)
            .filter(message::Column::ChannelId.eq(i.channel_id))
            .filter(message::Column::ProviderMessageId.eq(i.provider_message_id.as_str()))
            .filter(message::Column::Direction.eq(Direction::Inbound))
            .into_tuple()
            .one(txn)
            .await?;
        if seen.is_some() {
            return Ok(None);
        }
        let now = Utc::now();
        let at = i.at.unwrap_or(now);
        let sender = InboundSender {
            channel_type: i.channel_type.as_str(),
            address: &i.from,
            display_name: i.from_name.as_deref(),
            at,
        };
        // A sender whose address is not one a contact can have (an alphanumeric SMS sender id) is kept
        // without a contact.
        let contact = match self.directory.upsert_inbound(txn, bus, scope, sender).await {
            Ok(c) => Some(c),
            Err(AppError::Validation(errors)) => {
                tracing::info!(?errors, "an inbound sender is not a contact address; stored without a contact");
                None
            }
            Err(e) => return Err(e),
        };
        let contact_id = contact.as_ref().map(|c| c.contact.id);
        let mut row = store::new_message(
            scope,
            i.channel_id,
            i.channel_type,
            Direction::Inbound,
            i.from.clone(),
            i.text.clone(),
            now,
        );
        row.contact_id = Set(contact_id);
        row.provider_message_id = Set(Some(i.provider_message_id.clone()));
        row.delivered_at = Set(Some(at));
        row.metadata = Set(match &i.from_name {
            Some(name) => json!({ "from_name": name }),
            None => json!({}),
        });
        let m = row.insert(txn).await?;
        metrics::counter!("inbound_messages_total", "channel_type" => i.channel_type.as_str()).increment(1);
        bus.emit(
            "message.inbound",
            "message",
            m.id,
            Some(scope.account_id()),
            json!({ "channel_id": i.channel_id, "contact_id": contact_id, "created_contact": contact.as_ref().is_some_and(|c| c.created) }),
        );
        if let Some(c) = contact {
            self.keyword(txn, bus, scope, &i, c.contact.id).await?;
        }
        Ok(Some(m.id))
    }

    /// Acts on an opt-out or opt-in keyword: the contact's opt-outs change and, when they did, the
    /// confirmation is queued.
    async fn keyword(
        &self,
        txn: &DatabaseTransaction,
        bus: &mut EventBus,
        scope: AccountScope,
        i: &Inbound,
        contact_id: Uuid,
    ) -> AppResult<()> {
        // A keyword is a word: longer messages never read the account's lists.
        if i.text.trim().chars().count() > MAX_KEYWORD_CHARS {
            return Ok(());
        }
        let settings = self.accounts.get_account_in(txn, scope).await?.settings;
        let keywords = Keywords::from_settings(&settings);
        let Some(opted_out) = keywords.classify(&i.text) else { return Ok(()) };
        let changed =
            self.directory.set_opted_out(txn, bus, scope, contact_id, i.channel_type.as_str(), opted_out).await?;
        let direction = if opted_out { "opt_out" } else { "opt_in" };
        metrics::counter!("inbound_keywords_total", "keyword" => direction, "changed" => changed.to_string())
            .increment(1);
        let reply = keywords.reply(opted_out);
        if !changed || reply.is_empty() || i.channel_type == ChannelType::Email {
            return Ok(());
        }
        let mut row = store::new_message(
            scope,
            i.channel_id,
            i.channel_type,
            Direction::System,
            i.from.clone(),
            reply.to_string(),
            Utc::now(),
        );
        row.contact_id = Set(Some(contact_id));
        row.metadata = Set(json!({ "reason": direction }));
        let m: message::Model = row.insert(txn).await?;
        super::messages::emit_dispatch(bus, [&m]);
        self.dispatch_wake.notify_one();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_match_the_whole_message_in_any_case() {
        let k = Keywords::from_settings(&json!({}));
        assert_eq!(k.classify("stop"), Some(true));
        assert_eq!(k.classify("  Unsubscribe. "), Some(true));
        assert_eq!(k.classify("START!"), Some(false));
        assert_eq!(k.classify("please stop sending"), None);
        assert_eq!(k.classify(""), None);
    }

    #[test]
    fn an_account_sets_its_own_keywords_and_replies() {
        let k = Keywords::from_settings(&json!({
            "opt_out_keywords": ["ATEW", "end"],
            "opt_in_keywords": ["JEMIR"],
            "opt_out_reply": "",
        }));
        assert_eq!(k.classify("end"), Some(true));
        assert_eq!(k.classify("STOP"), None, "the account's list replaces the defaults");
        assert_eq!(k.classify("jemir"), Some(false));
        assert_eq!(k.reply(true), "");
        assert_eq!(k.reply(false), DEFAULT_OPT_IN_REPLY);
    }
}
