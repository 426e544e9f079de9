//! One HTTP request served by a component exporting `wasi:http/incoming-handler`,
//! run as a rusm process.
//!
//! [`WasmNode::serve_http`](crate::WasmNode::serve_http) instantiates the component from its cached `ProxyPre` in a
//! store set up exactly like every other process's (the policy's WASI context, memory
//! and table limits, a yield at each epoch tick, fuel, the deadline, the same trap
//! classification), so the handler has a pid, a mailbox and the `rusm:runtime`
//! imports: it can send to a named actor and wait for its reply. The process ends when
//! the handler returns, or when it is killed; its store is dropped before its exit is
//! announced. The listener around it lives in `rusm-http`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rusm_otp::{Context, ExitReason, Pid, SpawnOptions, Watch};
use rusm_policy::Policy;
use tokio::sync::oneshot;
use wasmtime_wasi_http::WasiHttpView;

use crate::extensions::Extensions;
use crate::kinds::{
    Backend, BodyFuture, Granted, HttpBodyError, HttpErrorCode, HttpResponseBody, HttpScheme,
    ResponseSender, ResponseSlot, Started,
};
use crate::preempt::in_guest;
use crate::registry::LoadedComponent;
use crate::store::{ProcessSetup, exit_reason};

/// How to run one request.
#[derive(Debug, Clone, Default)]
pub struct HttpRequestOptions {
    /// The policy the request's process runs under; `None` means the node's default.
    pub policy: Option<Arc<Policy>>,
    /// A wall-clock deadline for the whole request (the earlier of this and the
    /// policy's own `deadline` limit applies). When it passes the process is killed
    /// with [`ExitReason::DeadlineExceeded`].
    pub deadline: Option<Duration>,
    /// Whether the request came over TLS (the scheme the guest sees).
    pub https: bool,
}

/// Why a request produced no response.
#[derive(Debug, Clone)]
pub enum HttpFailure {
    /// The handler answered with a `wasi:http` error code instead of a response.
    Error(HttpErrorCode),
    /// The handler's process ended without answering (trap, deadline, kill, or a
    /// return without calling `response-outparam.set`); its exit reason.
    Ended(ExitReason),
}

impl std::fmt::Display for HttpFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpFailure::Error(code) => write!(f, "the handler answered with an error: {code:?}"),
            HttpFailure::Ended(ExitReason::Normal) => {
                f.write_str("the handler returned without setting a response")
            }
            HttpFailure::Ended(reason) => write!(f, "the handler ended: {reason}"),
        }
    }
}

impl std::error::Error for HttpFailure {}

/// A request being served by a process.
#[derive(Debug)]
pub struct HttpInvocation {
    pid: Pid,
    response: ResponseSlot,
    exit: HttpDone,
}

/// The end of one request's call: for a fresh instance, its process's exit; for a
/// pooled one ([`HttpPool`](crate::HttpPool)), [`ExitReason::Normal`] when the call
/// returned and the instance went back to its pool, or the exit reason of the
/// instance when the request retired it (a trap, the deadline, a kill).
///
/// Resolves as often as it is awaited, with the same reason.
#[must_use = "an HttpDone does nothing unless awaited"]
pub struct HttpDone {
    pending: Option<std::pin::Pin<Box<dyn Future<Output = ExitReason> + Send>>>,
    reason: Option<ExitReason>,
}

impl std::fmt::Debug for HttpDone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpDone")
            .field("reason", &self.reason)
            .finish_non_exhaustive()
    }
}

impl HttpDone {
    /// Done when `exit` resolves (a fresh instance's process).
    fn exit(exit: Watch) -> HttpDone {
        HttpDone::of(exit)
    }

    /// Done when `future` resolves.
    pub(crate) fn of(future: impl Future<Output = ExitReason> + Send + 'static) -> HttpDone {
        HttpDone {
            pending: Some(Box::pin(future)),
            reason: None,
        }
    }
}

