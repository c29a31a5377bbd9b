//! Shipping: disk buffer entries to the collector, several in flight, with retries, then
//! checkpoints in order.
//!
//! Design note
//! - Entries are read from the buffer one at a time in sequence order and sent with
//!   `x-owl-agent-id` and `x-owl-batch-seq`; up to `max_in_flight` are on the wire at once.
//! - Acknowledgement order: batches can be acknowledged out of order, but a file's checkpoint
//!   may only move past records that are all acknowledged. The [`Finalizer`] therefore applies
//!   the checkpoint marks of a batch only once every batch read before it is done (acknowledged
//!   or dead-lettered), like Vector's ordered finalizer. A done entry is removed from the buffer
//!   at once, so the room it held is free even while an older batch is still retrying.
//! - Answers: 2xx is an acknowledgement (records the collector rejected one by one go to the
//!   dead-letter directory). 408, 429, 5xx and transport errors are retried with exponential
//!   backoff and full jitter between `initial_backoff_ms` and `max_backoff_ms`; a `Retry-After`
//!   (seconds or HTTP date) is honoured. 401, 403 and 404 mean the token or URL is wrong: no
//!   batch is at fault, so setting batches aside would only move every record into the
//!   dead-letter directory; the agent keeps retrying at the longest backoff and logs an error
//!   that an operator must act on (the disk buffer fills, then reading pauses: nothing is lost).
//!   Any other 4xx refuses this batch for good: it is set aside as a dead letter so one poison
//!   batch never stalls the pipeline.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use owl_config::RetryConfig;
use owl_model::{AGENT_ID_HEADER, BATCH_SEQ_HEADER};
use rand::Rng;
use serde::Deserialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::buffer::{Buffer, Entry, Mark, decode_entry};
use crate::checkpoint::CheckpointStore;
use crate::deadletter::DeadLetters;
use crate::metrics::Metrics;

/// Longest wait a `Retry-After` can ask for.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// Applies checkpoint marks in batch order.
#[derive(Default)]
pub(crate) struct Finalizer {
    /// Batches read from the buffer and not yet applied: done flag and marks.
    pending: BTreeMap<u64, (bool, Vec<Mark>)>,
}

impl Finalizer {
    pub(crate) fn register(&mut self, seq: u64, marks: Vec<Mark>) {
        self.pending.insert(seq, (false, marks));
    }

    /// Marks a batch done; returns the marks that may now be applied, oldest first.
    pub(crate) fn complete(&mut self, seq: u64) -> Vec<Mark> {
        if let Some(entry) = self.pending.get_mut(&seq) {
            entry.0 = true;
        }
        let mut ready = Vec::new();
        while let Some(entry) = self.pending.first_entry() {
            if !entry.get().0 {
                break;
            }
            ready.extend(entry.remove().1);
        }
        ready
    }
}

/// The collector's answer to an accepted batch.
#[derive(Debug, Default, Deserialize)]
struct IngestAnswer {
    #[serde(default)]
    accepted: u64,
    #[serde(default)]
    duplicates: u64,
    #[serde(default)]
    rejected: Vec<Rejection>,
}

#[derive(Debug, Deserialize)]
struct Rejection {
    /// 1-based line number in the body.
    line: usize,
    #[serde(default)]
    reason: String,
}

enum Outcome {
    Acked(IngestAnswer),
    Refused { status: u16, reason: String },
    Cancelled,
}

/// What the shipper needs to know.
pub(crate) struct ShipperConfig {
    pub ingest_url: String,
    pub token: String,
    pub agent_id: String,
    pub retry: RetryConfig,
    pub max_in_flight: usize,
}

pub(crate) struct Shipper {
    client: reqwest::Client,
    config: ShipperConfig,
    buffer: Arc<Buffer>,
    checkpoints: CheckpointStore,
    metrics: Arc<Metrics>,
    finalizer: Mutex<Finalizer>,
    dead_letters: DeadLetters,
}

impl Shipper {
    pub(crate) fn new(
        config: ShipperConfig,
        buffer: Arc<Buffer>,
        checkpoints: CheckpointStore,
        metrics: Arc<Metrics>,
        dead_letters: DeadLetters,
    ) -> Result<Shipper, reqwest::Error> {
        let client = reqwest::Client::builder()
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(config.max_in_flight)
            .user_agent(concat!("owl-agent/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Shipper {
            client,
            config,
            buffer,
            checkpoints,
            metrics,
            finalizer: Mutex::new(Finalizer::default()),
            dead_letters,
        })
    }

