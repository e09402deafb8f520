//! Scheduled messages: validation with the field named, occurrences in a time zone, edits only while
//! pending or paused, pause/resume/cancel, tenant isolation, and the scheduler driven by the test's own
//! clock (never by sleeping): each occurrence fires once even with two schedulers racing, misfires
//! follow the policy, and an occurrence whose send cannot be made is recorded as failed.

use chrono::{DateTime, Duration, SubsecRound, Utc};
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

use crate::contacts::{contact, et_user};
use crate::helpers::*;
use crate::messages::sandbox;

async fn no_scheduler(b: Backend) -> TestApp {
    TestApp::spawn_full(b, |_| {}, turumba::app::BuildOptions { dispatch: false, ..Default::default() }).await
}

fn at(v: &Value) -> DateTime<Utc> {
    v.as_str().and_then(|s| DateTime::parse_from_rfc3339(s).ok()).map(|t| t.with_timezone(&Utc)).expect("a timestamp")
}

/// Tomorrow's date (UTC), as `YYYY-MM-DD`.
fn tomorrow() -> String {
    (Utc::now() + Duration::days(1)).format("%Y-%m-%d").to_string()
}

async fn schedules_validate_edit_and_list_occurrences(b: Backend) {
    let app = no_scheduler(b).await;
    let u = et_user(&app, "planner").await;
    let ch = sandbox(&app, &u, "s").await;
    let day = tomorrow();
    let base = json!({"name": "reminder", "channel_id": ch, "delivery_address": "+251911000401",
        "message_body": "Your appointment", "scheduled_at": format!("{day}T09:00"), "timezone": "Africa/Addis_Ababa"});
    let create = |patch: Value| {
        let mut body = base.clone();
        body.as_object_mut().unwrap().extend(patch.as_object().unwrap().clone());
        app.post("/v1/scheduled-messages").token(&u.token).json(body).send()
    };
    for (patch, field) in [
        (json!({"scheduled_at": "2020-01-01T09:00"}), "scheduled_at"),
        (json!({"scheduled_at": "tomorrow at nine"}), "scheduled_at"),
        (json!({"timezone": "Mars/Olympus"}), "timezone"),
        (json!({"is_recurring": true, "recurrence_rule": "hourly"}), "recurrence_rule"),
        (json!({"is_recurring": true, "recurrence_rule": "cron:99 * * * *"}), "recurrence_rule"),
        (json!({"is_recurring": true}), "recurrence_rule"),
        (json!({"recurrence_rule": "daily"}), "is_recurring"),
        (
            json!({"is_recurring": true, "recurrence_rule": "daily", "recurrence_end_at": "2021-01-01T00:00:00Z"}),
            "recurrence_end_at",
        ),
        (json!({"misfire_policy": "sometimes"}), "misfire_policy"),
        (json!({"name": ""}), "name"),
        (json!({"delivery_address": "not a number"}), "delivery_address"),
        (json!({"template_id": "01a22331-d042-745c-80b0-46fcfc0d28d7"}), "message_body"),
    ] {
        let r = create(patch.clone()).await;
        assert_eq!(r.error_fields(), vec![field], "{patch}: {}", r.body);
    }
    let r = create(json!({"send_type": "group"})).await;
    assert_eq!(r.error_fields(), vec!["delivery_address"], "a group schedule names groups, not an address: {}", r.body);
    let r = create(json!({"timezone_mode": "recipient"})).await;
    assert_eq!(r.error_fields(), vec!["timezone_mode"], "recipient zones need a group send: {}", r.body);
    // Another tenant's channel is not found.
    let other = et_user(&app, "other-planner").await;
    let theirs = sandbox(&app, &other, "s").await;
    assert_eq!(create(json!({"channel_id": theirs})).await.error_fields(), vec!["channel_id"]);

    // Daily at 09:00 in Addis Ababa (UTC+3): 06:00Z every day from tomorrow.
    let r = create(json!({"is_recurring": true, "recurrence_rule": "DAILY"})).await;
    r.expect(201, None);
    let id = r.id();
    let d = r.data();
    assert_eq!((d["status"].as_str(), d["recurrence_rule"].as_str()), (Some("pending"), Some("daily")));
    assert_eq!(d["scheduled_at"], format!("{day}T09:00:00"));
    let first = at(&d["next_trigger_at"]);
    assert_eq!(first.format("%Y-%m-%d %H:%M").to_string(), format!("{day} 06:00"));
    let r = app.get(&format!("/v1/scheduled-messages/{id}/occurrences?count=3")).token(&u.token).send().await;
    let got: Vec<DateTime<Utc>> = r.data()["occurrences"].as_array().unwrap().iter().map(at).collect();
    assert_eq!(got, vec![first, first + Duration::days(1), first + Duration::days(2)]);
    app.get(&format!("/v1/scheduled-messages/{id}/occurrences?count=0")).token(&u.token).send().await.expect(400, None);

    // Edits while pending; a new time moves the next occurrence.
    let r = app
        .patch(&format!("/v1/scheduled-messages/{id}"))
        .token(&u.token)
        .json(json!({"name": "morning reminder", "scheduled_at": format!("{day}T10:30")}))
        .send()
        .await;
    r.expect(200, None);
    assert_eq!(r.data()["name"], "morning reminder");
    assert_eq!(at(&r.data()["next_trigger_at"]), first + Duration::minutes(90));
    let patch = |body: Value| app.patch(&format!("/v1/scheduled-messages/{id}")).token(&u.token).json(body).send();
    // A template given replaces the body (a send has exactly one), and a body the template again.
    let t = app
        .post("/v1/templates")
        .token(&u.token)
        .json(json!({"name": "t", "body": "Hi {FIRST_NAME}"}))
        .send()
        .await
        .id();
    let r = patch(json!({"template_id": t})).await;
    r.expect(200, None);
    assert_eq!((r.data()["template_id"].as_str(), r.data()["message_body"].clone()), (Some(t.as_str()), Value::Null));
    let r = patch(json!({"message_body": "Your appointment"})).await;
    assert_eq!(
        (r.data()["template_id"].clone(), r.data()["message_body"].as_str()),
        (Value::Null, Some("Your appointment"))
    );
    assert_eq!(patch(json!({"status": "paused"})).await.data()["status"], "paused");
    let r = app.get(&format!("/v1/scheduled-messages/{id}/occurrences")).token(&u.token).send().await;
    assert_eq!(r.data()["occurrences"], json!([]));
    let r = patch(json!({"status": "pending"})).await;
    assert_eq!(r.data()["status"], "pending");
    assert_eq!(at(&r.data()["next_trigger_at"]), first + Duration::minutes(90));
    patch(json!({"status": "finished"})).await.expect(422, Some("validation_error"));
    patch(json!({"status": "cancelled"})).await.expect(200, None);
    patch(json!({"name": "too late"})).await.expect(409, Some("conflict"));
    patch(json!({"status": "paused"})).await.expect(409, Some("conflict"));

    // Another account sees none of it.
    let path = format!("/v1/scheduled-messages/{id}");
    app.get(&path).token(&other.token).send().await.expect(404, None);
    app.patch(&path).token(&other.token).json(json!({"status": "paused"})).send().await.expect(404, None);
    app.delete(&path).token(&other.token).send().await.expect(404, None);
    let r = app.get("/v1/scheduled-messages").token(&other.token).send().await;
    assert_eq!(r.body["meta"]["total"], 0);
    let r = app.get("/v1/scheduled-messages?filter=status:eq:cancelled").token(&u.token).send().await;
    assert_eq!(r.body["meta"]["total"], 1);
    app.delete(&path).token(&u.token).send().await.expect(204, None);
    app.get(&path).token(&u.token).send().await.expect(404, None);
}

