//! Email over SMTP with lettre: STARTTLS (port 587), TLS from the first byte (465) or plain text
//! for a local relay; one message to every recipient. A transport is built per delivery so a
//! changed server or password applies to the next notice; alerts are few, so the lost connection
//! reuse does not matter.
//!
//! The host is resolved here and checked by the [`TargetPolicy`]; lettre then connects to the
//! checked address while TLS still verifies the certificate for the host name. A user name and
//! password are only sent over TLS, or in plain text to this host.

use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use owl_config::SmtpTls;

use super::DeliveryError;
use super::target::TargetPolicy;
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

/// Why credentials may not go to `address` in plain text, if they may not.
pub(crate) fn plaintext_credentials_refused(
    settings: &EmailSettings,
    address: std::net::IpAddr,
) -> Option<String> {
    (settings.tls == SmtpTls::None && !settings.username.is_empty() && !owl_config::net::is_loopback(address))
        .then(|| "SMTP 认证只能通过 TLS（starttls 或 tls）发送，明文只允许本机地址".to_string())
}

pub(crate) async fn send(
    settings: &EmailSettings,
    policy: &TargetPolicy,
    notice: &Notice,
    timeout: Duration,
) -> Result<(), DeliveryError> {
    let email = message(settings, notice)?;
    let host = settings.smtp_host.as_str();
    let address = policy
        .resolve(host, settings.smtp_port)
        .await
        .map_err(|e| DeliveryError::refused(Channel::Email, e))?[0];
    if let Some(why) = plaintext_credentials_refused(settings, address.ip()) {
        return Err(DeliveryError::refused(Channel::Email, super::TargetRefused(why)));
    }
    let tls_parameters = || {
        TlsParameters::new(host.trim_start_matches('[').trim_end_matches(']').to_string())
            .map_err(|e| invalid(format!("cannot set up TLS to {host}: {e}")))
    };
    let tls = match settings.tls {
        SmtpTls::None => Tls::None,
        SmtpTls::Starttls => Tls::Required(tls_parameters()?),
        SmtpTls::Tls => Tls::Wrapper(tls_parameters()?),
    };
    // Connect to the address checked above, not to the name again.
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(address.ip().to_string())
        .port(address.port())
        .tls(tls)
        .timeout(Some(timeout));
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
            // The reply code, never the server's text.
            let what = match error.status() {
                Some(code) if error.is_permanent() => format!("permanent error {code}"),
                Some(code) => format!("transient error {code}"),
                None if error.is_timeout() => "timed out".to_string(),
                None if error.is_tls() => "TLS failed".to_string(),
                None => "connection failed".to_string(),
            };
            Err(DeliveryError::new(
                Channel::Email,
                format!("SMTP {host}:{}: {what}", settings.smtp_port),
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
