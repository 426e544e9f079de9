//! Server-sent events routes: a stream answered at once, fed by a connection process.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use rusm_otp::{Context, ExitReason, Message, Payload, Pid};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::{Live, Start, await_guest, overflowed, proto};
use crate::body::{BoxError, ResponseBody};
use crate::route::Route;
use crate::server::{Shared, busy, plain};
use crate::stats::StreamKind;

/// The comment line written every `heartbeat`.
const HEARTBEAT: &[u8] = b": heartbeat\n\n";

/// The response body: what the connection process writes, until it ends.
struct EventBody(mpsc::Receiver<Bytes>);

impl Body for EventBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| Ok(Frame::data(c))))
    }
}

/// Answer a request on an SSE route: 200 with an event stream and a connection
/// process, or 405 (not a GET), 503 at `max_streams`.
pub(crate) fn accept(
    shared: &Arc<Shared>,
    route: &Route,
    request: Request<Incoming>,
) -> (Response<ResponseBody>, Option<Pid>) {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET"));
        return (response, None);
    }
    let Ok(permit) = shared.streams.clone().try_acquire_owned() else {
        shared.stats.stream_refused();
        return (busy(), None);
    };
    let start = Start::new(shared, route, &request, StreamKind::Sse, permit);
    // One queued chunk per outgoing message the process may hold: the channel and
    // the mailbox together stay within twice the route's queue bounds.
    let (tx, rx) = mpsc::channel(start.config.max_queued_messages);
    let stop = shared.stop.clone();
    let options = start.process_options();
    let pid = shared
        .node
        .runtime()
        .spawn_with(options, move |ctx| run(ctx, start, tx, stop));
    let mut response = Response::new(EventBody(rx).boxed_unsync());
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    (response, Some(pid))
}

/// The connection process of one stream.
async fn run(
    ctx: Context,
    mut start: Start,
    tx: mpsc::Sender<Bytes>,
    mut stop: watch::Receiver<bool>,
) -> ExitReason {
    let _live = Live::new(&mut start, ctx.pid());
    let config = start.config.clone();
    let stats = &start.shared.stats;
    let guest = match start.spawn_guest(&ctx) {
        Ok(pid) => pid,
        Err(e) => {
            tracing::warn!(component = start.component, error = %e, "cannot start the stream's process");
            return ExitReason::Normal;
        }
    };
    let write = async |chunk: Bytes| -> Result<(), ExitReason> {
        let len = chunk.len();
        match tokio::time::timeout(config.write_timeout, tx.send(chunk)).await {
            Ok(Ok(())) => {
                stats.frame_out(len);
                Ok(())
            }
            Ok(Err(_)) => Err(ExitReason::custom("client went away")),
            Err(_) => {
                stats.write_timeout();
                Err(ExitReason::custom("client not reading"))
            }
        }
    };
    let mut heartbeat =
        tokio::time::interval_at(Instant::now() + config.heartbeat, config.heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let result = tokio::select! {
            _ = stop.changed() => return ExitReason::Shutdown,
            () = tx.closed() => Err(ExitReason::custom("client went away")),
            _ = heartbeat.tick() => write(Bytes::from_static(HEARTBEAT)).await,
            message = ctx.recv() => match message {
                Message::Data(data) if data.tag == proto::EVENT => {
                    let Payload::Bytes(bytes) = data.payload else { continue };
                    match proto::decode_event(&bytes).and_then(|e| e.to_text()) {
                        Some(text) => write(Bytes::from(text)).await,
                        None => {
                            tracing::warn!(%guest, "a malformed event ends its stream");
                            Err(ExitReason::custom("malformed event"))
                        }
                    }
                }
                // The guest ended: so does the stream.
                Message::Exit(signal) if signal.from == guest => return ExitReason::Normal,
                Message::Exit(signal) if !signal.reason.is_normal() => return signal.reason,
                _ => Ok(()),
            },
        };
        if let Err(reason) = result {
            // The guest sees its link to the connection end (it is told, if it
            // traps exits), after a last look for its own end.
            return match await_guest(&ctx, guest, std::time::Duration::ZERO).await {
                ExitReason::Normal => ExitReason::Normal,
                _ => reason,
            };
        }
        if overflowed(&ctx) {
            stats.queue_overflow();
            return ExitReason::custom("outgoing queue full");
        }
    }
}
