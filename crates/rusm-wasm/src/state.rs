//! What each wasm process's store holds.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use rusm_otp::Context;
use rusm_policy::Policy;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::broker::HttpGrant;

use crate::node::NodeShared;
use crate::plugin::Extensions;

/// Resource limits of one process, and a record of which one it hit.
pub(crate) struct ProcessLimits {
    pub(crate) memory: usize,
    pub(crate) table_elements: usize,
    pub(crate) hit_memory_limit: bool,
}

impl ResourceLimiter for ProcessLimits {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory {
            // Trap at once: the process ends with an out-of-memory reason instead of
            // limping on with a failed allocation.
            self.hit_memory_limit = true;
            return Err(wasmtime::Error::msg(format!(
                "linear memory limit of {} bytes reached (wanted {desired})",
                self.memory
            )));
        }
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
}

/// Counts a process among its parent's live children while it exists.
pub(crate) struct ChildSlot(pub(crate) Arc<AtomicUsize>);

impl Drop for ChildSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The data of a wasm process's `Store`.
pub struct ProcessState {
    pub(crate) ctx: Context,
    pub(crate) node: Arc<NodeShared>,
    pub(crate) policy: Arc<Policy>,
    pub(crate) wasi: WasiCtx,
    /// `wasi:http` state (field size limit).
    pub(crate) http: WasiHttpCtx,
    /// Outbound HTTP as the policy's `[http]` section allows it.
    pub(crate) http_hooks: HttpGrant,
    pub(crate) table: ResourceTable,
    pub(crate) limits: ProcessLimits,
    pub(crate) started: Instant,
    /// Live children of this process (for the policy's `children` limit).
    pub(crate) children: Arc<AtomicUsize>,
    /// This process's place among its parent's children.
    pub(crate) _child_slot: Option<ChildSlot>,
    /// The embedder's own values (see [`ProcessState::extension_mut`]).
    pub(crate) extensions: Extensions,
}

impl ProcessState {
    /// The rusm process this store belongs to.
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// The policy this process runs under.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The embedder's value of type `T` in this process, if it has one (set with
    /// [`PluginOptions::extensions`](crate::PluginOptions::extensions)).
    pub fn extension<T: std::any::Any + Send>(&self) -> Option<&T> {
        self.extensions.get::<T>()
    }

    /// The embedder's value of type `T` in this process, created with `T::default()`
    /// when it has none: what an embedder's host functions reach their per-plugin
    /// state through, for example
    /// `MyWorld::add_to_linker::<_, HasSelf<MyHost>>(linker, |s| s.extension_mut::<MyHost>())`.
    pub fn extension_mut<T: std::any::Any + Send + Default>(&mut self) -> &mut T {
        self.extensions.get_or_default::<T>()
    }

    /// All of the embedder's values in this process.
    pub fn extensions_mut(&mut self) -> &mut Extensions {
        &mut self.extensions
    }
}

impl WasiView for ProcessState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for ProcessState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.http_hooks,
        }
    }
}
