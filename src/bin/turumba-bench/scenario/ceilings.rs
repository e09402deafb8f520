//! The ceilings of the parts, and the peer, measured in the same run.

use std::process::{Command, Stdio};
use std::time::Instant;

use chrono::Utc;
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use serde_json::json;

use super::loads::*;
use super::stack::*;
use super::*;

/// The raw insert rate of message-shaped rows into a table of their own with the messages table's
/// keys and indexes, 1,000 rows per statement and transaction, on one connection: rows per second.
pub(super) async fn raw_insert_rate(db: &DatabaseConnection, sqlite: bool, n: u64) -> f64 {
    let backend = db.get_database_backend();
    let (uuid, ts, json) = if sqlite { ("BLOB", "TEXT", "TEXT") } else { ("UUID", "TIMESTAMPTZ", "JSONB") };
    let ddl = [
        "DROP TABLE IF EXISTS bench_raw_messages".to_string(),
        format!(
            "CREATE TABLE bench_raw_messages (id {uuid} PRIMARY KEY, account_id {uuid} NOT NULL, \
             channel_id {uuid} NOT NULL, contact_id {uuid}, group_message_id {uuid}, channel_type TEXT NOT NULL, \
             direction TEXT NOT NULL, status TEXT NOT NULL, delivery_address TEXT NOT NULL, message_body TEXT, \
             metadata {json}, attempts INTEGER NOT NULL, created_at {ts} NOT NULL, updated_at {ts} NOT NULL)"
        ),
        "CREATE INDEX bench_raw_account ON bench_raw_messages (account_id, created_at, id)".into(),
        "CREATE UNIQUE INDEX bench_raw_group ON bench_raw_messages (group_message_id, contact_id)".into(),
        "CREATE INDEX bench_raw_status ON bench_raw_messages (status)".into(),
    ];
    for sql in ddl {
        db.execute_unprepared(&sql).await.expect("scratch table");
    }
    let (account, channel, group) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let started = Instant::now();
    let per = 1_000u64;
    let mut i = 0;
    while i < n {
        let rows = per.min(n - i);
        let mut sql = String::from(
            "INSERT INTO bench_raw_messages (id, account_id, channel_id, contact_id, group_message_id, channel_type, \
             direction, status, delivery_address, message_body, metadata, attempts, created_at, updated_at) VALUES ",
        );
        let mut values: Vec<sea_orm::Value> = Vec::with_capacity(rows as usize * 12);
        let now = Utc::now();
        for r in 0..rows {
            if r > 0 {
                sql.push(',');
            }
            let b = values.len();
            let p = |k: usize| if sqlite { "?".to_string() } else { format!("${}", b + k) };
            sql.push_str(&format!(
                "({},{},{},{},{},'telegram','outbound','queued',{},{},{},0,{},{})",
                p(1),
                p(2),
                p(3),
                p(4),
                p(5),
                p(6),
                p(7),
                p(8),
                p(9),
                p(10)
            ));
            values.push(uuid::Uuid::now_v7().into());
            values.push(account.into());
            values.push(channel.into());
            values.push(uuid::Uuid::new_v4().into());
            values.push(group.into());
            values.push(format!("{}", 10_000_000 + i + r).into());
            values.push(format!("Hi Person{}, your results are ready. Reply STOP to opt out.", i + r).into());
            values.push(json!({}).into());
            values.push(now.into());
            values.push(now.into());
        }
        let txn = sea_orm::TransactionTrait::begin(db).await.expect("begin");
        txn.execute_raw(Statement::from_sql_and_values(backend, &sql, values)).await.expect("insert");
        txn.commit().await.expect("commit");
        i += rows;
    }
    let secs = started.elapsed().as_secs_f64();
    let _ = db.execute_unprepared("DROP TABLE IF EXISTS bench_raw_messages").await;
    n as f64 / secs
}

