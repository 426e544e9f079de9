//! The listener, its connections, and how one request is served.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use rusm_otp::{ExitReason, Pid};
use rusm_wasm::{
    ComponentKind, HttpFailure, HttpPoolConfig, HttpPoolRequest, HttpRequestOptions, SpawnError,
    WasmNode,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::body::{BodyOutcome, BoxError, LimitedBody, RequestBody, ResponseBody, buffered, full};
use crate::config::HttpConfig;
use crate::connection;
use crate::error::HttpError;
use crate::route::{Route, RouteKind, Routed, Router};
use crate::stats::{HttpStats, StatsRecorder};

/// hyper's smallest read buffer; a smaller header limit is raised to it.
const MIN_HEADER_BYTES: usize = 8192;

/// An HTTP/1.1 server whose requests are served by wasm components, each request a
/// fresh rusm process.
///
/// Dropping it stops accepting and lets in-flight requests finish in the background
/// (up to `shutdown_grace`); [`HttpServer::shutdown`] does the same and waits.
#[derive(Debug)]
pub struct HttpServer {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    accept: JoinHandle<()>,
}

/// What every connection of a server shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) node: WasmNode,
    router: Router,
    config: HttpConfig,
    slots: Arc<Semaphore>,
    /// One permit per open connection (`max_connections`).
    connections: Arc<Semaphore>,
    /// One permit per open WebSocket connection or SSE stream (`max_streams`).
    pub(crate) streams: Arc<Semaphore>,
    /// Pids of the connection processes alive now.
    pub(crate) streams_live: Mutex<HashSet<Pid>>,
    /// Becomes true (or its sender is dropped) when the server stops.
    pub(crate) stop: watch::Receiver<bool>,
    pub(crate) stats: StatsRecorder,
    /// Pids of the processes serving requests now, with how many each serves (a
    /// reused instance serves one request after another under one pid).
    in_flight: Mutex<HashMap<Pid, usize>>,
    host: HeaderValue,
}

