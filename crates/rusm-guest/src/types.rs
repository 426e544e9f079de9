//! The values the runtime hands to and takes from a process: pids, references,
//! exit reasons, messages and errors.

use std::fmt;
use std::str::FromStr;

use crate::bindings::rusm::runtime::types as raw;
use crate::wire::DecodeError;

/// A number attached to every data message; selective receive filters on it.
///
/// Tag 0 is the conventional "untagged" value. Tags with the top bit set
/// (`tag >= REPLY_TAG_BASE`) are reserved for the replies of [`call`](crate::call).
pub type Tag = u64;

/// The first tag reserved for call replies; see [`call`](crate::call).
pub const REPLY_TAG_BASE: Tag = 1 << 63;

/// A process identifier: unique within a node and never reused.
///
/// It prints as `<0.N>`, parses back from that form, and travels inside payloads as
/// 8 little-endian bytes ([`Pid::to_le_bytes`], [`Pid::from_le_bytes`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Pid(u64);

impl Pid {
    /// Wraps the raw number the runtime uses.
    pub const fn from_raw(raw: u64) -> Self {
        Self(raw)
    }

    /// The raw number the runtime uses.
    pub const fn as_raw(self) -> u64 {
        self.0
    }

    /// The number of the node the process runs on: the top 20 bits of the pid (0 on
    /// a node that is in no cluster).
    pub const fn node(self) -> u32 {
        (self.0 >> 44) as u32
    }

    /// The process's number within its node: the low 44 bits.
    pub const fn serial(self) -> u64 {
        self.0 & ((1 << 44) - 1)
    }

    /// The pid as 8 little-endian bytes, the form it takes inside payloads.
    pub const fn to_le_bytes(self) -> [u8; 8] {
        self.0.to_le_bytes()
    }

    /// Reads a pid from 8 little-endian bytes.
    pub const fn from_le_bytes(bytes: [u8; 8]) -> Self {
        Self(u64::from_le_bytes(bytes))
    }

    /// Reads a pid from a slice that holds exactly 8 little-endian bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let array: [u8; 8] = bytes.try_into().ok()?;
        Some(Self::from_le_bytes(array))
    }
}

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<0.{}>", self.0)
    }
}

impl FromStr for Pid {
    type Err = DecodeError;

    /// Parses `<0.N>`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let number = text
            .strip_prefix("<0.")
            .and_then(|rest| rest.strip_suffix('>'))
            .ok_or_else(|| DecodeError::new(format!("not a pid: {text:?}")))?;
        number
            .parse()
            .map(Self)
            .map_err(|_| DecodeError::new(format!("not a pid: {text:?}")))
    }
}

impl From<u64> for Pid {
    fn from(raw: u64) -> Self {
        Self(raw)
    }
}

impl From<Pid> for u64 {
    fn from(pid: Pid) -> Self {
        pid.0
    }
}

/// The reference [`monitor`](crate::monitor) returns; it names the `Down` message
/// that follows.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct MonitorRef(u64);

impl MonitorRef {
    /// Wraps the raw number the runtime uses.
    pub const fn from_raw(raw: u64) -> Self {
        Self(raw)
    }

    /// The raw number the runtime uses.
    pub const fn as_raw(self) -> u64 {
        self.0
    }
}

impl fmt::Display for MonitorRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#Monitor<{}>", self.0)
    }
}

/// The reference [`send_after`](crate::send_after) returns; pass it to
/// [`cancel_timer`](crate::cancel_timer).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct TimerRef(u64);

impl TimerRef {
    /// Wraps the raw number the runtime uses.
    pub const fn from_raw(raw: u64) -> Self {
        Self(raw)
    }

    /// The raw number the runtime uses.
    pub const fn as_raw(self) -> u64 {
        self.0
    }
}

impl fmt::Display for TimerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#Timer<{}>", self.0)
    }
}

