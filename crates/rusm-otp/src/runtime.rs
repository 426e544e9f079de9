//! The node: the process table, signals, the registry, timers and shutdown.

use std::future::{Future, poll_fn};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;

use dashmap::DashMap;
use rustc_hash::{FxBuildHasher, FxHashSet};
use tokio::runtime::Handle;
use tokio::sync::{Notify, oneshot};
use tokio::task::AbortHandle;

use crate::context::Context;
use crate::error::{Error, SendError, SendErrorKind};
use crate::event::Event;
use crate::mailbox::MailboxConfig;
use crate::message::{Data, Down, ExitSignal, Message, Payload, Tag};
use crate::reason::{ExitReason, IntoExitReason};
use crate::slot::{Slot, SlotState};
use crate::table::ProcessTable;
use crate::{MonitorRef, Pid, TimerRef};

impl Pid {
    /// The node itself: the sender of exit signals that come from outside any process
    /// (node shutdown, or [`Runtime::exit`] called by host code). Never a real process.
    pub const NODE: Pid = Pid::from_raw(0);
}

/// Options for spawning a process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpawnOptions {
    /// Link the new process to the spawner (ignored when spawned from outside a process).
    pub link: bool,
    /// Monitor the new process from the spawner (ignored outside a process).
    pub monitor: bool,
    /// Start the new process already trapping exits.
    pub trap_exit: bool,
    /// Mailbox capacity and overflow behaviour.
    pub mailbox: MailboxConfig,
    /// A name for logs and observers ([`Event`]), not unique and not a registered
    /// name: the wasm backend labels each process with its component's name.
    pub label: Option<Arc<str>>,
}

/// What a spawn returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spawned {
    /// The new process.
    pub pid: Pid,
    /// The monitor, when [`SpawnOptions::monitor`] was set.
    pub monitor: Option<MonitorRef>,
}

/// Counters about a node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RuntimeStats {
    /// Pids handed out since the node began (every spawn takes one).
    pub spawned: u64,
    /// Processes that have ended.
    pub exited: u64,
    /// Processes alive now.
    pub live: usize,
    /// Processes that ended, by the kind of their exit reason.
    pub exits: ExitCounts,
    /// Children restarted by supervisors.
    pub restarts: u64,
    /// The most messages that ever waited at once in any one mailbox of this node.
    pub mailbox_high_water: usize,
    /// Data messages dropped or refused at full mailboxes, of live and ended
    /// processes together ([`MailboxStats::dropped`](crate::MailboxStats::dropped)).
    pub mailbox_dropped: u64,
}

/// The restarts of one live supervisor; see [`Runtime::supervisor_restarts`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SupervisorRestarts {
    /// The supervisor.
    pub supervisor: Pid,
    /// Its label ([`SpawnOptions::label`]), if it was given one.
    pub label: Option<Arc<str>>,
    /// Children it has started again since it started (as [`RuntimeStats::restarts`]
    /// counts them: a `one_for_all` restart of three children counts three).
    pub restarts: u64,
}

/// Exits counted by the kind of their reason ([`ExitReason::kind`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExitCounts([u64; ExitReason::KINDS.len()]);

impl ExitCounts {
    /// Exits whose reason is of this kind (one of [`ExitReason::KINDS`]; 0 for others).
    pub fn get(&self, kind: &str) -> u64 {
        ExitReason::KINDS
            .iter()
            .position(|k| *k == kind)
            .map_or(0, |i| self.0[i])
    }

    /// Every kind with its count, in the order of [`ExitReason::KINDS`], zeros included.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        ExitReason::KINDS
            .iter()
            .copied()
            .zip(self.0.iter().copied())
    }

    /// All exits counted.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

/// A function told of every [`Event`] on a node.
type Observer = Arc<dyn Fn(&Event<'_>) + Send + Sync>;

/// A future that resolves to a process's exit reason; see [`Runtime::watch`].
#[derive(Debug)]
#[must_use = "a watch does nothing unless awaited"]
pub struct Watch(Option<oneshot::Receiver<ExitReason>>);

impl Future for Watch {
    type Output = ExitReason;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<ExitReason> {
        match &mut self.0 {
            None => Poll::Ready(ExitReason::NoProc),
            Some(rx) => std::pin::Pin::new(rx)
                .poll(cx)
                .map(|r| r.unwrap_or(ExitReason::NoProc)),
        }
    }
}

/// How an exit signal was sent; decides whether it can be trapped or ignored.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SignalKind {
    /// A linked process ended.
    Link,
    /// `exit(pid, reason)`.
    Exit,
    /// `kill(pid)`: never trapped.
    Kill,
}

/// A timer that has not fired: who set it (a process's timers end with it, and only it
/// may cancel them), whom it is for (it ends when that process does), its task.
struct TimerEntry {
    owner: Option<Pid>,
    target: Pid,
    /// The payload's bytes, charged to the owner while the timer waits.
    bytes: usize,
    task: Option<AbortHandle>,
}

