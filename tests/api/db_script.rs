//! A write transaction sent as one statement list (`turumba::db::script::Script`): on both databases
//! its statements commit together or not at all, its `RETURNING` rows come back in order, and on SQLite
//! a list that fails half-way (or whose caller goes away) leaves no transaction open on the pooled
//! connection: the next writers, on every connection of the pool, get in.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use turumba::db::script::Script;

use crate::helpers::{Backend, fresh_database};

async fn open(backend: &Backend, dir: &std::path::Path) -> DatabaseConnection {
    let url = fresh_database(backend, dir).await;
    let db = turumba::db::connect(&url, turumba::db::SQLITE_MAX_CONNECTIONS).await.unwrap();
    db.execute_unprepared("CREATE TABLE t (n BIGINT PRIMARY KEY, label TEXT NOT NULL)").await.unwrap();
    db
}

fn insert(db: &DatabaseConnection, n: i64, label: &str) -> Statement {
    let sql = match db.get_database_backend() {
        DbBackend::Postgres => "INSERT INTO t (n, label) VALUES ($1, $2)",
        _ => "INSERT INTO t (n, label) VALUES (?, ?)",
    };
    Statement::from_sql_and_values(db.get_database_backend(), sql, [n.into(), label.into()])
}

async fn rows(db: &DatabaseConnection) -> Vec<(i64, String)> {
    let all = db.query_all_raw(Statement::from_string(db.get_database_backend(), "SELECT n, label FROM t ORDER BY n"));
    all.await.unwrap().iter().map(|r| (r.try_get_by_index(0).unwrap(), r.try_get_by_index(1).unwrap())).collect()
}

async fn a_script_commits_all_its_statements_or_none(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&backend, dir.path()).await;

    let mut script = Script::new(db.get_database_backend());
    script.push(insert(&db, 1, "one"));
    script.push(insert(&db, 2, "two"));
    let returning = match db.get_database_backend() {
        DbBackend::Postgres => "UPDATE t SET label = label || $1 WHERE n >= $2 RETURNING n, label",
        _ => "UPDATE t SET label = label || ? WHERE n >= ? RETURNING n, label",
    };
    script.push_returning(Statement::from_sql_and_values(
        db.get_database_backend(),
        returning,
        ["!".into(), 2i64.into()],
    ));
    script.push(insert(&db, 3, "three"));
    let returned = script.run(&db).await.unwrap();
    let returned: Vec<(i64, String)> =
        returned.iter().map(|r| (r.try_get_by_index(0).unwrap(), r.try_get_by_index(1).unwrap())).collect();
    assert_eq!(returned, vec![(2, "two!".to_string())], "the RETURNING statement's rows, and only those");
    assert_eq!(rows(&db).await, vec![(1, "one".into()), (2, "two!".into()), (3, "three".into())]);

    // The second statement breaks the primary key: the first (and the rest) is not written either.
    let mut script = Script::new(db.get_database_backend());
    script.push(insert(&db, 4, "four"));
    script.push(insert(&db, 1, "one again"));
    script.push(insert(&db, 5, "five"));
    let err = script.run(&db).await.expect_err("a duplicate key fails the script");
    assert!(turumba::db::is_unique_violation(&err), "the statement's own error comes back: {err}");
    assert_eq!(rows(&db).await.len(), 3, "nothing of a failed script is written");

    // Every pooled connection writes again at once: none was left inside the failed transaction (a
    // writer would wait for it, and give up after the busy timeout).
    let mut writers = Vec::new();
    for n in 10..10 + 2 * turumba::db::SQLITE_MAX_CONNECTIONS as i64 {
        let db = db.clone();
        writers.push(tokio::spawn(async move {
            let txn = turumba::db::begin_write(&db).await?;
            txn.execute_raw(insert(&db, n, "after")).await?;
            txn.commit().await
        }));
    }
    for w in writers {
        tokio::time::timeout(Duration::from_secs(5), w).await.expect("a writer got in").unwrap().unwrap();
    }
    assert_eq!(rows(&db).await.len(), 3 + 2 * turumba::db::SQLITE_MAX_CONNECTIONS as usize);
}

both_backends!(a_script_commits_all_its_statements_or_none);

/// A script whose caller stops waiting (its future dropped while SQLite is still inside the list) is
/// rolled back or committed whole — never left open holding the writer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_script_never_leaves_the_writer_held() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(&Backend::Sqlite, dir.path()).await;
    // A script long enough to still be running when its caller gives up.
    let mut script = Script::new(DbBackend::Sqlite);
    script.push(Statement::from_string(
        DbBackend::Sqlite,
        "INSERT INTO t (n, label) WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 300000) \
         SELECT x, 'row ' || x FROM c",
    ));
    script.push_returning(Statement::from_string(DbBackend::Sqlite, "SELECT n FROM t"));
    let _ = tokio::time::timeout(Duration::from_millis(5), script.run(&db)).await;
    // Whatever became of it, a writer gets in and the table holds all of it or none of it.
    let txn = tokio::time::timeout(Duration::from_secs(10), turumba::db::begin_write(&db))
        .await
        .expect("the writer is free again")
        .unwrap();
    txn.commit().await.unwrap();
    let n: i64 = db
        .query_one_raw(Statement::from_string(DbBackend::Sqlite, "SELECT COUNT(*) FROM t"))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index(0)
        .unwrap();
    assert!(n == 0 || n == 300_000, "a script is all or nothing, found {n} rows");
}
