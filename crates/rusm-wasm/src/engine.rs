//! The one wasmtime `Engine` of a node and its configuration.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::arena::{
    ArenaConfig, MachineLimits, MemoryArena, MemoryArenaCreator, StackArena, StackArenaCreator,
};
use crate::preempt::Preemption;

/// How a node allocates instances, linear memories and fiber stacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allocator {
    /// Memories and stacks carved from a few large mappings (see [`ArenaConfig`]): a
    /// live actor costs no address-space mapping of its own, and an idle handler-style
    /// actor no fiber stack, so a node holds as many actors as its memory allows.
    /// Memories have no guard region (compiled code checks bounds) and are initialised
    /// by copying their data segments. The default.
    Arena(ArenaConfig),
    /// wasmtime's pooling allocator sized by [`WasmConfig::pool`], with guard regions
    /// and copy-on-write memory images: each live instance costs a few mappings and
    /// each pooled stack two, all made at node start, so `vm.max_map_count` (65,530 by
    /// default) caps a node near 10,000 instances.
    Pooling,
}

impl Default for Allocator {
    fn default() -> Allocator {
        Allocator::Arena(ArenaConfig::default())
    }
}

/// Sizes of the pooling instance allocator (used with [`Allocator::Pooling`]). Every pooled slot is reserved up front as
/// virtual memory (not resident), so totals can be generous.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// Component instances alive at once (one per wasm process).
    pub total_component_instances: u32,
    /// Core instances alive at once (a Rust guest component has a few each).
    pub total_core_instances: u32,
    /// Linear memories alive at once.
    pub total_memories: u32,
    /// Tables alive at once.
    pub total_tables: u32,
    /// Fiber stacks alive at once (one per running or blocked wasm process).
    pub total_stacks: u32,
    /// The largest linear memory one instance may have, in bytes; also the address
    /// space reserved per pooled memory slot.
    pub max_memory_size: usize,
    /// Elements per table.
    pub table_elements: usize,
}

impl Default for PoolConfig {
    /// [`PoolConfig::for_machine`] of this machine.
    fn default() -> PoolConfig {
        PoolConfig::for_machine(&MachineLimits::detect())
    }
}

impl PoolConfig {
    /// The most instances a default pool holds, whatever the machine.
    pub const MAX_DEFAULT_INSTANCES: u32 = 10_000;

    /// A pool of `n` instances: `n` component instances, memories and fiber stacks,
    /// `4n` core instances (a Rust guest component has a few) and `2n` tables; memories
    /// of at most 64 MiB.
    pub fn with_instances(n: u32) -> PoolConfig {
        PoolConfig {
            total_component_instances: n,
            total_core_instances: n.saturating_mul(4),
            total_memories: n,
            total_tables: n.saturating_mul(2),
            total_stacks: n,
            max_memory_size: 64 << 20,
            table_elements: 20_000,
        }
    }

    /// The default pool for a machine: [`PoolConfig::with_instances`] of
    /// `min(10,000, (max_map_count - 5,000) / 6)` (at least 1), because the pooling
    /// allocator maps every stack slot at node start (two mappings each) and a few per
    /// live instance: 10,000 under Linux's default `max_map_count` of 65,530.
    pub fn for_machine(machine: &MachineLimits) -> PoolConfig {
        PoolConfig::with_instances(
            machine
                .pool_instances()
                .clamp(1, PoolConfig::MAX_DEFAULT_INSTANCES),
        )
    }
}

/// The most bytes a node's key-value store holds when its configuration names no
/// other size ([`WasmConfig::kv_max_bytes`]): 1 GiB.
pub const DEFAULT_KV_MAX_BYTES: u64 = 1 << 30;

