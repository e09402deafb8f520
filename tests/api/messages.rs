//! Single messages (SPEC §6.2): `POST /v1/messages` → 201 `queued` with its dispatch event, every bad
//! input named, idempotency keys, the history's filters and cursors, cancel, delete and tenant isolation.

use serde_json::{Value, json};

use crate::channels::outbox_text;
use crate::contacts::{contact, et_user};
use crate::helpers::{Backend, TestApp, TestUser};

/// An app whose dispatcher does not run: these tests look at messages while they are queued.
async fn queued_only(b: Backend) -> TestApp {
    TestApp::spawn_full(b, |_| {}, turumba::app::BuildOptions { dispatch: false, ..Default::default() }).await
}

pub async fn sandbox(app: &TestApp, u: &TestUser, name: &str) -> String {
    let r = app
        .post("/v1/channels")
        .token(&u.token)
        .json(json!({"name": name, "channel_type": "sandbox", "credentials": {}}))
        .send()
        .await;
    r.expect(201, None);
    r.id()
}

async fn messages_are_queued_with_their_dispatch_event_and_validated(b: Backend) {
    let app = queued_only(b).await;
    let u = et_user(&app, "sender").await;
    let ch = sandbox(&app, &u, "sandbox").await;
    let abebe =
        contact(&app, &u, json!({"phone": "0911000001", "first_name": "Abebe", "attributes": {"room": "B12"}})).await;
    let send = |body: Value| app.post("/v1/messages").token(&u.token).json(body).send();

    let r = send(json!({"channel_id": ch, "contact_id": abebe, "message_body": "Selam!"})).await;
    r.expect(201, None);
    let d = r.data().clone();
    assert_eq!(
        (d["status"].as_str(), d["direction"].as_str(), d["delivery_address"].as_str(), d["attempts"].as_i64()),
        (Some("queued"), Some("outbound"), Some("+251911000001"), Some(0))
    );
    assert_eq!((d["metadata"]["segments"].clone(), d["metadata"]["encoding"].clone()), (json!(1), json!("GSM-7")));
    assert_eq!(d["sent_by_user_id"], u.user_id.as_str());
    assert_eq!(d["channel_type"], "sandbox");
    let first = d["id"].as_str().unwrap().to_string();
    let events = outbox_text(&app).await;
    let dispatch: Vec<&str> = events.lines().filter(|l| l.starts_with("message.dispatch.sandbox ")).collect();
    assert_eq!(dispatch.len(), 1, "{events}");
    let payload: Value = serde_json::from_str(dispatch[0].trim_start_matches("message.dispatch.sandbox ")).unwrap();
    assert_eq!(payload["data"]["message_ids"], json!([first]));

    // A template rendered for the contact; the message keeps the text it was rendered from.
    let t = app
        .post("/v1/templates")
        .token(&u.token)
        .json(json!({"name": "t", "body": "Hi {FIRST_NAME}, room {ROOM}, code {CODE}"}))
        .send()
        .await
        .id();
    let r = send(json!({"channel_id": ch, "contact_id": abebe, "template_id": t, "custom_values": {"CODE": 7}})).await;
    r.expect(201, None);
    assert_eq!(r.data()["message_body"], "Hi Abebe, room B12, code 7");
    assert_eq!(r.data()["original_template"], "Hi {FIRST_NAME}, room {ROOM}, code {CODE}");
    let templated = r.id();
    app.patch(&format!("/v1/templates/{t}"))
        .token(&u.token)
        .json(json!({"body": "changed"}))
        .send()
        .await
        .expect(200, None);
    let r = app.get(&format!("/v1/messages/{templated}")).token(&u.token).send().await;
    assert_eq!(r.data()["message_body"], "Hi Abebe, room B12, code 7");

    // An address alone, in the account's national format.
    let r = send(json!({"channel_id": ch, "delivery_address": "0911 000 777", "message_body": "ሰላም"})).await;
    r.expect(201, None);
    assert_eq!(
        (r.data()["delivery_address"].clone(), r.data()["contact_id"].clone()),
        (json!("+251911000777"), json!(null))
    );
    assert_eq!(r.data()["metadata"]["encoding"], "UCS-2");

    // Every bad input is a 422 naming its field (nothing is written).
    let other = app.user("sender-other").await;
    let foreign_channel = sandbox(&app, &other, "theirs").await;
    let foreign_template =
        app.post("/v1/templates").token(&other.token).json(json!({"name": "x", "body": "x"})).send().await.id();
    let disabled = sandbox(&app, &u, "off").await;
    app.patch(&format!("/v1/channels/{disabled}"))
        .token(&u.token)
        .json(json!({"is_enabled": false}))
        .send()
        .await
        .expect(200, None);
    let opted = contact(&app, &u, json!({"phone": "0911000002", "opted_out_channels": ["sandbox"]})).await;
    let no_phone = contact(&app, &u, json!({"email": "nophone@example.org"})).await;
    let strict = app
        .post("/v1/templates")
        .token(&u.token)
        .json(json!({"name": "strict", "body": "{GRADE}", "fallback_strategy": "skip_contact"}))
        .send()
        .await
        .id();
    let many: Vec<Value> = (0..11).map(|i| json!({"url": format!("https://cdn.example.org/{i}.png")})).collect();
    let before = app.get("/v1/messages").token(&u.token).send().await.body["meta"]["total"].clone();
    for (body, field, needle) in [
        (
            json!({"channel_id": foreign_channel, "contact_id": abebe, "message_body": "x"}),
            "channel_id",
            "no such channel",
        ),
        (
            json!({"channel_id": uuid::Uuid::now_v7(), "contact_id": abebe, "message_body": "x"}),
            "channel_id",
            "no such channel",
        ),
        (json!({"channel_id": disabled, "contact_id": abebe, "message_body": "x"}), "channel_id", "disabled"),
        (json!({"channel_id": ch, "message_body": "x"}), "contact_id", "contact_id or delivery_address"),
        (json!({"channel_id": ch, "contact_id": opted, "message_body": "x"}), "contact_id", "opted_out"),
        (json!({"channel_id": ch, "contact_id": no_phone, "message_body": "x"}), "contact_id", "no address"),
        (
            json!({"channel_id": ch, "contact_id": uuid::Uuid::now_v7(), "message_body": "x"}),
            "contact_id",
            "no such contact",
        ),
        (json!({"channel_id": ch, "delivery_address": "12", "message_body": "x"}), "delivery_address", ""),
        (json!({"channel_id": ch, "contact_id": abebe}), "message_body", "exactly one"),
        (
            json!({"channel_id": ch, "contact_id": abebe, "message_body": "x", "template_id": t}),
            "message_body",
            "exactly one",
        ),
        (json!({"channel_id": ch, "contact_id": abebe, "message_body": "  "}), "message_body", "empty"),
        (
            json!({"channel_id": ch, "contact_id": abebe, "template_id": foreign_template}),
            "template_id",
            "no such template",
        ),
        (
            json!({"channel_id": ch, "contact_id": abebe, "template_id": strict}),
            "custom_values",
            "missing_variable:GRADE",
        ),
        (
            json!({"channel_id": ch, "contact_id": abebe, "message_body": "x", "attachments": many}),
            "attachments",
            "at most 10",
        ),
        (
            json!({"channel_id": ch, "contact_id": abebe, "message_body": "x", "metadata": {"segments": 9}}),
            "metadata",
            "set by Turumba",
        ),
    ] {
        let r = send(body.clone()).await;
        r.expect(422, Some("validation_error"));
        assert_eq!(r.error_fields(), vec![field.to_string()], "{body}: {}", r.body);
        assert!(r.body.to_string().contains(needle), "{body}: {}", r.body);
    }
    send(json!({"channel_id": "nope", "message_body": "x"})).await.expect(422, Some("validation_error"));
    send(json!({"channel_id": ch, "message_body": "x", "surprise": 1})).await.expect(422, Some("validation_error"));
    let after = app.get("/v1/messages").token(&u.token).send().await.body["meta"]["total"].clone();
    assert_eq!(before, after, "refused sends write nothing");
    // The template still sends once the missing value is given.
    let r =
        send(json!({"channel_id": ch, "contact_id": abebe, "template_id": strict, "custom_values": {"GRADE": "A"}}))
            .await;
    assert_eq!(r.data()["message_body"], "A");
}

