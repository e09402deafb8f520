//! Writing one batch of parsed rows: one transaction holding the batch's contacts, identities, tags and
//! group memberships, the job's new totals, and the batch's events. The steps, in order:
//! [`Known::load`] (which stored contacts the rows match), [`Changes::sort`] (new, updated, skipped or
//! in conflict), then the writes in [`Contacts::write_batch`].

use std::collections::HashMap;

use chrono::Utc;
use sea_orm::{ActiveModelTrait, ConnectionTrait, DatabaseTransaction, IntoActiveModel, Set};
use serde_json::json;
use uuid::Uuid;

use super::reader::{Batch, GoodRow, RowError};
use super::{ImportOptions, MAX_REPORTED_ERRORS, OnDuplicate, Progress, store};
use crate::error::AppResult;
use crate::modules::accounts::AccountScope;
use crate::modules::contacts::entity::contact;
use crate::modules::contacts::service::{Contacts, DEFAULT_TAG_COLOR, Normalised, assign, new_contact, opt_outs};
use crate::modules::events::{EventBus, EventMeta};

/// The job a batch belongs to.
pub(super) struct Job<'a> {
    pub scope: AccountScope,
    pub id: Uuid,
    pub options: &'a ImportOptions,
    pub meta: &'a EventMeta,
}

/// Stored contacts that the batch's rows match, by phone, e-mail and channel identity.
struct Known {
    by_phone: HashMap<String, Uuid>,
    by_email: HashMap<String, Uuid>,
    by_identity: HashMap<(String, String), Uuid>,
    contacts: HashMap<Uuid, contact::Model>,
}

impl Known {
    async fn load<C: ConnectionTrait>(db: &C, scope: AccountScope, rows: &[GoodRow]) -> AppResult<Known> {
        let phones = rows.iter().filter_map(|g| g.contact.phone.clone()).collect();
        let emails = rows.iter().filter_map(|g| g.contact.email.clone()).collect();
        let mut known = Known {
            by_phone: HashMap::new(),
            by_email: HashMap::new(),
            by_identity: HashMap::new(),
            contacts: HashMap::new(),
        };
        for c in store::contacts_by_phone_or_email(db, scope, phones, emails).await? {
            if let Some(p) = &c.phone {
                known.by_phone.insert(p.clone(), c.id);
            }
            if let Some(e) = &c.email {
                known.by_email.insert(e.clone(), c.id);
            }
            known.contacts.insert(c.id, c);
        }
        let pairs: Vec<(String, String)> = rows.iter().flat_map(|g| g.contact.identities()).collect();
        for row in store::identities_among(db, scope, &pairs).await? {
            known.by_identity.insert((row.channel_type, row.identity), row.contact_id);
        }
        Ok(known)
    }

    /// The stored contacts a row matches (none, one, or — a conflict — several).
    fn owners(&self, row: &Normalised) -> Vec<Uuid> {
        let mut owners = Vec::new();
        owners.extend(row.phone.as_ref().and_then(|p| self.by_phone.get(p)));
        owners.extend(row.email.as_ref().and_then(|e| self.by_email.get(e)));
        for key in row.identities() {
            owners.extend(self.by_identity.get(&key));
        }
        owners.dedup();
        owners
    }

    /// After a merge, the phone or e-mail may belong to another stored contact.
    fn conflict_after_merge(&self, n: &Normalised, id: Uuid) -> Option<(&'static str, Uuid)> {
        if let Some(other) = n.phone.as_ref().and_then(|p| self.by_phone.get(p)).filter(|o| **o != id) {
            return Some(("phone", *other));
        }
        if let Some(other) = n.email.as_ref().and_then(|e| self.by_email.get(e)).filter(|o| **o != id) {
            return Some(("email", *other));
        }
        None
    }
}

