//! What the machine allows a node: physical memory, address space and mappings,
//! the limits every default size is derived from.

/// What the machine allows a node: the limits its default sizes are derived from
/// ([`ArenaConfig::for_machine`](super::ArenaConfig::for_machine), [`PoolConfig::for_machine`](crate::PoolConfig::for_machine)) and that
/// [`WasmConfig::check`](crate::WasmConfig::check) holds a configuration to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MachineLimits {
    /// Physical memory, in bytes (`sysconf(_SC_PHYS_PAGES)` x page size).
    pub physical_memory: u64,
    /// Virtual address space a process may use, in bytes: the 47-bit user half of
    /// x86-64 and aarch64 (128 TiB), or `RLIMIT_AS` when that is lower.
    pub address_space: u64,
    /// Mappings a process may hold (`/proc/sys/vm/max_map_count`; 65,530 when it cannot
    /// be read).
    pub max_map_count: u64,
}

impl MachineLimits {
    /// The smallest a wasm actor can cost in resident memory, in bytes: its touched
    /// linear-memory pages (a Rust guest's data, shadow stack and heap) and the host's
    /// store, instance and process state. `max_instances` defaults to physical memory
    /// divided by this, so a node never admits more actors than could ever fit.
    pub const MIN_ACTOR_BYTES: u64 = 16 << 10;

    /// How many times physical memory a node grants its processes by default
    /// ([`MachineLimits::memory_budget`]): 1,024, so that every process granted the
    /// default 64 MiB can hold at least 64 KiB resident (an idle Rust actor holds
    /// 20-45 KB).
    pub const MEMORY_OVERCOMMIT: u64 = 1024;

    /// The default [`WasmConfig::memory_budget`](crate::WasmConfig::memory_budget):
    /// physical memory times [`MachineLimits::MEMORY_OVERCOMMIT`], so a node admits
    /// processes by the memory their policies grant, not only by their number
    /// (default-policy processes stop at a quarter of the default instance cap).
    pub fn memory_budget(&self) -> u64 {
        self.physical_memory
            .saturating_mul(MachineLimits::MEMORY_OVERCOMMIT)
    }

    /// The limits of this machine and process.
    pub fn detect() -> MachineLimits {
        let physical_memory = super::physical_memory().unwrap_or(8 << 30);
        let rlimit_as = super::address_space_limit().unwrap_or(u64::MAX);
        let max_map_count = std::fs::read_to_string("/proc/sys/vm/max_map_count")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(65_530);
        MachineLimits {
            physical_memory,
            address_space: rlimit_as.min(1 << 47),
            max_map_count,
        }
    }

    /// The address space the arena may reserve: all but 16 TiB of what the process
    /// may use (112 TiB of the 47-bit 128 TiB), or half of it if that is more, leaving
    /// the rest to the host's heap, code and everything else.
    pub fn arena_address_space(&self) -> u64 {
        const KEEP: u64 = 16 << 40;
        (self.address_space / 2).max(self.address_space.saturating_sub(KEEP))
    }

    /// The most instances the pooling allocator can hold under `max_map_count`: it maps
    /// two per pooled stack at node start and about four per live instance, and the
    /// process needs a few thousand for everything else.
    pub fn pool_instances(&self) -> u32 {
        let usable = self.max_map_count.saturating_sub(5_000) / 6;
        u32::try_from(usable).unwrap_or(u32::MAX)
    }
}