/// The 50-row list's own query as the server runs it for `GET /v1/roles?limit=50`: one account's roles,
/// newest first, one row past the page, on a pool made like the server's (`turumba::db::connect`), each
/// row decoded into its typed columns; 64 tasks for `secs`: pages per second.
pub(super) async fn page_query_rate(url: &str, secs: u64) -> f64 {
    let db = turumba::db::connect(url, 16).await.expect("a pool like the server's");
    let backend = db.get_database_backend();
    let busiest = "SELECT account_id FROM roles GROUP BY account_id ORDER BY COUNT(*) DESC LIMIT 1";
    let row = db.query_one_raw(Statement::from_string(backend, busiest)).await.expect("roles").expect("a role");
    let account: uuid::Uuid = row.try_get("", "account_id").expect("account id");
    let sql = format!(
        "SELECT id, account_id, name, description, permissions, is_system, created_at, updated_at FROM roles \
         WHERE account_id = {} ORDER BY created_at DESC, id DESC LIMIT 51 OFFSET 0",
        if backend == sea_orm::DbBackend::Sqlite { "?" } else { "$1" }
    );
    let deadline = Instant::now() + std::time::Duration::from_secs(secs);
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (db, sql) = (db.clone(), sql.clone());
            tokio::spawn(async move {
                let mut pages = 0u64;
                while Instant::now() < deadline {
                    let stmt = Statement::from_sql_and_values(backend, &sql, [account.into()]);
                    for r in db.query_all_raw(stmt).await.expect("page") {
                        let decoded = (
                            r.try_get::<uuid::Uuid>("", "id"),
                            r.try_get::<uuid::Uuid>("", "account_id"),
                            r.try_get::<String>("", "name"),
                            r.try_get::<Option<String>>("", "description"),
                            r.try_get::<serde_json::Value>("", "permissions"),
                            r.try_get::<bool>("", "is_system"),
                            r.try_get::<chrono::DateTime<Utc>>("", "created_at"),
                            r.try_get::<chrono::DateTime<Utc>>("", "updated_at"),
                        );
                        assert!(decoded.0.is_ok() && decoded.4.is_ok() && decoded.7.is_ok(), "a role row decodes");
                    }
                    pages += 1;
                }
                pages
            })
        })
        .collect();
    let started = Instant::now();
    let mut pages = 0;
    for t in tasks {
        pages += t.await.expect("reader");
    }
    let rate = pages as f64 / started.elapsed().as_secs_f64();
    db.close().await.ok();
    rate
}

pub(super) async fn ceilings(s: &mut Stack) -> Vec<(String, f64, String)> {
    let mut out = Vec::new();
    let n = s.n(20_000);
    // The provider server's own ceiling: its sendMessage, as the adapter calls it, 64 in flight.
    let url = format!("{}/bot123456:bench-token/sendMessage", s.provider);
    let t = drive(n, CLIENTS, 200, |i| s.http.post(&url).json(&json!({"chat_id": i, "text": "ceiling"}))).await;
    out.push(("provider server: sendMessage requests/s (64 in flight)".into(), t.rate(), "group messages/s".into()));
    // The SMSC's own ceiling: submit_sm on one bind through the same adapter.
    let (ok, d) = crate::smpp::submit_many(s.smsc_port, n, 64).await;
    out.push(("SMSC: submit_sm/s on one bind".into(), ok as f64 / d.as_secs_f64(), "smpp msg/s".into()));
    let rows = s.n(100_000);
    let sqlite = s.sqlite();
    let db_name = if sqlite { "SQLite" } else { "PostgreSQL" };
    let rate = raw_insert_rate(&s.db, sqlite, rows).await;
    out.push((format!("{db_name}: raw message-shaped inserts/s (1,000 per statement)"), rate, "fan-out rows/s".into()));
    out.push((format!("{db_name}: the same, compared with the CSV import"), rate, "import rows/s".into()));
    if s.figures.iter().any(|(n, _)| *n == "list req/s") {
        let rate = page_query_rate(&s.url, s.args.read_seconds).await;
        out.push((
            format!("{db_name}: the 50-row list's query alone, decoded (64 tasks, a pool like the server's)"),
            rate,
            "list req/s".into(),
        ));
    }
    if !sqlite {
        let rate = crate::events::raw_rabbitmq_rate(&s.args.amqp, rows, 500).await;
        out.push((
            "RabbitMQ: persistent publishes/s with confirms (batch 500)".into(),
            rate,
            "single accepts/s".into(),
        ));
    }
    out
}

/// Jasmin 0.11 on the SMPP workload, through the peer script (Jasmin only): its messages per second.
pub(super) fn jasmin(s: &Stack) -> Option<f64> {
    let me = std::env::current_exe().ok()?;
    let bin = s.args.bin.clone().unwrap_or_else(|| me.with_file_name("turumba"));
    let script = "bench/peers/jasmin_vs_turumba.sh";
    if !std::path::Path::new(script).exists() {
        eprintln!("--jasmin: {script} is not here; run the scenario from the repository's root");
        return None;
    }
    let out = Command::new("bash")
        .arg(script)
        .args([s.n(5_000).to_string(), SMPP_CLIENTS.to_string()])
        .env("BENCH_ONLY", "jasmin")
        .env("BENCH_BIN", bin)
        .env("BENCH_TOOL", &me)
        .stderr(Stdio::inherit())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    print!("{text}");
    let line = text.lines().find(|l| l.starts_with("Jasmin"))?;
    let before = line.split(" messages/s").next()?;
    before.rsplit(' ').next()?.parse().ok()
}
