//! Process identifiers and references.

use std::fmt;

/// A process identifier.
///
/// Pids are handed out from a per-node counter that starts at 1 and only grows, so a
/// pid is never reused within a node. The top [`Pid::NODE_BITS`] bits name the node:
/// 0 on a node that is not part of a cluster, the node's number in its cluster
/// otherwise (see [`Runtime::join_cluster`](crate::Runtime::join_cluster)), so a pid
/// carried to another node still names its process. They print the way Erlang prints
/// them: `<0.42>` (node 0, process 42).
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pid(u64);

impl Pid {
    /// How many of a pid's 64 bits name its node.
    pub const NODE_BITS: u32 = 20;

    /// The most nodes a cluster numbers: node numbers are 1 ..= `MAX_NODE`.
    pub const MAX_NODE: u32 = (1 << Pid::NODE_BITS) - 1;

    /// How many bits are left for the process's number within its node.
    pub const SERIAL_BITS: u32 = 64 - Pid::NODE_BITS;

    /// The pid of process `serial` on node `node` (`node` is cut to
    /// [`Pid::NODE_BITS`] bits, `serial` to [`Pid::SERIAL_BITS`]).
    pub const fn new(node: u32, serial: u64) -> Pid {
        Pid(((node as u64 & Pid::MAX_NODE as u64) << Pid::SERIAL_BITS)
            | (serial & ((1 << Pid::SERIAL_BITS) - 1)))
    }

    /// The number of the node this pid lives on (0: a node outside any cluster).
    pub const fn node(self) -> u32 {
        (self.0 >> Pid::SERIAL_BITS) as u32
    }

    /// The process's number within its node.
    pub const fn serial(self) -> u64 {
        self.0 & ((1 << Pid::SERIAL_BITS) - 1)
    }

    /// Build a pid from its raw number (as carried across the wasm boundary).
    pub const fn from_raw(raw: u64) -> Pid {
        Pid(raw)
    }

    /// The raw number of this pid.
    pub const fn as_raw(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{}.{}>", self.node(), self.serial())
    }
}

impl fmt::Debug for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The reference a monitor is known by; it is carried in the [`Down`](crate::Down)
/// message the monitor produces.
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MonitorRef(u64);

impl MonitorRef {
    /// Build a reference from its raw number.
    pub const fn from_raw(raw: u64) -> MonitorRef {
        MonitorRef(raw)
    }

    /// The raw number of this reference.
    pub const fn as_raw(self) -> u64 {
        self.0
    }
}

impl fmt::Display for MonitorRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pid = Pid(self.0);
        write!(f, "#Ref<{}.{}>", pid.node(), pid.serial())
    }
}

impl fmt::Debug for MonitorRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The reference of a timer started with `send_after`; pass it to `cancel_timer`.
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct TimerRef(u64);

impl TimerRef {
    /// Build a reference from its raw number.
    pub const fn from_raw(raw: u64) -> TimerRef {
        TimerRef(raw)
    }

    /// The raw number of this reference.
    pub const fn as_raw(self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pids_print_like_erlang() {
        assert_eq!(Pid::from_raw(42).to_string(), "<0.42>");
        assert_eq!(format!("{:?}", Pid::from_raw(7)), "<0.7>");
        assert_eq!(MonitorRef::from_raw(3).to_string(), "#Ref<0.3>");
        let remote = Pid::new(5, 42);
        assert_eq!((remote.node(), remote.serial()), (5, 42));
        assert_eq!(remote.to_string(), "<5.42>");
        assert_eq!(Pid::new(Pid::MAX_NODE, 1).node(), Pid::MAX_NODE);
        assert_eq!(Pid::from_raw(42).node(), 0);
    }
}
