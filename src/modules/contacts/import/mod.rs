//! CSV import (SPEC §4): the upload is spooled to a file in the data directory (never held in memory;
//! larger than the limit → 413), an import job row is created, and a background task streams the rows:
//! a blocking reader thread parses, normalises and de-duplicates them ([`reader`]), the async writer
//! stores batches of 500 in one transaction each ([`batch`]), together with the job's progress and the
//! batch's events — so the report always accounts for exactly the rows written, even after a crash. Bad
//! rows are reported (`row`, `field`, `message`; the first 1,000 kept) and never abort the good ones.

mod batch;
mod reader;
mod store;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use chrono::{Duration, Utc};
use sea_orm::{ConnectionTrait, IntoActiveModel, Set};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

pub use reader::{MAPPABLE, RowError, check_header, check_mapping};

use super::entity::contact_import::{self, ImportStatus};
use super::service::Contacts;
use crate::db::list::{ListQuery, Page};
use crate::error::{AppError, AppResult};
use crate::modules::accounts::AccountScope;
use crate::modules::events::{EventBus, EventMeta};
use batch::{Job, TagCache};
use reader::{Parsed, plan, read_rows};

pub const BATCH_ROWS: usize = 500;

pub const MAX_REPORTED_ERRORS: usize = 1000;

/// A running import renews its lease this often (whatever its batches are doing).
pub const HEARTBEAT_SECS: u64 = 5;

/// A queued or running import whose lease was not renewed for this long is marked failed: the process
/// running it is gone.
pub const STALE_AFTER_SECS: i64 = 30;

/// A spooled upload not written for this long belongs to no request any more (a crash mid-upload).
const ABANDONED_SPOOL_SECS: u64 = 600;

const INTERRUPTED: &str = "interrupted: the process running this import stopped; the counts show the rows written before it stopped — import the rest again (on_duplicate=skip makes that safe)";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnDuplicate {
    Skip,
    Update,
}

/// Options of an import job (stored with it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportOptions {
    /// CSV header → target (`phone`, `attributes.program_name`, `channel_identities.telegram`, `tags`).
    pub mapping: Option<HashMap<String, String>>,
    pub on_duplicate: OnDuplicate,
    pub group_id: Option<Uuid>,
    #[serde(default)]
    pub tag_ids: Vec<Uuid>,
}

/// Progress of a job, as written with each batch.
#[derive(Debug, Default, Clone)]
pub struct Progress {
    pub total_rows: u64,
    pub created: u64,
    pub updated: u64,
    pub skipped: u64,
    pub errors: Vec<RowError>,
    pub error_count: u64,
}

impl Contacts {
    /// Records a new import job (status `queued`).
    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn create_import(
        &self,
        scope: AccountScope,
        user_id: Option<Uuid>,
        file_name: Option<String>,
        options: &ImportOptions,
    ) -> AppResult<contact_import::Model> {
        if let Some(m) = &options.mapping {
            check_mapping(m)?;
        }
        if let Some(g) = options.group_id
            && super::store::find_group(&self.db, scope, g).await?.is_none()
        {
            return Err(AppError::field("group_id", "no such group in this account"));
        }
        let own = super::store::own_tag_ids(&self.db, scope, &options.tag_ids).await?;
        if let Some(missing) = options.tag_ids.iter().find(|t| !own.contains(t)) {
            return Err(AppError::field("tag_ids", format!("no tag {missing} in this account")));
        }
        let now = Utc::now();
        let job = contact_import::ActiveModel {
            id: Set(Uuid::now_v7()),
            account_id: Set(scope.account_id()),
            user_id: Set(user_id),
            status: Set(ImportStatus::Queued),
            file_name: Set(file_name),
            options: Set(serde_json::to_value(options).map_err(AppError::internal)?),
            total_rows: Set(0),
            created: Set(0),
            updated: Set(0),
            skipped: Set(0),
            error_count: Set(0),
            errors: Set(json!([])),
            message: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
            finished_at: Set(None),
            owner: Set(Some(self.uploads.owner.clone())),
        };
        store::insert_import(&self.db, job).await
    }

    pub async fn get_import(&self, scope: AccountScope, id: Uuid) -> AppResult<contact_import::Model> {
        store::find_import(&self.db, scope, id).await?.ok_or(AppError::NotFound("import"))
    }

