//! The Rust guest SDK of rusm: write actors that run as WASI preview 2 components.
//!
//! An actor is a `cdylib` crate built for `wasm32-wasip2` whose entry point is
//! declared with [`actor!`]. Inside it, the functions of this crate talk to the
//! runtime: [`self_pid`], [`send`], [`receive`] and its selective variants,
//! [`send_receive`] (a send and a receive in one call into the runtime),
//! [`try_receive`] (never waits), [`spawn`], links and monitors, exits, the name
//! registry and timers. [`call`] and
//! [`Request`] give a `gen_server`-style request/reply on top of them, and the
//! [`wire`] module a tiny binary encoding for init data and payloads. With the `serde`
//! feature, `send_value`, `call_value` and `Message::decode` carry typed values.
//! [`hand_over`], [`handed_over`] and [`handle_upgrades`] let an actor keep its state
//! across a hot code upgrade; without them it is restarted in place on the new code.
//! [`keyvalue`] (`wasi:keyvalue`, with compare-and-swap; [`keyvalue_draft`] for its first draft) keeps state across restarts of the process and of
//! the node, and [`config`] (`wasi:config`) reads configuration, each as the policy
//! grants it.
//!
//! An actor that only reacts to messages is cheaper as a [`Handler`] (declared with
//! [`handler!`]): the host calls it once per message, and while it waits it holds no
//! host stack, so a node holds many more of them. See the [`handler`](mod@handler)
//! module.
//!
//! ```no_run
//! use std::time::Duration;
//! use rusm_guest::{Message, receive_timeout, send};
//!
//! // Echo every data message back to the pid in its first 8 bytes, until a
//! // second passes with no message.
//! fn run(_init: Vec<u8>) -> Result<(), String> {
//!     while let Some(message) = receive_timeout(Duration::from_secs(1)) {
//!         if let Message::Data { tag, payload } = message {
//!             let to = rusm_guest::Pid::from_slice(payload.get(..8).ok_or("short payload")?)
//!                 .ok_or("bad pid")?;
//!             send(to, tag + 1, &payload).map_err(|e| e.to_string())?;
//!         }
//!     }
//!     Ok(())
//! }
//!
//! rusm_guest::actor!(run);
//! # fn main() {}
//! ```
//!
//! The crate compiles for any target so that tools and docs work on the host, but
//! its functions only do something inside a component: elsewhere the runtime imports
//! are missing and calling them panics.

#![deny(missing_docs)]

#[allow(missing_docs, unsafe_code, unused_imports, clippy::all)]
/// The raw bindings generated from the `rusm:runtime` WIT package (world `actor`).
///
/// Prefer the safe functions of this crate; these are here for what they do not
/// cover.
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/rusm-runtime",
        world: "actor",
        // The vendored WASI packages gate `wasi:clocks/timezone` behind this feature;
        // enabling it lets them resolve (the actor world does not import it).
        features: ["clocks-timezone"],
        pub_export_macro: true,
        default_bindings_module: "rusm_guest::bindings",
    });
}

mod call;
pub mod handler;
#[cfg(feature = "http")]
pub mod http;
mod process;
pub mod sse;
mod state;
mod types;
mod upgrade;
#[cfg(feature = "serde")]
mod value;
pub mod wire;
pub mod ws;

pub use call::{
    CallError, REQUEST_HEADER_LEN, Request, call, fresh_reply_tag, reply, reply_and_receive,
};
pub use handler::{Handler, Next};
pub use process::{
    Selector, SpawnOptions, Spawned, cancel_timer, demonitor, exit, kill, link, monitor, receive,
    receive_selected, receive_selected_timeout, receive_tag, receive_tag_timeout, receive_timeout,
    register, register_global, self_pid, send, send_after, send_receive, send_receive_timeout,
    spawn, spawn_on, trap_exit, try_receive, unlink, unregister, whereis, whereis_global,
};
pub use state::{config, keyvalue, keyvalue_draft};
pub use types::{Error, ExitReason, Message, MonitorRef, Pid, REPLY_TAG_BASE, Tag, TimerRef};
pub use upgrade::{hand_over, handed_over, handle_upgrades};
#[cfg(feature = "serde")]
pub use value::{call_value, decode_value, encode_value, reply_value, send_value};

/// What an actor's run function may return: `()`, or `Result<(), E>` for any
/// displayable `E`.
///
/// `Ok(())` and `()` end the process with reason `normal`; `Err(e)` ends it with
/// reason `custom(e.to_string())`.
pub trait ActorResult {
    /// Converts to the result the `rusm:runtime/entry` export returns.
    fn into_run_result(self) -> Result<(), String>;
}

impl ActorResult for () {
    fn into_run_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: std::fmt::Display> ActorResult for Result<(), E> {
    fn into_run_result(self) -> Result<(), String> {
        self.map_err(|error| error.to_string())
    }
}

/// Declares the entry point of an actor component.
///
/// Takes a function (or closure) of type `fn(Vec<u8>) -> R` where `R` is an
/// [`ActorResult`]: `()`, `Result<(), String>`, `Result<(), rusm_guest::Error>`, and
/// so on. It receives the init bytes given at spawn. Use the macro once per
/// component, at module level:
///
/// ```no_run
/// fn run(init: Vec<u8>) -> Result<(), String> {
///     let name = String::from_utf8(init).map_err(|_| "init is not utf-8")?;
///     rusm_guest::register(&name).map_err(|e| e.to_string())
/// }
///
/// rusm_guest::actor!(run);
/// # fn main() {}
/// ```
///
/// It implements the generated `Guest` trait of the `rusm:runtime/entry` interface and
/// exports it, so the crate needs no direct dependency on `wit-bindgen`.
#[macro_export]
macro_rules! actor {
    ($run:expr $(,)?) => {
        #[allow(unsafe_code)]
        const _: () = {
            struct RusmActor;

            impl $crate::bindings::exports::rusm::runtime::entry::Guest for RusmActor {
                fn run(
                    init: ::std::vec::Vec<u8>,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    $crate::ActorResult::into_run_result(($run)(init))
                }
            }

    $crate::bindings::export!(RusmActor with_types_in $crate::bindings);
        };
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_results_convert() {
        assert_eq!(().into_run_result(), Ok(()));
        assert_eq!(Ok::<(), String>(()).into_run_result(), Ok(()));
        assert_eq!(
            Err::<(), _>(Error::Noproc).into_run_result(),
            Err("no such process".to_owned())
        );
    }

    fn run(init: Vec<u8>) -> Result<(), Error> {
        if init.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid("unexpected init".into()))
        }
    }

    // The macro must expand on the host target as well.
    actor!(run);
}
