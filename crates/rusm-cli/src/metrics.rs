//! The opt-in metrics endpoint (`--metrics ADDR`): `GET /metrics` answers with the
//! node's counters in the Prometheus text exposition format (version 0.0.4).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rusm_http::{HttpStats, LATENCY_BUCKETS};
use rusm_otp::Runtime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the endpoint reports on.
#[derive(Clone)]
pub struct Sources {
    /// The node.
    pub rt: Runtime,
    /// The HTTP listeners, if any.
    pub http: Vec<HttpStatsSource>,
}

/// The metrics text for `sources`.
pub fn render(sources: &Sources) -> String {
    let stats = sources.rt.stats();
    let mut out = String::new();
    header(
        &mut out,
        "rusm_processes_live",
        "gauge",
        "Processes alive now.",
    );
    let _ = writeln!(out, "rusm_processes_live {}", stats.live);
    header(
        &mut out,
        "rusm_processes_spawned_total",
        "counter",
        "Processes spawned since the node started.",
    );
    let _ = writeln!(out, "rusm_processes_spawned_total {}", stats.spawned);
    header(
        &mut out,
        "rusm_process_exits_total",
        "counter",
        "Processes that ended, by the kind of their exit reason.",
    );
    for (kind, count) in stats.exits.iter() {
        let _ = writeln!(out, "rusm_process_exits_total{{reason=\"{kind}\"}} {count}");
    }
    header(
        &mut out,
        "rusm_supervisor_restarts_total",
        "counter",
        "Children restarted by supervisors.",
    );
    let _ = writeln!(out, "rusm_supervisor_restarts_total {}", stats.restarts);
    header(
        &mut out,
        "rusm_supervisor_child_restarts_total",
        "counter",
        "Children restarted by each live supervisor, by its pid and label.",
    );
    for counted in sources.rt.supervisor_restarts() {
        let _ = writeln!(
            out,
            "rusm_supervisor_child_restarts_total{{supervisor=\"{}\",label=\"{}\"}} {}",
            counted.supervisor,
            label_value(counted.label.as_deref().unwrap_or("")),
            counted.restarts
        );
    }
    header(
        &mut out,
        "rusm_mailbox_high_water_messages",
        "gauge",
        "The most messages that ever waited at once in any one mailbox.",
    );
    let _ = writeln!(
        out,
        "rusm_mailbox_high_water_messages {}",
        stats.mailbox_high_water
    );
    render_http_metrics(&mut out, &sources.http);
    out
}

/// `text` as a label value: backslash, double quote and line feed escaped.
fn label_value(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Write the `# HELP` and `# TYPE` lines of a metric.
pub fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Bind the metrics endpoint on `addr`; it serves until the returned task is aborted.
///
/// # Errors
/// When the address cannot be bound (in use, not local, no permission).
pub async fn serve(addr: SocketAddr, sources: Sources) -> anyhow::Result<MetricsServer> {
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot listen for metrics on {addr}: {}",
            crate::bind_error_hint(&e)
        )
    })?;
    let local = listener
        .local_addr()
        .context("the metrics listener has no address")?;
    let sources = Arc::new(sources);
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let sources = sources.clone();
            tokio::spawn(async move {
                let _ =
                    tokio::time::timeout(Duration::from_secs(10), answer(stream, &sources)).await;
            });
        }
    });
    Ok(MetricsServer { local, task })
}

