//! Supervisors: processes that start children, watch them and restart them.
//!
//! A supervisor is an ordinary process (see [`supervise`]) that traps exits, starts its
//! children in order, and when one ends applies its [`Strategy`] and each child's
//! [`Restart`] type. If children are restarted more than `max_restarts` times within
//! `period`, the supervisor stops every child (in reverse start order) and exits with
//! [`ExitReason::MaxRestartIntensity`], leaving the decision to its own supervisor.
//!
//! Stopping always wins over restarting, whatever the intensity allows: while the node
//! is shutting down a supervisor restarts nothing (the node would refuse the spawn),
//! and before each restart it takes a waiting stop signal from its parent or the node.
//! A supervisor making 10 or more restarts within a second logs a `restart storm`
//! warning, at most once a second; [`Runtime::supervisor_restarts`] counts each live
//! supervisor's restarts.
//!
//! [`Runtime::supervisor_restarts`]: crate::Runtime::supervisor_restarts
//!
//! ```
//! use std::time::Duration;
//! use rusm_otp::{Runtime, supervisor::{ChildSpec, Strategy, SupervisorSpec, supervise}};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let rt = Runtime::new();
//! let spec = SupervisorSpec::new(Strategy::OneForOne)
//!     .intensity(3, Duration::from_secs(5))
//!     .child(ChildSpec::worker("ticker", |ctx| async move {
//!         let _ = ctx.register("ticker");
//!         loop { ctx.recv().await; }
//!     }));
//! let sup = rt.spawn(move |ctx| supervise(ctx, spec));
//! # let _ = sup;
//! # rt.shutdown(Duration::from_secs(1)).await;
//! # });
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::Pid;
use crate::context::Context;
use crate::message::Message;
use crate::reason::{ExitReason, IntoExitReason};

/// Which children are restarted when one ends and must be restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Only the child that ended.
    OneForOne,
    /// Every child: the others are stopped (in reverse start order), then all are
    /// started again in order.
    OneForAll,
    /// The child that ended and every child started after it.
    RestForOne,
}

/// When a child is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// Always.
    Permanent,
    /// Only after an abnormal exit (anything but `normal` or `shutdown`).
    Transient,
    /// Never; the child is forgotten once it ends.
    Temporary,
}

/// How a child is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// Kill it at once.
    BrutalKill,
    /// Send it a `shutdown` exit signal and wait this long for it to end; then kill it.
    Timeout(Duration),
    /// Send it a `shutdown` exit signal and wait as long as it takes (for supervisors).
    Infinity,
}

/// How a child is started: called with the supervisor's context, returns the child's
/// pid. The supervisor links to the child itself (a `spawn_link` is fine too).
pub type StartFn = Arc<dyn Fn(&Context) -> Result<Pid, ExitReason> + Send + Sync>;

/// How a child is started when starting it means waiting, as a spawn on another node
/// does (see [`ChildSpec::remote`]): the supervisor waits for the future before it
/// starts the next child.
pub type AsyncStartFn = Arc<
    dyn for<'a> Fn(
            &'a Context,
        )
            -> std::pin::Pin<Box<dyn Future<Output = Result<Pid, ExitReason>> + Send + 'a>>
        + Send
        + Sync,
>;

/// A child's start, at once or awaited.
#[derive(Clone)]
enum Start {
    Now(StartFn),
    Awaited(AsyncStartFn),
}

/// A child of a supervisor.
#[derive(Clone)]
pub struct ChildSpec {
    /// A name for the child, unique within its supervisor; used in logs.
    pub id: String,
    start: Start,
    /// When the child is restarted.
    pub restart: Restart,
    /// How the child is stopped.
    pub shutdown: Shutdown,
    /// When set, the child counts as started only once it calls [`init_done`]; the
    /// supervisor waits up to this long before starting the next child.
    pub await_init: Option<Duration>,
}

impl fmt::Debug for ChildSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildSpec")
            .field("id", &self.id)
            .field("restart", &self.restart)
            .field("shutdown", &self.shutdown)
            .finish_non_exhaustive()
    }
}

impl ChildSpec {
    /// A permanent child started by `start`, stopped with a 5 second shutdown timeout.
    pub fn new(
        id: impl Into<String>,
        start: impl Fn(&Context) -> Result<Pid, ExitReason> + Send + Sync + 'static,
    ) -> ChildSpec {
        ChildSpec {
            id: id.into(),
            start: Start::Now(Arc::new(start)),
            restart: Restart::Permanent,
            shutdown: Shutdown::Timeout(Duration::from_secs(5)),
            await_init: None,
        }
    }

