//! The whole auth flow with codes read from the mail the product really sent, through a real SMTP
//! server (aiosmtpd, from the venv `.ci/run` creates; `TURUMBA_TEST_PYTHON` names its python).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::helpers::{Backend, TestApp};
use crate::receipts::{message, wait_status};

pub struct SmtpServer {
    child: Child,
    pub port: u16,
    pub maildir: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn python() -> Option<String> {
    match std::env::var("TURUMBA_TEST_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p),
        _ => {
            if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false") {
                panic!("TURUMBA_TEST_PYTHON must be set in CI: the SMTP tests may not be skipped");
            }
            eprintln!("skipped: set TURUMBA_TEST_PYTHON to a python with aiosmtpd to run the mail tests");
            None
        }
    }
}

async fn start_smtp(python: &str) -> SmtpServer {
    start_smtp_server(python, None).await
}

/// aiosmtpd with AUTH (PLAIN/LOGIN) over a plain connection accepting only `login`/`password`, as an
/// e-mail provider's submission server would (without the TLS).
const SMTP_WITH_AUTH: &str = r#"
import sys, time
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult, LoginPassword
login, password = sys.argv[3].encode(), sys.argv[4].encode()
def check(server, session, envelope, mechanism, data):
    ok = isinstance(data, LoginPassword) and data.login == login and data.password == password
    return AuthResult(success=ok, handled=False)
c = Controller(Mailbox(sys.argv[1]), hostname="127.0.0.1", port=int(sys.argv[2]), authenticator=check,
               auth_require_tls=False, auth_required=True)
c.start()
while True:
    time.sleep(3600)
"#;

pub async fn start_smtp_server(python: &str, auth: Option<(&str, &str)>) -> SmtpServer {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("Maildir");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut cmd = Command::new(python);
    match auth {
        None => cmd
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir),
        Some((login, password)) => {
            cmd.args(["-c", SMTP_WITH_AUTH]).arg(&maildir).arg(port.to_string()).args([login, password])
        }
    };
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("aiosmtpd starts");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return SmtpServer { child, port, maildir, _dir: dir };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("aiosmtpd did not start on port {port}");
}

/// Waits for the n-th mail to `to` and returns the 6-digit code in it.
async fn code_for(maildir: &Path, to: &str, nth: usize) -> String {
    let re = regex::Regex::new(r"code is (\d{6})").unwrap();
    let text = mail_text(maildir, to, nth, "code is").await;
    re.captures(&text).map(|c| c[1].to_string()).unwrap_or_else(|| panic!("no code in {text}"))
}

