//! The `[net]` section: socket patterns and the network grants built from them.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use crate::pattern::PatternError;

/// A block of IP addresses: one address or a CIDR range, of one address family.
///
/// The bits past the prefix are always zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpRange {
    addr: IpAddr,
    prefix: u8,
}

fn max_prefix(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn to_bits(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The network part of a `max`-bit address with a `prefix`-bit prefix, as a bit mask.
fn mask(prefix: u8, max: u8) -> u128 {
    let all = if max == 32 {
        u128::from(u32::MAX)
    } else {
        u128::MAX
    };
    all & !all.checked_shr(u32::from(prefix)).unwrap_or(0)
}

impl IpRange {
    /// The range of exactly one address.
    #[must_use]
    pub fn single(addr: IpAddr) -> Self {
        IpRange {
            addr,
            prefix: max_prefix(addr),
        }
    }

    /// The CIDR range `addr/prefix`.
    ///
    /// # Errors
    ///
    /// [`PatternError::BadPrefix`] if `prefix` is longer than the address, and
    /// [`PatternError::HostBits`] if `addr` has bits set past the prefix.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, PatternError> {
        let max = max_prefix(addr);
        if prefix > max {
            return Err(PatternError::BadPrefix {
                text: prefix.to_string(),
                max,
            });
        }
        let bits = to_bits(addr);
        let masked = bits & mask(prefix, max);
        if masked != bits {
            let base = match addr {
                IpAddr::V4(_) => {
                    IpAddr::V4(Ipv4Addr::from(u32::try_from(masked).unwrap_or_default()))
                }
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(masked)),
            };
            return Err(PatternError::HostBits {
                written: IpRange { addr, prefix }.to_string(),
                prefix,
                suggested: IpRange { addr: base, prefix }.to_string(),
            });
        }
        Ok(IpRange { addr, prefix })
    }

    /// The first address of the range.
    #[must_use]
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length: 32 (IPv4) or 128 (IPv6) for a single address.
    #[must_use]
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` lies in the range. Addresses of the other family never do.
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        if self.addr.is_ipv4() != ip.is_ipv4() {
            return false;
        }
        let max = max_prefix(self.addr);
        to_bits(ip) & mask(self.prefix, max) == to_bits(self.addr)
    }

    /// Whether every address of `other` lies in this range.
    #[must_use]
    pub fn covers(&self, other: &IpRange) -> bool {
        other.prefix >= self.prefix && self.contains(other.addr)
    }
}

impl fmt::Display for IpRange {
    /// An IPv4 range prints as `10.0.0.0/8` (`10.0.0.1` for one address), an IPv6
    /// range as `fd00::/8` (`::1` for one address), without brackets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix == max_prefix(self.addr) {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

/// The host part of a socket pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// One address or a CIDR range.
    Range(IpRange),
    /// The loopback addresses: `127.0.0.0/8` and `::1`.
    Localhost,
}

impl HostPattern {
    /// The address ranges the pattern stands for.
    #[must_use]
    pub fn ranges(&self) -> Vec<IpRange> {
        match self {
            HostPattern::Range(r) => vec![*r],
            HostPattern::Localhost => vec![
                IpRange {
                    addr: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)),
                    prefix: 8,
                },
                IpRange::single(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            ],
        }
    }

    /// Whether `ip` is one of the pattern's addresses. IPv4-mapped IPv6 addresses
    /// are matched as the IPv4 address they carry.
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.ranges().iter().any(|r| r.contains(ip))
    }
}

impl fmt::Display for HostPattern {
    /// `localhost`, `127.0.0.1`, `10.0.0.0/8`, `[::1]` or `[fd00::/8]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Localhost => f.write_str("localhost"),
            HostPattern::Range(r) if r.addr.is_ipv6() => write!(f, "[{r}]"),
            HostPattern::Range(r) => write!(f, "{r}"),
        }
    }
}