/// Why a process ended. Flows unchanged through links, monitors and supervisors.
///
/// It prints in a stable text form that [`FromStr`] parses back: the kebab-case name
/// of the variant (`normal`, `out-of-memory`, ...), followed for the variants that
/// carry text by a colon and the text, with no space (`crashed:wasm trap: unreachable`,
/// `custom:boom`). The example components report exit reasons in this form.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum ExitReason {
    /// The process returned from its entry point.
    Normal,
    /// The process was asked to stop (by a supervisor or node shutdown).
    Shutdown,
    /// The process was killed with [`kill`](crate::kill); this reason cannot be trapped.
    Killed,
    /// The process trapped or panicked; the text says why.
    Crashed(String),
    /// The process did not exist.
    Noproc,
    /// The process grew past its linear-memory limit.
    OutOfMemory,
    /// The process ran past its wall-clock deadline.
    DeadlineExceeded,
    /// A supervisor restarted its children too often and gave up.
    MaxRestartIntensity,
    /// The process used a capability its policy does not grant and that has no error
    /// channel of its own.
    CapabilityDenied(String),
    /// The process was replaced during an upgrade and did not hand over in time.
    UpgradeTimeout,
    /// Any other reason, chosen by the process that exited.
    Custom(String),
    /// The process was on another node, and the connection to that node ended.
    Noconnection,
}

impl ExitReason {
    /// A `custom` reason with the given text.
    pub fn custom(text: impl Into<String>) -> Self {
        Self::Custom(text.into())
    }

    /// True for [`ExitReason::Normal`]: the only reason a link does not propagate.
    pub fn is_normal(&self) -> bool {
        matches!(self, Self::Normal)
    }

    /// The kebab-case name of the variant, as in the WIT.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::Shutdown => "shutdown",
            Self::Killed => "killed",
            Self::Crashed(_) => "crashed",
            Self::Noproc => "noproc",
            Self::OutOfMemory => "out-of-memory",
            Self::DeadlineExceeded => "deadline-exceeded",
            Self::MaxRestartIntensity => "max-restart-intensity",
            Self::CapabilityDenied(_) => "capability-denied",
            Self::UpgradeTimeout => "upgrade-timeout",
            Self::Custom(_) => "custom",
            Self::Noconnection => "noconnection",
        }
    }

    /// The text the variant carries, if it carries one.
    pub fn text(&self) -> Option<&str> {
        match self {
            Self::Crashed(text) | Self::CapabilityDenied(text) | Self::Custom(text) => Some(text),
            _ => None,
        }
    }

    pub(crate) fn into_raw(self) -> raw::ExitReason {
        match self {
            Self::Normal => raw::ExitReason::Normal,
            Self::Shutdown => raw::ExitReason::Shutdown,
            Self::Killed => raw::ExitReason::Killed,
            Self::Crashed(text) => raw::ExitReason::Crashed(text),
            Self::Noproc => raw::ExitReason::Noproc,
            Self::OutOfMemory => raw::ExitReason::OutOfMemory,
            Self::DeadlineExceeded => raw::ExitReason::DeadlineExceeded,
            Self::MaxRestartIntensity => raw::ExitReason::MaxRestartIntensity,
            Self::CapabilityDenied(text) => raw::ExitReason::CapabilityDenied(text),
            Self::UpgradeTimeout => raw::ExitReason::UpgradeTimeout,
            Self::Custom(text) => raw::ExitReason::Custom(text),
            Self::Noconnection => raw::ExitReason::Noconnection,
        }
    }
}

