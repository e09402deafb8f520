//! System e-mail (verification codes, password resets, invitations) through the SMTP settings.
//! Without `TURUMBA_SMTP__HOST` the mail is written to the log instead, so a laptop needs no mail server.
//!
//! Each mail is three handlebars templates — `<name>.subject.hbs`, `<name>.text.hbs`,
//! `<name>.html.hbs` — compiled into the binary from `templates/mail/` and sent as a plain-text and HTML
//! alternative. A file of the same name in `TURUMBA_TEMPLATES_DIR/mail/` replaces the built-in one
//! (checked at start: a template that does not compile stops the server with its file named). Values are
//! HTML-escaped in the HTML part only. (Message templates keep their own `{VARIABLE}` syntax.)

use std::path::Path;
use std::sync::Arc;

use handlebars::Handlebars;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Serialize;

use crate::config::SmtpSettings;

/// The system mails, each with its three parts built in.
const BUILT_IN: &[(&str, [&str; 3])] = &[
    (
        "verification",
        [
            include_str!("../templates/mail/verification.subject.hbs"),
            include_str!("../templates/mail/verification.text.hbs"),
            include_str!("../templates/mail/verification.html.hbs"),
        ],
    ),
    (
        "invitation",
        [
            include_str!("../templates/mail/invitation.subject.hbs"),
            include_str!("../templates/mail/invitation.text.hbs"),
            include_str!("../templates/mail/invitation.html.hbs"),
        ],
    ),
    (
        "password_reset",
        [
            include_str!("../templates/mail/password_reset.subject.hbs"),
            include_str!("../templates/mail/password_reset.text.hbs"),
            include_str!("../templates/mail/password_reset.html.hbs"),
        ],
    ),
];

const PARTS: [&str; 3] = ["subject", "text", "html"];

/// The compiled mail templates: subject and text without escaping, HTML with it.
struct MailTemplates {
    plain: Handlebars<'static>,
    html: Handlebars<'static>,
}

/// A rendered mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedMail {
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl MailTemplates {
    /// The built-in templates, each replaced by `<dir>/mail/<name>.<part>.hbs` when that file exists.
    fn load(dir: Option<&Path>) -> Result<Self, String> {
        let mut plain = Handlebars::new();
        plain.register_escape_fn(handlebars::no_escape);
        plain.set_strict_mode(false);
        let mut html = Handlebars::new();
        html.set_strict_mode(false);
        for (name, sources) in BUILT_IN {
            for (part, built_in) in PARTS.iter().zip(sources) {
                let key = format!("{name}.{part}");
                let file = dir.map(|d| d.join("mail").join(format!("{key}.hbs")));
                let (source, origin) = match file.as_deref().filter(|f| f.exists()) {
                    Some(f) => (
                        std::fs::read_to_string(f).map_err(|e| format!("cannot read {}: {e}", f.display()))?,
                        f.display().to_string(),
                    ),
                    None => (built_in.to_string(), format!("built-in {key}.hbs")),
                };
                let registry = if *part == "html" { &mut html } else { &mut plain };
                registry
                    .register_template_string(&key, source)
                    .map_err(|e| format!("mail template {origin} does not compile: {e}"))?;
            }
        }
        Ok(MailTemplates { plain, html })
    }

    fn render(&self, name: &str, data: &impl Serialize) -> Result<RenderedMail, String> {
        let plain = |part: &str| self.plain.render(&format!("{name}.{part}"), data).map_err(|e| e.to_string());
        Ok(RenderedMail {
            subject: plain("subject")?.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or(name).to_string(),
            text: plain("text")?,
            html: self.html.render(&format!("{name}.html"), data).map_err(|e| e.to_string())?,
        })
    }
}

#[derive(Clone)]
pub struct Mailer {
    transport: Option<AsyncSmtpTransport<Tokio1Executor>>,
    from: Mailbox,
    templates: Arc<MailTemplates>,
}