    /// A permanent child whose start is awaited (see [`AsyncStartFn`]).
    pub fn awaited(
        id: impl Into<String>,
        start: impl for<'a> Fn(
            &'a Context,
        ) -> std::pin::Pin<
            Box<dyn Future<Output = Result<Pid, ExitReason>> + Send + 'a>,
        > + Send
        + Sync
        + 'static,
    ) -> ChildSpec {
        ChildSpec {
            start: Start::Awaited(Arc::new(start)),
            ..ChildSpec::new(id, |_| Err(ExitReason::NoProc))
        }
    }

    /// A permanent child spawned on another node of the cluster, linked to its
    /// supervisor: on the first of `nodes` that takes it, tried in order at every
    /// start and restart (this node's own name spawns here). So when the child's
    /// node goes down, the supervisor hears `noconnection` and starts it again on the
    /// first node of the list still up. It fails to start only when every node
    /// refuses, with a reason naming each refusal. `spawn.link` is always set;
    /// [`ChildSpec::await_init`] does not apply (the child's parent is not here).
    pub fn remote<S: Into<String>>(
        id: impl Into<String>,
        nodes: impl IntoIterator<Item = S>,
        spawn: crate::RemoteSpawn,
    ) -> ChildSpec {
        let nodes: Arc<[String]> = nodes.into_iter().map(Into::into).collect();
        let id = id.into();
        let child = id.clone();
        ChildSpec::awaited(id, move |ctx| {
            let nodes = nodes.clone();
            let spawn = crate::RemoteSpawn {
                link: true,
                monitor: false,
                ..spawn.clone()
            };
            let child = child.clone();
            Box::pin(async move {
                let mut refusals = Vec::new();
                for node in nodes.iter() {
                    match ctx.spawn_on(node, spawn.clone()).await {
                        Ok(spawned) => return Ok(spawned.pid),
                        Err(why) => {
                            tracing::warn!(supervisor = %ctx.pid(), child = %child, node = %node, %why, "could not start the child on this node");
                            refusals.push(format!("{node}: {why}"));
                        }
                    }
                }
                Err(ExitReason::custom(format!(
                    "no node could start {:?} ({})",
                    spawn.component,
                    refusals.join("; ")
                )))
            })
        })
    }

    /// A permanent child running `body` as a native process.
    pub fn worker<F, Fut>(id: impl Into<String>, body: F) -> ChildSpec
    where
        F: Fn(Context) -> Fut + Send + Sync + 'static,
        Fut: Future + Send + 'static,
        Fut::Output: IntoExitReason,
    {
        let body = Arc::new(body);
        ChildSpec::new(id, move |ctx| {
            let body = body.clone();
            Ok(ctx.spawn_link(move |child| body(child)))
        })
    }

    /// A child that is itself a supervisor; stopped with [`Shutdown::Infinity`], and
    /// started synchronously: it counts as started once all its own children have.
    pub fn supervisor(id: impl Into<String>, spec: SupervisorSpec) -> ChildSpec {
        let mut child = ChildSpec::new(id, move |ctx| {
            let spec = spec.clone();
            Ok(ctx.spawn_link(move |child| supervise(child, spec)))
        });
        child.shutdown = Shutdown::Infinity;
        child.await_init = Some(Duration::from_secs(24 * 3600));
        child
    }

    /// Set the restart type.
    pub fn restart(mut self, restart: Restart) -> ChildSpec {
        self.restart = restart;
        self
    }

    /// Set how the child is stopped.
    pub fn shutdown(mut self, shutdown: Shutdown) -> ChildSpec {
        self.shutdown = shutdown;
        self
    }

    /// Start the child synchronously, as Erlang's `start_link` does: the supervisor waits
    /// (up to `timeout`) for the child to call [`init_done`] before it starts the next
    /// child, so later children can rely on earlier ones being initialised. A child that
    /// exits or times out first has failed to start.
    pub fn await_init(mut self, timeout: Duration) -> ChildSpec {
        self.await_init = Some(timeout);
        self
    }
}

