//! `TurnLock`: the async lock a plugin's calls take turns on.
//!
//! A plugin call holds its plugin's instance for the whole call, across awaits, so the
//! lock must be async. `tokio::sync::Mutex` costs a semaphore round trip per call (its
//! release always takes the semaphore's internal waiter lock), which is a tenth of a
//! small plugin call. Here an uncontended lock is one compare-and-swap, and an unlock
//! is one store plus one load; callers that find the lock taken wait on a `Notify`.

// A lock hands out `&mut T` from a shared reference: that needs an `UnsafeCell`.
#![allow(unsafe_code)]

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};

use tokio::sync::Notify;

/// An async mutual-exclusion lock around a `T`.
pub(crate) struct TurnLock<T> {
    locked: AtomicBool,
    /// Callers inside [`TurnLock::lock`] that have not got the lock yet.
    waiters: AtomicUsize,
    notify: Notify,
    value: UnsafeCell<T>,
}

// SAFETY: the lock gives one holder at a time access to the value (`locked` is set by
// a successful compare-and-swap and cleared by the guard's drop), so sharing the lock
// between threads is sound when the value may move between threads: each holder in
// turn has it exclusively, as if it had been sent to the holder's thread. (Shared
// access from several threads at once is a guard's business: see `TurnGuard`.)
unsafe impl<T: Send> Sync for TurnLock<T> {}
// SAFETY: as above; the lock owns the value.
unsafe impl<T: Send> Send for TurnLock<T> {}

impl<T> TurnLock<T> {
    /// A lock around `value`, not held.
    pub(crate) fn new(value: T) -> TurnLock<T> {
        TurnLock {
            locked: AtomicBool::new(false),
            waiters: AtomicUsize::new(0),
            notify: Notify::new(),
            value: UnsafeCell::new(value),
        }
    }

    /// The lock, if nobody holds it.
    pub(crate) fn try_lock(&self) -> Option<TurnGuard<'_, T>> {
        self.locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| TurnGuard { lock: self })
    }

    /// The lock, waiting for its holder to release it.
    ///
    /// Cancel safe: dropping the future while it waits neither takes the lock nor
    /// loses a wake-up meant for another waiter.
    pub(crate) async fn lock(&self) -> TurnGuard<'_, T> {
        if let Some(guard) = self.try_lock() {
            return guard;
        }
        // Counted before the next attempt, with a fence between (as the unlock has
        // one between its release and its look at the count): of this attempt and an
        // unlock racing it, at least one sees the other, so either the unlock sees
        // this waiter (and notifies) or the attempt sees the lock released (and
        // succeeds). Without the fences (sequentially consistent operations alone,
        // with a relaxed failed attempt), both may miss: `model` below finds that.
        self.waiters.fetch_add(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        let _waiting = Waiting(&self.waiters);
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(guard) = self.try_lock() {
                return guard;
            }
            notified.await;
        }
    }
}

/// Uncounts a waiter however its wait ends.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Access to a [`TurnLock`]'s value; dropping it releases the lock.
///
/// `Send` when `T` is (a call holds it across awaits on any worker), but `Sync` only
/// when `T` is `Send + Sync`: a `&TurnGuard` shared between threads gives each of them
/// `&T` at the same time, as `std::sync::MutexGuard` and tokio's guard have it.
pub(crate) struct TurnGuard<'a, T> {
    lock: &'a TurnLock<T>,
}

// SAFETY: shared references to the guard only hand out `&T`, which is sound to use
// from several threads at once when `T: Sync`. (This impl replaces the automatic one,
// which would follow `&TurnLock<T>` and so hold for any `T: Send`.)
unsafe impl<T: Send + Sync> Sync for TurnGuard<'_, T> {}