/// Configuration of a node's wasm engine.
#[derive(Debug, Clone)]
pub struct WasmConfig {
    /// How instances, memories and stacks are allocated.
    pub allocator: Allocator,
    /// Pooling allocator sizes (with [`Allocator::Pooling`]; `table_elements` bounds
    /// tables with either allocator).
    pub pool: PoolConfig,
    /// How guests that run long are preempted: by default a guest that has run about
    /// [`Preemption::DEFAULT_SLICE`] (1 ms) without returning to the scheduler yields,
    /// and nothing is paid while guests return sooner (see [`Preemption`]).
    pub preemption: Preemption,
    /// The host stack each wasm process runs on (wasmtime fiber), in bytes.
    pub async_stack_size: usize,
    /// The deepest wasm stack allowed, in bytes; deeper recursion is a stack-overflow
    /// trap. Must be smaller than `async_stack_size`.
    pub max_wasm_stack: usize,
    /// The default linear-memory limit per process (a policy may set its own, never
    /// above [`WasmConfig::max_memory_size`]).
    pub default_memory_limit: usize,
    /// A directory for wasmtime's compiled-code cache, so a component already compiled
    /// once is loaded without compiling again. `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// Count fuel (roughly, instructions) so policies may set a `fuel` limit. Costs
    /// some speed for every process, so it is off unless asked for.
    pub fuel_metering: bool,
    /// How long a new wasm process waits for a free slot when every slot is taken
    /// ([`WasmConfig::max_instances`]). A process still waiting after this ends
    /// with a reason that says so, instead of failing inside wasmtime.
    pub instance_wait: Duration,
    /// Bytes of linear memory the node may grant its live wasm processes together:
    /// the sum of their `memory` limits (each counted from its spawn until its store
    /// is gone). A spawn that would pass it is refused with
    /// [`SpawnError::Unavailable`](crate::SpawnError::Unavailable) (a guest's `spawn`
    /// with `unavailable`), naming the budget. Default:
    /// [`MachineLimits::memory_budget`].
    pub memory_budget: u64,
    /// The redb database file the node keeps its `wasi:keyvalue` buckets in (created
    /// when missing, locked while the node runs). `None` keeps them in memory, for the
    /// node's life only.
    pub kv_path: Option<PathBuf>,
    /// The most the node's key-value store holds, every bucket's keys and values
    /// together, in bytes ([`DEFAULT_KV_MAX_BYTES`], 1 GiB, by default).
    pub kv_max_bytes: u64,
}

impl Default for WasmConfig {
    fn default() -> WasmConfig {
        WasmConfig {
            allocator: Allocator::default(),
            pool: PoolConfig::default(),
            preemption: Preemption::default(),
            async_stack_size: 2 << 20,
            max_wasm_stack: 1 << 20,
            default_memory_limit: 64 << 20,
            cache_dir: None,
            fuel_metering: false,
            instance_wait: Duration::from_secs(5),
            memory_budget: MachineLimits::detect().memory_budget(),
            kv_path: None,
            kv_max_bytes: DEFAULT_KV_MAX_BYTES,
        }
    }
}

impl WasmConfig {
    /// The most instances alive at once: the arena's `max_instances`, or what the pool
    /// holds (`min(total_component_instances, total_memories, total_stacks)`).
    pub fn max_instances(&self) -> u32 {
        match &self.allocator {
            Allocator::Arena(arena) => arena.max_instances,
            Allocator::Pooling => self
                .pool
                .total_component_instances
                .min(self.pool.total_memories)
                .min(self.pool.total_stacks),
        }
    }

    /// The largest linear memory an instance may have, in bytes (the arena's
    /// `memory_span`, or the pool's `max_memory_size`).
    pub fn max_memory_size(&self) -> usize {
        match &self.allocator {
            Allocator::Arena(arena) => arena.memory_span,
            Allocator::Pooling => self.pool.max_memory_size,
        }
    }

