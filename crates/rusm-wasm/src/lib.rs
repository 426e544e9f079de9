//! The wasmtime process backend of rusm: every process can be a WASI preview 2
//! component.
//!
//! A [`WasmNode`] owns the node's one wasmtime [`Engine`](wasmtime::Engine) (async,
//! epoch interruption, pooling allocator, copy-on-write memory images), a registry of
//! compiled components each with a cached `InstancePre`, and the dedicated OS thread
//! that advances the epoch so that a guest in `loop {}` yields every tick and can be
//! killed at any time. A wasm process is an ordinary [`rusm_otp`] process whose body
//! instantiates the component and runs its entry point; it talks to native and wasm
//! processes alike through the `rusm:runtime` interface (see `wit/rusm-runtime`).
//!
//! Traps end the process with [`ExitReason::Crashed`](rusm_otp::ExitReason::Crashed)
//! (with the trap and the wasm backtrace), hitting the memory limit with
//! [`ExitReason::OutOfMemory`](rusm_otp::ExitReason::OutOfMemory); stack overflow is a
//! crash. The host never panics because of a guest.
//!
//! [`WasmNode::reload`] loads a new version of a component while it runs: the old
//! version stays live unless the new one compiles and links, and running actors move
//! to the new code in place (same pid, mailbox and links) by handing their state over,
//! or are ended with `upgrade-timeout` for their supervisor to restart; see
//! [`ReloadEvent`] and [`WasmNode::set_dependencies`].

#![deny(missing_docs)]

// The modules, bottom up; each imports only from those above it in this list
// (checked by the `layers` test below and described in ARCHITECTURE.md).
// Foundation: the machine and the arena (all `unsafe`); preemption (the epoch thread
// and the marks of guest polls); the engine.
mod arena;

mod preempt;

mod engine;
mod error;
mod extensions;
mod kind;
mod turn;
// The only `bindgen!` over `wit/rusm-runtime`, and the WIT conversions.
mod bindings;
// Grants: one module per capability, all limits resolved once.
mod broker;
mod config;
mod keyvalue;
mod limits;
mod rights;
// The upgrade protocol's state (requests, hand-overs, the live set).
mod upgrade;
// The store's data and the narrow view of the node a process gets.
mod state;
// The component registry.
mod registry;
// The store builder and the one outcome classifier.
mod store;
// The `rusm:runtime` host implementation, on the process's state.
mod host;
// The process kinds over one start path.
mod kinds;
// `WasmNode`, its HTTP, plugin and reload entry points.
mod node;

pub use arena::{ArenaConfig, MachineLimits};
pub use engine::{Allocator, DEFAULT_KV_MAX_BYTES, PoolConfig, WasmConfig};
pub use error::{LoadError, SpawnError};
pub use extensions::Extensions;
#[cfg(feature = "jetstream")]
pub use keyvalue::jetstream::{JetStreamStore, MAX_SHARED_KEY_BYTES, SHARED_TIMEOUT};
pub use keyvalue::{
    KvBackend, KvError, KvFuture, KvOpenError, KvStore, LIST_PAGE, LocalStore, MAX_BATCH_BYTES,
    MAX_BATCH_KEYS, MAX_KEY_BYTES, MAX_OPEN_BUCKETS, MAX_OPEN_CAS, NodeBuckets, RedbStore,
    ValueVersion, WriteLimits,
};
pub use kind::ComponentKind;
pub use kinds::http::{HttpDone, HttpFailure, HttpInvocation, HttpRequestOptions};
pub use kinds::plugin::{
    BindFn, CallOptions, Interrupted, Plugin, PluginError, PluginOptions, SupervisedPlugin,
};
pub use kinds::{HttpBodyError, HttpErrorCode, HttpResponseBody};
pub use node::{
    DEFAULT_P3_CONCURRENCY, DEFAULT_POOL_IDLE, DEFAULT_POOL_INSTANCES, HttpPool, HttpPoolConfig,
    HttpPoolRequest, WasmNode, WasmSpawnOptions,
};
pub use preempt::Preemption;
pub use registry::ComponentInfo;
pub use state::ProcessState;
pub use upgrade::{
    DEFAULT_UPGRADE_GRACE, DependencyCycle, ProcessUpgrade, ReloadError, ReloadEvent,
    ReloadEventKind, ReloadReport, UpgradeOutcome,
};

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    /// The crate's modules in the order `lib.rs` declares them.
    fn layers(src: &Path) -> Vec<String> {
        let lib = std::fs::read_to_string(src.join("lib.rs")).expect("lib.rs reads");
        lib.lines()
            .filter_map(|line| line.strip_prefix("mod ")?.strip_suffix(';'))
            .map(str::to_owned)
            .collect()
    }

    fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("the source directory reads") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// Every `crate::` path in `code` (comments left out): the module it names first
    /// and, when there is one, the next segment.
    fn crate_paths(code: &str) -> Vec<(String, Option<String>)> {
        let mut found = Vec::new();
        for line in code.lines() {
            let line = line.trim_start();
            if line.starts_with("//") {
                continue;
            }
            for (at, _) in line.match_indices("crate::") {
                let rest = &line[at + "crate::".len()..];
                let mut segments = rest.split("::").map(|s| {
                    s.chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect::<String>()
                });
                let first = segments.next().unwrap_or_default();
                let second = segments.next().filter(|s| !s.is_empty());
                found.push((first, second));
            }
        }
        found
    }

    /// Imports point down: a module uses only modules declared before it in `lib.rs`,
    /// and a submodule (such as `kinds::actor`) uses its parent's items, never a
    /// sibling's.
    #[test]
    fn every_import_points_down() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let order = layers(&src);
        assert!(order.len() > 10, "lib.rs declares the modules: {order:?}");
        let rank = |name: &str| order.iter().position(|m| m == name);
        let mut files = Vec::new();
        sources(&src, &mut files);
        let mut wrong = Vec::new();
        for file in files {
            let relative = file.strip_prefix(&src).expect("under src");
            let mut parts = relative.iter().map(|p| p.to_string_lossy().into_owned());
            let top = parts.next().expect("a file name");
            if top == "lib.rs" {
                continue;
            }
            let module = top.trim_end_matches(".rs").to_owned();
            let child = parts
                .next()
                .map(|c| c.trim_end_matches(".rs").to_owned())
                .filter(|c| c != "mod");
            let own = rank(&module).unwrap_or_else(|| panic!("{module} is not declared in lib.rs"));
            let code = std::fs::read_to_string(&file).expect("a source file reads");
            for (used, next) in crate_paths(&code) {
                let Some(used_rank) = rank(&used) else {
                    // An item re-exported at the crate root (in doc links, say).
                    continue;
                };
                let upward = used_rank > own;
                let sibling = used == module
                    && child.is_some()
                    && next.as_ref().is_some_and(|n| {
                        Some(n) != child.as_ref()
                            && src.join(&module).join(format!("{n}.rs")).exists()
                    });
                if upward || sibling {
                    wrong.push(format!("{} uses crate::{used}", relative.display()));
                }
            }
        }
        assert!(
            wrong.is_empty(),
            "imports that point up or sideways: {wrong:#?}"
        );
    }
}
