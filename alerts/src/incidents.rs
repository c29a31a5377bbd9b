//! One alert per incident: folding signals, deciding notices, resolving.
//!
//! An incident is the run of signals of one type and key. The first signal opens it (a new alert,
//! notified at once); later signals fold into it (occurrences, latest message and context, highest
//! severity) and are written to the store in one update per tick. When it was last notified at
//! least `cooldownSeconds` ago and new occurrences came in, a repeat notice goes out; a rise in
//! severity (DISK_SPACE WARNING to CRITICAL, an error rate doubling) is notified at once. An
//! acknowledged incident is not re-notified. When no signal came for `resolveAfterSeconds` the
//! condition has cleared: the alert resolves and, if anything was ever sent about it, a resolved
//! notice goes out.
//!
//! Resolving on silence rather than on an explicit "good" observation treats every rule the same
//! way (a slow endpoint, a host that stops reporting) and damps flapping around a threshold into
//! one incident. The decisions here are pure; [`crate::engine`] does the I/O.

use std::collections::HashMap;

use uuid::Uuid;

use crate::alert::{Alert, AlertSeverity, AlertState, AlertStatus, AlertType};
use crate::rules::Signal;

/// Most incidents open at once; past it new incidents are dropped (and counted) until some resolve.
pub const MAX_OPEN_INCIDENTS: usize = 10_000;

/// Why a notice is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NoticeKind {
    /// The incident began.
    Firing,
    /// It still holds, after the cooldown.
    Repeat,
    /// Its severity rose.
    Escalated,
    /// It cleared.
    Resolved,
    /// A channel test from the API.
    Test,
}

impl NoticeKind {
    /// Its name in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::Firing => "firing",
            NoticeKind::Repeat => "repeat",
            NoticeKind::Escalated => "escalated",
            NoticeKind::Resolved => "resolved",
            NoticeKind::Test => "test",
        }
    }
}

/// One open incident.
#[derive(Debug, Clone)]
pub(crate) struct Incident {
    pub(crate) id: Uuid,
    pub(crate) severity: AlertSeverity,
    pub(crate) occurrences: i64,
    pub(crate) created_at: i64,
    pub(crate) last_seen_at: i64,
    /// When the last notice (not counting resolution) was queued.
    pub(crate) notified_at: Option<i64>,
    /// The highest severity a notice went out with.
    pub(crate) notified_severity: Option<AlertSeverity>,
    /// Occurrences when the last notice went out.
    pub(crate) notified_occurrences: i64,
    pub(crate) acknowledged: bool,
    /// Folded since the last store update.
    pub(crate) dirty: bool,
    /// The latest signal (message, context, block).
    pub(crate) latest: Signal,
}

impl Incident {
    /// The alert row of a new incident.
    pub(crate) fn to_alert(&self, status: AlertStatus) -> Alert {
        Alert {
            id: self.id,
            alert_type: self.latest.alert_type,
            key: self.latest.key.clone(),
            severity: self.severity,
            state: AlertState::Open,
            status,
            message: self.latest.message.clone(),
            context: self.latest.context.clone(),
            service: self.latest.service.clone(),
            host: self.latest.host.clone(),
            region: self.latest.region.clone(),
            channels: Vec::new(),
            occurrences: self.occurrences,
            notices: 0,
            last_error: None,
            created_at: self.created_at,
            last_seen_at: self.last_seen_at,
            notified_at: None,
            sent_at: None,
            resolved_at: None,
            acknowledged_at: None,
            acknowledged_by: None,
        }
    }

    /// An incident picked up from a stored open alert (after a restart, or raised by another
    /// process).
    pub(crate) fn from_alert(alert: &Alert) -> Incident {
        let notified = alert.notified_at.is_some();
        Incident {
            id: alert.id,
            severity: alert.severity,
            occurrences: alert.occurrences,
            created_at: alert.created_at,
            last_seen_at: alert.last_seen_at,
            notified_at: alert.notified_at,
            notified_severity: notified.then_some(alert.severity),
            notified_occurrences: alert.occurrences,
            acknowledged: alert.is_acknowledged(),
            dirty: false,
            latest: Signal {
                alert_type: alert.alert_type,
                key: alert.key.clone(),
                severity: alert.severity,
                message: alert.message.clone(),
                context: alert.context.clone(),
                service: alert.service.clone(),
                host: alert.host.clone(),
                region: alert.region.clone(),
                block: None,
            },
        }
    }
}

/// What a signal did.
#[derive(Debug)]
pub(crate) enum Observed {
    /// Opened a new incident (to insert and notify).
    Opened(Box<Incident>),
    /// Folded into an open one.
    Folded,
    /// Dropped: too many incidents open.
    Dropped,
}

/// The open incidents.
#[derive(Debug, Default)]
pub(crate) struct Incidents {
    open: HashMap<(AlertType, String), Incident>,
}

/// The context key that says an alert's first notice was held back (no channel, muted).
pub(crate) const HELD_DELIVERY: &str = "heldDelivery";

