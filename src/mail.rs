//! System e-mail (verification codes, password resets, later invitations) through the SMTP settings.
//! Without `TURUMBA_SMTP__HOST` the mail is written to the log instead, so a laptop needs no mail server.

use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::SmtpSettings;

#[derive(Clone)]
pub struct Mailer {
    transport: Option<AsyncSmtpTransport<Tokio1Executor>>,
    from: Mailbox,
}

impl Mailer {
    pub fn new(settings: &SmtpSettings) -> Result<Self, String> {
        let from: Mailbox = settings.from.parse().map_err(|e| format!("invalid setting `TURUMBA_SMTP__FROM`: {e}"))?;
        let Some(host) = settings.host.as_deref().filter(|h| !h.is_empty()) else {
            return Ok(Mailer { transport: None, from });
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
        Ok(Mailer { transport: Some(builder.build()), from })
    }

    pub fn is_configured(&self) -> bool {
        self.transport.is_some()
    }

    /// Sends in the background; failures are logged, never shown to the API caller (who can ask again).
    pub fn send(&self, to: &str, subject: &str, body: String) {
        let Some(transport) = self.transport.clone() else {
            tracing::info!(to, subject, body = %body, "e-mail not sent (SMTP is not configured); logged instead");
            return;
        };
        let to_box: Mailbox = match to.parse() {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "cannot e-mail an invalid address");
                return;
            }
        };
        let message = Message::builder().from(self.from.clone()).to(to_box).subject(subject).body(body);
        let message = match message {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, "cannot build e-mail");
                return;
            }
        };
        let subject = subject.to_string();
        tokio::spawn(async move {
            if let Err(e) = transport.send(message).await {
                tracing::error!(error = %e, subject, "e-mail delivery failed");
            }
        });
    }
}
