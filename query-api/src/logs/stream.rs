//! `GET /api/v1/logs/stream`: a live tail of the records matching the filters of `/query`, as
//! Server-Sent Events.
//!
//! The index has no push hook, so the stream polls it every [`POLL`] for matching records in a
//! window reaching [`GRACE`] back from the newest record delivered (or from the connection time),
//! newest first, and sends those not sent yet, oldest first. The grace window catches records that
//! arrive late (an agent that ships a few seconds behind another); the set of sent ids, pruned to
//! the window, keeps each record to one event. More than [`BATCH`] new matches in one poll is a
//! firehose nobody reads: the newest are sent and an `overflow` event says how many were skipped.
//!
//! Events: `ready` once subscribed (`{"since": ...}`), `log` per record (id = record id, data =
//! The log API's LogItem), `overflow` (`{"skipped": n}`), `end` (`{"reason": ...}`) before the server
//! closes a stream whose rights ran out; the HTTP layer adds a `keep-alive` comment every 15 s.
//!
//! A stream never outlives the rights it was opened with: before every poll the token is checked
//! again the way a request is (the auth cache makes that cheap), and the stream ends at the
//! token's expiry, after logout, disable or revocation, and when the user's permission or data
//! scope changed (the client reconnects and gets the new scope). It also ends when the client
//! disconnects (the response body is dropped, and the poll with it) or when the server shuts down
//! ([`StreamShutdown`]). Each open stream holds a slot of [`crate::limits::UserSlots`].

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::Stream;
use owl_index::{Index, LogFilter, SearchRequest, SortBy, SortOrder};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::render::log_item;
use owl_model::clock::Clock;

/// How often the index is asked for new records.
pub(crate) const POLL: Duration = Duration::from_millis(500);
/// How far behind the newest delivered record late arrivals are still picked up.
pub(crate) const GRACE: chrono::Duration = chrono::Duration::seconds(5);
/// Most records sent per poll.
pub(crate) const BATCH: usize = 500;
/// The server's shutdown signal, put in the request extensions by [`crate::run`] so live streams
/// end when the server stops (a graceful shutdown otherwise waits for them forever).
#[derive(Debug, Clone)]
pub struct StreamShutdown(pub CancellationToken);

/// One event of a live tail; the HTTP layer sends it as a Server-Sent Event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TailEvent {
    /// `ready`, `log`, `overflow` or `end`.
    pub kind: &'static str,
    /// The record id of a `log` event.
    pub id: Option<String>,
    /// The JSON payload.
    pub data: String,
}

impl TailEvent {
    fn new(kind: &'static str, data: serde_json::Value) -> TailEvent {
        TailEvent {
            kind,
            id: None,
            data: data.to_string(),
        }
    }
}

/// Who a stream serves, checked again before every poll.
pub(crate) struct Viewer {
    /// The sign-in service.
    pub auth: crate::auth::Auth,
    /// The access token the stream was opened with.
    pub token: String,
    /// The data scope it was opened with.
    pub scope: crate::authz::scope::Scope,
    /// The stream's slot, held while the stream lives and given back when it ends.
    #[allow(dead_code)]
    pub slot: crate::limits::Slot,
}

impl Viewer {
    /// Why the stream must end now, if it must.
    async fn revoked(&self) -> Option<&'static str> {
        match self.auth.authenticate(&self.token).await {
            Ok(principal) if !principal.has(crate::permissions::Permission::LogRead) => {
                Some("permission_revoked")
            }
            Ok(principal) if principal.scope() != self.scope => Some("scope_changed"),
            Ok(_) => None,
            Err(crate::auth::AuthError::Token(crate::auth::TokenError::Expired)) => Some("token_expired"),
            Err(crate::auth::AuthError::Kv(_) | crate::auth::AuthError::Db(_)) => {
                // The store is down: the next poll tries again; the stream stays within the
                // rights it had a moment ago.
                None
            }
            Err(_) => Some("token_revoked"),
        }
    }
}

