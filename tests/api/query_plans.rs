//! Reads that must walk an index do so whatever the statistics say: a keyset page of an audience with
//! a segment's JSON filter (which PostgreSQL cannot estimate) is read from `idx_contacts_account_id`
//! in id order, never by reading the table and sorting it; and the planner settings that ensure it
//! end with their transaction, so no pooled connection keeps them.

use sea_orm::{ConnectionTrait, Statement, TransactionTrait};
use serde_json::json;

use crate::helpers::{Backend, TestApp};

async fn plan(db: &impl ConnectionTrait, sql: String) -> String {
    let backend = db.get_database_backend();
    let rows = db.query_all_raw(Statement::from_string(backend, sql)).await.unwrap();
    rows.iter()
        .map(|r| match backend {
            sea_orm::DbBackend::Postgres => r.try_get_by_index::<String>(0).unwrap(),
            _ => r.try_get::<String>("", "detail").unwrap(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

async fn a_segment_page_walks_the_accounts_contacts_in_id_order(b: Backend) {
    let app = TestApp::spawn(b).await;
    let u = app.user("plans").await;
    for phone in ["+251911000001", "+251911000002", "+251911000003"] {
        let body = json!({"phone": phone, "attributes": {"batch": "bench"}});
        app.post("/v1/contacts").token(&u.token).json(body).send().await.expect(201, None);
    }
    let db = &app.state.db;
    let postgres = db.get_database_backend() == sea_orm::DbBackend::Postgres;
    let page = |explain: &str| {
        format!(
            "{explain} SELECT id FROM contacts WHERE account_id = {account} AND attributes ->> 'batch' = 'bench' \
             AND id > {after} ORDER BY id LIMIT 1000",
            account =
                if postgres { format!("'{}'", u.account_id) } else { format!("x'{}'", u.account_id.replace('-', "")) },
            after =
                if postgres { "'00000000-0000-0000-0000-000000000000'" } else { "x'00000000000000000000000000000000'" },
        )
    };
    if !postgres {
        // SQLite's planner takes the index by itself (the helper does nothing there).
        let p = plan(db, page("EXPLAIN QUERY PLAN")).await;
        assert!(p.contains("idx_contacts_account_id") && !p.contains("TEMP B-TREE"), "{p}");
        return;
    }
    // An account of 20,000 contacts, analysed: the planner now thinks the segment's filter keeps one
    // row in two hundred, and (checked below) plans the page as a read of every matching row and a sort.
    db.execute_unprepared(&format!(
        "INSERT INTO contacts (id, account_id, phone, channel_identities, attributes, opted_out_channels, created_at, \
         updated_at) SELECT gen_random_uuid(), '{}', '+2519' || lpad(g::text, 8, '0'), '{{}}', '{{\"batch\": \"bench\"}}', \
         '[]', now(), now() FROM generate_series(10, 20009) g",
        u.account_id
    ))
    .await
    .unwrap();
    db.execute_unprepared("ANALYZE contacts").await.unwrap();
    let unguarded = plan(db, page("EXPLAIN")).await;
    assert!(unguarded.contains("Sort"), "the statistics no longer mislead the planner: {unguarded}");
    let txn = db.begin().await.unwrap();
    turumba::db::prefer_index_walks(&txn).await.unwrap();
    let p = plan(&txn, page("EXPLAIN")).await;
    assert!(p.contains("Index Scan") && !p.contains("Sort") && !p.contains("Seq Scan"), "{p}");
    txn.commit().await.unwrap();
    // Transaction-local: every connection of the pool plans freely again.
    for _ in 0..8 {
        let on = plan(db, "SELECT current_setting('enable_sort') || current_setting('enable_seqscan')".into()).await;
        assert_eq!(on, "onon");
    }
}

both_backends!(a_segment_page_walks_the_accounts_contacts_in_id_order);