    /// Check that this configuration fits `machine`: with the arena allocator,
    /// `max_instances` linear-memory spans and fiber-stack slots must fit in
    /// [`MachineLimits::arena_address_space`]; with the pooling allocator, the pool
    /// must fit under `max_map_count` ([`MachineLimits::pool_instances`]).
    ///
    /// # Errors
    /// A sentence naming the setting, what it needs and what the machine allows.
    pub fn check(&self, machine: &MachineLimits) -> Result<(), String> {
        match &self.allocator {
            Allocator::Arena(arena) => {
                let each = arena.address_space_per_instance(self.async_stack_size);
                let most = machine.arena_address_space() / each.max(1);
                if u64::from(arena.max_instances) > most {
                    return Err(format!(
                        "max_instances {} needs {} GiB of address space ({} MiB each: its memory span and fiber stack), but this process may use {} GiB for the arena; at most {most} instances fit (or lower the memory span)",
                        arena.max_instances,
                        (u64::from(arena.max_instances) * each) >> 30,
                        each >> 20,
                        machine.arena_address_space() >> 30,
                    ));
                }
                Ok(())
            }
            Allocator::Pooling => {
                let most = machine.pool_instances();
                let asked = self.pool.total_stacks.max(self.pool.total_memories);
                if asked > most {
                    return Err(format!(
                        "a pool of {asked} instances needs about {} mappings, but vm.max_map_count is {}; at most {most} instances fit (or use the arena allocator)",
                        u64::from(asked) * 6 + 5_000,
                        machine.max_map_count
                    ));
                }
                Ok(())
            }
        }
    }

    /// Which limits bound [`WasmConfig::max_instances`], for error messages.
    pub(crate) fn instance_limits(&self) -> String {
        match &self.allocator {
            Allocator::Arena(arena) => format!(
                "the node holds {} running instances: ArenaConfig max_instances",
                arena.max_instances
            ),
            Allocator::Pooling => {
                let pool = &self.pool;
                format!(
                    "the node's pool holds {} running instances: PoolConfig total_component_instances {}, total_memories {}, total_stacks {}",
                    self.max_instances(),
                    pool.total_component_instances,
                    pool.total_memories,
                    pool.total_stacks
                )
            }
        }
    }
}

/// Build the engine (async support is always on in this wasmtime): epoch interruption,
/// component model, and the configured allocator.
pub(crate) fn build_engine(config: &WasmConfig) -> wasmtime::Result<Engine> {
    config
        .check(&MachineLimits::detect())
        .map_err(wasmtime::Error::msg)?;
    let mut cfg = Config::new();
    cfg.epoch_interruption(true)
        .wasm_component_model(true)
        // wasi:http 0.3 services: async exports, one instance serving many calls.
        .wasm_component_model_async(true)
        .async_stack_size(config.async_stack_size)
        .max_wasm_stack(config.max_wasm_stack)
        .consume_fuel(config.fuel_metering);
    match &config.allocator {
        Allocator::Arena(arena) => {
            // No reservation and no guard: compiled code checks every access against
            // the memory's length, and memories never move (they grow in their span).
            cfg.memory_init_cow(false)
                .memory_reservation(0)
                .memory_guard_size(0)
                .memory_reservation_for_growth(0)
                .memory_may_move(false)
                .allocation_strategy(InstanceAllocationStrategy::OnDemand)
                .with_host_memory(Arc::new(MemoryArenaCreator(Arc::new(MemoryArena::new(
                    arena,
                )))))
                .with_host_stack(Arc::new(StackArenaCreator(StackArena::new(
                    arena,
                    config.async_stack_size,
                )?)));
        }
        Allocator::Pooling => {
            cfg.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling(config)))
                .memory_init_cow(true)
                .memory_reservation(config.pool.max_memory_size as u64)
                .memory_guard_size(64 << 10)
                .memory_reservation_for_growth(0);
        }
    }
    if let Some(dir) = &config.cache_dir {
        let mut cache = wasmtime::CacheConfig::new();
        cache.with_directory(dir);
        cfg.cache(Some(wasmtime::Cache::new(cache)?));
    }
    Engine::new(&cfg)
}

