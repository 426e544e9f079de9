//! Preemption: the thread that advances a node's epoch, and the marks that tell it
//! when a guest has run too long.
//!
//! wasmtime interrupts a guest when the engine's epoch passes the store's deadline
//! (one epoch ahead: every process yields at the first epoch change it sees). Ticking
//! the epoch at a fixed rate costs every running guest a yield per tick whether it runs
//! long or not, so a short tick buys fairness with messaging speed. Instead, with
//! [`Preemption::Slice`] (the default), every poll of a guest call marks its thread as
//! running guest code ([`in_guest`]: two plain stores to a slot only that thread
//! writes), and the thread here looks at them: the epoch advances only when some
//! thread has been in the same guest poll since the previous look. While guests keep
//! running long the looks are half a slice apart, so a guest is preempted after between
//! half a slice and a whole one; after eight looks without an overrun they are a slice
//! apart (half the wake-ups), and the first guest to run long again is preempted after
//! between one slice and two ([`Cadence`]). A node whose guests all return within the
//! slice never sees the epoch move.
//!
//! A look that finds no guest poll running and none begun since the previous look puts
//! the thread to sleep until the next poll begins (the first poll to begin wakes it), so
//! a node whose processes all wait costs no wake-ups at all. That hand-off is an
//! asymmetric Dekker protocol: a poll's start stores its mark and then reads whether a
//! looker sleeps, with only a compiler fence between them; the looker announces its
//! sleep, then makes every running thread of the process execute a full barrier
//! (`membarrier(2)`, private expedited) before it reads the marks again. Either the
//! poll's start sees the announcement and wakes the looker, or the looker sees the
//! poll and stays awake. Where `membarrier` is not available, the looker never sleeps.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, compiler_fence};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use wasmtime::Engine;

/// How a node preempts guests that run long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preemption {
    /// A guest that has run this long in one go (without returning to the host's
    /// scheduler: a host call that waits, or a yield) is made to yield: preempted
    /// after between half the slice and the whole slice while guests keep running
    /// long, after between one slice and two when it is the first after a quiet spell.
    /// Costs no yields while every guest returns sooner, and no wake-ups while no guest
    /// runs. The default is [`Preemption::DEFAULT_SLICE`].
    Slice(Duration),
    /// The epoch advances every tick, whether or not any guest runs long: every
    /// running guest yields once per tick. (What nodes did before `Slice`; a short
    /// tick costs messaging speed, a long one fairness.)
    Tick(Duration),
}

impl Preemption {
    /// The default slice: 1 ms.
    pub const DEFAULT_SLICE: Duration = Duration::from_millis(1);

    /// The slice or tick.
    pub fn period(self) -> Duration {
        match self {
            Preemption::Slice(d) | Preemption::Tick(d) => d,
        }
    }
}

impl Default for Preemption {
    fn default() -> Preemption {
        Preemption::Slice(Preemption::DEFAULT_SLICE)
    }
}

/// One thread's mark: how many guest polls it has begun (the high 48 bits) and how
/// many it is inside now (the low 16: a plugin called from a handler's host function
/// nests). Only its own thread writes it.
struct Mark(AtomicU64);

const DEPTH_BITS: u32 = 16;
const DEPTH_MASK: u64 = (1 << DEPTH_BITS) - 1;

/// Every thread that has run guest code (dead threads' marks are dropped at the next
/// look), and the lookers asleep until a guest poll begins.
struct Watched {
    marks: Mutex<Vec<Weak<Mark>>>,
    /// How many lookers sleep: read at the start of every guest poll, written only
    /// (under `sleepers`' lock) when one falls asleep or is woken.
    asleep: AtomicUsize,
    sleepers: Mutex<Vec<Arc<Sleeper>>>,
}

/// A looker asleep until a guest poll begins.
struct Sleeper {
    thread: Thread,
    woken: AtomicBool,
}

static WATCHED: Watched = Watched::new();