impl<T> Deref for TurnGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: this guard is the lock's only holder until it drops.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for TurnGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: this guard is the lock's only holder until it drops.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for TurnGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
        // See `TurnLock::lock`: the fence pairs with the waiter's.
        fence(Ordering::SeqCst);
        if self.lock.waiters.load(Ordering::Relaxed) > 0 {
            // A waiter re-tries after this; a stored permit only causes one extra try.
            self.lock.notify.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::marker::PhantomData;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn holders_take_turns_and_no_increment_is_lost() {
        let lock = Arc::new(TurnLock::new(0u64));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let lock = lock.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..2_000u64 {
                    let mut guard = lock.lock().await;
                    let seen = *guard;
                    if i % 64 == 0 {
                        // Hold the lock across an await so others must wait.
                        tokio::task::yield_now().await;
                    }
                    *guard = seen + 1;
                }
            }));
        }
        for task in tasks {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("no holder waits forever")
                .unwrap();
        }
        assert_eq!(*lock.lock().await, 16_000);
    }

    /// Whether `T` is `Sync`, decided at compile time: the inherent method applies
    /// only when its bound holds, else the trait's is found.
    struct Probe<T>(PhantomData<T>);

    trait NotSync {
        fn is_sync(&self) -> bool {
            false
        }
    }

    impl<T> NotSync for Probe<T> {}

    impl<T: Sync> Probe<T> {
        fn is_sync(&self) -> bool {
            true
        }
    }

    fn assert_send<T: Send>() {}

    #[test]
    fn a_guard_is_shared_between_threads_only_when_the_value_may_be() {
        // `Cell` is `Send` but not `Sync`: a lock around it may be shared (one holder
        // at a time), a guard may not (it hands `&Cell` to every thread holding it).
        assert!(Probe::<TurnLock<Cell<u8>>>(PhantomData).is_sync());
        assert!(!Probe::<TurnGuard<'static, Cell<u8>>>(PhantomData).is_sync());
        assert!(Probe::<TurnGuard<'static, u8>>(PhantomData).is_sync());
        assert_send::<TurnGuard<'static, Cell<u8>>>();
    }

    #[tokio::test]
    async fn a_waiter_dropped_while_waiting_passes_the_turn_on() {
        let lock = Arc::new(TurnLock::new(()));
        let held = lock.try_lock().expect("free at first");
        assert!(lock.try_lock().is_none(), "taken while held");
        // One waiter gives up, another keeps waiting.
        let quitter = tokio::time::timeout(Duration::from_millis(20), lock.lock()).await;
        assert!(quitter.is_err(), "cannot get the lock while it is held");
        let waiter = {
            let lock = lock.clone();
            tokio::spawn(async move {
                let _guard = lock.lock().await;
            })
        };
        tokio::task::yield_now().await;
        drop(held);
        tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("the remaining waiter gets the lock")
            .unwrap();
        assert!(lock.try_lock().is_some(), "free again");
    }
}

/// A loom model of the lock's wake-up argument: every step of [`TurnLock::lock`] and
/// of [`TurnGuard`]'s drop, with the same orderings, over a model of `Notify`'s
/// `notify_one` (a waiter registered by `enable` is woken; with none, one permit is
/// stored, which the next `enable` takes; a waiter dropped after a `notify_one` woke
/// it passes the wake-up on, one that took the permit does not). loom
/// runs every interleaving (up to its preemption bound) and fails on any in which a
/// waiter sleeps while the lock is free, or two holders overlap.
#[cfg(test)]
mod model {
    use std::collections::VecDeque;

    use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};
    use loom::sync::{Arc, Condvar, Mutex};

    /// `tokio::sync::Notify` as the lock uses it (`notify_one`, and `Notified` made,
    /// enabled, then awaited or dropped).
    #[derive(Default)]
    struct Notify {
        state: Mutex<NotifyState>,
        woken: Condvar,
    }

    #[derive(Default)]
    struct NotifyState {
        permit: bool,
        waiting: VecDeque<usize>,
        /// Woken by a `notify_one` while registered: passed on if dropped unawaited.
        notified: Vec<usize>,
        /// Took the stored permit when enabled: complete, and nothing to pass on.
        took_permit: Vec<usize>,
    }

    impl Notify {
        /// `notified.as_mut().enable()`: from here on a `notify_one` reaches `id`.
        fn enable(&self, id: usize) {
            let mut state = self.state.lock().unwrap();
            if std::mem::take(&mut state.permit) {
                state.took_permit.push(id);
            } else {
                state.waiting.push_back(id);
            }
        }

        fn notify_one(&self) {
            let mut state = self.state.lock().unwrap();
            match state.waiting.pop_front() {
                Some(id) => {
                    state.notified.push(id);
                    self.woken.notify_all();
                }
                None => state.permit = true,
            }
        }

        /// `notified.await`.
        fn wait(&self, id: usize) {
            let mut state = self.state.lock().unwrap();
            if state.took_permit.contains(&id) {
                state.took_permit.retain(|&n| n != id);
                return;
            }
            while !state.notified.contains(&id) {
                state = self.woken.wait(state).unwrap();
            }
            state.notified.retain(|&n| n != id);
        }

        /// The `Notified` dropped without being awaited to its end.
        fn drop_waiter(&self, id: usize) {
            let passed = {
                let mut state = self.state.lock().unwrap();
                state.waiting.retain(|&n| n != id);
                state.took_permit.retain(|&n| n != id);
                let had = state.notified.contains(&id);
                state.notified.retain(|&n| n != id);
                had
            };
            if passed {
                self.notify_one();
            }
        }
    }

    #[derive(Default)]
    struct Lock {
        locked: AtomicBool,
        waiters: AtomicUsize,
        notify: Notify,
        /// Holders inside at once (must never pass 1).
        inside: AtomicUsize,
    }

    impl Lock {
        fn try_lock(&self) -> bool {
            self.locked
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        }

        /// `TurnLock::lock`.
        fn lock(&self, id: usize) {
            if self.try_lock() {
                return;
            }
            self.waiters.fetch_add(1, Ordering::Relaxed);
            fence(Ordering::SeqCst);
            loop {
                self.notify.enable(id);
                if self.try_lock() {
                    self.notify.drop_waiter(id);
                    break;
                }
                self.notify.wait(id);
            }
            self.waiters.fetch_sub(1, Ordering::Relaxed);
        }

        /// `TurnGuard`'s drop.
        fn unlock(&self) {
            self.locked.store(false, Ordering::Release);
            fence(Ordering::SeqCst);
            if self.waiters.load(Ordering::Relaxed) > 0 {
                self.notify.notify_one();
            }
        }

        fn hold(&self, id: usize) {
            self.lock(id);
            assert_eq!(self.inside.fetch_add(1, Ordering::SeqCst), 0, "two holders");
            self.inside.fetch_sub(1, Ordering::SeqCst);
            self.unlock();
        }
    }

    fn check(holders: usize, turns: usize) {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(3);
        builder.check(move || {
            let lock = Arc::new(Lock::default());
            let threads: Vec<_> = (1..holders)
                .map(|id| {
                    let lock = lock.clone();
                    loom::thread::spawn(move || {
                        for _ in 0..turns {
                            lock.hold(id);
                        }
                    })
                })
                .collect();
            for _ in 0..turns {
                lock.hold(0);
            }
            for thread in threads {
                thread.join().unwrap();
            }
            assert!(!lock.locked.load(Ordering::SeqCst));
        });
    }

    #[test]
    fn two_holders_taking_turns_never_lose_a_wake_up() {
        check(2, 2);
    }

    #[test]
    fn three_holders_never_lose_a_wake_up() {
        check(3, 1);
    }
}
