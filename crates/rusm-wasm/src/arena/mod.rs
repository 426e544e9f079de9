//! The arena allocator: linear memories and fiber stacks carved out of a few large
//! mappings, so that a live actor costs no address-space mapping of its own.
//!
//! Linux bounds the mappings of a process (`vm.max_map_count`, 65,530 by default).
//! wasmtime's pooling allocator gives every live instance several of them (its
//! memory slot is split where the accessible part ends, the copy-on-write image is a
//! mapping of its own) and every pooled fiber stack two (its guard page and the stack),
//! which caps a node near 10,000 actors. Here:
//!
//! - **Memories** are fixed-size spans of one read-write `MAP_NORESERVE` chunk
//!   (`ArenaConfig::memory_span` each, many spans per chunk). Nothing protects the end
//!   of a memory, so the engine is configured without guard regions and compiled code
//!   checks every access against the memory's current length; growth stays inside the
//!   span, never moves, and a freed span is returned to the kernel
//!   (`MADV_DONTNEED`), so the next memory carved from it starts zeroed; if the kernel
//!   refuses, the span is zeroed by hand before it is reused.
//! - **Fiber stacks** are slots of a `PROT_NONE` chunk: a guard region then the stack.
//!   A stack is read-write while a guest call runs on it (the [`StackScope`] around the
//!   call opens it) and, after the call, while it is among the node's recently used
//!   open stacks (`ArenaConfig::open_stacks`, chosen by a clock sweep) and has been
//!   used within `ArenaConfig::idle_stack_close`. Then it is closed: its pages are
//!   dropped and it goes back to `PROT_NONE`, where the kernel merges it into the
//!   surrounding mapping. So a busy actor pays no system call per call, an open stack
//!   costs two mappings, an idle actor's none, and the guard stays inaccessible all
//!   the time: a host stack overflow faults, it never reaches a neighbour. A stack is
//!   closed only under its lease's lock and only when no call of its store runs (every
//!   call takes that lock to start), so closing never races a call starting on another
//!   worker. A stack created outside any scope (for example for an HTTP request) stays
//!   open until its store drops.
//!
//! A store caches the last fiber stack it ran on until it is dropped (wasmtime has no
//! public call that returns it earlier), which is why stacks are closed in place
//! rather than returned.

// The arena maps and protects memory itself and implements wasmtime's unsafe
// allocator traits; everything unsafe stays in this module.
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::ops::Range;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use wasmtime::{LinearMemory, MemoryCreator, MemoryType, StackCreator, StackMemory};

mod machine;

pub use machine::MachineLimits;

/// Sizes of the arena allocator (the default; see [`crate::Allocator`]).
///
/// The default ([`ArenaConfig::for_machine`] of this machine) admits as many instances
/// as the machine could hold: physical memory divided by
/// [`MachineLimits::MIN_ACTOR_BYTES`] (65,536 per GiB), and no more than
/// [`MachineLimits::arena_address_space`] can reserve (each instance reserves its memory
/// span and a fiber-stack slot, 68 MiB by default: about 1,700,000 on a 64-bit
/// machine).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArenaConfig {
    /// Instances alive at once; more spawns wait (`WasmConfig::instance_wait`).
    pub max_instances: u32,
    /// Address space reserved for each linear memory, in bytes: the largest a memory
    /// may grow to. Only touched pages are resident.
    pub memory_span: usize,
    /// Memory spans per chunk mapping.
    pub memories_per_chunk: usize,
    /// Fiber stacks per chunk mapping.
    pub stacks_per_chunk: usize,
    /// Inaccessible bytes below every fiber stack.
    pub stack_guard_size: usize,
    /// How many fiber stacks of handler-style actors stay open (read-write) between
    /// calls, node-wide. A stack whose call has ended is kept open while it is among
    /// the most recently used (a clock sweep chooses which to close when the set is
    /// full), so a busy actor pays no system call per message; each open stack costs
    /// two mappings and its touched pages. `0` closes every stack as soon as its call
    /// ends.
    pub open_stacks: usize,
    /// An open stack that no call has used for between this long and twice this long
    /// is closed by a background sweep, so idle actors hold no open stack.
    /// `Duration::ZERO` turns the sweep off (stacks then close only when the set of
    /// open stacks is full).
    pub idle_stack_close: Duration,
}

impl Default for ArenaConfig {
    /// [`ArenaConfig::for_machine`] of this machine.
    fn default() -> ArenaConfig {
        ArenaConfig::for_machine(&MachineLimits::detect())
    }
}

impl ArenaConfig {
    /// The default fiber stack a node's instances run on (`WasmConfig::async_stack_size`),
    /// which [`ArenaConfig::for_machine`] counts in each instance's address space.
    const DEFAULT_STACK: u64 = 2 << 20;

    /// The default sizes for `machine`: 64 MiB memory spans, 256 per chunk (16 GiB
    /// chunks), 512 stack slots per chunk with guards of at least 64 KiB, 2,048 stacks
    /// kept open (fewer when `max_map_count / 16` is less) and a 1 s idle sweep, and `max_instances` the lower of physical memory divided
    /// by [`MachineLimits::MIN_ACTOR_BYTES`] and the instances whose memory span and
    /// fiber stack fit in [`MachineLimits::arena_address_space`] (at least 1).
    pub fn for_machine(machine: &MachineLimits) -> ArenaConfig {
        let mut config = ArenaConfig {
            max_instances: 1,
            memory_span: 64 << 20,
            memories_per_chunk: 256,
            stacks_per_chunk: 512,
            stack_guard_size: 64 << 10,
            // Two mappings each: at most an eighth of what the process may hold.
            open_stacks: usize::try_from(machine.max_map_count / 16)
                .unwrap_or(usize::MAX)
                .min(2048),
            idle_stack_close: Duration::from_secs(1),
        };
        let by_memory = machine.physical_memory / MachineLimits::MIN_ACTOR_BYTES;
        let by_address_space = machine.arena_address_space()
            / config.address_space_per_instance(ArenaConfig::DEFAULT_STACK as usize);
        config.max_instances =
            u32::try_from(by_memory.min(by_address_space).max(1)).unwrap_or(u32::MAX);
        config
    }

