//! What a process body is given: its own pid, its mailbox and the node.

use std::future::{Future, poll_fn};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use crate::error::{Error, SendError};
use crate::mailbox::{Mailbox, MailboxStats};
use crate::message::{Data, Message, Payload, Tag};
use crate::reason::IntoExitReason;
use crate::runtime::{Runtime, SpawnOptions, Spawned};
use crate::slot::Slot;
use crate::{ExitReason, MonitorRef, Pid, TimerRef};

/// A process's view of itself and of the node, handed to its body.
///
/// Receiving is meant to happen from the process's own body; the context is `Clone` so
/// helpers can hold it, but two concurrent receives on one mailbox wake only the last
/// receiver that waited.
#[derive(Clone)]
pub struct Context {
    rt: Runtime,
    pub(crate) slot: Arc<Slot>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("pid", &self.slot.pid)
            .finish()
    }
}

impl Context {
    pub(crate) fn new(rt: Runtime, slot: Arc<Slot>) -> Context {
        Context { rt, slot }
    }

    /// This process's pid.
    pub fn pid(&self) -> Pid {
        self.slot.pid
    }

    /// The process that spawned this one (`None` for processes spawned from outside).
    pub fn parent(&self) -> Option<Pid> {
        self.slot.parent
    }

    /// The node.
    pub fn runtime(&self) -> &Runtime {
        &self.rt
    }

    // ---- spawning -------------------------------------------------------------------

    /// Start a process whose parent is this one.
    pub fn spawn<F, Fut>(&self, body: F) -> Pid
    where
        F: FnOnce(Context) -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: IntoExitReason,
    {
        self.rt
            .spawn_inner(Some(self), SpawnOptions::default(), body, None)
            .pid
    }

    /// Start a process linked to this one (atomically: the link exists before the child
    /// runs).
    pub fn spawn_link<F, Fut>(&self, body: F) -> Pid
    where
        F: FnOnce(Context) -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: IntoExitReason,
    {
        let options = SpawnOptions {
            link: true,
            ..SpawnOptions::default()
        };
        self.rt.spawn_inner(Some(self), options, body, None).pid
    }

    /// Start a process monitored by this one.
    pub fn spawn_monitor<F, Fut>(&self, body: F) -> (Pid, MonitorRef)
    where
        F: FnOnce(Context) -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: IntoExitReason,
    {
        let options = SpawnOptions {
            monitor: true,
            ..SpawnOptions::default()
        };
        let spawned = self.rt.spawn_inner(Some(self), options, body, None);
        (spawned.pid, spawned.monitor.expect("monitor was requested"))
    }

    /// Start a process with explicit options.
    pub fn spawn_with<F, Fut>(&self, options: SpawnOptions, body: F) -> Spawned
    where
        F: FnOnce(Context) -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: IntoExitReason,
    {
        self.rt.spawn_inner(Some(self), options, body, None)
    }

    // ---- sending --------------------------------------------------------------------

    /// Send a data message with tag 0. Never blocks, never fails (see [`Runtime::send`]).
    pub fn send(&self, to: Pid, payload: impl Into<Payload>) {
        self.rt.send(to, payload);
    }

    /// Send a data message with a tag.
    pub fn send_tagged(&self, to: Pid, tag: Tag, payload: impl Into<Payload>) {
        self.rt.send_tagged(to, tag, payload);
    }

    /// Send, reporting whether the message was queued.
    ///
    /// # Errors
    /// Hands the payload back when the receiver does not exist or its mailbox is full.
    pub fn try_send(
        &self,
        to: Pid,
        tag: Tag,
        payload: impl Into<Payload>,
    ) -> Result<(), SendError> {
        self.rt.try_send_tagged(to, tag, payload.into())
    }

    /// Send a data message to `to` after `delay`. The timer is this process's: it ends
    /// with this process (and with `to`), and only this process can cancel it.
    pub fn send_after(
        &self,
        to: Pid,
        tag: Tag,
        payload: impl Into<Payload>,
        delay: Duration,
    ) -> TimerRef {
        self.rt
            .start_timer(Some(self.pid()), to, tag, payload.into(), delay)
    }