thread_local! {
    static MARK: Arc<Mark> = {
        let mark = Arc::new(Mark(AtomicU64::new(0)));
        WATCHED
            .marks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::downgrade(&mark));
        mark
    };
}

impl Watched {
    const fn new() -> Watched {
        Watched {
            marks: Mutex::new(Vec::new()),
            asleep: AtomicUsize::new(0),
            sleepers: Mutex::new(Vec::new()),
        }
    }

    /// A guest poll began on this thread (its mark already stored): wake the lookers
    /// that sleep. The compiler fence keeps the mark's store before this load in the
    /// program; the processor's order is the sleeper's `membarrier`'s business.
    fn poll_began(&self) {
        compiler_fence(Ordering::SeqCst);
        if self.asleep.load(Ordering::Relaxed) != 0 {
            self.wake_all();
        }
    }

    fn wake_all(&self) {
        let mut sleepers = self.sleepers.lock().unwrap_or_else(PoisonError::into_inner);
        for sleeper in sleepers.drain(..) {
            sleeper.woken.store(true, Ordering::Release);
            sleeper.thread.unpark();
        }
        self.asleep.store(0, Ordering::Relaxed);
    }

    /// Sleep until a guest poll begins (or `stop`), unless one has begun since `watch`'s
    /// last look found none (or the barrier is not available).
    fn sleep(&self, watch: &Watch, stop: &AtomicBool) {
        let me = Arc::new(Sleeper {
            thread: std::thread::current(),
            woken: AtomicBool::new(false),
        });
        {
            let mut sleepers = self.sleepers.lock().unwrap_or_else(PoisonError::into_inner);
            sleepers.push(Arc::clone(&me));
            self.asleep.store(sleepers.len(), Ordering::Relaxed);
        }
        // After the barrier, every poll begun before it is visible in the marks, and
        // every poll begun after it sees `asleep`.
        let idle = barrier() && {
            let marks = self.marks.lock().unwrap_or_else(PoisonError::into_inner);
            watch.still_idle_among(&marks)
        };
        if idle {
            while !me.woken.load(Ordering::Acquire) && !stop.load(Ordering::Relaxed) {
                std::thread::park();
            }
        }
        let mut sleepers = self.sleepers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(at) = sleepers.iter().position(|s| Arc::ptr_eq(s, &me)) {
            sleepers.swap_remove(at);
            self.asleep.store(sleepers.len(), Ordering::Relaxed);
        }
    }
}

