//! WebSocket routes: the upgrade, and the connection process that owns the socket.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use rusm_otp::{Context, ExitReason, Message, Payload, Pid, SendErrorKind};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message as WsMessage, Utf8Bytes};

use super::{ConnectionConfig, Live, Start, await_guest, overflowed, proto};
use crate::body::{ResponseBody, full};
use crate::route::Route;
use crate::server::{Shared, busy, plain};
use crate::stats::{StatsRecorder, StreamKind};

/// The longest close reason a close frame carries (125 bytes of control-frame
/// payload, less the code).
const MAX_CLOSE_REASON: usize = 123;

type Socket = WebSocketStream<TokioIo<Upgraded>>;

fn has_token(value: Option<&HeaderValue>, token: &str) -> bool {
    value
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// Answer an upgrade request on a WebSocket route: 101 and a connection process, or
/// why not (400, 426 for a request that is not an upgrade, 503 at `max_streams`).
pub(crate) fn accept(
    shared: &Arc<Shared>,
    route: &Route,
    mut request: Request<Incoming>,
) -> (Response<ResponseBody>, Option<Pid>) {
    let headers = request.headers();
    let upgrade = request.method() == Method::GET
        && has_token(headers.get(header::CONNECTION), "upgrade")
        && has_token(headers.get(header::UPGRADE), "websocket");
    if !upgrade {
        let mut response = plain(
            StatusCode::UPGRADE_REQUIRED,
            "this route speaks WebSocket: send a GET with Upgrade: websocket\n",
        );
        response
            .headers_mut()
            .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        return (response, None);
    }
    let version_ok = headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v == "13");
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY).cloned() else {
        return (
            plain(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key\n"),
            None,
        );
    };
    if !version_ok {
        let mut response = plain(StatusCode::BAD_REQUEST, "unsupported WebSocket version\n");
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return (response, None);
    }
    let Ok(permit) = shared.streams.clone().try_acquire_owned() else {
        shared.stats.stream_refused();
        return (busy(), None);
    };
    let on_upgrade = hyper::upgrade::on(&mut request);
    let start = Start::new(shared, route, &request, StreamKind::WebSocket, permit);
    let stop = shared.stop.clone();
    let options = start.process_options();
    let pid = shared
        .node
        .runtime()
        .spawn_with(options, move |ctx| run(ctx, start, on_upgrade, stop));
    let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) else {
        return (
            plain(StatusCode::BAD_REQUEST, "bad Sec-WebSocket-Key\n"),
            None,
        );
    };
    let mut response = Response::new(full(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    (response, Some(pid))
}

/// How a connection's socket side ended.
enum Ending {
    /// The guest ended; the close was sent.
    GuestEnded,
    /// The socket is closed and the guest was told; it has `close_timeout` to end.
    Closed,
    /// The node or the server is stopping: the close (1001) was sent, and the
    /// connection process ends with this reason, which ends the guest.
    Stopping(ExitReason),
}

/// The connection process.
async fn run(
    ctx: Context,
    mut start: Start,
    on_upgrade: OnUpgrade,
    mut stop: watch::Receiver<bool>,
) -> ExitReason {
    let _live = Live::new(&mut start, ctx.pid());
    let config = start.config.clone();
    let upgraded = match tokio::time::timeout(config.write_timeout, on_upgrade).await {
        Ok(Ok(upgraded)) => upgraded,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "websocket upgrade failed");
            return ExitReason::Normal;
        }
        Err(_) => return ExitReason::Normal,
    };
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(config.max_message_bytes))
        .max_frame_size(Some(config.max_message_bytes))
        .write_buffer_size(0)
        .max_write_buffer_size(config.max_message_bytes.saturating_mul(2).max(64 * 1024));
    let socket =
        WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(ws_config))
            .await;
    let mut conn = Connection {
        socket,
        stats: &start.shared.stats,
        config: &config,
    };
    let guest = match start.spawn_guest(&ctx) {
        Ok(pid) => pid,
        Err(e) => {
            tracing::warn!(component = start.component, error = %e, "cannot start the websocket's process");
            conn.close(1011, "internal error").await;
            return ExitReason::Normal;
        }
    };
    match conn.serve(&ctx, guest, &mut stop).await {
        Ending::GuestEnded => ExitReason::Normal,
        Ending::Closed => await_guest(&ctx, guest, config.close_timeout).await,
        Ending::Stopping(reason) => reason,
    }
}

