//! The report: figures beside their baselines, as a table and as JSON.
//!
//! `ratio` always reads "how many times better Owl is": `owl / baseline` for rates (higher is
//! better), `baseline / owl` for times, CPU and memory (lower is better). Above 1 Owl wins.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Whether a larger value is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    /// Rates: records/s, MB/s, requests/s.
    Higher,
    /// Times, CPU, memory.
    Lower,
}

/// A target of the issue, reported and never enforced.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum Target {
    /// The ratio is at least this.
    RatioAtLeast(f64),
    /// Owl's value is at most this.
    OwlAtMost(f64),
    /// Owl's value is at least this.
    OwlAtLeast(f64),
}

impl Target {
    fn describe(self, unit: &str) -> String {
        match self {
            Target::RatioAtLeast(v) => format!("ratio >= {v}"),
            Target::OwlAtMost(v) => format!("<= {v} {unit}"),
            Target::OwlAtLeast(v) => format!(">= {v} {unit}"),
        }
    }
}

/// One figure beside one baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    /// Stable name (`agent_mb_per_cpu_s`).
    pub name: String,
    /// Unit of `owl` and `baseline`.
    pub unit: String,
    /// Owl's value; `None` when skipped.
    pub owl: Option<f64>,
    /// What Owl is compared with; `None` when the figure has no baseline.
    pub baseline_name: Option<String>,
    /// The baseline's value; `None` when it has none or it was skipped.
    pub baseline: Option<f64>,
    /// How many times better Owl is (see the module docs).
    pub ratio: Option<f64>,
    /// The target, in words (`ratio >= 1.5`, `<= 1000 ms`).
    pub target: Option<String>,
    /// Whether the target was met; `None` without a target or without the values it needs.
    pub target_met: Option<bool>,
    /// Which of the two is better when larger.
    pub better: Better,
    /// Why a value is missing (baseline not installed, feature not wired, ...).
    pub skip_reason: Option<String>,
    /// True when a value is missing because the measurement failed (not a legitimate skip).
    pub failed: bool,
    /// How it was measured, when that needs saying.
    pub note: Option<String>,
}

impl Figure {
    /// A figure with Owl's value and no baseline.
    pub fn owl(name: &str, unit: &str, better: Better, owl: f64) -> Figure {
        Figure {
            name: name.to_string(),
            unit: unit.to_string(),
            owl: Some(owl),
            baseline_name: None,
            baseline: None,
            ratio: None,
            target: None,
            target_met: None,
            better,
            skip_reason: None,
            failed: false,
            note: None,
        }
    }

    /// A figure beside a baseline; either value may be missing.
    pub fn compared(
        name: &str,
        unit: &str,
        better: Better,
        owl: Option<f64>,
        baseline_name: &str,
        baseline: Option<f64>,
    ) -> Figure {
        let mut figure = Figure::owl(name, unit, better, 0.0);
        figure.owl = owl;
        figure.baseline_name = Some(baseline_name.to_string());
        figure.baseline = baseline;
        figure.ratio = match (owl, baseline) {
            (Some(o), Some(b)) if o > 0.0 && b > 0.0 => Some(match better {
                Better::Higher => o / b,
                Better::Lower => b / o,
            }),
            _ => None,
        };
        figure
    }

    /// A figure that could not be measured.
    pub fn skipped(
        name: &str,
        unit: &str,
        better: Better,
        baseline_name: Option<&str>,
        reason: impl Into<String>,
    ) -> Figure {
        let mut figure = Figure::owl(name, unit, better, 0.0);
        figure.owl = None;
        figure.baseline_name = baseline_name.map(str::to_string);
        figure.skip_reason = Some(reason.into());
        figure
    }

    /// Sets the target and whether it was met.
    pub fn target(mut self, target: Target) -> Figure {
        self.target = Some(target.describe(&self.unit));
        self.target_met = match target {
            Target::RatioAtLeast(v) => self.ratio.map(|r| r >= v),
            Target::OwlAtMost(v) => self.owl.map(|o| o <= v),
            Target::OwlAtLeast(v) => self.owl.map(|o| o >= v),
        };
        self
    }

    /// Adds a note.
    pub fn note(mut self, note: impl Into<String>) -> Figure {
        self.note = Some(note.into());
        self
    }

    /// Records why the baseline is missing.
    pub fn baseline_skipped(mut self, reason: impl Into<String>) -> Figure {
        self.skip_reason = Some(reason.into());
        self
    }

    /// Whether every number present is finite and every missing one has a reason.
    pub fn is_well_formed(&self) -> bool {
        let finite = [self.owl, self.baseline, self.ratio]
            .iter()
            .flatten()
            .all(|v| v.is_finite());
        let complete = self.owl.is_some() && (self.baseline_name.is_none() || self.baseline.is_some());
        finite && (complete || self.skip_reason.as_deref().is_some_and(|r| !r.is_empty()))
    }
}

/// The machine a report was measured on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// CPU model name.
    pub cpu: String,
    /// Logical CPUs.
    pub cpus: usize,
    /// Memory in GiB.
    pub memory_gib: f64,
    /// Kernel release.
    pub kernel: String,
    /// Operating system.
    pub os: String,
    /// Load average over the last minute when the run started.
    pub load_average_1m: f64,
}

/// A whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Where it ran.
    pub machine: Machine,
    /// When it started (RFC 3339, UTC).
    pub date: String,
    /// Whether this was the smoke mode.
    pub smoke: bool,
    /// The sizes used.
    pub sizes: serde_json::Value,
    /// The figures, in order.
    pub figures: Vec<Figure>,
    /// Wall seconds the run took.
    pub elapsed_s: f64,
}