impl Incidents {
    /// Takes a signal at `now_ms`.
    pub(crate) fn observe(&mut self, signal: Signal, now_ms: i64) -> Observed {
        let key = (signal.alert_type, signal.key.clone());
        if let Some(incident) = self.open.get_mut(&key) {
            incident.occurrences += 1;
            incident.last_seen_at = now_ms;
            incident.severity = incident.severity.max(signal.severity);
            // Notes about the incident itself outlive the occurrence that carried them.
            let held = incident.latest.context.remove(HELD_DELIVERY);
            incident.latest = signal;
            if let Some(held) = held {
                incident.latest.context.insert(HELD_DELIVERY.to_string(), held);
            }
            incident.dirty = true;
            return Observed::Folded;
        }
        if self.open.len() >= MAX_OPEN_INCIDENTS {
            return Observed::Dropped;
        }
        let incident = Incident {
            id: Uuid::now_v7(),
            severity: signal.severity,
            occurrences: 1,
            created_at: now_ms,
            last_seen_at: now_ms,
            notified_at: None,
            notified_severity: None,
            notified_occurrences: 1,
            acknowledged: false,
            dirty: false,
            latest: signal,
        };
        self.open.insert(key, incident.clone());
        Observed::Opened(Box::new(incident))
    }

    /// Adopts a stored open alert (restart, or another process raised it first), keeping any
    /// occurrences already folded here.
    pub(crate) fn adopt(&mut self, alert: &Alert) {
        let key = (alert.alert_type, alert.key.clone());
        let mut adopted = Incident::from_alert(alert);
        if let Some(local) = self.open.remove(&key) {
            adopted.occurrences += local.occurrences;
            adopted.last_seen_at = adopted.last_seen_at.max(local.last_seen_at);
            adopted.severity = adopted.severity.max(local.severity);
            adopted.latest = local.latest;
            adopted.dirty = true;
        }
        self.open.insert(key, adopted);
    }

    /// Forgets an incident whose alert could not be stored, so the next signal opens it again.
    pub(crate) fn forget(&mut self, alert_type: AlertType, key: &str) {
        self.open.remove(&(alert_type, key.to_string()));
    }

    /// The incidents folded since the last call, marked clean.
    pub(crate) fn take_dirty(&mut self) -> Vec<Incident> {
        self.open
            .values_mut()
            .filter(|i| i.dirty)
            .map(|i| {
                i.dirty = false;
                i.clone()
            })
            .collect()
    }

    /// Removes and returns the incidents silent for `resolve_after_ms`.
    pub(crate) fn take_resolved(&mut self, now_ms: i64, resolve_after_ms: i64) -> Vec<Incident> {
        let cleared: Vec<(AlertType, String)> = self
            .open
            .iter()
            .filter(|(_, i)| now_ms - i.last_seen_at >= resolve_after_ms)
            .map(|(k, _)| k.clone())
            .collect();
        cleared.into_iter().filter_map(|k| self.open.remove(&k)).collect()
    }

    /// Notes what the store says of an incident's status (an acknowledgement made elsewhere).
    pub(crate) fn set_acknowledged(&mut self, alert_type: AlertType, key: &str, acknowledged: bool) {
        if let Some(incident) = self.open.get_mut(&(alert_type, key.to_string())) {
            incident.acknowledged = acknowledged;
        }
    }

    /// Notes that a notice went out.
    pub(crate) fn notified(&mut self, alert_type: AlertType, key: &str, now_ms: i64) {
        if let Some(incident) = self.open.get_mut(&(alert_type, key.to_string())) {
            incident.notified_at = Some(now_ms);
            incident.notified_severity = Some(
                incident
                    .notified_severity
                    .map_or(incident.severity, |s| s.max(incident.severity)),
            );
            incident.notified_occurrences = incident.occurrences;
        }
    }

    /// Records in an incident's context (written with its next fold) that its first notice was
    /// held back and when it went out.
    pub(crate) fn note_held(&mut self, alert_type: AlertType, key: &str, note: serde_json::Value) {
        if let Some(incident) = self.open.get_mut(&(alert_type, key.to_string())) {
            incident.latest.context.insert(HELD_DELIVERY.to_string(), note);
            incident.dirty = true;
        }
    }

    /// Open incidents nobody was notified of, and nobody acknowledged.
    pub(crate) fn unnotified(&self) -> Vec<Incident> {
        self.open
            .values()
            .filter(|i| i.notified_at.is_none() && !i.acknowledged)
            .cloned()
            .collect()
    }

    /// Open incidents.
    pub(crate) fn len(&self) -> usize {
        self.open.len()
    }
}

