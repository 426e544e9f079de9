//! The process table: pid → the process's shared row ([`Slot`]).
//!
//! Pids come from a counter, so the table is indexed by the pid itself instead of by
//! a hash of it: the table is split into [`SHARDS`] shards by the pid's low bits
//! (consecutive spawns land in different shards, so a spawner and the processes that
//! end meanwhile on another worker rarely meet on one lock), and within a shard a pid
//! has one home in a ring of entries, `(pid / SHARDS) % ring length`. Spawning and
//! ending walk the ring in order, touching memory sequentially where a hash map would
//! touch a random cache line per insert and per remove.
//!
//! A home already held by an older live process (a long-lived one the counter has
//! lapped) sends the newcomer to a small per-shard spill map. The ring doubles when a
//! shard holds more live processes than half its ring, so spilling stays rare; it never
//! shrinks (8 bytes an entry: a node that once held a million processes keeps 16 MiB of
//! rings). Nothing here ever reuses a pid: the table only stores what the counter hands
//! out.
//!
//! Each shard also keeps a few rows of ended processes to reuse ([`SPARE_ROWS`]): a
//! row is allocated by the spawner's worker and, without reuse, freed by whichever
//! worker ran the process to its end, and freeing across threads is the allocator's
//! slow path. A row is only kept when nothing else references it.
//!
//! Each shard also counts its live processes and, by kind of reason, the processes of
//! its pids that have ended. A spawner and an ending process on another worker then
//! write the node-wide figures in the shard they touch anyway, instead of bouncing one
//! shared counter between the workers on every spawn and exit.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::RwLock;
use rustc_hash::FxHashMap;

use crate::slot::Slot;
use crate::{ExitReason, Pid};

/// How many kinds of exit reason are counted.
const KINDS: usize = ExitReason::KINDS.len();

/// How many shards the table has (a power of two).
pub(crate) const SHARDS: usize = 64;

/// The most rows of ended processes a shard keeps for reuse.
const SPARE_ROWS: usize = 32;

/// The ring length a shard starts with (a power of two).
const FIRST_RING: usize = 64;

/// One shard, aligned so that two shards never share a cache line.
#[repr(align(128))]
struct Shard {
    lock: RwLock<ShardRows>,
    /// Processes of this shard that have started and not yet finished ending: a row
    /// leaves the table at the start of its exit, and this count drops at its end,
    /// once links, monitors and watchers have heard.
    live: AtomicUsize,
}

#[derive(Default)]
struct ShardRows {
    /// Home entries, indexed by `(pid / SHARDS) % ring.len()`.
    ring: Vec<Option<Arc<Slot>>>,
    /// Processes whose home was taken when they started.
    spill: FxHashMap<u64, Arc<Slot>>,
    /// Live processes in this shard (ring and spill).
    len: usize,
    /// Processes of this shard that have ended, by [`ExitReason::kind_index`].
    exits: [u64; KINDS],
    /// Rows of ended processes, referenced from nowhere else, kept for reuse.
    spare: Vec<Arc<Slot>>,
}

impl ShardRows {
    fn home(&self, raw: u64) -> usize {
        (raw as usize / SHARDS) & (self.ring.len() - 1)
    }

    fn get(&self, raw: u64) -> Option<&Arc<Slot>> {
        if self.ring.is_empty() {
            return None;
        }
        match &self.ring[self.home(raw)] {
            Some(slot) if slot.pid.as_raw() == raw => Some(slot),
            _ if self.spill.is_empty() => None,
            _ => self.spill.get(&raw),
        }
    }

    fn insert(&mut self, slot: Arc<Slot>) {
        self.len += 1;
        if self.len * 2 > self.ring.len() {
            self.grow();
        }
        self.place(slot);
    }

    fn place(&mut self, slot: Arc<Slot>) {
        let raw = slot.pid.as_raw();
        let home = self.home(raw);
        match &mut self.ring[home] {
            entry @ None => *entry = Some(slot),
            Some(_) => {
                self.spill.insert(raw, slot);
            }
        }
    }

    /// Double the ring and give every process its home in the new one.
    fn grow(&mut self) {
        let new_len = (self.ring.len() * 2).max(FIRST_RING);
        let old = std::mem::replace(&mut self.ring, vec![None; new_len]);
        let spilled = std::mem::take(&mut self.spill);
        for slot in old.into_iter().flatten().chain(spilled.into_values()) {
            self.place(slot);
        }
    }