    /// Ships until `hard` is cancelled, or until `drain` is cancelled and the buffer is empty.
    pub(crate) async fn run(self: Arc<Self>, drain: CancellationToken, hard: CancellationToken) {
        let permits = Arc::new(Semaphore::new(self.config.max_in_flight));
        let mut tasks = JoinSet::new();
        let mut cursor = 0u64;
        loop {
            while tasks.try_join_next().is_some() {}
            let permit = tokio::select! {
                permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
                () = hard.cancelled() => break,
            };
            match self.buffer.first_from(cursor) {
                Ok(Some((seq, raw))) => {
                    cursor = seq + 1;
                    match decode_entry(seq, raw) {
                        Ok(entry) => {
                            self.lock().register(seq, entry.header.marks.clone());
                            let (shipper, hard) = (self.clone(), hard.clone());
                            tasks.spawn(async move {
                                Metrics::add(&shipper.metrics.in_flight, 1);
                                shipper.ship(entry, &hard).await;
                                shipper
                                    .metrics
                                    .in_flight
                                    .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                                drop(permit);
                            });
                        }
                        Err(e) => {
                            crate::events::CorruptEntry {
                                seq,
                                reason: &e.to_string(),
                            }
                            .emit(&self.metrics);
                            if let Err(e) = self.buffer.remove(seq) {
                                tracing::error!(seq, error = %e, "cannot remove corrupt buffer entry");
                            }
                        }
                    }
                }
                Ok(None) => {
                    drop(permit);
                    if drain.is_cancelled() && tasks.is_empty() && self.buffer.is_empty() {
                        break;
                    }
                    tokio::select! {
                        () = self.buffer.wait_for_entries() => {}
                        Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                        () = drain.cancelled(), if !drain.is_cancelled() => {}
                        () = hard.cancelled() => break,
                        // The entries left behind when an older entry is still being retried.
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                    if self.buffer.is_empty() {
                        continue;
                    }
                    if tasks.is_empty() {
                        // Everything read was done; anything left is new or was skipped over.
                        cursor = 0;
                    }
                }
                Err(e) => {
                    drop(permit);
                    tracing::error!(error = %e, "cannot read the disk buffer; retrying in 1 s");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        () = hard.cancelled() => break,
                    }
                }
            }
        }
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Finalizer> {
        self.finalizer
            .lock()
            .expect("finalizer lock is never poisoned: nothing under it panics")
    }

    /// Sends one entry until it is acknowledged or refused, then finalises it.
    async fn ship(&self, entry: Entry, hard: &CancellationToken) {
        let seq = entry.seq;
        match self.deliver(&entry, hard).await {
            Outcome::Cancelled => return,
            Outcome::Acked(answer) => {
                let rejected = answer.rejected.len() as u64;
                Metrics::add(&self.metrics.batches_shipped, 1);
                Metrics::add(
                    &self.metrics.records_shipped,
                    u64::from(entry.header.records).saturating_sub(rejected),
                );
                Metrics::add(&self.metrics.records_duplicate, answer.duplicates);
                Metrics::add(&self.metrics.shipped_bytes, entry.body.len() as u64);
                tracing::trace!(
                    seq,
                    accepted = answer.accepted,
                    duplicates = answer.duplicates,
                    "batch acknowledged"
                );
                if !answer.rejected.is_empty() {
                    Metrics::add(&self.metrics.records_rejected, rejected);
                    let list: Vec<(usize, String)> =
                        answer.rejected.into_iter().map(|r| (r.line, r.reason)).collect();
                    match self.dead_letters.records(&entry, &list) {
                        Ok(path) => tracing::warn!(
                            seq,
                            rejected,
                            first_reason = list.first().map_or("", |r| r.1.as_str()),
                            path = %path.display(),
                            "collector rejected records; kept as dead letters"
                        ),
                        Err(e) => {
                            tracing::error!(seq, rejected, error = %e, "collector rejected records and they could not be written to the dead-letter directory")
                        }
                    }
                }
            }
            Outcome::Refused { status, reason } => match self.dead_letters.batch(&entry, status, &reason) {
                Ok(path) => crate::events::BatchDeadLettered {
                    seq,
                    records: u64::from(entry.header.records),
                    status,
                    reason: &reason,
                    path: &path,
                }
                .emit(&self.metrics),
                Err(e) => {
                    // Keep the entry: it will be sent (and refused) again after a restart and
                    // written then. Its checkpoint marks wait with it.
                    tracing::error!(seq, status, error = %e, "cannot write dead letter; batch kept in the buffer");
                    return;
                }
            },
        }
        if let Err(e) = self.buffer.remove(seq) {
            tracing::error!(seq, error = %e, "cannot remove shipped batch from the disk buffer");
        }
        let marks = self.lock().complete(seq);
        for mark in marks {
            if let Err(e) = self.checkpoints.advance(&mark.fp, mark.offset) {
                tracing::error!(fingerprint = %mark.fp, offset = mark.offset, error = %e, "cannot save checkpoint");
            }
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let initial = self.config.retry.initial_backoff_ms.max(1);
        let max = self.config.retry.max_backoff_ms.max(initial);
        let ceiling = initial.saturating_mul(1u64 << attempt.min(32)).min(max);
        let jittered = rand::rng().random_range(initial.min(ceiling)..=ceiling);
        Duration::from_millis(jittered)
    }

    async fn deliver(&self, entry: &Entry, hard: &CancellationToken) -> Outcome {
        let mut attempt = 0u32;
        let mut logged_config_error = false;
        loop {
            let mut request = self
                .client
                .post(&self.config.ingest_url)
                .timeout(Duration::from_millis(self.config.retry.request_timeout_ms))
                .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
                .header(AGENT_ID_HEADER, &self.config.agent_id)
                .header(BATCH_SEQ_HEADER, entry.seq.to_string())
                .body(entry.body.clone());
            if !self.config.token.is_empty() {
                request = request.bearer_auth(&self.config.token);
            }
            if let Some(encoding) = entry.header.encoding.header() {
                request = request.header(reqwest::header::CONTENT_ENCODING, encoding);
            }
            let sent = tokio::select! {
                result = request.send() => result,
                () = hard.cancelled() => return Outcome::Cancelled,
            };
            let wait = match sent {
                Ok(response) => {
                    let status = response.status();
                    let retry_after = retry_after(response.headers());
                    if status.is_success() {
                        let body = tokio::select! {
                            body = response.bytes() => body,
                            () = hard.cancelled() => return Outcome::Cancelled,
                        };
                        // A 2xx is an acknowledgement even if its body cannot be read.
                        let answer = body
                            .ok()
                            .and_then(|b| serde_json::from_slice(&b).ok())
                            .unwrap_or_default();
                        return Outcome::Acked(answer);
                    }
                    let code = status.as_u16();
                    if matches!(code, 401 | 403 | 404) {
                        Metrics::add(&self.metrics.send_auth_failures, 1);
                        if !logged_config_error {
                            logged_config_error = true;
                            let body = response.text().await.unwrap_or_default();
                            tracing::error!(
                                status = code,
                                url = %self.config.ingest_url,
                                body = %truncate(&body, 512),
                                "collector refuses the agent (check agent.token and agent.collector_url); retrying"
                            );
                        }
                        Duration::from_millis(self.config.retry.max_backoff_ms)
                    } else if code == 408 || code == 429 || status.is_server_error() {
                        if attempt.is_multiple_of(10) {
                            tracing::warn!(
                                status = code,
                                seq = entry.seq,
                                attempt,
                                "collector busy or failing; retrying"
                            );
                        }
                        retry_after.unwrap_or_else(|| self.backoff(attempt))
                    } else {
                        let body = response.text().await.unwrap_or_default();
                        return Outcome::Refused {
                            status: code,
                            reason: truncate(&body, 1024).to_string(),
                        };
                    }
                }
                Err(e) => {
                    if attempt.is_multiple_of(10) {
                        tracing::warn!(error = %e, seq = entry.seq, attempt, "cannot reach collector; retrying");
                    }
                    self.backoff(attempt)
                }
            };
            Metrics::add(&self.metrics.send_retries, 1);
            attempt = attempt.saturating_add(1);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = hard.cancelled() => return Outcome::Cancelled,
            }
        }
    }
}

/// `Retry-After` as seconds or an HTTP date, capped.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
            (when.with_timezone(&chrono::Utc) - chrono::Utc::now())
                .to_std()
                .unwrap_or_default()
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::Fingerprint;

    fn mark(n: u8, offset: u64) -> Mark {
        Mark {
            fp: Fingerprint([n; 16]),
            offset,
        }
    }

    #[test]
    fn finalizer_applies_marks_in_batch_order() {
        let mut f = Finalizer::default();
        f.register(1, vec![mark(1, 10)]);
        f.register(2, vec![mark(1, 20), mark(2, 5)]);
        f.register(3, vec![mark(1, 30)]);
        assert!(f.complete(2).is_empty(), "batch 1 is still in flight");
        assert!(f.complete(3).is_empty());
        assert_eq!(
            f.complete(1),
            vec![mark(1, 10), mark(1, 20), mark(2, 5), mark(1, 30)]
        );
        assert!(f.pending.is_empty());
        assert!(f.complete(99).is_empty());
    }

    #[test]
    fn retry_after_in_seconds_or_dates() {
        let mut headers = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(reqwest::header::RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
        headers.insert(reqwest::header::RETRY_AFTER, "99999".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(MAX_RETRY_AFTER));
        headers.insert(
            reqwest::header::RETRY_AFTER,
            "Sun, 06 Nov 1994 08:49:37 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
    }
}