/// The messages a schedule has sent so far.
async fn sent_by(app: &TestApp, u: &TestUser, schedule: &str) -> Vec<Value> {
    let r = app.get(&format!("/v1/messages?filter=scheduled_message_id:eq:{schedule}")).token(&u.token).send().await;
    r.body["data"].as_array().unwrap().clone()
}

async fn the_scheduler_fires_each_occurrence_once(b: Backend) {
    let app = no_scheduler(b).await;
    let m = &app.state.messaging;
    let u = et_user(&app, "fired").await;
    let ch = sandbox(&app, &u, "s").await;
    let day = tomorrow();
    let create = |extra: Value| {
        let mut body = json!({"name": "daily", "channel_id": ch, "delivery_address": "+251911000402",
            "message_body": "Good morning", "scheduled_at": format!("{day}T09:00"), "timezone": "Africa/Addis_Ababa",
            "is_recurring": true, "recurrence_rule": "daily"});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        app.post("/v1/scheduled-messages").token(&u.token).json(body).send()
    };
    let r = create(json!({})).await;
    let id = r.id();
    let t1 = at(&r.data()["next_trigger_at"]);

    // Not yet due: nothing; due: one message, queued, marked with its schedule and occurrence.
    m.fire_due_schedules(t1 - Duration::seconds(1)).await.unwrap();
    assert!(sent_by(&app, &u, &id).await.is_empty());
    m.fire_due_schedules(t1).await.unwrap();
    let sent = sent_by(&app, &u, &id).await;
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0]["status"].as_str(), sent[0]["message_body"].as_str()), (Some("queued"), Some("Good morning")));
    assert_eq!(at(&sent[0]["scheduled_at"]), t1);
    let s = app.get(&format!("/v1/scheduled-messages/{id}")).token(&u.token).send().await;
    assert_eq!((s.data()["status"].as_str(), s.data()["trigger_count"].as_i64()), (Some("triggered"), Some(1)));
    assert_eq!(s.data()["last_message_id"], sent[0]["id"]);
    let t2 = at(&s.data()["next_trigger_at"]);
    assert_eq!(t2, t1 + Duration::days(1));

    // A repeat at the same instant fires nothing; two schedulers racing on the next one fire it once.
    m.fire_due_schedules(t1).await.unwrap();
    let (a, b2) = tokio::join!(m.fire_due_schedules(t2), m.fire_due_schedules(t2));
    a.unwrap();
    b2.unwrap();
    let sent = sent_by(&app, &u, &id).await;
    assert_eq!(sent.len(), 2, "{sent:?}");
    m.fire_due_schedules(t2 + Duration::seconds(30)).await.unwrap();
    assert_eq!(sent_by(&app, &u, &id).await.len(), 2);

    // After three days without a scheduler: `skip` fires nothing missed, `fire_once` the latest once.
    let late = t2 + Duration::days(3) + Duration::hours(1);
    let skip = create(json!({"misfire_policy": "skip"})).await.id();
    let once = create(json!({"misfire_policy": "fire_once"})).await.id();
    m.fire_due_schedules(late).await.unwrap();
    assert!(sent_by(&app, &u, &skip).await.is_empty());
    let fired = sent_by(&app, &u, &once).await;
    assert_eq!(fired.len(), 1);
    assert_eq!(at(&fired[0]["scheduled_at"]), t2 + Duration::days(3));
    for s in [&skip, &once] {
        let r = app.get(&format!("/v1/scheduled-messages/{s}")).token(&u.token).send().await;
        assert_eq!(at(&r.data()["next_trigger_at"]), t2 + Duration::days(4));
    }

    // An occurrence whose send cannot be made fails alone: recorded with the reason; a one-time
    // schedule ends `failed`.
    let one = app
        .post("/v1/scheduled-messages")
        .token(&u.token)
        .json(json!({"name": "once", "channel_id": ch, "delivery_address": "+251911000403", "message_body": "x",
            "scheduled_at": format!("{day}T09:00"), "timezone": "Africa/Addis_Ababa"}))
        .send()
        .await;
    let one_id = one.id();
    app.patch(&format!("/v1/channels/{ch}"))
        .token(&u.token)
        .json(json!({"is_enabled": false}))
        .send()
        .await
        .expect(200, None);
    m.fire_due_schedules(at(&one.data()["next_trigger_at"])).await.unwrap();
    let r = app.get(&format!("/v1/scheduled-messages/{one_id}")).token(&u.token).send().await;
    assert_eq!(r.data()["status"], "failed");
    assert!(r.data()["last_error"].as_str().unwrap().contains("channel_id"), "{}", r.body);
    assert_eq!(r.data()["next_trigger_at"], Value::Null);
    assert!(sent_by(&app, &u, &one_id).await.is_empty());
}