impl HttpServer {
    /// Listen on `addr` (port 0 picks a free port; see [`HttpServer::local_addr`])
    /// and serve `routes` from the components loaded on `node`.
    ///
    /// # Errors
    /// [`HttpError::Route`] when a route's prefix does not start with `/` or its
    /// component is not loaded or does not export `wasi:http/incoming-handler`
    /// (a component of any kind that does is served: see [`WasmNode::serves_http`]);
    /// [`HttpError::Route`] also when a route's `reuse`, `pool` or `concurrency` is
    /// 0, a WebSocket or SSE route sets `reuse` or `concurrency`, or a route whose
    /// component is a `wasi:http` 0.2 handler sets `concurrency`; [`HttpError::Config`] when
    /// `max_concurrent` or `max_connections` is 0; [`HttpError::Bind`] when the address cannot be bound.
    pub async fn bind(
        node: WasmNode,
        addr: SocketAddr,
        mut routes: Vec<Route>,
        config: HttpConfig,
    ) -> Result<HttpServer, HttpError> {
        if config.max_concurrent == 0 {
            return Err(HttpError::Config(
                "max_concurrent must be at least 1".into(),
            ));
        }
        if config.max_connections == 0 {
            return Err(HttpError::Config(
                "max_connections must be at least 1".into(),
            ));
        }
        if config.max_streams == 0 || u32::try_from(config.max_streams).is_err() {
            return Err(HttpError::Config(
                "max_streams must be at least 1 and fit in 32 bits".into(),
            ));
        }
        for route in &mut routes {
            let bad = |reason: String| HttpError::Route {
                prefix: route.prefix().to_owned(),
                component: route.component().to_owned(),
                reason,
            };
            if !route.prefix().starts_with('/') {
                return Err(bad("the path prefix must start with '/'".into()));
            }
            if route.reuse_count() == 0 || route.pool_size() == 0 {
                return Err(bad(format!(
                    "reuse and pool must be at least 1 (reuse {}, pool {})",
                    route.reuse_count(),
                    route.pool_size()
                )));
            }
            if route.kind() != RouteKind::Http && route.reuse_count() > 1 {
                return Err(bad(
                    "reuse applies to http routes; a websocket or sse route runs a process per connection"
                        .into(),
                ));
            }
            if route.kind() != RouteKind::Http && route.concurrency_setting().is_some() {
                return Err(bad(
                    "concurrency applies to http routes; a websocket or sse route runs a process per connection"
                        .into(),
                ));
            }
            if route.kind() != RouteKind::Http {
                route.connection_config().check().map_err(bad)?;
                match node.component_kind(route.component()) {
                    Some(ComponentKind::Actor | ComponentKind::Handler) => continue,
                    Some(kind) => {
                        return Err(bad(format!(
                            "the component is {kind:?}; a {:?} route runs an actor or a handler-style actor per connection",
                            route.kind()
                        )));
                    }
                    None => return Err(bad("no component of that name is loaded".into())),
                }
            }
            match node.component_kind(route.component()) {
                Some(_) if node.serves_http(route.component()) => {}
                Some(kind) => {
                    return Err(bad(format!(
                        "the component is {kind:?}, not an HTTP handler: it exports neither wasi:http/incoming-handler@0.2 nor wasi:http/handler@0.3"
                    )));
                }
                None => return Err(bad("no component of that name is loaded".into())),
            }
            if node.is_http_service(route.component()) {
                // A wasi:http 0.3 service: always a pool, whose instances each serve
                // up to `concurrency` requests at once.
                let concurrency = route
                    .concurrency_setting()
                    .unwrap_or(rusm_wasm::DEFAULT_P3_CONCURRENCY);
                if concurrency == 0 {
                    return Err(bad("concurrency must be at least 1".into()));
                }
                let reuse = if route.reuse_is_set() {
                    route.reuse_count()
                } else {
                    u32::MAX
                };
                let config = HttpPoolConfig {
                    instances: route.pool_size(),
                    policy: route.policy_ref().cloned(),
                    concurrency,
                    ..HttpPoolConfig::new(reuse)
                };
                let pool = node
                    .http_pool(route.component(), config)
                    .map_err(|e| bad(e.to_string()))?;
                route.pool = Some(pool);
                continue;
            }
            if route.concurrency_setting().is_some() {
                return Err(bad(
                    "concurrency applies to components exporting wasi:http/handler@0.3; this one is a wasi:http 0.2 handler, which serves one request at a time per instance (see reuse)"
                        .into(),
                ));
            }
            if route.reuse_count() > 1 {
                let config = HttpPoolConfig {
                    instances: route.pool_size(),
                    policy: route.policy_ref().cloned(),
                    ..HttpPoolConfig::new(route.reuse_count())
                };
                let pool = node
                    .http_pool(route.component(), config)
                    .map_err(|e| bad(e.to_string()))?;
                route.pool = Some(pool);
            }
        }
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| HttpError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| HttpError::Bind { addr, source })?;
        let host = HeaderValue::from_str(&local_addr.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("localhost"));
        let (stop, stop_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            node,
            router: Router::new(routes),
            slots: Arc::new(Semaphore::new(config.max_concurrent)),
            connections: Arc::new(Semaphore::new(config.max_connections)),
            streams: Arc::new(Semaphore::new(config.max_streams)),
            streams_live: Mutex::new(HashSet::new()),
            stop: stop_rx.clone(),
            config,
            stats: StatsRecorder::new(),
            in_flight: Mutex::new(HashMap::new()),
            host,
        });
        let accept = tokio::spawn(accept_loop(listener, shared.clone(), stop_rx));
        tracing::info!(%local_addr, routes = shared.router.routes().len(), "http server listening");
        Ok(HttpServer {
            local_addr,
            shared,
            stop,
            accept,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Requests by status, the latency histogram and the requests in flight.
    pub fn stats(&self) -> HttpStats {
        self.shared.stats.snapshot()
    }

    /// The requests an instance has taken and not yet finished, all routes together
    /// (unlike [`HttpStats::in_flight`], which also counts those still waiting for a
    /// slot or an instance).
    pub fn requests_on_instances(&self) -> usize {
        lock(&self.shared.in_flight).values().sum()
    }

    /// Stop accepting connections, close idle ones, and let in-flight requests
    /// finish; after `shutdown_grace`, kill the instances still running and close
    /// their connections. Returns once every connection is closed.
    ///
    /// # Cancel safety
    /// Not cancel safe in the sense that matters: once called, the server stops
    /// accepting even if the returned future is dropped.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.accept.await;
        tracing::info!(local_addr = %self.local_addr, "http server stopped");
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut conns = JoinSet::new();
    // The connection slot the next accepted connection takes. At the cap nothing is
    // accepted: new clients wait in the kernel's backlog rather than being refused.
    let mut slot: Option<OwnedSemaphorePermit> = None;
    loop {
        if slot.is_none() {
            match shared.connections.clone().try_acquire_owned() {
                Ok(permit) => slot = Some(permit),
                Err(_) => {
                    shared.stats.connection_cap_reached();
                    tracing::debug!(
                        max_connections = shared.config.max_connections,
                        "http connection cap reached; not accepting until one closes"
                    );
                    tokio::select! {
                        permit = shared.connections.clone().acquire_owned() => slot = permit.ok(),
                        _ = stop.changed() => break,
                        Some(_) = conns.join_next(), if !conns.is_empty() => {}
                    }
                    continue;
                }
            }
        }
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let permit = slot.take();
                    shared.stats.connection_opened();
                    conns.spawn(serve_connection(shared.clone(), stream, stop.clone(), permit));
                }
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "http accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            // A send (shutdown) or the sender dropped (server dropped): stop.
            _ = stop.changed() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    let grace = shared.config.shutdown_grace;
    let drain = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, drain).await.is_err() {
        let pids: Vec<Pid> = lock(&shared.in_flight).keys().copied().collect();
        tracing::warn!(
            in_flight = pids.len(),
            "http shutdown grace passed; killing the remaining requests"
        );
        for pid in pids {
            shared.node.runtime().kill(pid);
        }
        conns.abort_all();
        while conns.join_next().await.is_some() {}
    }
    // The warm instances of reusing routes have nothing left to serve.
    for route in shared.router.routes() {
        if let Some(pool) = &route.pool {
            pool.retire_idle();
        }
    }
    // WebSocket connections and SSE streams close themselves on the stop (1001);
    // those still open after the grace are killed.
    let all = u32::try_from(shared.config.max_streams).unwrap_or(u32::MAX);
    let closed = tokio::time::timeout(grace, shared.streams.acquire_many(all)).await;
    if closed.is_err() {
        let pids: Vec<Pid> = lock(&shared.streams_live).iter().copied().collect();
        tracing::warn!(
            open = pids.len(),
            "http shutdown grace passed; killing the remaining connections"
        );
        for pid in pids {
            shared.node.runtime().kill(pid);
        }
    }
}