/// The tag of the start acknowledgement [`init_done`] sends. Tags from `u64::MAX - 255`
/// up are reserved for the runtime.
pub const INIT_DONE_TAG: crate::Tag = u64::MAX;

/// Tell the supervisor (this process's parent) that initialisation is complete; see
/// [`ChildSpec::await_init`]. Harmless when nobody waits.
pub fn init_done(ctx: &Context) {
    if let Some(parent) = ctx.parent() {
        ctx.send_tagged(parent, INIT_DONE_TAG, crate::Payload::value(ctx.pid()));
    }
}

/// A supervisor's configuration.
#[derive(Debug, Clone)]
pub struct SupervisorSpec {
    /// Which children restart together.
    pub strategy: Strategy,
    /// The most restarts allowed within `period`; one more and the supervisor gives up.
    pub max_restarts: u32,
    /// The window `max_restarts` is counted in.
    pub period: Duration,
    /// The children, in start order.
    pub children: Vec<ChildSpec>,
}

impl SupervisorSpec {
    /// A supervisor with no children and Erlang's default intensity (1 restart in 5 s).
    pub fn new(strategy: Strategy) -> SupervisorSpec {
        SupervisorSpec {
            strategy,
            max_restarts: 1,
            period: Duration::from_secs(5),
            children: Vec::new(),
        }
    }

    /// Allow at most `max_restarts` restarts within `period`.
    pub fn intensity(mut self, max_restarts: u32, period: Duration) -> SupervisorSpec {
        self.max_restarts = max_restarts;
        self.period = period;
        self
    }

    /// Add a child (started after those added before).
    pub fn child(mut self, child: ChildSpec) -> SupervisorSpec {
        self.children.push(child);
        self
    }
}

struct Child {
    spec: ChildSpec,
    pid: Option<Pid>,
    /// Started at least once, so the next start is a restart.
    started: bool,
}

/// The body of a supervisor process: spawn it with `rt.spawn(|ctx| supervise(ctx, spec))`
/// or as a child with [`ChildSpec::supervisor`].
///
/// It ends when its parent (or the node, at shutdown) sends it an exit signal — after
/// stopping its children in reverse start order — or when the restart intensity is
/// exceeded, or when a child fails to start at first.
pub async fn supervise(ctx: Context, spec: SupervisorSpec) -> ExitReason {
    ctx.trap_exit(true);
    let mut sup = Supervisor {
        children: spec
            .children
            .into_iter()
            .map(|spec| Child {
                spec,
                pid: None,
                started: false,
            })
            .collect(),
        strategy: spec.strategy,
        max_restarts: spec.max_restarts,
        period: spec.period,
        restarts: VecDeque::new(),
        storm: StormWatch::new(),
    };
    // Counted per supervisor while it lives ([`Runtime::supervisor_restarts`]).
    let _counted = ctx.runtime().count_supervisor(&ctx);
    let all = 0..sup.children.len();
    let mut failed: VecDeque<(usize, ExitReason)> = VecDeque::new();
    match sup.start_range(&ctx, all).await {
        Ok(ended) => failed.extend(ended),
        Err((id, reason)) => {
            tracing::error!(supervisor = %ctx.pid(), child = %id, %reason, "child failed to start");
            sup.stop_range(&ctx, 0..sup.children.len()).await;
            return reason;
        }
    }
    init_done(&ctx);
    loop {
        let (idx, reason) = match failed.pop_front() {
            Some(event) => {
                // Children that end as they start never leave the mailbox a chance:
                // look for the signal to stop before restarting again.
                if let Some(reason) = stop_requested(&ctx) {
                    sup.stop_range(&ctx, 0..sup.children.len()).await;
                    return reason;
                }
                event
            }
            None => {
                let Message::Exit(signal) = ctx.recv().await else {
                    continue;
                };
                match sup.children.iter().position(|c| c.pid == Some(signal.from)) {
                    Some(idx) => (idx, signal.reason),
                    None if Some(signal.from) == ctx.parent() || signal.from == Pid::NODE => {
                        sup.stop_range(&ctx, 0..sup.children.len()).await;
                        return signal.reason;
                    }
                    None => continue,
                }
            }
        };
        sup.children[idx].pid = None;
        let child = &sup.children[idx].spec;
        let restart = match child.restart {
            Restart::Permanent => true,
            Restart::Transient => !reason.is_clean_stop(),
            Restart::Temporary => false,
        };
        if !restart {
            tracing::debug!(supervisor = %ctx.pid(), child = %child.id, %reason, "child ended");
            if child.restart == Restart::Temporary {
                sup.children.remove(idx);
            }
            continue;
        }
        if ctx.runtime().is_shutting_down() {
            // The node starts nothing any more, and this supervisor's own stop signal
            // is on its way: restarting would only be refused, again and again.
            tracing::debug!(supervisor = %ctx.pid(), child = %child.id, %reason, "child ended; not restarted: the node is stopping");
            continue;
        }
        tracing::info!(supervisor = %ctx.pid(), child = %child.id, %reason, "child ended; restarting");
        sup.storm.note(&ctx);
        // A storm of restarts must not hold the worker thread: give the scheduler (and
        // a kill of this supervisor) its turn once the task's budget is spent.
        tokio::task::consume_budget().await;
        if !sup.note_restart() {
            tracing::error!(supervisor = %ctx.pid(), "reached max restart intensity; giving up");
            sup.stop_range(&ctx, 0..sup.children.len()).await;
            return ExitReason::MaxRestartIntensity;
        }
        let range = match sup.strategy {
            Strategy::OneForOne => idx..idx + 1,
            Strategy::OneForAll => 0..sup.children.len(),
            Strategy::RestForOne => idx..sup.children.len(),
        };
        sup.stop_range(&ctx, range.clone()).await;
        // Temporary children stopped on a sibling's account are not started again.
        let mut range = range;
        let mut i = range.start;
        while i < range.end {
            if i != idx && sup.children[i].spec.restart == Restart::Temporary {
                sup.children.remove(i);
                range.end -= 1;
            } else {
                i += 1;
            }
        }
        let idx_after = idx.min(sup.children.len());
        match sup.start_range(&ctx, range).await {
            Ok(ended) => failed.extend(ended),
            Err((id, reason)) => {
                let at = sup
                    .children
                    .iter()
                    .position(|c| c.spec.id == id)
                    .unwrap_or(idx_after);
                failed.push_back((at, reason));
            }
        }
    }
}