/// What the batch changes: contacts to insert, identities to index, tags to apply, and the ids touched.
#[derive(Default)]
struct Changes {
    inserts: Vec<contact::ActiveModel>,
    identities: Vec<(Uuid, String, String)>,
    tag_names: Vec<(Uuid, Vec<String>)>,
    created: Vec<Uuid>,
    updated: Vec<Uuid>,
    skipped: u64,
    errors: Vec<RowError>,
}

impl Changes {
    /// Sorts each row: new (inserted later), matching one stored contact (skipped, or merged and updated
    /// now, per `on_duplicate`), or matching several (reported).
    async fn sort(
        txn: &DatabaseTransaction,
        job: &Job<'_>,
        rows: Vec<GoodRow>,
        known: &Known,
        errors: Vec<RowError>,
    ) -> AppResult<Changes> {
        let mut ch = Changes { errors, ..Default::default() };
        for g in rows {
            let owners = known.owners(&g.contact);
            if owners.len() > 1 {
                ch.errors.push(RowError {
                    row: g.row,
                    field: "row".into(),
                    message: format!(
                        "matches {} different existing contacts (by phone, e-mail or identity)",
                        owners.len()
                    ),
                });
                continue;
            }
            match owners.first() {
                None => {
                    let model = new_contact(job.scope, &g.contact);
                    let id = *model.id.as_ref();
                    ch.inserts.push(model);
                    ch.touch(id, g, true);
                }
                Some(_) if job.options.on_duplicate == OnDuplicate::Skip => ch.skipped += 1,
                Some(id) => {
                    // Usually loaded by the phone/e-mail lookup; identity matches are read here.
                    let current = match known.contacts.get(id) {
                        Some(c) => c.clone(),
                        None => match crate::modules::contacts::store::find_contact(txn, job.scope, *id).await? {
                            Some(c) => c,
                            None => continue,
                        },
                    };
                    let merged = merge(&current, &g.contact);
                    if let Some((field, other)) = known.conflict_after_merge(&merged, *id) {
                        ch.errors.push(RowError {
                            row: g.row,
                            field: field.into(),
                            message: format!("belongs to another contact ({other})"),
                        });
                        continue;
                    }
                    let mut active = current.into_active_model();
                    assign(&mut active, &merged);
                    active.updated_at = Set(Utc::now());
                    active.update(txn).await?;
                    ch.touch(*id, g, false);
                }
            }
        }
        Ok(ch)
    }

    fn touch(&mut self, id: Uuid, row: GoodRow, created: bool) {
        for (k, v) in row.contact.identities() {
            self.identities.push((id, k, v));
        }
        self.tag_names.push((id, row.tag_names));
        if created { self.created.push(id) } else { self.updated.push(id) }
    }

    fn touched(&self) -> Vec<Uuid> {
        self.tag_names.iter().map(|(id, _)| *id).collect()
    }
}

/// Fields of the row replace the stored ones; attributes and identities are merged (row wins); opt-outs
/// are united.
fn merge(current: &contact::Model, row: &Normalised) -> Normalised {
    let mut attributes = current.attributes.as_object().cloned().unwrap_or_default();
    attributes.extend(row.attributes.clone());
    let mut identities = current.channel_identities.as_object().cloned().unwrap_or_default();
    identities.extend(row.channel_identities.clone());
    let mut opted_out = opt_outs(current);
    for o in &row.opted_out_channels {
        if !opted_out.contains(o) {
            opted_out.push(o.clone());
        }
    }
    opted_out.sort();
    Normalised {
        first_name: row.first_name.clone().or(current.first_name.clone()),
        last_name: row.last_name.clone().or(current.last_name.clone()),
        display_name: row.display_name.clone().or(current.display_name.clone()),
        phone: row.phone.clone().or(current.phone.clone()),
        email: row.email.clone().or(current.email.clone()),
        channel_identities: identities,
        preferred_channel: row.preferred_channel.clone().or(current.preferred_channel.clone()),
        language: row.language.clone().or(current.language.clone()),
        timezone: row.timezone.clone().or(current.timezone.clone()),
        attributes,
        opted_out_channels: opted_out,
    }
}

