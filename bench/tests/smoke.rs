//! The benchmark's smoke mode, run in-process through the library entry point, so the benchmark
//! cannot rot: every figure of every section must be in the report, with finite numbers or an
//! explicit reason, and no section may fail.

use owl_bench::{AgentRunner, Options, Report, Section};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_mode_reports_every_figure() {
    let out = tempfile::tempdir().unwrap();
    let mut options = Options::new(true, out.path().to_path_buf());
    // The test binary is not owl-bench and release binaries may not be built: run the agent here.
    options.agent = AgentRunner::InProcess;
    options.verbose = std::env::var_os("OWL_BENCH_VERBOSE").is_some();
    let report = owl_bench::run(&options).await.expect("the smoke run completes");

    let text = std::fs::read_to_string(out.path().join("report.json")).expect("report.json is written");
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    for key in ["machine", "date", "sizes", "figures"] {
        assert!(json.get(key).is_some(), "report.json has `{key}`");
    }
    let parsed: Report = serde_json::from_value(json).unwrap();
    let names = |r: &Report| {
        r.figures
            .iter()
            .map(|f| (f.name.clone(), f.baseline_name.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(&parsed),
        names(&report),
        "the JSON holds the figures of the run"
    );
    if options.verbose {
        println!("{}", report.table());
    }

    let failures: Vec<String> = report
        .figures
        .iter()
        .filter(|f| f.failed)
        .map(|f| format!("{}: {}", f.name, f.skip_reason.as_deref().unwrap_or("")))
        .collect();
    assert!(failures.is_empty(), "failed figures:\n{}", failures.join("\n"));
    for figure in &report.figures {
        assert!(
            figure.is_well_formed(),
            "figure without finite numbers or a skip reason: {figure:?}"
        );
    }
    for section in Section::ALL {
        for name in section.figure_names() {
            assert!(
                report.figures.iter().any(|f| f.name == *name),
                "figure {name} is missing"
            );
        }
    }
    // Figures with several baselines have one entry per baseline.
    let agent: Vec<_> = report
        .figures
        .iter()
        .filter(|f| f.name == "agent_mb_per_cpu_s")
        .collect();
    assert_eq!(agent.len(), 2, "syslog-ng and rsyslog entries");
    let cri: Vec<_> = report
        .figures
        .iter()
        .filter(|f| f.name == "agent_cri_mb_per_cpu_s")
        .collect();
    assert_eq!(cri.len(), 1, "a syslog-ng entry on the CRI file");
    assert!(cri[0].owl.is_some_and(|v| v > 0.0));
    let trace: Vec<_> = report
        .figures
        .iter()
        .filter(|f| f.name == "query_trace_lookup_p99_ms")
        .collect();
    assert_eq!(trace.len(), 2, "grep and SQLite entries");
    assert!(trace.iter().all(|f| f.owl.is_some_and(|v| v > 0.0)));
    assert!(report.table().contains("collector_records_per_s"));
}