/// A full memory barrier on every running thread of this process; false where the
/// kernel does not offer one (then lookers never sleep).
fn barrier() -> bool {
    #[cfg(target_os = "linux")]
    {
        use rustix::thread::{MembarrierCommand, membarrier};
        static REGISTERED: OnceLock<bool> = OnceLock::new();
        *REGISTERED.get_or_init(|| membarrier(MembarrierCommand::RegisterPrivateExpedited).is_ok())
            && membarrier(MembarrierCommand::PrivateExpedited).is_ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

/// This thread is in a guest poll until the guard drops.
struct InGuest {
    counted: bool,
}

impl Mark {
    /// A poll begins; false when the depth is at its bound (then it is not counted).
    fn enter(&self) -> bool {
        let now = self.0.load(Ordering::Relaxed);
        if now & DEPTH_MASK == DEPTH_MASK {
            return false;
        }
        self.0
            .store(now.wrapping_add((1 << DEPTH_BITS) + 1), Ordering::Relaxed);
        true
    }

    /// A counted poll ends.
    fn leave(&self) {
        let now = self.0.load(Ordering::Relaxed);
        self.0.store(now - 1, Ordering::Relaxed);
    }
}

impl InGuest {
    fn enter() -> InGuest {
        let counted = MARK.with(|mark| mark.enter());
        WATCHED.poll_began();
        InGuest { counted }
    }
}

impl Drop for InGuest {
    fn drop(&mut self) {
        if self.counted {
            // `try_with`: a guest future dropped while its thread exits.
            let _ = MARK.try_with(|mark| mark.leave());
        }
    }
}

/// Run `call` (a future that runs guest code) with each of its polls marked, so a
/// poll that runs longer than the node's slice is preempted.
pub(crate) async fn in_guest<F: Future>(call: F) -> F::Output {
    let mut call = std::pin::pin!(call);
    std::future::poll_fn(move |cx| {
        let _in = InGuest::enter();
        call.as_mut().poll(cx)
    })
    .await
}

/// What the previous look saw of each thread inside a guest poll (and the buffer the
/// next look fills, kept so a look allocates nothing), and how many polls had begun.
#[derive(Default)]
struct Watch {
    seen: Vec<(Weak<Mark>, u64)>,
    next: Vec<(Weak<Mark>, u64)>,
    begun: u64,
}

/// What a look found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Look {
    /// Some thread is in the same guest poll as at the previous look.
    overrun: bool,
    /// No thread is in a guest poll, and none began one since the previous look.
    idle: bool,
}

impl Watch {
    fn look(&mut self, watched: &Watched) -> Look {
        let mut marks = watched.marks.lock().unwrap_or_else(PoisonError::into_inner);
        marks.retain(|mark| mark.strong_count() > 0);
        self.look_among(&marks)
    }

    fn look_among(&mut self, marks: &[Weak<Mark>]) -> Look {
        let mut overrun = false;
        let mut begun = 0u64;
        self.next.clear();
        for weak in marks {
            let Some(mark) = weak.upgrade() else { continue };
            let now = mark.0.load(Ordering::Relaxed);
            begun = begun.wrapping_add(now >> DEPTH_BITS);
            if now & DEPTH_MASK == 0 {
                continue;
            }
            overrun |= self
                .seen
                .iter()
                .any(|(w, then)| *then == now && Weak::ptr_eq(w, weak));
            self.next.push((weak.clone(), now));
        }
        std::mem::swap(&mut self.seen, &mut self.next);
        let idle = self.seen.is_empty() && begun == self.begun;
        self.begun = begun;
        Look { overrun, idle }
    }

    /// Whether no thread is in a guest poll and none began one since the last look.
    fn still_idle_among(&self, marks: &[Weak<Mark>]) -> bool {
        let mut begun = 0u64;
        for mark in marks.iter().filter_map(Weak::upgrade) {
            let now = mark.0.load(Ordering::Relaxed);
            if now & DEPTH_MASK != 0 {
                return false;
            }
            begun = begun.wrapping_add(now >> DEPTH_BITS);
        }
        begun == self.begun
    }
}

/// The dedicated OS thread that advances the epoch. Preemption never depends on a tokio
/// task being scheduled: this thread runs even when every worker is busy.
pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    pub(crate) fn start(engine: Engine, preemption: Preemption) -> std::io::Result<EpochTicker> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("rusm-epoch".into())
            .spawn(move || {
                // Wake at the time asked, not up to the default 50 us later.
                #[cfg(target_os = "linux")]
                let _ = rustix::thread::set_current_timer_slack(std::num::NonZeroU64::new(1));
                match preemption {
                    Preemption::Tick(tick) => {
                        while !flag.load(Ordering::Relaxed) {
                            std::thread::sleep(tick);
                            engine.increment_epoch();
                        }
                    }
                    Preemption::Slice(slice) => {
                        look_while_guests_run(&WATCHED, slice, &flag, &mut || {
                            engine.increment_epoch();
                        });
                    }
                }
            })?;
        Ok(EpochTicker {
            stop,
            thread: Some(thread),
        })
    }
}

/// How far apart the looks of [`Preemption::Slice`] are. While guests keep running
/// long (an overrun in the last [`Cadence::HOT_LOOKS`] looks), every half slice, so a
/// guest is preempted after between half a slice and a slice; otherwise every slice,
/// which halves the wake-ups of a node whose guests all return soon, and preempts the
/// first guest to run long after such a spell after between one and two slices.
#[derive(Debug)]
struct Cadence {
    slice: Duration,
    hot: u32,
}

