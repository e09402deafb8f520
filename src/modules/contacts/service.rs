//! Business rules of contacts, tags, groups and segments. Every write runs in one transaction with the
//! domain events it emits (outbox).

use chrono::Utc;
use sea_orm::sea_query::Condition;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, EntityTrait,
    IntoActiveModel, ModelTrait, QueryFilter, Set,
};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::entity::{contact, group, segment, tag};
use super::filter;
use super::normalise::{self, check_attributes, check_identities, check_opt_outs};
use super::store;
use crate::channel_type::is_channel_type;
use crate::http::ctx::AccountScope;
use crate::http::error::{AppError, AppResult, FieldError};
use crate::http::list::Filter;
use crate::modules::accounts::Accounts;
use crate::modules::events::{EventBus, EventMeta, Events};

/// Raw contact fields as a client (or a CSV row) gave them.
#[derive(Debug, Clone, Default)]
pub struct ContactInput {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub display_name: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub channel_identities: Option<Value>,
    pub preferred_channel: Option<String>,
    pub language: Option<String>,
    pub timezone: Option<String>,
    pub attributes: Option<Value>,
    pub opted_out_channels: Option<Vec<String>>,
}

/// A PATCH: absent keeps, `Some(None)` clears, `Some(Some(v))` sets.
#[derive(Debug, Clone, Default)]
pub struct ContactPatch {
    pub first_name: Option<Option<String>>,
    pub last_name: Option<Option<String>>,
    pub display_name: Option<Option<String>>,
    pub phone: Option<Option<String>>,
    pub email: Option<Option<String>>,
    pub channel_identities: Option<Option<Value>>,
    pub preferred_channel: Option<Option<String>>,
    pub language: Option<Option<String>>,
    pub timezone: Option<Option<String>>,
    pub attributes: Option<Option<Value>>,
    pub opted_out_channels: Option<Option<Vec<String>>>,
    pub tag_ids: Option<Option<Vec<Uuid>>>,
}

/// Contact fields after normalisation and validation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Normalised {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub display_name: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub channel_identities: Map<String, Value>,
    pub preferred_channel: Option<String>,
    pub language: Option<String>,
    pub timezone: Option<String>,
    pub attributes: Map<String, Value>,
    pub opted_out_channels: Vec<String>,
}

impl Normalised {
    pub fn identities(&self) -> Vec<(String, String)> {
        self.channel_identities.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect()
    }
}

fn text(value: Option<&String>, field: &str, max: usize, errors: &mut Vec<FieldError>) -> Option<String> {
    let v = value.map(|s| s.trim()).filter(|s| !s.is_empty())?;
    if v.chars().count() > max {
        errors.push(FieldError::new(field, format!("must be at most {max} characters")));
    }
    Some(v.to_string())
}