async fn the_history_filters_pages_by_cursor_cancels_and_deletes(b: Backend) {
    let app = queued_only(b).await;
    let u = et_user(&app, "history").await;
    let ch = sandbox(&app, &u, "sandbox").await;
    let a = contact(&app, &u, json!({"phone": "0911000011"})).await;
    let c = contact(&app, &u, json!({"phone": "0911000012"})).await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let to = if i % 2 == 0 { &a } else { &c };
        let r = app
            .post("/v1/messages")
            .token(&u.token)
            .json(json!({"channel_id": ch, "contact_id": to, "message_body": format!("m{i}")}))
            .send()
            .await;
        ids.push(r.id());
    }
    let get = |path: String| app.get(&path).token(&u.token).send();

    // Newest first; a full page carries next_cursor; following it visits every message once.
    let mut seen = Vec::new();
    let mut path = "/v1/messages?limit=3".to_string();
    loop {
        let r = get(path.clone()).await;
        r.expect(200, None);
        assert_eq!(r.body["meta"]["total"], 7);
        seen.extend(r.data().as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_string()));
        match r.body["meta"]["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/messages?limit=3&cursor={cursor}"),
            None => break,
        }
    }
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);
    // Ascending works the same way.
    let r = get("/v1/messages?limit=4&sort=created_at:asc".into()).await;
    let cursor = r.body["meta"]["next_cursor"].as_str().unwrap().to_string();
    let r = get(format!("/v1/messages?limit=4&sort=created_at:asc&cursor={cursor}")).await;
    let rest: Vec<String> =
        r.data().as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(rest, ids[4..].to_vec());
    // Cursors are checked.
    let mut tampered = cursor.clone();
    tampered.replace_range(2..3, if &cursor[2..3] == "A" { "B" } else { "A" });
    get(format!("/v1/messages?cursor={tampered}")).await.expect(400, Some("bad_request"));
    get("/v1/messages?cursor=garbage".into()).await.expect(400, Some("bad_request"));
    get(format!("/v1/messages?sort=created_at:asc&cursor={}", newest_first_cursor(&app, &u).await))
        .await
        .expect(400, Some("bad_request"));
    get(format!("/v1/messages?sort=status:asc&cursor={cursor}")).await.expect(400, Some("bad_request"));
    get(format!("/v1/messages?skip=1&sort=created_at:asc&cursor={cursor}")).await.expect(400, Some("bad_request"));

    // Filters and a contact's conversation.
    assert_eq!(get(format!("/v1/messages?filter=contact_id:eq:{a}")).await.body["meta"]["total"], 4);
    assert_eq!(
        get("/v1/messages?filter=status:eq:queued&filter=direction:eq:outbound".into()).await.body["meta"]["total"],
        7
    );
    assert_eq!(get("/v1/messages?filter=delivery_address:contains:000012".into()).await.body["meta"]["total"], 3);
    get("/v1/messages?filter=message_body:eq:m1".into()).await.expect(400, Some("bad_request"));
    let r = get(format!("/v1/contacts/{c}/messages")).await;
    r.expect(200, None);
    assert_eq!(r.body["meta"]["total"], 3);
    assert_eq!(r.data()[0]["id"], ids[5].as_str(), "newest first");

    // Cancel a queued message; metadata edits keep what Turumba set.
    let m = &ids[0];
    let r = app
        .patch(&format!("/v1/messages/{m}"))
        .token(&u.token)
        .json(json!({"metadata": {"campaign": "march"}}))
        .send()
        .await;
    assert_eq!(r.data()["metadata"], json!({"campaign": "march", "segments": 1, "encoding": "GSM-7"}));
    app.delete(&format!("/v1/messages/{m}")).token(&u.token).send().await.expect(409, Some("conflict"));
    app.patch(&format!("/v1/messages/{m}"))
        .token(&u.token)
        .json(json!({"status": "sent"}))
        .send()
        .await
        .expect(422, None);
    let r = app.patch(&format!("/v1/messages/{m}")).token(&u.token).json(json!({"status": "cancelled"})).send().await;
    assert_eq!(r.data()["status"], "cancelled");
    app.patch(&format!("/v1/messages/{m}"))
        .token(&u.token)
        .json(json!({"status": "cancelled"}))
        .send()
        .await
        .expect(409, Some("conflict"));
    app.delete(&format!("/v1/messages/{m}")).token(&u.token).send().await.expect(204, None);
    get(format!("/v1/messages/{m}")).await.expect(404, Some("not_found"));

    // Another account sees none of it.
    let mallory = app.user("mallory-m").await;
    let path = format!("/v1/messages/{}", ids[1]);
    app.get(&path).token(&mallory.token).send().await.expect(404, Some("not_found"));
    app.patch(&path)
        .token(&mallory.token)
        .json(json!({"status": "cancelled"}))
        .send()
        .await
        .expect(404, Some("not_found"));
    app.delete(&path).token(&mallory.token).send().await.expect(404, Some("not_found"));
    app.get(&format!("/v1/contacts/{c}/messages")).token(&mallory.token).send().await.expect(404, Some("not_found"));
    assert_eq!(app.get("/v1/messages").token(&mallory.token).send().await.body["meta"]["total"], 0);
    let theirs = sandbox(&app, &mallory, "m").await;
    let r = app
        .post("/v1/messages")
        .token(&mallory.token)
        .json(json!({"channel_id": theirs, "contact_id": a, "message_body": "x"}))
        .send()
        .await;
    assert_eq!(r.error_fields(), vec!["contact_id"], "another account's contact is not found");
}