impl Cadence {
    /// Looks at half-slice spacing after an overrun.
    const HOT_LOOKS: u32 = 8;

    fn new(slice: Duration) -> Cadence {
        Cadence { slice, hot: 0 }
    }

    /// The wait before the next look, after a look that did or did not find an overrun.
    fn after(&mut self, overrun: bool) -> Duration {
        if overrun {
            self.hot = Cadence::HOT_LOOKS;
        } else {
            self.hot = self.hot.saturating_sub(1);
        }
        if self.hot > 0 {
            self.slice / 2
        } else {
            self.slice
        }
    }
}

/// The looker of [`Preemption::Slice`]: looks on a fixed schedule ([`Cadence`]),
/// `bump` at each overrun, asleep while no guest runs. Returns when `stop` is set (and
/// the thread unparked).
fn look_while_guests_run(
    watched: &Watched,
    slice: Duration,
    stop: &AtomicBool,
    bump: &mut dyn FnMut(),
) {
    let mut cadence = Cadence::new(slice);
    let mut watch = Watch::default();
    let mut next = Instant::now() + slice;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        let look = watch.look(watched);
        if look.overrun {
            bump();
        }
        let wait = cadence.after(look.overrun);
        next += wait;
        if look.idle {
            watched.sleep(&watch, stop);
        }
        let now = Instant::now();
        if next <= now {
            // Asleep, or late: looks go on from now rather than catch up.
            next = now + wait;
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poll_seen_at_two_looks_is_an_overrun_and_a_new_poll_is_not() {
        let (a, b) = (
            Arc::new(Mark(AtomicU64::new(0))),
            Arc::new(Mark(AtomicU64::new(0))),
        );
        let marks = [Arc::downgrade(&a), Arc::downgrade(&b)];
        let mut watch = Watch::default();
        assert!(!watch.look_among(&marks).overrun, "nobody in a guest");
        assert!(a.enter());
        // The first look only learns what runs.
        assert!(!watch.look_among(&marks).overrun);
        assert!(
            watch.look_among(&marks).overrun,
            "the same poll at the next look"
        );
        a.leave();
        assert!(!watch.look_among(&marks).overrun, "no poll now");
        assert!(a.enter());
        assert!(
            !watch.look_among(&marks).overrun,
            "a new poll since the last look"
        );
        // A nested guest call is a new poll too, and ends inside the outer one.
        assert!(a.enter());
        assert!(!watch.look_among(&marks).overrun);
        a.leave();
        assert!(
            !watch.look_among(&marks).overrun,
            "the nested poll's end changed the mark"
        );
        assert!(watch.look_among(&marks).overrun);
        // Another thread's short polls between looks are not an overrun.
        a.leave();
        for _ in 0..3 {
            assert!(b.enter());
            assert!(!watch.look_among(&marks).overrun);
            b.leave();
        }
        assert!(!watch.look_among(&marks).overrun);
    }

    #[test]
    fn the_depth_is_bounded_and_a_dead_threads_mark_is_dropped() {
        let a = Arc::new(Mark(AtomicU64::new(DEPTH_MASK - 1)));
        assert!(a.enter(), "the last level");
        assert!(!a.enter(), "past the bound a poll is not counted");
        assert_eq!(a.0.load(Ordering::Relaxed) & DEPTH_MASK, DEPTH_MASK);
        let gone = {
            let mark = Arc::new(Mark(AtomicU64::new(1)));
            Arc::downgrade(&mark)
        };
        let mut watch = Watch::default();
        assert!(!watch.look_among(std::slice::from_ref(&gone)).overrun);
        assert!(!watch.look_among(std::slice::from_ref(&gone)).overrun);
    }

    #[test]
    fn a_look_is_idle_only_when_no_poll_runs_and_none_began_since_the_last() {
        let a = Arc::new(Mark(AtomicU64::new(0)));
        let marks = [Arc::downgrade(&a)];
        let mut watch = Watch::default();
        assert!(watch.look_among(&marks).idle, "nothing ran");
        assert!(a.enter());
        a.leave();
        assert!(
            !watch.look_among(&marks).idle,
            "a poll began and ended between the looks"
        );
        assert!(watch.look_among(&marks).idle);
        assert!(watch.still_idle_among(&marks));
        assert!(a.enter());
        assert!(!watch.still_idle_among(&marks), "a poll runs");
        assert!(!watch.look_among(&marks).idle);
        a.leave();
        assert!(
            watch.look_among(&marks).idle,
            "the poll the last look saw has ended, and no other began"
        );
        assert!(a.enter());
        a.leave();
        assert!(
            !watch.still_idle_among(&marks),
            "a poll began and ended since the look"
        );
    }

    /// Poll `cond` until it holds, failing the test after 10 s.
    fn wait_until(what: &str, cond: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::yield_now();
        }
    }

    #[test]
    fn a_looker_sleeps_while_no_guest_runs_and_every_poll_that_begins_wakes_it() {
        assert!(
            barrier(),
            "membarrier(2) private expedited is available on this kernel"
        );
        static WATCHED: Watched = Watched::new();
        let mark = Arc::new(Mark(AtomicU64::new(0)));
        WATCHED.marks.lock().unwrap().push(Arc::downgrade(&mark));
        let stop = Arc::new(AtomicBool::new(false));
        let bumps = Arc::new(AtomicU64::new(0));
        let looker = {
            let (stop, bumps) = (Arc::clone(&stop), Arc::clone(&bumps));
            std::thread::spawn(move || {
                look_while_guests_run(&WATCHED, Duration::from_millis(1), &stop, &mut || {
                    bumps.fetch_add(1, Ordering::Relaxed);
                });
            })
        };
        wait_until("the looker sleeps", || {
            WATCHED.asleep.load(Ordering::Relaxed) == 1
        });
        assert_eq!(bumps.load(Ordering::Relaxed), 0, "nothing ran long");
        // Polls that stay long begin at every point of the looker's way to sleep
        // (after a wait of a varying number of spins): each one wakes it and is
        // preempted, none is missed.
        for round in 0..200u64 {
            let before = bumps.load(Ordering::Relaxed);
            assert!(mark.enter());
            WATCHED.poll_began();
            wait_until("the long poll is preempted", || {
                bumps.load(Ordering::Relaxed) > before
            });
            mark.leave();
            for _ in 0..(round * 7919) % 20_000 {
                std::hint::spin_loop();
            }
        }
        wait_until("the looker sleeps again", || {
            WATCHED.asleep.load(Ordering::Relaxed) == 1
        });
        stop.store(true, Ordering::Relaxed);
        looker.thread().unpark();
        looker.join().unwrap();
        assert_eq!(WATCHED.asleep.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn looks_are_half_a_slice_apart_only_while_guests_keep_running_long() {
        let slice = Duration::from_millis(2);
        let mut cadence = Cadence::new(slice);
        assert_eq!(cadence.after(false), slice, "quiet: a slice apart");
        assert_eq!(cadence.after(true), slice / 2, "an overrun: half a slice");
        for _ in 1..Cadence::HOT_LOOKS {
            assert_eq!(cadence.after(false), slice / 2);
        }
        assert_eq!(cadence.after(false), slice, "eight quiet looks later");
        assert_eq!(cadence.after(true), slice / 2);
        for _ in 0..3 {
            assert_eq!(cadence.after(false), slice / 2);
        }
        assert_eq!(cadence.after(true), slice / 2, "another overrun: hot again");
        for _ in 1..Cadence::HOT_LOOKS {
            assert_eq!(cadence.after(false), slice / 2);
        }
        assert_eq!(cadence.after(false), slice);
    }
}
