//! CSV import jobs (exact reports for mixed files, duplicates, limits, multipart and text/csv), the
//! streamed export (and its round trip back through the import), and the Directory facade.

use serde_json::{Value, json};
use turumba::modules::contacts::{Audience, Directory, InboundSender};
use turumba::modules::events::{EventBus, EventMeta};

use crate::contacts::{contact, et_user};
use crate::helpers::{Backend, Resp, TestApp, TestUser, eventually};

/// Waits for an import job to finish and returns it.
async fn finished(app: &TestApp, u: &TestUser, job: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..200 {
        let r = app.get(&format!("/v1/contacts/imports/{job}")).token(&u.token).send().await;
        r.expect(200, None);
        last = r.data().clone();
        if last["status"] == "completed" || last["status"] == "failed" {
            return last;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("import {job} did not finish: {last}");
}

async fn import_csv(app: &TestApp, u: &TestUser, query: &str, body: Vec<u8>) -> Resp {
    app.post(&format!("/v1/contacts/import?{query}")).token(&u.token).raw("text/csv", body).send().await
}

fn multipart(fields: &[(&str, &str)], file: &[u8]) -> (String, Vec<u8>) {
    let boundary = "turumba-test-boundary";
    let mut body = Vec::new();
    for (k, v) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n").as_bytes(),
        );
    }
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"people.csv\"\r\nContent-Type: text/csv\r\n\r\n")
            .as_bytes(),
    );
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn a_mixed_file_imports_the_good_rows_and_reports_every_bad_one(b: Backend) {
    let app = TestApp::spawn(b).await;
    let u = et_user(&app, "importer").await;
    let existing =
        contact(&app, &u, json!({"phone": "0911000009", "first_name": "Old", "attributes": {"keep": 1}})).await;
    let group = app.post("/v1/groups").token(&u.token).json(json!({"name": "Imported"})).send().await.id();
    let mut file = b"Phone Number,Email,First,Program,Tags,Telegram\n".to_vec();
    file.extend_from_slice(b"0911000001,A@Example.org,Almaz,cohort-2,vip;new,\n"); // 2 good
    file.extend_from_slice(b"0911,b@example.org,Bad phone,cohort-2,,\n"); // 3 phone
    file.extend_from_slice(b",not-an-email,Bad email,,,\n"); // 4 email
    file.extend_from_slice(b",,No identity,cohort-2,,\n"); // 5 no identity
    file.extend_from_slice(b"+251 911 000 001,dup@example.org,Dup in file,,,\n"); // 6 duplicate of row 2
    file.extend_from_slice(b"0911000002,c@example.org,Two cols\n"); // 7 column count
    file.extend_from_slice(b"+251911000003,,Chaltu,42,vip,555\n"); // 8 good
    file.extend_from_slice(b"0911000004,,Bad \xff UTF-8,,,\n"); // 9 encoding
    file.extend_from_slice(b"0911000009,,New name,cohort-9,,\n"); // 10 existing → skipped
    file.extend_from_slice(b"\"0911000005\",\"e@example.org\",\"Quoted, with comma\",\"x\",\"\",\"\"\n"); // 11 good
    let mapping = json!({"Phone Number": "phone", "Email": "email", "First": "first_name", "Program": "attributes.program", "Tags": "tags", "Telegram": "channel_identities.telegram"});
    let (ct, body) =
        multipart(&[("mapping", &mapping.to_string()), ("on_duplicate", "skip"), ("group_id", &group)], &file);
    let r = app.post("/v1/contacts/import").token(&u.token).raw(&ct, body).send().await;
    r.expect(202, None);
    assert_eq!(r.data()["file_name"], "people.csv");
    assert!(["queued", "running", "completed"].contains(&r.data()["status"].as_str().unwrap()));
    let job = finished(&app, &u, &r.id()).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["total_rows"], 10);
    assert_eq!(job["created"], 3);
    assert_eq!(job["updated"], 0);
    assert_eq!(job["skipped"], 1);
    assert_eq!(job["error_count"], 6);
    let errors: Vec<(u64, String)> = job["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["row"].as_u64().unwrap(), e["field"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        errors,
        vec![
            (3, "phone".into()),
            (4, "email".into()),
            (5, "phone".into()),
            (6, "phone".into()),
            (7, "row".into()),
            (9, "first_name".into())
        ]
    );
    let messages: Vec<&str> =
        job["errors"].as_array().unwrap().iter().map(|e| e["message"].as_str().unwrap()).collect();
    assert!(messages[3].contains("duplicates row 2"), "{messages:?}");
    assert!(messages[4].contains("has 3 columns, expected 6"), "{messages:?}");
    assert!(messages[5].contains("UTF-8"), "{messages:?}");
    // Every row is accounted for.
    assert_eq!(
        job["created"].as_u64().unwrap() + job["skipped"].as_u64().unwrap() + job["error_count"].as_u64().unwrap(),
        10
    );

    // What was written: normalised, typed attributes, tags created from names, group membership.
    let r = app.get("/v1/contacts?filter=attributes.program:eq:cohort-2").token(&u.token).send().await;
    assert_eq!(r.body["meta"]["total"], 1);
    let almaz = &r.data()[0];
    assert_eq!(almaz["phone"], "+251911000001");
    assert_eq!(almaz["email"], "a@example.org");
    let tag_names: Vec<&str> = almaz["tags"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(tag_names, vec!["new", "vip"]);
    let r = app.get("/v1/contacts?filter=attributes.program:eq:42").token(&u.token).send().await;
    assert_eq!(r.data()[0]["attributes"]["program"], 42, "numbers are stored as numbers");
    assert_eq!(r.data()[0]["channel_identities"]["telegram"], "555");
    let r = app.get(&format!("/v1/groups/{group}")).token(&u.token).send().await;
    assert_eq!(r.data()["contact_count"], 3, "only imported rows join the group (skipped ones do not)");
    let r = app.get(&format!("/v1/contacts/{existing}")).token(&u.token).send().await;
    assert_eq!(r.data()["first_name"], "Old", "skip leaves existing contacts alone");

    // on_duplicate=update merges the row into the existing contact.
    let file =
        b"phone,first_name,attributes.program\n0911000009,New name,cohort-9\n0911000006,Fresh,cohort-9\n".to_vec();
    let r = import_csv(&app, &u, "on_duplicate=update", file).await;
    r.expect(202, None);
    let job = finished(&app, &u, &r.id()).await;
    assert_eq!(
        (job["created"].as_u64(), job["updated"].as_u64(), job["error_count"].as_u64()),
        (Some(1), Some(1), Some(0))
    );
    let r = app.get(&format!("/v1/contacts/{existing}")).token(&u.token).send().await;
    assert_eq!(r.data()["first_name"], "New name");
    assert_eq!(r.data()["attributes"], json!({"keep": 1, "program": "cohort-9"}));
    let r = app.get("/v1/contacts/imports?sort=created_at:asc").token(&u.token).send().await;
    assert_eq!(r.body["meta"]["total"], 2);
}