pub(crate) struct Inner {
    handle: Handle,
    pub(crate) table: ProcessTable,
    pub(crate) next_pid: AtomicU64,
    pub(crate) next_ref: AtomicU64,
    registry: DashMap<Arc<str>, Pid>,
    timers: DashMap<u64, TimerEntry, FxBuildHasher>,
    shutting_down: AtomicBool,
    /// Tasks waiting for every process to end (so exits only look at the node-wide
    /// count while someone waits for it to reach zero).
    draining: AtomicUsize,
    all_exited: Notify,
    restarts: AtomicU64,
    /// The live supervisors and their restart counts.
    supervisors: DashMap<Pid, SupervisorRestarts, FxBuildHasher>,
    /// The largest mailbox high-water mark of the processes that have ended.
    mailbox_high_water: AtomicUsize,
    /// Messages dropped at the mailboxes of processes that have ended.
    mailbox_dropped: AtomicU64,
    /// Set once an observer is added, so that nodes without one pay a single load.
    observed: AtomicBool,
    observers: parking_lot::RwLock<Vec<Observer>>,
    /// Set once an interrupter is added.
    interrupting: AtomicBool,
    interrupters: parking_lot::RwLock<Vec<Interrupter>>,
    /// Set once when the node joins a cluster: where pids of other nodes go.
    pub(crate) cluster: std::sync::OnceLock<crate::remote::Membership>,
    /// What spawns the processes other nodes ask for.
    pub(crate) spawn_handler:
        parking_lot::RwLock<Option<std::sync::Weak<dyn crate::remote::SpawnHandler>>>,
}

/// What [`Runtime::add_interrupter`] keeps.
type Interrupter = Arc<dyn Fn() + Send + Sync>;

/// A node: the table of processes and everything that acts on them.
///
/// Cheap to clone (a reference-counted handle). Create one per node inside a tokio
/// runtime; processes run as tokio tasks on it. All operations are non-blocking.
#[derive(Clone)]
pub struct Runtime {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("live", &self.process_count())
            .finish()
    }
}

impl Runtime {
    /// A node whose processes run on the current tokio runtime.
    ///
    /// # Panics
    /// Panics when called outside a tokio runtime; use [`Runtime::with_handle`] there.
    pub fn new() -> Runtime {
        Runtime::with_handle(Handle::current())
    }

    /// A node whose processes run on the given tokio runtime.
    pub fn with_handle(handle: Handle) -> Runtime {
        Runtime {
            inner: Arc::new(Inner {
                handle,
                table: ProcessTable::new(),
                next_pid: AtomicU64::new(1),
                next_ref: AtomicU64::new(1),
                registry: DashMap::new(),
                timers: DashMap::with_hasher(FxBuildHasher),
                shutting_down: AtomicBool::new(false),
                draining: AtomicUsize::new(0),
                all_exited: Notify::new(),
                restarts: AtomicU64::new(0),
                supervisors: DashMap::with_hasher(FxBuildHasher),
                mailbox_high_water: AtomicUsize::new(0),
                mailbox_dropped: AtomicU64::new(0),
                observed: AtomicBool::new(false),
                observers: parking_lot::RwLock::new(Vec::new()),
                interrupting: AtomicBool::new(false),
                interrupters: parking_lot::RwLock::new(Vec::new()),
                cluster: std::sync::OnceLock::new(),
                spawn_handler: parking_lot::RwLock::new(None),
            }),
        }
    }

    /// The tokio runtime the processes run on.
    pub fn handle(&self) -> &Handle {
        &self.inner.handle
    }

    /// Start a process with no parent. The body is an async closure given the process's
    /// [`Context`]; what it returns becomes the exit reason (see [`IntoExitReason`]).
    pub fn spawn<F, Fut>(&self, body: F) -> Pid
    where
        F: FnOnce(Context) -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: IntoExitReason,
    {
        self.spawn_inner(None, SpawnOptions::default(), body, None)
            .pid
    }

    /// Start a process with no parent and return a [`Watch`] that resolves to its exit
    /// reason. Unlike `spawn` followed by [`Runtime::watch`], the watch is in place
    /// before the process runs, so even an instant exit is seen with its real reason.
    pub fn spawn_watched<F, Fut>(&self, options: SpawnOptions, body: F) -> (Pid, Watch)
    where
        F: FnOnce(Context) -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: IntoExitReason,
    {
        let (tx, rx) = oneshot::channel();
        let pid = self.spawn_inner(None, options, body, Some(tx)).pid;
        (pid, Watch(Some(rx)))
    }

    /// Start a process with no parent and the given options (`link`/`monitor` need a
    /// spawning process and are ignored here).
    pub fn spawn_with<F, Fut>(&self, options: SpawnOptions, body: F) -> Pid
    where
        F: FnOnce(Context) -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: IntoExitReason,
    {
        self.spawn_inner(None, options, body, None).pid
    }

