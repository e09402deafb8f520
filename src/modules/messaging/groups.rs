//! Group messages (SPEC §6.3): one send to the union of contact groups, segments and contacts, minus
//! exclusions. Created as a `draft` (editable) or `queued` (sent now, or at `scheduled_at`); the
//! fan-out ([`super::fanout`]) writes one message per recipient; the counters follow every message's
//! status ([`super::group_store`]). `PATCH {status: "cancelled"}` from draft, queued or processing
//! cancels every message not yet handed to a provider. `preview` composes the whole audience without
//! writing anything.

use std::collections::BTreeMap;

use chrono::{DateTime, SubsecRound, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set, TryIntoModel};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use super::entity::group_message::{self, ChannelStrategy, GroupStatus};
use super::entity::group_message_skip;
use super::entity::scheduled_message;
use super::fanout::{Composed, FANOUT_BATCH, audience_of, ids};
use super::group_store::{self, Tallies};
use super::messages::MAX_BODY_CHARS;
use super::service::Messaging;
use super::templates::auto_template;
use crate::db::list::{ListQuery, Page};
use crate::error::{AppError, AppResult};
use crate::modules::accounts::{AccountScope, CurrentUser};
use crate::modules::events::{EventBus, EventMeta};

/// Most contacts named one by one (`contact_ids`, `exclude_contact_ids`).
pub const MAX_LISTED_CONTACTS: usize = 10_000;
/// Most contact groups or segments one send names.
pub const MAX_LISTS: usize = 100;
/// Rendered samples a preview shows.
const SAMPLES: usize = 3;

/// The body of `POST /v1/group-messages` and `POST /v1/group-messages/preview`; every field of a
/// `PATCH` too (all optional there).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewGroupMessage {
    pub name: Option<String>,
    /// The channel of every message (`channel_strategy: fixed`, the default).
    pub channel_id: Option<Uuid>,
    /// `fixed` (default) or `preferred`: each contact's preferred channel type among the account's
    /// enabled channels, else the highest-priority enabled channel that reaches them.
    pub channel_strategy: Option<String>,
    pub template_id: Option<Uuid>,
    /// A body instead of a template (it creates a template of category `auto-generated`).
    pub message_body: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub custom_values: Option<Map<String, Value>>,
    pub contact_group_ids: Option<Vec<Uuid>>,
    pub segment_ids: Option<Vec<Uuid>>,
    pub contact_ids: Option<Vec<Uuid>>,
    pub exclude_contact_ids: Option<Vec<Uuid>>,
    /// Not fanned out before this instant.
    pub scheduled_at: Option<DateTime<Utc>>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
    /// `draft` (default) or `queued` on create; `queued` (submit a draft) or `cancelled` on `PATCH`.
    pub status: Option<String>,
}

/// What `POST /v1/group-messages/preview` answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct GroupPreview {
    /// The messages the send would write.
    pub total_recipients: u64,
    /// Contacts it would skip, by reason (`opted_out`, `no_address`, `missing_variable:NAME`).
    #[schema(value_type = Object)]
    pub skipped: BTreeMap<String, u64>,
    /// The first three messages as they would be written.
    pub sample: Vec<PreviewMessage>,
    /// SMS segments of all its messages on SMS and SMPP channels (other channel types count none).
    pub segments_total: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PreviewMessage {
    pub contact_id: Option<Uuid>,
    pub channel_id: Uuid,
    pub delivery_address: String,
    pub message_body: String,
}

fn field(name: &str, message: impl Into<String>) -> AppError {
    AppError::field(name, message)
}

/// A group message as a request body (what a `PATCH` is merged onto).
fn as_input(g: &group_message::Model) -> NewGroupMessage {
    let list = |v: &Value| Some(ids(v));
    NewGroupMessage {
        name: Some(g.name.clone()),
        channel_id: g.channel_id,
        channel_strategy: Some(g.channel_strategy.as_str().into()),
        template_id: g.message_body.is_none().then_some(g.template_id),
        message_body: g.message_body.clone(),
        custom_values: g.custom_values.as_object().cloned(),
        contact_group_ids: list(&g.contact_group_ids),
        segment_ids: list(&g.segment_ids),
        contact_ids: list(&g.contact_ids),
        exclude_contact_ids: list(&g.exclude_contact_ids),
        scheduled_at: g.scheduled_at,
        metadata: g.metadata.as_object().cloned(),
        status: None,
    }
}

