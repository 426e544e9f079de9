//! `wasi:keyvalue` and `wasi:config`: state that outlives a process, and configuration
//! from its policy. Both are linked for every process; what a process may open or read
//! is its policy's `[keyvalue]` and `[config]` sections (`capabilities/README.md`).

#[allow(missing_docs, unsafe_code, unused_imports, clippy::all)]
mod kv_bindings {
    wit_bindgen::generate!({
        path: "../../wit/rusm-runtime",
        world: "wasi:keyvalue/imports@0.2.0-draft",
        features: ["clocks-timezone"],
    });
}

#[allow(missing_docs, unsafe_code, unused_imports, clippy::all)]
mod config_bindings {
    wit_bindgen::generate!({
        path: "../../wit/rusm-runtime",
        world: "wasi:config/imports@0.2.0-rc.1",
        features: ["clocks-timezone"],
    });
}

/// `wasi:keyvalue@0.2.0-draft`: buckets of byte values under string keys, kept by the
/// node in its store. `store::open(name)` returns a [`store::Bucket`] when the policy
/// grants the bucket and `access-denied` otherwise; writes to a bucket granted `ro`
/// return `access-denied`, and a write past the bucket's size limits returns `other`
/// with a message. `atomics::increment` keeps a decimal number; `batch::set_many` and
/// `batch::delete_many` store all of a batch or none of it.
pub mod keyvalue {
    pub use super::kv_bindings::wasi::keyvalue::{atomics, batch, store};
    pub use store::{Bucket, Error, KeyResponse, open};
}

/// `wasi:config@0.2.0-rc.1`: `store::get(key)` and `store::get_all()` see the values
/// the policy's `[config]` section gives, and nothing else.
pub mod config {
    pub use super::config_bindings::wasi::config::store;
    pub use store::{Error, get, get_all};
}