/// Normalises and validates every field, collecting all problems (422 lists each field).
pub fn normalise_input(
    input: &ContactInput,
    region: Option<phonenumber::country::Id>,
) -> Result<Normalised, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut n = Normalised {
        first_name: text(input.first_name.as_ref(), "first_name", 200, &mut errors),
        last_name: text(input.last_name.as_ref(), "last_name", 200, &mut errors),
        display_name: text(input.display_name.as_ref(), "display_name", 200, &mut errors),
        ..Default::default()
    };
    if let Some(p) = input.phone.as_deref().filter(|p| !p.trim().is_empty()) {
        match normalise::normalise_phone(p, region) {
            Ok(p) => n.phone = Some(p),
            Err(m) => errors.push(FieldError::new("phone", m)),
        }
    }
    if let Some(e) = input.email.as_deref().filter(|e| !e.trim().is_empty()) {
        match normalise::normalise_email(e) {
            Ok(e) => n.email = Some(e),
            Err(m) => errors.push(FieldError::new("email", m)),
        }
    }
    if let Some(ci) = &input.channel_identities {
        n.channel_identities = check_identities(ci, &mut errors);
    }
    if let Some(pc) = input.preferred_channel.as_deref().filter(|s| !s.is_empty()) {
        if is_channel_type(pc) {
            n.preferred_channel = Some(pc.to_string());
        } else {
            errors.push(FieldError::new(
                "preferred_channel",
                "must be a channel type (sms, smpp, telegram, whatsapp, messenger, email, sandbox)",
            ));
        }
    }
    if let Some(l) = input.language.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        if normalise::valid_language(l) && l.len() <= 35 {
            n.language = Some(l.to_string());
        } else {
            errors.push(FieldError::new("language", "must be a language tag such as am or en-US"));
        }
    }
    if let Some(tz) = input.timezone.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        if crate::modules::accounts::valid_timezone(tz) {
            n.timezone = Some(tz.to_string());
        } else {
            errors.push(FieldError::new("timezone", "must be an IANA time zone such as Africa/Addis_Ababa"));
        }
    }
    if let Some(a) = &input.attributes {
        n.attributes = check_attributes(a, "attributes", &mut errors);
    }
    if let Some(o) = &input.opted_out_channels {
        n.opted_out_channels = check_opt_outs(o, &mut errors);
    }
    if n.phone.is_none() && n.email.is_none() && n.channel_identities.is_empty() && errors.is_empty() {
        errors.push(FieldError::new("phone", "a contact needs a phone, an e-mail or a channel identity"));
    }
    if errors.is_empty() { Ok(n) } else { Err(errors) }
}

fn input_of(c: &contact::Model) -> ContactInput {
    ContactInput {
        first_name: c.first_name.clone(),
        last_name: c.last_name.clone(),
        display_name: c.display_name.clone(),
        phone: c.phone.clone(),
        email: c.email.clone(),
        channel_identities: Some(c.channel_identities.clone()),
        preferred_channel: c.preferred_channel.clone(),
        language: c.language.clone(),
        timezone: c.timezone.clone(),
        attributes: Some(c.attributes.clone()),
        opted_out_channels: Some(opt_outs(c)),
    }
}

pub fn opt_outs(c: &contact::Model) -> Vec<String> {
    c.opted_out_channels
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// Writes normalised fields onto an active model.
pub fn assign(active: &mut contact::ActiveModel, n: &Normalised) {
    active.first_name = Set(n.first_name.clone());
    active.last_name = Set(n.last_name.clone());
    active.display_name = Set(n.display_name.clone());
    active.phone = Set(n.phone.clone());
    active.email = Set(n.email.clone());
    active.channel_identities = Set(Value::Object(n.channel_identities.clone()));
    active.preferred_channel = Set(n.preferred_channel.clone());
    active.language = Set(n.language.clone());
    active.timezone = Set(n.timezone.clone());
    active.attributes = Set(Value::Object(n.attributes.clone()));
    active.opted_out_channels = Set(json!(n.opted_out_channels));
}

pub fn new_contact(scope: AccountScope, n: &Normalised) -> contact::ActiveModel {
    let now = Utc::now();
    let mut active = contact::ActiveModel {
        id: Set(Uuid::now_v7()),
        account_id: Set(scope.account_id()),
        last_inbound_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    };
    assign(&mut active, n);
    active
}

/// A contact with its tags.
#[derive(Debug, Clone)]
pub struct ContactView {
    pub contact: contact::Model,
    pub tags: Vec<tag::Model>,
}

fn duplicate(field: &str, id: Uuid) -> AppError {
    AppError::Conflict {
        message: format!("a contact with this {field} already exists"),
        details: json!({ "field": field, "existing_id": id }),
    }
}

fn contact_event(c: &contact::Model) -> Value {
    json!({
        "phone": c.phone, "email": c.email, "channel_identities": c.channel_identities,
        "opted_out_channels": c.opted_out_channels,
    })
}

/// Which contacts a bulk change applies to: `contact_ids` or a `filter`, exactly one.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub contact_ids: Option<&'a [Uuid]>,
    pub filter: Option<&'a Value>,
}