/// A running metrics endpoint; stops when dropped.
pub struct MetricsServer {
    local: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl MetricsServer {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(mut stream: TcpStream, sources: &Sources) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() > 16 * 1024 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, body) = match (method, path) {
        ("GET", "/metrics") => ("200 OK", render(sources)),
        ("GET", _) => (
            "404 Not Found",
            "not found; metrics are at /metrics\n".to_owned(),
        ),
        _ => (
            "405 Method Not Allowed",
            "only GET /metrics is served\n".to_owned(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::label_value;

    #[test]
    fn label_values_escape_backslash_quote_and_line_feed() {
        assert_eq!(label_value("supervisor root"), "supervisor root");
        assert_eq!(label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}

/// What the metrics endpoint reads from a listener: its address and counters.
#[derive(Clone)]
pub struct HttpStatsSource {
    listener: SocketAddr,
    stats: Arc<dyn Fn() -> HttpStats + Send + Sync>,
}

impl HttpStatsSource {
    /// The source of the listener on `listener`, whose counters `stats` reads.
    pub fn new(listener: SocketAddr, stats: Arc<dyn Fn() -> HttpStats + Send + Sync>) -> Self {
        HttpStatsSource { listener, stats }
    }
}

/// A per-listener metric read from `HttpStats`: name, type, help, value.
type ConnectionMetric = (
    &'static str,
    &'static str,
    &'static str,
    fn(&HttpStats) -> u64,
);

/// Append the HTTP metrics of `sources` to `out`: requests by listener and status,
/// and a latency histogram per listener.
fn render_http_metrics(out: &mut String, sources: &[HttpStatsSource]) {
    if sources.is_empty() {
        return;
    }
    let snapshots: Vec<(SocketAddr, HttpStats)> =
        sources.iter().map(|s| (s.listener, (s.stats)())).collect();
    header(
        out,
        "rusm_http_requests_total",
        "counter",
        "HTTP responses, by listener and status code.",
    );
    for (listener, stats) in &snapshots {
        for (status, count) in &stats.by_status {
            let _ = writeln!(
                out,
                "rusm_http_requests_total{{listener=\"{listener}\",status=\"{status}\"}} {count}"
            );
        }
    }
    header(
        out,
        "rusm_http_requests_in_flight",
        "gauge",
        "HTTP requests being handled now.",
    );
    for (listener, stats) in &snapshots {
        let _ = writeln!(
            out,
            "rusm_http_requests_in_flight{{listener=\"{listener}\"}} {}",
            stats.in_flight
        );
    }
    let gauges: [ConnectionMetric; 5] = [
        (
            "rusm_http_connections_open",
            "gauge",
            "HTTP connections open now.",
            |s| s.connections_open,
        ),
        (
            "rusm_http_connections_accepted_total",
            "counter",
            "HTTP connections accepted.",
            |s| s.connections_accepted,
        ),
        (
            "rusm_http_connection_cap_reached_total",
            "counter",
            "Times the listener stopped accepting at max_connections (clients waited in the backlog).",
            |s| s.connection_cap_reached,
        ),
        (
            "rusm_http_header_read_timeouts_total",
            "counter",
            "Connections closed because a request head did not arrive within header_read_timeout.",
            |s| s.header_read_timeouts,
        ),
        (
            "rusm_http_body_read_timeouts_total",
            "counter",
            "Requests whose body did not arrive within body_read_timeout (408 or closed).",
            |s| s.body_read_timeouts,
        ),
    ];
    for (name, kind, help, value) in gauges {
        header(out, name, kind, help);
        for (listener, stats) in &snapshots {
            let _ = writeln!(out, "{name}{{listener=\"{listener}\"}} {}", value(stats));
        }
    }
    header(
        out,
        "rusm_http_request_duration_seconds",
        "histogram",
        "Time from request to response head, in seconds.",
    );
    for (listener, stats) in &snapshots {
        let mut cumulative = 0;
        for (i, count) in stats.latency_buckets.iter().enumerate() {
            cumulative += count;
            let le = LATENCY_BUCKETS
                .get(i)
                .map_or_else(|| "+Inf".to_owned(), |b| b.to_string());
            let _ = writeln!(
                out,
                "rusm_http_request_duration_seconds_bucket{{listener=\"{listener}\",le=\"{le}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "rusm_http_request_duration_seconds_sum{{listener=\"{listener}\"}} {}",
            stats.latency_sum_seconds
        );
        let _ = writeln!(
            out,
            "rusm_http_request_duration_seconds_count{{listener=\"{listener}\"}} {cumulative}"
        );
    }
}