/// Counts a connection closed when dropped (however its task ends).
struct OpenConnection {
    shared: Arc<Shared>,
    _slot: Option<OwnedSemaphorePermit>,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.shared.stats.connection_closed();
    }
}

async fn serve_connection(
    shared: Arc<Shared>,
    stream: TcpStream,
    mut stop: watch::Receiver<bool>,
    slot: Option<OwnedSemaphorePermit>,
) {
    let _open = OpenConnection {
        shared: shared.clone(),
        _slot: slot,
    };
    let _ = stream.set_nodelay(true);
    let config = &shared.config;
    let mut builder = http1::Builder::new();
    builder
        .keep_alive(true)
        .max_buf_size(config.max_header_bytes.max(MIN_HEADER_BYTES))
        .max_headers(config.max_headers)
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout);
    let service_shared = shared.clone();
    let service = service_fn(move |request| {
        let shared = service_shared.clone();
        async move { Ok::<_, Infallible>(handle(&shared, request).await) }
    });
    let conn = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        if e.is_timeout() {
            shared.stats.header_read_timeout();
        }
        tracing::debug!(error = %e, "http connection ended with an error");
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Serve one request and log it.
async fn handle(shared: &Arc<Shared>, request: Request<Incoming>) -> Response<ResponseBody> {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    shared.stats.started();
    let (response, pid) = dispatch(shared, request, started).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    shared.stats.finished(status, elapsed);
    let pid = pid.map_or_else(|| "-".to_owned(), |p| p.to_string());
    tracing::info!(
        target: "rusm::http::access",
        %method,
        path,
        status,
        duration_us = elapsed.as_micros() as u64,
        pid,
        "request"
    );
    response
}