    /// The account's import jobs, filtered, sorted and paged.
    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn list_imports(&self, scope: AccountScope, q: &ListQuery) -> AppResult<Page<contact_import::Model>> {
        store::list_imports(&self.db, scope, q).await
    }

    /// The upload limit, and a new spool file for an upload (removed when dropped unless kept).
    pub fn new_upload(&self) -> AppResult<(usize, std::fs::File, tempfile::TempPath)> {
        let uploads = &self.uploads;
        std::fs::create_dir_all(&uploads.dir).map_err(AppError::internal)?;
        let spooled = tempfile::Builder::new()
            .prefix("upload-")
            .suffix(".csv")
            .tempfile_in(&uploads.dir)
            .map_err(AppError::internal)?;
        let (file, path) = spooled.into_parts();
        Ok((uploads.body_limit, file, path))
    }

    /// Checks the spooled upload's header, records the job and runs it in the background; the job owns
    /// the file from here and removes it when it ends.
    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn start_import(
        &self,
        scope: AccountScope,
        user_id: Uuid,
        file_name: Option<String>,
        options: &ImportOptions,
        upload: tempfile::TempPath,
        meta: EventMeta,
    ) -> AppResult<contact_import::Model> {
        check_header(&upload, options)?;
        let job = self.create_import(scope, Some(user_id), file_name, options).await?;
        // Named after the job, so whoever fails the job can remove its file.
        let path = self.uploads.job_file(job.id);
        upload.persist(&path).map_err(AppError::internal)?;
        let contacts = self.clone();
        let job_id = job.id;
        self.uploads.tasks.spawn(async move {
            if let Err(e) = contacts.run_import(scope, job_id, path.clone(), meta.for_job(), |_| {}).await {
                tracing::warn!(import_id = %job_id, error = %e, "contact import failed");
            }
            let _ = std::fs::remove_file(&path);
        });
        Ok(job)
    }

    /// Runs an import job to the end. `on_progress` sees the totals after every batch (the CLI's progress
    /// bar). The file is removed when done unless `keep_file`.
    #[tracing::instrument(level = "debug", skip_all, fields(account_id = %scope.account_id()))]
    pub async fn run_import(
        &self,
        scope: AccountScope,
        job_id: Uuid,
        path: PathBuf,
        meta: EventMeta,
        on_progress: impl Fn(&Progress),
    ) -> AppResult<Progress> {
        let job = self.get_import(scope, job_id).await?;
        let options: ImportOptions = serde_json::from_value(job.options.clone()).map_err(AppError::internal)?;
        let heartbeat = self.renew_lease(job_id);
        let result = self.import_rows(scope, &job, &options, &path, &meta, &on_progress).await;
        heartbeat.abort();
        let now = Utc::now();
        let mut active = self.get_import(scope, job_id).await?.into_active_model();
        active.updated_at = Set(now);
        active.finished_at = Set(Some(now));
        let outcome = match &result {
            Ok(_) => {
                active.status = Set(ImportStatus::Completed);
                "contact_import.completed"
            }
            Err(e) => {
                active.status = Set(ImportStatus::Failed);
                active.message = Set(Some(e.to_string()));
                "contact_import.failed"
            }
        };
        let txn = crate::db::begin_write(&self.db).await?;
        let job = sea_orm::ActiveModelTrait::update(active, &txn).await?;
        let mut bus = EventBus::new(meta);
        bus.emit(
            outcome,
            "contact_import",
            job.id,
            Some(scope.account_id()),
            json!({ "total_rows": job.total_rows, "created": job.created, "updated": job.updated, "skipped": job.skipped, "error_count": job.error_count }),
        );
        self.events.commit(txn, bus).await?;
        result
    }

