//! The `[stdio]` and `[clocks]` sections.

use std::fmt;

/// Where one standard stream goes.
///
/// The order is by power: `Null < Log < Inherit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum StdioMode {
    /// `null`: reads see end of file, writes are discarded. The default.
    #[default]
    Null,
    /// `log`: each line written becomes a host log line tagged with the pid.
    /// Not valid for stdin.
    Log,
    /// `inherit`: the host process's own stream.
    Inherit,
}

impl StdioMode {
    /// `null`, `log` or `inherit`, as written in a policy.
    #[must_use]
    pub fn key(self) -> &'static str {
        match self {
            StdioMode::Null => "null",
            StdioMode::Log => "log",
            StdioMode::Inherit => "inherit",
        }
    }
}

impl fmt::Display for StdioMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// The `[stdio]` section.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StdioPolicy {
    /// Standard input: `null` or `inherit`.
    pub stdin: StdioMode,
    /// Standard output.
    pub stdout: StdioMode,
    /// Standard error.
    pub stderr: StdioMode,
}

impl StdioPolicy {
    /// The three streams with their names, in the order stdin, stdout, stderr.
    #[must_use]
    pub fn streams(&self) -> [(&'static str, StdioMode); 3] {
        [
            ("stdin", self.stdin),
            ("stdout", self.stdout),
            ("stderr", self.stderr),
        ]
    }
}

/// The `[clocks]` section. A process that reads a clock it is not granted ends
/// with the `capability-denied` exit reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClockPolicy {
    /// `wasi:clocks/wall-clock`: the time of day.
    pub wall: bool,
    /// `wasi:clocks/monotonic-clock`: elapsed time, timers and sleeping.
    pub monotonic: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdio_modes_are_ordered_by_power_and_default_to_null() {
        assert!(StdioMode::Null < StdioMode::Log);
        assert!(StdioMode::Log < StdioMode::Inherit);
        let s = StdioPolicy::default();
        assert_eq!(
            s.streams().map(|(_, m)| m),
            [StdioMode::Null, StdioMode::Null, StdioMode::Null]
        );
        assert_eq!(StdioMode::Log.to_string(), "log");
    }
}