async fn import_input_errors_are_clear(b: Backend) {
    let app = TestApp::spawn_with(b, |s| s.http.import_body_limit = 4096).await;
    let u = et_user(&app, "limits").await;
    // Over the limit: 413, nothing created.
    let big = format!("phone\n{}", "0911000001\n".repeat(1000));
    let r = import_csv(&app, &u, "", big.into_bytes()).await;
    r.expect(413, Some("payload_too_large"));
    let (ct, body) = multipart(&[], format!("phone\n{}", "0911000001\n".repeat(1000)).as_bytes());
    app.post("/v1/contacts/import").token(&u.token).raw(&ct, body).send().await.expect(413, None);
    // Mappings naming unknown fields or missing columns, bad options, no usable column.
    let r = import_csv(
        &app,
        &u,
        &format!("mapping={}", urlenc(r#"{"Phone": "telephone"}"#)),
        b"Phone\n0911000001\n".to_vec(),
    )
    .await;
    r.expect(422, Some("validation_error"));
    assert_eq!(r.error_fields(), vec!["mapping.Phone"]);
    let r =
        import_csv(&app, &u, &format!("mapping={}", urlenc(r#"{"Mobile": "phone"}"#)), b"Phone\n0911000001\n".to_vec())
            .await;
    r.expect(422, None);
    assert!(r.body["details"]["errors"][0]["message"].as_str().unwrap().contains("no such column"));
    import_csv(&app, &u, &format!("mapping={}", urlenc(r#"{"Phone": "attributes.Bad Key"}"#)), b"Phone\n1\n".to_vec())
        .await
        .expect(422, None);
    import_csv(&app, &u, "on_duplicate=merge", b"phone\n0911000001\n".to_vec()).await.expect(422, None);
    import_csv(&app, &u, "group_id=0190f7a0-0000-7000-8000-000000000000", b"phone\n0911000001\n".to_vec())
        .await
        .expect(422, None);
    import_csv(&app, &u, "mapping=not-json", b"phone\n0911000001\n".to_vec()).await.expect(422, None);
    let r = import_csv(&app, &u, "", b"shoe,hat\n1,2\n".to_vec()).await;
    r.expect(422, None);
    assert_eq!(r.error_fields(), vec!["mapping"]);
    import_csv(&app, &u, "", Vec::new()).await.expect(422, None);
    import_csv(&app, &u, "", b"\xff\xfe,phone\n1,2\n".to_vec()).await.expect(422, None);
    app.post("/v1/contacts/import")
        .token(&u.token)
        .json(json!({"phone": "1"}))
        .send()
        .await
        .expect(400, Some("bad_request"));
    let (ct, body) = multipart(&[("mapping", "{}")], b"");
    let body = String::from_utf8_lossy(&body).replace("name=\"file\"", "name=\"other\"");
    app.post("/v1/contacts/import").token(&u.token).raw(&ct, body).send().await.expect(422, None);
    two_file_parts_are_refused(&app, &u).await;
    // Nothing was imported by any of these; and another tenant cannot see the jobs.
    let r = app.get("/v1/contacts").token(&u.token).send().await;
    assert_eq!(r.body["meta"]["total"], 0);
    let r = import_csv(&app, &u, "", b"phone\n0911000001\n".to_vec()).await;
    r.expect(202, None);
    let job = r.id();
    finished(&app, &u, &job).await;
    let m = app.user("mallory").await;
    app.get(&format!("/v1/contacts/imports/{job}")).token(&m.token).send().await.expect(404, Some("not_found"));
    let r = app.get("/v1/contacts/imports").token(&m.token).send().await;
    assert_eq!(r.body["meta"]["total"], 0);
    // Spooled uploads are removed when their job ends.
    let spool = app.data_dir().join("imports");
    eventually(5, "spool directory emptied", || {
        let spool = spool.clone();
        async move { std::fs::read_dir(&spool).map(|d| d.count() == 0).unwrap_or(true) }
    })
    .await;
}

/// Two `file` parts in one multipart import are refused (422 on `file`), not joined into one CSV whose
/// second header would become a data row.
async fn two_file_parts_are_refused(app: &TestApp, u: &TestUser) {
    let (ct, first) = multipart(&[], b"phone\n0911000001\n");
    let (_, second) = multipart(&[], b"phone\n0911000002\n");
    let boundary_end = b"--turumba-test-boundary--\r\n";
    let mut body = first[..first.len() - boundary_end.len()].to_vec();
    body.extend_from_slice(&second);
    let r = app.post("/v1/contacts/import").token(&u.token).raw(&ct, body).send().await;
    r.expect(422, Some("validation_error"));
    assert_eq!(r.body["details"]["errors"][0]["field"], "file", "{}", r.body);
}

fn urlenc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn export_streams_csv_that_imports_back(b: Backend) {
    let app = TestApp::spawn(b).await;
    let u = et_user(&app, "exporter").await;
    let g = app.post("/v1/groups").token(&u.token).json(json!({"name": "g"})).send().await.id();
    let t = app.post("/v1/tags").token(&u.token).json(json!({"name": "vip"})).send().await.id();
    for i in 0..1205 {
        let mut body = json!({"phone": format!("0911{i:06}"), "first_name": format!("P{i}"), "attributes": {"n": i}});
        if i % 100 == 0 {
            body["attributes"]["note"] = json!("says \"hi\", twice\nnewline");
            body["channel_identities"] = json!({"telegram": format!("{i}")});
            body["tag_ids"] = json!([t]);
        }
        contact(&app, &u, body).await;
    }
    app.post(&format!("/v1/groups/{g}/contacts"))
        .token(&u.token)
        .json(json!({"filter": "attributes.n:lt:10"}))
        .send()
        .await
        .expect(200, None);
    let export = |q: &str| {
        let (app, token, q) = (&app, u.token.clone(), q.to_string());
        async move {
            let res = app
                .client
                .get(format!("{}/v1/contacts/export?{q}", app.address))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
            assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
            res.bytes().await.unwrap().to_vec()
        }
    };
    let all = export("").await;
    let mut reader = csv::Reader::from_reader(all.as_slice());
    let headers: Vec<String> = reader.headers().unwrap().iter().map(str::to_string).collect();
    assert!(headers.contains(&"attributes.n".to_string()));
    assert!(headers.contains(&"attributes.note".to_string()));
    assert!(headers.contains(&"channel_identities.telegram".to_string()));
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 1205, "every contact once, across pages of 1000");
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let first = rows.iter().find(|r| &r[col("first_name")] == "P0").unwrap();
    assert_eq!(&first[col("phone")], "+251911000000");
    assert_eq!(&first[col("attributes.note")], "says \"hi\", twice\nnewline");
    assert_eq!(&first[col("tags")], "vip");
    // Narrowed by a group, a segment or a filter.
    let by_group = export(&format!("group_id={g}")).await;
    assert_eq!(csv::Reader::from_reader(by_group.as_slice()).records().count(), 10);
    let s = app
        .post("/v1/segments")
        .token(&u.token)
        .json(json!({"name": "s", "filter": "attributes.n:ge:1200"}))
        .send()
        .await
        .id();
    let by_segment = export(&format!("segment_id={s}")).await;
    assert_eq!(csv::Reader::from_reader(by_segment.as_slice()).records().count(), 5);
    let none = export("filter=attributes.n:gt:5000").await;
    let mut r = csv::Reader::from_reader(none.as_slice());
    assert_eq!(r.headers().unwrap().get(4), Some("phone"));
    assert_eq!(r.records().count(), 0);
    app.get("/v1/contacts/export?filter=bad:eq:1").token(&u.token).send().await.expect(400, None);
    app.get("/v1/contacts/export?group_id=nope").token(&u.token).send().await.expect(400, None);

    // The export imports back unchanged into another account (headers are field names).
    let other = et_user(&app, "other").await;
    let r = import_csv(&app, &other, "", all).await;
    r.expect(202, None);
    let job = finished(&app, &other, &r.id()).await;
    assert_eq!(job["created"], 1205, "{job}");
    assert_eq!(job["error_count"], 0, "{job}");
    let r = app.get("/v1/contacts?filter=attributes.n:eq:100").token(&other.token).send().await;
    assert_eq!(r.data()[0]["attributes"]["note"], "says \"hi\", twice\nnewline");
    assert_eq!(r.data()[0]["channel_identities"]["telegram"], "100");
    assert_eq!(r.data()[0]["tags"][0]["name"], "vip");
}

async fn directory_streams_each_recipient_once(b: Backend) {
    let app = TestApp::spawn(b).await;
    let u = et_user(&app, "dir").await;
    let mk = |body: Value| contact(&app, &u, body);
    let a = mk(json!({"phone": "0911000001", "first_name": "a", "last_name": "Ab", "language": "am", "timezone": "Africa/Addis_Ababa", "attributes": {"score": 7, "since": "2026-01-01", "vip": true}, "channel_identities": {"telegram": "41"}})).await;
    let bb = mk(json!({"phone": "0911000002", "first_name": "b", "email": "b@example.org"})).await;
    let c = mk(json!({"phone": "0911000003", "first_name": "c"})).await;
    let d = mk(json!({"phone": "0911000004", "first_name": "d", "attributes": {"program": "x"}})).await;
    let e = mk(json!({"phone": "0911000005", "first_name": "e", "attributes": {"program": "x"}, "opted_out_channels": ["sms"]})).await;
    let f = mk(json!({"email": "f@example.org", "first_name": "f", "channel_identities": {"telegram": "77"}})).await;
    let _outside = mk(json!({"phone": "0911000007"})).await;
    let group = |name: &str, members: Vec<&String>| {
        let (app, token, name) = (&app, u.token.clone(), name.to_string());
        let members: Vec<String> = members.into_iter().cloned().collect();
        async move {
            let g = app.post("/v1/groups").token(&token).json(json!({"name": name})).send().await.id();
            app.post(&format!("/v1/groups/{g}/contacts"))
                .token(&token)
                .json(json!({"contact_ids": members}))
                .send()
                .await
                .expect(200, None);
            uuid::Uuid::parse_str(&g).unwrap()
        }
    };
    let g1 = group("g1", vec![&a, &bb, &c]).await;
    let g2 = group("g2", vec![&bb, &c, &d]).await;
    let s = app
        .post("/v1/segments")
        .token(&u.token)
        .json(json!({"name": "x", "filter": "attributes.program:eq:x"}))
        .send()
        .await
        .id();
    let uid = |s: &String| uuid::Uuid::parse_str(s).unwrap();
    let scope = app.state.accounts.operator_scope(uid(&u.account_id)).await.unwrap();
    let directory: &Directory = &app.state.directory;
    let audience = Audience {
        group_ids: vec![g1, g2],
        segment_ids: vec![uid(&s)],
        contact_ids: vec![uid(&f), uid(&a)],
        exclude_contact_ids: vec![uid(&c)],
        exclude_group_ids: vec![],
    };
    // SMS: a, b, d (c excluded, e opted out of sms, f has no phone), in batches of 2, each once.
    let mut stream = directory.stream(scope, &audience, "sms", 2, None).await.unwrap();
    let mut batches = Vec::new();
    while let Some(batch) = stream.next_batch().await.unwrap() {
        for r in &batch {
            // The streamed contact is the stored one, every field (SQLite decodes batches from JSON).
            assert_eq!(Some(&r.contact), directory.get(scope, r.contact.id).await.unwrap().as_ref());
        }
        batches
            .push(batch.iter().map(|r| (r.contact.first_name.clone().unwrap(), r.address.clone())).collect::<Vec<_>>());
    }
    let flat: Vec<(String, String)> = batches.concat();
    assert_eq!(
        flat,
        vec![
            ("a".into(), "+251911000001".into()),
            ("b".into(), "+251911000002".into()),
            ("d".into(), "+251911000004".into())
        ]
    );
    assert!(batches.iter().all(|b| b.len() <= 2));
    assert_eq!(directory.count(scope, &audience, "sms").await.unwrap(), 3);
    // E-mail: b and f; Telegram: f (its chat id); e is reachable on e-mail (opted out of sms only).
    let audience_ref = &audience;
    let names = |channel: &'static str| async move {
        let mut s = directory.stream(scope, audience_ref, channel, 100, None).await.unwrap();
        let mut out = Vec::new();
        while let Some(batch) = s.next_batch().await.unwrap() {
            out.extend(batch.into_iter().map(|r| format!("{}={}", r.contact.first_name.unwrap(), r.address)));
        }
        out
    };
    assert_eq!(names("email").await, vec!["b=b@example.org", "f=f@example.org"]);
    assert_eq!(names("telegram").await, vec!["a=41", "f=77"]);
    let only_e = Audience { contact_ids: vec![uid(&e)], ..Default::default() };
    assert_eq!(directory.count(scope, &only_e, "sms").await.unwrap(), 0);
    assert_eq!(directory.count(scope, &Audience::default(), "sms").await.unwrap(), 0, "an empty audience is nobody");
    let excluded_group = Audience { group_ids: vec![g1], exclude_group_ids: vec![g2], ..Default::default() };
    assert_eq!(directory.count(scope, &excluded_group, "sms").await.unwrap(), 1);
    // Another account's group or segment is not found.
    let m = app.user("m").await;
    let mscope = app.state.accounts.operator_scope(uid(&m.account_id)).await.unwrap();
    assert!(
        directory
            .stream(mscope, &Audience { group_ids: vec![g1], ..Default::default() }, "sms", 10, None)
            .await
            .is_err()
    );
    assert!(
        directory.count(mscope, &Audience { segment_ids: vec![uid(&s)], ..Default::default() }, "sms").await.is_err()
    );
    assert!(directory.count(mscope, &Audience { group_ids: vec![g1], ..Default::default() }, "sms").await.is_err());
    let foreign_exclusion = Audience { contact_ids: vec![uid(&a)], exclude_group_ids: vec![g2], ..Default::default() };
    assert!(
        directory.count(mscope, &foreign_exclusion, "sms").await.is_err(),
        "an excluded group of another account is not found either"
    );
    assert_eq!(
        directory.count(mscope, &Audience { contact_ids: vec![uid(&a)], ..Default::default() }, "sms").await.unwrap(),
        0
    );

    // Inbound senders: found by address (national or international phone, identity), or created once,
    // inside the caller's transaction.
    let upsert = |channel_type: &'static str, address: &'static str, display_name: Option<&'static str>| {
        let (state, directory) = (app.state.clone(), directory.clone());
        async move {
            let txn = turumba::db::begin_write(&state.db).await.unwrap();
            let mut bus = EventBus::new(EventMeta::default());
            let sender = InboundSender { channel_type, address, display_name, at: chrono::Utc::now() };
            let found = directory.upsert_inbound(&txn, &mut bus, scope, sender).await;
            if found.is_ok() {
                state.events.commit(txn, bus).await.unwrap();
            }
            found.map(|c| (c.contact, c.created))
        }
    };
    let (found, created) = upsert("sms", "0911000001", None).await.unwrap();
    assert_eq!((found.id, created), (uid(&a), false));
    let (new, created) = upsert("telegram", "999", Some("Tg User")).await.unwrap();
    assert!(created);
    let (again, created) = upsert("telegram", "999", None).await.unwrap();
    assert_eq!((again.id, created), (new.id, false));
    // Two messages from the same new sender at once: one contact. The loser of the race is told to
    // retry (a conflict, its transaction rolled back) or, when it started after the winner committed,
    // finds it; a retry finds it.
    let (x, y) = tokio::join!(upsert("messenger", "psid-42", None), upsert("messenger", "psid-42", None));
    let created: Vec<bool> = [&x, &y].iter().filter_map(|r| r.as_ref().ok().map(|c| c.1)).collect();
    assert_eq!(created.iter().filter(|c| **c).count(), 1, "exactly one of them created the contact: {x:?} {y:?}");
    for r in [x, y] {
        if let Err(e) = r {
            assert!(matches!(e, turumba::error::AppError::Conflict { .. }), "{e:?}");
        }
    }
    let (retried, created) = upsert("messenger", "psid-42", None).await.unwrap();
    assert!(!created);
    let r = app.get("/v1/contacts?filter=channel_identities.messenger:eq:psid-42").token(&u.token).send().await;
    assert_eq!((r.body["meta"]["total"].clone(), r.body["data"][0]["id"].clone()), (json!(1), json!(retried.id)));
    let r = app.get(&format!("/v1/contacts/{}", new.id)).token(&u.token).send().await;
    assert_eq!(r.data()["display_name"], "Tg User");
    assert!(r.data()["last_inbound_at"].is_string());
    let r = app.get("/v1/contacts?filter=last_inbound_at:is_not_null&sort=created_at:asc").token(&u.token).send().await;
    assert_eq!(r.body["meta"]["total"], 3);
    assert_eq!(directory.find_by_address(scope, "email", "B@EXAMPLE.org").await.unwrap().unwrap().id, uid(&bb));
    assert!(directory.find_by_address(mscope, "email", "b@example.org").await.unwrap().is_none());
}

/// A user, their account's scope and plain import options, for driving import jobs directly.
pub async fn import_job_setup(
    app: &TestApp,
    name: &str,
) -> (TestUser, turumba::modules::accounts::AccountScope, turumba::modules::contacts::ImportOptions) {
    let u = et_user(app, name).await;
    let scope = app.state.accounts.operator_scope(uuid::Uuid::parse_str(&u.account_id).unwrap()).await.unwrap();
    let options = turumba::modules::contacts::ImportOptions {
        mapping: None,
        on_duplicate: turumba::modules::contacts::OnDuplicate::Skip,
        group_id: None,
        tag_ids: vec![],
    };
    (u, scope, options)
}

/// An import whose process died (it stopped writing batches) is marked failed by the sweeper, with the
/// counts of what it wrote; a live one is left alone.
async fn interrupted_imports_are_marked_failed(b: Backend) {
    use sea_orm::{ConnectionTrait, Statement};
    let app = TestApp::spawn(b).await;
    let (u, scope, options) = import_job_setup(&app, "crash").await;
    let dead = app.state.contacts.create_import(scope, None, Some("dead.csv".into()), &options).await.unwrap();
    let live = app.state.contacts.create_import(scope, None, Some("live.csv".into()), &options).await.unwrap();
    // The dead one wrote 500 rows, then its process stopped ten minutes ago.
    let db = &app.state.db;
    let backend = db.get_database_backend();
    let old = chrono::Utc::now() - chrono::Duration::minutes(10);
    let sql = match backend {
        sea_orm::DbBackend::Postgres => {
            "UPDATE contact_imports SET status = 'running', total_rows = 500, created = 500, updated_at = $1 WHERE id = $2"
        }
        _ => {
            "UPDATE contact_imports SET status = 'running', total_rows = 500, created = 500, updated_at = ? WHERE id = ?"
        }
    };
    db.execute_raw(Statement::from_sql_and_values(backend, sql, [old.into(), dead.id.into()])).await.unwrap();
    assert_eq!(app.state.contacts.fail_stale_imports().await.unwrap(), 1);
    let r = app.get(&format!("/v1/contacts/imports/{}", dead.id)).token(&u.token).send().await;
    assert_eq!(r.data()["status"], "failed");
    assert_eq!(r.data()["created"], 500);
    assert!(r.data()["message"].as_str().unwrap().contains("interrupted"));
    let r = app.get(&format!("/v1/contacts/imports/{}", live.id)).token(&u.token).send().await;
    assert_eq!(r.data()["status"], "queued", "a job that is still being written is not touched");
}

/// `meta.total` of the unfiltered contact list, and of a filtered one that matches every contact.
async fn list_totals(app: &TestApp, u: &TestUser) -> (u64, u64) {
    let mut totals = [0; 2];
    for (i, query) in ["", "&filter=id:is_not_null"].iter().enumerate() {
        let r = app.get(&format!("/v1/contacts?limit=1{query}")).token(&u.token).send().await;
        r.expect(200, None);
        totals[i] = r.body["meta"]["total"].as_u64().unwrap();
    }
    (totals[0], totals[1])
}

/// The unfiltered list's `meta.total` is the account's kept total, not a count: exact through single
/// creates (several at once), an import, a contact made for an inbound sender and deletes, and only
/// the account's own contacts. Checked against the counted total of a filtered list matching all.
async fn the_contact_list_total_is_kept_exact(b: Backend) {
    let app = TestApp::spawn(b).await;
    let u = et_user(&app, "totals").await;
    let other = et_user(&app, "totals-other").await;
    contact(&app, &other, json!({"phone": "0911000099"})).await;
    assert_eq!(list_totals(&app, &u).await, (0, 0));

    let creates = (0..8).map(|i| contact(&app, &u, json!({"phone": format!("09110001{i:02}")})));
    let ids = futures_util::future::join_all(creates).await;
    assert_eq!(list_totals(&app, &u).await, (8, 8), "created at once");

    // 5 new rows, 1 already there (skipped), 1 bad.
    let file = "phone\n0911000200\n0911000201\n0911000202\n0911000203\n0911000204\n0911000100\nnot a phone\n";
    let r = import_csv(&app, &u, "on_duplicate=skip", file.as_bytes().to_vec()).await;
    r.expect(202, None);
    let job = finished(&app, &u, &r.id()).await;
    assert_eq!((job["created"].as_u64(), job["skipped"].as_u64()), (Some(5), Some(1)), "{job}");
    assert_eq!(list_totals(&app, &u).await, (13, 13), "imported");

    let account_id = uuid::Uuid::parse_str(&u.account_id).unwrap();
    let scope = app.state.accounts.operator_scope(account_id).await.unwrap();
    let txn = turumba::db::begin_write(&app.state.db).await.unwrap();
    let mut bus = EventBus::new(EventMeta::default());
    let sender =
        InboundSender { channel_type: "telegram", address: "4242", display_name: None, at: chrono::Utc::now() };
    assert!(app.state.directory.upsert_inbound(&txn, &mut bus, scope, sender).await.unwrap().created);
    app.state.events.commit(txn, bus).await.unwrap();
    assert_eq!(list_totals(&app, &u).await, (14, 14), "an inbound sender's contact");

    for id in &ids[..3] {
        app.delete(&format!("/v1/contacts/{id}")).token(&u.token).send().await.expect(204, None);
    }
    assert_eq!(list_totals(&app, &u).await, (11, 11), "deleted");
    assert_eq!(list_totals(&app, &other).await, (1, 1), "the other account's own");
}

both_backends!(
    interrupted_imports_are_marked_failed,
    a_mixed_file_imports_the_good_rows_and_reports_every_bad_one,
    import_input_errors_are_clear,
    export_streams_csv_that_imports_back,
    directory_streams_each_recipient_once,
    the_contact_list_total_is_kept_exact,
);
