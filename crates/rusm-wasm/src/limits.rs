//! Every limit a process runs under, resolved once — from its policy's `[limits]` and
//! the node's configuration — when the process is spawned: the one place `[limits]`
//! is interpreted. Every kind of process (actor, handler, HTTP request, plugin) gets
//! its [`Limits`] here and applies them the same way.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rusm_otp::{MailboxConfig, Overflow};
use rusm_policy::{MailboxOverflow, Policy};
use wasmtime::ResourceLimiter;

use crate::engine::WasmConfig;
use crate::error::SpawnError;

/// The limits of one process, as numbers the host applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Bytes of linear memory the instance may hold, all its memories together (the
    /// policy's `memory`, else the node's default, never above what one memory of the
    /// allocator can hold).
    pub(crate) memory: usize,
    /// Elements any table may grow to.
    pub(crate) table_elements: usize,
    /// Fuel for the whole run, when the node meters fuel (`u64::MAX` when the policy
    /// sets none); `None` when it does not.
    pub(crate) fuel: Option<u64>,
    /// How long the whole run may take.
    pub(crate) deadline: Option<Duration>,
    /// Messages that may wait in the mailbox.
    pub(crate) mailbox: Option<usize>,
    /// The largest payload the process may send.
    pub(crate) message_size: Option<usize>,
    /// Live children the process may have at once.
    pub(crate) children: Option<u64>,
    /// `send-after` timers the process may have waiting at once.
    pub(crate) timers: usize,
    /// Monitors it may hold at once (with their waiting `down` messages).
    pub(crate) monitors: usize,
    /// Processes it may be linked to at once.
    pub(crate) links: usize,
    /// Payload bytes that may wait in its mailbox, and separately in its timers (the
    /// policy's `mailbox_bytes`, by default its memory limit).
    pub(crate) mailbox_bytes: usize,
    /// The largest payload it accepts (the policy's `max_receive`, by default a
    /// quarter of its memory limit: a message must fit in the guest's memory beside
    /// what it already holds, or receiving it would end the guest).
    pub(crate) max_receive: usize,
    /// Processes its spawn tree may have alive at once (when it is a tree's root).
    pub(crate) descendants: u64,
    /// Processes its spawn tree may ever spawn (when it is a tree's root).
    pub(crate) spawns: Option<u64>,
    /// Linear memories its instance may hold, all core instances together.
    pub(crate) memories: usize,
    /// Tables its instance may hold.
    pub(crate) tables: usize,
    /// Core instances its component may instantiate.
    pub(crate) instances: usize,
    /// Whether a send to its full mailbox is refused (the sender told) rather than
    /// dropped.
    pub(crate) refuse_when_full: bool,
}

/// The `timers` limit of a policy that sets none: enough for any honest actor, few
/// enough that a guest setting timers in a loop holds the host to a bounded amount.
pub(crate) const DEFAULT_TIMERS: usize = 1_000;

/// The `descendants` limit of a policy that sets none.
pub(crate) const DEFAULT_DESCENDANTS: u64 = 10_000;

/// The `memories` limit of a policy that sets none: what the pooling allocator holds
/// per component. A Rust guest has one or two.
pub(crate) const DEFAULT_MEMORIES: usize = 10;

/// The `tables` limit of a policy that sets none. A Rust guest has a few.
pub(crate) const DEFAULT_TABLES: usize = 50;

/// The `instances` limit of a policy that sets none: core instances per component
/// (a Rust guest has a handful: its module and the canonical-ABI shims).
pub(crate) const DEFAULT_INSTANCES: usize = 50;

/// The `monitors` and `links` limits of a policy that sets none.
pub(crate) const DEFAULT_MONITORS: usize = 10_000;
/// See [`DEFAULT_MONITORS`].
pub(crate) const DEFAULT_LINKS: usize = 10_000;

