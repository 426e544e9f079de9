//! Process identifiers and references.

use std::fmt;

/// A process identifier.
///
/// Pids are handed out from a per-node counter that starts at 1 and only grows, so a
/// pid is never reused within a node. They print the way Erlang prints them: `<0.42>`
/// (node 0, process 42).
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pid(u64);

impl Pid {
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
        write!(f, "<0.{}>", self.0)
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
        write!(f, "#Ref<0.{}>", self.0)
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
    }
}