/// `patch` over `base`: the fields present replace; a template replaces a body and a body a template.
fn merge(base: NewGroupMessage, p: NewGroupMessage) -> NewGroupMessage {
    let (template_id, message_body) = match (p.template_id, p.message_body) {
        (None, None) => (base.template_id, base.message_body),
        given => given,
    };
    NewGroupMessage {
        name: p.name.or(base.name),
        channel_id: p.channel_id.or(base.channel_id),
        channel_strategy: p.channel_strategy.or(base.channel_strategy),
        template_id,
        message_body,
        custom_values: p.custom_values.or(base.custom_values),
        contact_group_ids: p.contact_group_ids.or(base.contact_group_ids),
        segment_ids: p.segment_ids.or(base.segment_ids),
        contact_ids: p.contact_ids.or(base.contact_ids),
        exclude_contact_ids: p.exclude_contact_ids.or(base.exclude_contact_ids),
        scheduled_at: p.scheduled_at.or(base.scheduled_at),
        metadata: p.metadata.or(base.metadata),
        status: p.status,
    }
}

/// A list of ids as stored: sorted, each once.
pub(super) fn json_ids(v: &Option<Vec<Uuid>>) -> Value {
    let mut list = v.clone().unwrap_or_default();
    list.sort_unstable();
    list.dedup();
    json!(list)
}

/// A validated send, as the row will hold it.
pub(super) struct Checked {
    name: String,
    strategy: ChannelStrategy,
}

/// A new group message's row.
fn group_row(
    scope: AccountScope,
    user: &CurrentUser,
    id: Uuid,
    checked: Checked,
    new: &NewGroupMessage,
    template_id: Uuid,
    status: GroupStatus,
) -> group_message::ActiveModel {
    let now = Utc::now().trunc_subsecs(6);
    group_message::ActiveModel {
        id: Set(id),
        account_id: Set(scope.account_id()),
        name: Set(checked.name),
        channel_id: Set(new.channel_id),
        channel_strategy: Set(checked.strategy),
        template_id: Set(template_id),
        message_body: Set(new.message_body.clone()),
        custom_values: Set(Value::Object(new.custom_values.clone().unwrap_or_default())),
        contact_group_ids: Set(json_ids(&new.contact_group_ids)),
        segment_ids: Set(json_ids(&new.segment_ids)),
        contact_ids: Set(json_ids(&new.contact_ids)),
        exclude_contact_ids: Set(json_ids(&new.exclude_contact_ids)),
        status: Set(status),
        total_recipients: Set(0),
        pending_count: Set(0),
        sent_count: Set(0),
        delivered_count: Set(0),
        failed_count: Set(0),
        cancelled_count: Set(0),
        skipped_count: Set(0),
        fanout_done: Set(false),
        fanout_after: Set(None),
        fanout_lease_until: Set(None),
        scheduled_at: Set(new.scheduled_at.map(|t| t.trunc_subsecs(6))),
        local_send_time: Set(None),
        started_at: Set(None),
        completed_at: Set(None),
        scheduled_message_id: Set(None),
        last_error: Set(None),
        metadata: Set(Value::Object(new.metadata.clone().unwrap_or_default())),
        created_by_user_id: Set(Some(user.id)),
        created_at: Set(now),
        updated_at: Set(now),
    }
}

/// The queued group message an occurrence (`at`) of a group schedule creates, on behalf of the
/// schedule's creator; `local` is the occurrence's wall time when each recipient gets it in their own
/// time zone.
pub(super) fn occurrence_group(
    scope: AccountScope,
    sender: &CurrentUser,
    s: &scheduled_message::Model,
    at: DateTime<Utc>,
    local: Option<chrono::NaiveDateTime>,
) -> AppResult<group_message::Model> {
    let template_id = s.template_id.ok_or_else(|| AppError::conflict("the group schedule has no template"))?;
    let list = |v: &Value| Some(ids(v));
    let input = NewGroupMessage {
        channel_id: Some(s.channel_id),
        message_body: s.message_body.clone(),
        custom_values: s.custom_values.as_object().cloned(),
        contact_group_ids: list(&s.contact_group_ids),
        segment_ids: list(&s.segment_ids),
        contact_ids: list(&s.contact_ids),
        exclude_contact_ids: list(&s.exclude_contact_ids),
        ..Default::default()
    };
    let checked = Checked { name: s.name.clone(), strategy: ChannelStrategy::Fixed };
    let mut row = group_row(scope, sender, Uuid::now_v7(), checked, &input, template_id, GroupStatus::Queued);
    row.scheduled_message_id = Set(Some(s.id));
    row.scheduled_at = Set(Some(at));
    row.local_send_time = Set(local);
    Ok(row.try_into_model()?)
}