/// The cursor of the first page in the default (newest first) order.
async fn newest_first_cursor(app: &TestApp, u: &TestUser) -> String {
    let r = app.get("/v1/messages?limit=1").token(&u.token).send().await;
    r.body["meta"]["next_cursor"].as_str().unwrap().to_string()
}

async fn idempotency_keys_replay_the_first_answer(b: Backend) {
    let app = queued_only(b).await;
    let u = et_user(&app, "idem").await;
    let ch = sandbox(&app, &u, "sandbox").await;
    let body = json!({"channel_id": ch, "delivery_address": "+251911000100", "message_body": "once"});
    let send = |key: &str, body: Value| {
        app.post("/v1/messages").token(&u.token).header("Idempotency-Key", key).json(body).send()
    };
    let first = send("order-42", body.clone()).await;
    first.expect(201, None);
    let again = send("order-42", body.clone()).await;
    assert_eq!(again.status, 201);
    assert_eq!(again.data()["id"], first.data()["id"]);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    // The same key with another body is refused; another key is another message.
    let r =
        send("order-42", json!({"channel_id": ch, "delivery_address": "+251911000100", "message_body": "twice"})).await;
    r.expect(422, Some("validation_error"));
    assert!(r.body.to_string().contains("idempotency_key_reused"), "{}", r.body);
    assert_ne!(send("order-43", body.clone()).await.data()["id"], first.data()["id"]);
    send(&"k".repeat(256), body.clone()).await.expect(400, Some("bad_request"));
    // Ten parallel repeats of a new key create one message; every answer names it.
    let answers = futures_util::future::join_all((0..10).map(|_| send("burst-1", body.clone()))).await;
    let ids: std::collections::BTreeSet<String> =
        answers.iter().map(|r| r.data()["id"].as_str().expect("an answer with the message").to_string()).collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let total = app.get("/v1/messages").token(&u.token).send().await.body["meta"]["total"].clone();
    assert_eq!(total, 3);
    // Keys are per account.
    let other = et_user(&app, "idem-other").await;
    let theirs = sandbox(&app, &other, "s").await;
    let r = app
        .post("/v1/messages")
        .token(&other.token)
        .header("Idempotency-Key", "order-42")
        .json(json!({"channel_id": theirs, "delivery_address": "+251911000100", "message_body": "once"}))
        .send()
        .await;
    r.expect(201, None);
    assert_ne!(r.data()["id"], first.data()["id"]);
}

