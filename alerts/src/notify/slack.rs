//! Slack incoming webhooks: `POST {"text": "<mrkdwn>"}`; Slack answers `200 ok`, or a 4xx with a
//! reason (`invalid_payload`, `no_service`, `channel_is_archived`) that retrying cannot fix, a 429
//! when rate limited, or a 5xx.

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
    let body = response.text().await.unwrap_or_default();
    let retryable = status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
    Err(DeliveryError::new(
        Channel::Slack,
        format!("HTTP {}: {}", status.as_u16(), short(&body)),
        retryable,
    ))
}

/// The start of a response body, for an error message.
pub(crate) fn short(body: &str) -> String {
    let body = body.trim();
    match body.char_indices().nth(200) {
        Some((at, _)) => format!("{}…", &body[..at]),
        None => body.to_string(),
    }
}