    fn remove(&mut self, raw: u64) -> Option<Arc<Slot>> {
        if self.ring.is_empty() {
            return None;
        }
        let home = self.home(raw);
        let removed = match &self.ring[home] {
            Some(slot) if slot.pid.as_raw() == raw => self.ring[home].take(),
            _ => self.spill.remove(&raw),
        };
        if removed.is_some() {
            self.len -= 1;
        }
        removed
    }
}

/// The pid-indexed table of live processes; see the module docs.
pub(crate) struct ProcessTable {
    shards: Box<[Shard]>,
}

impl ProcessTable {
    pub(crate) fn new() -> ProcessTable {
        ProcessTable {
            shards: (0..SHARDS)
                .map(|_| Shard {
                    lock: RwLock::new(ShardRows::default()),
                    live: AtomicUsize::new(0),
                })
                .collect(),
        }
    }

    fn shard(&self, pid: Pid) -> &Shard {
        &self.shards[pid.as_raw() as usize % SHARDS]
    }

    /// The row of `pid`, if it is in the table.
    pub(crate) fn get(&self, pid: Pid) -> Option<Arc<Slot>> {
        self.shard(pid).lock.read().get(pid.as_raw()).cloned()
    }

    /// Run `f` on the row of `pid` while the shard is read-locked (no reference count
    /// taken); `None` if `pid` is not in the table. `f` must not touch the table.
    pub(crate) fn with<R>(&self, pid: Pid, f: impl FnOnce(&Slot) -> R) -> Option<R> {
        self.shard(pid)
            .lock
            .read()
            .get(pid.as_raw())
            .map(|slot| f(slot))
    }

    /// Add the row `row` of a new process `pid`, filled in a spare row of an ended
    /// process when the shard has one, in a new allocation otherwise; it counts as
    /// live until [`ProcessTable::finished`].
    pub(crate) fn insert_new(&self, pid: Pid, row: Slot) -> Arc<Slot> {
        let shard = self.shard(pid);
        shard.live.fetch_add(1, Ordering::SeqCst);
        let mut rows = shard.lock.write();
        let slot = match rows.spare.pop() {
            Some(mut spare) => match Arc::get_mut(&mut spare) {
                Some(reused) => {
                    *reused = row;
                    spare
                }
                None => Arc::new(row),
            },
            None => Arc::new(row),
        };
        rows.insert(slot.clone());
        slot
    }

    /// Keep the row of an ended process for reuse, if nothing else references it and
    /// its shard has room.
    pub(crate) fn recycle(&self, mut slot: Arc<Slot>) {
        if Arc::get_mut(&mut slot).is_none() {
            return;
        }
        let mut rows = self.shard(slot.pid).lock.write();
        if rows.spare.len() < SPARE_ROWS {
            rows.spare.push(slot);
        }
    }

    /// Remove `pid`'s row as it ends with a reason of kind `kind` (an
    /// [`ExitReason::kind_index`]), handing the row back.
    pub(crate) fn remove(&self, pid: Pid, kind: usize) -> Option<Arc<Slot>> {
        let mut rows = self.shard(pid).lock.write();
        let removed = rows.remove(pid.as_raw());
        if removed.is_some() {
            rows.exits[kind] += 1;
        }
        removed
    }

    /// `pid`, removed earlier, has finished ending. Returns whether its shard now has
    /// no live process.
    pub(crate) fn finished(&self, pid: Pid) -> bool {
        self.shard(pid).live.fetch_sub(1, Ordering::SeqCst) == 1
    }