pub(crate) fn plain(status: StatusCode, text: &'static str) -> Response<ResponseBody> {
    let mut response = Response::new(full(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn declared_length(request: &Request<Incoming>) -> Option<u64> {
    request
        .headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

pub(crate) fn busy() -> Response<ResponseBody> {
    let mut response = plain(StatusCode::SERVICE_UNAVAILABLE, "server busy\n");
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

fn deadline_passed() -> Response<ResponseBody> {
    plain(StatusCode::GATEWAY_TIMEOUT, "request deadline exceeded\n")
}

fn body_timed_out() -> Response<ResponseBody> {
    let mut response = plain(
        StatusCode::REQUEST_TIMEOUT,
        "request body not received in time\n",
    );
    // The rest of the body is not read: the connection cannot be reused.
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

fn too_large() -> Response<ResponseBody> {
    plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n")
}

/// Route, check the limits, run the handler: the response and the pid that made it.
/// `arrived` is when the request head was read; the deadline counts from it.
async fn dispatch(
    shared: &Arc<Shared>,
    request: Request<Incoming>,
    arrived: Instant,
) -> (Response<ResponseBody>, Option<Pid>) {
    let config = &shared.config;
    let route = match shared.router.route(request.method(), request.uri().path()) {
        Routed::Found(route) => route,
        Routed::NotFound => return (plain(StatusCode::NOT_FOUND, "not found\n"), None),
        Routed::WrongMethod(allowed) => {
            let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            let allow = allowed
                .iter()
                .map(Method::as_str)
                .collect::<Vec<_>>()
                .join(", ");
            if let Ok(value) = HeaderValue::from_str(&allow) {
                response.headers_mut().insert(header::ALLOW, value);
            }
            return (response, None);
        }
    };
    match route.kind() {
        RouteKind::WebSocket => return connection::ws::accept(shared, route, request),
        RouteKind::Sse => return connection::sse::accept(shared, route, request),
        _ => {}
    }
    let declared = declared_length(&request);
    if declared.is_some_and(|len| len > config.max_body_bytes) {
        return (too_large(), None);
    }
    let (mut parts, incoming) = request.into_parts();
    let outcome = Arc::new(BodyOutcome::default());
    // A short declared body is read whole before an instance slot is taken, so a
    // client trickling it holds nothing but its connection; the wait ends with the
    // body read timeout or the request deadline, whichever comes first.
    let prebuffer =
        incoming.is_end_stream() || declared.is_some_and(|len| len <= config.buffered_body_bytes);
    let deadline_first = config.request_deadline < config.body_read_timeout;
    let body_time = if prebuffer && deadline_first {
        config.request_deadline
    } else {
        config.body_read_timeout
    };
    let limited = LimitedBody::new(
        incoming,
        config.max_body_bytes,
        Some(arrived + body_time),
        outcome.clone(),
    );
    let body: RequestBody = if prebuffer {
        match limited.collect().await {
            Ok(collected) => buffered(collected.to_bytes()),
            Err(_) if outcome.timed_out() && deadline_first => {
                return (deadline_passed(), None);
            }
            Err(_) if outcome.timed_out() => {
                shared.stats.body_read_timeout();
                return (body_timed_out(), None);
            }
            Err(_) if outcome.too_large() => return (too_large(), None),
            Err(e) => {
                tracing::debug!(error = ?e, "request body failed");
                return (plain(StatusCode::BAD_REQUEST, "bad request body\n"), None);
            }
        }
    } else {
        limited.boxed_unsync()
    };
    // Backpressure: wait a bounded time for an instance slot, never past the deadline.
    let remaining = config.request_deadline.saturating_sub(arrived.elapsed());
    let wait = config.queue_timeout.min(remaining);
    let queued = Instant::now();
    let permit = match tokio::time::timeout(wait, shared.slots.clone().acquire_owned()).await {
        Ok(Ok(permit)) => permit,
        Ok(Err(_)) => return (busy(), None),
        Err(_) if wait < config.queue_timeout => return (deadline_passed(), None),
        Err(_) => return (busy(), None),
    };
    let remaining = config.request_deadline.saturating_sub(arrived.elapsed());
    if remaining.is_zero() {
        return (deadline_passed(), None);
    }
    if parts.uri.authority().is_none() && !parts.headers.contains_key(header::HOST) {
        parts.headers.insert(header::HOST, shared.host.clone());
    }
    let request = Request::from_parts(parts, body);
    let served = match &route.pool {
        Some(pool) => {
            let options = HttpPoolRequest {
                deadline: Some(remaining),
                https: false,
                // What is left of the queue timeout after the wait for a slot.
                wait: config
                    .queue_timeout
                    .saturating_sub(queued.elapsed())
                    .min(remaining),
            };
            let served = pool.serve(request, options).await;
            if served.is_err() && arrived.elapsed() >= config.request_deadline {
                return (deadline_passed(), None);
            }
            served
        }
        None => {
            let options = HttpRequestOptions {
                policy: route.policy_ref().cloned(),
                deadline: Some(remaining),
                https: false,
            };
            shared.node.serve_http(route.component(), request, options)
        }
    };
    let mut invocation = match served {
        Ok(invocation) => invocation,
        // Every instance of the route's pool stayed busy: as for a full server.
        Err(SpawnError::Unavailable(_)) if route.pool.is_some() => return (busy(), None),
        // The node cannot take another process now (its memory budget): busy.
        Err(e @ SpawnError::Unavailable(_)) => {
            tracing::warn!(component = route.component(), error = %e, "cannot serve request now");
            return (
                plain(StatusCode::SERVICE_UNAVAILABLE, "server busy\n"),
                None,
            );
        }
        Err(e) => {
            tracing::error!(component = route.component(), error = %e, "cannot serve request");
            return (
                plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n"),
                None,
            );
        }
    };
    let pid = invocation.pid();
    *lock(&shared.in_flight).entry(pid).or_default() += 1;
    let result = invocation.response().await;
    // The slot is held until the process ends, which may be after the response head
    // (a streamed body) or never be reached by this future (a dropped connection).
    let exit = invocation.exit();
    let releaser = shared.clone();
    let body_outcome = outcome.clone();
    tokio::spawn(async move {
        let _ = exit.await;
        {
            let mut in_flight = lock(&releaser.in_flight);
            if let Some(count) = in_flight.get_mut(&pid) {
                *count -= 1;
                if *count == 0 {
                    in_flight.remove(&pid);
                }
            }
        }
        drop(permit);
        if body_outcome.timed_out() {
            releaser.stats.body_read_timeout();
        }
    });
    let response = match result {
        Ok(_) if outcome.too_large() => too_large(),
        Ok(_) if outcome.timed_out() => body_timed_out(),
        Ok(response) => response.map(|body| {
            body.map_err(|code| -> BoxError { format!("response body failed: {code:?}").into() })
                .boxed_unsync()
        }),
        Err(_) if outcome.too_large() => too_large(),
        Err(_) if outcome.timed_out() => body_timed_out(),
        Err(HttpFailure::Ended(ExitReason::DeadlineExceeded)) => {
            tracing::warn!(%pid, component = route.component(), "request deadline passed; instance killed");
            deadline_passed()
        }
        Err(failure) => {
            tracing::warn!(%pid, component = route.component(), "{failure}");
            plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n")
        }
    };
    (response, Some(pid))
}