impl Future for HttpDone {
    type Output = ExitReason;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<ExitReason> {
        if let Some(reason) = &self.reason {
            return std::task::Poll::Ready(reason.clone());
        }
        let Some(pending) = self.pending.as_mut() else {
            return std::task::Poll::Ready(ExitReason::NoProc);
        };
        let reason = std::task::ready!(pending.as_mut().poll(cx));
        self.pending = None;
        self.reason = Some(reason.clone());
        std::task::Poll::Ready(reason)
    }
}

impl HttpInvocation {
    /// The pid of the process serving the request.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Wait for the response head. The body streams on as the guest writes it; the
    /// process keeps running until the handler returns (see [`HttpInvocation::exit`]).
    ///
    /// # Errors
    /// [`HttpFailure`] when the handler answered with an error code or its process
    /// ended without answering.
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future leaves the invocation as it was.
    pub async fn response(&mut self) -> Result<hyper::Response<HttpResponseBody>, HttpFailure> {
        match (&mut self.response).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(code)) => Err(HttpFailure::Error(code)),
            // The sender went away with the store: the process is ending.
            Err(_) => Err(HttpFailure::Ended((&mut self.exit).await)),
        }
    }

    /// The end of the request's call (see [`HttpDone`]); the instance slot it took is
    /// free once this resolves.
    pub fn exit(self) -> HttpDone {
        self.exit
    }

    /// A request served by the process `pid`, answered through `response`, done when
    /// `exit` resolves.
    pub(crate) fn new(pid: Pid, response: ResponseSlot, exit: HttpDone) -> HttpInvocation {
        HttpInvocation {
            pid,
            response,
            exit,
        }
    }
}

impl HttpInvocation {
    /// Start serving `request` with `component` as a new process (no parent) spawned
    /// with `options` under what `granted` says.
    pub(crate) fn start<B>(
        backend: &Arc<Backend>,
        component: Arc<LoadedComponent>,
        granted: Granted,
        options: SpawnOptions,
        request: hyper::Request<B>,
        https: bool,
    ) -> HttpInvocation
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<HttpBodyError>,
    {
        let (sender, response) = oneshot::channel();
        let scheme = if https {
            HttpScheme::Https
        } else {
            HttpScheme::Http
        };
        let shared = Arc::clone(backend);
        let body = move |ctx: Context| -> BodyFuture {
            Box::pin(run_request(
                shared,
                component,
                granted.setup(ctx, Extensions::new()),
                scheme,
                request,
                sender,
            ))
        };
        let (pid, exit) = backend.rt.spawn_watched(options, body);
        HttpInvocation::new(pid, response, HttpDone::exit(exit))
    }
}

/// The body of a request's process: build its store, hand the request and the
/// response slot to the guest's `handle`, classify the end.
async fn run_request<B>(
    backend: Arc<Backend>,
    component: Arc<LoadedComponent>,
    setup: ProcessSetup,
    scheme: HttpScheme,
    request: hyper::Request<B>,
    sender: ResponseSender,
) -> ExitReason
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<HttpBodyError>,
{
    let Some(pre) = component.http_handler() else {
        return ExitReason::crashed(format!(
            "component {:?} is not an HTTP handler",
            component.name
        ));
    };
    let pid = setup.ctx.pid();
    let Started {
        mut store,
        deadline,
        ..
    } = match backend.start(&component, setup).await {
        Ok(started) => started,
        Err(reason) => return reason,
    };
    let store = &mut store.store;
    let resources = {
        let mut http = store.data_mut().http();
        http.new_incoming_request(scheme, request)
            .and_then(|req| Ok((req, http.new_response_outparam(sender)?)))
    };
    let (req, out) = match resources {
        Ok(pair) => pair,
        Err(e) => {
            return ExitReason::crashed(format!("cannot hand the request to the guest: {e:#}"));
        }
    };
    let run = in_guest(async {
        let proxy = pre.instantiate_async(&mut *store).await?;
        proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut *store, req, out)
            .await?;
        Ok(Ok(()))
    });
    let outcome = match deadline {
        None => Some(run.await),
        Some(at) => tokio::time::timeout_at(at, run).await.ok(),
    };
    let reason = exit_reason(outcome, store.data());
    tracing::debug!(%pid, component = %component.name, %reason, "http request process ended");
    reason
}
