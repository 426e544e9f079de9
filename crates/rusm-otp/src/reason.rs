//! Why a process ended.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

/// Why a process ended.
///
/// Exit reasons flow unchanged through links, monitors and supervisors, for native and
/// wasm processes alike. The enum is `#[non_exhaustive]`: backends may gain reasons
/// without breaking callers, who should always keep a catch-all arm.
///
/// Only [`ExitReason::Normal`] is a *normal* exit: it does not take linked processes
/// down. Every other reason is abnormal.
#[derive(Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExitReason {
    /// The process body returned.
    Normal,
    /// The process was asked to stop, by a supervisor or by node shutdown.
    Shutdown,
    /// The process was killed with `kill`. Kills cannot be trapped.
    Killed,
    /// The process panicked or trapped; the text says why.
    Crashed(Arc<str>),
    /// The process did not exist.
    NoProc,
    /// A wasm process grew past its linear-memory limit.
    OutOfMemory,
    /// A process ran past its wall-clock deadline.
    DeadlineExceeded,
    /// A supervisor restarted its children more often than its intensity allows.
    MaxRestartIntensity,
    /// A process used a capability its policy does not grant, through an interface that
    /// has no error channel of its own (a denied clock, for example).
    CapabilityDenied(Arc<str>),
    /// A process did not hand over its state within the upgrade grace period.
    UpgradeTimeout,
    /// The process was on another node, and the connection to that node ended (it
    /// stopped answering, or a gap in its stream of messages ended the connection).
    NoConnection,
    /// Any other reason, chosen by whoever ended the process.
    Custom(Arc<str>),
}

impl ExitReason {
    /// A [`ExitReason::Crashed`] reason with the given message.
    pub fn crashed(message: impl Into<Arc<str>>) -> ExitReason {
        ExitReason::Crashed(message.into())
    }

    /// A [`ExitReason::Custom`] reason with the given text.
    pub fn custom(text: impl Into<Arc<str>>) -> ExitReason {
        ExitReason::Custom(text.into())
    }

    /// True for [`ExitReason::Normal`], the only reason that leaves linked processes alone.
    pub fn is_normal(&self) -> bool {
        matches!(self, ExitReason::Normal)
    }

    /// Every value [`ExitReason::kind`] returns, in declaration order.
    pub const KINDS: [&'static str; 12] = [
        "normal",
        "shutdown",
        "killed",
        "crashed",
        "noproc",
        "out-of-memory",
        "deadline-exceeded",
        "max-restart-intensity",
        "capability-denied",
        "upgrade-timeout",
        "custom",
        "noconnection",
    ];

    /// The reason's kind without its text, such as `"crashed"` or `"out-of-memory"`:
    /// one of [`ExitReason::KINDS`]. For counting exits by reason and for metric labels.
    pub fn kind(&self) -> &'static str {
        Self::KINDS[self.kind_index()]
    }

    pub(crate) fn kind_index(&self) -> usize {
        match self {
            ExitReason::Normal => 0,
            ExitReason::Shutdown => 1,
            ExitReason::Killed => 2,
            ExitReason::Crashed(_) => 3,
            ExitReason::NoProc => 4,
            ExitReason::OutOfMemory => 5,
            ExitReason::DeadlineExceeded => 6,
            ExitReason::MaxRestartIntensity => 7,
            ExitReason::CapabilityDenied(_) => 8,
            ExitReason::UpgradeTimeout => 9,
            ExitReason::Custom(_) => 10,
            ExitReason::NoConnection => 11,
        }
    }

    /// True for the reasons a `transient` supervisor child is not restarted after:
    /// `normal` and `shutdown`.
    pub fn is_clean_stop(&self) -> bool {
        matches!(self, ExitReason::Normal | ExitReason::Shutdown)
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitReason::Normal => f.write_str("normal"),
            ExitReason::Shutdown => f.write_str("shutdown"),
            ExitReason::Killed => f.write_str("killed"),
            ExitReason::Crashed(why) => write!(f, "crashed: {why}"),
            ExitReason::NoProc => f.write_str("noproc"),
            ExitReason::OutOfMemory => f.write_str("out of memory"),
            ExitReason::DeadlineExceeded => f.write_str("deadline exceeded"),
            ExitReason::MaxRestartIntensity => f.write_str("reached max restart intensity"),
            ExitReason::CapabilityDenied(what) => write!(f, "capability denied: {what}"),
            ExitReason::UpgradeTimeout => f.write_str("upgrade timeout"),
            ExitReason::NoConnection => f.write_str("noconnection"),
            ExitReason::Custom(text) => write!(f, "{text}"),
        }
    }
}