/// Schedules due at one instant on two channels fire in one look: every one of them once, rung with
/// fewer doorbells than messages.
async fn schedules_due_together_fire_together(b: Backend) {
    let app = no_scheduler(b).await;
    let u = et_user(&app, "many").await;
    let (one, two) = (sandbox(&app, &u, "one").await, sandbox(&app, &u, "two").await);
    let when = format!("{}T09:00", tomorrow());
    let mut ids = Vec::new();
    for i in 0..30 {
        let ch = if i % 2 == 0 { &one } else { &two };
        let r = app
            .post("/v1/scheduled-messages")
            .token(&u.token)
            .json(json!({"name": format!("s{i}"), "channel_id": ch, "delivery_address": format!("+2519110005{i:02}"),
                "message_body": "together", "scheduled_at": when, "timezone": "UTC"}))
            .send()
            .await;
        r.expect(201, None);
        ids.push(r.id());
    }
    let due = at(
        &app.get(&format!("/v1/scheduled-messages/{}", ids[0])).token(&u.token).send().await.data()["next_trigger_at"],
    );
    let handled = app.state.messaging.fire_due_schedules(due).await.unwrap();
    assert_eq!(handled, 30);
    for id in &ids {
        assert_eq!(sent_by(&app, &u, id).await.len(), 1, "schedule {id}");
        let r = app.get(&format!("/v1/scheduled-messages/{id}")).token(&u.token).send().await;
        assert_eq!(r.data()["status"], "completed");
    }
    let events = crate::channels::outbox_text(&app).await;
    let doorbells = events.lines().filter(|l| l.starts_with("message.dispatch.sandbox ")).count();
    assert_eq!(doorbells, 2, "one doorbell per channel for the look: {events}");
    // One `scheduled_message.triggered` for the account's look, naming each schedule and its occurrence.
    let triggered: Vec<&str> = events.lines().filter(|l| l.starts_with("scheduled_message.triggered ")).collect();
    assert_eq!(triggered.len(), 1, "one event for the look: {events}");
    let payload: Value = serde_json::from_str(triggered[0].split_once(' ').unwrap().1).unwrap();
    let named: Vec<&Value> = payload["data"]["schedules"].as_array().unwrap().iter().collect();
    let mut seen: Vec<String> = named.iter().map(|s| s["scheduled_message_id"].as_str().unwrap().to_string()).collect();
    seen.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(seen, want, "every schedule of the look is named once");
    assert!(named.iter().all(|s| s["outcome"] == "sent" && s["next_trigger_at"].is_null()), "{payload}");
    assert!(named.iter().all(|s| at(&s["occurrence_at"]) == due), "{payload}");
}

