//! The one migration set runs up, down and up again on both databases; data migrations change what
//! they name.

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};

use crate::dispatch::{due_at, send};
use crate::helpers::{Backend, TestApp, fresh_database};

/// Reverts the migration `name` and every one applied after it (so a test of one migration's data
/// change keeps testing it when later migrations are added).
pub async fn undo_from(db: &DatabaseConnection, name: &str) {
    let applied = Migrator::get_applied_migrations(db).await.unwrap();
    let at = applied.iter().position(|m| m.name() == name).unwrap_or_else(|| panic!("{name} is not applied"));
    Migrator::down(db, Some((applied.len() - at) as u32)).await.unwrap();
    assert!(Migrator::get_pending_migrations(db).await.unwrap().iter().any(|m| m.name() == name));
}

async fn migrations_run_up_down_and_up_again(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(&b, dir.path()).await;
    let db = turumba::db::connect(&url, 2).await.unwrap();
    Migrator::up(&db, None).await.unwrap();
    assert!(Migrator::get_pending_migrations(&db).await.unwrap().is_empty());
    db.execute_unprepared("SELECT id, email, default_account_id FROM users").await.unwrap();
    db.execute_unprepared("SELECT id, parent_id, settings FROM accounts").await.unwrap();
    let applied = Migrator::get_applied_migrations(&db).await.unwrap().len() as u32;
    Migrator::down(&db, Some(applied)).await.unwrap();
    assert!(db.execute_unprepared("SELECT id FROM users").await.is_err(), "tables are gone after down");
    assert_eq!(Migrator::get_pending_migrations(&db).await.unwrap().len() as u32, applied);
    Migrator::up(&db, None).await.unwrap();
    db.execute_unprepared("SELECT id FROM memberships").await.unwrap();
    // Up is idempotent.
    Migrator::up(&db, None).await.unwrap();
}

/// Messages a dispatcher had already taken keep no due time after migration 000025 (which keeps only
/// due rows in `idx_messages_due`); waiting ones keep theirs.
async fn only_waiting_messages_keep_a_due_time(b: Backend) {
    let app =
        TestApp::spawn_full(b, |_| {}, turumba::app::BuildOptions { dispatch: false, ..Default::default() }).await;
    let u = app.user("due-times").await;
    let channel = crate::messages::sandbox(&app, &u, "s").await;
    let mut ids = Vec::new();
    for to in ["+251911000001", "+251911000002"] {
        ids.push(send(&app, &u, &channel, to, "x").await);
    }
    let db = &app.state.db;
    let backend = db.get_database_backend();
    let sql = |s: &str| if backend == sea_orm::DbBackend::Postgres { s.replace('?', "$1") } else { s.to_string() };
    undo_from(db, "m20261130_000025_message_index_writes").await;
    // Sent before the migration, when a sent message kept the due time it was accepted with.
    let sent = uuid::Uuid::parse_str(&ids[0]).unwrap();
    let stmt =
        Statement::from_sql_and_values(backend, sql("UPDATE messages SET status = 'sent' WHERE id = ?"), [sent.into()]);
    db.execute_raw(stmt).await.unwrap();
    assert!(due_at(&app, &ids[0]).await.is_some());
    Migrator::up(db, None).await.unwrap();
    assert_eq!(due_at(&app, &ids[0]).await, None, "a sent message is due no more");
    assert!(due_at(&app, &ids[1]).await.is_some(), "a queued message stays due");
}

both_backends!(migrations_run_up_down_and_up_again, only_waiting_messages_keep_a_due_time);