    /// Cancel one of this process's timers; true if it had not fired. A timer another
    /// process set is left alone (false).
    pub fn cancel_timer(&self, timer: TimerRef) -> bool {
        self.rt.cancel_timer_of(Some(self.pid()), timer)
    }

    /// How many monitors this process holds: those still watching, plus the system
    /// messages (each `down`, and any `exit`) waiting in its mailbox, which a monitor
    /// of a dead process turns into at once.
    pub fn monitor_count(&self) -> usize {
        let st = self.slot.state.lock();
        st.monitoring.len() + st.mailbox.system_len()
    }

    /// How many processes this process is linked to.
    pub fn link_count(&self) -> usize {
        self.slot.state.lock().links.len()
    }

    /// How many of this process's timers have not fired yet.
    pub fn timer_count(&self) -> usize {
        self.rt.timer_load(self.pid()).0
    }

    /// The payload bytes this process's waiting timers hold.
    pub fn timer_bytes(&self) -> usize {
        self.rt.timer_load(self.pid()).1
    }

    // ---- receiving ------------------------------------------------------------------

    fn poll_take(
        &self,
        cx: &mut TaskContext<'_>,
        take: &mut dyn FnMut(&mut Mailbox) -> Option<Message>,
    ) -> Poll<Message> {
        let mut st = self.slot.state.lock();
        if let Some(msg) = take(&mut st.mailbox) {
            return Poll::Ready(msg);
        }
        match &st.recv_waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => st.recv_waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Take the oldest message of any kind, waiting as long as it takes.
    ///
    /// # Cancel safety
    /// Cancel safe: a message is only taken when the future completes.
    pub async fn recv(&self) -> Message {
        poll_fn(|cx| self.poll_take(cx, &mut Mailbox::take_any)).await
    }

    /// Like [`Context::recv`], giving up after `timeout` (returns `None`).
    pub async fn recv_timeout(&self, timeout: Duration) -> Option<Message> {
        tokio::time::timeout(timeout, self.recv()).await.ok()
    }

    /// Selective receive by tag: take the oldest data message with `tag`; every other
    /// message keeps its place and order. O(log n) in the mailbox length, however many
    /// other messages are ahead (see the [`mailbox`](crate::mailbox) docs).
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn recv_tag(&self, tag: Tag) -> Data {
        let msg = poll_fn(|cx| self.poll_take(cx, &mut |mb| mb.take_tag(tag))).await;
        msg.into_data()
            .expect("tag receive only takes data messages")
    }

    /// Like [`Context::recv_tag`], giving up after `timeout`.
    pub async fn recv_tag_timeout(&self, tag: Tag, timeout: Duration) -> Option<Data> {
        tokio::time::timeout(timeout, self.recv_tag(tag)).await.ok()
    }

    /// Selective receive by predicate: take the oldest message for which `pred` is true;
    /// every other message keeps its place and order. While waiting, each message is
    /// shown to `pred` at most once (Erlang's save point).
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn recv_match(&self, mut pred: impl FnMut(&Message) -> bool) -> Message {
        let mut from_seq = 0;
        poll_fn(|cx| {
            self.poll_take(cx, &mut |mb| match mb.take_match(from_seq, &mut pred) {
                Ok(msg) => Some(msg),
                Err(scanned) => {
                    from_seq = scanned.next_seq;
                    None
                }
            })
        })
        .await
    }

    /// Take the oldest message for which `pred` is true if one is queued now, without
    /// waiting and without registering for a wake-up; every other message keeps its
    /// place and order.
    pub fn try_recv_match(&self, mut pred: impl FnMut(&Message) -> bool) -> Option<Message> {
        self.slot.state.lock().mailbox.take_match(0, &mut pred).ok()
    }

    /// Take the oldest data message with `tag` if one is queued now, without waiting.
    pub fn try_recv_tag(&self, tag: Tag) -> Option<Data> {
        let msg = self.slot.state.lock().mailbox.take_tag(tag)?;
        Some(
            msg.into_data()
                .expect("tag receive only takes data messages"),
        )
    }

    /// Take the oldest message of any kind if one is queued now, without waiting.
    pub fn try_recv(&self) -> Option<Message> {
        Mailbox::take_any(&mut self.slot.state.lock().mailbox)
    }

    /// Like [`Context::recv_match`], giving up after `timeout`.
    pub async fn recv_match_timeout(
        &self,
        pred: impl FnMut(&Message) -> bool,
        timeout: Duration,
    ) -> Option<Message> {
        tokio::time::timeout(timeout, self.recv_match(pred))
            .await
            .ok()
    }

    /// Mailbox counters of this process.
    pub fn mailbox_stats(&self) -> MailboxStats {
        self.slot.state.lock().mailbox.stats()
    }

    // ---- links, monitors, exits -----------------------------------------------------

    /// Link with `pid`: from now on, when either ends abnormally, the other receives an
    /// exit signal. Linking to oneself does nothing.
    ///
    /// # Errors
    /// [`Error::NoProc`] at once if `pid` is not alive.
    pub fn link(&self, pid: Pid) -> Result<(), Error> {
        self.rt.link(&self.slot, pid)
    }

    /// Remove the link with `pid`, if any. An exit message from `pid` already waiting in
    /// the mailbox is removed too, so after `unlink` returns the link has no further
    /// effect.
    pub fn unlink(&self, pid: Pid) {
        self.rt.unlink(&self.slot, pid);
    }

    /// Monitor `pid`: a [`Down`](crate::Down) message arrives when it ends — at once, with
    /// reason `noproc`, if it is not alive.
    pub fn monitor(&self, pid: Pid) -> MonitorRef {
        self.rt.monitor(&self.slot, pid)
    }

    /// Stop a monitor. Returns true if it was active. A `Down` message for it that is
    /// already waiting in the mailbox is removed.
    pub fn demonitor(&self, monitor: MonitorRef) -> bool {
        self.rt.demonitor(&self.slot, monitor)
    }

    /// Trap exits (true): exit signals arrive as [`Message::Exit`] instead of ending this
    /// process. A kill is never trapped. Returns the previous setting.
    pub fn trap_exit(&self, enabled: bool) -> bool {
        std::mem::replace(&mut self.slot.state.lock().trap_exit, enabled)
    }

    /// Send an exit signal to `pid`, as Erlang's `exit/2`. To end this process itself
    /// with a reason, return it from the body; a signal to oneself takes effect at the
    /// next await point.
    pub fn exit(&self, pid: Pid, reason: ExitReason) {
        self.rt.exit_from(self.pid(), pid, reason);
    }

    /// Kill `pid`: it ends with [`ExitReason::Killed`] and cannot trap it.
    pub fn kill(&self, pid: Pid) {
        self.rt.kill_from(self.pid(), pid);
    }

    // ---- registry -------------------------------------------------------------------

    /// Register this process under `name`; see [`Runtime::register`].
    ///
    /// # Errors
    /// When the name is taken or this process already holds another name.
    pub fn register(&self, name: &str) -> Result<(), Error> {
        self.rt.register(name, self.pid())
    }

    /// Remove `name` if this process holds it.
    ///
    /// # Errors
    /// [`Error::NotRegistered`] when this process does not hold `name`.
    pub fn unregister(&self, name: &str) -> Result<(), Error> {
        if self.rt.whereis(name) != Some(self.pid()) {
            return Err(Error::NotRegistered(name.to_owned()));
        }
        self.rt.unregister(name);
        Ok(())
    }

    /// The process registered under `name`, if any.
    pub fn whereis(&self, name: &str) -> Option<Pid> {
        self.rt.whereis(name)
    }
}