    pub(crate) fn spawn_inner<F, Fut>(
        &self,
        parent: Option<&Context>,
        options: SpawnOptions,
        body: F,
        watcher: Option<oneshot::Sender<ExitReason>>,
    ) -> Spawned
    where
        F: FnOnce(Context) -> Fut + Send + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: IntoExitReason,
    {
        let inner = &*self.inner;
        let pid = Pid::from_raw(inner.next_pid.fetch_add(1, Ordering::Relaxed));
        let parent_pid = parent.map(Context::pid);
        let link = options.link && parent.is_some();
        let monitor = (options.monitor && parent.is_some()).then(|| self.new_monitor_ref());

        if inner.shutting_down.load(Ordering::Acquire) {
            // A node that is shutting down starts nothing: the pid is never alive.
            if let (Some(parent), Some(mref)) = (parent, monitor) {
                parent.slot.state.lock().monitoring.insert(mref, pid);
                self.deliver_down(parent.pid(), mref, pid, ExitReason::NoProc);
            }
            if let (Some(parent), true) = (parent, link) {
                self.signal(parent.pid(), pid, ExitReason::NoProc, SignalKind::Exit);
            }
            if let Some(watcher) = watcher {
                let _ = watcher.send(ExitReason::NoProc);
            }
            return Spawned { pid, monitor };
        }

        let mut state = SlotState::new(options.mailbox, options.trap_exit);
        state.watchers.extend(watcher);
        if let Some(parent) = parent_pid {
            if link {
                state.links.insert(parent);
            }
            if let Some(mref) = monitor {
                state.monitored_by.push((mref, parent));
            }
        }
        // The parent's side first: once the row is in the table the process can be
        // found (and signalled), and its exit must find the parent's link in place.
        if let Some(parent) = parent {
            let mut st = parent.slot.state.lock();
            if link {
                st.links.insert(pid);
            }
            if let Some(mref) = monitor {
                st.monitoring.insert(mref, pid);
            }
        }
        let slot = inner
            .table
            .insert_new(pid, Slot::new(pid, parent_pid, options.label, state));
        tracing::trace!(%pid, parent = ?parent_pid, "spawn");
        if inner.observed.load(Ordering::Acquire) {
            self.tell(&Event::Spawned {
                pid,
                parent: parent_pid,
                label: slot.label.as_deref(),
            });
        }
        let ctx = Context::new(self.clone(), slot.clone());
        inner
            .handle
            .spawn(run_process(self.clone(), slot, ctx, body));
        Spawned { pid, monitor }
    }