impl Mailer {
    /// `templates_dir` overrides built-in templates (`TURUMBA_TEMPLATES_DIR`).
    pub fn new(settings: &SmtpSettings, templates_dir: Option<&Path>) -> Result<Self, String> {
        let from: Mailbox = settings.from.parse().map_err(|e| format!("invalid setting `TURUMBA_SMTP__FROM`: {e}"))?;
        let templates = Arc::new(MailTemplates::load(templates_dir)?);
        let Some(host) = settings.host.as_deref().filter(|h| !h.is_empty()) else {
            return Ok(Mailer { transport: None, from, templates });
        };
        let mut builder = match settings.tls.as_str() {
            "tls" => AsyncSmtpTransport::<Tokio1Executor>::relay(host),
            "starttls" => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host),
            _ => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)),
        }
        .map_err(|e| format!("invalid setting `TURUMBA_SMTP__HOST`: {e}"))?;
        if let Some(port) = settings.port {
            builder = builder.port(port);
        }
        if let (Some(user), Some(pass)) = (&settings.username, &settings.password) {
            builder = builder.credentials(Credentials::new(user.clone(), pass.expose().to_string()));
        }
        Ok(Mailer { transport: Some(builder.build()), from, templates })
    }

    pub fn is_configured(&self) -> bool {
        self.transport.is_some()
    }

    /// Renders the system mail `name` with `data`.
    pub fn render(&self, name: &str, data: &impl Serialize) -> Result<RenderedMail, String> {
        self.templates.render(name, data)
    }

    /// Renders and sends the system mail `name` in the background; failures are logged, never shown to
    /// the API caller (who can ask again).
    pub fn send(&self, to: &str, name: &str, data: &impl Serialize) {
        let mail = match self.render(name, data) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, template = name, "cannot render a system e-mail");
                return;
            }
        };
        let Some(transport) = self.transport.clone() else {
            tracing::info!(to, subject = %mail.subject, body = %mail.text, "e-mail not sent (SMTP is not configured); logged instead");
            return;
        };
        let to_box: Mailbox = match to.parse() {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "cannot e-mail an invalid address");
                return;
            }
        };
        let message = Message::builder()
            .from(self.from.clone())
            .to(to_box)
            .subject(mail.subject.clone())
            .multipart(MultiPart::alternative_plain_html(mail.text, mail.html));
        let message = match message {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, "cannot build e-mail");
                return;
            }
        };
        let subject = mail.subject;
        tokio::spawn(async move {
            if let Err(e) = transport.send(message).await {
                tracing::error!(error = %e, subject, "e-mail delivery failed");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn built_in_mails_render_every_part_and_escape_only_html() {
        let t = MailTemplates::load(None).unwrap();
        let data = json!({"name": "Abebe <b>&</b>", "code": "123456", "valid_for": "24 hours"});
        for name in ["verification", "password_reset"] {
            let m = t.render(name, &data).unwrap();
            assert!(!m.subject.is_empty() && !m.subject.contains('\n'), "{name}: {m:?}");
            assert!(m.text.contains("code is 123456") && m.text.contains("Abebe <b>&</b>"), "{name}: {}", m.text);
            assert!(
                m.html.contains("123456") && m.html.contains("Abebe &lt;b&gt;&amp;&lt;/b&gt;"),
                "{name}: {}",
                m.html
            );
            assert!(!m.html.contains("<b>&</b>"), "values are escaped in HTML");
        }
    }

    #[test]
    fn a_directory_overrides_single_parts_and_a_broken_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("mail")).unwrap();
        std::fs::write(dir.path().join("mail/verification.subject.hbs"), "Welcome to Acme, {{name}}").unwrap();
        let t = MailTemplates::load(Some(dir.path())).unwrap();
        let m = t.render("verification", &json!({"name": "Sara", "code": "654321", "valid_for": "1 day"})).unwrap();
        assert_eq!(m.subject, "Welcome to Acme, Sara");
        assert!(m.text.contains("654321"), "the other parts stay built in");
        std::fs::write(dir.path().join("mail/password_reset.html.hbs"), "{{#if}}broken").unwrap();
        let err = MailTemplates::load(Some(dir.path())).err().unwrap();
        assert!(err.contains("password_reset.html.hbs") && err.contains("does not compile"), "{err}");
    }
}