fn parse_ip_range(text: &str, bracketed: bool) -> Result<IpRange, PatternError> {
    let (addr_text, prefix_text) = match text.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (text, None),
    };
    let addr: IpAddr = match addr_text.parse() {
        Ok(IpAddr::V6(_)) if !bracketed => return Err(PatternError::UnbracketedIpv6),
        Ok(addr) => addr,
        Err(_) if addr_text == "*" => return Err(PatternError::AnyHost),
        Err(_) if !bracketed && addr_text.contains(':') => {
            return Err(PatternError::UnbracketedIpv6);
        }
        Err(_) => return Err(PatternError::BadHost(text.to_string())),
    };
    if bracketed && addr.is_ipv4() {
        return Err(PatternError::BadHost(format!("[{text}]")));
    }
    if let IpAddr::V6(v6) = addr
        && let Some(v4) = v6.to_ipv4_mapped()
    {
        return Err(PatternError::Ipv4Mapped {
            mapped: v6.to_string(),
            ipv4: v4.to_string(),
        });
    }
    let max = max_prefix(addr);
    let prefix = match prefix_text {
        None => max,
        Some(p) => p
            .parse::<u8>()
            .ok()
            .filter(|n| *n <= max && p.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| PatternError::BadPrefix {
                text: p.to_string(),
                max,
            })?,
    };
    IpRange::new(addr, prefix)
}

impl FromStr for HostPattern {
    type Err = PatternError;

    /// Parses `localhost`, `127.0.0.1`, `10.0.0.0/8`, `[::1]`, `[fd00::/8]` or
    /// `[fd00::]/8`.
    fn from_str(s: &str) -> Result<Self, PatternError> {
        if s.eq_ignore_ascii_case("localhost") {
            return Ok(HostPattern::Localhost);
        }
        if let Some(rest) = s.strip_prefix('[') {
            let (inside, after) = rest.split_once(']').ok_or(PatternError::UnclosedBracket)?;
            let text = if after.is_empty() {
                inside.to_string()
            } else if after.starts_with('/') && !inside.contains('/') {
                format!("{inside}{after}")
            } else {
                return Err(PatternError::BadHost(s.to_string()));
            };
            return parse_ip_range(&text, true).map(HostPattern::Range);
        }
        parse_ip_range(s, false).map(HostPattern::Range)
    }
}

/// An inclusive range of ports. `*` is `0-65535`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    first: u16,
    last: u16,
}

impl PortRange {
    /// Every port, `0-65535`.
    pub const ANY: PortRange = PortRange {
        first: 0,
        last: u16::MAX,
    };

    /// Exactly one port.
    #[must_use]
    pub fn single(port: u16) -> Self {
        PortRange {
            first: port,
            last: port,
        }
    }

    /// The ports `first` to `last`, both included.
    ///
    /// # Errors
    ///
    /// [`PatternError::ReversedPorts`] if `first` is greater than `last`.
    pub fn new(first: u16, last: u16) -> Result<Self, PatternError> {
        if first > last {
            return Err(PatternError::ReversedPorts { first, last });
        }
        Ok(PortRange { first, last })
    }

    /// The lowest port of the range.
    #[must_use]
    pub fn first(&self) -> u16 {
        self.first
    }

    /// The highest port of the range.
    #[must_use]
    pub fn last(&self) -> u16 {
        self.last
    }

    /// Whether `port` is in the range.
    #[must_use]
    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }

    /// Whether the ranges in `parts` together hold every port of `self`.
    pub(crate) fn covered_by_union(&self, parts: &[PortRange]) -> bool {
        let mut parts = parts.to_vec();
        parts.sort_by_key(|p| p.first);
        // The lowest port not yet known to be covered.
        let mut next = u32::from(self.first);
        for p in parts {
            if u32::from(p.first) > next {
                break;
            }
            next = next.max(u32::from(p.last) + 1);
            if next > u32::from(self.last) {
                return true;
            }
        }
        next > u32::from(self.last)
    }
}

impl fmt::Display for PortRange {
    /// `*`, `443` or `1-1024`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == PortRange::ANY {
            f.write_str("*")
        } else if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

fn parse_port(text: &str) -> Result<u16, PatternError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PatternError::BadPort(text.to_string()));
    }
    text.parse()
        .map_err(|_| PatternError::BadPort(text.to_string()))
}

impl FromStr for PortRange {
    type Err = PatternError;

    /// Parses `*`, a port such as `443`, or a range such as `1-1024`.
    fn from_str(s: &str) -> Result<Self, PatternError> {
        if s == "*" {
            return Ok(PortRange::ANY);
        }
        match s.split_once('-') {
            Some((a, b)) => {
                let (first, last) = (parse_port(a), parse_port(b));
                match (first, last) {
                    (Ok(first), Ok(last)) => PortRange::new(first, last),
                    _ => Err(PatternError::BadPort(s.to_string())),
                }
            }
            None => parse_port(s).map(PortRange::single),
        }
    }
}