fn size(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

impl Limits {
    /// The limits of a process under `policy` on a node configured by `config`.
    ///
    /// # Errors
    /// [`SpawnError::NotPermitted`] when the node cannot honour the policy (a fuel limit
    /// on a node that does not meter fuel).
    pub(crate) fn resolve(policy: &Policy, config: &WasmConfig) -> Result<Limits, SpawnError> {
        let limits = &policy.limits;
        if limits.fuel.is_some() && !config.fuel_metering {
            return Err(SpawnError::NotPermitted(
                "the policy sets a fuel limit but this node runs without fuel metering (WasmConfig::fuel_metering)".into(),
            ));
        }
        let memory = limits
            .memory
            .map_or(config.default_memory_limit, size)
            .min(config.max_memory_size());
        Ok(Limits {
            memory,
            mailbox_bytes: limits.mailbox_bytes.map_or(memory, size),
            max_receive: limits.max_receive.map_or(memory / 4, size),
            table_elements: limits
                .table_elements
                .map_or(config.pool.table_elements, size)
                .min(config.pool.table_elements),
            fuel: config
                .fuel_metering
                .then(|| limits.fuel.unwrap_or(u64::MAX)),
            deadline: limits.deadline,
            mailbox: limits.mailbox.map(size),
            message_size: limits.message_size.map(size),
            children: limits.children,
            timers: limits.timers.map_or(DEFAULT_TIMERS, size),
            monitors: limits.monitors.map_or(DEFAULT_MONITORS, size),
            links: limits.links.map_or(DEFAULT_LINKS, size),
            descendants: limits.descendants.unwrap_or(DEFAULT_DESCENDANTS),
            spawns: limits.spawns,
            memories: limits.memories.map_or(DEFAULT_MEMORIES, size),
            tables: limits.tables.map_or(DEFAULT_TABLES, size),
            instances: limits.instances.map_or(DEFAULT_INSTANCES, size),
            refuse_when_full: limits.mailbox_overflow == Some(MailboxOverflow::Refuse),
        })
    }

    /// The same limits with the run also ending by `deadline`, whichever is earlier
    /// (an HTTP request's own deadline, say).
    pub(crate) fn with_deadline(mut self, deadline: Option<Duration>) -> Limits {
        self.deadline = match (self.deadline, deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self
    }

    /// The instant the run must end by, counted from now (the process's start).
    pub(crate) fn deadline_from_now(&self) -> Option<tokio::time::Instant> {
        self.deadline
            .map(|limit| tokio::time::Instant::now() + limit)
    }

    /// The mailbox a process gets when `requested` is asked for: the policy's bounds
    /// win where they are smaller (messages past a full mailbox are dropped and
    /// counted, or refused when the policy's `mailbox_overflow` says so; a message
    /// larger than `max_receive` is refused at the send).
    pub(crate) fn mailbox(&self, requested: MailboxConfig) -> MailboxConfig {
        let smaller =
            |asked: Option<usize>, limit: usize| Some(asked.map_or(limit, |a| a.min(limit)));
        let mut config = MailboxConfig {
            max_bytes: smaller(requested.max_bytes, self.mailbox_bytes),
            max_message: smaller(requested.max_message, self.max_receive),
            ..requested
        };
        if let Some(limit) = self.mailbox
            && requested.capacity.is_none_or(|cap| cap > limit)
        {
            config.capacity = Some(limit);
            config.overflow = Overflow::DropNewest;
        }
        if self.refuse_when_full {
            config.overflow = Overflow::Refuse;
        }
        config
    }

    /// What the store's resource limiter enforces.
    pub(crate) fn limiter(&self) -> StoreLimiter {
        StoreLimiter {
            memory: self.memory,
            memory_used: 0,
            table_elements: self.table_elements,
            memories: self.memories,
            tables: self.tables,
            instances: self.instances,
            hit_memory_limit: false,
        }
    }
}

/// What a whole spawn tree may still spawn: the budget its root's policy sets
/// (`descendants` alive at once, `spawns` ever), shared by every process in the tree,
/// so no chain or fan of children outgrows what the root was granted.
pub(crate) struct TreeBudget {
    live: AtomicU64,
    total: AtomicU64,
    max_live: u64,
    max_total: Option<u64>,
}

impl TreeBudget {
    /// The budget of a tree whose root has `limits`.
    pub(crate) fn new(limits: &Limits) -> TreeBudget {
        TreeBudget {
            live: AtomicU64::new(0),
            total: AtomicU64::new(0),
            max_live: limits.descendants,
            max_total: limits.spawns,
        }
    }

    /// Count one more process in the tree, while its token lives.
    ///
    /// # Errors
    /// What ran out, as the refusal the spawning guest sees.
    pub(crate) fn admit(self: &Arc<Self>) -> Result<TreeToken, String> {
        if self.live.fetch_add(1, Ordering::AcqRel) >= self.max_live {
            self.live.fetch_sub(1, Ordering::AcqRel);
            return Err(format!(
                "the spawn tree may have at most {} live processes",
                self.max_live
            ));
        }
        if let Some(max) = self.max_total
            && self.total.fetch_add(1, Ordering::AcqRel) >= max
        {
            self.total.fetch_sub(1, Ordering::AcqRel);
            self.live.fetch_sub(1, Ordering::AcqRel);
            return Err(format!("the spawn tree may spawn at most {max} processes"));
        }
        Ok(TreeToken(Arc::clone(self)))
    }
}

/// The linear memory a node may grant its live processes together
/// ([`WasmConfig::memory_budget`]): every process's `memory` limit is counted from its
/// spawn until its store is gone, and a spawn that would pass the budget is refused,
/// so the node never admits more than it could back.
pub(crate) struct MemoryBudget {
    granted: AtomicU64,
    budget: u64,
}

impl MemoryBudget {
    /// A budget of `budget` bytes, none of it granted.
    pub(crate) fn new(budget: u64) -> MemoryBudget {
        MemoryBudget {
            granted: AtomicU64::new(0),
            budget,
        }
    }

    /// Bytes granted to live processes now.
    pub(crate) fn granted(&self) -> u64 {
        self.granted.load(Ordering::Acquire)
    }

    /// Grant `bytes` to one more process, while the returned grant lives.
    ///
    /// # Errors
    /// What ran out, naming the budget, when the grant would pass it.
    pub(crate) fn admit(self: &Arc<Self>, bytes: usize) -> Result<MemoryGrant, String> {
        let bytes = bytes as u64;
        let before = self.granted.fetch_add(bytes, Ordering::AcqRel);
        if before.saturating_add(bytes) > self.budget {
            self.granted.fetch_sub(bytes, Ordering::AcqRel);
            return Err(format!(
                "the node cannot back another process with memory: its live processes hold grants of {} bytes of linear memory, and {} more would pass its memory budget of {} bytes (WasmConfig::memory_budget; a smaller `memory` limit in the policy needs less)",
                before, bytes, self.budget
            ));
        }
        Ok(MemoryGrant {
            budget: Arc::clone(self),
            bytes,
        })
    }
}

/// One process's share of its node's [`MemoryBudget`]; dropping it returns the share.
pub(crate) struct MemoryGrant {
    budget: Arc<MemoryBudget>,
    bytes: u64,
}

impl Drop for MemoryGrant {
    fn drop(&mut self) {
        self.budget.granted.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// A process's place in its tree's budget; dropping it frees the place.
pub(crate) struct TreeToken(Arc<TreeBudget>);

impl TreeToken {
    /// The budget this token counts against.
    pub(crate) fn budget(&self) -> &Arc<TreeBudget> {
        &self.0
    }
}

impl Drop for TreeToken {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The store's resource limiter: memory (all of the store's linear memories counted
/// together, so a component with many memories gets no more than one with one) and
/// table growth, and a record of whether the memory limit was hit (so the process
/// ends with `out-of-memory`).
pub(crate) struct StoreLimiter {
    memory: usize,
    /// Bytes held by all the store's memories (a growth that wasmtime then fails to
    /// carry out stays counted: the count errs on the safe side).
    memory_used: usize,
    table_elements: usize,
    memories: usize,
    tables: usize,
    instances: usize,
    pub(crate) hit_memory_limit: bool,
}

impl ResourceLimiter for StoreLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let others = self.memory_used.saturating_sub(current);
        let total = others.saturating_add(desired);
        if total > self.memory {
            // Trap at once: the process ends with an out-of-memory reason instead of
            // limping on with a failed allocation.
            self.hit_memory_limit = true;
            return Err(wasmtime::Error::msg(format!(
                "linear memory limit of {} bytes reached (wanted {total} for all memories together)",
                self.memory
            )));
        }
        self.memory_used = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= self.table_elements)
    }

    fn instances(&self) -> usize {
        self.instances
    }

    fn tables(&self) -> usize {
        self.tables
    }

    fn memories(&self) -> usize {
        self.memories
    }
}

/// The counts of a component's instance that a policy caps, as the process's
/// exit reason names them when instantiation passes one: wasmtime refuses the core
/// instance, memory or table past the store's limit with this text.
pub(crate) fn count_limit_hit(limits: &Limits, error: &str) -> Option<String> {
    let rest = error.strip_prefix("resource limit exceeded: ")?;
    let (what, key, limit) = if rest.starts_with("instance count") {
        ("core instances", "instances", limits.instances)
    } else if rest.starts_with("memory count") {
        ("linear memories", "memories", limits.memories)
    } else if rest.starts_with("table count") {
        ("tables", "tables", limits.tables)
    } else {
        return None;
    };
    Some(format!(
        "the component needs more {what} than the {limit} its policy allows (limit `{key}`)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(text: &str) -> Policy {
        Policy::parse(text, std::path::Path::new("test.toml")).expect("a valid policy")
    }

    #[test]
    fn all_memories_count_against_one_limit() {
        let mut limiter = Limits::resolve(
            &policy("[limits]\nmemory = \"64 MiB\"\n"),
            &WasmConfig::default(),
        )
        .unwrap()
        .limiter();
        const MIB: usize = 1 << 20;
        // Two memories created at 16 MiB each, then the first grown to 40 MiB.
        assert!(limiter.memory_growing(0, 16 * MIB, None).unwrap());
        assert!(limiter.memory_growing(0, 16 * MIB, None).unwrap());
        assert!(limiter.memory_growing(16 * MIB, 40 * MIB, None).unwrap());
        // A third memory of 16 MiB would make 72 MiB.
        assert!(limiter.memory_growing(0, 16 * MIB, None).is_err());
        assert!(limiter.hit_memory_limit);
    }

    #[test]
    fn the_memory_budget_admits_grants_up_to_its_size_and_takes_back_ended_ones() {
        let budget = Arc::new(MemoryBudget::new(100));
        let first = budget.admit(60).unwrap();
        let why = budget.admit(41).err().unwrap();
        assert!(why.contains("grants of 60 bytes"), "{why}");
        assert!(why.contains("memory budget of 100 bytes"), "{why}");
        let second = budget.admit(40).unwrap();
        assert_eq!(budget.granted(), 100);
        drop(first);
        assert_eq!(budget.granted(), 40);
        let _third = budget.admit(60).unwrap();
        drop(second);
        assert_eq!(budget.granted(), 60);
    }

    #[test]
    fn a_policy_without_limits_gets_the_node_defaults() {
        let config = WasmConfig::default();
        let limits = Limits::resolve(&policy(""), &config).unwrap();
        assert_eq!(limits.memory, config.default_memory_limit);
        assert_eq!(limits.table_elements, config.pool.table_elements);
        assert_eq!(limits.fuel, None);
        assert_eq!(limits.deadline, None);
        assert_eq!(limits.mailbox, None);
    }

    #[test]
    fn memory_is_capped_by_what_the_allocator_can_hold() {
        let config = WasmConfig::default();
        let limits = Limits::resolve(&policy("[limits]\nmemory = \"64 GiB\"\n"), &config).unwrap();
        assert_eq!(limits.memory, config.max_memory_size());
    }

    #[test]
    fn fuel_needs_a_metering_node() {
        let text = "[limits]\nfuel = 1000\n";
        let err = Limits::resolve(&policy(text), &WasmConfig::default()).unwrap_err();
        assert!(matches!(err, SpawnError::NotPermitted(_)), "{err}");
        let metering = WasmConfig {
            fuel_metering: true,
            ..WasmConfig::default()
        };
        assert_eq!(
            Limits::resolve(&policy(text), &metering).unwrap().fuel,
            Some(1000)
        );
        assert_eq!(
            Limits::resolve(&policy(""), &metering).unwrap().fuel,
            Some(u64::MAX)
        );
    }

    #[test]
    fn the_earlier_deadline_wins_and_the_smaller_mailbox() {
        let limits = Limits::resolve(
            &policy("[limits]\ndeadline = \"2s\"\nmailbox = 10\n"),
            &WasmConfig::default(),
        )
        .unwrap();
        let short = limits.with_deadline(Some(Duration::from_secs(1)));
        assert_eq!(short.deadline, Some(Duration::from_secs(1)));
        let long = limits.with_deadline(Some(Duration::from_secs(5)));
        assert_eq!(long.deadline, Some(Duration::from_secs(2)));
        let asked = MailboxConfig {
            capacity: Some(100),
            overflow: Overflow::DropNewest,
            ..MailboxConfig::default()
        };
        assert_eq!(limits.mailbox(asked).capacity, Some(10));
        let small = MailboxConfig {
            capacity: Some(5),
            overflow: Overflow::DropNewest,
            ..MailboxConfig::default()
        };
        assert_eq!(limits.mailbox(small).capacity, Some(5));
    }
}