struct Tail {
    index: Index,
    viewer: Viewer,
    /// `None`: the caller's scope excludes everything; only keep-alives are sent.
    filter: Option<LogFilter>,
    connected_at: DateTime<Utc>,
    newest: DateTime<Utc>,
    /// Nothing older is looked at again (moved up after an overflow).
    floor: DateTime<Utc>,
    sent: HashMap<String, DateTime<Utc>>,
    queue: VecDeque<TailEvent>,
    shutdown: CancellationToken,
    greeted: bool,
}

impl Tail {
    async fn poll(&mut self) {
        let Some(base) = &self.filter else { return };
        let window_start = (self.connected_at.max(self.newest) - GRACE).max(self.floor);
        let filter = LogFilter {
            start: Some(window_start),
            end: None,
            ..base.clone()
        };
        let request = SearchRequest {
            filter,
            sort_by: SortBy::Timestamp,
            order: SortOrder::Desc,
            offset: 0,
            limit: BATCH,
        };
        let index = self.index.clone();
        let found = match tokio::task::spawn_blocking(move || index.search(&request)).await {
            Ok(Ok(found)) => found,
            Ok(Err(error)) => {
                tracing::warn!(%error, "live tail search failed; retrying at the next poll");
                return;
            }
            Err(error) => {
                tracing::warn!(%error, "live tail search task failed; retrying at the next poll");
                return;
            }
        };
        let complete = found.total as usize <= found.hits.len();
        let oldest = found.hits.last().map(|r| r.timestamp);
        for record in found.hits.into_iter().rev() {
            if self.sent.contains_key(&record.id) {
                continue;
            }
            self.newest = self.newest.max(record.timestamp);
            self.sent.insert(record.id.clone(), record.timestamp);
            self.queue.push_back(TailEvent {
                kind: "log",
                data: log_item(&record).to_string(),
                id: Some(record.id),
            });
        }
        if !complete {
            let delivered = self.sent.values().filter(|at| **at >= window_start).count() as u64;
            let skipped = found.total.saturating_sub(delivered);
            if skipped > 0 {
                self.queue
                    .push_back(TailEvent::new("overflow", json!({ "skipped": skipped })));
            }
            if let Some(oldest) = oldest {
                self.floor = self.floor.max(oldest);
            }
        }
        let keep_from = (self.connected_at.max(self.newest) - GRACE).max(self.floor);
        self.sent.retain(|_, at| *at >= keep_from);
    }
}

/// The live tail's events, until the viewer's rights run out, the server stops or the stream is
/// dropped (the client went away).
pub(crate) fn tail(
    index: Index,
    filter: Option<LogFilter>,
    viewer: Viewer,
    clock: Clock,
    shutdown: Option<CancellationToken>,
) -> impl Stream<Item = TailEvent> {
    let connected_at = clock.now();
    let tail = Tail {
        index,
        viewer,
        filter,
        connected_at,
        newest: connected_at,
        floor: DateTime::<Utc>::MIN_UTC,
        sent: HashMap::new(),
        queue: VecDeque::new(),
        shutdown: shutdown.unwrap_or_default(),
        greeted: false,
    };
    futures::stream::unfold(Some(tail), |tail| async move {
        let mut tail = tail?;
        loop {
            if !tail.greeted {
                tail.greeted = true;
                let since = owl_model::format_timestamp(&(tail.connected_at - GRACE));
                let ready = TailEvent::new("ready", json!({ "since": since }));
                return Some((ready, Some(tail)));
            }
            if let Some(event) = tail.queue.pop_front() {
                return Some((event, Some(tail)));
            }
            tokio::select! {
                () = tail.shutdown.cancelled() => return None,
                () = tokio::time::sleep(POLL) => {}
            }
            if let Some(reason) = tail.viewer.revoked().await {
                tracing::info!(reason, "live tail ended: its rights ran out");
                let end = TailEvent::new("end", json!({ "reason": reason }));
                // Dropping the tail gives the slot back; the stream closes after this event.
                return Some((end, None));
            }
            tail.poll().await;
        }
    })
}
