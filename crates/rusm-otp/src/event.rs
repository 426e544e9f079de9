//! Lifecycle events of a node, told to observers as they happen.

use crate::{ExitReason, Pid};

/// Something that happened on a node. Observers added with
/// [`Runtime::add_observer`](crate::Runtime::add_observer) are called with each event,
/// synchronously, on the thread where it happened: keep them short and never block in
/// them (log, count, or forward to a channel).
///
/// `#[non_exhaustive]`: more kinds of event may come; keep a catch-all arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A process was started.
    Spawned {
        /// The new process.
        pid: Pid,
        /// The process that spawned it, if any.
        parent: Option<Pid>,
        /// Its label ([`SpawnOptions::label`](crate::SpawnOptions::label)): a wasm
        /// process's component name, for example.
        label: Option<&'a str>,
    },
    /// A process ended. Told before its links and monitors hear of it.
    Exited {
        /// The process that ended.
        pid: Pid,
        /// Its label, if it had one.
        label: Option<&'a str>,
        /// Why it ended.
        reason: &'a ExitReason,
    },
    /// A supervisor started a child again after it ended (or after a sibling's end took
    /// it down, for `one_for_all` and `rest_for_one`).
    Restarted {
        /// The supervisor.
        supervisor: Pid,
        /// The child's id in its supervisor's spec.
        child: &'a str,
        /// The child's new pid.
        pid: Pid,
    },
    /// A process took a name ([`Runtime::register`](crate::Runtime::register)). Told
    /// once the name resolves to it, before `register` returns.
    Registered {
        /// The name.
        name: &'a str,
        /// The process now registered under it.
        pid: Pid,
    },
}