fn number(value: Option<f64>) -> String {
    match value {
        None => "-".to_string(),
        Some(v) if v.abs() >= 1000.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 10.0 => format!("{v:.1}"),
        Some(v) if v.abs() >= 0.1 => format!("{v:.2}"),
        Some(v) => format!("{v:.3}"),
    }
}

impl Report {
    /// The table: figure, Owl, baseline, ratio, unit, target; skip reasons and notes below.
    pub fn table(&self) -> String {
        let mut rows = vec![[
            "figure".to_string(),
            "Owl".to_string(),
            "baseline".to_string(),
            "value".to_string(),
            "ratio".to_string(),
            "unit".to_string(),
            "target".to_string(),
        ]];
        let mut footnotes = Vec::new();
        for figure in &self.figures {
            let mut target = figure.target.clone().unwrap_or_default();
            match figure.target_met {
                Some(true) => target.push_str(" ok"),
                Some(false) => target.push_str(" MISSED"),
                None => {}
            }
            let mut name = figure.name.clone();
            for text in [&figure.skip_reason, &figure.note].into_iter().flatten() {
                let number = match footnotes.iter().position(|f| f == text) {
                    Some(i) => i + 1,
                    None => {
                        footnotes.push(text.clone());
                        footnotes.len()
                    }
                };
                let _ = write!(name, " [{number}]");
            }
            rows.push([
                name,
                number(figure.owl),
                figure.baseline_name.clone().unwrap_or_else(|| "-".into()),
                number(figure.baseline),
                figure.ratio.map_or("-".into(), |r| format!("{r:.2}x")),
                figure.unit.clone(),
                target,
            ]);
        }
        let mut widths = [0usize; 7];
        for row in &rows {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for (n, row) in rows.iter().enumerate() {
            out.push('|');
            for (i, cell) in row.iter().enumerate() {
                let pad = widths[i] - cell.chars().count();
                if (1..=4).contains(&i) && n > 0 {
                    let _ = write!(out, " {}{} |", " ".repeat(pad), cell);
                } else {
                    let _ = write!(out, " {}{} |", cell, " ".repeat(pad));
                }
            }
            out.push('\n');
            if n == 0 {
                out.push('|');
                for (i, width) in widths.iter().enumerate() {
                    let dashes = "-".repeat(*width);
                    if (1..=4).contains(&i) {
                        let _ = write!(out, " {dashes}:|");
                    } else {
                        let _ = write!(out, " {dashes} |");
                    }
                }
                out.push('\n');
            }
        }
        if !footnotes.is_empty() {
            out.push('\n');
        }
        for (i, note) in footnotes.iter().enumerate() {
            let _ = writeln!(out, "[{}] {}", i + 1, note);
        }
        out
    }

    /// The header line: machine and date.
    pub fn header(&self) -> String {
        let m = &self.machine;
        format!(
            "Owl benchmark, {} ({}): {}, {} CPUs, {:.0} GiB, {} {}, load {:.2} at start{}",
            self.date,
            if self.smoke { "smoke mode" } else { "full" },
            m.cpu,
            m.cpus,
            m.memory_gib,
            m.os,
            m.kernel,
            m.load_average_1m,
            format_args!(", {:.0} s", self.elapsed_s),
        )
    }

    /// Writes the report as pretty JSON to `path`, creating its directory.
    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut json = serde_json::to_vec_pretty(self)?;
        json.push(b'\n');
        std::fs::write(path, json)?;
        Ok(())
    }
}

/// The machine this runs on, from /proc and /etc/os-release (Linux); unknown fields stay empty.
pub fn machine() -> Machine {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let cpu = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let memory_kib: f64 = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    let os = read("/etc/os-release")
        .lines()
        .find_map(|l| {
            l.strip_prefix("PRETTY_NAME=")
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap_or_else(|| std::env::consts::OS.to_string());
    let load_average_1m = read("/proc/loadavg")
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    Machine {
        cpu,
        cpus,
        memory_gib: memory_kib / 1024.0 / 1024.0,
        kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
        os,
        load_average_1m,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_reads_as_times_better_in_both_directions() {
        let rate = Figure::compared("x", "records/s", Better::Higher, Some(200.0), "b", Some(100.0));
        assert_eq!(rate.ratio, Some(2.0));
        let time = Figure::compared("y", "ms", Better::Lower, Some(1.0), "b", Some(100.0));
        assert_eq!(time.ratio, Some(100.0));
        let time = time.target(Target::RatioAtLeast(100.0));
        assert_eq!(time.target_met, Some(true));
        let missing = Figure::compared("z", "ms", Better::Lower, Some(1.0), "rg", None);
        assert!(!missing.is_well_formed(), "a missing baseline needs a reason");
        assert!(missing.baseline_skipped("rg not installed").is_well_formed());
        let nan = Figure::owl("n", "ms", Better::Lower, f64::NAN);
        assert!(!nan.is_well_formed());
    }

    #[test]
    fn table_has_a_row_per_figure_and_footnotes() {
        let report = Report {
            machine: machine(),
            date: "2026-01-01T00:00:00Z".into(),
            smoke: true,
            sizes: serde_json::json!({}),
            figures: vec![
                Figure::compared("a_p99_ms", "ms", Better::Lower, Some(2.0), "sqlite", Some(4.0)),
                Figure::skipped(
                    "b_rps",
                    "requests/s",
                    Better::Higher,
                    Some("axum"),
                    "not wired yet",
                ),
            ],
            elapsed_s: 1.0,
        };
        let table = report.table();
        assert!(table.contains("a_p99_ms") && table.contains("2.00x"));
        assert!(table.contains("b_rps [1]") && table.contains("[1] not wired yet"));
    }
}