/// A set of socket addresses: a [`HostPattern`] and a [`PortRange`], written
/// `HOST:PORTS`, e.g. `127.0.0.1:8080`, `10.0.0.0/8:1-1024`, `localhost:*` or
/// `[::1]:443`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SocketPattern {
    /// The addresses.
    pub host: HostPattern,
    /// The ports.
    pub ports: PortRange,
}

impl SocketPattern {
    /// Whether `addr` is in the set. IPv4-mapped IPv6 addresses are matched as the
    /// IPv4 address they carry; IPv6 patterns never match IPv4 addresses.
    #[must_use]
    pub fn matches(&self, addr: SocketAddr) -> bool {
        self.ports.contains(addr.port()) && self.host.contains(addr.ip())
    }
}

impl fmt::Display for SocketPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.ports)
    }
}

impl FromStr for SocketPattern {
    type Err = PatternError;

    fn from_str(s: &str) -> Result<Self, PatternError> {
        let split = if s.starts_with('[') {
            // The port separator is the first ':' after the closing bracket.
            let close = s.find(']').ok_or(PatternError::UnclosedBracket)?;
            s[close..].find(':').map(|i| close + i)
        } else {
            s.rfind(':')
        };
        let Some(colon) = split else {
            if s.trim() == "*" {
                return Err(PatternError::AnyHost);
            }
            return Err(PatternError::MissingPort);
        };
        let (host, ports) = (&s[..colon], &s[colon + 1..]);
        if !s.starts_with('[') && host.contains(':') {
            return Err(PatternError::UnbracketedIpv6);
        }
        Ok(SocketPattern {
            host: host.parse()?,
            ports: ports.parse()?,
        })
    }
}

/// The four kinds of socket grant in `[net]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SocketKind {
    /// `tcp_connect`: outgoing TCP connections.
    TcpConnect,
    /// `tcp_bind`: binding (and listening on) TCP sockets.
    TcpBind,
    /// `udp_bind`: binding UDP sockets.
    UdpBind,
    /// `udp_connect`: sending UDP datagrams to (or connecting UDP sockets to) a peer.
    UdpConnect,
}

impl SocketKind {
    /// All four kinds, in the order the keys are documented.
    pub const ALL: [SocketKind; 4] = [
        SocketKind::TcpConnect,
        SocketKind::TcpBind,
        SocketKind::UdpBind,
        SocketKind::UdpConnect,
    ];

    /// The key that holds this kind's patterns, e.g. `tcp_connect`.
    #[must_use]
    pub fn key(self) -> &'static str {
        match self {
            SocketKind::TcpConnect => "tcp_connect",
            SocketKind::TcpBind => "tcp_bind",
            SocketKind::UdpBind => "udp_bind",
            SocketKind::UdpConnect => "udp_connect",
        }
    }
}

impl fmt::Display for SocketKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// The `[net]` section: which sockets the process may use and whether it may
/// resolve names. Empty lists and `dns = false` deny everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetPolicy {
    /// Addresses the process may open TCP connections to.
    pub tcp_connect: Vec<SocketPattern>,
    /// Addresses the process may bind TCP sockets to (and listen on).
    pub tcp_bind: Vec<SocketPattern>,
    /// Addresses the process may bind UDP sockets to.
    pub udp_bind: Vec<SocketPattern>,
    /// Addresses the process may send UDP datagrams to.
    pub udp_connect: Vec<SocketPattern>,
    /// Whether the process may resolve host names (`wasi:sockets/ip-name-lookup`).
    pub dns: bool,
}

impl NetPolicy {
    /// The patterns of one kind.
    #[must_use]
    pub fn patterns(&self, kind: SocketKind) -> &[SocketPattern] {
        match kind {
            SocketKind::TcpConnect => &self.tcp_connect,
            SocketKind::TcpBind => &self.tcp_bind,
            SocketKind::UdpBind => &self.udp_bind,
            SocketKind::UdpConnect => &self.udp_connect,
        }
    }

    /// Whether a socket operation of `kind` on `addr` is granted.
    #[must_use]
    pub fn allows(&self, kind: SocketKind, addr: SocketAddr) -> bool {
        self.patterns(kind).iter().any(|p| p.matches(addr))
    }

    /// Whether the process may open a TCP connection to `addr`.
    #[must_use]
    pub fn allows_tcp_connect(&self, addr: SocketAddr) -> bool {
        self.allows(SocketKind::TcpConnect, addr)
    }

    /// Whether the process may bind a TCP socket to `addr`. Binding to port 0 (an
    /// ephemeral port) needs a pattern that includes port 0, such as `*`.
    #[must_use]
    pub fn allows_tcp_bind(&self, addr: SocketAddr) -> bool {
        self.allows(SocketKind::TcpBind, addr)
    }