    /// Call `observer` with every [`Event`] on this node from now on (spawns, exits,
    /// supervisor restarts). Observers run synchronously where the event happens, so
    /// they must be quick and must not block; they cannot be removed.
    pub fn add_observer(&self, observer: impl Fn(&Event<'_>) + Send + Sync + 'static) {
        self.inner.observers.write().push(Arc::new(observer));
        self.inner.observed.store(true, Ordering::Release);
    }

    /// Call `interrupter` whenever a signal ends a process (a kill, or an exit signal
    /// it does not trap), right after its task is woken: a backend whose processes
    /// run code the runtime cannot reach between polls (a wasm guest inside one call)
    /// uses it to make that code yield now rather than at its next preemption. It
    /// runs on the signalling thread and must be quick; it cannot be removed.
    pub fn add_interrupter(&self, interrupter: impl Fn() + Send + Sync + 'static) {
        self.inner.interrupters.write().push(Arc::new(interrupter));
        self.inner.interrupting.store(true, Ordering::Release);
    }

    fn interrupt(&self) {
        if self.inner.interrupting.load(Ordering::Acquire) {
            for interrupter in self.inner.interrupters.read().iter() {
                interrupter();
            }
        }
    }

    fn tell(&self, event: &Event<'_>) {
        for observer in self.inner.observers.read().iter() {
            observer(event);
        }
    }

    /// A supervisor started `child` again as `pid`.
    pub(crate) fn note_restart(&self, supervisor: Pid, child: &str, pid: Pid) {
        self.inner.restarts.fetch_add(1, Ordering::Relaxed);
        if let Some(mut counted) = self.inner.supervisors.get_mut(&supervisor) {
            counted.restarts += 1;
        }
        if self.inner.observed.load(Ordering::Acquire) {
            self.tell(&Event::Restarted {
                supervisor,
                child,
                pid,
            });
        }
    }

    /// Count the restarts of the supervisor `ctx` until the returned guard is dropped
    /// (when the supervisor's body ends).
    pub(crate) fn count_supervisor<'a>(&'a self, ctx: &Context) -> CountedSupervisor<'a> {
        let pid = ctx.pid();
        self.inner.supervisors.insert(
            pid,
            SupervisorRestarts {
                supervisor: pid,
                label: ctx.slot.label.clone(),
                restarts: 0,
            },
        );
        CountedSupervisor { rt: self, pid }
    }

    /// The restart count of every live supervisor, by pid.
    pub fn supervisor_restarts(&self) -> Vec<SupervisorRestarts> {
        let mut all: Vec<SupervisorRestarts> = self
            .inner
            .supervisors
            .iter()
            .map(|entry| entry.value().clone())
            .collect();
        all.sort_unstable_by_key(|s| s.supervisor);
        all
    }

    pub(crate) fn new_monitor_ref(&self) -> MonitorRef {
        MonitorRef::from_raw(self.inner.next_ref.fetch_add(1, Ordering::Relaxed))
    }

    /// Send a data message with tag 0. Never blocks and never fails: a message to a
    /// process that does not exist, or that its full bounded mailbox refuses, is dropped.
    pub fn send(&self, to: Pid, payload: impl Into<Payload>) {
        let _ = self.try_send_tagged(to, 0, payload.into());
    }

    /// Send a data message with a tag (see [`Context::recv_tag`]). Never blocks or fails.
    pub fn send_tagged(&self, to: Pid, tag: Tag, payload: impl Into<Payload>) {
        let _ = self.try_send_tagged(to, tag, payload.into());
    }

    /// Send a data message, reporting whether it was queued.
    ///
    /// # Errors
    /// Hands the payload back when the receiver does not exist or its bounded mailbox is
    /// full (with [`Overflow::DropNewest`](crate::Overflow::DropNewest)).
    pub fn try_send_tagged(&self, to: Pid, tag: Tag, payload: Payload) -> Result<(), SendError> {
        let mut payload = Some(payload);
        let delivered = self.inner.table.with(to, |slot| {
            let mut st = slot.state.lock();
            if !st.alive {
                return Err(SendErrorKind::NoProc);
            }
            let size = payload.as_ref().map_or(0, Payload::byte_len);
            if let Some(why) = st.mailbox.refusal(size) {
                st.mailbox.count_dropped();
                return Err(why);
            }
            let data = Data {
                tag,
                payload: payload.take().expect("the payload is sent once"),
            };
            match st.deliver(Message::Data(data)) {
                Ok(waker) => Ok(waker),
                Err(Message::Data(data)) => {
                    payload = Some(data.payload);
                    Err(SendErrorKind::Full)
                }
                Err(_) => unreachable!("only data messages are refused"),
            }
        });
        // The receiver is woken once its row and mailbox are unlocked.
        match delivered {
            Some(Ok(waker)) => {
                if let Some(waker) = waker {
                    waker.wake();
                }
                Ok(())
            }
            Some(Err(kind)) => Err(SendError {
                payload: payload.expect("a refused payload is handed back"),
                kind,
            }),
            None => {
                let payload = payload.expect("an undelivered payload is kept");
                match self.remote_node(to) {
                    Some(remote) => remote.send(to, tag, payload),
                    None => Err(SendError {
                        payload,
                        kind: SendErrorKind::NoProc,
                    }),
                }
            }
        }
    }

    /// Send an exit signal to `pid` from the node ([`Pid::NODE`]), as Erlang's `exit/2`:
    /// a process that traps exits receives it as a message; otherwise any reason but
    /// `normal` ends it.
    pub fn exit(&self, pid: Pid, reason: ExitReason) {
        self.signal(pid, Pid::NODE, reason, SignalKind::Exit);
    }

    /// End `pid` at once with reason [`ExitReason::Killed`]. Cannot be trapped. A process
    /// blocked in receive, sleeping or spinning in wasm ends at its next poll.
    pub fn kill(&self, pid: Pid) {
        self.signal(pid, Pid::NODE, ExitReason::Killed, SignalKind::Kill);
    }

    pub(crate) fn exit_from(&self, from: Pid, pid: Pid, reason: ExitReason) {
        self.signal(pid, from, reason, SignalKind::Exit);
    }

    pub(crate) fn kill_from(&self, from: Pid, pid: Pid) {
        self.signal(pid, from, ExitReason::Killed, SignalKind::Kill);
    }

    pub(crate) fn signal(&self, target: Pid, from: Pid, reason: ExitReason, kind: SignalKind) {
        let Some(slot) = self.inner.table.get(target) else {
            if let Some(remote) = self.remote_node(target) {
                remote.signal(target, from, reason, kind);
            }
            return;
        };
        let mut st = slot.state.lock();
        if !st.alive {
            return;
        }
        if kind == SignalKind::Link && !st.links.remove(&from) {
            // Unlinked meanwhile: the signal no longer concerns this process.
            return;
        }
        let mut wake_task = false;
        let mut wake_recv = None;
        if kind == SignalKind::Kill {
            slot.set_exit(&mut st, ExitReason::Killed);
            wake_task = true;
        } else if st.trap_exit {
            wake_recv = st
                .deliver(Message::Exit(ExitSignal { from, reason }))
                .expect("system messages are never refused");
        } else if !reason.is_normal() || from == target {
            // A normal exit signal is ignored unless a process sends it to itself.
            slot.set_exit(&mut st, reason);
            wake_task = true;
        }
        drop(st);
        if wake_task {
            slot.task_waker.wake();
            self.interrupt();
        }
        if let Some(waker) = wake_recv {
            waker.wake();
        }
    }

    pub(crate) fn deliver_down(
        &self,
        owner: Pid,
        monitor: MonitorRef,
        pid: Pid,
        reason: ExitReason,
    ) {
        let Some(slot) = self.inner.table.get(owner) else {
            if let Some(remote) = self.remote_node(owner) {
                remote.down(owner, monitor, pid, reason);
            }
            return;
        };
        let mut st = slot.state.lock();
        if !st.alive || st.monitoring.remove(&monitor).is_none() {
            return;
        }
        let waker = st
            .deliver(Message::Down(Down {
                monitor,
                pid,
                reason,
            }))
            .expect("system messages are never refused");
        drop(st);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Link `me` (a live process, the caller) with `other`.
    pub(crate) fn link(&self, me: &Slot, other: Pid) -> Result<(), Error> {
        if other == me.pid {
            return Ok(());
        }
        // Our side first, so a signal from `other` dying right now finds the link.
        me.state.lock().links.insert(other);
        let linked = match self.inner.table.get(other) {
            Some(slot) => {
                let mut st = slot.state.lock();
                st.alive && {
                    st.links.insert(me.pid);
                    true
                }
            }
            None => match self.remote_node(other) {
                // The other node answers a link to a dead process with an exit
                // signal (`noproc`), as Erlang does: the link is in place meanwhile.
                Some(remote) => {
                    remote.link(me.pid, other);
                    true
                }
                None => false,
            },
        };
        if linked {
            Ok(())
        } else {
            me.state.lock().links.remove(&other);
            Err(Error::NoProc(other))
        }
    }

    pub(crate) fn unlink(&self, me: &Slot, other: Pid) {
        {
            let mut st = me.state.lock();
            st.links.remove(&other);
            st.mailbox
                .remove_all(|m| matches!(m, Message::Exit(sig) if sig.from == other));
        }
        if let Some(slot) = self.inner.table.get(other) {
            slot.state.lock().links.remove(&me.pid);
        } else if let Some(remote) = self.remote_node(other) {
            remote.unlink(me.pid, other);
        }
    }

    pub(crate) fn monitor(&self, me: &Slot, target: Pid) -> MonitorRef {
        let mref = self.new_monitor_ref();
        me.state.lock().monitoring.insert(mref, target);
        let watching = match self.inner.table.get(target) {
            Some(slot) => {
                let mut st = slot.state.lock();
                st.alive && {
                    st.monitored_by.push((mref, me.pid));
                    true
                }
            }
            None => match self.remote_node(target) {
                // The other node answers with a `Down` when the target is gone.
                Some(remote) => {
                    remote.monitor(me.pid, target, mref);
                    true
                }
                None => false,
            },
        };
        if !watching {
            self.deliver_down(me.pid, mref, target, ExitReason::NoProc);
        }
        mref
    }

    pub(crate) fn demonitor(&self, me: &Slot, mref: MonitorRef) -> bool {
        let target = {
            let mut st = me.state.lock();
            st.mailbox
                .remove_all(|m| matches!(m, Message::Down(down) if down.monitor == mref));
            st.monitoring.remove(&mref)
        };
        let Some(target) = target else { return false };
        if let Some(slot) = self.inner.table.get(target) {
            slot.state.lock().monitored_by.retain(|(m, _)| *m != mref);
        } else if let Some(remote) = self.remote_node(target) {
            remote.demonitor(me.pid, target, mref);
        }
        true
    }

    /// Register `pid` under `name`.
    ///
    /// # Errors
    /// [`Error::NoProc`] if `pid` is not alive, [`Error::NameTaken`] if another process
    /// holds the name, [`Error::AlreadyNamed`] if `pid` already has a name.
    pub fn register(&self, name: &str, pid: Pid) -> Result<(), Error> {
        let slot = self.inner.table.get(pid).ok_or(Error::NoProc(pid))?;
        let mut st = slot.state.lock();
        if !st.alive {
            return Err(Error::NoProc(pid));
        }
        if let Some(held) = &st.name {
            if &**held == name {
                return Ok(());
            }
            return Err(Error::AlreadyNamed {
                pid,
                name: held.to_string(),
            });
        }
        let name: Arc<str> = name.into();
        match self.inner.registry.entry(name.clone()) {
            dashmap::Entry::Occupied(entry) => Err(Error::NameTaken {
                name: name.to_string(),
                holder: *entry.get(),
            }),
            dashmap::Entry::Vacant(entry) => {
                entry.insert(pid);
                st.name = Some(name.clone());
                drop(st);
                if self.inner.observed.load(Ordering::Acquire) {
                    self.tell(&Event::Registered { name: &name, pid });
                }
                Ok(())
            }
        }
    }

    /// Remove a registered name; returns the pid that held it.
    pub fn unregister(&self, name: &str) -> Option<Pid> {
        let (_, pid) = self.inner.registry.remove(name)?;
        if let Some(slot) = self.inner.table.get(pid) {
            let mut st = slot.state.lock();
            if st.name.as_deref() == Some(name) {
                st.name = None;
            }
        }
        Some(pid)
    }

    /// The process registered under `name`, if any.
    pub fn whereis(&self, name: &str) -> Option<Pid> {
        self.inner.registry.get(name).map(|entry| *entry)
    }

    /// The name `pid` is registered under, if any.
    pub fn registered_name(&self, pid: Pid) -> Option<String> {
        let slot = self.inner.table.get(pid)?;
        slot.state.lock().name.as_deref().map(str::to_owned)
    }

    /// Send a data message to `to` after `delay`. The timer lives on the node, not on
    /// any process: only the end of `to` (or [`Runtime::cancel_timer`]) stops it.
    pub fn send_after(
        &self,
        to: Pid,
        tag: Tag,
        payload: impl Into<Payload>,
        delay: Duration,
    ) -> TimerRef {
        self.start_timer(None, to, tag, payload.into(), delay)
    }

    /// A timer set by `owner` (a process's own, which ends with it) or by the host.
    pub(crate) fn start_timer(
        &self,
        owner: Option<Pid>,
        to: Pid,
        tag: Tag,
        payload: Payload,
        delay: Duration,
    ) -> TimerRef {
        let id = self.inner.next_ref.fetch_add(1, Ordering::Relaxed);
        let timer = TimerRef::from_raw(id);
        let bytes = payload.byte_len();
        self.inner.timers.insert(
            id,
            TimerEntry {
                owner,
                target: to,
                bytes,
                task: None,
            },
        );
        // Recorded with its target and its owner: a timer for a process that has ended,
        // or set by one, never starts (its message could only be dropped). Either's end
        // from now on removes the entry.
        let recorded = self.inner.table.get(to).is_some_and(|slot| {
            let mut st = slot.state.lock();
            st.alive && st.timers_in.insert(id)
        }) && owner.is_none_or(|owner| {
            self.inner.table.get(owner).is_some_and(|slot| {
                let mut st = slot.state.lock();
                let recorded = st.alive && st.timers.insert(id);
                if recorded {
                    st.timer_bytes += bytes;
                }
                recorded
            })
        });
        if !recorded {
            if let Some((_, entry)) = self.inner.timers.remove(&id) {
                self.forget_timer(id, &entry);
            }
            return timer;
        }
        let rt = self.clone();
        let task = self.inner.handle.spawn(async move {
            tokio::time::sleep(delay).await;
            if let Some((_, entry)) = rt.inner.timers.remove(&id) {
                rt.forget_timer(id, &entry);
                rt.send_tagged(to, tag, payload);
            }
        });
        match self.inner.timers.get_mut(&id) {
            Some(mut entry) => entry.task = Some(task.abort_handle()),
            // Its owner or target ended meanwhile: the payload goes now.
            None => task.abort(),
        }
        timer
    }

    /// Take a fired or cancelled timer out of its owner's and its target's records.
    fn forget_timer(&self, id: u64, entry: &TimerEntry) {
        if let Some(owner) = entry.owner
            && let Some(slot) = self.inner.table.get(owner)
        {
            let mut st = slot.state.lock();
            if st.timers.remove(&id) {
                st.timer_bytes -= entry.bytes;
            }
        }
        if let Some(slot) = self.inner.table.get(entry.target) {
            slot.state.lock().timers_in.remove(&id);
        }
    }

    /// Cancel a timer. Returns true if it had not fired (its message will never arrive).
    /// The host may cancel any timer; a process cancels only its own
    /// ([`Context::cancel_timer`](crate::Context::cancel_timer)).
    pub fn cancel_timer(&self, timer: TimerRef) -> bool {
        self.cancel_timer_of(None, timer)
    }

    /// Cancel `timer` if `owner` set it (any timer when `owner` is `None`).
    pub(crate) fn cancel_timer_of(&self, owner: Option<Pid>, timer: TimerRef) -> bool {
        let id = timer.as_raw();
        let removed = match owner {
            None => self.inner.timers.remove(&id),
            Some(owner) => self
                .inner
                .timers
                .remove_if(&id, |_, entry| entry.owner == Some(owner)),
        };
        match removed {
            Some((_, entry)) => {
                if let Some(task) = &entry.task {
                    task.abort();
                }
                self.forget_timer(id, &entry);
                true
            }
            None => false,
        }
    }

    /// How many of its timers `pid` has waiting, and their payload bytes.
    pub(crate) fn timer_load(&self, pid: Pid) -> (usize, usize) {
        self.inner.table.get(pid).map_or((0, 0), |slot| {
            let st = slot.state.lock();
            (st.timers.len(), st.timer_bytes)
        })
    }

    /// End the timers in `ids` (those of a process that has ended).
    fn end_timers(&self, ids: FxHashSet<u64>) {
        for id in ids {
            if let Some((_, entry)) = self.inner.timers.remove(&id) {
                if let Some(task) = &entry.task {
                    task.abort();
                }
                self.forget_timer(id, &entry);
            }
        }
    }

    /// Whether `pid` is alive.
    pub fn is_alive(&self, pid: Pid) -> bool {
        self.inner
            .table
            .with(pid, |slot| slot.state.lock().alive)
            .unwrap_or(false)
    }

    /// The process that spawned `pid`, if it was spawned by a process and is alive.
    pub fn parent_of(&self, pid: Pid) -> Option<Pid> {
        self.inner.table.with(pid, |slot| slot.parent).flatten()
    }

    /// The number of processes alive now.
    pub fn process_count(&self) -> usize {
        self.inner.table.live()
    }

    /// The pids of every process alive now, in no particular order.
    pub fn processes(&self) -> Vec<Pid> {
        let mut pids = Vec::with_capacity(self.process_count());
        self.inner.table.for_each(|slot| pids.push(slot.pid));
        pids
    }

    /// Counters about this node.
    pub fn stats(&self) -> RuntimeStats {
        // Pids come from a counter starting at 1, so it also counts spawns; no extra
        // shared counter is touched on the spawn and exit paths.
        let spawned = self.inner.next_pid.load(Ordering::Relaxed) - 1;
        let live = self.process_count();
        let exits = ExitCounts(self.inner.table.exits());
        let mut live_high_water = 0;
        let mut live_dropped = 0;
        self.inner.table.for_each(|slot| {
            let stats = slot.state.lock().mailbox.stats();
            live_high_water = live_high_water.max(stats.high_water);
            live_dropped += stats.dropped;
        });
        RuntimeStats {
            spawned,
            exited: spawned.saturating_sub(live as u64),
            live,
            exits,
            restarts: self.inner.restarts.load(Ordering::Relaxed),
            mailbox_high_water: live_high_water
                .max(self.inner.mailbox_high_water.load(Ordering::Relaxed)),
            mailbox_dropped: live_dropped + self.inner.mailbox_dropped.load(Ordering::Relaxed),
        }
    }

    /// Mailbox counters of `pid`, if alive.
    pub fn mailbox_stats(&self, pid: Pid) -> Option<crate::MailboxStats> {
        let slot = self.inner.table.get(pid)?;
        Some(slot.state.lock().mailbox.stats())
    }

    /// Wait for `pid` to end and return its exit reason ([`ExitReason::NoProc`] at once
    /// if it is not alive). For host code outside any process; processes use monitors.
    ///
    /// # Cancel safety
    /// Dropping the future only stops waiting; the process is not affected.
    pub fn watch(&self, pid: Pid) -> Watch {
        Watch(self.inner.table.get(pid).and_then(|slot| {
            let mut st = slot.state.lock();
            st.alive.then(|| {
                let (tx, rx) = oneshot::channel();
                st.watchers.push(tx);
                rx
            })
        }))
    }

    /// Whether [`Runtime::shutdown`] has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::Acquire)
    }

    /// Stop the whole node gracefully.
    ///
    /// From then on, spawns start nothing. Root processes (those spawned from outside any
    /// process, typically supervisors) receive a `shutdown` exit signal one by one, newest
    /// first, and each gets up to `grace` to end — a supervisor uses that time to stop
    /// its children in reverse start order. Any process still alive then receives
    /// `shutdown`, and after another `grace`, is killed. Returns when no process is left.
    ///
    /// # Cancel safety
    /// Dropping the future part-way leaves the node shutting down but stops escalating.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.shutting_down.store(true, Ordering::Release);
        let mut roots: Vec<Pid> = Vec::new();
        self.inner.table.for_each(|slot| {
            if slot.parent.is_none() {
                roots.push(slot.pid);
            }
        });
        roots.sort_unstable_by(|a, b| b.cmp(a));
        for root in roots {
            let ended = self.watch(root);
            self.exit(root, ExitReason::Shutdown);
            let _ = tokio::time::timeout(grace, ended).await;
        }
        if self.wait_all(Duration::ZERO).await {
            return;
        }
        for pid in self.processes() {
            self.exit(pid, ExitReason::Shutdown);
        }
        if self.wait_all(grace).await {
            return;
        }
        for pid in self.processes() {
            tracing::warn!(%pid, "killed at node shutdown");
            self.kill(pid);
        }
        self.wait_all(Duration::MAX).await;
    }

    async fn wait_all(&self, limit: Duration) -> bool {
        // Announced before the count is read, so that an exit that brings it to zero
        // either is seen here or sees this waiter and notifies.
        let _draining = Draining::new(&self.inner.draining);
        let wait = async {
            loop {
                let notified = self.inner.all_exited.notified();
                if self.process_count() == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok() || self.process_count() == 0
    }

    fn finish(&self, slot: &Slot, reason: ExitReason) {
        let pid = slot.pid;
        let (links, monitored_by, monitoring, watchers, name, leftovers, high_water, timers) = {
            let mut st = slot.state.lock();
            st.alive = false;
            st.recv_waker = None;
            let stats = st.mailbox.stats();
            let high_water = stats.high_water;
            if stats.dropped > 0 {
                self.inner
                    .mailbox_dropped
                    .fetch_add(stats.dropped, Ordering::Relaxed);
            }
            let mut timers = std::mem::take(&mut st.timers);
            timers.extend(st.timers_in.drain());
            (
                std::mem::take(&mut st.links),
                std::mem::take(&mut st.monitored_by),
                std::mem::take(&mut st.monitoring),
                std::mem::take(&mut st.watchers),
                st.name.take(),
                st.mailbox.clear(),
                high_water,
                timers,
            )
        };
        drop(leftovers);
        // Its own timers end with it, and so do those set for it (as in Erlang).
        if !timers.is_empty() {
            self.end_timers(timers);
        }
        self.inner.table.remove(pid, reason.kind_index());
        if let Some(name) = name {
            self.inner
                .registry
                .remove_if(&name, |_, holder| *holder == pid);
        }
        tracing::trace!(%pid, %reason, "exit");
        let inner = &*self.inner;
        if high_water > inner.mailbox_high_water.load(Ordering::Relaxed) {
            inner
                .mailbox_high_water
                .fetch_max(high_water, Ordering::Relaxed);
        }
        if inner.observed.load(Ordering::Acquire) {
            self.tell(&Event::Exited {
                pid,
                label: slot.label.as_deref(),
                reason: &reason,
            });
        }
        for linked in links {
            self.signal(linked, pid, reason.clone(), SignalKind::Link);
        }
        for (mref, owner) in monitored_by {
            self.deliver_down(owner, mref, pid, reason.clone());
        }
        for (mref, target) in monitoring {
            if let Some(slot) = self.inner.table.get(target) {
                slot.state.lock().monitored_by.retain(|(m, _)| *m != mref);
            } else if let Some(remote) = self.remote_node(target) {
                remote.demonitor(pid, target, mref);
            }
        }
        for watcher in watchers {
            let _ = watcher.send(reason.clone());
        }
        if self.inner.table.finished(pid)
            && self.inner.draining.load(Ordering::SeqCst) > 0
            && self.process_count() == 0
        {
            self.inner.all_exited.notify_waiters();
        }
    }
}

impl Default for Runtime {
    fn default() -> Runtime {
        Runtime::new()
    }
}

/// A supervisor counted in [`Runtime::supervisor_restarts`] while it lives.
pub(crate) struct CountedSupervisor<'a> {
    rt: &'a Runtime,
    pid: Pid,
}