impl Messaging {
    /// Validates a whole send (every field named; nothing written), as `new` will be stored.
    pub(super) async fn check_group(&self, scope: AccountScope, new: &NewGroupMessage) -> AppResult<Checked> {
        let name = new.name.as_deref().map(str::trim).unwrap_or_default();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(field("name", "give a name of 1 to 200 characters"));
        }
        let strategy = match new.channel_strategy.as_deref() {
            None => ChannelStrategy::Fixed,
            Some(s) => ChannelStrategy::parse(s).ok_or_else(|| field("channel_strategy", "give fixed or preferred"))?,
        };
        let mut fixed = None;
        match (strategy, new.channel_id) {
            (ChannelStrategy::Fixed, None) => {
                return Err(field("channel_id", "required (or channel_strategy preferred)"));
            }
            (ChannelStrategy::Fixed, Some(id)) => {
                let c = self.channel_for_send(scope, id).await?;
                if !c.is_enabled {
                    return Err(field("channel_id", "the channel is disabled"));
                }
                fixed = Some(c);
            }
            (ChannelStrategy::Preferred, Some(_)) => {
                return Err(field("channel_id", "leave channel_id out with channel_strategy preferred"));
            }
            (ChannelStrategy::Preferred, None) => {
                if self.channels.enabled_channels(scope).await?.is_empty() {
                    return Err(field("channel_strategy", "the account has no enabled channel"));
                }
            }
        }
        match (new.template_id, new.message_body.as_deref()) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(field("message_body", "give exactly one of template_id or message_body"));
            }
            (None, Some(body)) => {
                if body.trim().is_empty() || body.chars().count() > MAX_BODY_CHARS {
                    return Err(field("message_body", format!("give 1 to {MAX_BODY_CHARS} characters")));
                }
            }
            (Some(tid), None) => {
                let t = match self.get_template(scope, tid).await {
                    Ok(t) => t,
                    Err(AppError::NotFound(_)) => return Err(field("template_id", "no such template in this account")),
                    Err(e) => return Err(e),
                };
                if !t.is_active {
                    return Err(field("template_id", "the template is not active"));
                }
                let has_files = t.attachments.as_array().is_some_and(|a| !a.is_empty());
                if has_files
                    && let Some(c) = &fixed
                    && !self.channels.sends_attachments(c)
                {
                    return Err(field("template_id", "the template has files and the channel cannot send files"));
                }
            }
        }
        for (name, value) in [("custom_values", &new.custom_values), ("metadata", &new.metadata)] {
            if value.as_ref().is_some_and(|v| serde_json::to_vec(v).map_or(0, |b| b.len()) > 16 * 1024) {
                return Err(field(name, "must be at most 16 KiB of JSON"));
            }
        }
        let count = |v: &Option<Vec<Uuid>>| v.as_ref().map_or(0, Vec::len);
        for (name, n, max) in [
            ("contact_group_ids", count(&new.contact_group_ids), MAX_LISTS),
            ("segment_ids", count(&new.segment_ids), MAX_LISTS),
            ("contact_ids", count(&new.contact_ids), MAX_LISTED_CONTACTS),
            ("exclude_contact_ids", count(&new.exclude_contact_ids), MAX_LISTED_CONTACTS),
        ] {
            if n > max {
                return Err(field(name, format!("at most {max} ids")));
            }
        }
        if count(&new.contact_group_ids) + count(&new.segment_ids) + count(&new.contact_ids) == 0 {
            return Err(field("contact_ids", "name recipients: contact_group_ids, segment_ids or contact_ids"));
        }
        self.directory.check_audience(scope, &self.audience_in(new)).await?;
        Ok(Checked { name: name.to_string(), strategy })
    }

    fn audience_in(&self, new: &NewGroupMessage) -> crate::modules::contacts::Audience {
        crate::modules::contacts::Audience {
            group_ids: new.contact_group_ids.clone().unwrap_or_default(),
            segment_ids: new.segment_ids.clone().unwrap_or_default(),
            contact_ids: new.contact_ids.clone().unwrap_or_default(),
            exclude_contact_ids: new.exclude_contact_ids.clone().unwrap_or_default(),
            exclude_group_ids: Vec::new(),
        }
    }

    /// Creates a group message: a `draft`, or `queued` to send now (or at `scheduled_at`).
    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn create_group_message(
        &self,
        scope: AccountScope,
        user: &CurrentUser,
        new: NewGroupMessage,
        meta: &EventMeta,
    ) -> AppResult<group_message::Model> {
        let status = match new.status.as_deref() {
            None | Some("draft") => GroupStatus::Draft,
            Some("queued") => GroupStatus::Queued,
            Some(_) => return Err(field("status", "a group message starts as draft or queued")),
        };
        let checked = self.check_group(scope, &new).await?;
        let id = Uuid::now_v7();
        let txn = crate::db::begin_write(&self.db).await?;
        let template_id = match (new.template_id, &new.message_body) {
            (Some(t), _) => t,
            (None, Some(body)) => {
                let t = auto_template(scope, Some(user.id), id, &checked.name, body.clone(), "message_body")?;
                t.insert(&txn).await?.id
            }
            (None, None) => return Err(field("message_body", "give exactly one of template_id or message_body")),
        };
        let row = group_row(scope, user, id, checked, &new, template_id, status).insert(&txn).await?;
        let mut bus = EventBus::new(meta.clone());
        bus.emit("group_message.created", "group_message", id, Some(scope.account_id()), json!({ "status": status }));
        if status == GroupStatus::Queued {
            bus.emit("group_message.queued", "group_message", id, Some(scope.account_id()), json!({}));
        }
        self.events.commit(txn, bus).await?;
        if status == GroupStatus::Queued {
            self.fanout_wake.notify_one();
        }
        Ok(row)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn list_group_messages(
        &self,
        scope: AccountScope,
        q: &ListQuery,
    ) -> AppResult<Page<group_message::Model>> {
        group_store::list_groups(&self.db, scope, q).await
    }

    pub async fn get_group_message(&self, scope: AccountScope, id: Uuid) -> AppResult<group_message::Model> {
        group_store::find_group(&self.db, scope, id).await?.ok_or(AppError::NotFound("group message"))
    }

    /// The contacts a send skipped, with their reasons.
    pub async fn list_group_skips(
        &self,
        scope: AccountScope,
        id: Uuid,
        q: &ListQuery,
    ) -> AppResult<Page<group_message_skip::Model>> {
        let g = self.get_group_message(scope, id).await?;
        group_store::list_skips(&self.db, scope, g.id, q).await
    }

    /// `PATCH`: edits a draft (the fields present), submits it (`status: queued`) or cancels a send
    /// (`status: cancelled`, from draft, queued or processing).
    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn update_group_message(
        &self,
        scope: AccountScope,
        user: &CurrentUser,
        id: Uuid,
        patch: NewGroupMessage,
        meta: &EventMeta,
    ) -> AppResult<group_message::Model> {
        let g = self.get_group_message(scope, id).await?;
        let edits = NewGroupMessage { status: None, ..patch.clone() };
        // The fields the PATCH sets (for the audit log), and whether there are any.
        let mut changed = match serde_json::to_value(&edits) {
            Ok(Value::Object(o)) => o,
            _ => Map::new(),
        };
        changed.retain(|_, v| !v.is_null());
        let has_edits = !changed.is_empty();
        match patch.status.as_deref() {
            Some("cancelled") if !has_edits => return self.cancel_group_message(scope, g, meta).await,
            Some("cancelled") => return Err(field("status", "cancel without other changes")),
            None | Some("queued") => {}
            Some(_) => return Err(field("status", "give queued (submit a draft) or cancelled")),
        }
        if g.status != GroupStatus::Draft {
            return Err(AppError::Conflict {
                message: format!("only a draft can be edited or submitted; this group message is {}", g.status),
                details: json!({ "status": g.status }),
            });
        }
        let submit = patch.status.as_deref() == Some("queued");
        let body_given = patch.message_body.is_some();
        let merged = merge(as_input(&g), edits);
        let checked = self.check_group(scope, &merged).await?;
        use group_message::Column as G;
        let txn = crate::db::begin_write(&self.db).await?;
        let template_id = match (merged.template_id, &merged.message_body) {
            (Some(t), _) => t,
            (None, Some(body)) if body_given => {
                let t =
                    auto_template(scope, Some(user.id), Uuid::now_v7(), &checked.name, body.clone(), "message_body")?;
                t.insert(&txn).await?.id
            }
            _ => g.template_id,
        };
        let status = if submit { GroupStatus::Queued } else { GroupStatus::Draft };
        let res = group_message::Entity::update_many()
            .col_expr(G::Name, Expr::val(checked.name))
            .col_expr(G::ChannelId, Expr::val(merged.channel_id))
            .col_expr(G::ChannelStrategy, Expr::val(checked.strategy.as_str()))
            .col_expr(G::TemplateId, Expr::val(template_id))
            .col_expr(G::MessageBody, Expr::val(merged.message_body.clone()))
            .col_expr(G::CustomValues, Expr::val(Value::Object(merged.custom_values.clone().unwrap_or_default())))
            .col_expr(G::ContactGroupIds, Expr::val(json_ids(&merged.contact_group_ids)))
            .col_expr(G::SegmentIds, Expr::val(json_ids(&merged.segment_ids)))
            .col_expr(G::ContactIds, Expr::val(json_ids(&merged.contact_ids)))
            .col_expr(G::ExcludeContactIds, Expr::val(json_ids(&merged.exclude_contact_ids)))
            .col_expr(G::ScheduledAt, Expr::val(merged.scheduled_at.map(|t| t.trunc_subsecs(6))))
            .col_expr(G::Metadata, Expr::val(Value::Object(merged.metadata.clone().unwrap_or_default())))
            .col_expr(G::Status, Expr::val(status.as_str()))
            .col_expr(G::UpdatedAt, Expr::val(Utc::now()))
            .filter(G::Id.eq(g.id))
            .filter(G::AccountId.eq(scope.account_id()))
            .filter(G::Status.eq(GroupStatus::Draft))
            .exec(&txn)
            .await?;
        if res.rows_affected != 1 {
            return Err(AppError::conflict("the group message left draft in the meantime"));
        }
        let mut bus = EventBus::new(meta.clone());
        if has_edits {
            bus.before(serde_json::to_value(as_input(&g)).unwrap_or_default());
            bus.emit("group_message.updated", "group_message", g.id, Some(scope.account_id()), Value::Object(changed));
        }
        if submit {
            bus.emit("group_message.queued", "group_message", g.id, Some(scope.account_id()), json!({}));
        }
        let updated = group_store::find_group(&txn, scope, g.id).await?.ok_or(AppError::NotFound("group message"))?;
        self.events.commit(txn, bus).await?;
        if submit {
            self.fanout_wake.notify_one();
        }
        Ok(updated)
    }

    /// Cancels a send: it stops fanning out at its next batch, and every message not yet handed to a
    /// provider (queued, or failed awaiting a retry) is cancelled in the same transaction.
    async fn cancel_group_message(
        &self,
        scope: AccountScope,
        g: group_message::Model,
        meta: &EventMeta,
    ) -> AppResult<group_message::Model> {
        use group_message::Column as G;
        let txn = crate::db::begin_write(&self.db).await?;
        let now = Utc::now();
        // The group's row first: a fan-out batch or a dispatcher's record holding it finishes first.
        let res = group_message::Entity::update_many()
            .col_expr(G::Status, Expr::val(GroupStatus::Cancelled.as_str()))
            .col_expr(G::CompletedAt, Expr::val(now))
            .col_expr(G::FanoutLeaseUntil, Expr::val(Option::<DateTime<Utc>>::None))
            .col_expr(G::UpdatedAt, Expr::val(now))
            .filter(G::Id.eq(g.id))
            .filter(G::AccountId.eq(scope.account_id()))
            .filter(G::Status.is_in([GroupStatus::Draft, GroupStatus::Queued, GroupStatus::Processing]))
            .exec(&txn)
            .await?;
        if res.rows_affected != 1 {
            let now_status = group_store::find_group(&txn, scope, g.id).await?.map(|x| x.status).unwrap_or(g.status);
            return Err(AppError::Conflict {
                message: format!("a {now_status} group message cannot be cancelled"),
                details: json!({ "status": now_status }),
            });
        }
        let mut tallies = Tallies::default();
        let cancelled = group_store::cancel_unsent(&txn, g.id, &mut tallies).await?;
        let mut bus = EventBus::new(meta.clone());
        tallies.apply(&txn, &mut bus).await?;
        bus.emit(
            "group_message.cancelled",
            "group_message",
            g.id,
            Some(scope.account_id()),
            json!({ "messages_cancelled": cancelled }),
        );
        let updated = group_store::find_group(&txn, scope, g.id).await?.ok_or(AppError::NotFound("group message"))?;
        self.events.commit(txn, bus).await?;
        Ok(updated)
    }

    /// Deletes a draft or a finished send (its messages stay in the history).
    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn delete_group_message(&self, scope: AccountScope, id: Uuid, meta: &EventMeta) -> AppResult<()> {
        let g = self.get_group_message(scope, id).await?;
        if !(g.status == GroupStatus::Draft || g.status.is_final()) {
            return Err(AppError::Conflict {
                message: format!("a {} group message is still sending; cancel it first", g.status),
                details: json!({ "status": g.status }),
            });
        }
        let txn = crate::db::begin_write(&self.db).await?;
        group_message_skip::Entity::delete_many()
            .filter(group_message_skip::Column::GroupMessageId.eq(g.id))
            .filter(group_message_skip::Column::AccountId.eq(scope.account_id()))
            .exec(&txn)
            .await?;
        group_message::Entity::delete_many()
            .filter(group_message::Column::Id.eq(g.id))
            .filter(group_message::Column::AccountId.eq(scope.account_id()))
            .exec(&txn)
            .await?;
        let mut bus = EventBus::new(meta.clone());
        bus.before(serde_json::to_value(as_input(&g)).unwrap_or_default());
        bus.emit(
            "group_message.deleted",
            "group_message",
            g.id,
            Some(scope.account_id()),
            json!({ "status": g.status }),
        );
        self.events.commit(txn, bus).await?;
        Ok(())
    }

    /// What a send would do, composed for its whole audience; nothing is written.
    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn preview_group_message(
        &self,
        scope: AccountScope,
        user: &CurrentUser,
        new: NewGroupMessage,
    ) -> AppResult<GroupPreview> {
        let checked = self.check_group(scope, &new).await?;
        let now = Utc::now();
        // The send as it would be stored (a body stands in as an unsaved template).
        let id = Uuid::now_v7();
        let unsaved = match &new.message_body {
            Some(body) => {
                let t = auto_template(scope, Some(user.id), id, &checked.name, body.clone(), "message_body")?;
                Some(t.try_into_model()?)
            }
            None => None,
        };
        let template_id = unsaved.as_ref().map(|t| t.id).or(new.template_id).unwrap_or_default();
        let g = group_row(scope, user, id, checked, &new, template_id, GroupStatus::Draft).try_into_model()?;
        let composer = self.composer_with(scope, &g, unsaved).await?;
        let mut stream = self.directory.members(scope, &audience_of(&g), FANOUT_BATCH, None).await?;
        let mut out =
            GroupPreview { total_recipients: 0, skipped: BTreeMap::new(), sample: Vec::new(), segments_total: 0 };
        while let Some(contacts) = stream.next_batch().await? {
            for c in contacts {
                match composer.compose(c, now) {
                    Composed::Message(m) => {
                        out.total_recipients += 1;
                        if matches!(m.channel_type.as_str(), "sms" | "smpp") {
                            out.segments_total += m.metadata.get("segments").and_then(Value::as_u64).unwrap_or(0);
                        }
                        if out.sample.len() < SAMPLES {
                            out.sample.push(PreviewMessage {
                                contact_id: m.contact_id,
                                channel_id: m.channel_id,
                                delivery_address: m.delivery_address,
                                message_body: m.message_body,
                            });
                        }
                    }
                    Composed::Skipped { reason, .. } => *out.skipped.entry(reason).or_default() += 1,
                }
            }
        }
        Ok(out)
    }
}