/// Tag names → ids for one import, creating missing tags.
#[derive(Default)]
pub(super) struct TagCache(HashMap<String, Uuid>);

impl TagCache {
    async fn id<C: ConnectionTrait>(&mut self, db: &C, scope: AccountScope, name: &str) -> AppResult<Uuid> {
        if let Some(id) = self.0.get(name) {
            return Ok(*id);
        }
        let id = store::tag_id_by_name(db, scope, name, DEFAULT_TAG_COLOR).await?;
        self.0.insert(name.to_string(), id);
        Ok(id)
    }
}

impl Contacts {
    /// Writes one batch in one transaction with the job's new totals; `progress` advances only when it
    /// committed.
    pub(super) async fn write_batch(
        &self,
        job: &Job<'_>,
        batch: Batch,
        progress: &mut Progress,
        tags: &mut TagCache,
    ) -> AppResult<()> {
        let txn = crate::db::begin_write(&self.db).await?;
        if self.backend() == sea_orm::DbBackend::Postgres {
            // A batch commits without waiting for its WAL flush. A database crash can lose the last few
            // batches, but never half of one: the job's counts commit with its rows, so the report
            // still matches what is stored, and the job is marked failed and can be re-run with
            // on_duplicate=skip. Every other write keeps the server's default.
            txn.execute_unprepared("SET LOCAL synchronous_commit = off").await?;
        }
        let known = Known::load(&txn, job.scope, &batch.good).await?;
        let changes = Changes::sort(&txn, job, batch.good, &known, batch.bad).await?;
        let touched = changes.touched();
        let next = progress.advanced(batch.rows, &changes);
        store::insert_contacts(&txn, job.scope, changes.inserts).await?;
        store::insert_identities(&txn, job.scope, changes.identities).await?;
        // Tags: the job's tag ids for every row, plus the row's tag names (created when missing).
        let mut pairs = Vec::new();
        for (id, names) in &changes.tag_names {
            pairs.extend(job.options.tag_ids.iter().map(|t| (*id, *t)));
            for name in names {
                pairs.push((*id, tags.id(&txn, job.scope, name).await?));
            }
        }
        store::insert_contact_tags(&txn, pairs).await?;
        let mut bus = EventBus::new(job.meta.clone());
        if let Some(group_id) = job.options.group_id {
            let added = store::add_group_members(&txn, job.scope, group_id, &touched).await?;
            if added > 0 {
                bus.emit(
                    "group.members_added",
                    "group",
                    group_id,
                    Some(job.scope.account_id()),
                    json!({ "count": added, "import_id": job.id }),
                );
            }
        }
        store::record_progress(&txn, job.id, &next).await?;
        if !changes.created.is_empty() || !changes.updated.is_empty() {
            // One event per batch, not per row: consumers that need each contact read the ids.
            bus.emit(
                "contacts.imported",
                "contact_import",
                job.id,
                Some(job.scope.account_id()),
                json!({ "created": changes.created, "updated": changes.updated }),
            );
        }
        self.events.commit(txn, bus).await?;
        *progress = next;
        Ok(())
    }
}

impl Progress {
    /// The totals after a batch of `rows` file rows with these changes (errors kept sorted by row, the
    /// first [`MAX_REPORTED_ERRORS`] reported).
    fn advanced(&self, rows: u64, changes: &Changes) -> Progress {
        let mut next = self.clone();
        next.total_rows += rows;
        next.created += changes.created.len() as u64;
        next.updated += changes.updated.len() as u64;
        next.skipped += changes.skipped;
        next.error_count += changes.errors.len() as u64;
        let room = MAX_REPORTED_ERRORS.saturating_sub(next.errors.len());
        next.errors.extend(changes.errors.iter().take(room).cloned());
        next.errors.sort_by_key(|e| e.row);
        next
    }
}