/// The contacts facade used by the API, the import and the CLI.
#[derive(Clone)]
pub struct Contacts {
    pub(crate) db: DatabaseConnection,
    accounts: Accounts,
    events: Events,
}

impl Contacts {
    pub fn new(db: DatabaseConnection, accounts: Accounts, events: Events) -> Self {
        Contacts { db, accounts, events }
    }

    pub fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    pub(crate) async fn commit(&self, txn: DatabaseTransaction, mut bus: EventBus) -> AppResult<()> {
        bus.flush(&txn).await?;
        txn.commit().await?;
        self.events.committed();
        Ok(())
    }

    pub async fn region(&self, scope: AccountScope) -> AppResult<Option<phonenumber::country::Id>> {
        Ok(normalise::default_region(self.accounts.default_country_code(scope).await?.as_deref()))
    }

    /// Compiles contact filters (400 on a bad one).
    pub fn compile(&self, filters: &[Filter]) -> AppResult<Condition> {
        filter::compile(filters, self.backend())
    }

    // ---------------------------------------------------------------- contacts

    pub async fn create_contact(
        &self,
        scope: AccountScope,
        input: ContactInput,
        tag_ids: &[Uuid],
        meta: &EventMeta,
    ) -> AppResult<ContactView> {
        let region = self.region(scope).await?;
        let n = normalise_input(&input, region).map_err(AppError::Validation)?;
        let tags = self.check_tags(scope, tag_ids).await?;
        let txn = crate::db::begin_write(&self.db).await?;
        self.check_unique(&txn, scope, &n, None).await?;
        let c = new_contact(scope, &n).insert(&txn).await.map_err(|e| unique_race(e, &n))?;
        store::set_identities(&txn, scope, c.id, &n.identities()).await?;
        set_contact_tags(&txn, c.id, &tags).await?;
        let mut bus = EventBus::new(meta.clone());
        bus.emit("contact.created", "contact", c.id, Some(scope.account_id()), contact_event(&c));
        self.commit(txn, bus).await?;
        self.view(scope, c).await
    }

    async fn check_tags(&self, scope: AccountScope, tag_ids: &[Uuid]) -> AppResult<Vec<Uuid>> {
        let own = store::own_tag_ids(&self.db, scope, tag_ids).await?;
        let missing: Vec<FieldError> = tag_ids
            .iter()
            .enumerate()
            .filter(|(_, id)| !own.contains(id))
            .map(|(i, id)| FieldError::new(format!("tag_ids[{i}]"), format!("no tag {id} in this account")))
            .collect();
        if !missing.is_empty() {
            return Err(AppError::Validation(missing));
        }
        let mut own = own;
        own.sort();
        own.dedup();
        Ok(own)
    }

    async fn check_unique<C: ConnectionTrait>(
        &self,
        db: &C,
        scope: AccountScope,
        n: &Normalised,
        except: Option<Uuid>,
    ) -> AppResult<()> {
        if let Some((field, id)) =
            store::find_duplicate(db, scope, n.phone.as_deref(), n.email.as_deref(), except).await?
        {
            return Err(duplicate(field, id));
        }
        if let Some((kind, id)) = store::find_identity_owner(db, scope, &n.identities(), except).await? {
            return Err(duplicate(&format!("channel_identities.{kind}"), id));
        }
        Ok(())
    }

    pub async fn view(&self, scope: AccountScope, c: contact::Model) -> AppResult<ContactView> {
        let mut tags = store::tags_of(&self.db, scope, &[c.id]).await?;
        Ok(ContactView { tags: tags.remove(&c.id).unwrap_or_default(), contact: c })
    }

    pub async fn views(&self, scope: AccountScope, contacts: Vec<contact::Model>) -> AppResult<Vec<ContactView>> {
        let ids: Vec<Uuid> = contacts.iter().map(|c| c.id).collect();
        let mut tags = store::tags_of(&self.db, scope, &ids).await?;
        Ok(contacts
            .into_iter()
            .map(|c| ContactView { tags: tags.remove(&c.id).unwrap_or_default(), contact: c })
            .collect())
    }

