//! Scheduled messages: validation with the field named, occurrences in a time zone, edits only while
//! pending or paused, pause/resume/cancel, tenant isolation, and the scheduler driven by the test's own
//! clock (never by sleeping): each occurrence fires once even with two schedulers racing, misfires
//! follow the policy, and an occurrence whose send cannot be made is recorded as failed.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use crate::contacts::et_user;
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
    create(json!({"send_type": "group"})).await.expect(501, Some("not_implemented"));
    create(json!({"timezone_mode": "recipient"})).await.expect(501, Some("not_implemented"));
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
    let err = m.update_schedule(scope, &user, id, resume.clone(), later).await.unwrap_err();
    assert!(err.to_string().contains("new scheduled_at"), "{err}");
    let new_time = (later + Duration::days(1)).format("%Y-%m-%dT%H:%M").to_string();
    let s = m
        .update_schedule(scope, &user, id, NewSchedule { scheduled_at: Some(new_time), ..resume }, later)
        .await
        .unwrap();
    assert_eq!(s.status.as_str(), "pending");
    assert_eq!(s.next_trigger_at, Some(later + Duration::days(1)));
}

both_backends!(
    a_one_time_schedule_paused_past_its_time_needs_a_new_time,
    schedules_validate_edit_and_list_occurrences,
    the_scheduler_fires_each_occurrence_once,
    schedules_due_together_fire_together,
    a_running_server_fires_what_is_due,
);
