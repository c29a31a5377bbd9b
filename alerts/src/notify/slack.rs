//! Slack incoming webhooks: `POST {"text": "<mrkdwn>"}`; Slack answers `200 ok`, or a 4xx with a
//! reason (`invalid_payload`, `no_service`, `channel_is_archived`) that retrying cannot fix, a 429
//! when rate limited, or a 5xx. Only the status code is reported.

use serde_json::{Value, json};

use super::DeliveryError;
use crate::alert::Channel;
use crate::notice::Notice;

/// The body Slack receives.
pub(crate) fn payload(notice: &Notice) -> Value {
    json!({ "text": notice.slack_text() })
}

pub(crate) async fn send(http: &reqwest::Client, url: &str, notice: &Notice) -> Result<(), DeliveryError> {
    let response = http
        .post(url)
        .json(&payload(notice))
        .send()
        .await
        .map_err(|e| DeliveryError::http(Channel::Slack, e))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    Err(status_error(Channel::Slack, status))
}

/// A refused answer, by its status code alone: what the remote wrote is not echoed (the address
/// is the user's choice, and its answer could be anything it serves).
pub(crate) fn status_error(channel: Channel, status: reqwest::StatusCode) -> DeliveryError {
    let retryable = status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
    let redirect = if status.is_redirection() {
        " (redirects are not followed)"
    } else {
        ""
    };
    DeliveryError::new(channel, format!("HTTP {}{redirect}", status.as_u16()), retryable)
}