    /// Processes started and not yet finished ending.
    pub(crate) fn live(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.live.load(Ordering::SeqCst))
            .sum()
    }

    /// Processes that have ended, by [`ExitReason::kind_index`].
    pub(crate) fn exits(&self) -> [u64; KINDS] {
        let mut total = [0; KINDS];
        for shard in self.shards.iter() {
            let rows = shard.lock.read();
            for (sum, count) in total.iter_mut().zip(rows.exits) {
                *sum += count;
            }
        }
        total
    }

    /// Call `f` with every row, shard by shard (each shard read-locked while it is
    /// visited), in no particular order. `f` must not touch the table.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&Arc<Slot>)) {
        for shard in self.shards.iter() {
            let rows = shard.lock.read();
            rows.ring.iter().flatten().for_each(&mut f);
            rows.spill.values().for_each(&mut f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailbox::MailboxConfig;
    use crate::slot::SlotState;

    fn row(raw: u64) -> Slot {
        Slot::new(
            Pid::from_raw(raw),
            None,
            None,
            SlotState::new(MailboxConfig::default(), false),
        )
    }

    fn insert(table: &ProcessTable, raw: u64) {
        table.insert_new(Pid::from_raw(raw), row(raw));
    }

    fn pids(table: &ProcessTable) -> Vec<u64> {
        let mut all = Vec::new();
        table.for_each(|slot| all.push(slot.pid.as_raw()));
        all.sort_unstable();
        all
    }

    #[test]
    fn rows_of_ended_processes_are_reused_only_when_unreferenced() {
        let table = ProcessTable::new();
        let first = table.insert_new(Pid::from_raw(1), row(1));
        let first_addr = Arc::as_ptr(&first);
        assert!(table.remove(Pid::from_raw(1), 0).is_some());
        table.recycle(first);
        // Same shard (pids 1 and 1 + SHARDS): the spare row is filled in place.
        let next = Pid::from_raw(1 + SHARDS as u64);
        let second = table.insert_new(next, row(next.as_raw()));
        assert_eq!(Arc::as_ptr(&second), first_addr);
        assert_eq!(second.pid, next);
        assert_eq!(table.get(next).unwrap().pid, next);
        // A row still referenced elsewhere is not kept.
        assert!(table.remove(next, 0).is_some());
        let held = second.clone();
        table.recycle(second);
        let third = Pid::from_raw(1 + 2 * SHARDS as u64);
        let third_row = table.insert_new(third, row(third.as_raw()));
        assert_ne!(Arc::as_ptr(&third_row), Arc::as_ptr(&held));
        assert_eq!(held.pid, next);
        assert_eq!(table.live(), 3);
    }

    #[test]
    fn lapped_homes_spill_and_are_found() {
        let table = ProcessTable::new();
        // A long-lived process, then many short-lived ones that lap its home.
        insert(&table, 1);
        let ring = (FIRST_RING * SHARDS) as u64;
        for raw in 2..=4 * ring + 1 {
            insert(&table, raw);
            assert_eq!(table.get(Pid::from_raw(raw)).unwrap().pid.as_raw(), raw);
            assert!(table.remove(Pid::from_raw(raw), 0).is_some());
            assert!(table.get(Pid::from_raw(raw)).is_none());
        }
        // Pids that share 1's home while it lives.
        let same_home = [1 + ring, 1 + 2 * ring];
        for raw in same_home {
            insert(&table, raw);
        }
        for raw in [1, same_home[0], same_home[1]] {
            assert_eq!(
                table.with(Pid::from_raw(raw), |s| s.pid.as_raw()),
                Some(raw)
            );
        }
        assert_eq!(pids(&table), vec![1, same_home[0], same_home[1]]);
        // The home's holder leaves first; the spilled ones stay reachable.
        assert!(table.remove(Pid::from_raw(1), 0).is_some());
        assert!(table.get(Pid::from_raw(1)).is_none());
        assert!(table.remove(Pid::from_raw(same_home[1]), 0).is_some());
        assert!(table.remove(Pid::from_raw(same_home[1]), 0).is_none());
        assert_eq!(pids(&table), vec![same_home[0]]);
    }

    #[test]
    fn many_live_processes_grow_the_rings() {
        let table = ProcessTable::new();
        let n = 50_000u64;
        for raw in 1..=n {
            insert(&table, raw);
        }
        assert_eq!(pids(&table).len(), n as usize);
        for raw in (1..=n).step_by(7) {
            assert_eq!(table.get(Pid::from_raw(raw)).unwrap().pid.as_raw(), raw);
        }
        // Remove every other one; the rest are still found, the removed are not.
        for raw in (1..=n).filter(|r| r % 2 == 0) {
            assert!(table.remove(Pid::from_raw(raw), 0).is_some());
        }
        for raw in 1..=n {
            assert_eq!(table.get(Pid::from_raw(raw)).is_some(), raw % 2 == 1);
        }
        assert!(table.get(Pid::from_raw(n + 1)).is_none());
        assert!(table.remove(Pid::from_raw(n + 1), 0).is_none());
    }
}