/// The history is counted up to 1,000 matches: below that `meta.total` is exact, above it is 1,001
/// with `total_is_lower_bound` (a million-row history costs a page, not a count of a million);
/// `count=exact` counts them all.
async fn a_long_history_is_counted_up_to_a_bound(b: Backend) {
    use sea_orm::{ConnectionTrait, Statement};
    let app = queued_only(b).await;
    let u = app.user("longhistory").await;
    let ch = sandbox(&app, &u, "s").await;
    let r = app
        .post("/v1/messages")
        .token(&u.token)
        .json(json!({"channel_id": ch, "delivery_address": "+251911000001", "message_body": "one"}))
        .send()
        .await;
    r.expect(201, None);
    let r = app.get("/v1/messages").token(&u.token).send().await;
    assert_eq!(
        (r.body["meta"]["total"].clone(), r.body["meta"]["total_is_lower_bound"].clone()),
        (json!(1), json!(false))
    );
    // 10,050 more copies of that row, each a second older.
    let cols = "account_id, channel_id, channel_type, direction, status, delivery_address, message_body, attachments, attempts, metadata, updated_at";
    let db = &app.state.db;
    let backend = db.get_database_backend();
    let sql = match backend {
        sea_orm::DbBackend::Postgres => format!(
            "INSERT INTO messages (id, created_at, {cols}) SELECT gen_random_uuid(), created_at - make_interval(secs => g), {cols} \
             FROM messages, generate_series(1, 10050) g"
        ),
        _ => format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10050) \
             INSERT INTO messages (id, created_at, {cols}) SELECT randomblob(16), strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now', '-' || (i + 60) || ' seconds'), {cols} \
             FROM n, messages"
        ),
    };
    db.execute_raw(Statement::from_string(backend, sql)).await.unwrap();
    let r = app.get("/v1/messages?limit=50").token(&u.token).send().await;
    r.expect(200, None);
    assert_eq!(
        (r.body["meta"]["total"].clone(), r.body["meta"]["total_is_lower_bound"].clone()),
        (json!(1_001), json!(true))
    );
    let r = app.get("/v1/messages?limit=50&count=exact").token(&u.token).send().await;
    assert_eq!(
        (r.body["meta"]["total"].clone(), r.body["meta"]["total_is_lower_bound"].clone()),
        (json!(10_051), json!(false))
    );
    app.get("/v1/messages?count=roughly").token(&u.token).send().await.expect(400, Some("bad_request"));
    let cursor = r.body["meta"]["next_cursor"].as_str().unwrap().to_string();
    let r = app.get(&format!("/v1/messages?limit=50&cursor={cursor}")).token(&u.token).send().await;
    assert_eq!(r.body["data"].as_array().unwrap().len(), 50);
    assert_eq!(r.body["meta"]["total_is_lower_bound"], true);
    // A filter that matches fewer is counted exactly.
    let r = app.get("/v1/messages?filter=delivery_address:eq:nobody").token(&u.token).send().await;
    assert_eq!(
        (r.body["meta"]["total"].clone(), r.body["meta"]["total_is_lower_bound"].clone()),
        (json!(0), json!(false))
    );
}

