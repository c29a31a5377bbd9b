//! Every metric the alert engine and notifier record, through the `metrics` facade (the binary
//! installs the Prometheus exporter). Labels are bounded: alert types, channels, notice kinds,
//! fixed outcomes and store operations.

use ::metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// Signals (rule hits), by `type`.
pub const SIGNALS_TOTAL: &str = "owl_alerts_signals_total";
/// Alerts opened, by `type`.
pub const OPENED_TOTAL: &str = "owl_alerts_opened_total";
/// Alerts resolved, by `type`.
pub const RESOLVED_TOTAL: &str = "owl_alerts_resolved_total";
/// Alerts open now.
pub const OPEN: &str = "owl_alerts_open";
/// Notice deliveries, by `channel`, `kind` and `outcome` (`sent`, `failed`).
pub const DELIVERIES_TOTAL: &str = "owl_alerts_deliveries_total";
/// Delivery attempts that failed and were retried, by `channel`.
pub const DELIVERY_RETRIES_TOTAL: &str = "owl_alerts_delivery_retries_total";
/// Time to deliver one notice to one channel, retries included, by `channel`.
pub const DELIVERY_DURATION_SECONDS: &str = "owl_alerts_delivery_duration_seconds";
/// Record and sample batches the engine could not take because its queue was full: rules did
/// not see them.
pub const OBSERVATIONS_DROPPED_TOTAL: &str = "owl_alerts_observations_dropped_total";
/// Services or client IPs not tracked because the rule's table was full.
pub const UNTRACKED_KEYS_TOTAL: &str = "owl_alerts_untracked_keys_total";
/// New incidents dropped because too many were open.
pub const INCIDENTS_DROPPED_TOTAL: &str = "owl_alerts_incidents_dropped_total";
/// Failed alert store operations, by `op`.
pub const STORE_ERRORS_TOTAL: &str = "owl_alerts_store_errors_total";

/// Registers descriptions with the installed recorder.
pub fn describe() {
    describe_counter!(SIGNALS_TOTAL, Unit::Count, "Rule hits, by alert type.");
    describe_counter!(OPENED_TOTAL, Unit::Count, "Alerts opened, by alert type.");
    describe_counter!(RESOLVED_TOTAL, Unit::Count, "Alerts resolved, by alert type.");
    describe_gauge!(OPEN, Unit::Count, "Alerts open now.");
    describe_counter!(
        DELIVERIES_TOTAL,
        Unit::Count,
        "Notice deliveries by channel, kind and outcome."
    );
    describe_counter!(
        DELIVERY_RETRIES_TOTAL,
        Unit::Count,
        "Failed delivery attempts that were retried."
    );
    describe_histogram!(
        DELIVERY_DURATION_SECONDS,
        Unit::Seconds,
        "Time to deliver a notice, retries included."
    );
    describe_counter!(
        OBSERVATIONS_DROPPED_TOTAL,
        Unit::Count,
        "Batches the engine's full queue refused."
    );
    describe_counter!(
        UNTRACKED_KEYS_TOTAL,
        Unit::Count,
        "Services or IPs not tracked: table full."
    );
    describe_counter!(
        INCIDENTS_DROPPED_TOTAL,
        Unit::Count,
        "New incidents dropped: too many open."
    );
    describe_counter!(STORE_ERRORS_TOTAL, Unit::Count, "Failed alert store operations.");
}
