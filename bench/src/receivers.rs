//! Figure 7: the protocols of the ecosystem (OTLP/HTTP logs, Elasticsearch bulk, Loki push)
//! beside native ingest in the same run: records per second from the first post to all
//! searchable, and the time from the last acknowledgement to all searchable. Each protocol posts
//! the same records, in batches of 1000 on four connections, to a collector of its own, in the
//! encoding its usual shipper uses.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord as OtlpRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use owl_collector::loki_proto::{EntryAdapter, ProtoTimestamp, PushRequest, StreamAdapter};
use owl_index::{Index, LogFilter};
use owl_model::{Level, LogRecord};
use prost::Message;

use crate::Ctx;
use crate::client::Conn;
use crate::collector::{RunningCollector, TOKEN, config, index_settings};
use crate::data::Generator;
use crate::report::{Better, Figure};

const BATCH_RECORDS: usize = 1000;
const CONNECTIONS: usize = 4;

/// A protocol and how its batches are posted.
struct Protocol {
    name: &'static str,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    /// The status of an accepted batch.
    ok: u16,
}

const NATIVE: Protocol = Protocol {
    name: "native",
    path: "/api/v1/ingest",
    headers: &[
        ("content-type", "application/x-ndjson"),
        ("content-encoding", "zstd"),
    ],
    ok: 200,
};
const OTLP: Protocol = Protocol {
    name: "otlp",
    path: "/v1/logs",
    headers: &[("content-type", "application/x-protobuf")],
    ok: 200,
};
const ELASTIC: Protocol = Protocol {
    name: "elasticsearch",
    path: "/_bulk",
    headers: &[
        ("content-type", "application/x-ndjson"),
        ("content-encoding", "gzip"),
    ],
    ok: 200,
};
const LOKI: Protocol = Protocol {
    name: "loki",
    path: "/loki/api/v1/push",
    headers: &[("content-type", "application/x-protobuf")],
    ok: 204,
};

/// What one protocol measured.
struct Run {
    records_per_s: f64,
    ack_to_searchable_ms: f64,
}

fn text(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..KeyValue::default()
    }
}

fn int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..KeyValue::default()
    }
}

/// A batch as an OTLP logs export: one resource per service, the record's facts as attributes.
fn otlp_body(records: &[LogRecord]) -> Bytes {
    let mut by_service: BTreeMap<&str, Vec<OtlpRecord>> = BTreeMap::new();
    for record in records {
        let mut attributes = Vec::new();
        if let Some(http) = &record.http {
            attributes.extend(http.method.as_deref().map(|m| text("http.request.method", m)));
            attributes.extend(http.url.as_deref().map(|u| text("url.path", u)));
            attributes.extend(
                http.status_code
                    .map(|c| int("http.response.status_code", c.into())),
            );
        }
        if let Some(user) = record.user.as_ref().and_then(|u| u.id.as_deref()) {
            attributes.push(text("user.id", user));
        }
        // Records of one request share their time and text; the uid keeps them apart.
        attributes.push(text("log.record.uid", record.id.clone()));
        by_service
            .entry(&record.service.name)
            .or_default()
            .push(OtlpRecord {
                time_unix_nano: record.timestamp.timestamp_nanos_opt().unwrap_or_default() as u64,
                severity_number: match record.level {
                    Level::Debug => 5,
                    Level::Info => 9,
                    Level::Warn => 13,
                    Level::Error => 17,
                },
                body: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(record.message.clone())),
                }),
                attributes,
                ..OtlpRecord::default()
            });
    }
    let request = ExportLogsServiceRequest {
        resource_logs: by_service
            .into_iter()
            .map(|(service, log_records)| ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![text("service.name", service)],
                    ..Resource::default()
                }),
                scope_logs: vec![ScopeLogs {
                    log_records,
                    ..ScopeLogs::default()
                }],
                ..ResourceLogs::default()
            })
            .collect(),
    };
    Bytes::from(request.encode_to_vec())
}

/// A batch as an Elasticsearch bulk body (gzip, as Filebeat sends it).
fn elastic_body(lines: &[Vec<u8>]) -> Bytes {
    let mut body = Vec::new();
    for line in lines {
        body.extend_from_slice(b"{\"create\":{\"_index\":\"bench\"}}\n");
        body.extend_from_slice(line);
        body.push(b'\n');
    }
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(&body).expect("in memory");
    Bytes::from(encoder.finish().expect("in memory"))
}

/// A batch as a Loki push (protobuf, raw snappy): a stream per service and level, JSON lines.
fn loki_body(records: &[LogRecord], lines: &[Vec<u8>]) -> Bytes {
    let mut streams: BTreeMap<String, Vec<EntryAdapter>> = BTreeMap::new();
    for (record, line) in records.iter().zip(lines) {
        let labels = format!(
            "{{service_name=\"{}\", level=\"{}\"}}",
            record.service.name,
            record.level.as_str().to_ascii_lowercase()
        );
        streams.entry(labels).or_default().push(EntryAdapter {
            timestamp: Some(ProtoTimestamp {
                seconds: record.timestamp.timestamp(),
                nanos: record.timestamp.timestamp_subsec_nanos() as i32,
            }),
            line: String::from_utf8_lossy(line).into_owned(),
            ..EntryAdapter::default()
        });
    }
    let request = PushRequest {
        streams: streams
            .into_iter()
            .map(|(labels, entries)| StreamAdapter {
                labels,
                entries,
                ..StreamAdapter::default()
            })
            .collect(),
    };
    Bytes::from(
        snap::raw::Encoder::new()
            .compress_vec(&request.encode_to_vec())
            .expect("in memory"),
    )
}

