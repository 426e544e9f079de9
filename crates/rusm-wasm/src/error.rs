//! Errors of the wasm backend.

use std::path::PathBuf;

/// Why a component could not be loaded. A failed load changes nothing on the node.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The bytes are not WebAssembly at all.
    #[error("component {component:?} is not a WebAssembly binary (no \\0asm header)")]
    NotWasm {
        /// The component name.
        component: String,
    },
    /// A core module, not a component.
    #[error(
        "component {component:?} is a core WebAssembly module, not a component; build it for wasm32-wasip2 (or with cargo component)"
    )]
    CoreModule {
        /// The component name.
        component: String,
    },
    /// The component does not validate or compile.
    #[error("component {component:?} is invalid: {detail}")]
    Invalid {
        /// The component name.
        component: String,
        /// What wasmtime said.
        detail: String,
    },
    /// It imports something the host does not provide.
    #[error("component {component:?} imports something rusm does not provide: {detail}")]
    UnsatisfiedImport {
        /// The component name.
        component: String,
        /// What is missing, as wasmtime names it.
        detail: String,
    },
    /// It exports no entry point rusm runs by itself.
    #[error(
        "component {component:?} exports no entry point rusm can run: none of rusm:runtime/entry (an actor), rusm:runtime/handler (a handler actor), wasi:http/incoming-handler (an HTTP handler) or wasi:cli/run (a command); it exports: {} (a plugin of an embedding host is loaded with WasmNode::load_plugin_file)",
        if exports.is_empty() { "nothing".to_owned() } else { exports.join(", ") }
    )]
    NoEntryPoint {
        /// The component name.
        component: String,
        /// What it does export.
        exports: Vec<String>,
    },
    /// The entry point export has the wrong shape (for example another version).
    #[error("component {component:?} has an entry point of the wrong shape: {detail}")]
    BadEntryPoint {
        /// The component name.
        component: String,
        /// What did not match.
        detail: String,
    },
    /// It was loaded as an HTTP handler
    /// ([`WasmNode::load_http_bytes`](crate::WasmNode::load_http_bytes)) but does not
    /// export `wasi:http/incoming-handler` (0.2) or `wasi:http/handler` (0.3).
    #[error(
        "component {component:?} is not an HTTP handler: it exports neither wasi:http/incoming-handler@0.2 nor wasi:http/handler@0.3; it exports: {}",
        if exports.is_empty() { "nothing".to_owned() } else { exports.join(", ") }
    )]
    NotHttpHandler {
        /// The component name.
        component: String,
        /// What it does export.
        exports: Vec<String>,
    },
}

/// Why a wasm process could not be spawned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnError {
    /// No component of that name is loaded.
    #[error("no component named {0:?} is loaded")]
    UnknownComponent(String),
    /// The policy it would run under cannot be honoured, or does not allow it.
    #[error("not permitted: {0}")]
    NotPermitted(String),
    /// The node cannot take it now: the text names what ran out (its memory budget,
    /// [`WasmConfig::memory_budget`](crate::WasmConfig::memory_budget)).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The component is an HTTP handler (it exports `wasi:http/incoming-handler`): it
    /// runs once per request through [`WasmNode::serve_http`](crate::WasmNode::serve_http),
    /// not as a spawned actor.
    #[error(
        "component {0:?} is an HTTP handler; it runs once per request (rusm-http), not as a spawned process"
    )]
    HttpHandler(String),
    /// The component is not an HTTP handler, so it cannot serve a request.
    #[error(
        "component {0:?} exports neither wasi:http/incoming-handler@0.2 nor wasi:http/handler@0.3, so it cannot serve HTTP"
    )]
    NotHttpHandler(String),
    /// The component is a plugin: it runs through
    /// [`WasmNode::spawn_plugin`](crate::WasmNode::spawn_plugin), not as an actor.
    #[error("component {0:?} is a plugin; start it with spawn_plugin, not as an actor")]
    Plugin(String),
    /// The component was not loaded as a plugin, so it cannot run as one.
    #[error(
        "component {0:?} was not loaded as a plugin (load it with load_plugin_bytes or load_plugin_file)"
    )]
    NotPlugin(String),
}
