//! The [`Contacts`] service: contacts themselves (create, read, update, delete, tags of one contact, the
//! contact lists), and what its sibling files share. Tags, groups and segments live in `tags.rs`,
//! `groups.rs` and `segments.rs`; input normalisation in `input.rs`; imports in `import/`. Every write
//! runs in one transaction with the domain events it emits (outbox).

use std::path::{Path, PathBuf};

use chrono::Utc;
use sea_orm::sea_query::Condition;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, IntoActiveModel, ModelTrait,
    QueryFilter, Set,
};
use serde_json::{Value, json};
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use super::entity::{contact, tag};
use super::filter;
use super::input::*;
use super::store;
use crate::db::list::{Filter, ListQuery, Page};
use crate::error::{AppError, AppResult, FieldError};
use crate::modules::accounts::{AccountScope, Accounts};
use crate::modules::events::{EventBus, EventMeta, Events};

pub use super::input::{ContactInput, ContactPatch, Normalised, assign, new_contact, normalise_input, opt_outs};

/// A contact with its tags.
#[derive(Debug, Clone)]
pub struct ContactView {
    pub contact: contact::Model,
    pub tags: Vec<tag::Model>,
}

pub(super) fn duplicate(field: &str, id: Uuid) -> AppError {
    AppError::Conflict {
        message: format!("a contact with this {field} already exists"),
        details: json!({ "field": field, "existing_id": id }),
    }
}

pub(super) fn contact_event(c: &contact::Model) -> Value {
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
    pub(super) db: DatabaseConnection,
    pub(super) accounts: Accounts,
    pub(super) events: Events,
    pub(super) uploads: ImportUploads,
}

/// Where uploads are spooled, how large they may be, and the tracker that runs import jobs (so shutdown
/// waits for them).
#[derive(Clone)]
pub struct ImportUploads {
    pub dir: PathBuf,
    pub body_limit: usize,
    pub tasks: TaskTracker,
    /// This process as the owner of the imports it runs: `host:port` for a server (the same after a
    /// restart, so the new process can fail what the old one left running at once), `host:cli:pid`
    /// for a command.
    pub owner: String,
}

impl ImportUploads {
    /// Uploads live in `<data_dir>/imports`.
    pub fn new(data_dir: &Path, body_limit: usize, tasks: TaskTracker, owner: String) -> Self {
        ImportUploads { dir: data_dir.join("imports"), body_limit, tasks, owner }
    }

    /// Where a job's upload is kept while it runs.
    pub fn job_file(&self, job_id: Uuid) -> PathBuf {
        self.dir.join(format!("{job_id}.csv"))
    }
}
/// Which contacts a contact list shows: the account's, a group's members, or a segment's matches.
#[derive(Debug, Clone, Copy)]
pub enum ContactList {
    All,
    Group(Uuid),
    Segment(Uuid),
}

impl Contacts {
    pub fn new(db: DatabaseConnection, accounts: Accounts, events: Events, uploads: ImportUploads) -> Self {
        Contacts { db, accounts, events, uploads }
    }

    /// A page of contacts (with their tags) from the list, narrowed by the caller's filters and `q=`
    /// search (404 for another account's group or segment).
    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn list_contacts(
        &self,
        scope: AccountScope,
        list: ContactList,
        q: &ListQuery,
    ) -> AppResult<Page<ContactView>> {
        let select = match list {
            ContactList::All => store::contacts_in(scope),
            ContactList::Group(id) => store::group_contacts(scope, self.get_group(scope, id).await?.id),
            ContactList::Segment(id) => {
                let s = self.get_segment(scope, id).await?;
                store::contacts_in(scope).filter(self.segment_condition(&s)?)
            }
        };
        let search = q.extra.iter().find(|(k, _)| k == "q").and_then(|(_, text)| filter::search(text));
        // The whole list, unfiltered: its total is the account's, kept without counting.
        let whole = matches!(list, ContactList::All) && q.filters.is_empty() && search.is_none();
        let mut cond = Condition::all().add(self.compile(&q.filters)?);
        if let Some(search) = search {
            cond = cond.add(search);
        }
        let known_total = if whole { Some(store::contact_total(&self.db, scope).await?) } else { None };
        let page = store::list_contacts(&self.db, select.filter(cond), q, known_total).await?;
        let items = self.views(scope, page.items).await?;
        Ok(Page { items, total: page.total, skip: page.skip, limit: page.limit })
    }