impl fmt::Debug for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitReason::Crashed(why) => write!(f, "Crashed({why:?})"),
            ExitReason::CapabilityDenied(what) => write!(f, "CapabilityDenied({what:?})"),
            ExitReason::Custom(text) => write!(f, "Custom({text:?})"),
            other => fmt::Display::fmt(other, f),
        }
    }
}

/// What a process body returns, turned into its exit reason.
///
/// As in Erlang, a body that simply returns ends with reason `normal`, whatever value it
/// returns — except for these, which carry a reason:
///
/// - an [`ExitReason`] is the exit reason;
/// - `Result<(), ExitReason>`: `Err(reason)` is the exit reason;
/// - `Result<(), String>` and `Result<(), &'static str>`: `Err(text)` becomes
///   [`ExitReason::Custom`].
///
/// The trait is implemented for every `'static` type so that bodies that never return
/// (an endless receive loop, whose type is `!`) are accepted too.
pub trait IntoExitReason {
    /// Convert into the exit reason.
    fn into_exit_reason(self) -> ExitReason;
}

impl<T: Any> IntoExitReason for T {
    fn into_exit_reason(self) -> ExitReason {
        let mut slot = Some(self);
        let any = &mut slot as &mut dyn Any;
        if let Some(reason) = any.downcast_mut::<Option<ExitReason>>() {
            return reason.take().expect("slot is full");
        }
        if let Some(result) = any.downcast_mut::<Option<Result<(), ExitReason>>>() {
            return result
                .take()
                .expect("slot is full")
                .err()
                .unwrap_or(ExitReason::Normal);
        }
        if let Some(result) = any.downcast_mut::<Option<Result<(), String>>>() {
            return match result.take().expect("slot is full") {
                Ok(()) => ExitReason::Normal,
                Err(text) => ExitReason::custom(text),
            };
        }
        if let Some(result) = any.downcast_mut::<Option<Result<(), &'static str>>>() {
            return match result.take().expect("slot is full") {
                Ok(()) => ExitReason::Normal,
                Err(text) => ExitReason::custom(text),
            };
        }
        ExitReason::Normal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_print_readably() {
        assert_eq!(ExitReason::crashed("boom").to_string(), "crashed: boom");
        assert_eq!(format!("{:?}", ExitReason::custom("x")), "Custom(\"x\")");
        assert_eq!(format!("{:?}", ExitReason::Killed), "killed");
        assert!(ExitReason::Normal.is_normal());
        assert!(!ExitReason::Shutdown.is_normal());
        assert!(ExitReason::Shutdown.is_clean_stop());
        assert!(!ExitReason::Killed.is_clean_stop());
    }

    #[test]
    fn body_results_map_to_reasons() {
        assert_eq!(().into_exit_reason(), ExitReason::Normal);
        assert_eq!(42u32.into_exit_reason(), ExitReason::Normal);
        assert_eq!(ExitReason::Killed.into_exit_reason(), ExitReason::Killed);
        assert_eq!(
            Err::<(), _>(ExitReason::Shutdown).into_exit_reason(),
            ExitReason::Shutdown
        );
        assert_eq!(
            Ok::<(), ExitReason>(()).into_exit_reason(),
            ExitReason::Normal
        );
        assert_eq!(
            Err::<(), _>("bad".to_string()).into_exit_reason(),
            ExitReason::custom("bad")
        );
        assert_eq!(
            Err::<(), _>("bad").into_exit_reason(),
            ExitReason::custom("bad")
        );
    }
}
