//! Long-lived connections as processes: WebSocket routes (`ws.rs`) and server-sent
//! events routes (`sse.rs`).
//!
//! Each connection is a native rusm process, the *connection process*, which owns the
//! socket (or the event stream) and spawns the route's component linked to it, with
//! the connection's pid and the request in its init (`proto.rs` has the tags and the
//! encoding; `rusm_guest::ws` and `rusm_guest::sse` are the guest side). Its mailbox
//! is the connection's outgoing queue, bounded by [`ConnectionConfig`]; whatever holds
//! its pid can send it frames or events.

pub(crate) mod proto;
pub(crate) mod sse;
pub(crate) mod ws;

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, Request};
use rusm_otp::{Context, ExitReason, MailboxConfig, Message, Pid};
use rusm_wasm::WasmSpawnOptions;
use tokio::sync::OwnedSemaphorePermit;

use crate::route::Route;
use crate::server::{Shared, lock};
use crate::stats::StreamKind;

/// The settings of a WebSocket or SSE route's connections. [`ConnectionConfig::default`]
/// suits a small service; every field can be changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionConfig {
    /// The largest message in either direction, in bytes: a client's larger WebSocket
    /// message closes the connection with 1009; a larger message to the connection
    /// (a frame's payload, or an encoded event: its text and about 20 bytes) is
    /// refused at its send (an error for a guest).
    pub max_message_bytes: usize,
    /// The most bytes waiting in a connection's outgoing queue (frames or events
    /// sent to the connection and not yet written), and in its guest's mailbox
    /// (frames from the client not yet received). A full outgoing queue drops what
    /// arrives and the connection is closed (WebSocket 1008 `outgoing queue full`); a
    /// guest whose mailbox is full closes it with 1008 `guest not keeping up`.
    pub max_queued_bytes: usize,
    /// The most messages waiting in either queue, as for `max_queued_bytes`.
    pub max_queued_messages: usize,
    /// WebSocket: how long the client may stay silent (no frame at all, pongs
    /// included) before the connection is closed with 1001 `idle timeout`.
    pub idle_timeout: Duration,
    /// WebSocket: how often the server pings the client (a client answering pongs is
    /// not idle).
    pub ping_interval: Duration,
    /// How long one write to the client may wait (a client that does not read): past
    /// it the connection is dropped and its guest told (close 1006).
    pub write_timeout: Duration,
    /// How long a closing handshake may take, and how long the guest has to end after
    /// its connection closed before the connection process ends (and its link ends
    /// the guest).
    pub close_timeout: Duration,
    /// SSE: how often a comment line (`: heartbeat`) is written, which keeps proxies
    /// from timing the stream out and finds clients that went away.
    pub heartbeat: Duration,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            max_message_bytes: 1024 * 1024,
            max_queued_bytes: 1024 * 1024,
            max_queued_messages: 1024,
            idle_timeout: Duration::from_secs(60),
            ping_interval: Duration::from_secs(20),
            write_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            heartbeat: Duration::from_secs(15),
        }
    }
}

impl ConnectionConfig {
    /// Why the settings cannot work, if they cannot.
    pub(crate) fn check(&self) -> Result<(), String> {
        let durations = [
            ("idle_timeout", self.idle_timeout),
            ("ping_interval", self.ping_interval),
            ("write_timeout", self.write_timeout),
            ("close_timeout", self.close_timeout),
            ("heartbeat", self.heartbeat),
        ];
        for (key, value) in durations {
            if value.is_zero() {
                return Err(format!("{key} must be more than 0"));
            }
        }
        if self.max_message_bytes == 0 || self.max_queued_bytes == 0 {
            return Err("max_message_bytes and max_queued_bytes must be at least 1".into());
        }
        if self.max_queued_messages == 0 {
            return Err("max_queued_messages must be at least 1".into());
        }
        Ok(())
    }

    /// The connection process's mailbox: its outgoing queue.
    fn outgoing(&self) -> MailboxConfig {
        MailboxConfig {
            capacity: Some(self.max_queued_messages),
            max_bytes: Some(self.max_queued_bytes),
            max_message: Some(self.max_message_bytes),
            ..MailboxConfig::default()
        }
    }

