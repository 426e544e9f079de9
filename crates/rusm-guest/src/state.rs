//! `wasi:keyvalue` and `wasi:config`: state that outlives a process, and configuration
//! from its policy. Both are linked for every process; what a process may open or read
//! is its policy's `[keyvalue]` and `[config]` sections (`capabilities/README.md`).

#[allow(missing_docs, unsafe_code, unused_imports, clippy::all)]
mod kv_bindings {
    wit_bindgen::generate!({
        path: "../../wit/rusm-runtime",
        world: "wasi:keyvalue/imports@0.2.0-draft2",
        features: ["clocks-timezone"],
    });
}

#[allow(missing_docs, unsafe_code, unused_imports, clippy::all)]
mod kv_draft_bindings {
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

/// `wasi:keyvalue@0.2.0-draft2`: buckets of byte values under string keys, kept by the
/// node in its store. `store::open(name)` returns a [`store::Bucket`] when the policy
/// grants the bucket and `access-denied` otherwise; writes to a bucket granted `ro`
/// return `access-denied`, and a write past the bucket's size limits returns `other`
/// with a message. `atomics::increment` keeps a decimal number (an `i64`);
/// `atomics::Cas::new(&bucket, key)` begins a compare-and-swap (`access-denied` on a
/// bucket granted `ro`) and `atomics::swap(cas, value)` stores the value only if the
/// key still holds what it held when the handle was made, or last returned from
/// `Cas::current`; otherwise it stores nothing and returns `CasError::CasFailed` with
/// a new handle expecting what the key holds now. `batch::set_many` and
/// `batch::delete_many` store all of a batch or none of it. `list_keys`'s cursor is
/// the text it returned.
pub mod keyvalue {
    pub use super::kv_bindings::wasi::keyvalue0_2_0_draft2::{atomics, batch, store};
    pub use atomics::{Cas, CasError, swap};
    pub use store::{Bucket, Error, KeyResponse, open};
}

/// `wasi:keyvalue@0.2.0-draft`, the first draft, for components that must also run on
/// hosts that link only it: the same buckets and checks as [`keyvalue`], without
/// compare-and-swap; `atomics::increment` takes and returns a `u64` and `list_keys`'s
/// cursor is a `u64`.
pub mod keyvalue_draft {
    pub use super::kv_draft_bindings::wasi::keyvalue0_2_0_draft::{atomics, batch, store};
    pub use store::{Bucket, Error, KeyResponse, open};
}

/// `wasi:config@0.2.0-rc.1`: `store::get(key)` and `store::get_all()` see the values
/// the policy's `[config]` section gives, and nothing else.
pub mod config {
    pub use super::config_bindings::wasi::config::store;
    pub use store::{Error, get, get_all};
}
