//! The one wasmtime `Engine` of a node, and the thread that drives epoch preemption.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::arena::{ArenaConfig, MemoryArena, MemoryArenaCreator, StackArena, StackArenaCreator};

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
    fn default() -> PoolConfig {
        PoolConfig {
            total_component_instances: 10_000,
            total_core_instances: 40_000,
            total_memories: 10_000,
            total_tables: 20_000,
            total_stacks: 10_000,
            max_memory_size: 64 << 20,
            table_elements: 20_000,
        }
    }
}

/// Configuration of a node's wasm engine.
#[derive(Debug, Clone)]
pub struct WasmConfig {
    /// How instances, memories and stacks are allocated.
    pub allocator: Allocator,
    /// Pooling allocator sizes (with [`Allocator::Pooling`]; `table_elements` bounds
    /// tables with either allocator).
    pub pool: PoolConfig,
    /// How often the epoch advances; every running wasm process yields once per tick,
    /// and a kill takes effect within a tick or two.
    pub epoch_tick: Duration,
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
}

impl Default for WasmConfig {
    fn default() -> WasmConfig {
        WasmConfig {
            allocator: Allocator::default(),
            pool: PoolConfig::default(),
            epoch_tick: Duration::from_millis(10),
            async_stack_size: 2 << 20,
            max_wasm_stack: 1 << 20,
            default_memory_limit: 64 << 20,
            cache_dir: None,
            fuel_metering: false,
            instance_wait: Duration::from_secs(5),
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
    let mut cfg = Config::new();
    cfg.epoch_interruption(true)
        .wasm_component_model(true)
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

/// The dedicated OS thread that advances the epoch. Preemption never depends on a tokio
/// task being scheduled: this thread ticks even when every worker is busy.
pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    pub(crate) fn start(engine: Engine, tick: Duration) -> std::io::Result<EpochTicker> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("rusm-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    engine.increment_epoch();
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
