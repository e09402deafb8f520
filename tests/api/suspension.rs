//! Account suspension (issue 17, item 4): an admin of the parent account (or the operator on the command
//! line) suspends an account; it and every account below it answer 403 `account_suspended` to tenant
//! requests, its queued messages, group sends and schedules wait, its webhooks are stored but held —
//! and all of it resumes when the account is active again.

use serde_json::json;
use turumba::app::BuildOptions;
use turumba::modules::messaging::{DispatchOptions, Dispatcher};

use crate::helpers::{Backend, Req, TestApp, TestUser, eventually};
use crate::receipts::{PUBLIC, count, inbox_drained, refs, sms_from, twilio_callback};
use crate::sub_accounts::{client_admin, sub_account};

fn acting<'a>(r: Req<'a>, u: &TestUser, account: &str) -> Req<'a> {
    r.token(&u.token).account(account)
}

async fn set_status(app: &TestApp, u: &TestUser, account: &str, status: &str) -> crate::helpers::Resp {
    app.patch(&format!("/v1/accounts/{account}")).token(&u.token).json(json!({"status": status})).send().await
}

async fn a_suspended_account_answers_403_and_only_its_status_changes(b: Backend) {
    let app = TestApp::spawn(b).await;
    let agency = app.user("agency").await;
    let client = sub_account(&app, &agency, &agency.account_id, "Clinic").await;
    let branch = sub_account(&app, &agency, &client, "Branch").await;
    let owner = client_admin(&app, &agency, &client, "owner").await;

    // An account's own admins cannot change its status; the agency can.
    set_status(&app, &owner, &client, "suspended").await.expect(403, Some("forbidden"));
    set_status(&app, &agency, &agency.account_id, "suspended").await.expect(403, Some("forbidden"));
    set_status(&app, &agency, &client, "paused").await.expect(422, Some("validation_error"));
    let r = set_status(&app, &agency, &client, "suspended").await;
    r.expect(200, None);
    assert_eq!(r.data()["status"], "suspended");

    // Every tenant request in it, or below it, answers 403 account_suspended — whoever asks.
    for (u, account) in [(&owner, &client), (&agency, &client), (&agency, &branch)] {
        app.get("/v1/contacts").token(&u.token).account(account).send().await.expect(403, Some("account_suspended"));
        app.post("/v1/contacts")
            .token(&u.token)
            .account(account)
            .json(json!({"phone": "+251911000001"}))
            .send()
            .await
            .expect(403, Some("account_suspended"));
    }
    // It can still be read, and nothing but its status changes.
    let r = app.get(&format!("/v1/accounts/{client}")).token(&owner.token).send().await;
    r.expect(200, None);
    assert_eq!(r.data()["status"], "suspended");
    app.patch(&format!("/v1/accounts/{client}"))
        .token(&agency.token)
        .json(json!({"name": "renamed"}))
        .send()
        .await
        .expect(403, Some("account_suspended"));
    app.post(&format!("/v1/accounts/{client}/sub-accounts"))
        .token(&agency.token)
        .json(json!({"name": "x"}))
        .send()
        .await
        .expect(403, Some("account_suspended"));
    let r = app.get("/v1/context").token(&owner.token).send().await;
    let listed = r.data()["accounts"].as_array().unwrap().iter().find(|a| a["id"] == client.as_str()).unwrap().clone();
    assert_eq!(listed["status"], "suspended");
    // The agency's own account is untouched.
    app.get("/v1/contacts").token(&agency.token).send().await.expect(200, None);

    // Active again, renamed in the same body (the activation first); a suspension with a rename in one
    // body renames first, and a refused status change changes nothing.
    let r = app
        .patch(&format!("/v1/accounts/{client}"))
        .token(&agency.token)
        .json(json!({"status": "active", "name": "Clinic (paid)"}))
        .send()
        .await;
    r.expect(200, None);
    assert_eq!((r.data()["status"].clone(), r.data()["name"].clone()), (json!("active"), json!("Clinic (paid)")));
    let r = app
        .patch(&format!("/v1/accounts/{client}"))
        .token(&owner.token)
        .json(json!({"status": "suspended", "name": "mine"}))
        .send()
        .await;
    r.expect(403, Some("forbidden"));
    let r = app.get(&format!("/v1/accounts/{client}")).token(&owner.token).send().await;
    assert_eq!(r.data()["name"], "Clinic (paid)", "a refused body changes nothing");
    let r = app
        .patch(&format!("/v1/accounts/{branch}"))
        .token(&agency.token)
        .json(json!({"status": "suspended", "name": "Branch (closed)"}))
        .send()
        .await;
    assert_eq!((r.data()["status"].clone(), r.data()["name"].clone()), (json!("suspended"), json!("Branch (closed)")));
    set_status(&app, &agency, &branch, "active").await.expect(200, None);
    app.get("/v1/contacts").token(&owner.token).account(&client).send().await.expect(200, None);
    app.get("/v1/contacts").token(&agency.token).account(&branch).send().await.expect(200, None);
}