impl Drop for CountedSupervisor<'_> {
    fn drop(&mut self) {
        self.rt.inner.supervisors.remove(&self.pid);
    }
}

/// A task counted in [`Inner::draining`] while it lives.
struct Draining<'a>(&'a AtomicUsize);

impl<'a> Draining<'a> {
    fn new(count: &'a AtomicUsize) -> Draining<'a> {
        count.fetch_add(1, Ordering::SeqCst);
        Draining(count)
    }
}

impl Drop for Draining<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A process's task. `rt` and `slot` are the context's own, cloned by the spawner (whose
/// worker holds the node's reference count at that moment) so that the new process's
/// worker does not take references of its own.
async fn run_process<F, Fut>(rt: Runtime, slot: Arc<Slot>, ctx: Context, body: F)
where
    F: FnOnce(Context) -> Fut + Send + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: IntoExitReason,
{
    let reason = match catch_unwind(AssertUnwindSafe(|| body(ctx))) {
        Err(panic) => crashed(panic),
        Ok(future) => {
            let mut future = pin!(future);
            // The waker last registered for kills. A tokio task is polled with the same
            // waker every time, so it is registered once, not on every poll. The only
            // thing that takes it out of `task_waker` is a kill or an exit signal, and
            // that sets `exiting` first, which the next poll sees and ends the process.
            // It is recognised by its data and vtable addresses (what `Waker::will_wake`
            // compares), so keeping it costs no reference count.
            let mut registered = None;
            poll_fn(|cx| {
                let waker = cx.waker();
                let key = (waker.data() as usize, waker.vtable() as *const _ as usize);
                if registered != Some(key) {
                    slot.task_waker.register(waker);
                    registered = Some(key);
                }
                if slot.exiting.load(Ordering::Acquire)
                    && let Some(reason) = slot.state.lock().pending_exit.take()
                {
                    return Poll::Ready(reason);
                }
                match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
                    Ok(Poll::Ready(out)) => Poll::Ready(out.into_exit_reason()),
                    Ok(Poll::Pending) => Poll::Pending,
                    Err(panic) => Poll::Ready(crashed(panic)),
                }
            })
            .await
        } // The body future is dropped here, before anyone hears of the exit, so whatever
          // it holds (a wasm instance, a pool slot) is released first.
    };
    rt.finish(&slot, reason);
    rt.inner.table.recycle(slot);
}

fn crashed(panic: Box<dyn std::any::Any + Send>) -> ExitReason {
    let text = if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    };
    ExitReason::crashed(format!("panicked: {text}"))
}