/// A transaction that keeps every send from being written until it ends: SQLite's write lock, or on
/// PostgreSQL the `messages` table locked against inserts (reads go on).
async fn hold_the_writer(app: &TestApp) -> sea_orm::DatabaseTransaction {
    use sea_orm::ConnectionTrait;
    let db = &app.state.db;
    let hold = turumba::db::begin_write(db).await.unwrap();
    if db.get_database_backend() == sea_orm::DbBackend::Postgres {
        hold.execute_unprepared("LOCK TABLE messages IN EXCLUSIVE MODE").await.unwrap();
    }
    hold
}

/// Sends that wait at one moment are written in one transaction. With the database's writer held up
/// (SQLite's write lock, PostgreSQL's `messages` table locked), twenty sends on two channels queue;
/// once it is released they are committed together: fewer dispatch doorbells than messages, every id
/// rung once, and each 201 answer is exactly the row as it is read back.
async fn sends_waiting_together_are_committed_together(b: Backend) {
    let app = queued_only(b).await;
    let u = et_user(&app, "batched").await;
    let (one, two) = (sandbox(&app, &u, "one").await, sandbox(&app, &u, "two").await);
    let hold = hold_the_writer(&app).await;
    let sends = futures_util::future::join_all((0..20).map(|i| {
        let ch = if i % 2 == 0 { &one } else { &two };
        let body =
            json!({"channel_id": ch, "delivery_address": format!("+2519110002{i:02}"), "message_body": "together"});
        app.post("/v1/messages").token(&u.token).json(body).send()
    }));
    let release = async {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        hold.commit().await.unwrap();
    };
    let (answers, ()) = tokio::join!(sends, release);
    let mut ids = std::collections::BTreeSet::new();
    for r in &answers {
        r.expect(201, None);
        let stored = app.get(&format!("/v1/messages/{}", r.id())).token(&u.token).send().await;
        assert_eq!(stored.data(), r.data(), "the answer is the stored row");
        ids.insert(r.id());
    }
    assert_eq!(ids.len(), 20);
    let events = outbox_text(&app).await;
    let doorbells: Vec<Value> = events
        .lines()
        .filter_map(|l| l.strip_prefix("message.dispatch.sandbox "))
        .map(|p| serde_json::from_str(p).unwrap())
        .collect();
    assert!(doorbells.len() < 20, "{} doorbells for 20 sends: nothing was committed together", doorbells.len());
    let mut rung = Vec::new();
    for d in &doorbells {
        let ids_of_one_channel: Vec<String> =
            d["data"]["message_ids"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
        for id in &ids_of_one_channel {
            let r = app.get(&format!("/v1/messages/{id}")).token(&u.token).send().await;
            assert_eq!(r.data()["channel_id"], d["data"]["channel_id"], "a doorbell rings one channel");
        }
        rung.extend(ids_of_one_channel);
    }
    rung.sort();
    assert_eq!(rung, ids.into_iter().collect::<Vec<_>>(), "every message is rung exactly once");
}

/// A batch that cannot be written as a whole is written one send at a time, so a send that cannot be
/// written fails alone: another account's sends, deleted while its sends waited beside ours, are 409s,
/// ours are all written.
async fn a_send_that_cannot_be_written_fails_alone(b: Backend) {
    use sea_orm::ConnectionTrait;
    use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};
    let app = queued_only(b).await;
    let (ours, theirs) = (et_user(&app, "stays").await, et_user(&app, "leaves").await);
    let (our_ch, their_ch) = (sandbox(&app, &ours, "s").await, sandbox(&app, &theirs, "s").await);
    let hold = hold_the_writer(&app).await;
    let sends = futures_util::future::join_all((0..12).map(|i| {
        let (u, ch) = if i % 2 == 0 { (&ours, &our_ch) } else { (&theirs, &their_ch) };
        let body = json!({"channel_id": ch, "delivery_address": "+251911000300", "message_body": format!("n{i}")});
        app.post("/v1/messages").token(&u.token).json(body).send()
    }));
    let delete_theirs = async {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let id = uuid::Uuid::parse_str(&theirs.account_id).unwrap();
        let q =
            Query::delete().from_table(Alias::new("accounts")).and_where(Expr::col(Alias::new("id")).eq(id)).to_owned();
        hold.execute(&q).await.unwrap();
        hold.commit().await.unwrap();
    };
    let (answers, ()) = tokio::join!(sends, delete_theirs);
    for (i, r) in answers.iter().enumerate() {
        if i % 2 == 0 {
            r.expect(201, None);
            app.get(&format!("/v1/messages/{}", r.id())).token(&ours.token).send().await.expect(200, None);
        } else {
            r.expect(409, Some("conflict"));
        }
    }
    let r = app.get("/v1/messages").token(&ours.token).send().await;
    assert_eq!(r.body["meta"]["total"], 6);
}