    /// The address space one instance reserves: its memory span and a fiber-stack slot
    /// (guard and stack) of `stack_size` bytes.
    pub fn address_space_per_instance(&self, stack_size: usize) -> u64 {
        let span = round_up(self.memory_span.max(1), page_size());
        (span as u64).saturating_add(stack_stride(self, stack_size) as u64)
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
}

/// Physical memory in bytes, when the system tells.
pub(crate) fn physical_memory() -> Option<u64> {
    // SAFETY: sysconf has no preconditions.
    let pages = unsafe { libc::sysconf(libc::_SC_PHYS_PAGES) };
    let pages = u64::try_from(pages).ok().filter(|&p| p > 0)?;
    Some(pages.saturating_mul(page_size() as u64))
}

/// The process's `RLIMIT_AS` in bytes, when it has one.
pub(crate) fn address_space_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid out-pointer.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut limit) };
    (got == 0 && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

/// The address range one page-table page maps (2 MiB with 4 KiB pages), capped at
/// 4 MiB. A stack slot spans whole such ranges, so when its pages are discarded the
/// kernel can free its page table too (it only frees tables whose whole range is
/// discarded); otherwise every stack that ever ran keeps a 4 KiB table.
fn page_table_span() -> usize {
    let page = page_size();
    let span = page * (page / 8);
    if span <= 4 << 20 { span } else { page }
}

fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

/// Why a mapping call failed, naming `vm.max_map_count` when that is the likely cause.
fn mapping_error(what: &str, err: std::io::Error) -> String {
    if err.raw_os_error() == Some(libc::ENOMEM) {
        format!(
            "{what}: out of memory or of address-space mappings (vm.max_map_count is {}): {err}",
            std::fs::read_to_string("/proc/sys/vm/max_map_count")
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| "unknown".into())
        )
    } else {
        format!("{what}: {err}")
    }
}

/// [`map`] of `len` bytes starting at a multiple of `align` (a power of two): map
/// `align` more, then unmap what lies outside. The chunk is left out of core dumps
/// (`MADV_DONTDUMP`: guests' memories and stacks are not the host's state, and a
/// chunk's terabytes of reserved span would make any dump huge), which also keeps the
/// kernel from merging it with the host's own heap mappings, so `/proc/self/smaps`
/// tells them apart (the `dd` flag).
fn map_aligned(len: usize, align: usize, prot: libc::c_int) -> std::io::Result<usize> {
    let base = map_aligned_inner(len, align, prot)?;
    // SAFETY: advice on a fresh mapping of ours; failing only leaves it dumpable.
    unsafe { libc::madvise(base as *mut libc::c_void, len, libc::MADV_DONTDUMP) };
    Ok(base)
}

fn map_aligned_inner(len: usize, align: usize, prot: libc::c_int) -> std::io::Result<usize> {
    let page = page_size();
    if align <= page {
        return map(len, prot);
    }
    let raw = map(len + align, prot)?;
    let base = round_up(raw, align);
    // SAFETY: both ranges are parts of the fresh mapping just made, used by nobody.
    unsafe {
        if base > raw {
            libc::munmap(raw as *mut libc::c_void, base - raw);
        }
        let end = base + len;
        let raw_end = raw + len + align;
        if raw_end > end {
            libc::munmap(end as *mut libc::c_void, raw_end - end);
        }
    }
    Ok(base)
}

/// Map `len` bytes of private anonymous memory that is not charged to the commit limit.
fn map(len: usize, prot: libc::c_int) -> std::io::Result<usize> {
    // SAFETY: a fresh anonymous mapping at an address the kernel chooses touches no
    // existing memory.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            prot,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(ptr as usize)
    }
}

/// Drop the pages of `[start, start + len)`; `Ok` means they read as zero afterwards.
/// The kernel may refuse (`madvise` fails, say with `EAGAIN` or `ENOMEM`): then the
/// pages keep what was written to them, and the caller must not hand the range to
/// anyone else as it is.
///
/// # Safety
/// The range must be owned by the caller and not in use.
unsafe fn discard(start: usize, len: usize) -> std::io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    #[cfg(test)]
    if tests::FAIL_DISCARD.with(|fail| fail.replace(false)) {
        return Err(std::io::Error::from_raw_os_error(libc::EAGAIN));
    }
    // SAFETY: per the caller; advice on an owned anonymous range.
    if unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// [`discard`] a read-write range, or, if the kernel refuses, zero it by hand: either
/// way it reads as zero afterwards (the pages stay resident in the second case).
///
/// # Safety
/// The range must be owned by the caller, read-write, and not in use.
unsafe fn discard_or_zero(start: usize, len: usize) {
    // SAFETY: per the caller.
    if let Err(e) = unsafe { discard(start, len) } {
        tracing::debug!(error = %e, len, "madvise(MADV_DONTNEED) failed; zeroing the range instead");
        // SAFETY: per the caller: ours, read-write, unused.
        unsafe { std::ptr::write_bytes(start as *mut u8, 0, len) };
    }
}

