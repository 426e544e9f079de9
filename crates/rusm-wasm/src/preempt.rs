//! Preemption: the thread that advances a node's epoch, and the marks that tell it
//! when a guest has run too long.
//!
//! wasmtime interrupts a guest when the engine's epoch passes the store's deadline
//! (one epoch ahead: every process yields at the first epoch change it sees). Ticking
//! the epoch at a fixed rate costs every running guest a yield per tick whether it runs
//! long or not, so a short tick buys fairness with messaging speed. Instead, with
//! [`Preemption::Slice`] (the default), every poll of a guest call marks its thread as
//! running guest code ([`in_guest`]: two plain stores to a slot only that thread
//! writes), and the thread here looks every half slice: the epoch advances only when
//! some thread has been in the same guest poll since the previous look, that is for
//! between half a slice and a whole one. A node whose guests all return within the
//! slice never sees the epoch move.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::Engine;

/// How a node preempts guests that run long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preemption {
    /// A guest that has run this long in one go (without returning to the host's
    /// scheduler: a host call that waits, or a yield) is made to yield: preempted
    /// after between half the slice and the whole slice. Costs nothing while every
    /// guest returns sooner; a kill reaches a spinning guest within a slice or two.
    /// The default is [`Preemption::DEFAULT_SLICE`].
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

/// Every thread that has run guest code; dead threads' marks are dropped at the next
/// look.
static MARKS: Mutex<Vec<Weak<Mark>>> = Mutex::new(Vec::new());

thread_local! {
    static MARK: Arc<Mark> = {
        let mark = Arc::new(Mark(AtomicU64::new(0)));
        MARKS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::downgrade(&mark));
        mark
    };
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
        InGuest {
            counted: MARK.with(|mark| mark.enter()),
        }
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
/// next look fills, kept so a look allocates nothing).
#[derive(Default)]
struct Watch {
    seen: Vec<(Weak<Mark>, u64)>,
    next: Vec<(Weak<Mark>, u64)>,
}

impl Watch {
    /// Whether some thread is in the same guest poll as at the previous look.
    fn overrun(&mut self) -> bool {
        let mut marks = MARKS.lock().unwrap_or_else(PoisonError::into_inner);
        marks.retain(|mark| mark.strong_count() > 0);
        self.overrun_among(&marks)
    }

    fn overrun_among(&mut self, marks: &[Weak<Mark>]) -> bool {
        let mut overrun = false;
        self.next.clear();
        for weak in marks {
            let Some(mark) = weak.upgrade() else { continue };
            let now = mark.0.load(Ordering::Relaxed);
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
        overrun
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
            .spawn(move || match preemption {
                Preemption::Tick(tick) => {
                    while !flag.load(Ordering::Relaxed) {
                        std::thread::sleep(tick);
                        engine.increment_epoch();
                    }
                }
                Preemption::Slice(slice) => {
                    let look = slice / 2;
                    let mut watch = Watch::default();
                    while !flag.load(Ordering::Relaxed) {
                        std::thread::sleep(look);
                        if watch.overrun() {
                            engine.increment_epoch();
                        }
                    }
                }
            })?;
        Ok(EpochTicker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
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
        assert!(!watch.overrun_among(&marks), "nobody in a guest");
        assert!(a.enter());
        // The first look only learns what runs.
        assert!(!watch.overrun_among(&marks));
        assert!(
            watch.overrun_among(&marks),
            "the same poll at the next look"
        );
        a.leave();
        assert!(!watch.overrun_among(&marks), "no poll now");
        assert!(a.enter());
        assert!(
            !watch.overrun_among(&marks),
            "a new poll since the last look"
        );
        // A nested guest call is a new poll too, and ends inside the outer one.
        assert!(a.enter());
        assert!(!watch.overrun_among(&marks));
        a.leave();
        assert!(
            !watch.overrun_among(&marks),
            "the nested poll's end changed the mark"
        );
        assert!(watch.overrun_among(&marks));
        // Another thread's short polls between looks are not an overrun.
        a.leave();
        for _ in 0..3 {
            assert!(b.enter());
            assert!(!watch.overrun_among(&marks));
            b.leave();
        }
        assert!(!watch.overrun_among(&marks));
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
        assert!(!watch.overrun_among(std::slice::from_ref(&gone)));
        assert!(!watch.overrun_among(std::slice::from_ref(&gone)));
    }
}
