//! The error type shared by every pattern's `FromStr`.

/// Why a pattern string (a socket pattern, an HTTP origin pattern, a name pattern, a
/// size or a duration) is not valid. Each message says what would be valid instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// A socket pattern without `:PORTS`.
    #[error("missing port; write HOST:PORT, HOST:FIRST-LAST or HOST:* (e.g. 127.0.0.1:8080)")]
    MissingPort,
    /// A host that is not an IP address, a CIDR range or `localhost`.
    #[error(
        "{0:?} is not an IP address, a CIDR range or localhost; expected e.g. 127.0.0.1, 10.0.0.0/8, [::1], [fd00::/8] or localhost"
    )]
    BadHost(String),
    /// An IPv6 address written without brackets.
    #[error("IPv6 addresses must be written in brackets, e.g. [::1]:443 or [fd00::/8]:443")]
    UnbracketedIpv6,
    /// An opening `[` without its `]`.
    #[error("missing \"]\" after the IPv6 address; expected e.g. [::1]:443")]
    UnclosedBracket,
    /// `*` used as a socket host.
    #[error("\"*\" is not a host; to allow any address write 0.0.0.0/0 (IPv4) or [::/0] (IPv6)")]
    AnyHost,
    /// A CIDR prefix length that is not a number in range.
    #[error("{text:?} is not a prefix length; expected a number from 0 to {max}")]
    BadPrefix {
        /// What was written after `/`.
        text: String,
        /// 32 for IPv4, 128 for IPv6.
        max: u8,
    },
    /// A CIDR range whose address has bits set past the prefix.
    #[error("{written} has bits set outside its /{prefix} prefix; did you mean {suggested}?")]
    HostBits {
        /// The range as written.
        written: String,
        /// The prefix length.
        prefix: u8,
        /// The same range with the extra bits cleared.
        suggested: String,
    },
    /// An IPv4-mapped IPv6 address, which would be an IPv4 grant in disguise.
    #[error("{mapped} is an IPv4-mapped IPv6 address; write the IPv4 form {ipv4} instead")]
    Ipv4Mapped {
        /// The address as written.
        mapped: String,
        /// The IPv4 address it carries.
        ipv4: String,
    },
    /// A port that is not a number from 0 to 65535, a range or `*`.
    #[error("{0:?} is not a port; expected a number from 0 to 65535, a range FIRST-LAST or *")]
    BadPort(String),
    /// A port range whose first port is above its last.
    #[error("port range {first}-{last} is reversed; write {last}-{first}")]
    ReversedPorts {
        /// The first port as written.
        first: u16,
        /// The last port as written.
        last: u16,
    },
    /// An HTTP pattern without `scheme://`.
    #[error("missing scheme; expected http://HOST[:PORT] or https://HOST[:PORT]")]
    MissingScheme,
    /// An HTTP pattern with a scheme other than http or https.
    #[error("unsupported scheme {0:?}; expected http or https")]
    BadScheme(String),
    /// An HTTP pattern with a path, query or fragment.
    #[error("outbound patterns name only a scheme, a host and a port; remove {0:?}")]
    HasPath(String),
    /// An HTTP host that is not a DNS name, a wildcard or an IP address.
    #[error(
        "{0:?} is not a valid host; expected a DNS name (api.example.com), a leading wildcard (*.example.com), an IPv4 address or a bracketed IPv6 address"
    )]
    BadHttpHost(String),
    /// A `*` anywhere but a leading `*.` label.
    #[error("\"*\" may only stand as the first label of a host, as in *.example.com")]
    BadWildcard,
    /// An empty name pattern.
    #[error("empty name; expected a name such as worker, a prefix such as cache-* or *")]
    EmptyName,
    /// A `*` inside a name pattern other than at its end.
    #[error("\"*\" may only end a name pattern (cache-*) or stand alone (*)")]
    BadNameStar,
    /// A name pattern with a character outside the allowed set.
    #[error(
        "{0:?} is not allowed in a name; names use ASCII letters, digits and the characters - _ . : / @"
    )]
    BadNameChar(char),
    /// A policy reference that is neither `self` nor a valid policy name.
    #[error(
        "{0:?} is not a policy name; expected \"self\" or the name of a policy file (lowercase letters, digits, - and _, as in capabilities/NAME.toml)"
    )]
    BadPolicyName(String),
    /// A size that is not an integer with an optional unit.
    #[error(
        "{0:?} is not a size; expected a whole number of bytes with an optional unit: B, KiB, MiB, GiB, TiB, kB, MB, GB or TB (e.g. \"64MiB\")"
    )]
    BadSize(String),
    /// A duration that is not a sequence of numbers with units.
    #[error(
        "{0:?} is not a duration; expected whole numbers with units ms, s, m or h (e.g. \"500ms\", \"30s\" or \"1m30s\")"
    )]
    BadDuration(String),
    /// A size or duration that does not fit in 64 bits.
    #[error("{0:?} is too large")]
    TooLarge(String),
}
