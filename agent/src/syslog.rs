//! Syslog listeners: RFC 5424 and RFC 3164 over TCP, UDP and Unix sockets, into the same disk
//! buffer as the files.
//!
//! Design note
//! - A stream connection (TCP, Unix stream) is read only as fast as the disk buffer takes its
//!   messages: the frames of one read are written (and flushed) to the buffer before the next
//!   read. When the buffer is full the agent stops reading, the kernel's windows fill and the
//!   sender blocks: back-pressure, nothing dropped.
//! - One writer thread seals what every connection sent since its last write into one batch
//!   (group commit): many connections cost one buffer write, not one each.
//! - Stopping: listeners stop accepting; each stream connection gets a FIN (its write side is
//!   shut) and is read until the sender closes it, or is quiet for a second, or the shutdown
//!   timeout passes. A sender that watches its socket, as rsyslog and syslog-ng do, reconnects
//!   with what it did not send; nothing it sent before closing is lost.
//! - Datagrams (UDP, Unix datagram) cannot be back-pressured: when the writer is behind, they
//!   are counted in `owl_agent_syslog_messages_dropped_total` and dropped.
//! - Record ids come from a random seed per connection (or socket) and the message's number on
//!   it: a batch sent twice from the buffer carries the same ids.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, Local, Offset, Utc};
use owl_config::{SyslogConfig, SyslogListen};
use owl_model::LogRecord;
use owl_parse::syslog::{Dialect, Framer, Message};
use serde_json::{Map, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::process::{LineFlags, Processor};
use crate::tail::Output;

/// A stream connection is read to its end for this long at most after the FIN, when quiet.
const DRAIN_IDLE: Duration = Duration::from_secs(1);
/// Bytes read from a stream at once.
const READ_CHUNK: usize = 64 << 10;
/// Receive queue asked for datagram sockets.
const RECEIVE_BUFFER: usize = 8 << 20;
/// Datagrams taken into one write at most.
const DATAGRAM_GROUP: usize = 512;

/// A bound listener, ready to serve.
pub(crate) struct Bound {
    socket: Socket,
    /// Where it listens, as configured but with the real port (`tcp://127.0.0.1:40123`).
    pub address: String,
    context: Arc<Context>,
}

enum Socket {
    Tcp(tokio::net::TcpListener),
    Udp(tokio::net::UdpSocket),
    Unix(tokio::net::UnixDatagram, PathBuf),
    UnixStream(tokio::net::UnixListener, PathBuf),
}

/// What every connection of a listener shares.
struct Context {
    config: SyslogConfig,
    processor: Processor,
    metrics: Arc<Metrics>,
    connections: Arc<Semaphore>,
}

/// Why a listener could not start.
#[derive(Debug, thiserror::Error)]
#[error("agent.syslog[{index}].listen `{listen}`: {message}")]
pub struct SyslogError {
    index: usize,
    listen: String,
    message: String,
}

/// Binds every listener; a listener that cannot bind stops the start (a port in use is a
/// configuration error worth seeing at once).
pub(crate) async fn bind(
    listeners: &[SyslogConfig],
    processors: Vec<Processor>,
    metrics: &Arc<Metrics>,
) -> Result<Vec<Bound>, SyslogError> {
    let mut bound = Vec::with_capacity(listeners.len());
    for (index, (config, processor)) in listeners.iter().zip(processors).enumerate() {
        let error = |message: String| SyslogError {
            index,
            listen: config.listen.clone(),
            message,
        };
        let address = config.address().map_err(&error)?;
        let (socket, address) = match address {
            SyslogListen::Tcp(addr) => {
                let listener = tokio::net::TcpListener::bind(&addr)
                    .await
                    .map_err(|e| error(e.to_string()))?;
                let local = listener.local_addr().map_err(|e| error(e.to_string()))?;
                (Socket::Tcp(listener), format!("tcp://{local}"))
            }
            SyslogListen::Udp(addr) => {
                let socket = tokio::net::UdpSocket::bind(&addr)
                    .await
                    .map_err(|e| error(e.to_string()))?;
                widen_receive_buffer(socket2::SockRef::from(&socket));
                let local = socket.local_addr().map_err(|e| error(e.to_string()))?;
                (Socket::Udp(socket), format!("udp://{local}"))
            }
            SyslogListen::Unix(path) => {
                remove_stale_socket(&path).map_err(&error)?;
                let socket = tokio::net::UnixDatagram::bind(&path).map_err(|e| error(e.to_string()))?;
                widen_receive_buffer(socket2::SockRef::from(&socket));
                let address = format!("unix://{}", path.display());
                (Socket::Unix(socket, path), address)
            }
            SyslogListen::UnixStream(path) => {
                remove_stale_socket(&path).map_err(&error)?;
                let listener = tokio::net::UnixListener::bind(&path).map_err(|e| error(e.to_string()))?;
                let address = format!("unix-stream://{}", path.display());
                (Socket::UnixStream(listener, path), address)
            }
        };
        bound.push(Bound {
            socket,
            address,
            context: Arc::new(Context {
                config: config.clone(),
                processor,
                metrics: metrics.clone(),
                connections: Arc::new(Semaphore::new(config.max_connections.max(1))),
            }),
        });
    }
    Ok(bound)
}

/// Datagrams that arrive while the socket's queue is full are dropped by the kernel: ask for a
/// queue of [`RECEIVE_BUFFER`] bytes (the kernel caps it at `net.core.rmem_max`).
fn widen_receive_buffer(socket: socket2::SockRef<'_>) {
    if let Err(e) = socket.set_recv_buffer_size(RECEIVE_BUFFER) {
        tracing::debug!(error = %e, "cannot widen a syslog socket's receive buffer");
    }
}

/// A socket file left by an earlier run is replaced; any other file at the path is not.
fn remove_stale_socket(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path).map_err(|e| e.to_string()),
        Ok(_) => Err("a file that is not a socket is in the way".to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
            }
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// A write for the writer thread: NDJSON lines, and who waits for them to be durable.
struct Job {
    lines: Vec<u8>,
    records: u32,
    done: Option<oneshot::Sender<()>>,
}

/// The listeners, running.
pub(crate) struct Running {
    tasks: JoinSet<()>,
    writer: std::thread::JoinHandle<()>,
    stop: CancellationToken,
    /// Makes the writer give up a write to a full buffer.
    give_up: Arc<std::sync::atomic::AtomicBool>,
    buffer: Arc<crate::buffer::Buffer>,
}

impl Running {
    /// Stops accepting, drains stream connections (for at most `timeout`), writes what was read
    /// to the buffer, and returns.
    pub(crate) async fn stop(mut self, timeout: Duration) {
        self.stop.cancel();
        let drained = tokio::time::timeout(timeout + DRAIN_IDLE, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("syslog connections still open at the shutdown timeout; closing them");
            // A write waiting for room in a full buffer gives up: what it held was read from
            // the sockets but is not durable, and is lost.
            self.give_up.store(true, Ordering::Relaxed);
            self.buffer.wake_producers();
            self.tasks.shutdown().await;
        }
        // Every sender is gone with the tasks: the writer seals the rest and ends.
        let writer = self.writer;
        let _ = tokio::task::spawn_blocking(move || writer.join()).await;
    }
}

/// Serves the bound listeners; their records go through `output` into the disk buffer.
pub(crate) fn start(bound: Vec<Bound>, output: Output, drain_timeout: Duration) -> std::io::Result<Running> {
    let (give_up, buffer) = (output.stop.clone(), output.buffer.clone());
    let (tx, rx) = mpsc::channel::<Job>(256);
    let writer = std::thread::Builder::new()
        .name("owl-agent-syslog".to_string())
        .spawn(move || write_jobs(rx, output))?;
    let stop = CancellationToken::new();
    let mut tasks = JoinSet::new();
    for listener in bound {
        tracing::info!(listen = %listener.address, "syslog listener started");
        let (tx, stop) = (tx.clone(), stop.clone());
        let context = listener.context;
        match listener.socket {
            Socket::Tcp(socket) => {
                tasks.spawn(accept_tcp(socket, context, tx, stop, drain_timeout));
            }
            Socket::UnixStream(socket, path) => {
                tasks.spawn(accept_unix(socket, path, context, tx, stop, drain_timeout));
            }
            Socket::Udp(socket) => {
                tasks.spawn(async move {
                    let mut socket = Datagrams::Udp(socket);
                    receive_datagrams(&mut socket, context, tx, stop).await;
                });
            }
            Socket::Unix(socket, path) => {
                tasks.spawn(async move {
                    let mut datagrams = Datagrams::Unix(socket);
                    receive_datagrams(&mut datagrams, context, tx, stop).await;
                    let _ = std::fs::remove_file(path);
                });
            }
        }
    }
    Ok(Running {
        tasks,
        writer,
        stop,
        give_up,
        buffer,
    })
}

/// The writer thread: everything queued goes into one batch, sealed and flushed, and then its
/// senders hear that it is durable.
fn write_jobs(mut rx: mpsc::Receiver<Job>, mut output: Output) {
    let mut waiting = Vec::new();
    while let Some(job) = rx.blocking_recv() {
        let mut job = Some(job);
        while let Some(Job { lines, records, done }) = job.take() {
            output.batch.push_lines(&lines, records);
            Metrics::add(&output.metrics.records_read, u64::from(records));
            Metrics::add(&output.metrics.syslog_messages, u64::from(records));
            waiting.extend(done);
            if output.batch.is_full() {
                break;
            }
            job = rx.try_recv().ok();
        }
        output.seal();
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
    output.seal();
}

async fn accept_tcp(
    listener: tokio::net::TcpListener,
    context: Arc<Context>,
    tx: mpsc::Sender<Job>,
    stop: CancellationToken,
    drain_timeout: Duration,
) {
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "syslog accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = context.connections.clone().try_acquire_owned() else {
            Metrics::add(&context.metrics.syslog_connections_refused, 1);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (context, tx, stop) = (context.clone(), tx.clone(), stop.clone());
        connections.spawn(async move {
            serve_stream(
                stream,
                Some(peer.ip().to_string()),
                &context,
                &tx,
                &stop,
                drain_timeout,
            )
            .await;
            drop(permit);
        });
        // Reap finished connections as we go.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

async fn accept_unix(
    listener: tokio::net::UnixListener,
    path: PathBuf,
    context: Arc<Context>,
    tx: mpsc::Sender<Job>,
    stop: CancellationToken,
    drain_timeout: Duration,
) {
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "syslog accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = context.connections.clone().try_acquire_owned() else {
            Metrics::add(&context.metrics.syslog_connections_refused, 1);
            continue;
        };
        let (context, tx, stop) = (context.clone(), tx.clone(), stop.clone());
        connections.spawn(async move {
            serve_stream(stream, None, &context, &tx, &stop, drain_timeout).await;
            drop(permit);
        });
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = std::fs::remove_file(&path);
    while connections.join_next().await.is_some() {}
}

/// Reads one stream connection: frames, records, a durable write, then the next read.
async fn serve_stream<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    peer: Option<String>,
    context: &Context,
    tx: &mpsc::Sender<Job>,
    stop: &CancellationToken,
    drain_timeout: Duration,
) {
    context.metrics.syslog_connections.fetch_add(1, Ordering::Relaxed);
    let mut source = Source::new(peer);
    let mut framer = Framer::new(context.config.max_message_bytes);
    let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut drain_until: Option<tokio::time::Instant> = None;
    loop {
        buf.reserve(READ_CHUNK);
        let read = match drain_until {
            None => tokio::select! {
                read = stream.read_buf(&mut buf) => read,
                () = stop.cancelled() => {
                    // Tell the sender we are going; read what it still sends until it closes.
                    let _ = stream.shutdown().await;
                    drain_until = Some(tokio::time::Instant::now() + drain_timeout);
                    continue;
                }
            },
            Some(until) => {
                let quiet = tokio::time::Instant::now() + DRAIN_IDLE;
                match tokio::time::timeout_at(until.min(quiet), stream.read_buf(&mut buf)).await {
                    Ok(read) => read,
                    Err(_) => Ok(0),
                }
            }
        };
        let eof = match read {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => {
                tracing::debug!(error = %e, "syslog connection failed");
                true
            }
        };
        let mut lines = Vec::new();
        let mut records = 0u32;
        let mut consumed = 0;
        loop {
            let (used, frame) = framer.next(&buf[consumed..], eof);
            if let Some(frame) = frame {
                let record = source.record(frame.bytes, frame.truncated_from, context);
                crate::wire::write_record(&mut lines, &record);
                lines.push(b'\n');
                records += 1;
            }
            if used == 0 {
                break;
            }
            consumed += used;
        }
        buf.drain(..consumed);
        if records > 0 {
            let (done, durable) = oneshot::channel();
            let job = Job {
                lines,
                records,
                done: Some(done),
            };
            // Back-pressure: the next read waits until these are in the buffer.
            if tx.send(job).await.is_err() || durable.await.is_err() {
                break;
            }
        }
        if eof {
            break;
        }
    }
    context.metrics.syslog_connections.fetch_sub(1, Ordering::Relaxed);
}

enum Datagrams {
    Udp(tokio::net::UdpSocket),
    Unix(tokio::net::UnixDatagram),
}

impl Datagrams {
    async fn recv(&mut self, buf: &mut [u8]) -> std::io::Result<(usize, Option<String>)> {
        match self {
            Datagrams::Udp(s) => s
                .recv_from(buf)
                .await
                .map(|(n, peer)| (n, Some(peer.ip().to_string()))),
            Datagrams::Unix(s) => s.recv(buf).await.map(|n| (n, None)),
        }
    }

    fn try_recv(&mut self, buf: &mut [u8]) -> std::io::Result<(usize, Option<String>)> {
        match self {
            Datagrams::Udp(s) => s
                .try_recv_from(buf)
                .map(|(n, peer)| (n, Some(peer.ip().to_string()))),
            Datagrams::Unix(s) => s.try_recv(buf).map(|n| (n, None)),
        }
    }
}

/// A datagram as received: its first `max + 1` bytes, its length, its sender.
struct Datagram {
    bytes: Vec<u8>,
    len: usize,
    peer: Option<String>,
}

/// Reads datagrams, a message each. Receiving only copies them out of the socket, in groups of
/// up to [`DATAGRAM_GROUP`], so that the kernel's queue empties as fast as it can; parsing
/// happens in a second task. When that one is behind, the group is counted and dropped.
async fn receive_datagrams(
    socket: &mut Datagrams,
    context: Arc<Context>,
    tx: mpsc::Sender<Job>,
    stop: CancellationToken,
) {
    let max = context.config.max_message_bytes;
    let (groups_tx, groups) = mpsc::channel::<Vec<Datagram>>(64);
    let parsing = tokio::spawn(parse_datagrams(groups, context.clone(), tx));
    // One byte more than the limit tells a datagram that was cut.
    let mut buf = vec![0u8; max + 1];
    let mut stopping = false;
    loop {
        let first = tokio::select! {
            received = socket.recv(&mut buf) => received,
            () = stop.cancelled(), if !stopping => {
                // Take what the kernel still holds, then stop.
                stopping = true;
                socket.try_recv(&mut buf)
            }
        };
        let mut group = Vec::new();
        let mut next = Some(first);
        while let Some(received) = next.take() {
            match received {
                Ok((len, peer)) => group.push(Datagram {
                    bytes: buf[..len.min(max)].to_vec(),
                    len,
                    peer,
                }),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::debug!(error = %e, "syslog datagram receive failed");
                    break;
                }
            }
            if group.len() < DATAGRAM_GROUP {
                next = Some(socket.try_recv(&mut buf));
            }
        }
        let received = group.len();
        if received > 0
            && let Err(e) = groups_tx.try_send(group)
        {
            let dropped = match e {
                mpsc::error::TrySendError::Full(g) | mpsc::error::TrySendError::Closed(g) => g.len(),
            };
            Metrics::add(&context.metrics.syslog_dropped, dropped as u64);
        }
        if stopping && received == 0 {
            break;
        }
    }
    drop(groups_tx);
    let _ = parsing.await;
}

