//! HTTP: the app's listeners (through `rusm-http`) and the small HTTP/1.1 client the
//! client steps use to talk to them on loopback.

use std::net::SocketAddr;
use std::time::Duration;

use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use rusm_http::{HttpConfig, HttpError, HttpServer, Route};
use rusm_policy::Policy;
use rusm_wasm::WasmNode;

use crate::manifest::{ListenerDecl, Manifest};
use crate::metrics::HttpStatsSource;

/// A running listener, shared with the metrics endpoint until it is shut down.
pub struct Server {
    addr: SocketAddr,
    inner: Arc<Mutex<Option<HttpServer>>>,
}

impl Server {
    fn new(server: HttpServer) -> Server {
        Server {
            addr: server.local_addr(),
            inner: Arc::new(Mutex::new(Some(server))),
        }
    }
}

fn bind_error(e: HttpError) -> anyhow::Error {
    match e {
        HttpError::Bind { addr, source } => anyhow::anyhow!(
            "cannot listen on {addr}: {}",
            crate::bind_error_hint(&source)
        ),
        other => anyhow::anyhow!("{}", crate::one_line(&other.to_string())),
    }
}

/// Bind `listener` and serve its routes with `node`'s components, each under its
/// component's policy.
///
/// # Errors
/// When the address cannot be bound or a route's component is not an HTTP handler.
pub async fn bind(
    node: &WasmNode,
    manifest: &Manifest,
    listener: &ListenerDecl,
) -> anyhow::Result<Server> {
    let mut routes = Vec::new();
    for r in &listener.routes {
        let route = match r.kind {
            rusm_http::RouteKind::WebSocket => {
                Route::websocket(r.path.clone(), r.component.clone())
            }
            rusm_http::RouteKind::Sse => Route::sse(r.path.clone(), r.component.clone()),
            _ => Route::new(r.path.clone(), r.component.clone()),
        };
        let mut route = route
            .connection(r.connection.clone())
            .pool(r.pool)
            .policy(manifest.components[&r.component].policy.clone());
        if let Some(reuse) = r.reuse {
            route = route.reuse(reuse);
        }
        if let Some(concurrency) = r.concurrency {
            route = route.concurrency(concurrency);
        }
        if let Some(method) = &r.method {
            let method = http::Method::from_bytes(method.as_bytes()).map_err(|_| {
                anyhow::anyhow!("route {}: {method:?} is not an HTTP method", r.path)
            })?;
            route = route.method(method);
        }
        routes.push(route);
    }
    HttpServer::bind(
        node.clone(),
        listener.listen,
        routes,
        listener.config.clone(),
    )
    .await
    .map(Server::new)
    .map_err(bind_error)
}

/// Bind one listener serving `component` on every path under `policy`.
///
/// # Errors
/// When the address cannot be bound or the component is not an HTTP handler.
pub async fn bind_one(
    node: &WasmNode,
    component: &str,
    policy: Arc<Policy>,
    listen: SocketAddr,
) -> anyhow::Result<Server> {
    let routes = vec![Route::new("/", component).policy(policy)];
    HttpServer::bind(node.clone(), listen, routes, HttpConfig::default())
        .await
        .map(Server::new)
        .map_err(bind_error)
}

/// The address a listener is bound to.
pub fn local_addr(server: &Server) -> SocketAddr {
    server.addr
}

/// Stop a listener, letting requests in flight finish.
pub async fn shutdown(server: Server) {
    let inner = server
        .inner
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    if let Some(inner) = inner {
        inner.shutdown().await;
    }
}

/// What the metrics endpoint reads from `server`.
pub fn stats_source(server: &Server) -> HttpStatsSource {
    let inner = server.inner.clone();
    HttpStatsSource::new(
        server.addr,
        Arc::new(move || {
            inner
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_ref()
                .map(HttpServer::stats)
                .unwrap_or_default()
        }),
    )
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body, as text (lossily).
    pub body: String,
}

/// Send one HTTP/1.1 request to `addr` and read the whole answer (at most 1 MiB, within
/// 10 s).
///
/// # Errors
/// When the connection fails, times out, or the answer is not HTTP/1.1.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> anyhow::Result<Response> {
    tokio::time::timeout(Duration::from_secs(10), exchange(addr, method, path, body))
        .await
        .with_context(|| format!("no answer from http://{addr} within 10 s"))?
}

async fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> anyhow::Result<Response> {
    let mut stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    (&mut stream).take(1 << 20).read_to_end(&mut raw).await?;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> anyhow::Result<Response> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("the answer has no complete HTTP head")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let payload = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .with_context(|| format!("bad HTTP status line {status_line:?}"))?;
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked") {
            chunked = true;
        } else if name.eq_ignore_ascii_case("content-length") {
            length = value.parse::<usize>().ok();
        }
    }
    let body = if chunked {
        dechunk(payload)?
    } else {
        match length {
            Some(n) => payload
                .get(..n)
                .context("the answer is shorter than its content-length")?
                .to_vec(),
            None => payload.to_vec(),
        }
    };
    Ok(Response {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("a chunk has no size line")?;
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .with_context(|| format!("bad chunk size {size_text:?}"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = data.get(..size).context("a chunk is cut short")?;
        out.extend_from_slice(chunk);
        data = data.get(size + 2..).context("a chunk is cut short")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_sized_answer() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n42junk").unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "42"));
    }

    #[test]
    fn parses_a_chunked_answer() {
        let raw = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        let r = parse_response(raw).unwrap();
        assert_eq!((r.status, r.body.as_str()), (404, "abcde"));
    }

    #[test]
    fn rejects_a_cut_answer() {
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nab").is_err());
    }
}