impl From<raw::ExitReason> for ExitReason {
    fn from(reason: raw::ExitReason) -> Self {
        match reason {
            raw::ExitReason::Normal => Self::Normal,
            raw::ExitReason::Shutdown => Self::Shutdown,
            raw::ExitReason::Killed => Self::Killed,
            raw::ExitReason::Crashed(text) => Self::Crashed(text),
            raw::ExitReason::Noproc => Self::Noproc,
            raw::ExitReason::OutOfMemory => Self::OutOfMemory,
            raw::ExitReason::DeadlineExceeded => Self::DeadlineExceeded,
            raw::ExitReason::MaxRestartIntensity => Self::MaxRestartIntensity,
            raw::ExitReason::CapabilityDenied(text) => Self::CapabilityDenied(text),
            raw::ExitReason::UpgradeTimeout => Self::UpgradeTimeout,
            raw::ExitReason::Custom(text) => Self::Custom(text),
            raw::ExitReason::Noconnection => Self::Noconnection,
        }
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.text() {
            Some(text) => write!(f, "{}:{text}", self.name()),
            None => f.write_str(self.name()),
        }
    }
}

impl FromStr for ExitReason {
    type Err = DecodeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (name, detail) = match text.split_once(':') {
            Some((name, detail)) => (name, Some(detail.to_owned())),
            None => (text, None),
        };
        let reason = match (name, detail) {
            ("normal", None) => Self::Normal,
            ("shutdown", None) => Self::Shutdown,
            ("killed", None) => Self::Killed,
            ("crashed", Some(detail)) => Self::Crashed(detail),
            ("noproc", None) => Self::Noproc,
            ("out-of-memory", None) => Self::OutOfMemory,
            ("deadline-exceeded", None) => Self::DeadlineExceeded,
            ("max-restart-intensity", None) => Self::MaxRestartIntensity,
            ("capability-denied", Some(detail)) => Self::CapabilityDenied(detail),
            ("upgrade-timeout", None) => Self::UpgradeTimeout,
            ("custom", Some(detail)) => Self::Custom(detail),
            ("noconnection", None) => Self::Noconnection,
            _ => return Err(DecodeError::new(format!("not an exit reason: {text:?}"))),
        };
        Ok(reason)
    }
}

/// Everything [`receive`](crate::receive) can return.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Message {
    /// A data message from another process (or from a timer).
    Data {
        /// The tag the sender chose.
        tag: Tag,
        /// The bytes the sender passed.
        payload: Vec<u8>,
    },
    /// A monitored process ended (or did not exist when `monitor` was called).
    Down {
        /// The reference [`monitor`](crate::monitor) returned.
        monitor: MonitorRef,
        /// The process that ended.
        pid: Pid,
        /// Why it ended.
        reason: ExitReason,
    },
    /// A linked process ended, or someone called [`exit`](crate::exit) on this
    /// process, while it traps exits (see [`trap_exit`](crate::trap_exit)).
    Exit {
        /// The process the signal came from.
        from: Pid,
        /// The reason it carries.
        reason: ExitReason,
    },
    /// The host asks this process to move to new code (its component, or one it
    /// depends on, was reloaded). Only seen after [`handle_upgrades`](crate::handle_upgrades)`(true)`;
    /// answer it with [`hand_over`](crate::hand_over).
    Upgrade {
        /// The version of the component the process will run after handing over.
        version: u64,
    },
}

impl Message {
    /// The tag of a data message.
    pub fn tag(&self) -> Option<Tag> {
        match self {
            Self::Data { tag, .. } => Some(*tag),
            _ => None,
        }
    }

    /// The payload of a data message.
    pub fn payload(&self) -> Option<&[u8]> {
        match self {
            Self::Data { payload, .. } => Some(payload),
            _ => None,
        }
    }

    /// The payload of a data message, by value.
    pub fn into_payload(self) -> Option<Vec<u8>> {
        match self {
            Self::Data { payload, .. } => Some(payload),
            _ => None,
        }
    }
}

impl From<raw::Message> for Message {
    fn from(message: raw::Message) -> Self {
        match message {
            raw::Message::Data(data) => Self::Data {
                tag: data.tag,
                payload: data.payload,
            },
            raw::Message::Down(down) => Self::Down {
                monitor: MonitorRef(down.monitor),
                pid: Pid(down.pid),
                reason: down.reason.into(),
            },
            raw::Message::Exit(signal) => Self::Exit {
                from: Pid(signal.from),
                reason: signal.reason.into(),
            },
            raw::Message::Upgrade(request) => Self::Upgrade {
                version: request.version,
            },
        }
    }
}