async fn parse_datagrams(
    mut groups: mpsc::Receiver<Vec<Datagram>>,
    context: Arc<Context>,
    tx: mpsc::Sender<Job>,
) {
    let max = context.config.max_message_bytes;
    let mut sources: std::collections::HashMap<Option<String>, Source> = std::collections::HashMap::new();
    while let Some(group) = groups.recv().await {
        let mut lines = Vec::new();
        let mut records = 0u32;
        for datagram in group {
            let truncated_from = (datagram.len > max).then_some(datagram.len as u64);
            // Bound the senders remembered (a flood from spoofed addresses).
            if sources.len() >= 4096 && !sources.contains_key(&datagram.peer) {
                sources.clear();
            }
            let source = sources
                .entry(datagram.peer.clone())
                .or_insert_with(|| Source::new(datagram.peer));
            let record = source.record(&datagram.bytes, truncated_from, &context);
            crate::wire::write_record(&mut lines, &record);
            lines.push(b'\n');
            records += 1;
        }
        let job = Job {
            lines,
            records,
            done: None,
        };
        if tx.send(job).await.is_err() {
            return;
        }
    }
}

/// One sender (a connection, or a datagram peer): the seed of its record ids and its count.
struct Source {
    seed: [u8; 16],
    next: u64,
    peer: Option<String>,
}

