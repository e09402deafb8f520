//! SQLite's disk running full under a running server: `turumba serve` on a 16 MiB tmpfs in its own
//! mount namespace (`unshare --mount --map-root-user`), filled up from outside through
//! `/proc/<pid>/root`. Writes answer 503 (`storage_full`, or `service_unavailable` while SQLite backs
//! out of a failed commit; never 500), reads keep working, every send
//! the API accepted survives and is sent once space is back, the same process recovers, and
//! `PRAGMA integrity_check` finds nothing wrong.

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::Backend;
use crate::processes::Stack;

/// Whether this machine lets an unprivileged process mount a tmpfs in its own namespace.
fn can_mount_privately() -> bool {
    Command::new("unshare")
        .args(["--mount", "--map-root-user", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"])
        .status()
        .is_ok_and(|s| s.success())
}

pub(super) async fn the_sqlite_disk_running_full_answers_503_and_corrupts_nothing() {
    if !can_mount_privately() {
        if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false") {
            panic!("CI must run the disk-full test: `unshare --mount --map-root-user` cannot mount a tmpfs here");
        }
        eprintln!("skipped: this machine cannot mount a private tmpfs (unshare --mount --map-root-user)");
        return;
    }
    let mut stack = Stack::new(&Backend::Sqlite, None, None).await;
    let disk = stack.dir.path().join("disk");
    std::fs::create_dir(&disk).unwrap();
    stack.set("DATABASE_URL", &format!("sqlite://{}/turumba.db", disk.display()));
    stack.set("TURUMBA_DATA_DIR", &disk.display().to_string());
    stack.launcher = vec![
        "unshare".into(),
        "--mount".into(),
        "--map-root-user".into(),
        "sh".into(),
        "-c".into(),
        r#"mount -t tmpfs -o size=16m tmpfs "$0" && exec "$@""#.into(),
        disk.display().to_string(),
    ];
    let server = stack.start("all").await;
    // The server's disk as the kernel shows it from outside its namespace (for plain file writes;
    // SQLite resolves that path's link back into our own namespace, so `turumba admin` enters the
    // server's namespace instead).
    let pid = stack.servers[server].child.id().to_string();
    let inside = std::path::PathBuf::from(format!("/proc/{pid}/root{}", disk.display()));
    stack.db_url = format!("sqlite://{}/turumba.db", disk.display());
    stack.data_dir = disk.clone();
    stack.admin_launcher = vec!["nsenter".into(), "--target".into(), pid, "--mount".into()];
    let c = stack.sign_in().await;
    let ch =
        c.ok("POST", "/v1/channels", Some(json!({"name": "s", "channel_type": "sandbox", "credentials": {}}))).await;
    let ch = ch["id"].as_str().unwrap().to_string();
    let contact =
        c.ok("POST", "/v1/contacts", Some(json!({"first_name": "Full", "phone": "+251911000001"}))).await["id"]
            .as_str()
            .unwrap()
            .to_string();
    let send = json!({"channel_id": ch, "contact_id": contact, "message_body": "a message to keep"});

    // Fill the disk to the last byte.
    let filler = inside.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while f.write_all(&chunk).is_ok() {}
    let mut small = vec![0u8; 512];
    while f.write_all(&small).is_ok() {}
    small.truncate(1);
    while f.write_all(&small).is_ok() {}
    drop(f);

    // Sends until SQLite's file and journal can grow no more: each answer is 201 or 503.
    let mut accepted = Vec::new();
    let mut full_in_a_row = 0;
    let mut refusals: std::collections::BTreeMap<String, usize> = Default::default();
    let deadline = Instant::now() + Duration::from_secs(120);
    while full_in_a_row < 40 {
        assert!(Instant::now() < deadline, "writes kept succeeding on a full disk ({} accepted)", accepted.len());
        let (s, d) = c.call("POST", "/v1/messages", Some(send.clone())).await;
        match (s, d["error"].as_str()) {
            (201, _) => {
                accepted.push(d["data"]["id"].as_str().unwrap().to_string());
                full_in_a_row = 0;
            }
            (503, Some(code @ ("storage_full" | "service_unavailable"))) => {
                full_in_a_row += 1;
                *refusals.entry(code.to_string()).or_default() += 1;
            }
            other => {
                let log = stack.servers[server].log();
                panic!("a write on a full disk answered {other:?}: {d}\n{}", &log[log.len().saturating_sub(3000)..])
            }
        }
    }
    assert!(refusals.contains_key("storage_full"), "the full disk is named: {refusals:?}");
    // Reads still work, and so does what was accepted before the disk filled.
    let (s, d) = c.call("GET", "/v1/contacts?limit=5", None).await;
    assert_eq!(s, 200, "reads on a full disk: {d}");

    std::fs::remove_file(&filler).unwrap();
    let after = c.post_until_created("/v1/messages", send.clone(), 60).await;
    accepted.push(after["id"].as_str().unwrap().to_string());
    let mut missing = Vec::new();
    for (i, m) in accepted.iter().enumerate() {
        let (s, _) = c.call("GET", &format!("/v1/messages/{m}"), None).await;
        if s != 200 {
            missing.push((i, s));
        }
    }
    assert!(
        missing.is_empty(),
        "accepted sends that are gone (index of {}, status): {missing:?}; refused: {refusals:?}",
        accepted.len()
    );
    for m in &accepted {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let msg = c.ok("GET", &format!("/v1/messages/{m}"), None).await;
            // The sandbox confirms at once: `delivered`.
            if msg["status"] == "sent" || msg["status"] == "delivered" {
                break;
            }
            assert!(Instant::now() < deadline, "an accepted send is not sent after space came back: {msg}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let (ok, out) = stack.admin(&["check-database"]);
    assert!(ok && out.trim() == "ok", "turumba admin check-database: {out}");
    eprintln!(
        "disk full: {} sends accepted around the full disk, all sent; refused: {refusals:?}; integrity ok",
        accepted.len()
    );
    assert!(stack.all_alive(), "the server never died");
    stack.finish().await;
}