/// Posts `bodies` to a fresh collector and waits until `records` are searchable.
async fn measure(ctx: &Ctx, protocol: &Protocol, bodies: Vec<Bytes>, records: usize) -> anyhow::Result<Run> {
    let config = config(&ctx.work.join(format!("receiver-{}", protocol.name)));
    let index = Index::open(&config.index_dir(), index_settings(&config))?;
    let collector = RunningCollector::start(config, index.clone()).await?;
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..CONNECTIONS {
        let (bodies, next, addr) = (bodies.clone(), next.clone(), collector.addr);
        let (path, headers, ok) = (protocol.path, protocol.headers, protocol.ok);
        clients.push(tokio::spawn(async move {
            let mut conn = Conn::connect(addr).await?;
            let authorization = format!("Bearer {TOKEN}");
            let mut all: Vec<(&str, &str)> = vec![("authorization", &authorization)];
            all.extend_from_slice(headers);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else {
                    return Ok::<_, anyhow::Error>(());
                };
                loop {
                    let answer = conn.send("POST", path, &all, body.clone()).await?;
                    match answer.status {
                        status if status == ok => break,
                        429 | 503 => tokio::time::sleep(Duration::from_millis(20)).await,
                        status => anyhow::bail!(
                            "{path} answered {status}: {}",
                            String::from_utf8_lossy(&answer.body)
                        ),
                    }
                }
            }
        }));
    }
    for client in clients {
        client.await.context("load client panicked")??;
    }
    let acked = Instant::now();
    let deadline = acked + Duration::from_secs(600);
    loop {
        let index = index.clone();
        let count = tokio::task::spawn_blocking(move || index.count(&LogFilter::default())).await??;
        if count as usize >= records {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{}: only {count} of {records} records became searchable",
            protocol.name
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let run = Run {
        records_per_s: records as f64 / started.elapsed().as_secs_f64(),
        ack_to_searchable_ms: acked.elapsed().as_secs_f64() * 1000.0,
    };
    collector.stop().await?;
    Ok(run)
}

/// Runs figure 7.
pub async fn figures(ctx: &Ctx) -> anyhow::Result<Vec<Figure>> {
    let records = ctx.sizes.receiver_records;
    let start = chrono::Utc::now() - chrono::Duration::minutes(20);
    let (lines, parsed) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let mut out = Vec::new();
        Generator::new(29, start, 1000).records_into(records, &mut out);
        let lines: Vec<Vec<u8>> = out
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect();
        let parsed = lines
            .iter()
            .map(|l| LogRecord::from_json_slice(l, chrono::Utc::now()).map_err(|e| anyhow::anyhow!("{e}")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok((lines, parsed))
    })
    .await??;
    let n = lines.len();
    ctx.progress(&format!(
        "receivers: {n} records per protocol; baseline: native ingest"
    ));
    let native_bodies: Vec<Bytes> = lines
        .chunks(BATCH_RECORDS)
        .map(|chunk| {
            let mut body = chunk.join(&b'\n');
            body.push(b'\n');
            Bytes::from(zstd::encode_all(&body[..], 3).expect("in memory"))
        })
        .collect();
    let native = measure(ctx, &NATIVE, native_bodies, n).await?;
    let mut figures = Vec::new();
    let baseline = "native NDJSON ingest (zstd, as owl-agent sends)";
    for protocol in [&OTLP, &ELASTIC, &LOKI] {
        ctx.progress(&format!("receivers: {}", protocol.name));
        let bodies: Vec<Bytes> = lines
            .chunks(BATCH_RECORDS)
            .zip(parsed.chunks(BATCH_RECORDS))
            .map(|(lines, records)| match protocol.name {
                "otlp" => otlp_body(records),
                "elasticsearch" => elastic_body(lines),
                _ => loki_body(records, lines),
            })
            .collect();
        let run = measure(ctx, protocol, bodies, n).await?;
        let encoding = match protocol.name {
            "otlp" => "protobuf",
            "elasticsearch" => "bulk NDJSON, gzip",
            _ => "protobuf, snappy",
        };
        figures.push(
            Figure::compared(
                &format!("receiver_{}_records_per_s", protocol.name),
                "records/s",
                Better::Higher,
                Some(run.records_per_s),
                baseline,
                Some(native.records_per_s),
            )
            .note(format!(
                "{n} records as {encoding} in batches of {BATCH_RECORDS} on {CONNECTIONS} connections, first post to all searchable"
            )),
        );
        figures.push(Figure::compared(
            &format!("receiver_{}_ack_to_searchable_ms", protocol.name),
            "ms",
            Better::Lower,
            Some(run.ack_to_searchable_ms),
            baseline,
            Some(native.ack_to_searchable_ms),
        ));
    }
    Ok(figures)
}