/// Waits for the n-th mail to `to` that contains `marker` and returns its text, quoted-printable soft
/// line breaks joined.
pub async fn mail_text(maildir: &Path, to: &str, nth: usize, marker: &str) -> String {
    for _ in 0..100 {
        let mut mails: Vec<(std::time::SystemTime, String)> = Vec::new();
        if let Ok(entries) = std::fs::read_dir(maildir.join("new")) {
            for e in entries.flatten() {
                let text =
                    std::fs::read_to_string(e.path()).unwrap_or_default().replace("=\r\n", "").replace("=\n", "");
                if text.contains(&format!("To: {to}")) && text.contains(marker) {
                    mails.push((e.metadata().unwrap().modified().unwrap(), text));
                }
            }
        }
        mails.sort_by_key(|m| m.0);
        if let Some((_, text)) = mails.get(nth - 1) {
            return text.clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no mail number {nth} to {to} arrived");
}

pub async fn app_with_smtp(b: Backend) -> Option<(TestApp, SmtpServer)> {
    let python = python()?;
    let smtp = start_smtp(&python).await;
    let port = smtp.port;
    let app = TestApp::spawn_with(b, |s| {
        s.smtp.host = Some("127.0.0.1".into());
        s.smtp.port = Some(port);
        s.smtp.tls = "none".into();
    })
    .await;
    Some((app, smtp))
}

async fn register(app: &TestApp, smtp: &SmtpServer, email: &str, account: &str) -> String {
    app.post("/v1/auth/register")
        .json(json!({"email": email, "password": "a long password", "full_name": "Person", "account_name": account}))
        .send()
        .await
        .expect(201, None);
    let code = code_for(&smtp.maildir, email, 1).await;
    let r = app.post("/v1/auth/verify-email").json(json!({"email": email, "code": code})).send().await;
    r.expect(200, None);
    // A code works once.
    app.post("/v1/auth/verify-email")
        .json(json!({"email": email, "code": code}))
        .send()
        .await
        .expect(400, Some("invalid_code"));
    r.data()["access_token"].as_str().unwrap().to_string()
}

/// The README walkthrough: register → verify → login → context → create account → create role →
/// change a member's role.
async fn full_auth_flow_with_the_code_from_the_mail(b: Backend) {
    let Some((app, smtp)) = app_with_smtp(b).await else {
        return;
    };
    let token = register(&app, &smtp, "owner@example.com", "Acme School").await;
    let login = app
        .post("/v1/auth/login")
        .json(json!({"email": "owner@example.com", "password": "a long password"}))
        .send()
        .await;
    login.expect(200, None);
    let ctx = app.get("/v1/context").token(&token).send().await;
    ctx.expect(200, None);
    assert_eq!(ctx.data()["accounts"][0]["name"], "Acme School");
    assert_eq!(ctx.data()["accounts"][0]["role"]["name"], "admin");
    let acc = app.post("/v1/accounts").token(&token).json(json!({"name": "Acme Clinic"})).send().await;
    acc.expect(201, None);
    let acc_id = acc.id();
    let role = app
        .post("/v1/roles")
        .token(&token)
        .account(&acc_id)
        .json(json!({"name": "nurse", "permissions": {"contacts:read": true, "messages:send": true}}))
        .send()
        .await;
    role.expect(201, None);
    let teammate_token = register(&app, &smtp, "nurse@example.com", "Nurse's own").await;
    let viewer = app.role_id_with(&token, &acc_id, "viewer").await;
    let added = app
        .post(&format!("/v1/accounts/{acc_id}/members"))
        .token(&token)
        .json(json!({"email": "nurse@example.com", "role_id": viewer}))
        .send()
        .await;
    added.expect(201, None);
    let nurse_id = added.data()["user_id"].as_str().unwrap().to_string();
    let r = app
        .patch(&format!("/v1/accounts/{acc_id}/members/{nurse_id}"))
        .token(&token)
        .json(json!({"role_id": role.id()}))
        .send()
        .await;
    r.expect(200, None);
    assert_eq!(r.data()["role"]["name"], "nurse");
    let ctx = app.get("/v1/context").token(&teammate_token).account(&acc_id).send().await;
    let in_clinic =
        ctx.data()["accounts"].as_array().unwrap().iter().find(|a| a["id"] == acc_id.as_str()).unwrap().clone();
    assert_eq!(in_clinic["role"]["name"], "nurse");
}

async fn five_wrong_codes_burn_the_code(b: Backend) {
    let Some((app, smtp)) = app_with_smtp(b).await else {
        return;
    };
    app.post("/v1/auth/register")
        .json(
            json!({"email": "slow@example.com", "password": "a long password", "full_name": "S", "account_name": "S"}),
        )
        .send()
        .await
        .expect(201, None);
    let code = code_for(&smtp.maildir, "slow@example.com", 1).await;
    let wrong = if code == "111111" { "222222" } else { "111111" };
    for _ in 0..5 {
        app.post("/v1/auth/verify-email")
            .json(json!({"email": "slow@example.com", "code": wrong}))
            .send()
            .await
            .expect(400, Some("invalid_code"));
    }
    app.post("/v1/auth/verify-email")
        .json(json!({"email": "slow@example.com", "code": code}))
        .send()
        .await
        .expect(400, Some("invalid_code"));
    // A resent code works.
    app.post("/v1/auth/resend-verification").json(json!({"email": "slow@example.com"})).send().await.expect(202, None);
    let fresh = code_for(&smtp.maildir, "slow@example.com", 2).await;
    app.post("/v1/auth/verify-email")
        .json(json!({"email": "slow@example.com", "code": fresh}))
        .send()
        .await
        .expect(200, None);
}

async fn forgotten_passwords_are_reset_with_the_mailed_code(b: Backend) {
    let Some((app, smtp)) = app_with_smtp(b).await else {
        return;
    };
    register(&app, &smtp, "forgetful@example.com", "F").await;
    let session = app.login("forgetful@example.com", "a long password").await;
    app.post("/v1/auth/forgot-password").json(json!({"email": "forgetful@example.com"})).send().await.expect(202, None);
    app.post("/v1/auth/forgot-password").json(json!({"email": "stranger@example.com"})).send().await.expect(202, None);
    let code = code_for(&smtp.maildir, "forgetful@example.com", 2).await;
    app.post("/v1/auth/reset-password")
        .json(json!({"email": "forgetful@example.com", "code": "000000", "new_password": "brand new password"}))
        .send()
        .await
        .expect(400, Some("invalid_code"));
    app.get("/v1/users/me").token(&session.token).send().await.expect(200, None);
    // Tokens carry whole seconds: the session's token is from an earlier second than the reset.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    app.post("/v1/auth/reset-password")
        .json(json!({"email": "forgetful@example.com", "code": code, "new_password": "brand new password"}))
        .send()
        .await
        .expect(204, None);
    let fresh = app.login("forgetful@example.com", "brand new password").await;
    app.get("/v1/users/me").token(&fresh.token).send().await.expect(200, None);
    // Resetting signs out every existing session: its refresh token and its access token both stop working.
    app.post("/v1/auth/refresh").json(json!({"refresh_token": session.refresh_token})).send().await.expect(401, None);
    app.get("/v1/users/me").token(&session.token).send().await.expect(401, Some("unauthorized"));
    app.get("/v1/context").token(&session.token).send().await.expect(401, Some("unauthorized"));
}

/// The e-mail channel: SMTP login at verify, a pooled transport, subject, text and HTML bodies and our
/// Message-ID, read back from the mail the server stored.
async fn email_channel_logs_in_and_sends_multipart_mail(b: Backend) {
    let Some(python) = python() else { return };
    let smtp = start_smtp_server(&python, Some(("mailer", "smtp-pass-0001"))).await;
    let app = TestApp::spawn(b).await;
    let u = app.user("emailer").await;
    let creds = |password: &str| json!({"smtp_host": "127.0.0.1", "smtp_port": smtp.port, "smtp_tls": "none", "smtp_username": "mailer", "smtp_password": password, "from_email": "news@turumba.example", "from_name": "Turumba News", "reply_to": "help@turumba.example"});
    let r = app
        .post("/v1/channels")
        .token(&u.token)
        .json(json!({"name": "bad", "channel_type": "email", "credentials": creds("wrong")}))
        .send()
        .await;
    r.expect(201, None);
    assert_eq!(r.data()["status"], "error");
    let message = r.data()["error_message"].as_str().unwrap();
    assert!(message.starts_with("email:") && message.contains("535"), "{message}");
    let r = app
        .post("/v1/channels")
        .token(&u.token)
        .json(json!({"name": "news", "channel_type": "email", "credentials": creds("smtp-pass-0001")}))
        .send()
        .await;
    r.expect(201, None);
    assert_eq!(r.data()["status"], "connected", "{:?}", r.body);
    assert_eq!(r.data()["credentials"]["smtp_password"], "••••0001");

    let scope = app.state.accounts.operator_scope(uuid::Uuid::parse_str(&u.account_id).unwrap()).await.unwrap();
    let registry = app.state.channels.registry();
    let channel = registry.load(scope, uuid::Uuid::parse_str(&r.id()).unwrap()).await.unwrap();
    let id = uuid::Uuid::now_v7();
    let msg = turumba::modules::channels::OutboundMessage {
        message_id: id,
        to: "almaz@example.org".into(),
        text: "Selam Almaz, your order shipped.".into(),
        html: Some("<p>Selam <b>Almaz</b>, your order shipped.</p>".into()),
        subject: Some("Your order ሰላም".into()),
        ..Default::default()
    };
    let receipt = registry.send(scope, &channel, &msg).await.unwrap().expect("sent");
    let mid = format!("<{id}@turumba.example>");
    assert_eq!(receipt.provider_message_id.as_deref(), Some(mid.as_str()));
    // A second mail reuses the pooled connection.
    let mut second = msg.clone();
    second.message_id = uuid::Uuid::now_v7();
    second.html = None;
    registry.send(scope, &channel, &second).await.unwrap().expect("sent");

    let mut mails = Vec::new();
    for _ in 0..100 {
        mails = std::fs::read_dir(smtp.maildir.join("new"))
            .map(|d| d.flatten().map(|e| std::fs::read_to_string(e.path()).unwrap()).collect())
            .unwrap_or_default();
        if mails.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(mails.len(), 2);
    let mail = mails.iter().find(|m| m.contains(&mid)).expect("the first mail");
    assert!(mail.contains("From: \"Turumba News\" <news@turumba.example>"), "{mail}");
    assert!(mail.contains("To: almaz@example.org"), "{mail}");
    assert!(mail.contains("Reply-To: help@turumba.example"), "{mail}");
    assert!(mail.contains(&format!("Message-ID: {mid}")), "{mail}");
    // RFC 2047: the non-ASCII word is encoded, the rest stays readable.
    use base64::Engine;
    let word = base64::engine::general_purpose::STANDARD.encode("ሰላም");
    assert!(mail.contains(&format!("Subject: Your order =?utf-8?b?{word}?=")), "{mail}");
    assert!(mail.contains("multipart/alternative"), "{mail}");
    assert!(mail.contains("Selam Almaz, your order shipped.") && mail.contains("<b>Almaz</b>"), "{mail}");
    let plain = mails.iter().find(|m| !m.contains(&mid)).unwrap();
    assert!(!plain.contains("multipart") && plain.contains("text/plain"), "{plain}");

    // A refused recipient address is permanent.
    let mut bad = msg.clone();
    bad.to = "not an address".into();
    let e = registry.send(scope, &channel, &bad).await.unwrap().unwrap_err();
    assert_eq!(e.class, turumba::modules::channels::ErrorClass::Permanent);
}

/// IMAP inbound for the e-mail channel against pymap: unseen mail is stored in the inbox with its
/// thread headers, flagged seen only after that, and not taken twice.
async fn email_channel_polls_imap_for_replies(b: Backend) {
    let Some(python) = python() else { return };
    let smtp = start_smtp_server(&python, Some(("mailer", "smtp-pass-0001"))).await;
    let imap_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let pymap = std::path::Path::new(&python).with_file_name("pymap");
    let mut imap = Command::new(&pymap)
        .args([
            "--port",
            &imap_port.to_string(),
            "--no-tls",
            "dict",
            "--demo-data",
            "--demo-user",
            "inbox",
            "--demo-password",
            "imap-pass-0002",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("pymap starts");
    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _guard = {
        let mut up = false;
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", imap_port)).await.is_ok() {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if !up {
            let _ = imap.kill();
            panic!("pymap did not start");
        }
        Kill(imap)
    };
    // Another IMAP client (Python's imaplib) marks the demo mail read and delivers two new ones.
    let setup = format!(
        r#"
import imaplib, sys
m = imaplib.IMAP4("127.0.0.1", {imap_port})
m.login("inbox", "imap-pass-0002")
m.select("INBOX")
m.store("1:*", "+FLAGS", "(\\Seen)")
reply = b"From: Almaz Bekele <almaz@example.org>\r\nTo: news@turumba.example\r\nSubject: Re: Your order\r\nMessage-ID: <reply-1@example.org>\r\nIn-Reply-To: <order-1@turumba.example>\r\nReferences: <order-1@turumba.example>\r\nDate: Sun, 22 Nov 2026 10:00:00 +0000\r\n\r\nThank you, it arrived.\r\n"
fresh = b"From: new@example.org\r\nTo: news@turumba.example\r\nSubject: Hello\r\nMessage-ID: <hello-2@example.org>\r\n\r\nHow do I subscribe?\r\n"
for msg in (reply, fresh):
    m.append("INBOX", None, None, msg)
m.logout()
"#
    );
    let out = Command::new(&python).args(["-c", &setup]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let app = TestApp::spawn(b).await;
    let u = app.user("imapper").await;
    let r = app
        .post("/v1/channels")
        .token(&u.token)
        .json(json!({"name": "support", "channel_type": "email", "credentials": {
            "smtp_host": "127.0.0.1", "smtp_port": smtp.port, "smtp_tls": "none", "smtp_username": "mailer",
            "smtp_password": "smtp-pass-0001", "from_email": "news@turumba.example",
            "imap_host": "127.0.0.1", "imap_port": imap_port, "imap_tls": "none", "imap_username": "inbox",
            "imap_password": "imap-pass-0002"}}))
        .send()
        .await;
    r.expect(201, None);
    assert_eq!(r.data()["status"], "connected", "{:?}", r.body);
    assert_eq!(r.data()["credentials"]["imap_password"], "••••0002");
    let scope = app.state.accounts.operator_scope(uuid::Uuid::parse_str(&u.account_id).unwrap()).await.unwrap();
    let id = uuid::Uuid::parse_str(&r.id()).unwrap();
    assert_eq!(app.state.channels.poll_mailbox(scope, id).await.unwrap(), 2);
    assert_eq!(app.state.channels.poll_mailbox(scope, id).await.unwrap(), 0, "seen mail is not taken again");
    let events = crate::channels::outbox_text(&app).await;
    let items: Vec<serde_json::Value> = events
        .lines()
        .filter(|l| l.starts_with("webhook.inbound.email "))
        .map(|l| serde_json::from_str::<serde_json::Value>(l.trim_start_matches("webhook.inbound.email ")).unwrap()["data"]["item"].clone())
        .collect();
    assert_eq!(items.len(), 2, "{events}");
    let reply = items.iter().find(|i| i["provider_message_id"] == "<reply-1@example.org>").expect("the reply");
    assert_eq!(reply["from"], "almaz@example.org");
    assert_eq!(reply["from_name"], "Almaz Bekele");
    assert_eq!(reply["text"], "Thank you, it arrived.");
    assert_eq!(reply["raw"]["in_reply_to"], "<order-1@turumba.example>");
    assert_eq!(reply["raw"]["subject"], "Re: Your order");
    let check = format!(
        r#"
import imaplib
m = imaplib.IMAP4("127.0.0.1", {imap_port})
m.login("inbox", "imap-pass-0002")
m.select("INBOX")
print(m.search(None, "UNSEEN")[1][0].decode() or "none")
"#
    );
    let out = Command::new(&python).args(["-c", &check]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "none", "both are flagged seen");

    // A bounce of a mail we sent (a delivery status notification naming its Message-ID) fails the
    // message for good, with the server's reason.
    let r = app
        .post("/v1/messages")
        .token(&u.token)
        .json(json!({"channel_id": id, "delivery_address": "nobody@example.org", "message_body": "Your order", "metadata": {"subject": "Your order"}}))
        .send()
        .await;
    let mid = r.expect(201, None).id();
    wait_status(&app, &u, &mid, "sent").await;
    let sent = message(&app, &u, &mid).await;
    let original = sent["provider_message_id"].as_str().unwrap().to_string();
    let bounce = format!(
        r#"
import imaplib
m = imaplib.IMAP4("127.0.0.1", {imap_port})
m.login("inbox", "imap-pass-0002")
m.select("INBOX")
dsn = ("From: MAILER-DAEMON@mx.example.org\r\nTo: news@turumba.example\r\nSubject: Undelivered Mail Returned to Sender\r\n"
  "Message-ID: <dsn-1@mx.example.org>\r\nMIME-Version: 1.0\r\n"
  "Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n"
  "--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
  "--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.org\r\n\r\n"
  "Final-Recipient: rfc822; nobody@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 User unknown\r\n"
  "--B\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: news@turumba.example\r\nTo: nobody@example.org\r\nMessage-ID: {original}\r\nSubject: Your order\r\n--B--\r\n")
m.append("INBOX", None, None, dsn.encode())
m.logout()
"#
    );
    let out = Command::new(&python).args(["-c", &bounce]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    app.state.channels.poll_mailbox(scope, id).await.unwrap();
    wait_status(&app, &u, &mid, "permanently_failed").await;
    let failed = message(&app, &u, &mid).await;
    assert!(failed["error_details"]["message"].as_str().unwrap().contains("5.1.1 User unknown"), "{failed}");
    // Wrong IMAP password: the poll reports it and the channel goes to error.
    app.patch(&format!("/v1/channels/{id}"))
        .token(&u.token)
        .json(json!({"credentials": {"imap_password": "wrong-password"}}))
        .send()
        .await
        .expect(200, None);
    assert!(app.state.channels.poll_mailbox(scope, id).await.is_err());
    let r = app.get(&format!("/v1/channels/{id}")).token(&u.token).send().await;
    assert_eq!(r.data()["status"], "error");
    assert!(r.data()["error_message"].as_str().unwrap().starts_with("imap: login failed"), "{:?}", r.body);
}

/// System mails come from handlebars templates as text and HTML alternatives; a file in
/// `TURUMBA_TEMPLATES_DIR/mail/` replaces a built-in part; a template that does not compile stops the
/// server at start, naming the file.
async fn system_mails_come_from_overridable_templates_in_text_and_html(b: Backend) {
    let Some(python) = python() else { return };
    let smtp = start_smtp(&python).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("mail")).unwrap();
    std::fs::write(dir.path().join("mail/verification.subject.hbs"), "Welcome to Acme, {{name}}").unwrap();
    let (templates, port) = (dir.path().to_path_buf(), smtp.port);
    let app = TestApp::spawn_with(b.clone(), |s| {
        s.smtp.host = Some("127.0.0.1".into());
        s.smtp.port = Some(port);
        s.smtp.tls = "none".into();
        s.templates_dir = Some(templates);
    })
    .await;
    app.post("/v1/auth/register")
        .json(json!({"email": "sara@example.org", "password": "a long password", "full_name": "Sara <Admin>", "account_name": "Acme"}))
        .send()
        .await
        .expect(201, None);
    let code = code_for(&smtp.maildir, "sara@example.org", 1).await;
    let mail = std::fs::read_dir(smtp.maildir.join("new"))
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .find(|m| m.contains("To: sara@example.org"))
        .unwrap();
    assert!(mail.contains("Subject: Welcome to Acme, Sara <Admin>"), "{mail}");
    assert!(
        mail.contains("multipart/alternative") && mail.contains("text/plain") && mail.contains("text/html"),
        "{mail}"
    );
    assert!(mail.contains("Sara &lt;Admin&gt;"), "the name is escaped in the HTML part: {mail}");
    assert!(mail.matches(code.as_str()).count() >= 2, "the code is in both parts: {mail}");

    std::fs::write(dir.path().join("mail/password_reset.text.hbs"), "{{#each}}broken").unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let url = crate::helpers::fresh_database(&b, scratch.path()).await;
    let mut settings = turumba::config::Settings::for_test(scratch.path(), &url);
    settings.templates_dir = Some(dir.path().to_path_buf());
    let err = turumba::app::Application::build(settings, turumba::app::BuildOptions::default()).await.err().unwrap();
    assert!(err.contains("password_reset.text.hbs") && err.contains("does not compile"), "{err}");
}

both_backends!(
    system_mails_come_from_overridable_templates_in_text_and_html,
    email_channel_polls_imap_for_replies,
    email_channel_logs_in_and_sends_multipart_mail,
    full_auth_flow_with_the_code_from_the_mail,
    five_wrong_codes_burn_the_code,
    forgotten_passwords_are_reset_with_the_mailed_code,
);
