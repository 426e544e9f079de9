//! What a loaded component is.

/// What a loaded component is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComponentKind {
    /// Exports `rusm:runtime/entry`: a long-running actor.
    Actor,
    /// Exports `wasi:cli/run`: a plain WASI command run as a process; its exit code
    /// becomes the exit reason (0 is `normal`). One that also exports
    /// `wasi:http/incoming-handler` serves HTTP requests too
    /// ([`WasmNode::serves_http`](crate::WasmNode::serves_http)).
    Command,
    /// Exports `wasi:http/incoming-handler@0.2.x` (and neither actor entry point nor
    /// `wasi:cli/run`, unless loaded with
    /// [`WasmNode::load_http_bytes`](crate::WasmNode::load_http_bytes)): an HTTP
    /// handler, run once per request (see
    /// [`WasmNode::serve_http`](crate::WasmNode::serve_http)); it cannot be spawned as
    /// an actor.
    Http,
    /// Exports `rusm:runtime/handler` (world `handler-actor`): a long-running actor
    /// whose `handle` the host calls once per message; idle, it holds no fiber stack.
    Handler,
    /// Exports the embedder's own interface: a plugin, loaded with
    /// [`WasmNode::load_plugin_bytes`](crate::WasmNode::load_plugin_bytes) and run with [`WasmNode::spawn_plugin`](crate::WasmNode::spawn_plugin).
    Plugin,
}