/// Take a stop signal (an exit signal from the parent or the node) if one is waiting.
fn stop_requested(ctx: &Context) -> Option<ExitReason> {
    let parent = ctx.parent();
    let is_stop = |m: &Message| matches!(m, Message::Exit(sig) if Some(sig.from) == parent || sig.from == Pid::NODE);
    match ctx.try_recv_match(is_stop) {
        Some(Message::Exit(signal)) => Some(signal.reason),
        _ => None,
    }
}

/// Restarts within one second at which a supervisor warns of a restart storm.
const STORM_RESTARTS: u64 = 10;

/// Counts restarts in windows of a second, to warn (at most once a window) of storms.
struct StormWatch {
    window_start: Instant,
    in_window: u64,
    total: u64,
}

impl StormWatch {
    fn new() -> StormWatch {
        StormWatch {
            window_start: Instant::now(),
            in_window: 0,
            total: 0,
        }
    }

    /// Count a restart; warn when the window that just ended (a second or more long)
    /// had restarts at a storm's rate.
    fn note(&mut self, ctx: &Context) {
        let now = Instant::now();
        let elapsed = now.duration_since(self.window_start);
        if elapsed >= Duration::from_secs(1) {
            let per_second = self.in_window as f64 / elapsed.as_secs_f64();
            if per_second >= STORM_RESTARTS as f64 {
                tracing::warn!(
                    supervisor = %ctx.pid(),
                    restarts = self.in_window,
                    total = self.total,
                    "restart storm: {} restarts in the last {:.1}s",
                    self.in_window,
                    elapsed.as_secs_f64()
                );
            }
            self.window_start = now;
            self.in_window = 0;
        }
        self.in_window += 1;
        self.total += 1;
    }
}

struct Supervisor {
    children: Vec<Child>,
    strategy: Strategy,
    max_restarts: u32,
    period: Duration,
    restarts: VecDeque<Instant>,
    storm: StormWatch,
}