/// # Safety
/// The range must be owned by the caller and not in use by anyone else.
unsafe fn protect(start: usize, len: usize, prot: libc::c_int) -> std::io::Result<()> {
    // SAFETY: per the caller.
    if unsafe { libc::mprotect(start as *mut libc::c_void, len, prot) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Fixed-size slots carved out of chunk mappings made on demand, with a free list.
struct Slots {
    stride: usize,
    per_chunk: usize,
    prot: libc::c_int,
    /// Chunks start at a multiple of this.
    align: usize,
    free: Vec<usize>,
    /// The chunk being carved, and how many of its slots are handed out.
    current: Option<(usize, usize)>,
    /// Every chunk mapped, unmapped when the arena drops.
    chunks: Vec<usize>,
}

impl Slots {
    fn new(stride: usize, per_chunk: usize, prot: libc::c_int, align: usize) -> Slots {
        Slots {
            stride,
            per_chunk: per_chunk.max(1),
            prot,
            align,
            free: Vec::new(),
            current: None,
            chunks: Vec::new(),
        }
    }

    fn take(&mut self, what: &str) -> Result<usize, String> {
        if let Some(slot) = self.free.pop() {
            return Ok(slot);
        }
        match &mut self.current {
            Some((base, used)) if *used < self.per_chunk => {
                let slot = *base + *used * self.stride;
                *used += 1;
                Ok(slot)
            }
            _ => {
                let len = self
                    .stride
                    .checked_mul(self.per_chunk)
                    .ok_or_else(|| format!("{what}: arena chunk size overflows"))?;
                let base = map_chunk(len, self.prot, self.align)
                    .map_err(|e| mapping_error(&format!("cannot map a {what} arena chunk"), e))?;
                self.current = Some((base, 1));
                self.chunks.push(base);
                Ok(base)
            }
        }
    }
}

impl Drop for Slots {
    fn drop(&mut self) {
        let len = self.stride * self.per_chunk;
        for &base in &self.chunks {
            // SAFETY: the arena drops after everything carved from it (each memory and
            // stack holds it), so nothing uses the chunk any more.
            unsafe { libc::munmap(base as *mut libc::c_void, len) };
        }
    }
}

/// Map an arena chunk. A `PROT_NONE` chunk (of fiber stacks, opened and closed piece by
/// piece) is first made read-write and written to once, so that the kernel gives the
/// whole chunk one `anon_vma`: every piece opened later shares it, and a closed piece
/// merges back into its neighbours. (Pieces that got their own `anon_vma` at their
/// first write could not merge again, and the chunk would stay split in as many
/// mappings as stacks were ever open at once.) The chunk starts at a multiple of
/// `align`.
fn map_chunk(len: usize, prot: libc::c_int, align: usize) -> std::io::Result<usize> {
    let base = map_aligned(len, align, libc::PROT_READ | libc::PROT_WRITE)?;
    if prot != libc::PROT_NONE {
        return Ok(base);
    }
    // SAFETY: a fresh mapping of ours, read-write; nothing uses it yet.
    unsafe {
        (base as *mut u8).write_volatile(0);
        discard_or_zero(base, page_size());
        if let Err(e) = protect(base, len, libc::PROT_NONE) {
            libc::munmap(base as *mut libc::c_void, len);
            return Err(e);
        }
    }
    Ok(base)
}

/// The linear memories of a node.
pub(crate) struct MemoryArena {
    span: usize,
    slots: Mutex<Slots>,
}

impl MemoryArena {
    pub(crate) fn new(config: &ArenaConfig) -> MemoryArena {
        let span = round_up(config.memory_span.max(1), page_size());
        MemoryArena {
            span,
            slots: Mutex::new(Slots::new(
                span,
                config.memories_per_chunk,
                libc::PROT_READ | libc::PROT_WRITE,
                page_size(),
            )),
        }
    }
}

/// A linear memory in a span of the arena.
struct ArenaMemory {
    arena: Arc<MemoryArena>,
    base: usize,
    size: usize,
    /// The most bytes ever accessible, to discard on drop.
    high_water: usize,
}

// SAFETY: `base..base + span` belongs to this memory alone until it drops; it is
// read-write and zero-filled (fresh, or discarded when the last owner dropped); it
// never moves; growth past the span fails.
unsafe impl LinearMemory for ArenaMemory {
    fn byte_size(&self) -> usize {
        self.size
    }

    fn byte_capacity(&self) -> usize {
        self.arena.span
    }

    fn grow_to(&mut self, new_size: usize) -> wasmtime::Result<()> {
        if new_size > self.arena.span {
            return Err(wasmtime::Error::msg(format!(
                "a linear memory cannot grow past its arena span of {} bytes (ArenaConfig::memory_span)",
                self.arena.span
            )));
        }
        self.size = new_size;
        self.high_water = self.high_water.max(new_size);
        Ok(())
    }

    fn as_ptr(&self) -> *mut u8 {
        self.base as *mut u8
    }
}

impl Drop for ArenaMemory {
    fn drop(&mut self) {
        // SAFETY: the span is ours, read-write up to its high-water mark, and its
        // instance is gone. The next tenant must read zeros, discarded or not.
        unsafe { discard_or_zero(self.base, round_up(self.high_water, page_size())) };
        self.arena.slots.lock().free.push(self.base);
    }
}

/// The `MemoryCreator` wasmtime calls; a shared handle on the arena.
pub(crate) struct MemoryArenaCreator(pub(crate) Arc<MemoryArena>);

// SAFETY: every memory handed out is a distinct, zeroed, read-write span that never
// moves; the engine is configured with no guard region and no reservation, so
// compiled code checks bounds against `byte_size` and never relies on the span's end.
unsafe impl MemoryCreator for MemoryArenaCreator {
    fn new_memory(
        &self,
        _ty: MemoryType,
        minimum: usize,
        _maximum: Option<usize>,
        _reserved_size_in_bytes: Option<usize>,
        _guard_size_in_bytes: usize,
    ) -> Result<Box<dyn LinearMemory>, String> {
        let arena = &self.0;
        if minimum > arena.span {
            return Err(format!(
                "a linear memory of {minimum} bytes does not fit its arena span of {} bytes (ArenaConfig::memory_span)",
                arena.span
            ));
        }
        let base = arena.slots.lock().take("memory")?;
        Ok(Box::new(ArenaMemory {
            arena: arena.clone(),
            base,
            size: minimum,
            high_water: minimum,
        }))
    }
}

/// The size of a stack slot: the guard and the stack, rounded up to whole page-table
/// ranges (the guard takes the rest, so it is at least `stack_guard_size`).
fn stack_stride(config: &ArenaConfig, stack_size: usize) -> usize {
    let page = page_size();
    let guard = round_up(config.stack_guard_size.max(page), page);
    round_up(
        guard + round_up(stack_size.max(page), page),
        page_table_span(),
    )
}

/// The fiber stacks of a node.
pub(crate) struct StackArena {
    guard: usize,
    slots: Mutex<Slots>,
    /// The stacks kept open between calls.
    open: OpenStacks,
    /// Tells the idle sweep to stop when the arena drops.
    sweep_stop: Arc<SweepStop>,
}

impl StackArena {
    /// The stack arena, and its idle sweep thread when `idle_stack_close` is set.
    pub(crate) fn new(config: &ArenaConfig, stack_size: usize) -> std::io::Result<Arc<StackArena>> {
        let page = page_size();
        let stack = round_up(stack_size.max(page), page);
        let stride = stack_stride(config, stack_size);
        let arena = Arc::new(StackArena {
            guard: stride - stack,
            slots: Mutex::new(Slots::new(
                stride,
                config.stacks_per_chunk,
                libc::PROT_NONE,
                page_table_span(),
            )),
            open: OpenStacks::new(config.open_stacks),
            sweep_stop: Arc::default(),
        });
        let period = config.idle_stack_close;
        if config.open_stacks > 0 && !period.is_zero() {
            let weak = Arc::downgrade(&arena);
            let stop = arena.sweep_stop.clone();
            std::thread::Builder::new()
                .name("rusm-stack-sweep".into())
                .spawn(move || sweep_idle(&weak, &stop, period))?;
        }
        Ok(arena)
    }
}

impl Drop for StackArena {
    fn drop(&mut self) {
        *self.sweep_stop.stopped.lock() = true;
        self.sweep_stop.wake.notify_all();
    }
}

#[derive(Default)]
struct SweepStop {
    stopped: Mutex<bool>,
    wake: Condvar,
}

/// The idle sweep: every `period`, close the open stacks no call used since the sweep
/// before, until the arena drops.
fn sweep_idle(arena: &Weak<StackArena>, stop: &SweepStop, period: Duration) {
    loop {
        {
            let mut stopped = stop.stopped.lock();
            if !*stopped {
                stop.wake.wait_for(&mut stopped, period);
            }
            if *stopped {
                return;
            }
        }
        let Some(arena) = arena.upgrade() else {
            return;
        };
        arena.open.sweep();
    }
}

/// The stacks kept open between calls: at most `capacity`, chosen by a clock (second
/// chance) sweep. A lease in the set is marked `in_set` (under its own lock) and has a
/// `referenced` bit that each call's end sets; the hand clears set bits and evicts the
/// first lease whose bit is clear. So a busy actor's call ends with two atomic stores
/// (`referenced`, and `recent` for the idle sweep), and takes this set's lock only when
/// its stack was not in the set.
///
/// Lock order: never a lease's lock while holding the set's; an evicted lease is closed
/// after the set's lock is released, and only if no call runs on it then.
struct OpenStacks {
    #[allow(
        dead_code,
        reason = "closing a store's fiber stack between its calls is safe only on an engine without the component model's concurrency, which wasi:http 0.3 needs; handler actors run unleased meanwhile"
    )]
    capacity: usize,
    clock: Mutex<Clock>,
}

