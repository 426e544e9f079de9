//! Hot reload: new versions of a component, and the in-place upgrade of the processes
//! running it.
//!
//! [`WasmNode::reload`](crate::WasmNode::reload) compiles and link-checks a new version on a blocking thread and
//! only then makes it the current version of its name; anything that fails leaves the
//! old version live. New spawns (and so supervisor restarts) look the current version
//! up when they start and hold it for their whole life, so whatever is already running
//! keeps the code it started with until it is upgraded.
//!
//! Every actor process is tracked here while it runs ([`LiveProcess`]: its component,
//! the version it runs and its upgrade requests). To upgrade it the host puts an
//! upgrade request in its mailbox, behind the messages already there; the guest takes
//! it with a plain `receive` and answers with `hand-over(state)`, which unwinds the
//! guest the way `exit(self)` does ([`HandOver`]). The process body (`run_process` in
//! `node.rs`) then drops that store and instantiates the current version in a fresh
//! store under the same rusm process, so pid, mailbox, links, monitors and registered
//! name are untouched and the messages that arrived meanwhile wait in the mailbox for
//! the new code. A process that does not hand over within the grace period is ended
//! by its own body with [`ExitReason::UpgradeTimeout`], whatever it is doing (a
//! spinning guest included), and its supervisor restarts it on the new version.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Poll, Waker};
use std::time::Duration;

use atomic_waker::AtomicWaker;
use parking_lot::Mutex;
use rusm_otp::{ExitReason, Payload, Pid, Runtime};
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

use crate::bindings::UpgradeRequest;
use crate::error::LoadError;
use crate::kind::ComponentKind;

/// The tag of the data message that carries an upgrade request. Its payload is a
/// host-only type ([`UpgradeSignal`]), so a guest cannot forge one by sending this tag,
/// and selective receives never take it.
pub(crate) const UPGRADE_TAG: u64 = u64::MAX;

/// How long a process gets to hand over before it is ended, unless
/// [`WasmNode::set_upgrade_grace`](crate::WasmNode::set_upgrade_grace) says otherwise.
pub const DEFAULT_UPGRADE_GRACE: Duration = Duration::from_secs(5);

/// How many events a slow [`WasmNode::reload_events`](crate::WasmNode::reload_events) receiver may fall behind.
const EVENT_CAPACITY: usize = 1024;

/// What a reload or an upgrade did; see [`WasmNode::reload_events`](crate::WasmNode::reload_events).
#[derive(Debug, Clone)]
pub struct ReloadEvent {
    /// The component name.
    pub component: String,
    /// For `Preparing` and `Failed`, the version that is live (and stays live on
    /// failure; 0 when none was loaded); for `Reloaded`, the new version; for
    /// `Upgraded`, the version the process now runs; for `UpgradeTimedOut`, the version
    /// it was asked to move to.
    pub version: u64,
    /// What happened.
    pub kind: ReloadEventKind,
}

/// The kinds of [`ReloadEvent`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ReloadEventKind {
    /// A new version is being compiled and link-checked.
    Preparing,
    /// The new version is current: new spawns use it, running processes are asked to
    /// upgrade.
    Reloaded,
    /// The new version was rejected; the old one stays live.
    Failed(ReloadError),
    /// A process handed over and now runs the new version under the same pid.
    Upgraded {
        /// The process.
        pid: Pid,
    },
    /// A process did not hand over within the grace period and was ended with
    /// `upgrade-timeout`.
    UpgradeTimedOut {
        /// The process.
        pid: Pid,
    },
}

/// Why a reload was refused. The old version stays live.
///
/// Cheap to clone: the same error is returned and carried by the `Failed` event.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// The new version does not load (not wasm, a core module, invalid, an import the
    /// host does not provide, no entry point...).
    #[error(transparent)]
    Load(Arc<LoadError>),
    /// The new version is another kind of component (an actor replaced by a command or
    /// an HTTP handler, say): the processes of the old one could not run it.
    #[error(
        "component {component:?} is loaded as {from:?} but the new version is {to:?}; a reload cannot change the kind of a component"
    )]
    KindChanged {
        /// The component name.
        component: String,
        /// The kind of the live version.
        from: ComponentKind,
        /// The kind of the rejected version.
        to: ComponentKind,
    },
    /// The new version of an HTTP handler serves another version of `wasi:http` (a
    /// 0.2 `incoming-handler` replaced by a 0.3 service, or the other way): the routes
    /// serving the old one (a fresh instance per request, or a pool of 0.2 instances)
    /// could not serve it.
    #[error(
        "component {component:?} serves wasi:http {from} but the new version serves wasi:http {to}; a reload cannot change the wasi:http version of a handler (load it under another name and route to that)"
    )]
    HttpVersionChanged {
        /// The component name.
        component: String,
        /// The version the live one serves (`0.2` or `0.3`).
        from: &'static str,
        /// The version the rejected one serves.
        to: &'static str,
    },
    /// Compiling the new version did not finish (the blocking task was cancelled or
    /// panicked).
    #[error("preparing component {component:?} did not finish: {detail}")]
    Aborted {
        /// The component name.
        component: String,
        /// What the blocking task reported.
        detail: String,
    },
}

