//! The opt-in metrics endpoint (`--metrics ADDR`): `GET /metrics` answers with the
//! node's counters in the Prometheus text exposition format (version 0.0.4).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rusm_otp::Runtime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::http::HttpStatsSource;

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
    header(
        &mut out,
        "rusm_mailbox_dropped_messages_total",
        "counter",
        "Data messages dropped or refused at full mailboxes.",
    );
    let _ = writeln!(
        out,
        "rusm_mailbox_dropped_messages_total {}",
        stats.mailbox_dropped
    );
    crate::http::render_metrics(&mut out, &sources.http);
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
