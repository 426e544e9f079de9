//! The rusm actor core: Erlang-style processes in pure Rust on tokio.
//!
//! A [`Runtime`] is one node. It spawns processes — async closures given a [`Context`]
//! (their own pid and mailbox) — that talk only by messages. Everything Erlang/OTP
//! programs rely on is here:
//!
//! - [`Pid`]s that print as `<0.42>` and are never reused within a node;
//! - mailboxes where `send` never blocks or fails for the sender, optional bounded
//!   capacity ([`MailboxConfig`], [`Overflow`]), receive with timeout and selective
//!   receive by tag (indexed, O(log n)) or by predicate (see [`mailbox`] for costs);
//! - links, monitors, `trap_exit`, `exit` and an untrappable `kill`, with Erlang's rules
//!   (an abnormal exit takes linked processes down unless they trap exits; a normal one
//!   does not; linking or monitoring a dead pid yields `noproc` at once);
//! - typed [`ExitReason`]s, shared with the wasm backend;
//! - a panic in a process body ends that process with [`ExitReason::Crashed`] and
//!   nothing else;
//! - a named registry cleaned up on exit, timers, [`supervisor`]s, and graceful node
//!   [`Runtime::shutdown`].
//!
//! This crate knows nothing about WebAssembly: a wasm process is just another body.
//!
//! ```
//! use rusm_otp::{Message, Runtime};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let rt = Runtime::new();
//! let echo = rt.spawn(|ctx| async move {
//!     while let Message::Data(data) = ctx.recv().await {
//!         let reply_to = *data.payload.downcast_ref::<rusm_otp::Pid>().unwrap();
//!         ctx.send(reply_to, b"pong".to_vec());
//!     }
//! });
//! let (_asker, done) = rt.spawn_watched(Default::default(), move |ctx| async move {
//!     ctx.send(echo, rusm_otp::Payload::value(ctx.pid()));
//!     let reply = ctx.recv().await.into_data().unwrap();
//!     assert_eq!(reply.payload.as_bytes(), Some(&b"pong"[..]));
//! });
//! assert_eq!(done.await, rusm_otp::ExitReason::Normal);
//! # });
//! ```

#![deny(missing_docs)]

mod context;
mod error;
mod event;
pub mod mailbox;
mod message;
mod pid;
mod reason;
mod remote;
mod runtime;
mod slot;
pub mod supervisor;
mod table;

pub use context::Context;
pub use error::{Error, SendError, SendErrorKind};
pub use event::Event;
pub use mailbox::{MailboxConfig, MailboxStats, Overflow};
pub use message::{Data, Down, ExitSignal, Inline, Message, Payload, Tag};
pub use pid::{MonitorRef, Pid, TimerRef};
pub use reason::{ExitReason, IntoExitReason};
pub use remote::{BoxFuture, Remote, RemoteSpawn, SpawnHandler, SpawnRefused, SpawnRequest};
pub use runtime::{
    ExitCounts, Runtime, RuntimeStats, SignalKind, SpawnOptions, Spawned, SupervisorRestarts, Watch,
};
