//! The one migration set runs up, down and up again on both databases.

use migration::{Migrator, MigratorTrait};
use sea_orm::ConnectionTrait;

use crate::helpers::{Backend, fresh_database};

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

both_backends!(migrations_run_up_down_and_up_again);
