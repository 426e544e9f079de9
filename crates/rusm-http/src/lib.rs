//! HTTP-serving actors: a listener that routes requests to components exporting
//! `wasi:http/incoming-handler`, each request handled by a fresh sandboxed instance
//! that is also a rusm process.