#[derive(Default)]
struct Clock {
    leases: Vec<Arc<StackLease>>,
    hand: usize,
}

impl OpenStacks {
    fn new(capacity: usize) -> OpenStacks {
        OpenStacks {
            capacity,
            clock: Mutex::default(),
        }
    }

    #[allow(
        dead_code,
        reason = "closing a store's fiber stack between its calls is safe only on an engine without the component model's concurrency, which wasi:http 0.3 needs; handler actors run unleased meanwhile"
    )]
    /// Add `lease` (marked `in_set` by the caller), closing the lease it displaces.
    fn insert(&self, lease: Arc<StackLease>) {
        // Behind the hand with its bit clear: it stays for a whole turn, and goes
        // before the leases used again meanwhile.
        lease.referenced.store(false, Ordering::Relaxed);
        lease.recent.store(true, Ordering::Relaxed);
        let evicted = {
            let mut clock = self.clock.lock();
            if clock.leases.len() < self.capacity {
                clock.leases.push(lease);
                None
            } else {
                // Every turn clears a bit, so this ends within `capacity + 1` turns.
                loop {
                    let at = clock.hand % clock.leases.len();
                    clock.hand = at + 1;
                    if !clock.leases[at].referenced.swap(false, Ordering::Relaxed) {
                        break Some(std::mem::replace(&mut clock.leases[at], lease));
                    }
                }
            }
        };
        if let Some(evicted) = evicted {
            evicted.evict();
        }
    }

    /// Close every open stack not used since the last sweep; mark the others unused.
    fn sweep(&self) {
        let idle: Vec<Arc<StackLease>> = {
            let mut clock = self.clock.lock();
            let (kept, idle) = std::mem::take(&mut clock.leases)
                .into_iter()
                .partition(|lease| lease.recent.swap(false, Ordering::Relaxed));
            clock.leases = kept;
            clock.hand = 0;
            idle
        };
        for lease in idle {
            lease.evict();
        }
    }
}

