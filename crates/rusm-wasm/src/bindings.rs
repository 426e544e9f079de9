//! The bindings generated from `wit/rusm-runtime`: the only `bindgen!` calls over it
//! in the host (the `actor` world, whose `rusm:runtime` interfaces every process
//! imports, and the `handler-actor` world, which reuses them), and the conversions
//! between the core's types and their WIT forms.

/// The `actor` world: `rusm:runtime/types` and `process`, and the `entry` export.
pub(crate) mod actor_world {
    wasmtime::component::bindgen!({
        path: "../../wit/rusm-runtime",
        world: "actor",
        imports: {
            "rusm:runtime/process.receive": async | trappable,
            "rusm:runtime/process.send-receive": async | trappable,
            "rusm:runtime/process.register-global": async | trappable,
            "rusm:runtime/process.whereis-global": async | trappable,
            "rusm:runtime/process.spawn-on": async | trappable,
            default: trappable,
        },
        exports: { default: async },
    });
}

/// The `handler-actor` world: the `handler` export, over the `actor` world's imports.
pub(crate) mod handler_world {
    wasmtime::component::bindgen!({
        path: "../../wit/rusm-runtime",
        world: "handler-actor",
        exports: { default: async },
        with: {
            "rusm:runtime/types": crate::bindings::actor_world::rusm::runtime::types,
            "rusm:runtime/process": crate::bindings::actor_world::rusm::runtime::process,
        },
    });
}

pub(crate) use actor_world::rusm;
pub(crate) use actor_world::{Actor, ActorPre};
pub(crate) use handler_world::exports::rusm::runtime::handler::Next;
pub(crate) use handler_world::{HandlerActor, HandlerActorPre};

pub(crate) use actor_world::rusm::runtime::types::{
    DataMessage, Down as WitDown, Error as WitError, ExitReason as WitExitReason,
    ExitSignal as WitExitSignal, Message as WitMessage, Selector, SpawnOptions as WitSpawnOptions,
    Spawned as WitSpawned, UpgradeRequest,
};

/// The longest text a guest can put into an exit reason, in bytes. A reason is kept
/// by the node and lowered into every linked and monitoring process (and every
/// supervisor's log), so a guest must not choose its size; longer text is cut at a
/// character boundary and marked with how long it was.
pub(crate) const MAX_REASON_TEXT: usize = 4096;

/// `text` as an exit reason may carry it: at most [`MAX_REASON_TEXT`] bytes.
pub(crate) fn reason_text(mut text: String) -> String {
    if text.len() <= MAX_REASON_TEXT {
        return text;
    }
    let full = text.len();
    let note = format!("... ({full} bytes, cut)");
    let mut end = MAX_REASON_TEXT - note.len();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(&note);
    text
}

/// Convert a core exit reason for a guest.
pub(crate) fn reason_to_wit(reason: &rusm_otp::ExitReason) -> WitExitReason {
    use rusm_otp::ExitReason as R;
    match reason {
        R::Normal => WitExitReason::Normal,
        R::Shutdown => WitExitReason::Shutdown,
        R::Killed => WitExitReason::Killed,
        R::Crashed(why) => WitExitReason::Crashed(why.to_string()),
        R::NoProc => WitExitReason::Noproc,
        R::OutOfMemory => WitExitReason::OutOfMemory,
        R::DeadlineExceeded => WitExitReason::DeadlineExceeded,
        R::MaxRestartIntensity => WitExitReason::MaxRestartIntensity,
        R::CapabilityDenied(what) => WitExitReason::CapabilityDenied(what.to_string()),
        R::UpgradeTimeout => WitExitReason::UpgradeTimeout,
        R::Custom(text) => WitExitReason::Custom(text.to_string()),
        R::NoConnection => WitExitReason::Noconnection,
        other => WitExitReason::Custom(other.to_string()),
    }
}

/// Convert a guest's exit reason for the core.
pub(crate) fn reason_from_wit(reason: WitExitReason) -> rusm_otp::ExitReason {
    use rusm_otp::ExitReason as R;
    match reason {
        WitExitReason::Normal => R::Normal,
        WitExitReason::Shutdown => R::Shutdown,
        WitExitReason::Killed => R::Killed,
        WitExitReason::Crashed(why) => R::crashed(reason_text(why)),
        WitExitReason::Noproc => R::NoProc,
        WitExitReason::OutOfMemory => R::OutOfMemory,
        WitExitReason::DeadlineExceeded => R::DeadlineExceeded,
        WitExitReason::MaxRestartIntensity => R::MaxRestartIntensity,
        WitExitReason::CapabilityDenied(what) => R::CapabilityDenied(reason_text(what).into()),
        WitExitReason::UpgradeTimeout => R::UpgradeTimeout,
        WitExitReason::Custom(text) => R::custom(reason_text(text)),
        WitExitReason::Noconnection => R::NoConnection,
    }
}

/// Convert a core message for a guest; data that is not bytes cannot cross and is
/// reported as `None` (the caller drops it).
pub(crate) fn message_to_wit(msg: rusm_otp::Message) -> Option<WitMessage> {
    Some(match msg {
        rusm_otp::Message::Data(data) => {
            let Ok(payload) = data.payload.downcast::<Vec<u8>>() else {
                tracing::warn!("dropped a native (non-byte) message sent to a wasm process");
                return None;
            };
            WitMessage::Data(DataMessage {
                tag: data.tag,
                payload,
            })
        }
        rusm_otp::Message::Down(down) => WitMessage::Down(WitDown {
            monitor: down.monitor.as_raw(),
            pid: down.pid.as_raw(),
            reason: reason_to_wit(&down.reason),
        }),
        rusm_otp::Message::Exit(sig) => WitMessage::Exit(WitExitSignal {
            from: sig.from.as_raw(),
            reason: reason_to_wit(&sig.reason),
        }),
        _ => return None,
    })
}

/// A guest ended itself with `exit(self, reason)` or `kill(self)`; carried out of the
/// guest as a trap and turned back into the reason.
#[derive(Debug)]
pub(crate) struct SelfExit(pub(crate) rusm_otp::ExitReason);

impl std::fmt::Display for SelfExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "process exited with reason {}", self.0)
    }
}

impl std::error::Error for SelfExit {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_text_is_bounded_and_says_it_was_cut() {
        assert_eq!(reason_text("short".into()), "short");
        let exact = "x".repeat(MAX_REASON_TEXT);
        assert_eq!(reason_text(exact.clone()), exact);
        // Multi-byte characters straddling the cut are not split.
        let long = "é".repeat(MAX_REASON_TEXT);
        let cut = reason_text(long);
        assert!(cut.len() <= MAX_REASON_TEXT, "{}", cut.len());
        assert!(cut.ends_with(&format!("... ({} bytes, cut)", 2 * MAX_REASON_TEXT)));
        assert!(cut.starts_with("éé"));
    }
}
