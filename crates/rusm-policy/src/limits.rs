//! The `[limits]` section: resource ceilings for one process.

use std::time::Duration;

use crate::pattern::PatternError;

/// The `[limits]` section. Every limit is optional: `None` means the node's
/// default applies, which the node chooses (and which may be no limit at all).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// `memory`: the most bytes of linear memory the process's instance may hold,
    /// all memories together. Growing past it fails; a process that cannot grow
    /// ends with `out-of-memory`.
    pub memory: Option<u64>,
    /// `table_elements`: the most elements any one table may grow to.
    pub table_elements: Option<u64>,
    /// `fuel`: the total fuel (roughly, WebAssembly instructions) the process may
    /// burn over its whole run; when it runs out the process traps.
    pub fuel: Option<u64>,
    /// `deadline`: the wall-clock time the whole run may take; past it the process
    /// ends with `deadline-exceeded`.
    pub deadline: Option<Duration>,
    /// `mailbox`: the most messages that may wait in the process's mailbox;
    /// messages sent to a full mailbox are dropped.
    pub mailbox: Option<u64>,
    /// `message_size`: the largest message payload, in bytes, the process may send.
    pub message_size: Option<u64>,
    /// `children`: the most live child processes the process may have at once.
    pub children: Option<u64>,
    /// `timers`: the most `send-after` timers the process may have waiting at once.
    pub timers: Option<u64>,
    /// `monitors`: the most monitors the process may hold at once (counting the `down`
    /// messages waiting in its mailbox).
    pub monitors: Option<u64>,
    /// `links`: the most processes it may be linked to at once.
    pub links: Option<u64>,
    /// `mailbox_bytes`: the most bytes of message payloads that may wait in its
    /// mailbox, and, separately, in its timers.
    pub mailbox_bytes: Option<u64>,
    /// `max_receive`: the largest message payload it accepts; larger sends to it fail.
    pub max_receive: Option<u64>,
    /// `descendants`: the most processes its whole spawn tree (children, their
    /// children, ...) may have alive at once.
    pub descendants: Option<u64>,
    /// `spawns`: the most processes its whole spawn tree may ever spawn.
    pub spawns: Option<u64>,
    /// `memories`: the most linear memories its component's instance may hold (all
    /// its core instances together).
    pub memories: Option<u64>,
    /// `tables`: the most tables its component's instance may hold.
    pub tables: Option<u64>,
    /// `instances`: the most core instances its component may instantiate.
    pub instances: Option<u64>,
    /// `mailbox_overflow`: what a send to its full mailbox does. Not a ceiling: not
    /// compared by the subset rule.
    pub mailbox_overflow: Option<MailboxOverflow>,
}

/// What happens to a message sent to a full mailbox (`mailbox_overflow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailboxOverflow {
    /// `"drop"`: the message is dropped and counted in the receiver's mailbox
    /// statistics; the sender is not told (as Erlang's send never fails).
    Drop,
    /// `"refuse"`: the send fails for a sender that can see errors (a guest's `send`
    /// returns `unavailable`); nothing is queued.
    Refuse,
}

impl MailboxOverflow {
    /// The policy word for it.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            MailboxOverflow::Drop => "drop",
            MailboxOverflow::Refuse => "refuse",
        }
    }
}

/// The keys of `[limits]` that are ceilings, in the order they are documented (the
/// section's other key is `mailbox_overflow`).
pub(crate) const LIMIT_KEYS: [&str; 17] = [
    "memory",
    "table_elements",
    "fuel",
    "deadline",
    "mailbox",
    "message_size",
    "children",
    "timers",
    "monitors",
    "links",
    "mailbox_bytes",
    "max_receive",
    "descendants",
    "spawns",
    "memories",
    "tables",
    "instances",
];

/// One limit's value, for comparing and printing limits of every kind alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum LimitValue {
    Bytes(u64),
    Count(u64),
    Time(Duration),
}

impl LimitValue {
    pub(crate) fn describe(self) -> String {
        match self {
            LimitValue::Bytes(b) => format_size(b),
            LimitValue::Count(n) => n.to_string(),
            LimitValue::Time(d) => format_duration(d),
        }
    }
}

impl Limits {
    /// Whether no limit is set, so the node's defaults apply throughout.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }

    /// Every ceiling by key, in the documented order.
    pub(crate) fn entries(&self) -> [(&'static str, Option<LimitValue>); 17] {
        let [
            memory,
            table_elements,
            fuel,
            deadline,
            mailbox,
            message_size,
            children,
            timers,
            monitors,
            links,
            mailbox_bytes,
            max_receive,
            descendants,
            spawns,
            memories,
            tables,
            instances,
        ] = LIMIT_KEYS;
        [
            (memory, self.memory.map(LimitValue::Bytes)),
            (table_elements, self.table_elements.map(LimitValue::Count)),
            (fuel, self.fuel.map(LimitValue::Count)),
            (deadline, self.deadline.map(LimitValue::Time)),
            (mailbox, self.mailbox.map(LimitValue::Count)),
            (message_size, self.message_size.map(LimitValue::Bytes)),
            (children, self.children.map(LimitValue::Count)),
            (timers, self.timers.map(LimitValue::Count)),
            (monitors, self.monitors.map(LimitValue::Count)),
            (links, self.links.map(LimitValue::Count)),
            (mailbox_bytes, self.mailbox_bytes.map(LimitValue::Bytes)),
            (max_receive, self.max_receive.map(LimitValue::Bytes)),
            (descendants, self.descendants.map(LimitValue::Count)),
            (spawns, self.spawns.map(LimitValue::Count)),
            (memories, self.memories.map(LimitValue::Count)),
            (tables, self.tables.map(LimitValue::Count)),
            (instances, self.instances.map(LimitValue::Count)),
        ]
    }
}

const SIZE_UNITS: [(&str, u64); 10] = [
    ("B", 1),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
    ("kB", 1_000),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("TB", 1_000_000_000_000),
];

/// Parses a size such as `"64MiB"`, `"1 GiB"`, `"500kB"` or `"4096"` into bytes.
///
/// # Errors
///
/// [`PatternError::BadSize`] for anything but a whole number with an optional
/// known unit, and [`PatternError::TooLarge`] past `u64::MAX` bytes.
pub fn parse_size(text: &str) -> Result<u64, PatternError> {
    let bad = || PatternError::BadSize(text.to_string());
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    if number.is_empty() {
        return Err(bad());
    }
    let unit = unit.strip_prefix(' ').unwrap_or(unit);
    let factor = if unit.is_empty() {
        1
    } else {
        SIZE_UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, f)| *f)
            .ok_or_else(bad)?
    };
    let too_large = || PatternError::TooLarge(text.to_string());
    number
        .parse::<u64>()
        .map_err(|_| too_large())?
        .checked_mul(factor)
        .ok_or_else(too_large)
}

/// Prints a byte count with the largest binary unit that divides it exactly:
/// `64 MiB`, `1 GiB`, `1500 bytes`.
#[must_use]
pub fn format_size(bytes: u64) -> String {
    for (name, factor) in [
        ("TiB", 1u64 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ] {
        if bytes >= factor && bytes.is_multiple_of(factor) {
            return format!("{} {name}", bytes / factor);
        }
    }
    if bytes == 1 {
        "1 byte".to_string()
    } else {
        format!("{bytes} bytes")
    }
}

const DURATION_UNITS: [(&str, u64); 4] = [("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)];

/// Parses a duration such as `"30s"`, `"500ms"`, `"5m"`, `"2h"` or `"1m30s"`.
///
/// # Errors
///
/// [`PatternError::BadDuration`] for anything but whole numbers each followed by
/// `ms`, `s`, `m` or `h`, and [`PatternError::TooLarge`] past `u64::MAX`
/// milliseconds.
pub fn parse_duration(text: &str) -> Result<Duration, PatternError> {
    let bad = || PatternError::BadDuration(text.to_string());
    let too_large = || PatternError::TooLarge(text.to_string());
    let mut rest = text;
    let mut millis: u64 = 0;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits_end = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits_end == 0 {
            return Err(bad());
        }
        let (number, after) = rest.split_at(digits_end);
        let unit_end = after
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_end);
        let factor = DURATION_UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, f)| *f)
            .ok_or_else(bad)?;
        let part = number
            .parse::<u64>()
            .map_err(|_| too_large())?
            .checked_mul(factor)
            .ok_or_else(too_large)?;
        millis = millis.checked_add(part).ok_or_else(too_large)?;
        rest = next;
    }
    Ok(Duration::from_millis(millis))
}

/// Prints a duration in the policy syntax: `30s`, `500ms`, `1m30s`, `2h`. Parts
/// below a millisecond are not shown.
#[must_use]
pub fn format_duration(duration: Duration) -> String {
    let mut millis = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    if millis == 0 {
        return "0ms".to_string();
    }
    let mut out = String::new();
    for (name, factor) in DURATION_UNITS {
        if millis >= factor {
            out.push_str(&format!("{}{name}", millis / factor));
            millis %= factor;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_accept_binary_and_decimal_units() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1 GiB"), Ok(1 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("10B"), Ok(10));
        assert_eq!(parse_size("2kB"), Ok(2000));
        assert_eq!(parse_size("3MB"), Ok(3_000_000));
        assert_eq!(parse_size("1TiB"), Ok(1 << 40));
        for bad in [
            "", "MiB", "64mib", "1.5GiB", "64  MiB", "-1", "64 MiB ", "x",
        ] {
            assert_eq!(
                parse_size(bad),
                Err(PatternError::BadSize(bad.into())),
                "{bad}"
            );
        }
        assert_eq!(
            parse_size("99999999999TiB"),
            Err(PatternError::TooLarge("99999999999TiB".into()))
        );
        assert_eq!(
            parse_size("999999999999999999999"),
            Err(PatternError::TooLarge("999999999999999999999".into()))
        );
    }

    #[test]
    fn sizes_print_with_the_largest_exact_unit() {
        assert_eq!(format_size(64 << 20), "64 MiB");
        assert_eq!(format_size(1 << 30), "1 GiB");
        assert_eq!(format_size(1536), "1536 bytes");
        assert_eq!(format_size(2048), "2 KiB");
        assert_eq!(format_size(1), "1 byte");
    }

    #[test]
    fn durations_accept_unit_sequences() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1s500ms"), Ok(Duration::from_millis(1500)));
        for bad in ["", "30", "s", "30 s", "1.5s", "30sec", "-1s", "1m30"] {
            assert_eq!(
                parse_duration(bad),
                Err(PatternError::BadDuration(bad.into())),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_duration("99999999999999999999h"),
            Err(PatternError::TooLarge(_))
        ));
    }

    #[test]
    fn durations_print_in_policy_syntax() {
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(format_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(format_duration(Duration::ZERO), "0ms");
        for text in ["1h1m1s1ms", "30s", "5m"] {
            assert_eq!(format_duration(parse_duration(text).unwrap()), text);
        }
    }
}