/// The scheduler of a running server fires a schedule when it is due: woken by its creation, it sleeps
/// until the due time (about two seconds here), and the dispatcher then delivers the message.
async fn a_running_server_fires_what_is_due(b: Backend) {
    let app = TestApp::spawn(b).await;
    let u = et_user(&app, "live").await;
    let ch = sandbox(&app, &u, "s").await;
    let when = (Utc::now() + Duration::seconds(2)).to_rfc3339();
    let r = app
        .post("/v1/scheduled-messages")
        .token(&u.token)
        .json(json!({"name": "soon", "channel_id": ch, "delivery_address": "+251911000600", "message_body": "now",
            "scheduled_at": when, "timezone": "UTC"}))
        .send()
        .await;
    r.expect(201, None);
    let id = r.id();
    eventually(30, "the schedule fired and its message was delivered", || async {
        let sent = sent_by(&app, &u, &id).await;
        sent.len() == 1 && sent[0]["status"] == "delivered"
    })
    .await;
    let r = app.get(&format!("/v1/scheduled-messages/{id}")).token(&u.token).send().await;
    assert_eq!((r.data()["status"].as_str(), r.data()["trigger_count"].as_i64()), (Some("completed"), Some(1)));
}

/// The scheduler builds the sends of an instant up to two seconds before it (`scheduler::LEAD`) and
/// writes them when it comes: a schedule edited in between sends what it says after the edit, once,
/// and its message is created no sooner than it was due.
async fn a_schedule_edited_while_its_send_is_prepared_sends_the_edit(b: Backend) {
    let app = TestApp::spawn(b).await;
    let u = et_user(&app, "ahead").await;
    let ch = sandbox(&app, &u, "s").await;
    // Schedules keep whole seconds.
    let due = (Utc::now() + Duration::seconds(4)).trunc_subsecs(0);
    let r = app
        .post("/v1/scheduled-messages")
        .token(&u.token)
        .json(json!({"name": "ahead", "channel_id": ch, "delivery_address": "+251911000601", "message_body": "before",
            "scheduled_at": due.to_rfc3339(), "timezone": "UTC"}))
        .send()
        .await;
    r.expect(201, None);
    let id = r.id();
    // Inside the lead (the send of "before" is built by now), before the instant.
    let edit_at = due - Duration::milliseconds(1300);
    tokio::time::sleep((edit_at - Utc::now()).to_std().unwrap_or_default()).await;
    assert!(Utc::now() < due, "the edit must come before the schedule is due");
    app.patch(&format!("/v1/scheduled-messages/{id}"))
        .token(&u.token)
        .json(json!({"message_body": "after"}))
        .send()
        .await
        .expect(200, None);
    eventually(30, "the schedule fired", || async { !sent_by(&app, &u, &id).await.is_empty() }).await;
    let sent = sent_by(&app, &u, &id).await;
    assert_eq!(sent.len(), 1, "one message: {sent:?}");
    assert_eq!(sent[0]["message_body"], "after");
    assert_eq!(at(&sent[0]["scheduled_at"]), due);
    assert!(at(&sent[0]["created_at"]) >= due, "created before it was due: {}", sent[0]);
}