/// The open/closed state of the stack a store runs on, shared by the stack and the
/// [`StackScope`]s of that store's guest calls (and by the set of open stacks while it
/// is in there).
#[derive(Default)]
pub(crate) struct StackLease {
    inner: Mutex<LeaseState>,
    #[allow(
        dead_code,
        reason = "closing a store's fiber stack between its calls is safe only on an engine without the component model's concurrency, which wasi:http 0.3 needs; handler actors run unleased meanwhile"
    )]
    /// Used since the clock hand last passed (meaningful while in the open set).
    referenced: AtomicBool,
    /// Used since the last idle sweep (meaningful while in the open set).
    recent: AtomicBool,
}

#[derive(Default)]
struct LeaseState {
    /// The store's stack, once it has one.
    stack: Option<Lease>,
    /// Scopes of this store whose call is running (at most one: a store runs one call
    /// at a time).
    calls: u32,
    /// In its arena's set of open stacks.
    in_set: bool,
}

struct Lease {
    /// The slot (guard and stack), whose pages are discarded on close.
    slot: usize,
    stride: usize,
    /// The stack part, opened and closed.
    start: usize,
    len: usize,
    open: bool,
    #[allow(
        dead_code,
        reason = "closing a store's fiber stack between its calls is safe only on an engine without the component model's concurrency, which wasi:http 0.3 needs; handler actors run unleased meanwhile"
    )]
    arena: Arc<StackArena>,
}

impl Lease {
    /// Drop the stack's pages and make it inaccessible again.
    ///
    /// # Safety
    /// No fiber may be running or suspended on the stack.
    unsafe fn close(&mut self) {
        if self.open {
            // SAFETY: per the caller.
            unsafe {
                // The whole slot, so the kernel frees its page table too. If the
                // kernel refuses, or the protection fails, the stack simply stays
                // open: it is still this store's, and its drop decides its future.
                if discard(self.slot, self.stride).is_ok()
                    && protect(self.start, self.len, libc::PROT_NONE).is_ok()
                {
                    self.open = false;
                }
            }
        }
    }
}

impl StackLease {
    #[allow(
        dead_code,
        reason = "closing a store's fiber stack between its calls is safe only on an engine without the component model's concurrency, which wasi:http 0.3 needs; handler actors run unleased meanwhile"
    )]
    /// A call begins: make the store's stack usable (if it has one that is closed).
    /// From here until [`StackLease::end_call`] nobody closes it.
    fn begin_call(&self) -> Result<(), String> {
        let mut inner = self.inner.lock();
        if let Some(lease) = inner.stack.as_mut()
            && !lease.open
        {
            // SAFETY: the stack belongs to this store, which runs no guest code now.
            unsafe { protect(lease.start, lease.len, libc::PROT_READ | libc::PROT_WRITE) }
                .map_err(|e| mapping_error("cannot open a fiber stack", e))?;
            lease.open = true;
        }
        inner.calls += 1;
        Ok(())
    }

    /// The call has ended (finished, or dropped and unwound): keep the stack open
    /// among the recently used ones, or close it when the arena keeps none open.
    fn end_call(self: &Arc<Self>) {
        let arena = {
            let mut inner = self.inner.lock();
            inner.calls = inner.calls.saturating_sub(1);
            let state = &mut *inner;
            let Some(lease) = state.stack.as_mut() else {
                return;
            };
            if !lease.open || state.calls > 0 {
                return;
            }
            if lease.arena.open.capacity == 0 {
                // SAFETY: no call of this store runs now, so no fiber is on it.
                unsafe { lease.close() };
                return;
            }
            if state.in_set {
                self.referenced.store(true, Ordering::Relaxed);
                self.recent.store(true, Ordering::Relaxed);
                return;
            }
            state.in_set = true;
            lease.arena.clone()
        };
        arena.open.insert(self.clone());
    }

    /// Taken out of the set of open stacks: close the stack unless a call runs on it
    /// (that call puts it back in the set when it ends).
    fn evict(&self) {
        let mut inner = self.inner.lock();
        inner.in_set = false;
        if inner.calls == 0
            && let Some(lease) = inner.stack.as_mut()
        {
            // SAFETY: no call of this store runs now (`calls` is 0 under the lock
            // every call takes before it starts), so no fiber is on it.
            unsafe { lease.close() };
        }
    }
}

thread_local! {
    /// The lease of the store whose guest call is being polled on this thread.
    static CURRENT: RefCell<Option<Arc<StackLease>>> = const { RefCell::new(None) };
}

/// A fiber stack in a slot of the arena.
struct ArenaStack {
    arena: Arc<StackArena>,
    slot: usize,
    stride: usize,
    lease: Option<Arc<StackLease>>,
}

// SAFETY: the slot is this stack's alone; its guard region is never made accessible;
// the stack part is read-write whenever wasmtime runs a fiber on it (opened at
// creation and by every `StackScope` before its call is polled).
unsafe impl StackMemory for ArenaStack {
    fn top(&self) -> *mut u8 {
        (self.slot + self.stride) as *mut u8
    }

    fn range(&self) -> Range<usize> {
        self.slot + self.arena.guard..self.slot + self.stride
    }

    fn guard_range(&self) -> Range<*mut u8> {
        self.slot as *mut u8..(self.slot + self.arena.guard) as *mut u8
    }
}