/// Sends read their channel from memory between changes (`Channels::for_send`), and a change made
/// through the API is seen by the very next send: shown in steps — a change written behind the
/// server's back (raw SQL, no announcement) is not seen, which proves the send answered from memory;
/// a PATCH then is; so are re-enabling and deleting the channel.
async fn a_channel_changed_after_sends_read_it_is_read_again_at_once(b: Backend) {
    let app = queued_only(b).await;
    let u = et_user(&app, "changer").await;
    let ch = sandbox(&app, &u, "sandbox").await;
    let send = || {
        app.post("/v1/messages")
            .token(&u.token)
            .json(json!({"channel_id": ch, "delivery_address": "+251911000001", "message_body": "x"}))
            .send()
    };
    crate::helpers::eventually(10, "the server remembers", || async { app.state.memo.is_live() }).await;
    send().await.expect(201, None);

    let db = sea_orm::Database::connect(app.settings.database_url.clone()).await.unwrap();
    let sql = format!("UPDATE channels SET is_enabled = false WHERE id = '{ch}'");
    sea_orm::ConnectionTrait::execute_unprepared(&db, &sql).await.unwrap();
    send().await.expect(201, None);

    let patch = |enabled: bool| {
        app.patch(&format!("/v1/channels/{ch}")).token(&u.token).json(json!({"is_enabled": enabled})).send()
    };
    patch(false).await.expect(200, None);
    let r = send().await;
    r.expect(422, Some("validation_error"));
    assert!(r.body.to_string().contains("disabled"), "{}", r.body);
    patch(true).await.expect(200, None);
    send().await.expect(201, None);
    app.delete(&format!("/v1/channels/{ch}")).token(&u.token).send().await.expect(204, None);
    let r = send().await;
    r.expect(422, Some("validation_error"));
    assert!(r.body.to_string().contains("no such channel"), "{}", r.body);
    db.close().await.ok();
}

