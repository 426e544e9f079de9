//! The one wasmtime `Engine` of a node, and the thread that drives epoch preemption.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Sizes of the pooling instance allocator. Every pooled slot is reserved up front as
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
    /// Pooling allocator sizes.
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
    /// above `pool.max_memory_size`).
    pub default_memory_limit: usize,
    /// A directory for wasmtime's compiled-code cache, so a component already compiled
    /// once is loaded without compiling again. `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// Count fuel (roughly, instructions) so policies may set a `fuel` limit. Costs
    /// some speed for every process, so it is off unless asked for.
    pub fuel_metering: bool,
    /// How long a new wasm process waits for a free slot in the pool when every slot
    /// is taken (the pool holds `min(total_component_instances, total_memories,
    /// total_stacks)` running instances). A process still waiting after this ends
    /// with a reason that says so, instead of failing inside wasmtime.
    pub instance_wait: Duration,
}

impl Default for WasmConfig {
    fn default() -> WasmConfig {
        WasmConfig {
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

/// Build the engine (async support is always on in this wasmtime): epoch interruption, component model, pooling allocator and
/// copy-on-write memory images.
pub(crate) fn build_engine(config: &WasmConfig) -> wasmtime::Result<Engine> {
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

    let mut cfg = Config::new();
    cfg.epoch_interruption(true)
        .wasm_component_model(true)
        .memory_init_cow(true)
        .async_stack_size(config.async_stack_size)
        .max_wasm_stack(config.max_wasm_stack)
        .memory_reservation(p.max_memory_size as u64)
        .memory_guard_size(64 << 10)
        .memory_reservation_for_growth(0)
        .consume_fuel(config.fuel_metering)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    if let Some(dir) = &config.cache_dir {
        let mut cache = wasmtime::CacheConfig::new();
        cache.with_directory(dir);
        cfg.cache(Some(wasmtime::Cache::new(cache)?));
    }
    Engine::new(&cfg)
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