    async fn import_rows(
        &self,
        scope: AccountScope,
        job: &contact_import::Model,
        options: &ImportOptions,
        path: &Path,
        meta: &EventMeta,
        on_progress: &impl Fn(&Progress),
    ) -> AppResult<Progress> {
        let headers = check_header(path, options)?;
        let targets = plan(&headers, options.mapping.as_ref())?;
        let region = self.region(scope).await?;
        store::mark_import_running(&self.db, job.id).await?;
        let (tx, mut rx) = tokio::sync::mpsc::channel(2);
        let width = headers.len();
        let path = path.to_path_buf();
        let reader = tokio::task::spawn_blocking(move || read_rows(path, targets, width, region, tx));
        let mut progress = Progress::default();
        let mut tags = TagCache::default();
        let job = Job { scope, id: job.id, options, meta };
        let mut batches = 0u64;
        while let Some(parsed) = rx.recv().await {
            match parsed {
                Parsed::Fatal(m) => return Err(AppError::bad_request(m)),
                Parsed::Batch(batch) => {
                    self.write_batch(&job, batch, &mut progress, &mut tags).await?;
                    on_progress(&progress);
                    batches += 1;
                    if batches.is_power_of_two() {
                        self.refresh_statistics(false).await;
                    }
                }
            }
        }
        reader.await.map_err(AppError::internal)?;
        if batches > 1 {
            self.refresh_statistics(true).await;
        }
        Ok(progress)
    }

    /// PostgreSQL plans from table statistics; a table that grew from nothing during an import still looks
    /// empty to the planner, which then scans it for every batch's duplicate lookup (measured: 100k rows
    /// took 6 minutes instead of seconds). Re-analysing as the table doubles keeps the unique indexes in
    /// use. SQLite needs nothing here.
    /// During the import only the columns its lookups filter on are sampled (a full ANALYZE of 100k
    /// contacts with their JSON attributes costs more than a batch); the whole tables are analysed once in
    /// the background when the import is over.
    async fn refresh_statistics(&self, finished: bool) {
        if self.backend() != sea_orm::DbBackend::Postgres {
            return;
        }
        if finished {
            let db = self.db.clone();
            tokio::spawn(async move {
                if let Err(e) = db.execute_unprepared("ANALYZE contacts, contact_identities, contact_tags").await {
                    tracing::warn!(error = %e, "ANALYZE after an import failed");
                }
            });
        } else if let Err(e) = self
            .db
            .execute_unprepared(
                "ANALYZE contacts (account_id, phone, email), contact_identities (account_id, channel_type, identity)",
            )
            .await
        {
            tracing::warn!(error = %e, "ANALYZE after an import batch failed");
        }
    }

    /// Renews a running job's lease every [`HEARTBEAT_SECS`] until aborted.
    fn renew_lease(&self, job_id: Uuid) -> tokio::task::JoinHandle<()> {
        let db = self.db.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(HEARTBEAT_SECS)).await;
                if let Err(e) = store::renew_import_lease(&db, job_id).await {
                    tracing::warn!(import_id = %job_id, error = %e, "cannot renew the import's lease");
                }
            }
        })
    }

    /// At start: fails the imports this process's previous incarnation (same owner) left queued or
    /// running — it is gone, since this one holds its address — and removes uploads nobody runs any
    /// more. Then does what [`Contacts::fail_stale_imports`] does.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn recover_imports(&self) -> AppResult<u64> {
        let ids = store::fail_imports_of_owner(&self.db, &self.uploads.owner, INTERRUPTED).await?;
        self.remove_uploads(&ids);
        let n = ids.len() as u64 + self.fail_stale_imports().await?;
        let live = store::live_import_ids(&self.db).await?;
        self.remove_orphan_uploads(&live);
        Ok(n)
    }

    /// Marks imports whose lease ran out (their process crashed or was killed) as failed, and removes
    /// their uploads when they are here. Their report still accounts for every row written before the
    /// stop.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn fail_stale_imports(&self) -> AppResult<u64> {
        let cutoff: chrono::DateTime<Utc> = Utc::now() - Duration::seconds(STALE_AFTER_SECS);
        let ids = store::fail_imports_idle_since(&self.db, cutoff, INTERRUPTED).await?;
        self.remove_uploads(&ids);
        Ok(ids.len() as u64)
    }

    fn remove_uploads(&self, job_ids: &[Uuid]) {
        for id in job_ids {
            let _ = std::fs::remove_file(self.uploads.job_file(*id));
        }
    }

    /// Removes job files whose job is not live and spool files abandoned mid-upload.
    fn remove_orphan_uploads(&self, live: &[Uuid]) {
        let Ok(entries) = std::fs::read_dir(&self.uploads.dir) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let orphan = match name.strip_suffix(".csv").and_then(|stem| Uuid::parse_str(stem).ok()) {
                Some(id) => !live.contains(&id),
                None if name.starts_with("upload-") => entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age.as_secs() > ABANDONED_SPOOL_SECS),
                None => false,
            };
            if orphan {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}