    pub async fn get_contact(&self, scope: AccountScope, id: Uuid) -> AppResult<contact::Model> {
        store::find_contact(&self.db, scope, id).await?.ok_or(AppError::NotFound("contact"))
    }

    pub async fn update_contact(
        &self,
        scope: AccountScope,
        id: Uuid,
        patch: ContactPatch,
        meta: &EventMeta,
    ) -> AppResult<ContactView> {
        let existing = self.get_contact(scope, id).await?;
        let mut input = input_of(&existing);
        macro_rules! overlay {
            ($($f:ident),*) => { $( if let Some(v) = patch.$f { input.$f = v; } )* };
        }
        overlay!(
            first_name,
            last_name,
            display_name,
            phone,
            email,
            channel_identities,
            preferred_channel,
            language,
            timezone,
            attributes,
            opted_out_channels
        );
        let region = self.region(scope).await?;
        let n = normalise_input(&input, region).map_err(AppError::Validation)?;
        let tags = match &patch.tag_ids {
            Some(ids) => Some(self.check_tags(scope, ids.as_deref().unwrap_or_default()).await?),
            None => None,
        };
        let before = opt_outs(&existing);
        let mut active = existing.into_active_model();
        assign(&mut active, &n);
        active.updated_at = Set(Utc::now());
        let txn = crate::db::begin_write(&self.db).await?;
        self.check_unique(&txn, scope, &n, Some(id)).await?;
        let c = active.update(&txn).await.map_err(|e| unique_race(e, &n))?;
        store::set_identities(&txn, scope, c.id, &n.identities()).await?;
        if let Some(tags) = tags {
            set_contact_tags(&txn, c.id, &tags).await?;
        }
        let mut bus = EventBus::new(meta.clone());
        bus.emit("contact.updated", "contact", c.id, Some(scope.account_id()), contact_event(&c));
        let newly: Vec<&String> = n.opted_out_channels.iter().filter(|ch| !before.contains(ch)).collect();
        if !newly.is_empty() {
            bus.emit("contact.opted_out", "contact", c.id, Some(scope.account_id()), json!({ "channels": newly }));
        }
        self.commit(txn, bus).await?;
        self.view(scope, c).await
    }

    pub async fn delete_contact(&self, scope: AccountScope, id: Uuid, meta: &EventMeta) -> AppResult<()> {
        let c = self.get_contact(scope, id).await?;
        let txn = crate::db::begin_write(&self.db).await?;
        let groups = store::leave_all_groups(&txn, scope, id).await?;
        c.delete(&txn).await?;
        let mut bus = EventBus::new(meta.clone());
        bus.emit("contact.deleted", "contact", id, Some(scope.account_id()), json!({ "groups": groups }));
        self.commit(txn, bus).await
    }

    /// Adds tags to one contact (already present tags are kept).
    pub async fn add_tags(
        &self,
        scope: AccountScope,
        id: Uuid,
        tag_ids: &[Uuid],
        meta: &EventMeta,
    ) -> AppResult<ContactView> {
        let c = self.get_contact(scope, id).await?;
        let tags = self.check_tags(scope, tag_ids).await?;
        let txn = crate::db::begin_write(&self.db).await?;
        for t in &tags {
            store::tag_matching(&txn, scope, *t, Condition::all().add(contact::Column::Id.eq(id))).await?;
        }
        let mut bus = EventBus::new(meta.clone());
        bus.emit("contact.tagged", "contact", id, Some(scope.account_id()), json!({ "tag_ids": tags }));
        self.commit(txn, bus).await?;
        self.view(scope, c).await
    }

    pub async fn remove_tag(&self, scope: AccountScope, id: Uuid, tag_id: Uuid, meta: &EventMeta) -> AppResult<()> {
        self.get_contact(scope, id).await?;
        self.get_tag(scope, tag_id).await?;
        let txn = crate::db::begin_write(&self.db).await?;
        let n = store::untag_matching(&txn, scope, tag_id, Condition::all().add(contact::Column::Id.eq(id))).await?;
        if n == 0 {
            return Err(AppError::NotFound("tag on this contact"));
        }
        let mut bus = EventBus::new(meta.clone());
        bus.emit("contact.untagged", "contact", id, Some(scope.account_id()), json!({ "tag_ids": [tag_id] }));
        self.commit(txn, bus).await
    }