fn pooling(config: &WasmConfig) -> PoolingAllocationConfig {
    let mut pool = PoolingAllocationConfig::default();
    let p = &config.pool;
    pool.total_component_instances(p.total_component_instances)
        .total_core_instances(p.total_core_instances)
        .total_memories(p.total_memories)
        .total_tables(p.total_tables)
        .total_stacks(p.total_stacks)
        .max_memory_size(p.max_memory_size)
        .table_elements(p.table_elements)
        .max_core_instances_per_component(50)
        .max_memories_per_component(10)
        .max_tables_per_component(50);
    pool
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIB: u64 = 1 << 40;

    fn machine(physical_memory: u64, address_space: u64, max_map_count: u64) -> MachineLimits {
        MachineLimits {
            physical_memory,
            address_space,
            max_map_count,
        }
    }

    #[test]
    fn arena_defaults_follow_memory_and_address_space() {
        // 24 GiB and the full 47-bit address space: memory is the bound (16 KiB per
        // actor), and the 112 TiB of spans and stacks would hold more (68 MiB each:
        // the span, and the stack and its guard in a 4 MiB slot).
        let big = ArenaConfig::for_machine(&machine(24 << 30, 128 * TIB, 65_530));
        let each = big.address_space_per_instance(2 << 20);
        assert_eq!(each, (64 << 20) + (4 << 20));
        assert_eq!(big.max_instances, 24 << 16);
        assert!(112 * TIB / each > u64::from(big.max_instances));
        // 1 TiB of memory: the address space is the bound.
        let huge = ArenaConfig::for_machine(&machine(TIB, 128 * TIB, 65_530));
        assert_eq!(u64::from(huge.max_instances), 112 * TIB / each);
        // 1 GiB of memory: 16 KiB per actor at least.
        let small = ArenaConfig::for_machine(&machine(1 << 30, 128 * TIB, 65_530));
        assert_eq!(small.max_instances, 65_536);
        assert_eq!(small.open_stacks, 2048);
        // Open stacks take at most an eighth of the mappings a process may hold.
        let few_maps = ArenaConfig::for_machine(&machine(1 << 30, 128 * TIB, 16_384));
        assert_eq!(few_maps.open_stacks, 1024);
        // An 8 GiB RLIMIT_AS leaves half of it for spans and stacks.
        let limited = ArenaConfig::for_machine(&machine(24 << 30, 8 << 30, 65_530));
        assert_eq!(u64::from(limited.max_instances), (4 << 30) / each);
    }

    #[test]
    fn a_configuration_larger_than_the_machine_is_refused() {
        let m = machine(24 << 30, 8 << 30, 65_530);
        let fits = WasmConfig {
            allocator: Allocator::Arena(ArenaConfig::for_machine(&m)),
            ..WasmConfig::default()
        };
        assert_eq!(fits.check(&m), Ok(()));
        let too_many = WasmConfig {
            allocator: Allocator::Arena(ArenaConfig {
                max_instances: 1_000,
                ..ArenaConfig::for_machine(&m)
            }),
            ..WasmConfig::default()
        };
        let why = too_many.check(&m).unwrap_err();
        assert!(
            why.starts_with("max_instances 1000 needs 66 GiB of address space"),
            "{why}"
        );
        assert!(why.contains("at most 60 instances fit"), "{why}");
    }

    #[test]
    fn pool_defaults_follow_max_map_count() {
        let default = machine(24 << 30, 128 * TIB, 65_530);
        assert_eq!(
            PoolConfig::for_machine(&default).total_stacks,
            PoolConfig::MAX_DEFAULT_INSTANCES
        );
        let low = machine(24 << 30, 128 * TIB, 20_000);
        let pool = PoolConfig::for_machine(&low);
        assert_eq!(pool.total_component_instances, 2_500);
        assert_eq!(pool.total_core_instances, 10_000);
        let config = WasmConfig {
            allocator: Allocator::Pooling,
            pool: PoolConfig::with_instances(10_000),
            ..WasmConfig::default()
        };
        let why = config.check(&low).unwrap_err();
        assert!(
            why.contains("vm.max_map_count is 20000; at most 2500 instances fit"),
            "{why}"
        );
        assert_eq!(config.check(&default), Ok(()));
    }
}