impl Drop for ArenaStack {
    fn drop(&mut self) {
        let start = self.slot + self.arena.guard;
        let len = self.stride - self.arena.guard;
        if let Some(lease) = &self.lease {
            let mut inner = lease.inner.lock();
            if inner.stack.as_ref().is_some_and(|l| l.start == start) {
                inner.stack = None;
            }
        }
        // SAFETY: the fiber that used this stack is gone with its store.
        unsafe {
            // Never hand out a slot that may hold this stack's data or whose state is
            // unknown: it is retired instead (its address range stays reserved).
            if discard(self.slot, self.stride).is_err()
                || protect(start, len, libc::PROT_NONE).is_err()
            {
                return;
            }
        }
        self.arena.slots.lock().free.push(self.slot);
    }
}

/// The `StackCreator` wasmtime calls; a shared handle on the arena.
pub(crate) struct StackArenaCreator(pub(crate) Arc<StackArena>);

// SAFETY: see `ArenaStack`.
unsafe impl StackCreator for StackArenaCreator {
    fn new_stack(&self, size: usize, _zeroed: bool) -> wasmtime::Result<Box<dyn StackMemory>> {
        let arena = &self.0;
        let (slot, stride) = {
            let mut slots = arena.slots.lock();
            let stride = slots.stride;
            if size + arena.guard > stride {
                return Err(wasmtime::Error::msg(format!(
                    "a fiber stack of {size} bytes does not fit its arena slot"
                )));
            }
            (
                slots.take("fiber stack").map_err(wasmtime::Error::msg)?,
                stride,
            )
        };
        let start = slot + arena.guard;
        let len = stride - arena.guard;
        let lease = CURRENT.with(|c| c.borrow().clone());
        let stack = ArenaStack {
            arena: arena.clone(),
            slot,
            stride,
            lease: lease.clone(),
        };
        // SAFETY: a fresh slot, used by nobody yet.
        unsafe { protect(start, len, libc::PROT_READ | libc::PROT_WRITE) }
            .map_err(|e| wasmtime::Error::msg(mapping_error("cannot open a fiber stack", e)))?;
        if let Some(lease) = lease {
            lease.inner.lock().stack = Some(Lease {
                slot,
                stride,
                start,
                len,
                open: true,
                arena: arena.clone(),
            });
        }
        Ok(Box::new(stack))
    }
}

#[allow(
    dead_code,
    reason = "closing a store's fiber stack between its calls is safe only on an engine without the component model's concurrency, which wasi:http 0.3 needs; handler actors run unleased meanwhile"
)]
/// A guest call on a store whose stack is opened before the call; when the call ends
/// (also when it is dropped unfinished, after the call itself is dropped) the stack
/// joins the arena's set of open stacks, or is closed at once if the set holds none.
///
/// The lease a stack belongs to is the one current on the thread when wasmtime creates
/// it, so a guest call that may run inside another store's call (a plugin called from
/// a host function of a handler's call) runs [`unleased`]: a stack made then belongs
/// to no lease and stays open. Otherwise the plugin's stack would be recorded in the
/// handler's lease and closed when the handler's call ends, under the plugin's next
/// call.
pub(crate) struct StackScope<F> {
    lease: Arc<StackLease>,
    call: Option<Pin<Box<F>>>,
    opened: bool,
}

impl<F> StackScope<F> {
    #[allow(
        dead_code,
        reason = "closing a store's fiber stack between its calls is safe only on an engine without the component model's concurrency, which wasi:http 0.3 needs; handler actors run unleased meanwhile"
    )]
    /// Run `call` on the stack that `lease` tracks (use one lease per store).
    pub(crate) fn new(lease: Arc<StackLease>, call: F) -> StackScope<F> {
        StackScope {
            lease,
            call: Some(Box::pin(call)),
            opened: false,
        }
    }
}

/// Run `call` (a guest call on a store that tracks no lease) with no lease current in
/// any of its polls: a stack its store makes stays open until the store is dropped,
/// whatever call this one runs inside. Costs two thread-local accesses per poll and no
/// allocation.
pub(crate) async fn unleased<F: Future>(call: F) -> F::Output {
    let mut call = std::pin::pin!(call);
    std::future::poll_fn(move |cx| {
        let previous = CURRENT.with(RefCell::take);
        let polled = call.as_mut().poll(cx);
        CURRENT.with(|c| *c.borrow_mut() = previous);
        polled
    })
    .await
}

#[allow(
    dead_code,
    reason = "closing a store's fiber stack between its calls is safe only on an engine without the component model's concurrency, which wasi:http 0.3 needs; handler actors run unleased meanwhile"
)]
/// What a [`StackScope`] yields: the call's output, or why its stack could not open.
pub(crate) type Scoped<T> = Result<T, String>;