impl From<LoadError> for ReloadError {
    fn from(error: LoadError) -> ReloadError {
        ReloadError::Load(Arc::new(error))
    }
}

impl ReloadError {
    /// The load failure, when the new version did not load.
    pub fn load_error(&self) -> Option<&LoadError> {
        match self {
            ReloadError::Load(error) => Some(error),
            _ => None,
        }
    }
}

/// A dependency declaration that would close a cycle; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("component {component:?} cannot depend on that: it would make the cycle {}", cycle.join(" -> "))]
pub struct DependencyCycle {
    /// The component whose dependencies were being declared.
    pub component: String,
    /// The cycle, starting and ending with `component`.
    pub cycle: Vec<String>,
}

/// How the upgrade of one process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpgradeOutcome {
    /// It handed over and runs the current version under the same pid.
    Upgraded,
    /// It did not hand over in time and was ended with `upgrade-timeout`.
    TimedOut,
    /// It ended for another reason before handing over.
    Ended,
}

/// The upgrade of one process during a reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessUpgrade {
    /// The component the process runs (the reloaded one or a dependent).
    pub component: String,
    /// The process.
    pub pid: Pid,
    /// How it ended.
    pub outcome: UpgradeOutcome,
}

/// What a successful [`WasmNode::reload`](crate::WasmNode::reload) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    /// The component name.
    pub component: String,
    /// Its new version (versions of a name count up from 1).
    pub version: u64,
    /// Every process asked to upgrade, in the order they were asked: the reloaded
    /// component's processes by pid, then each dependent's in dependency order.
    pub upgrades: Vec<ProcessUpgrade>,
}

/// The host-only payload of the upgrade request put in a process's mailbox.
#[derive(Debug)]
pub(crate) struct UpgradeSignal {
    /// Which request this is (see [`LiveState::requested`]).
    generation: u64,
    /// The version the process will run after handing over.
    version: u64,
}

/// A guest answered an upgrade request with `hand-over`: carried out of the guest as
/// a trap, like `exit(self)`, and turned into a new instance by the process body.
#[derive(Debug)]
pub(crate) struct HandOver {
    /// The state for the new version.
    pub(crate) state: Vec<u8>,
    /// The newest request this answers.
    pub(crate) generation: u64,
}

impl std::fmt::Display for HandOver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "process handed over {} bytes of state", self.state.len())
    }
}

impl std::error::Error for HandOver {}

/// How a tracked process stands.
#[derive(Debug, Clone, Copy, Default)]
struct LiveState {
    /// The version of its component it runs.
    version: u64,
    /// Upgrade requests made so far (each request's generation is the count after it).
    requested: u64,
    /// The newest request answered by a hand-over.
    completed: u64,
    /// When the oldest unanswered request runs out.
    deadline: Option<Instant>,
    /// Whether the process ended, and whether an upgrade timeout ended it.
    ended: Option<UpgradeOutcome>,
}

/// An actor process while it runs, as the upgrade machinery sees it.
pub(crate) struct LiveProcess {
    pid: Pid,
    component: Arc<str>,
    state: watch::Sender<LiveState>,
    /// The state handed to the current instance (`None` on a fresh start).
    handed_over: Mutex<Option<Vec<u8>>>,
}

impl LiveProcess {
    /// Record a new upgrade request; returns its generation.
    fn request(&self, grace: Duration) -> u64 {
        let mut generation = 0;
        self.state.send_modify(|s| {
            if s.requested == s.completed {
                s.deadline = Some(Instant::now() + grace);
            }
            s.requested += 1;
            generation = s.requested;
        });
        generation
    }