    // ---------------------------------------------------------------- tags

    pub async fn create_tag(&self, scope: AccountScope, name: &str, color: Option<&str>) -> AppResult<tag::Model> {
        let now = Utc::now();
        tag::ActiveModel {
            id: Set(Uuid::now_v7()),
            account_id: Set(scope.account_id()),
            name: Set(name.trim().to_string()),
            color: Set(color.unwrap_or(DEFAULT_TAG_COLOR).to_lowercase()),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&self.db)
        .await
        .map_err(|e| name_conflict(e, "tag"))
    }

    pub async fn get_tag(&self, scope: AccountScope, id: Uuid) -> AppResult<tag::Model> {
        store::find_tag(&self.db, scope, id).await?.ok_or(AppError::NotFound("tag"))
    }

    pub async fn update_tag(
        &self,
        scope: AccountScope,
        id: Uuid,
        name: Option<String>,
        color: Option<String>,
    ) -> AppResult<tag::Model> {
        let mut active = self.get_tag(scope, id).await?.into_active_model();
        if let Some(n) = name {
            active.name = Set(n.trim().to_string());
        }
        if let Some(c) = color {
            active.color = Set(c.to_lowercase());
        }
        active.updated_at = Set(Utc::now());
        active.update(&self.db).await.map_err(|e| name_conflict(e, "tag"))
    }

    pub async fn delete_tag(&self, scope: AccountScope, id: Uuid) -> AppResult<()> {
        let t = self.get_tag(scope, id).await?;
        t.delete(&self.db).await?;
        Ok(())
    }

    /// Tags (`add`) or untags every contact matching `cond` (ids or a filter); returns how many changed.
    /// The tag must be this account's (404), then the target is checked (422).
    pub async fn tag_contacts(
        &self,
        scope: AccountScope,
        tag_id: Uuid,
        target: Target<'_>,
        add: bool,
        meta: &EventMeta,
    ) -> AppResult<u64> {
        self.get_tag(scope, tag_id).await?;
        let cond = self.target(scope, target).await?;
        let txn = crate::db::begin_write(&self.db).await?;
        let n = if add {
            store::tag_matching(&txn, scope, tag_id, cond).await?
        } else {
            store::untag_matching(&txn, scope, tag_id, cond).await?
        };
        let mut bus = EventBus::new(meta.clone());
        let kind = if add { "tag.contacts_added" } else { "tag.contacts_removed" };
        bus.emit(kind, "tag", tag_id, Some(scope.account_id()), json!({ "count": n }));
        self.commit(txn, bus).await?;
        Ok(n)
    }

    // ---------------------------------------------------------------- groups

    pub async fn create_group(
        &self,
        scope: AccountScope,
        name: &str,
        description: Option<String>,
        meta: &EventMeta,
    ) -> AppResult<group::Model> {
        let now = Utc::now();
        let txn = crate::db::begin_write(&self.db).await?;
        let g = group::ActiveModel {
            id: Set(Uuid::now_v7()),
            account_id: Set(scope.account_id()),
            name: Set(name.trim().to_string()),
            description: Set(description),
            contact_count: Set(0),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&txn)
        .await
        .map_err(|e| name_conflict(e, "group"))?;
        let mut bus = EventBus::new(meta.clone());
        bus.emit("group.created", "group", g.id, Some(scope.account_id()), json!({ "name": g.name }));
        self.commit(txn, bus).await?;
        Ok(g)
    }

    pub async fn get_group(&self, scope: AccountScope, id: Uuid) -> AppResult<group::Model> {
        store::find_group(&self.db, scope, id).await?.ok_or(AppError::NotFound("group"))
    }