/// The notice an open incident is due, if any.
pub(crate) fn notice_due(incident: &Incident, now_ms: i64, cooldown_ms: i64) -> Option<NoticeKind> {
    if incident.acknowledged {
        return None;
    }
    let Some(notified_at) = incident.notified_at else {
        return Some(NoticeKind::Firing);
    };
    if incident.notified_severity.is_some_and(|s| incident.severity > s) {
        return Some(NoticeKind::Escalated);
    }
    let repeated = incident.occurrences > incident.notified_occurrences;
    (repeated && now_ms - notified_at >= cooldown_ms).then_some(NoticeKind::Repeat)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    const NOW: i64 = 1_000_000;

    fn signal(key: &str, severity: AlertSeverity) -> Signal {
        Signal {
            alert_type: AlertType::DiskSpace,
            key: key.into(),
            severity,
            message: format!("disk {key}"),
            context: Map::new(),
            service: None,
            host: Some("web-1".into()),
            region: None,
            block: None,
        }
    }

    #[test]
    fn repeats_fold_and_renotify_once_per_cooldown() {
        let mut incidents = Incidents::default();
        let Observed::Opened(opened) = incidents.observe(signal("/", AlertSeverity::Warning), NOW) else {
            panic!()
        };
        assert_eq!(notice_due(&opened, NOW, 600_000), Some(NoticeKind::Firing));
        incidents.notified(AlertType::DiskSpace, "/", NOW);
        for i in 1..=3 {
            assert!(matches!(
                incidents.observe(signal("/", AlertSeverity::Warning), NOW + i * 1000),
                Observed::Folded
            ));
        }
        let dirty = incidents.take_dirty();
        assert_eq!(dirty.len(), 1);
        assert_eq!(dirty[0].occurrences, 4);
        assert_eq!(
            notice_due(&dirty[0], NOW + 3000, 600_000),
            None,
            "inside the cooldown"
        );
        assert_eq!(
            notice_due(&dirty[0], NOW + 600_000, 600_000),
            Some(NoticeKind::Repeat)
        );
        assert!(incidents.take_dirty().is_empty(), "taking marks them clean");
        incidents.notified(AlertType::DiskSpace, "/", NOW + 600_000);
        let again = incidents.open.values().next().unwrap().clone();
        assert_eq!(
            notice_due(&again, NOW + 1_300_000, 600_000),
            None,
            "no new occurrence, no repeat"
        );
    }

    #[test]
    fn severity_rise_is_notified_at_once_unless_acknowledged() {
        let mut incidents = Incidents::default();
        incidents.observe(signal("/", AlertSeverity::Warning), NOW);
        incidents.notified(AlertType::DiskSpace, "/", NOW);
        incidents.observe(signal("/", AlertSeverity::Critical), NOW + 1);
        let dirty = incidents.take_dirty();
        assert_eq!(
            notice_due(&dirty[0], NOW + 1, 600_000),
            Some(NoticeKind::Escalated)
        );
        incidents.set_acknowledged(AlertType::DiskSpace, "/", true);
        incidents.observe(signal("/", AlertSeverity::Critical), NOW + 2);
        let dirty = incidents.take_dirty();
        assert_eq!(notice_due(&dirty[0], NOW + 10_000_000, 600_000), None);
        // A lower severity later does not lower the incident's.
        incidents.observe(signal("/", AlertSeverity::Warning), NOW + 3);
        assert_eq!(incidents.take_dirty()[0].severity, AlertSeverity::Critical);
    }

    #[test]
    fn silence_resolves_and_the_next_signal_opens_a_new_incident() {
        let mut incidents = Incidents::default();
        let Observed::Opened(first) = incidents.observe(signal("/", AlertSeverity::Warning), NOW) else {
            panic!()
        };
        incidents.observe(signal("/b", AlertSeverity::Warning), NOW + 200_000);
        assert!(incidents.take_resolved(NOW + 299_999, 300_000).is_empty());
        let resolved = incidents.take_resolved(NOW + 300_000, 300_000);
        assert_eq!(resolved.iter().map(|i| i.id).collect::<Vec<_>>(), [first.id]);
        assert_eq!(incidents.len(), 1);
        let Observed::Opened(second) = incidents.observe(signal("/", AlertSeverity::Warning), NOW + 300_001)
        else {
            panic!()
        };
        assert_ne!(second.id, first.id);
    }

    #[test]
    fn adopting_a_stored_alert_keeps_local_occurrences() {
        let mut incidents = Incidents::default();
        let Observed::Opened(local) = incidents.observe(signal("/", AlertSeverity::Warning), NOW) else {
            panic!()
        };
        let mut stored = local.to_alert(AlertStatus::Sent);
        stored.id = Uuid::now_v7();
        stored.occurrences = 7;
        stored.notified_at = Some(NOW - 10);
        incidents.adopt(&stored);
        let dirty = incidents.take_dirty();
        assert_eq!((dirty[0].id, dirty[0].occurrences), (stored.id, 8));
        assert_eq!(
            notice_due(&dirty[0], NOW, 600_000),
            None,
            "the other process notified already"
        );
    }

    #[test]
    fn open_incidents_are_bounded() {
        let mut incidents = Incidents::default();
        for i in 0..MAX_OPEN_INCIDENTS {
            incidents.observe(signal(&i.to_string(), AlertSeverity::Warning), NOW);
        }
        assert!(matches!(
            incidents.observe(signal("one more", AlertSeverity::Warning), NOW),
            Observed::Dropped
        ));
        assert!(matches!(
            incidents.observe(signal("0", AlertSeverity::Warning), NOW),
            Observed::Folded
        ));
    }
}