impl Source {
    fn new(peer: Option<String>) -> Source {
        Source {
            seed: rand::random(),
            next: 0,
            peer,
        }
    }

    fn record(&mut self, bytes: &[u8], truncated_from: Option<u64>, context: &Context) -> LogRecord {
        let (text, invalid_utf8) = match std::str::from_utf8(bytes) {
            Ok(text) => (std::borrow::Cow::Borrowed(text), false),
            Err(e) if truncated_from.is_some() && e.error_len().is_none() => (
                std::borrow::Cow::Borrowed(
                    std::str::from_utf8(&bytes[..e.valid_up_to()]).expect("valid prefix"),
                ),
                false,
            ),
            Err(_) => (String::from_utf8_lossy(bytes), true),
        };
        let metrics = &context.metrics;
        if invalid_utf8 {
            Metrics::add(&metrics.lines_invalid_utf8, 1);
        }
        if truncated_from.is_some() {
            Metrics::add(&metrics.lines_truncated, 1);
        }
        let now = Utc::now();
        let message = owl_parse::syslog::parse(&text, context.config.format, now, local_offset(now));
        let id = LogRecord::derive_id(&self.seed, self.next);
        self.next += 1;
        let record = to_record(&context.processor, &message, id, self.peer.as_deref(), now);
        context.processor.complete(
            record,
            LineFlags {
                truncated_from,
                invalid_utf8,
            },
        )
    }
}