    pub async fn update_group(
        &self,
        scope: AccountScope,
        id: Uuid,
        name: Option<String>,
        description: Option<Option<String>>,
        meta: &EventMeta,
    ) -> AppResult<group::Model> {
        let mut active = self.get_group(scope, id).await?.into_active_model();
        if let Some(n) = name {
            active.name = Set(n.trim().to_string());
        }
        if let Some(d) = description {
            active.description = Set(d);
        }
        active.updated_at = Set(Utc::now());
        let txn = crate::db::begin_write(&self.db).await?;
        let g = active.update(&txn).await.map_err(|e| name_conflict(e, "group"))?;
        let mut bus = EventBus::new(meta.clone());
        bus.emit("group.updated", "group", g.id, Some(scope.account_id()), json!({ "name": g.name }));
        self.commit(txn, bus).await?;
        Ok(g)
    }

    pub async fn delete_group(&self, scope: AccountScope, id: Uuid, meta: &EventMeta) -> AppResult<()> {
        let g = self.get_group(scope, id).await?;
        let txn = crate::db::begin_write(&self.db).await?;
        let mut bus = EventBus::new(meta.clone());
        bus.emit("group.deleted", "group", g.id, Some(scope.account_id()), json!({ "name": g.name }));
        g.delete(&txn).await?;
        self.commit(txn, bus).await
    }

    /// Adds (or removes) the contacts matching `cond` to (from) a group; returns the count changed and
    /// the group after the change.
    /// The group must be this account's (404), then the target is checked (422).
    pub async fn change_members(
        &self,
        scope: AccountScope,
        group_id: Uuid,
        target: Target<'_>,
        add: bool,
        meta: &EventMeta,
    ) -> AppResult<(u64, group::Model)> {
        self.get_group(scope, group_id).await?;
        let cond = self.target(scope, target).await?;
        let txn = crate::db::begin_write(&self.db).await?;
        let n = if add {
            store::add_members_matching(&txn, scope, group_id, cond).await?
        } else {
            store::remove_members_matching(&txn, scope, group_id, cond).await?
        };
        let mut bus = EventBus::new(meta.clone());
        if n > 0 {
            let kind = if add { "group.members_added" } else { "group.members_removed" };
            bus.emit(kind, "group", group_id, Some(scope.account_id()), json!({ "count": n }));
        }
        self.commit(txn, bus).await?;
        Ok((n, self.get_group(scope, group_id).await?))
    }

    /// The condition for a body that names `contact_ids` (all must be this account's: 422 otherwise)
    /// or a `filter`.
    async fn target(&self, scope: AccountScope, target: Target<'_>) -> AppResult<Condition> {
        match (target.contact_ids, target.filter) {
            (Some(ids), None) => {
                if ids.is_empty() {
                    return Err(AppError::field("contact_ids", "must not be empty"));
                }
                if ids.len() > 10_000 {
                    return Err(AppError::field(
                        "contact_ids",
                        "at most 10,000 ids per request; use a filter for more",
                    ));
                }
                let own = store::own_contact_ids(&self.db, scope, ids).await?;
                let missing: Vec<FieldError> = ids
                    .iter()
                    .enumerate()
                    .filter(|(_, id)| !own.contains(id))
                    .take(20)
                    .map(|(i, id)| {
                        FieldError::new(format!("contact_ids[{i}]"), format!("no contact {id} in this account"))
                    })
                    .collect();
                if !missing.is_empty() {
                    return Err(AppError::Validation(missing));
                }
                Ok(Condition::all().add(contact::Column::Id.is_in(ids.to_vec())))
            }
            (None, Some(f)) => {
                let filters = filter::parse_body_filter(f, "filter")?;
                self.compile(&filters).map_err(filter::as_422("filter"))
            }
            _ => Err(AppError::field("contact_ids", "give exactly one of contact_ids or filter")),
        }
    }

    // ---------------------------------------------------------------- segments