/// The socket side of a connection process.
struct Connection<'a> {
    socket: Socket,
    stats: &'a StatsRecorder,
    config: &'a ConnectionConfig,
}

/// The socket is gone or stuck: why, for the guest.
struct Lost(&'static str);

impl Connection<'_> {
    async fn serve(
        &mut self,
        ctx: &Context,
        guest: Pid,
        stop: &mut watch::Receiver<bool>,
    ) -> Ending {
        let config = self.config;
        let mut last_heard = Instant::now();
        let mut ping =
            tokio::time::interval_at(Instant::now() + config.ping_interval, config.ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let idle_at = last_heard + config.idle_timeout;
            let step = tokio::select! {
                _ = stop.changed() => {
                    self.close(1001, "server shutting down").await;
                    return Ending::Stopping(ExitReason::Shutdown);
                }
                message = ctx.recv() => self.on_message(ctx, guest, message).await,
                frame = self.socket.next() => {
                    last_heard = Instant::now();
                    self.on_frame(ctx, guest, frame).await
                }
                () = tokio::time::sleep_until(idle_at) => {
                    self.stats.idle_timeout();
                    self.close(1001, "idle timeout").await;
                    Step::Closed(1001, "idle timeout")
                }
                _ = ping.tick() => match self.write(WsMessage::Ping(Bytes::new())).await {
                    Ok(()) => Step::Go,
                    Err(lost) => Step::Lost(lost),
                },
            };
            match step {
                Step::Go => {}
                Step::End(ending) => return ending,
                Step::Closed(code, reason) => {
                    tell(ctx, guest, code, reason);
                    return Ending::Closed;
                }
                Step::Lost(Lost(why)) => {
                    self.stats.stream_close_code(1006);
                    tell(ctx, guest, 1006, why);
                    return Ending::Closed;
                }
            }
        }
    }

    /// A message to the connection process.
    async fn on_message(&mut self, ctx: &Context, guest: Pid, message: Message) -> Step {
        let step = match message {
            Message::Data(data) => {
                let tag = data.tag;
                let Payload::Bytes(bytes) = data.payload else {
                    tracing::debug!(tag, "a websocket connection dropped a non-byte message");
                    return Step::Go;
                };
                match tag {
                    proto::TEXT => match String::from_utf8(bytes) {
                        Ok(text) => self.send(WsMessage::Text(text.into())).await,
                        Err(_) => {
                            self.close(1011, "internal error").await;
                            Step::Closed(1011, "a text frame sent to the connection was not UTF-8")
                        }
                    },
                    proto::BINARY => self.send(WsMessage::Binary(bytes.into())).await,
                    proto::PING => {
                        let mut bytes = bytes;
                        bytes.truncate(125);
                        self.send(WsMessage::Ping(bytes.into())).await
                    }
                    proto::CLOSE => {
                        let (code, reason) =
                            proto::decode_close(&bytes).unwrap_or((1000, String::new()));
                        let code = if CloseCode::from(code).is_allowed() {
                            code
                        } else {
                            1000
                        };
                        self.close(code, &reason).await;
                        Step::End(Ending::Closed)
                    }
                    _ => {
                        tracing::debug!(tag, "a websocket connection ignored a message");
                        Step::Go
                    }
                }
            }
            Message::Exit(signal) if signal.from == guest => {
                if signal.reason.is_normal() {
                    self.close(1000, "").await;
                } else {
                    self.close(1011, "internal error").await;
                }
                return Step::End(Ending::GuestEnded);
            }
            Message::Exit(signal) if !signal.reason.is_normal() => {
                self.close(1001, "server shutting down").await;
                return Step::End(Ending::Stopping(signal.reason));
            }
            _ => Step::Go,
        };
        if matches!(step, Step::Go) && overflowed(ctx) {
            self.stats.queue_overflow();
            self.close(1008, "outgoing queue full").await;
            return Step::Closed(1008, "outgoing queue full");
        }
        step
    }

    /// A frame (or the end) from the client.
    async fn on_frame(
        &mut self,
        ctx: &Context,
        guest: Pid,
        frame: Option<Result<WsMessage, WsError>>,
    ) -> Step {
        let (tag, payload) = match frame {
            None => return Step::Lost(Lost("connection lost")),
            Some(Ok(WsMessage::Text(text))) => (proto::TEXT, Vec::from(text.as_bytes())),
            Some(Ok(WsMessage::Binary(bytes))) => (proto::BINARY, Vec::from(bytes)),
            Some(Ok(WsMessage::Close(frame))) => {
                let (code, reason) = frame.map_or((1005, String::new()), |f| {
                    (u16::from(f.code), f.reason.as_str().to_owned())
                });
                self.stats.stream_close_code(code);
                self.drain().await;
                tell(ctx, guest, code, &reason);
                return Step::End(Ending::Closed);
            }
            Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_))) => {
                return Step::Go;
            }
            Some(Err(WsError::Capacity(
                CapacityError::MessageTooLong { .. } | CapacityError::TooManyHeaders,
            ))) => {
                self.stats.oversized();
                self.close(1009, "message too big").await;
                return Step::Closed(1009, "message too big");
            }
            Some(Err(WsError::Utf8(_))) => {
                self.close(1007, "invalid UTF-8").await;
                return Step::Closed(1007, "invalid UTF-8");
            }
            Some(Err(WsError::Protocol(e))) => {
                tracing::debug!(error = %e, "websocket protocol error");
                self.close(1002, "protocol error").await;
                return Step::Closed(1002, "protocol error");
            }
            Some(Err(_)) => return Step::Lost(Lost("connection lost")),
        };
        self.stats.frame_in(payload.len());
        match ctx.try_send(guest, tag, payload) {
            Ok(()) => Step::Go,
            Err(e) => match e.kind {
                SendErrorKind::Full => {
                    self.stats.queue_overflow();
                    self.close(1008, "guest not keeping up").await;
                    Step::Closed(1008, "guest not keeping up")
                }
                SendErrorKind::TooLarge { .. } => {
                    self.stats.oversized();
                    self.close(1009, "message too big").await;
                    Step::Closed(1009, "message too big")
                }
                // The guest has ended; its exit signal follows.
                _ => Step::Go,
            },
        }
    }

    /// Write a frame a process sent.
    async fn send(&mut self, message: WsMessage) -> Step {
        let len = message.len();
        match self.write(message).await {
            Ok(()) => {
                self.stats.frame_out(len);
                Step::Go
            }
            Err(lost) => Step::Lost(lost),
        }
    }

    async fn write(&mut self, message: WsMessage) -> Result<(), Lost> {
        match tokio::time::timeout(self.config.write_timeout, self.socket.send(message)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Lost("connection lost")),
            Err(_) => {
                self.stats.write_timeout();
                Err(Lost("client not reading"))
            }
        }
    }

    /// Close with `code` and `reason`, and wait (at most `close_timeout`) for the
    /// client's close in return.
    async fn close(&mut self, code: u16, reason: &str) {
        self.stats.stream_close_code(code);
        let mut end = reason.len().min(MAX_CLOSE_REASON);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: Utf8Bytes::from(reason[..end].to_owned()),
        };
        let grace = self.config.close_timeout;
        let _ = tokio::time::timeout(grace, async {
            if self.socket.close(Some(frame)).await.is_ok() {
                self.drain().await;
            }
        })
        .await;
    }

    /// Read until the socket ends (what the close handshake needs), at most
    /// `close_timeout`.
    async fn drain(&mut self) {
        let grace = self.config.close_timeout;
        let _ = tokio::time::timeout(grace, async {
            while let Some(Ok(_)) = self.socket.next().await {}
        })
        .await;
    }
}

/// What one turn of the loop decided.
enum Step {
    Go,
    End(Ending),
    /// The server closed the socket (code, reason): the guest is told.
    Closed(u16, &'static str),
    Lost(Lost),
}

/// Tell the guest its connection closed.
fn tell(ctx: &Context, guest: Pid, code: u16, reason: &str) {
    let _ = ctx.try_send(guest, proto::CLOSE, proto::encode_close(code, reason));
}