/// The agent's local offset now, in which RFC 3164 times are read (as syslog daemons do).
fn local_offset(now: DateTime<Utc>) -> FixedOffset {
    now.with_timezone(&Local).offset().fix()
}

/// A record from a syslog message: the text through the inner parser, the header filling what
/// the text did not say.
fn to_record(
    processor: &Processor,
    message: &Message<'_>,
    id: String,
    peer: Option<&str>,
    now: DateTime<Utc>,
) -> LogRecord {
    let mut record = processor.parse(message.message, message.timestamp.unwrap_or(now), message.level());
    record.id = id;
    if record.host.is_none() {
        record.host = message.hostname.map(str::to_string);
    }
    if record.service.name.is_empty()
        && let Some(app) = message.app_name
    {
        record.service.name = app.to_string();
    }
    if record.service.instance.is_none() {
        record.service.instance = message.hostname.map(str::to_string);
    }
    let numeric_pid = message.proc_id.and_then(|p| p.parse::<u64>().ok());
    if record.process.is_none() {
        record.process = numeric_pid;
    }
    let extra = record.extra.get_or_insert_with(Map::new);
    let mut put = |key: &str, value: Value| {
        extra.entry(key.to_string()).or_insert(value);
    };
    if message.dialect != Dialect::Unknown || message.severity.is_some() {
        if let Some(f) = message.facility_name() {
            put("syslog.facility", Value::from(f));
        }
        if let Some(s) = message.severity_name() {
            put("syslog.severity", Value::from(s));
        }
    }
    if let Some(app) = message.app_name {
        put("syslog.appname", Value::from(app));
    }
    if let (Some(pid), None) = (message.proc_id, numeric_pid) {
        put("syslog.procid", Value::from(pid));
    }
    if let Some(msg_id) = message.msg_id {
        put("syslog.msgid", Value::from(msg_id));
    }
    for element in &message.structured_data {
        for (name, value) in &element.params {
            put(
                &format!("syslog.sd.{}.{name}", element.id),
                Value::from(value.as_ref()),
            );
        }
    }
    if let Some(peer) = peer {
        put("syslog.peer", Value::from(peer));
    }
    if extra.is_empty() {
        record.extra = None;
    }
    record
}