    /// The guest's mailbox (its policy's `mailbox` limits, when smaller, win).
    fn inbound(&self) -> MailboxConfig {
        MailboxConfig {
            capacity: Some(self.max_queued_messages),
            max_bytes: Some(self.max_queued_bytes),
            max_message: Some(self.max_message_bytes),
            ..MailboxConfig::default()
        }
    }
}

/// What a connection process needs from its request.
pub(crate) struct Start {
    shared: Arc<Shared>,
    component: String,
    policy: Option<Arc<rusm_policy::Policy>>,
    config: ConnectionConfig,
    path: String,
    query: String,
    headers: HeaderMap,
    last_event_id: Option<String>,
    kind: StreamKind,
    permit: Option<OwnedSemaphorePermit>,
}

impl Start {
    fn new<B>(
        shared: &Arc<Shared>,
        route: &Route,
        request: &Request<B>,
        kind: StreamKind,
        permit: OwnedSemaphorePermit,
    ) -> Start {
        let last_event_id = match kind {
            StreamKind::Sse => request
                .headers()
                .get("last-event-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            StreamKind::WebSocket => None,
        };
        Start {
            shared: shared.clone(),
            component: route.component().to_owned(),
            policy: route.policy_ref().cloned(),
            config: route.connection_config().clone(),
            path: request.uri().path().to_owned(),
            query: request.uri().query().unwrap_or("").to_owned(),
            headers: request.headers().clone(),
            last_event_id,
            kind,
            permit: Some(permit),
        }
    }

    /// Spawn the guest linked to the connection process `ctx`.
    fn spawn_guest(&self, ctx: &Context) -> Result<Pid, String> {
        let init = proto::Init {
            conn: ctx.pid(),
            path: &self.path,
            query: &self.query,
            headers: &self.headers,
            last_event_id: self.last_event_id.as_deref(),
        }
        .encode();
        let options = WasmSpawnOptions {
            init,
            link: true,
            mailbox: self.config.inbound(),
            policy: self.policy.clone(),
            ..WasmSpawnOptions::default()
        };
        self.shared
            .node
            .spawn_with(Some(ctx), &self.component, options)
            .map(|spawned| spawned.pid)
            .map_err(|e| e.to_string())
    }

    /// The core options of the connection process.
    fn process_options(&self) -> rusm_otp::SpawnOptions {
        let label = match self.kind {
            StreamKind::WebSocket => format!("websocket {}", self.component),
            StreamKind::Sse => format!("sse {}", self.component),
        };
        rusm_otp::SpawnOptions {
            trap_exit: true,
            mailbox: self.config.outgoing(),
            label: Some(label.into()),
            ..rusm_otp::SpawnOptions::default()
        }
    }
}

/// Held by a connection process for its whole life: its stream slot, its place in the
/// server's list of live connection processes, and its open count.
struct Live {
    shared: Arc<Shared>,
    pid: Pid,
    kind: StreamKind,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Live {
    fn new(start: &mut Start, pid: Pid) -> Live {
        let permit = start.permit.take();
        lock(&start.shared.streams_live).insert(pid);
        start.shared.stats.stream_opened(start.kind);
        Live {
            shared: start.shared.clone(),
            pid,
            kind: start.kind,
            _permit: permit,
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        lock(&self.shared.streams_live).remove(&self.pid);
        self.shared.stats.stream_closed(self.kind);
    }
}

/// After the connection closed: give the guest `grace` to end. `Normal` when it
/// did; otherwise a reason whose exit signal, through the link, ends it (or tells it,
/// when it traps exits).
async fn await_guest(ctx: &Context, guest: Pid, grace: Duration) -> ExitReason {
    let ended = ctx
        .recv_match_timeout(
            |m| matches!(m, Message::Exit(signal) if signal.from == guest),
            grace,
        )
        .await;
    match ended {
        Some(_) => ExitReason::Normal,
        None => ExitReason::custom("connection closed"),
    }
}

/// Whether the connection's outgoing queue has had to drop something.
fn overflowed(ctx: &Context) -> bool {
    ctx.mailbox_stats().dropped > 0
}
