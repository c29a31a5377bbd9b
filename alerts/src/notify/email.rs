//! Email over SMTP with lettre: STARTTLS (port 587), TLS from the first byte (465) or plain text
//! for a local relay; one message to every recipient. A transport is built per delivery so a
//! changed server or password applies to the next notice; alerts are few, so the lost connection
//! reuse does not matter.

use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use owl_config::SmtpTls;

use super::DeliveryError;
use crate::alert::Channel;
use crate::notice::Notice;
use crate::settings::EmailSettings;

fn invalid(message: String) -> DeliveryError {
    DeliveryError::new(Channel::Email, message, false)
}

/// The message: subject `[Owl] <title>`, the notice as plain text, every recipient in `To`.
pub(crate) fn message(settings: &EmailSettings, notice: &Notice) -> Result<Message, DeliveryError> {
    let from: Mailbox = settings
        .from
        .parse()
        .map_err(|e| invalid(format!("invalid from address {:?}: {e}", settings.from)))?;
    let mut builder = Message::builder()
        .from(from)
        .subject(format!("[Owl] {}", notice.title));
    for recipient in &settings.recipients {
        let to: Mailbox = recipient
            .parse()
            .map_err(|e| invalid(format!("invalid recipient {recipient:?}: {e}")))?;
        builder = builder.to(to);
    }
    builder
        .header(ContentType::TEXT_PLAIN)
        .body(notice.plain_text())
        .map_err(|e| invalid(format!("cannot build the message: {e}")))
}

pub(crate) async fn send(
    settings: &EmailSettings,
    notice: &Notice,
    timeout: Duration,
) -> Result<(), DeliveryError> {
    let email = message(settings, notice)?;
    let host = settings.smtp_host.as_str();
    let builder = match settings.tls {
        SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
        SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
            .map_err(|e| invalid(format!("cannot set up STARTTLS to {host}: {e}")))?,
        SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host)
            .map_err(|e| invalid(format!("cannot set up TLS to {host}: {e}")))?,
    };
    let mut builder = builder.port(settings.smtp_port).timeout(Some(timeout));
    if !settings.username.is_empty() {
        builder = builder.credentials(Credentials::new(
            settings.username.clone(),
            settings.password.clone(),
        ));
    }
    let transport = builder.build();
    match transport.send(email).await {
        Ok(_) => Ok(()),
        Err(error) => {
            let retryable = !error.is_permanent();
            Err(DeliveryError::new(
                Channel::Email,
                format!("SMTP {host}:{}: {error}", settings.smtp_port),
                retryable,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_message_reaches_every_recipient() {
        let settings = EmailSettings {
            from: "Owl <owl@example.com>".into(),
            recipients: vec!["ops@example.com".into(), "oncall@example.com".into()],
            ..EmailSettings::default()
        };
        let notice = Notice::test(Some("磁盘告警"), "http://q", 0);
        let email = message(&settings, &notice).unwrap();
        let to: Vec<String> = email.envelope().to().iter().map(|a| a.to_string()).collect();
        assert_eq!(to, ["ops@example.com", "oncall@example.com"]);
        let text = String::from_utf8(email.formatted()).unwrap();
        assert!(text.contains("Subject: "), "{text}");
        let bad = EmailSettings {
            recipients: vec!["nope".into()],
            ..settings
        };
        assert!(message(&bad, &notice).unwrap_err().message.contains("nope"));
    }
}