    /// Parses and compiles a segment filter: an invalid one is a 422 when saved, not when used.
    pub fn check_segment_filter(&self, value: &Value) -> AppResult<Vec<String>> {
        let filters = filter::parse_body_filter(value, "filter")?;
        self.compile(&filters).map_err(filter::as_422("filter"))?;
        Ok(match value {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
            _ => vec![],
        })
    }

    pub async fn create_segment(
        &self,
        scope: AccountScope,
        name: &str,
        description: Option<String>,
        filter: &Value,
    ) -> AppResult<segment::Model> {
        let filters = self.check_segment_filter(filter)?;
        let now = Utc::now();
        segment::ActiveModel {
            id: Set(Uuid::now_v7()),
            account_id: Set(scope.account_id()),
            name: Set(name.trim().to_string()),
            description: Set(description),
            filter: Set(json!(filters)),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&self.db)
        .await
        .map_err(|e| name_conflict(e, "segment"))
    }

    pub async fn get_segment(&self, scope: AccountScope, id: Uuid) -> AppResult<segment::Model> {
        store::find_segment(&self.db, scope, id).await?.ok_or(AppError::NotFound("segment"))
    }

    pub async fn update_segment(
        &self,
        scope: AccountScope,
        id: Uuid,
        name: Option<String>,
        description: Option<Option<String>>,
        filter: Option<Value>,
    ) -> AppResult<segment::Model> {
        let mut active = self.get_segment(scope, id).await?.into_active_model();
        if let Some(n) = name {
            active.name = Set(n.trim().to_string());
        }
        if let Some(d) = description {
            active.description = Set(d);
        }
        if let Some(f) = filter {
            active.filter = Set(json!(self.check_segment_filter(&f)?));
        }
        active.updated_at = Set(Utc::now());
        active.update(&self.db).await.map_err(|e| name_conflict(e, "segment"))
    }

    pub async fn delete_segment(&self, scope: AccountScope, id: Uuid) -> AppResult<()> {
        self.get_segment(scope, id).await?.delete(&self.db).await?;
        Ok(())
    }

    /// How many contacts the segment has now.
    pub async fn count_segment(&self, scope: AccountScope, id: Uuid) -> AppResult<u64> {
        use sea_orm::PaginatorTrait;
        let s = self.get_segment(scope, id).await?;
        let cond = self.segment_condition(&s)?;
        Ok(store::contacts_in(scope).filter(cond).count(&self.db).await?)
    }

    /// The stored filter of a segment, compiled.
    pub fn segment_condition(&self, s: &segment::Model) -> AppResult<Condition> {
        let filters = filter::parse_body_filter(&s.filter, "filter")?;
        self.compile(&filters)
    }
}

pub const DEFAULT_TAG_COLOR: &str = "#6b7280";

async fn set_contact_tags<C: ConnectionTrait>(db: &C, contact_id: Uuid, tags: &[Uuid]) -> AppResult<()> {
    use super::entity::contact_tag;
    contact_tag::Entity::delete_many().filter(contact_tag::Column::ContactId.eq(contact_id)).exec(db).await?;
    if !tags.is_empty() {
        let rows = tags.iter().map(|t| contact_tag::ActiveModel { contact_id: Set(contact_id), tag_id: Set(*t) });
        contact_tag::Entity::insert_many(rows).exec_without_returning(db).await?;
    }
    Ok(())
}

/// A unique violation that slipped past the pre-check (a concurrent insert): still a 409.
fn unique_race(e: sea_orm::DbErr, n: &Normalised) -> AppError {
    if crate::db::is_unique_violation(&e) {
        let field = if n.phone.is_some() { "phone" } else { "email" };
        AppError::Conflict {
            message: format!("a contact with this {field} already exists"),
            details: json!({ "field": field }),
        }
    } else {
        e.into()
    }
}

fn name_conflict(e: sea_orm::DbErr, what: &str) -> AppError {
    if crate::db::is_unique_violation(&e) {
        AppError::Conflict {
            message: format!("a {what} with this name already exists"),
            details: json!({ "field": "name" }),
        }
    } else {
        e.into()
    }
}