impl Supervisor {
    /// Record a restart; false if that exceeds the intensity.
    fn note_restart(&mut self) -> bool {
        let now = Instant::now();
        self.restarts.push_back(now);
        while self
            .restarts
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.period)
        {
            self.restarts.pop_front();
        }
        self.restarts.len() <= self.max_restarts as usize
    }

    /// Start the children in `range` that are not running, in order. Returns the
    /// children that started but ended before this supervisor could link to them
    /// (index and reason), for the caller to handle like any other child exit.
    async fn start_range(
        &mut self,
        ctx: &Context,
        range: Range<usize>,
    ) -> Result<Vec<(usize, ExitReason)>, (String, ExitReason)> {
        let mut ended = Vec::new();
        let first = range.start;
        for (offset, child) in self.children[range].iter_mut().enumerate() {
            if child.pid.is_some() {
                continue;
            }
            let id = || child.spec.id.clone();
            let started = match &child.spec.start {
                Start::Now(start) => start(ctx),
                Start::Awaited(start) => start(ctx).await,
            };
            let pid = started.map_err(|reason| (id(), reason))?;
            // A child started with `spawn_link` (as every `ChildSpec` helper does) is
            // linked already, and its exit signal comes as a message whenever it
            // ends. Otherwise link now.
            let linked = ctx.slot.state.lock().links.contains(&pid);
            if !linked && let Err(_noproc) = ctx.link(pid) {
                // Ended before we could link. If it was linked by its start and its
                // exit signal is already here, it did start and ended at once: an
                // ordinary child exit (restarted as its restart type says), unless it
                // was to acknowledge its init first. Without a signal, it never ran.
                let signal = ctx
                    .recv_match_timeout(
                        |m| matches!(m, Message::Exit(sig) if sig.from == pid),
                        Duration::ZERO,
                    )
                    .await;
                let Some(Message::Exit(signal)) = signal else {
                    return Err((id(), ExitReason::NoProc));
                };
                if child.spec.await_init.is_some() {
                    return Err((id(), signal.reason));
                }
                tracing::debug!(supervisor = %ctx.pid(), child = %child.spec.id, %pid, reason = %signal.reason, "child ended as it started");
                if child.started {
                    ctx.runtime().note_restart(ctx.pid(), &child.spec.id, pid);
                }
                child.started = true;
                ended.push((first + offset, signal.reason));
                continue;
            }
            if let Some(timeout) = child.spec.await_init {
                let answer = ctx
                    .recv_match_timeout(
                        |m| match m {
                            Message::Data(d) => {
                                d.tag == INIT_DONE_TAG
                                    && d.payload.downcast_ref::<Pid>() == Some(&pid)
                            }
                            Message::Exit(sig) => sig.from == pid,
                            _ => false,
                        },
                        timeout,
                    )
                    .await;
                match answer {
                    Some(Message::Data(_)) => {}
                    Some(Message::Exit(sig)) => return Err((id(), sig.reason)),
                    _ => {
                        ctx.unlink(pid);
                        ctx.kill(pid);
                        return Err((
                            id(),
                            ExitReason::custom("child did not finish init in time"),
                        ));
                    }
                }
            }
            tracing::debug!(supervisor = %ctx.pid(), child = %child.spec.id, %pid, "child started");
            child.pid = Some(pid);
            if child.started {
                ctx.runtime().note_restart(ctx.pid(), &child.spec.id, pid);
            }
            child.started = true;
        }
        Ok(ended)
    }

    /// Stop the running children in `range`, in reverse order.
    async fn stop_range(&mut self, ctx: &Context, range: Range<usize>) {
        for child in self.children[range].iter_mut().rev() {
            if let Some(pid) = child.pid.take() {
                stop_child(ctx, pid, child.spec.shutdown).await;
            }
        }
    }
}

async fn stop_child(ctx: &Context, pid: Pid, shutdown: Shutdown) {
    ctx.unlink(pid);
    let monitor = ctx.monitor(pid);
    let is_down = |m: &Message| matches!(m, Message::Down(down) if down.monitor == monitor);
    match shutdown {
        Shutdown::BrutalKill => ctx.kill(pid),
        Shutdown::Timeout(grace) => {
            ctx.exit(pid, ExitReason::Shutdown);
            if ctx.recv_match_timeout(is_down, grace).await.is_some() {
                return;
            }
            tracing::warn!(supervisor = %ctx.pid(), child = %pid, "child ignored shutdown; killing it");
            ctx.kill(pid);
        }
        Shutdown::Infinity => ctx.exit(pid, ExitReason::Shutdown),
    }
    ctx.recv_match(is_down).await;
}