async fn a_suspended_accounts_work_waits_and_resumes(b: Backend) {
    let tw = crate::fakes::twilio();
    let app = TestApp::spawn_full(
        b,
        |s| s.public_base_url = Some(PUBLIC.into()),
        BuildOptions { dispatch: false, ..Default::default() },
    )
    .await;
    let agency = app.user("agency").await;
    let client = sub_account(&app, &agency, &agency.account_id, "Shop").await;
    let sandbox = acting(app.post("/v1/channels"), &agency, &client)
        .json(json!({"name": "s", "channel_type": "sandbox", "credentials": {}}))
        .send()
        .await;
    sandbox.expect(201, None);
    let m = acting(app.post("/v1/messages"), &agency, &client)
        .json(json!({"channel_id": sandbox.id(), "delivery_address": "+251911000001", "message_body": "Selam"}))
        .send()
        .await;
    m.expect(201, None);
    let (_, hook) = {
        let r = acting(app.post("/v1/channels"), &agency, &client)
            .json(json!({"name": "tw", "channel_type": "sms", "provider": "twilio", "credentials": {
                "account_sid": crate::fakes::TWILIO_SID, "auth_token": crate::fakes::TWILIO_TOKEN,
                "from": "+15005550006", "base_url": tw.base_url}}))
            .send()
            .await;
        r.expect(201, None);
        (r.id(), r.data()["webhook_url"].as_str().unwrap().to_string())
    };

    set_status(&app, &agency, &client, "suspended").await.expect(200, None);
    // The dispatcher leaves the queued message alone.
    let d = Dispatcher::new(app.state.messaging.clone(), app.state.channels.registry(), DispatchOptions::default());
    assert_eq!(d.run_once().await.unwrap(), 0, "nothing is sent for a suspended account");
    assert_eq!(count(&app, "SELECT COUNT(*) FROM messages WHERE status = 'queued'").await, 1);
    // A provider's webhook is stored (answered 200) but held: no event, no inbound message yet.
    let ack = twilio_callback(&app, &hook, &refs(&sms_from("SMheld1", "+251911000077", "Are you open?"))).await;
    assert_eq!(ack.data()["status"], "held", "{}", ack.body);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM webhook_inbox WHERE status = 'held'").await, 1);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(count(&app, "SELECT COUNT(*) FROM messages WHERE direction = 'inbound'").await, 0);

    // Active again: the message goes out and the held webhook is processed.
    set_status(&app, &agency, &client, "active").await.expect(200, None);
    assert_eq!(d.run_once().await.unwrap(), 1);
    let r = acting(app.get(&format!("/v1/messages/{}", m.id())), &agency, &client).send().await;
    assert_eq!(r.data()["status"], "delivered", "{}", r.body);
    inbox_drained(&app).await;
    let r = acting(app.get("/v1/messages?filter=direction:eq:inbound"), &agency, &client).send().await;
    assert_eq!(r.body["meta"]["total"], 1, "{}", r.body);
    assert_eq!(r.data()[0]["message_body"], "Are you open?");
}

/// `turumba admin suspend-account` / `activate-account`: the operator's way, for any account; a server
/// already running sees the change within its refresh time.
async fn the_operator_suspends_and_activates_from_the_command_line(b: Backend) {
    let app = TestApp::spawn(b).await;
    let u = app.user("solo").await;
    let run = |action: &str, account: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_turumba"))
            .args(["admin", action, "--account-id", account])
            .env("DATABASE_URL", &app.settings.database_url)
            .env("TURUMBA_DATA_DIR", app.data_dir())
            .env("TURUMBA_LOG", "error")
            .env_remove("AMQP_URL")
            .output()
            .unwrap()
    };
    let ok = |out: std::process::Output| {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert!(ok(run("suspend-account", &u.account_id)).contains("status=suspended"));
    eventually(10, "the running server sees the suspension", || async {
        app.get("/v1/contacts").token(&u.token).send().await.status == 403
    })
    .await;
    app.get("/v1/contacts").token(&u.token).send().await.expect(403, Some("account_suspended"));
    assert!(ok(run("activate-account", &u.account_id)).contains("status=active"));
    eventually(10, "the running server sees the activation", || async {
        app.get("/v1/contacts").token(&u.token).send().await.status == 200
    })
    .await;
    let out = run("suspend-account", &uuid::Uuid::now_v7().to_string());
    assert!(!out.status.success(), "an unknown account is an error");
}

both_backends!(
    a_suspended_account_answers_403_and_only_its_status_changes,
    a_suspended_accounts_work_waits_and_resumes,
    the_operator_suspends_and_activates_from_the_command_line,
);