/// A one-time schedule whose time passed while it was paused is not resumed into `completed` with
/// nothing sent: resuming it asks for a new time, and resuming with one works. (The service is called
/// with a clock an hour past the schedule's time.)
async fn a_one_time_schedule_paused_past_its_time_needs_a_new_time(b: Backend) {
    use turumba::modules::messaging::NewSchedule;
    let app = no_scheduler(b).await;
    let u = et_user(&app, "paused").await;
    let ch = sandbox(&app, &u, "s").await;
    let r = app
        .post("/v1/scheduled-messages")
        .token(&u.token)
        .json(json!({"name": "once", "channel_id": ch, "delivery_address": "+251911000700", "message_body": "x",
            "scheduled_at": format!("{}T09:00", tomorrow()), "timezone": "UTC"}))
        .send()
        .await;
    let id = uuid::Uuid::parse_str(&r.id()).unwrap();
    let later = at(&r.data()["next_trigger_at"]) + Duration::hours(1);
    app.patch(&format!("/v1/scheduled-messages/{id}"))
        .token(&u.token)
        .json(json!({"status": "paused"}))
        .send()
        .await
        .expect(200, None);
    let scope = app.state.accounts.operator_scope(uuid::Uuid::parse_str(&u.account_id).unwrap()).await.unwrap();
    let user = app.state.accounts.authenticate(&u.token).await.unwrap();
    let m = &app.state.messaging;
    let resume = NewSchedule { status: Some("pending".into()), ..Default::default() };
    let err = m.update_schedule(scope, &user, id, resume.clone(), later, &Default::default()).await.unwrap_err();
    assert!(err.to_string().contains("new scheduled_at"), "{err}");
    let new_time = (later + Duration::days(1)).format("%Y-%m-%dT%H:%M").to_string();
    let s = m
        .update_schedule(
            scope,
            &user,
            id,
            NewSchedule { scheduled_at: Some(new_time), ..resume },
            later,
            &Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(s.status.as_str(), "pending");
    assert_eq!(s.next_trigger_at, Some(later + Duration::days(1)));
}

async fn group_schedules_fire_a_group_send_per_occurrence(b: Backend) {
    let app = no_scheduler(b).await;
    let m = &app.state.messaging;
    let u = et_user(&app, "classes").await;
    let ch = sandbox(&app, &u, "s").await;
    let c1 = contact(&app, &u, json!({"phone": "0911000501", "first_name": "Abebe"})).await;
    let c2 = contact(&app, &u, json!({"phone": "0911000502", "first_name": "Bontu"})).await;
    let g = app.post("/v1/groups").token(&u.token).json(json!({"name": "Class"})).send().await.id();
    app.post(&format!("/v1/groups/{g}/contacts"))
        .token(&u.token)
        .json(json!({"contact_ids": [c1, c2]}))
        .send()
        .await
        .expect(200, None);
    let v = et_user(&app, "other").await;
    let v_g = app.post("/v1/groups").token(&v.token).json(json!({"name": "Theirs"})).send().await.id();
    let day = tomorrow();
    let base = json!({"name": "Daily class", "channel_id": ch, "send_type": "group", "contact_group_ids": [g],
        "message_body": "Good morning {FIRST_NAME}", "scheduled_at": format!("{day}T07:00"),
        "timezone": "Africa/Addis_Ababa", "is_recurring": true, "recurrence_rule": "daily"});
    let create = |patch: Value| {
        let mut body = base.clone();
        body.as_object_mut().unwrap().extend(patch.as_object().unwrap().clone());
        app.post("/v1/scheduled-messages").token(&u.token).json(body).send()
    };
    for (patch, field) in [
        (json!({"contact_id": c1}), "contact_id"),
        (json!({"contact_group_ids": [v_g]}), "contact_group_ids"),
        (json!({"contact_group_ids": []}), "contact_ids"),
        (json!({"send_type": "single", "delivery_address": "+251911000503"}), "send_type"),
    ] {
        let r = create(patch.clone()).await;
        assert_eq!(r.error_fields(), vec![field], "{patch}: {}", r.body);
    }
    let r = create(json!({})).await;
    r.expect(201, None);
    let id = r.id();
    assert_eq!((r.data()["send_type"].as_str(), &r.data()["contact_group_ids"]), (Some("group"), &json!([g])));
    let t1 = at(&r.data()["next_trigger_at"]);
    let groups_of = |id: String| {
        let app = &app;
        let token = u.token.clone();
        async move {
            let r = app
                .get("/v1/group-messages")
                .token(&token)
                .query(&[("filter", format!("scheduled_message_id:eq:{id}")), ("sort", "created_at:asc".into())])
                .send()
                .await;
            r.data().as_array().unwrap().clone()
        }
    };

    // Each occurrence creates one queued group message, which fans out to the group.
    m.fire_due_schedules(t1).await.unwrap();
    let fired = groups_of(id.clone()).await;
    assert_eq!(fired.len(), 1);
    assert_eq!((fired[0]["status"].as_str(), at(&fired[0]["scheduled_at"])), (Some("queued"), t1));
    let s = app.get(&format!("/v1/scheduled-messages/{id}")).token(&u.token).send().await;
    assert_eq!(s.data()["last_group_message_id"], fired[0]["id"]);
    let r = app.get(&format!("/v1/scheduled-messages/{id}/occurrences")).token(&u.token).send().await;
    r.expect(200, None);
    assert!(m.fan_out_next(t1).await.unwrap());
    let gm = fired[0]["id"].as_str().unwrap();
    let r = app
        .get(&format!("/v1/messages?filter=group_message_id:eq:{gm}&sort=created_at:asc"))
        .token(&u.token)
        .send()
        .await;
    let bodies: Vec<&str> = r.data().as_array().unwrap().iter().map(|m| m["message_body"].as_str().unwrap()).collect();
    assert_eq!(bodies.len(), 2);
    assert!(bodies.contains(&"Good morning Abebe") && bodies.contains(&"Good morning Bontu"), "{bodies:?}");

    // Two schedulers racing on the next occurrence create one group message; the body's template is reused.
    let t2 = t1 + Duration::days(1);
    let (a, b2) = tokio::join!(m.fire_due_schedules(t2), m.fire_due_schedules(t2));
    a.unwrap();
    b2.unwrap();
    let fired = groups_of(id.clone()).await;
    assert_eq!(fired.len(), 2, "{fired:?}");
    assert_eq!(fired[0]["template_id"], fired[1]["template_id"]);

    // A new body (edited while paused) is a new template for the occurrences after it.
    let path = format!("/v1/scheduled-messages/{id}");
    app.patch(&path).token(&u.token).json(json!({"status": "paused"})).send().await.expect(200, None);
    let r = app.patch(&path).token(&u.token).json(json!({"message_body": "Class moved, {FIRST_NAME}"})).send().await;
    r.expect(200, None);
    app.patch(&path).token(&u.token).json(json!({"status": "pending"})).send().await.expect(200, None);
    let s = app.get(&path).token(&u.token).send().await;
    m.fire_due_schedules(at(&s.data()["next_trigger_at"])).await.unwrap();
    let fired = groups_of(id.clone()).await;
    assert_eq!(fired.len(), 3);
    assert_ne!(fired[2]["template_id"], fired[1]["template_id"]);
    assert_eq!(fired[2]["message_body"], "Class moved, {FIRST_NAME}");
}

async fn recipient_time_zones_send_each_contact_at_the_wall_time_in_their_zone(b: Backend) {
    let app = no_scheduler(b).await;
    let m = &app.state.messaging;
    let u = et_user(&app, "waves").await;
    app.patch(&format!("/v1/accounts/{}", u.account_id))
        .token(&u.token)
        .json(json!({"timezone": "Africa/Addis_Ababa"}))
        .send()
        .await
        .expect(200, None);
    let ch = sandbox(&app, &u, "s").await;
    let mut ids = Vec::new();
    for (i, zone) in ["America/New_York", "Europe/London", "Asia/Kathmandu", ""].iter().enumerate() {
        let mut body = json!({"phone": format!("09110006{i:02}"), "first_name": format!("Z{i}")});
        if !zone.is_empty() {
            body["timezone"] = json!(zone);
        }
        ids.push(contact(&app, &u, body).await);
    }
    let r = app
        .post("/v1/scheduled-messages")
        .token(&u.token)
        .json(json!({"name": "Everyone at nine", "channel_id": ch, "send_type": "group", "contact_ids": ids,
            "message_body": "Good morning", "scheduled_at": "2027-01-15T09:00", "timezone": "Africa/Addis_Ababa",
            "timezone_mode": "recipient"}))
        .send()
        .await;
    r.expect(201, None);
    assert_eq!(r.data()["timezone_mode"], "recipient");
    // It fires when the first zone on Earth (UTC+14) reaches 09:00.
    let fire = at(&r.data()["next_trigger_at"]);
    assert_eq!(fire, DateTime::parse_from_rfc3339("2027-01-14T19:00:00Z").unwrap());
    m.fire_due_schedules(fire).await.unwrap();
    let groups = app.get("/v1/group-messages").token(&u.token).send().await;
    let g = groups.data()[0].clone();
    assert_eq!(g["local_send_time"], "2027-01-15T09:00:00");
    assert!(m.fan_out_next(fire).await.unwrap());
    // One send, in waves: each contact at 09:00 in their own zone (the account's when unknown).
    let gid = g["id"].as_str().unwrap();
    let r = app.get(&format!("/v1/messages?filter=group_message_id:eq:{gid}")).token(&u.token).send().await;
    let due: std::collections::HashMap<String, DateTime<Utc>> = r
        .data()
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["contact_id"].as_str().unwrap().to_string(), at(&m["scheduled_at"])))
        .collect();
    let want = ["2027-01-15T14:00:00Z", "2027-01-15T09:00:00Z", "2027-01-15T03:15:00Z", "2027-01-15T06:00:00Z"];
    for (id, instant) in ids.iter().zip(want) {
        assert_eq!(due[id], DateTime::parse_from_rfc3339(instant).unwrap(), "{id}");
    }
    // Not one is due before its wave: the dispatcher finds nothing at the firing instant.
    let db = &app.state.db;
    let backend = db.get_database_backend();
    let sql = match backend {
        sea_orm::DbBackend::Postgres => "SELECT COUNT(*) FROM messages WHERE next_attempt_at < $1",
        _ => "SELECT COUNT(*) FROM messages WHERE next_attempt_at < ?",
    };
    let first_wave = DateTime::parse_from_rfc3339("2027-01-15T03:15:00Z").unwrap().with_timezone(&Utc);
    let early = db
        .query_one_raw(sea_orm::Statement::from_sql_and_values(backend, sql, [first_wave.into()]))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<i64>(0)
        .unwrap();
    assert_eq!(early, 0);
}

