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
//!   (`MADV_DONTNEED`), so the next memory carved from it starts zeroed.
//! - **Fiber stacks** are slots of a `PROT_NONE` chunk: a guard region then the stack.
//!   A stack is read-write only while a guest call runs on it (the [`StackScope`]
//!   around the call opens it, and closes it again afterwards: its pages are dropped
//!   and it goes back to `PROT_NONE`, where the kernel merges it into the surrounding
//!   mapping). So a stack costs two mappings while in use and none while its actor is
//!   idle, and its guard stays inaccessible all the time: a host stack overflow faults,
//!   it never reaches a neighbour. A stack created outside any scope (for example for
//!   an HTTP request) stays open until its store drops.
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
use std::sync::Arc;
use std::task::{Context, Poll};

use parking_lot::Mutex;
use wasmtime::{LinearMemory, MemoryCreator, MemoryType, StackCreator, StackMemory};

/// Sizes of the arena allocator (the default; see [`crate::Allocator`]).
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
}

impl Default for ArenaConfig {
    fn default() -> ArenaConfig {
        ArenaConfig {
            max_instances: 1_000_000,
            memory_span: 64 << 20,
            memories_per_chunk: 256,
            stacks_per_chunk: 512,
            stack_guard_size: 64 << 10,
        }
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
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

/// Drop the pages of `[start, start + len)` (they read as zero afterwards).
///
/// # Safety
/// The range must be owned by the caller and not in use.
unsafe fn discard(start: usize, len: usize) {
    if len > 0 {
        // SAFETY: per the caller; advice on an owned anonymous range.
        unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED) };
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
    free: Vec<usize>,
    /// The chunk being carved, and how many of its slots are handed out.
    current: Option<(usize, usize)>,
    chunks: usize,
}

impl Slots {
    fn new(stride: usize, per_chunk: usize, prot: libc::c_int) -> Slots {
        Slots {
            stride,
            per_chunk: per_chunk.max(1),
            prot,
            free: Vec::new(),
            current: None,
            chunks: 0,
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
                let base = map(len, self.prot)
                    .map_err(|e| mapping_error(&format!("cannot map a {what} arena chunk"), e))?;
                self.current = Some((base, 1));
                self.chunks += 1;
                Ok(base)
            }
        }
    }
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
        // SAFETY: the span is ours and its instance is gone.
        unsafe { discard(self.base, round_up(self.high_water, page_size())) };
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

/// The fiber stacks of a node.
pub(crate) struct StackArena {
    guard: usize,
    slots: Mutex<Slots>,
}

impl StackArena {
    pub(crate) fn new(config: &ArenaConfig, stack_size: usize) -> StackArena {
        let page = page_size();
        let guard = round_up(config.stack_guard_size.max(page), page);
        let stride = guard + round_up(stack_size.max(page), page);
        StackArena {
            guard,
            slots: Mutex::new(Slots::new(stride, config.stacks_per_chunk, libc::PROT_NONE)),
        }
    }
}

/// The open/closed state of the stack a store runs on, shared by the stack and the
/// [`StackScope`]s of that store's guest calls.
#[derive(Default)]
pub(crate) struct StackLease {
    inner: Mutex<Option<Lease>>,
}

struct Lease {
    start: usize,
    len: usize,
    open: bool,
}

impl StackLease {
    /// Make the store's stack usable (if it has one that is closed).
    fn open(&self) -> Result<(), String> {
        let mut inner = self.inner.lock();
        if let Some(lease) = inner.as_mut()
            && !lease.open
        {
            // SAFETY: the stack belongs to this store, which runs no guest code now.
            unsafe { protect(lease.start, lease.len, libc::PROT_READ | libc::PROT_WRITE) }
                .map_err(|e| mapping_error("cannot open a fiber stack", e))?;
            lease.open = true;
        }
        Ok(())
    }

    /// Drop the stack's pages and make it inaccessible again: it costs neither memory
    /// nor a mapping while the store is idle.
    fn close(&self) {
        let mut inner = self.inner.lock();
        if let Some(lease) = inner.as_mut()
            && lease.open
        {
            // SAFETY: no guest call of this store runs now, so no fiber is on it.
            unsafe {
                discard(lease.start, lease.len);
                // If this fails the stack simply stays open (and zeroed).
                if protect(lease.start, lease.len, libc::PROT_NONE).is_ok() {
                    lease.open = false;
                }
            }
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
            if inner.as_ref().is_some_and(|l| l.start == start) {
                *inner = None;
            }
        }
        // SAFETY: the fiber that used this stack is gone with its store.
        unsafe {
            discard(start, len);
            if protect(start, len, libc::PROT_NONE).is_err() {
                // Never hand out a slot whose state is unknown.
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
            *lease.inner.lock() = Some(Lease {
                start,
                len,
                open: true,
            });
        }
        Ok(Box::new(stack))
    }
}

/// A guest call on a store whose stack is opened before the call and closed after
/// it (also when the call is dropped unfinished, after the call itself is dropped).
pub(crate) struct StackScope<F> {
    lease: Arc<StackLease>,
    call: Option<Pin<Box<F>>>,
    opened: bool,
}

impl<F> StackScope<F> {
    /// Run `call` on the stack that `lease` tracks (use one lease per store).
    pub(crate) fn new(lease: Arc<StackLease>, call: F) -> StackScope<F> {
        StackScope {
            lease,
            call: Some(Box::pin(call)),
            opened: false,
        }
    }
}

/// What a [`StackScope`] yields: the call's output, or why its stack could not open.
pub(crate) type Scoped<T> = Result<T, String>;

impl<F: Future> Future for StackScope<F> {
    type Output = Scoped<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if !this.opened {
            this.lease.open()?;
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
                this.lease.close();
                Poll::Ready(Ok(out))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<F> Drop for StackScope<F> {
    fn drop(&mut self) {
        if self.call.is_some() {
            // Dropping an unfinished call unwinds its fiber on the stack, so the stack
            // closes only after that.
            let previous = CURRENT.with(|c| c.replace(Some(self.lease.clone())));
            self.call = None;
            CURRENT.with(|c| *c.borrow_mut() = previous);
            self.lease.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn a_stack_is_open_only_inside_its_scope() {
        let arena = Arc::new(StackArena::new(&config(), 64 << 10));
        let creator = StackArenaCreator(arena);
        let lease = Arc::new(StackLease::default());
        let stack = {
            let _ = CURRENT.with(|c| c.replace(Some(lease.clone())));
            let stack = creator.new_stack(64 << 10, true).unwrap();
            CURRENT.with(|c| *c.borrow_mut() = None);
            stack
        };
        assert!(lease.inner.lock().as_ref().unwrap().open);
        lease.close();
        assert!(!lease.inner.lock().as_ref().unwrap().open);
        lease.open().unwrap();
        let top = stack.top();
        // SAFETY: the stack is open and ours.
        unsafe { top.sub(8).write(1) };
        drop(stack);
        assert!(
            lease.inner.lock().is_none(),
            "a dropped stack leaves its lease"
        );
    }
}