/// Why a runtime call was refused.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum Error {
    /// No component or policy of this name is loaded.
    NotFound(String),
    /// The caller's policy does not allow this.
    NotPermitted(String),
    /// The target process does not exist.
    Noproc,
    /// The name is already registered, or the caller already has a name.
    AlreadyRegistered(String),
    /// The request is malformed (for example, a message larger than allowed).
    Invalid(String),
    /// The node cannot do this now (for example, it is shutting down).
    Unavailable(String),
}

impl From<raw::Error> for Error {
    fn from(error: raw::Error) -> Self {
        match error {
            raw::Error::NotFound(text) => Self::NotFound(text),
            raw::Error::NotPermitted(text) => Self::NotPermitted(text),
            raw::Error::Noproc => Self::Noproc,
            raw::Error::AlreadyRegistered(text) => Self::AlreadyRegistered(text),
            raw::Error::Invalid(text) => Self::Invalid(text),
            raw::Error::Unavailable(text) => Self::Unavailable(text),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound(text) => write!(f, "not found: {text}"),
            Self::NotPermitted(text) => write!(f, "not permitted: {text}"),
            Self::Noproc => f.write_str("no such process"),
            Self::AlreadyRegistered(text) => write!(f, "already registered: {text}"),
            Self::Invalid(text) => write!(f, "invalid request: {text}"),
            Self::Unavailable(text) => write!(f, "unavailable: {text}"),
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_prints_and_parses() {
        let pid = Pid::from_raw(42);
        assert_eq!(pid.to_string(), "<0.42>");
        assert_eq!("<0.42>".parse::<Pid>().unwrap(), pid);
        assert!("<1.42>".parse::<Pid>().is_err());
        assert!("<0.x>".parse::<Pid>().is_err());
        assert_eq!(Pid::from_le_bytes(pid.to_le_bytes()), pid);
        assert_eq!(Pid::from_slice(&pid.to_le_bytes()), Some(pid));
        assert_eq!(Pid::from_slice(&[1, 2, 3]), None);
    }

    #[test]
    fn a_pid_names_its_node_as_the_host_numbers_it() {
        // The host puts the node number in the top 20 bits (rusm_otp::Pid::new).
        let pid = Pid::from_raw((3u64 << 44) | 42);
        assert_eq!((pid.node(), pid.serial()), (3, 42));
        let last = Pid::from_raw(u64::MAX);
        assert_eq!((last.node(), last.serial()), ((1 << 20) - 1, (1 << 44) - 1));
        assert_eq!(Pid::from_raw(42).node(), 0);
    }

    #[test]
    fn exit_reasons_round_trip_through_text() {
        let reasons = [
            ExitReason::Normal,
            ExitReason::Shutdown,
            ExitReason::Killed,
            ExitReason::Crashed("wasm trap: unreachable".into()),
            ExitReason::Noproc,
            ExitReason::OutOfMemory,
            ExitReason::DeadlineExceeded,
            ExitReason::MaxRestartIntensity,
            ExitReason::CapabilityDenied("clock".into()),
            ExitReason::UpgradeTimeout,
            ExitReason::Noconnection,
            ExitReason::custom(""),
            ExitReason::custom("a:b"),
        ];
        for reason in reasons {
            let text = reason.to_string();
            assert_eq!(text.parse::<ExitReason>().unwrap(), reason, "{text}");
        }
        assert_eq!(ExitReason::custom("boom").to_string(), "custom:boom");
        assert!("normal:x".parse::<ExitReason>().is_err());
        assert!("custom".parse::<ExitReason>().is_err());
        assert!("bogus".parse::<ExitReason>().is_err());
    }

    #[test]
    fn raw_reasons_convert_both_ways() {
        let reason = ExitReason::CapabilityDenied("net".into());
        let back: ExitReason = reason.clone().into_raw().into();
        assert_eq!(back, reason);
    }
}