async fn a_schedule_whose_rule_no_longer_reads_fails_instead_of_staying_due(b: Backend) {
    let app = no_scheduler(b).await;
    let u = et_user(&app, "corrupt").await;
    let ch = sandbox(&app, &u, "s").await;
    let r = app
        .post("/v1/scheduled-messages")
        .token(&u.token)
        .json(json!({"name": "daily", "channel_id": ch, "delivery_address": "+251911000402", "message_body": "Hi",
            "scheduled_at": format!("{}T09:00", tomorrow()), "timezone": "Africa/Addis_Ababa",
            "is_recurring": true, "recurrence_rule": "daily"}))
        .send()
        .await;
    let (id, due) = (r.id(), at(&r.data()["next_trigger_at"]));
    app.state.db.execute_unprepared("UPDATE scheduled_messages SET recurrence_rule = 'cron:not a rule'").await.unwrap();
    assert_eq!(app.state.messaging.fire_due_schedules(due).await.unwrap(), 1);
    let s = app.get(&format!("/v1/scheduled-messages/{id}")).token(&u.token).send().await;
    assert_eq!(s.data()["status"], "failed", "{}", s.body);
    assert!(s.data()["last_error"].as_str().unwrap().contains("cannot be read"), "{}", s.body);
    assert_eq!((&s.data()["next_trigger_at"], s.data()["trigger_count"].as_i64()), (&Value::Null, Some(0)));
    assert_eq!(
        app.state.messaging.fire_due_schedules(due + Duration::days(1)).await.unwrap(),
        0,
        "it is not due any more"
    );
    assert!(sent_by(&app, &u, &id).await.is_empty());
}

both_backends!(
    a_schedule_whose_rule_no_longer_reads_fails_instead_of_staying_due,
    recipient_time_zones_send_each_contact_at_the_wall_time_in_their_zone,
    group_schedules_fire_a_group_send_per_occurrence,
    a_one_time_schedule_paused_past_its_time_needs_a_new_time,
    schedules_validate_edit_and_list_occurrences,
    the_scheduler_fires_each_occurrence_once,
    schedules_due_together_fire_together,
    a_running_server_fires_what_is_due,
    a_schedule_edited_while_its_send_is_prepared_sends_the_edit,
);