    pub fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn region(&self, scope: AccountScope) -> AppResult<Option<phonenumber::country::Id>> {
        self.region_in(&self.db, scope).await
    }

    /// [`Self::region`] read through `conn` (a consumer's transaction).
    pub async fn region_in<C: sea_orm::ConnectionTrait>(
        &self,
        conn: &C,
        scope: AccountScope,
    ) -> AppResult<Option<phonenumber::country::Id>> {
        let account = self.accounts.get_account_in(conn, scope).await?;
        Ok(crate::domain::default_region(account.default_country_code.as_deref()))
    }

    /// Compiles contact filters (400 on a bad one).
    pub fn compile(&self, filters: &[Filter]) -> AppResult<Condition> {
        filter::compile(filters, self.backend())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
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
        store::bump_contact_total(&txn, scope, 1).await?;
        store::set_identities(&txn, scope, c.id, &n.identities()).await?;
        store::set_contact_tags(&txn, c.id, &tags).await?;
        let mut bus = EventBus::new(meta.clone());
        bus.emit("contact.created", "contact", c.id, Some(scope.account_id()), contact_event(&c));
        self.events.commit(txn, bus).await?;
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

    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
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
        let before_event = contact_event(&existing);
        let mut active = existing.into_active_model();
        assign(&mut active, &n);
        active.updated_at = Set(Utc::now());
        let txn = crate::db::begin_write(&self.db).await?;
        self.check_unique(&txn, scope, &n, Some(id)).await?;
        let c = active.update(&txn).await.map_err(|e| unique_race(e, &n))?;
        store::set_identities(&txn, scope, c.id, &n.identities()).await?;
        if let Some(tags) = tags {
            store::set_contact_tags(&txn, c.id, &tags).await?;
        }
        let mut bus = EventBus::new(meta.clone());
        bus.before(before_event);
        bus.emit("contact.updated", "contact", c.id, Some(scope.account_id()), contact_event(&c));
        let newly: Vec<&String> = n.opted_out_channels.iter().filter(|ch| !before.contains(ch)).collect();
        if !newly.is_empty() {
            bus.emit("contact.opted_out", "contact", c.id, Some(scope.account_id()), json!({ "channels": newly }));
        }
        self.events.commit(txn, bus).await?;
        self.view(scope, c).await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn delete_contact(&self, scope: AccountScope, id: Uuid, meta: &EventMeta) -> AppResult<()> {
        let c = self.get_contact(scope, id).await?;
        let txn = crate::db::begin_write(&self.db).await?;
        let groups = store::leave_all_groups(&txn, scope, id).await?;
        c.delete(&txn).await?;
        store::bump_contact_total(&txn, scope, -1).await?;
        let mut bus = EventBus::new(meta.clone());
        bus.emit("contact.deleted", "contact", id, Some(scope.account_id()), json!({ "groups": groups }));
        Ok(self.events.commit(txn, bus).await?)
    }

    /// Adds tags to one contact (already present tags are kept).
    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
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
        self.events.commit(txn, bus).await?;
        self.view(scope, c).await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
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
        Ok(self.events.commit(txn, bus).await?)
    }
}

pub const DEFAULT_TAG_COLOR: &str = "#6b7280";

/// A unique violation that slipped past the pre-check (a concurrent insert): still a 409.
pub(super) fn unique_race(e: sea_orm::DbErr, n: &Normalised) -> AppError {
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

pub(super) fn name_conflict(e: sea_orm::DbErr, what: &str) -> AppError {
    if crate::db::is_unique_violation(&e) {
        AppError::Conflict {
            message: format!("a {what} with this name already exists"),
            details: json!({ "field": "name" }),
        }
    } else {
        e.into()
    }
}
