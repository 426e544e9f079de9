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

mod arena;
mod broker;
mod engine;
mod error;
mod handler;
mod host;
mod http;
mod node;
mod plugin;
mod state;
mod turn;
mod upgrade;

pub use arena::ArenaConfig;
pub use engine::{Allocator, MachineLimits, PoolConfig, WasmConfig};
pub use error::{LoadError, SpawnError};
pub use http::{
    HttpBodyError, HttpErrorCode, HttpFailure, HttpInvocation, HttpRequestOptions, HttpResponseBody,
};
pub use node::{ComponentInfo, ComponentKind, WasmNode, WasmSpawnOptions};
pub use plugin::{
    BindFn, CallOptions, Extensions, Interrupted, Plugin, PluginError, PluginOptions,
    SupervisedPlugin,
};
pub use state::ProcessState;
pub use upgrade::{
    DEFAULT_UPGRADE_GRACE, DependencyCycle, ProcessUpgrade, ReloadError, ReloadEvent,
    ReloadEventKind, ReloadReport, UpgradeOutcome,
};