impl<F: Future> Future for StackScope<F> {
    type Output = Scoped<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if !this.opened {
            this.lease.begin_call()?;
            this.opened = true;
        }
        let Some(call) = this.call.as_mut() else {
            return Poll::Pending;
        };
        let previous = CURRENT.with(|c| c.replace(Some(this.lease.clone())));
        let polled = call.as_mut().poll(cx);
        CURRENT.with(|c| *c.borrow_mut() = previous);
        match polled {
            Poll::Ready(out) => {
                this.call = None;
                this.lease.end_call();
                Poll::Ready(Ok(out))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<F> Drop for StackScope<F> {
    fn drop(&mut self) {
        if self.call.is_some() {
            // Dropping an unfinished call unwinds its fiber on the stack, so the call
            // ends (and its stack may be closed) only after that.
            let previous = CURRENT.with(|c| c.replace(Some(self.lease.clone())));
            self.call = None;
            CURRENT.with(|c| *c.borrow_mut() = previous);
            if self.opened {
                self.lease.end_call();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    thread_local! {
        /// Makes the next [`discard`] on this thread fail as a refused `madvise` would.
        pub(super) static FAIL_DISCARD: Cell<bool> = const { Cell::new(false) };
    }

    #[test]
    fn a_reused_span_is_zeroed_even_when_the_kernel_refuses_to_discard() {
        let arena = Arc::new(MemoryArena::new(&config()));
        let creator = MemoryArenaCreator(arena.clone());
        let ty = MemoryType::new(1, None);
        let mut a = creator
            .new_memory(ty.clone(), 65536, None, None, 0)
            .unwrap();
        a.grow_to(3 * 65536).unwrap();
        let base = a.as_ptr();
        // SAFETY: the memory is ours and 192 KiB long.
        unsafe {
            base.write(0xA5);
            base.add(100_000).write(0x5A);
            base.add(3 * 65536 - 1).write(0xFF);
        }
        FAIL_DISCARD.with(|fail| fail.set(true));
        drop(a);
        assert!(!FAIL_DISCARD.with(Cell::get), "the drop tried to discard");
        let b = creator.new_memory(ty, 3 * 65536, None, None, 0).unwrap();
        assert_eq!(b.as_ptr(), base, "the span is reused");
        // SAFETY: as above, the next tenant's now.
        let seen = unsafe { std::slice::from_raw_parts(base, 3 * 65536) };
        assert!(
            seen.iter().all(|&byte| byte == 0),
            "the next tenant reads what the previous one wrote"
        );
    }

    #[test]
    fn a_stack_whose_discard_fails_is_not_handed_out_again() {
        let creator = StackArenaCreator(StackArena::new(&stack_config(0), 64 << 10).unwrap());
        // Without a failure, a dropped stack's slot is the next one handed out.
        let (_lease, stack) = leased_stack(&creator);
        let slot = stack.range().start;
        drop(stack);
        let (_lease, stack) = leased_stack(&creator);
        assert_eq!(stack.range().start, slot, "a freed slot is reused");
        write_top(&*stack);
        FAIL_DISCARD.with(|fail| fail.set(true));
        drop(stack);
        let (_lease, next) = leased_stack(&creator);
        assert_ne!(
            next.range().start,
            slot,
            "a slot that kept its data is retired"
        );
    }

    fn config() -> ArenaConfig {
        ArenaConfig {
            memory_span: 1 << 20,
            memories_per_chunk: 4,
            stacks_per_chunk: 4,
            ..ArenaConfig::default()
        }
    }

    #[test]
    fn memories_are_distinct_zeroed_and_reused() {
        let arena = Arc::new(MemoryArena::new(&config()));
        let creator = MemoryArenaCreator(arena.clone());
        let ty = MemoryType::new(1, None);
        let mut a = creator
            .new_memory(ty.clone(), 65536, None, None, 0)
            .unwrap();
        let b = creator
            .new_memory(ty.clone(), 65536, None, None, 0)
            .unwrap();
        assert_ne!(a.as_ptr(), b.as_ptr());
        a.grow_to(2 * 65536).unwrap();
        assert!(a.grow_to((1 << 20) + 65536).is_err());
        let base = a.as_ptr();
        // SAFETY: the memory is ours and 128 KiB long.
        unsafe { base.add(70_000).write(7) };
        drop(a);
        let c = creator.new_memory(ty, 131072, None, None, 0).unwrap();
        assert_eq!(c.as_ptr(), base, "a freed span is reused");
        // SAFETY: as above.
        assert_eq!(
            unsafe { base.add(70_000).read() },
            0,
            "a reused span is zeroed"
        );
        assert!(
            creator
                .new_memory(MemoryType::new(17, None), 2 << 20, None, None, 0)
                .is_err()
        );
    }

    /// A lease whose call has begun, and the stack created during it.
    fn leased_stack(creator: &StackArenaCreator) -> (Arc<StackLease>, Box<dyn StackMemory>) {
        let lease = Arc::new(StackLease::default());
        lease.begin_call().unwrap();
        let previous = CURRENT.with(|c| c.replace(Some(lease.clone())));
        let stack = creator.new_stack(64 << 10, true).unwrap();
        CURRENT.with(|c| *c.borrow_mut() = previous);
        (lease, stack)
    }

    /// Whether the kernel has the stack read-write (from `/proc/self/maps`).
    fn is_open(stack: &dyn StackMemory) -> bool {
        let at = stack.range().start;
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let line = maps
            .lines()
            .find(|line| {
                let range = line.split_whitespace().next().unwrap();
                let (from, to) = range.split_once('-').unwrap();
                let from = usize::from_str_radix(from, 16).unwrap();
                let to = usize::from_str_radix(to, 16).unwrap();
                (from..to).contains(&at)
            })
            .expect("the stack is mapped");
        line.split_whitespace().nth(1).unwrap().starts_with("rw")
    }

    fn write_top(stack: &dyn StackMemory) {
        // SAFETY: the caller checked that the stack is open; it is ours.
        unsafe { stack.top().sub(8).write(1) };
    }

    fn stack_config(open_stacks: usize) -> ArenaConfig {
        ArenaConfig {
            open_stacks,
            idle_stack_close: Duration::ZERO,
            ..config()
        }
    }

    #[test]
    fn with_no_open_stacks_a_stack_is_open_only_during_its_call() {
        let creator = StackArenaCreator(StackArena::new(&stack_config(0), 64 << 10).unwrap());
        let (lease, stack) = leased_stack(&creator);
        assert!(is_open(&*stack));
        assert_eq!(
            stack.top() as usize % page_table_span(),
            0,
            "a stack ends where a page table's range ends"
        );
        write_top(&*stack);
        lease.end_call();
        assert!(!is_open(&*stack), "closed when its call ends");
        lease.begin_call().unwrap();
        assert!(is_open(&*stack), "reopened for the next call");
        write_top(&*stack);
        lease.end_call();
        drop(stack);
        assert!(
            lease.inner.lock().stack.is_none(),
            "a dropped stack leaves its lease"
        );
    }

    #[test]
    fn recently_used_stacks_stay_open_and_the_clock_closes_the_others() {
        let creator = StackArenaCreator(StackArena::new(&stack_config(2), 64 << 10).unwrap());
        let (a, stack_a) = leased_stack(&creator);
        let (b, stack_b) = leased_stack(&creator);
        let (c, stack_c) = leased_stack(&creator);
        a.end_call();
        b.end_call();
        assert!(
            is_open(&*stack_a) && is_open(&*stack_b),
            "kept open after their calls"
        );
        // `a` is used again, so `b` is the one to go when `c` needs room.
        a.begin_call().unwrap();
        a.end_call();
        c.end_call();
        assert!(is_open(&*stack_a) && is_open(&*stack_c));
        assert!(
            !is_open(&*stack_b),
            "the least recently used stack is closed"
        );
        b.begin_call().unwrap();
        assert!(
            is_open(&*stack_b),
            "a closed stack reopens for its next call"
        );
        write_top(&*stack_b);
        b.end_call();
        let open = [&*stack_a, &*stack_b, &*stack_c]
            .into_iter()
            .filter(|s| is_open(*s))
            .count();
        assert_eq!(open, 2, "never more open between calls than the set holds");
    }

    /// The mappings of this process that overlap `from..to`.
    fn mappings_within(from: usize, to: usize) -> usize {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        maps.lines()
            .filter(|line| {
                let range = line.split_whitespace().next().unwrap();
                let (a, b) = range.split_once('-').unwrap();
                let a = usize::from_str_radix(a, 16).unwrap();
                let b = usize::from_str_radix(b, 16).unwrap();
                a < to && from < b
            })
            .count()
    }

    #[test]
    fn closed_stacks_merge_back_into_one_mapping() {
        let creator = StackArenaCreator(StackArena::new(&stack_config(8), 64 << 10).unwrap());
        // Open every other stack of the chunk at once, and write to each.
        let all: Vec<_> = (0..4).map(|_| leased_stack(&creator)).collect();
        let (base, len) = {
            let slots = creator.0.slots.lock();
            (slots.chunks[0], slots.stride * slots.per_chunk)
        };
        let open: Vec<_> = all.iter().step_by(2).collect();
        for (lease, stack) in all.iter().skip(1).step_by(2) {
            lease.end_call();
            assert!(is_open(&**stack));
        }
        creator.0.open.sweep();
        creator.0.open.sweep();
        for (_, stack) in &open {
            write_top(&**stack);
        }
        assert!(
            mappings_within(base, base + len) >= 5,
            "open stacks split the chunk"
        );
        for (lease, _) in &open {
            lease.end_call();
        }
        creator.0.open.sweep();
        creator.0.open.sweep();
        assert_eq!(
            mappings_within(base, base + len),
            1,
            "every stack closed: the chunk is one mapping again"
        );
    }

    /// Poll `future` once; it must be ready.
    fn ready<F: Future>(future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        match future
            .as_mut()
            .poll(&mut Context::from_waker(std::task::Waker::noop()))
        {
            Poll::Ready(out) => out,
            Poll::Pending => panic!("the future is not ready"),
        }
    }

    #[test]
    fn a_stack_made_by_a_call_nested_in_another_stores_call_is_not_that_stores() {
        let creator = StackArenaCreator(StackArena::new(&stack_config(0), 64 << 10).unwrap());
        let handler = Arc::new(StackLease::default());
        // A handler's call whose host function calls a plugin for the first time: the
        // plugin's store makes its stack during the handler's call.
        let plugin_stack = ready(StackScope::new(handler.clone(), async {
            ready(unleased(async {
                creator.new_stack(64 << 10, true).unwrap()
            }))
        }))
        .unwrap();
        assert!(
            handler.inner.lock().stack.is_none(),
            "the plugin's stack is recorded in the handler's lease"
        );
        assert!(
            is_open(&*plugin_stack),
            "the handler's call ending closed the plugin's stack"
        );
        write_top(&*plugin_stack);
        // A store of its own made in a leased call is still that store's.
        let own = ready(StackScope::new(handler.clone(), async {
            creator.new_stack(64 << 10, true).unwrap()
        }))
        .unwrap();
        assert!(handler.inner.lock().stack.is_some());
        assert!(!is_open(&*own), "closed when its call ends");
        assert!(is_open(&*plugin_stack));
    }

    #[test]
    fn a_stack_is_never_closed_while_its_call_runs() {
        let creator = StackArenaCreator(StackArena::new(&stack_config(1), 64 << 10).unwrap());
        let (a, stack_a) = leased_stack(&creator);
        let (b, stack_b) = leased_stack(&creator);
        a.end_call();
        a.begin_call().unwrap();
        // `b` takes `a`'s place in the set while `a`'s call runs: `a` stays open.
        b.end_call();
        assert!(is_open(&*stack_a), "a running call keeps its stack open");
        write_top(&*stack_a);
        // Sweeps leave a running call alone too.
        creator.0.open.sweep();
        assert!(is_open(&*stack_b), "b was used since the last sweep");
        creator.0.open.sweep();
        assert!(is_open(&*stack_a));
        assert!(!is_open(&*stack_b), "b was idle for a whole sweep period");
        // When `a`'s call ends it joins the set again.
        a.end_call();
        assert!(is_open(&*stack_a));
        creator.0.open.sweep();
        assert!(is_open(&*stack_a), "used since the last sweep");
        creator.0.open.sweep();
        assert!(!is_open(&*stack_a), "idle for a whole sweep period");
    }
}