    /// Whether the process may bind a UDP socket to `addr`.
    #[must_use]
    pub fn allows_udp_bind(&self, addr: SocketAddr) -> bool {
        self.allows(SocketKind::UdpBind, addr)
    }

    /// Whether the process may send UDP datagrams to `addr`.
    #[must_use]
    pub fn allows_udp_connect(&self, addr: SocketAddr) -> bool {
        self.allows(SocketKind::UdpConnect, addr)
    }

    /// Whether the section grants nothing at all.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        !self.dns && SocketKind::ALL.iter().all(|k| self.patterns(*k).is_empty())
    }

    /// Whether every address of `child` is granted by `patterns` taken together.
    pub(crate) fn covers(patterns: &[SocketPattern], child: &SocketPattern) -> bool {
        child.host.ranges().iter().all(|range| {
            let ports: Vec<PortRange> = patterns
                .iter()
                .filter(|p| p.host.ranges().iter().any(|r| r.covers(range)))
                .map(|p| p.ports)
                .collect();
            child.ports.covered_by_union(&ports)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(s: &str) -> SocketPattern {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn masks_have_the_right_width() {
        assert_eq!(mask(0, 32), 0);
        assert_eq!(mask(8, 32), 0xff00_0000);
        assert_eq!(mask(32, 32), 0xffff_ffff);
        assert_eq!(mask(0, 128), 0);
        assert_eq!(mask(128, 128), u128::MAX);
        assert_eq!(mask(1, 128), 1 << 127);
    }

    #[test]
    fn patterns_round_trip_through_display() {
        for s in [
            "127.0.0.1:8080",
            "10.0.0.0/8:1-1024",
            "localhost:*",
            "[::1]:443",
            "[fd00::/8]:0",
            "0.0.0.0/0:*",
            "[::/0]:53",
        ] {
            assert_eq!(pat(s).to_string(), s);
        }
        assert_eq!(pat("[fd00::]/8:443").to_string(), "[fd00::/8]:443");
        assert_eq!(pat("LOCALHOST:1").to_string(), "localhost:1");
    }

    #[test]
    fn exact_address_matches_only_itself() {
        let p = pat("127.0.0.1:8080");
        assert!(p.matches(addr("127.0.0.1:8080")));
        assert!(!p.matches(addr("127.0.0.1:8081")));
        assert!(!p.matches(addr("127.0.0.2:8080")));
        assert!(!p.matches(addr("[::1]:8080")));
        assert!(p.matches(addr("[::ffff:127.0.0.1]:8080")));
    }

    #[test]
    fn cidr_ranges_match_their_block_only() {
        let p = pat("10.0.0.0/8:1-1024");
        assert!(p.matches(addr("10.0.0.0:1")));
        assert!(p.matches(addr("10.255.255.255:1024")));
        assert!(!p.matches(addr("11.0.0.0:80")));
        assert!(!p.matches(addr("9.255.255.255:80")));
        assert!(!p.matches(addr("10.0.0.1:0")));
        assert!(!p.matches(addr("10.0.0.1:1025")));
        let v6 = pat("[fd00::/8]:*");
        assert!(v6.matches(addr("[fdff::1]:1")));
        assert!(!v6.matches(addr("[fe00::]:1")));
        assert!(!v6.matches(addr("10.0.0.1:1")));
        let all4 = pat("0.0.0.0/0:*");
        assert!(all4.matches(addr("1.2.3.4:5")));
        assert!(!all4.matches(addr("[::1]:5")));
        let all6 = pat("[::/0]:*");
        assert!(all6.matches(addr("[2001:db8::1]:5")));
        // A mapped address is the IPv4 address it carries, not an IPv6 one.
        assert!(!all6.matches(addr("[::ffff:10.0.0.1]:5")));
    }

    #[test]
    fn localhost_is_the_loopback_block_and_ipv6_loopback() {
        let p = pat("localhost:*");
        assert!(p.matches(addr("127.0.0.1:1")));
        assert!(p.matches(addr("127.255.0.9:65535")));
        assert!(p.matches(addr("[::1]:80")));
        assert!(!p.matches(addr("128.0.0.1:80")));
        assert!(!p.matches(addr("[::2]:80")));
        assert!(!p.matches(addr("0.0.0.0:80")));
    }

    #[test]
    fn bad_patterns_say_what_is_wrong() {
        let err = |s: &str| s.parse::<SocketPattern>().unwrap_err();
        assert_eq!(err("127.0.0.1"), PatternError::MissingPort);
        assert_eq!(err("::1:443"), PatternError::UnbracketedIpv6);
        assert_eq!(err("[::1:443"), PatternError::UnclosedBracket);
        assert_eq!(err("*:80"), PatternError::AnyHost);
        assert_eq!(err("*"), PatternError::AnyHost);
        assert_eq!(
            err("example.com:80"),
            PatternError::BadHost("example.com".into())
        );
        assert_eq!(
            err("[127.0.0.1]:80"),
            PatternError::BadHost("[127.0.0.1]".into())
        );
        assert_eq!(
            err("10.0.0.0/33:80"),
            PatternError::BadPrefix {
                text: "33".into(),
                max: 32
            }
        );
        assert_eq!(
            err("10.0.0.0/+8:80"),
            PatternError::BadPrefix {
                text: "+8".into(),
                max: 32
            }
        );
        assert_eq!(
            err("10.0.0.1/8:80"),
            PatternError::HostBits {
                written: "10.0.0.1/8".into(),
                prefix: 8,
                suggested: "10.0.0.0/8".into()
            }
        );
        assert_eq!(
            err("[::ffff:10.0.0.1]:80"),
            PatternError::Ipv4Mapped {
                mapped: "::ffff:10.0.0.1".into(),
                ipv4: "10.0.0.1".into()
            }
        );
        assert_eq!(err("1.2.3.4:65536"), PatternError::BadPort("65536".into()));
        assert_eq!(err("1.2.3.4:+80"), PatternError::BadPort("+80".into()));
        assert_eq!(err("1.2.3.4:"), PatternError::BadPort(String::new()));
        assert_eq!(err("1.2.3.4:1-x"), PatternError::BadPort("1-x".into()));
        assert_eq!(
            err("1.2.3.4:90-80"),
            PatternError::ReversedPorts {
                first: 90,
                last: 80
            }
        );
    }

    #[test]
    fn range_coverage_is_cidr_containment() {
        let r = |s: &str| match s.parse::<HostPattern>().unwrap() {
            HostPattern::Range(r) => r,
            HostPattern::Localhost => unreachable!(),
        };
        assert!(r("10.0.0.0/8").covers(&r("10.1.0.0/16")));
        assert!(r("10.0.0.0/8").covers(&r("10.0.0.0/8")));
        assert!(r("10.0.0.0/8").covers(&r("10.9.9.9")));
        assert!(!r("10.0.0.0/8").covers(&r("10.0.0.0/7")));
        assert!(!r("10.0.0.0/8").covers(&r("11.0.0.0/16")));
        assert!(r("0.0.0.0/0").covers(&r("1.2.3.4")));
        assert!(!r("0.0.0.0/0").covers(&r("[::1]")));
        assert!(!r("[::/0]").covers(&r("1.2.3.4")));
        assert!(r("[::/0]").covers(&r("[::1]")));
    }

    #[test]
    fn coverage_takes_the_union_of_port_ranges() {
        let parents = [pat("10.0.0.0/8:1-512"), pat("10.0.0.0/16:513-1024")];
        assert!(NetPolicy::covers(&parents, &pat("10.0.1.0/24:1-1024")));
        assert!(!NetPolicy::covers(&parents, &pat("10.1.0.0/24:1-1024")));
        assert!(NetPolicy::covers(&parents, &pat("10.1.0.0/24:1-512")));
        assert!(!NetPolicy::covers(&parents, &pat("10.0.0.0/8:0")));
        let split = [pat("1.2.3.4:0-100"), pat("1.2.3.4:102-65535")];
        assert!(!NetPolicy::covers(&split, &pat("1.2.3.4:*")));
        let full = [pat("1.2.3.4:0-101"), pat("1.2.3.4:100-65535")];
        assert!(NetPolicy::covers(&full, &pat("1.2.3.4:*")));
        // localhost needs both loopback blocks.
        assert!(!NetPolicy::covers(
            &[pat("127.0.0.0/8:*")],
            &pat("localhost:80")
        ));
        assert!(NetPolicy::covers(
            &[pat("127.0.0.0/8:*"), pat("[::1]:80")],
            &pat("localhost:80")
        ));
        assert!(NetPolicy::covers(
            &[pat("localhost:*")],
            &pat("127.0.0.1:80")
        ));
        assert!(!NetPolicy::covers(&[], &pat("127.0.0.1:80")));
    }
}