    /// Ask the process to move to `version`: record the request and put it in the
    /// mailbox. Returns the request's generation.
    fn ask(&self, rt: &Runtime, version: u64, grace: Duration) -> u64 {
        let generation = self.request(grace);
        rt.send_tagged(
            self.pid,
            UPGRADE_TAG,
            Payload::value(UpgradeSignal {
                generation,
                version,
            }),
        );
        generation
    }

    /// Resolves when an unanswered upgrade request has run out of time; never
    /// otherwise.
    async fn overdue(&self) {
        let mut rx = self.state.subscribe();
        loop {
            let deadline = {
                let s = *rx.borrow_and_update();
                if s.requested > s.completed {
                    s.deadline
                } else {
                    None
                }
            };
            let changed = match deadline {
                Some(at) => tokio::select! {
                    () = tokio::time::sleep_until(at) => return,
                    changed = rx.changed() => changed,
                },
                None => rx.changed().await,
            };
            if changed.is_err() {
                // The sender lives as long as `self`; this cannot happen while we hold it.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Waits until the request `generation` was answered or the process ended.
    async fn settled(&self, generation: u64) -> UpgradeOutcome {
        let mut rx = self.state.subscribe();
        let state = match rx
            .wait_for(|s| s.completed >= generation || s.ended.is_some())
            .await
        {
            Ok(state) => *state,
            Err(_) => *self.state.borrow(),
        };
        if state.completed >= generation {
            UpgradeOutcome::Upgraded
        } else {
            state.ended.unwrap_or(UpgradeOutcome::Ended)
        }
    }
}

/// Keeps a process in the live set while its body runs; dropping it (the body ended
/// or was dropped by a kill) takes it out and wakes whoever waits on its upgrade.
pub(crate) struct LiveGuard {
    upgrades: Arc<Upgrades>,
    process: Arc<LiveProcess>,
}

impl LiveGuard {
    /// Track a new process of `component`, which runs `version` while `current` is the
    /// component's current version (actors and handlers only: commands and HTTP
    /// handlers cannot hand over, so they finish on the version they started with).
    pub(crate) fn track(
        upgrades: &Arc<Upgrades>,
        rt: &Runtime,
        component: Arc<str>,
        version: u64,
        current: u64,
        pid: Pid,
    ) -> LiveGuard {
        let process = Arc::new(LiveProcess {
            pid,
            component,
            state: watch::Sender::new(LiveState {
                version,
                ..LiveState::default()
            }),
            handed_over: Mutex::new(None),
        });
        upgrades.live.lock().insert(pid, Arc::clone(&process));
        // A reload that installed a newer version between this spawn's lookup and now
        // did not see this process: ask it to upgrade as that reload would have.
        if current > version {
            process.ask(rt, current, upgrades.grace());
        }
        LiveGuard {
            upgrades: Arc::clone(upgrades),
            process,
        }
    }

    /// Resolves when an upgrade request ran out of time; see [`LiveProcess::overdue`].
    /// Raced against the guest's call, so it is polled at every wake of the process
    /// (every message): it polls its watch only when the watch woke it.
    pub(crate) fn overdue(&self) -> impl Future<Output = ()> + '_ {
        WhenWoken::new(self.process.overdue())
    }

    /// The process was ended for not handing over in time; `version` is its
    /// component's current version.
    pub(crate) fn timed_out(&self, version: u64) {
        let event = ReloadEvent {
            component: self.process.component.to_string(),
            version,
            kind: ReloadEventKind::UpgradeTimedOut {
                pid: self.process.pid,
            },
        };
        // The event goes out before a waiting reload can see the change (it is sent
        // while the state is locked), so a reload's events stay in order.
        self.process.state.send_modify(|s| {
            s.ended = Some(UpgradeOutcome::TimedOut);
            self.upgrades.emit(event);
        });
    }

    /// The process handed over and a new instance of `version` is about to start with
    /// `state`.
    pub(crate) fn upgraded(&self, version: u64, hand_over: HandOver) {
        *self.process.handed_over.lock() = Some(hand_over.state);
        let grace = self.upgrades.grace();
        let event = ReloadEvent {
            component: self.process.component.to_string(),
            version,
            kind: ReloadEventKind::Upgraded {
                pid: self.process.pid,
            },
        };
        // As in `timed_out`: the event first, then waiters see the upgrade.
        self.process.state.send_modify(|s| {
            s.version = version;
            s.completed = s.completed.max(hand_over.generation);
            // A request that came in after the hand-over gets a full grace period.
            s.deadline = (s.requested > s.completed).then(|| Instant::now() + grace);
            self.upgrades.emit(event);
        });
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.upgrades.live.lock().remove(&self.process.pid);
        self.process.state.send_modify(|s| {
            s.ended.get_or_insert(UpgradeOutcome::Ended);
        });
    }
}

/// Who depends on whom, as the application declared it. Always acyclic.
#[derive(Default)]
pub(crate) struct Dependencies {
    depends_on: BTreeMap<String, BTreeSet<String>>,
}

impl Dependencies {
    pub(crate) fn set(
        &mut self,
        component: &str,
        depends_on: BTreeSet<String>,
    ) -> Result<(), DependencyCycle> {
        let mut trial = self.depends_on.clone();
        trial.insert(component.to_owned(), depends_on);
        if let Some(cycle) = cycle_through(&trial, component) {
            return Err(DependencyCycle {
                component: component.to_owned(),
                cycle,
            });
        }
        self.depends_on = trial;
        Ok(())
    }

    /// `component` first, then every component that depends on it directly or not,
    /// each after all of its own dependencies among them; ties go by name.
    pub(crate) fn upgrade_order(&self, component: &str) -> Vec<String> {
        // Everything that reaches `component` through depends-on edges.
        let mut members = BTreeSet::from([component.to_owned()]);
        loop {
            let before = members.len();
            for (dependent, deps) in &self.depends_on {
                if deps.iter().any(|d| members.contains(d)) {
                    members.insert(dependent.clone());
                }
            }
            if members.len() == before {
                break;
            }
        }
        let mut order = Vec::with_capacity(members.len());
        let mut placed = BTreeSet::new();
        while placed.len() < members.len() {
            let ready = members.iter().find(|m| {
                !placed.contains(*m)
                    && self.depends_on.get(*m).is_none_or(|deps| {
                        deps.iter()
                            .all(|d| !members.contains(d) || placed.contains(d))
                    })
            });
            // The graph is acyclic, so something is always ready.
            let Some(next) = ready.cloned() else { break };
            placed.insert(next.clone());
            order.push(next);
        }
        order
    }
}

/// A path `component -> ... -> component` along depends-on edges, if there is one.
fn cycle_through(
    graph: &BTreeMap<String, BTreeSet<String>>,
    component: &str,
) -> Option<Vec<String>> {
    fn walk(
        graph: &BTreeMap<String, BTreeSet<String>>,
        target: &str,
        at: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in graph.get(at).into_iter().flatten() {
            path.push(next.clone());
            if next == target {
                return true;
            }
            if seen.insert(next.clone()) && walk(graph, target, next, path, seen) {
                return true;
            }
            path.pop();
        }
        false
    }
    let mut path = vec![component.to_owned()];
    walk(graph, component, component, &mut path, &mut BTreeSet::new()).then_some(path)
}

/// The reload and upgrade state of a node.
pub(crate) struct Upgrades {
    /// Every running actor process, by pid.
    live: Mutex<HashMap<Pid, Arc<LiveProcess>>>,
    /// One lock per component name, held for a whole reload, so reloads of one name
    /// run one at a time in the order they asked.
    pub(crate) reload_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    pub(crate) dependencies: Mutex<Dependencies>,
    pub(crate) grace: Mutex<Duration>,
    pub(crate) events: broadcast::Sender<ReloadEvent>,
}

impl Upgrades {
    pub(crate) fn new() -> Upgrades {
        Upgrades {
            live: Mutex::new(HashMap::new()),
            reload_locks: Mutex::new(HashMap::new()),
            dependencies: Mutex::new(Dependencies::default()),
            grace: Mutex::new(DEFAULT_UPGRADE_GRACE),
            events: broadcast::Sender::new(EVENT_CAPACITY),
        }
    }

    pub(crate) fn grace(&self) -> Duration {
        *self.grace.lock()
    }

    pub(crate) fn emit(&self, event: ReloadEvent) {
        match &event.kind {
            ReloadEventKind::Preparing => {
                tracing::info!(component = %event.component, live = event.version, "preparing a new version");
            }
            ReloadEventKind::Reloaded => {
                tracing::info!(component = %event.component, version = event.version, "component reloaded");
            }
            ReloadEventKind::Failed(error) => {
                tracing::warn!(component = %event.component, live = event.version, %error, "reload failed; the old version stays live");
            }
            ReloadEventKind::Upgraded { pid } => {
                tracing::info!(component = %event.component, version = event.version, %pid, "process upgraded in place");
            }
            ReloadEventKind::UpgradeTimedOut { pid } => {
                tracing::warn!(component = %event.component, version = event.version, %pid, "process did not hand over in time; ended with upgrade-timeout");
            }
        }
        // No receiver is fine: nobody is watching.
        let _ = self.events.send(event);
    }

    fn process(&self, pid: Pid) -> Option<Arc<LiveProcess>> {
        self.live.lock().get(&pid).cloned()
    }

    /// The newest unanswered upgrade request of `pid`, if any.
    pub(crate) fn pending(&self, pid: Pid) -> Option<u64> {
        let process = self.process(pid)?;
        let s = *process.state.borrow();
        (s.requested > s.completed).then_some(s.requested)
    }

    /// The state handed to `pid`'s current instance.
    pub(crate) fn handed_over(&self, pid: Pid) -> Option<Vec<u8>> {
        self.process(pid)?.handed_over.lock().clone()
    }

    /// What a guest's `receive` returns for an upgrade signal found in `pid`'s mailbox:
    /// the request when it is still unanswered, `None` (drop it) when a hand-over
    /// already answered it.
    pub(crate) fn deliverable(&self, pid: Pid, signal: &UpgradeSignal) -> Option<UpgradeRequest> {
        let process = self.process(pid)?;
        let s = *process.state.borrow();
        (signal.generation > s.completed).then_some(UpgradeRequest {
            version: signal.version,
        })
    }

    /// Ask every live process of `component` to move to `version` and wait until each
    /// handed over, timed out or ended.
    pub(crate) async fn upgrade_processes(
        &self,
        rt: &Runtime,
        component: &str,
        version: u64,
    ) -> Vec<ProcessUpgrade> {
        let mut targets: Vec<Arc<LiveProcess>> = self
            .live
            .lock()
            .values()
            .filter(|p| &*p.component == component)
            .cloned()
            .collect();
        targets.sort_by_key(|p| p.pid);
        let grace = self.grace();
        let requests: Vec<(Arc<LiveProcess>, u64)> = targets
            .into_iter()
            .map(|process| {
                let generation = process.ask(rt, version, grace);
                (process, generation)
            })
            .collect();
        let mut outcomes = Vec::with_capacity(requests.len());
        for (process, generation) in requests {
            let outcome = process.settled(generation).await;
            outcomes.push(ProcessUpgrade {
                component: component.to_owned(),
                pid: process.pid,
                outcome,
            });
        }
        outcomes
    }
}

impl Upgrades {
    /// The running actor processes of a component, with the version each runs, sorted
    /// by pid.
    pub(crate) fn processes_of(&self, component: &str) -> Vec<(Pid, u64)> {
        let mut processes: Vec<(Pid, u64)> = self
            .live
            .lock()
            .values()
            .filter(|p| &*p.component == component)
            .map(|p| (p.pid, p.state.borrow().version))
            .collect();
        processes.sort();
        processes
    }
}

/// The upgrade signal inside a message, if it is one.
pub(crate) fn signal_of(message: &rusm_otp::Message) -> Option<&UpgradeSignal> {
    match message {
        rusm_otp::Message::Data(data) if data.tag == UPGRADE_TAG => {
            data.payload.downcast_ref::<UpgradeSignal>()
        }
        _ => None,
    }
}

/// How one instance of a process ended.
pub(crate) enum InstanceEnd {
    /// Its entry point returned or failed (`None`: the process's deadline passed).
    Returned(Option<wasmtime::Result<Result<(), String>>>),
    /// An upgrade request ran out of time; the instance was dropped.
    Overdue,
}

/// A future polled only when its own waker fired since its last poll (and at the
/// first): beside a busier future in a `select!`, what it costs a poll that is not
/// for it is a swap and a waker registration.
struct WhenWoken<F> {
    inner: Pin<Box<F>>,
    wake: Arc<WakeFlag>,
}

/// The waker [`WhenWoken`] gives its future: sets the flag, then wakes the task.
struct WakeFlag {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl std::task::Wake for WakeFlag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl<F: Future> WhenWoken<F> {
    fn new(inner: F) -> WhenWoken<F> {
        WhenWoken {
            inner: Box::pin(inner),
            wake: Arc::new(WakeFlag {
                woken: AtomicBool::new(true),
                task: AtomicWaker::new(),
            }),
        }
    }
}

impl<F: Future> Future for WhenWoken<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<F::Output> {
        // Registered before the flag is read: a wake in between sets the flag, and one
        // after it wakes the task for another poll.
        self.wake.task.register(cx.waker());
        if !self.wake.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let waker = Waker::from(Arc::clone(&self.wake));
        self.inner
            .as_mut()
            .poll(&mut std::task::Context::from_waker(&waker))
    }
}

/// Run one instance's entry point `run` under the process's deadline and, for a
/// tracked process, its upgrade grace period.
pub(crate) async fn run_instance(
    run: impl Future<Output = wasmtime::Result<Result<(), String>>>,
    deadline: Option<Instant>,
    live: Option<&LiveGuard>,
) -> InstanceEnd {
    let limited = async {
        match deadline {
            None => Some(run.await),
            Some(at) => tokio::time::timeout_at(at, run).await.ok(),
        }
    };
    match live {
        None => InstanceEnd::Returned(limited.await),
        Some(live) => tokio::select! {
            biased;
            outcome = limited => InstanceEnd::Returned(outcome),
            () = live.overdue() => InstanceEnd::Overdue,
        },
    }
}

/// Why a process that handed over could not continue: the reason it ends with.
pub(crate) fn cannot_continue(component: &str, why: &str) -> ExitReason {
    ExitReason::crashed(format!("cannot upgrade component {component:?}: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_future_beside_a_busier_one_is_polled_only_when_its_waker_fired() {
        use std::sync::atomic::AtomicUsize;
        use std::task::Context;
        // Pending until released; counts its polls and keeps the last waker.
        struct Probe {
            polls: Arc<AtomicUsize>,
            waker: Arc<Mutex<Option<Waker>>>,
            released: Arc<AtomicBool>,
        }
        impl Future for Probe {
            type Output = ();
            fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
                self.polls.fetch_add(1, Ordering::Relaxed);
                if self.released.load(Ordering::Relaxed) {
                    return Poll::Ready(());
                }
                *self.waker.lock() = Some(cx.waker().clone());
                Poll::Pending
            }
        }
        let (polls, waker, released) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(Mutex::new(None::<Waker>)),
            Arc::new(AtomicBool::new(false)),
        );
        let mut fut = WhenWoken::new(Probe {
            polls: Arc::clone(&polls),
            waker: Arc::clone(&waker),
            released: Arc::clone(&released),
        });
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..5 {
            assert!(Pin::new(&mut fut).poll(&mut cx).is_pending());
        }
        assert_eq!(
            polls.load(Ordering::Relaxed),
            1,
            "polled once, at the first"
        );
        released.store(true, Ordering::Relaxed);
        assert!(
            Pin::new(&mut fut).poll(&mut cx).is_pending(),
            "not polled again before its waker fires"
        );
        waker.lock().take().unwrap().wake();
        assert!(Pin::new(&mut fut).poll(&mut cx).is_ready());
        assert_eq!(polls.load(Ordering::Relaxed), 2);
    }

    fn deps(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn dependents_come_after_their_dependencies() {
        let mut graph = Dependencies::default();
        graph.set("web", deps(&["cache", "db"])).unwrap();
        graph.set("cache", deps(&["db"])).unwrap();
        graph.set("report", deps(&["web"])).unwrap();
        graph.set("other", deps(&["elsewhere"])).unwrap();
        assert_eq!(graph.upgrade_order("db"), ["db", "cache", "web", "report"]);
        assert_eq!(graph.upgrade_order("cache"), ["cache", "web", "report"]);
        assert_eq!(graph.upgrade_order("report"), ["report"]);
        assert_eq!(graph.upgrade_order("unknown"), ["unknown"]);
    }

    #[test]
    fn cycles_are_refused_and_change_nothing() {
        let mut graph = Dependencies::default();
        graph.set("a", deps(&["b"])).unwrap();
        graph.set("b", deps(&["c"])).unwrap();
        let err = graph.set("c", deps(&["a"])).unwrap_err();
        assert_eq!(err.cycle, ["c", "a", "b", "c"]);
        assert_eq!(
            err.to_string(),
            "component \"c\" cannot depend on that: it would make the cycle c -> a -> b -> c"
        );
        assert_eq!(graph.upgrade_order("c"), ["c", "b", "a"]);
        let err = graph.set("d", deps(&["d"])).unwrap_err();
        assert_eq!(err.cycle, ["d", "d"]);
        // Redeclaring without the edge that closed the cycle is fine.
        graph.set("c", deps(&[])).unwrap();
    }
}