#[cfg(test)]
mod tests {
    use super::*;
    use owl_config::MaskingRules;
    use owl_parse::Parser;

    fn processor(config: &SyslogConfig) -> Processor {
        Processor::new(
            Parser::new(config.inner_parser, &config.regex).unwrap(),
            crate::process::Enrichment::for_syslog(config, "agent-node", "CN"),
            Arc::new(crate::process::Masking::new(&MaskingRules::default()).unwrap()),
            Arc::new(Metrics::default()),
        )
    }

    fn record_of(text: &str) -> LogRecord {
        let config = SyslogConfig::default();
        let context = Context {
            processor: processor(&config),
            config,
            metrics: Arc::new(Metrics::default()),
            connections: Arc::new(Semaphore::new(1)),
        };
        Source::new(Some("10.0.0.9".into())).record(text.as_bytes(), None, &context)
    }

    #[test]
    fn header_fields_fill_what_the_message_does_not_say() {
        let r = record_of(
            "<187>1 2026-12-02T07:00:00.25Z web-3 nginx 4242 ACCESS [req@1 id=\"r-9\"] upstream timed out",
        );
        assert_eq!(r.timestamp.to_rfc3339(), "2026-12-02T07:00:00.250+00:00");
        assert_eq!(r.level, owl_model::Level::Error);
        assert_eq!(r.service.name, "nginx");
        assert_eq!(r.host.as_deref(), Some("web-3"));
        assert_eq!(r.service.instance.as_deref(), Some("web-3"));
        assert_eq!(r.service.region.as_deref(), Some("CN"));
        assert_eq!(r.process, Some(4242));
        assert_eq!(r.message, "upstream timed out");
        let extra = r.extra.unwrap();
        assert_eq!(extra["syslog.facility"], "local7");
        assert_eq!(extra["syslog.severity"], "err");
        assert_eq!(extra["syslog.msgid"], "ACCESS");
        assert_eq!(extra["syslog.sd.req@1.id"], "r-9");
        assert_eq!(extra["syslog.peer"], "10.0.0.9");
    }

    #[test]
    fn a_json_message_stays_structured_and_its_own_fields_win() {
        let r = record_of(
            r#"<14>Dec  2 07:00:00 app-host billing[7]: {"level":"warning","service":"Billing","message":"slow","trace_id":"CN-1-a"}"#,
        );
        assert_eq!(r.level, owl_model::Level::Warn);
        assert_eq!(r.service.name, "Billing");
        assert_eq!(r.message, "slow");
        assert_eq!(r.trace.unwrap().id, "CN-1-a");
        assert_eq!(r.host.as_deref(), Some("app-host"));
        assert_eq!(r.extra.unwrap()["syslog.appname"], "billing");
    }

    #[test]
    fn garbage_is_kept_as_a_message_of_the_listener_service() {
        let r = record_of("\u{1}\u{2} not syslog at all");
        assert_eq!(r.message, "\u{1}\u{2} not syslog at all");
        assert_eq!(r.service.name, "syslog");
        assert_eq!(r.host.as_deref(), Some("agent-node"));
    }
}
