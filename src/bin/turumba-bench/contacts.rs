//! `turumba-bench contacts` (import, segment count, Directory streaming) and `gen-contacts`.

use std::time::Instant;

use turumba::modules::events::EventMeta;

use crate::{drop_db, fresh_db, ms, peak_rss_mib};

/// A deterministic contacts CSV: valid Ethiopian mobile numbers, e-mails, names, a program (10 values),
/// a score (0–99), an enrolment date and one or two tags.
pub(crate) fn generate_contacts_csv(rows: u64, out: &std::path::Path) {
    use std::io::Write;
    let mut w = std::io::BufWriter::new(std::fs::File::create(out).expect("create CSV"));
    writeln!(w, "phone,email,first_name,last_name,attributes.program,attributes.score,attributes.enrolled,tags")
        .unwrap();
    for i in 0..rows {
        let day = 1 + (i % 28);
        let month = 1 + (i / 28) % 12;
        let tags = if i % 3 == 0 { "reminded;vip" } else { "reminded" };
        writeln!(
            w,
            "+25191{i:07},person{i}@example.org,First{i},Last{},cohort-{},{},2026-{month:02}-{day:02},{tags}",
            i % 977,
            i % 10,
            (i * 37) % 100
        )
        .unwrap();
    }
    w.flush().unwrap();
}

pub(crate) async fn bench_contacts(database: String, rows: u64) {
    if let Ok(filter) = std::env::var("BENCH_LOG") {
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    }
    use turumba::modules::contacts::{Audience, ImportOptions, OnDuplicate};
    let tmp = tempfile::tempdir().expect("temp dir");
    let (url, cleanup) = fresh_db(&database, tmp.path()).await;
    let csv = tmp.path().join("contacts.csv");
    let t = Instant::now();
    generate_contacts_csv(rows, &csv);
    let size = std::fs::metadata(&csv).map(|m| m.len()).unwrap_or(0);
    println!("generated {rows} rows ({:.1} MiB) in {:.2} s", size as f64 / 1048576.0, t.elapsed().as_secs_f64());
    // The CPU part of an import row: E.164 parsing and validation (libphonenumber rules).
    let t = Instant::now();
    let region = turumba::domain::default_region(Some("ET"));
    for i in 0..10_000u64 {
        let _ = turumba::modules::contacts::normalise_phone(&format!("+25191{i:07}"), region);
    }
    println!("phone normalisation: {:.1} µs per number", t.elapsed().as_secs_f64() * 1e6 / 10_000.0);
    let settings = turumba::config::Settings::for_test(tmp.path(), &url);
    let state = turumba::app::build_state(settings, true).await.expect("state");
    let (_, account) = state
        .accounts
        .create_verified_user("bench@example.org", "bench password 1", "Bench", "Bench")
        .await
        .expect("user");
    let scope = state.accounts.operator_scope(account).await.expect("scope");
    let rss_before = peak_rss_mib();
    let options = ImportOptions { mapping: None, on_duplicate: OnDuplicate::Skip, group_id: None, tag_ids: vec![] };
    let job = state.contacts.create_import(scope, None, Some("contacts.csv".into()), &options).await.expect("job");
    let t = Instant::now();
    let p = state.contacts.run_import(scope, job.id, csv.clone(), EventMeta::default(), |_| {}).await.expect("import");
    let secs = t.elapsed().as_secs_f64();
    println!(
        "import: {} rows, {} created, {} errors in {secs:.2} s ({:.0} rows/s); peak RSS {:.0} MiB (before the import {:.0} MiB)",
        p.total_rows,
        p.created,
        p.error_count,
        p.total_rows as f64 / secs,
        peak_rss_mib(),
        rss_before
    );
    let seg = state
        .contacts
        .create_segment(
            scope,
            "bench",
            None,
            &serde_json::json!([
                "attributes.score:ge:50",
                "attributes.program:in:cohort-1,cohort-2,cohort-3",
                "attributes.enrolled:ge:2026-06-01"
            ]),
            &Default::default(),
        )
        .await
        .expect("segment");
    let mut times = Vec::new();
    let mut count = 0;
    for _ in 0..7 {
        let t = Instant::now();
        count = state.contacts.count_segment(scope, seg.id).await.expect("count");
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "segment count (3 attribute filters) over {rows} contacts: {count} matches; median {:.1} ms, best {:.1} ms",
        ms(times[3]),
        ms(times[0])
    );
    let all = state
        .contacts
        .create_segment(scope, "everyone", None, &serde_json::json!("phone:is_not_null"), &Default::default())
        .await
        .expect("segment");
    let audience = Audience { segment_ids: vec![all.id], ..Default::default() };
    for batch in [1000u64, 5000] {
        let t = Instant::now();
        let mut stream = state.directory.stream(scope, &audience, "sms", batch, None).await.expect("stream");
        let mut n = 0u64;
        while let Some(b) = stream.next_batch().await.expect("batch") {
            n += b.len() as u64;
        }
        let secs = t.elapsed().as_secs_f64();
        println!("directory stream (batch {batch}): {n} recipients in {secs:.2} s = {:.0} contacts/s", n as f64 / secs);
    }
    state.db.clone().close().await.ok();
    drop_db(cleanup).await;
}