/// Two API servers on one PostgreSQL database: a channel disabled through the first is refused by the
/// second on its next send — through the database's notification, not the expiry (an hour here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_changes_reach_every_server_at_once() {
    let Some(backend) = Backend::postgres() else { return };
    let first = TestApp::spawn_full(
        backend,
        |s| s.accounts.access_cache_seconds = 3600,
        turumba::app::BuildOptions { dispatch: false, ..Default::default() },
    )
    .await;
    let second = first.spawn_beside(|_| {}).await;
    let u = et_user(&first, "two-servers").await;
    let ch = sandbox(&first, &u, "sandbox").await;
    crate::helpers::eventually(10, "the second server remembers", || async { second.state.memo.is_live() }).await;
    let send = || {
        second
            .post("/v1/messages")
            .token(&u.token)
            .json(json!({"channel_id": ch, "delivery_address": "+251911000001", "message_body": "x"}))
            .send()
    };
    send().await.expect(201, None);
    first
        .patch(&format!("/v1/channels/{ch}"))
        .token(&u.token)
        .json(json!({"is_enabled": false}))
        .send()
        .await
        .expect(200, None);
    crate::helpers::eventually(5, "the second server refuses a channel the first disabled", || async {
        send().await.status == 422
    })
    .await;
}

both_backends!(
    a_channel_changed_after_sends_read_it_is_read_again_at_once,
    a_long_history_is_counted_up_to_a_bound,
    a_send_that_cannot_be_written_fails_alone,
    sends_waiting_together_are_committed_together,
    messages_are_queued_with_their_dispatch_event_and_validated,
    the_history_filters_pages_by_cursor_cancels_and_deletes,
    idempotency_keys_replay_the_first_answer,
);
