//! The `[http]` section: which origins the process may send HTTP requests to.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::net::PortRange;
use crate::pattern::PatternError;

/// The scheme of an outbound HTTP pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `http`, port 80 by default.
    Http,
    /// `https`, port 443 by default.
    Https,
}

impl Scheme {
    /// The port a URL of this scheme uses when it names none.
    #[must_use]
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }

    /// The scheme named `name`, in any letter case.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Scheme> {
        if name.eq_ignore_ascii_case("http") {
            Some(Scheme::Http)
        } else if name.eq_ignore_ascii_case("https") {
            Some(Scheme::Https)
        } else {
            None
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        })
    }
}

/// The host part of an outbound HTTP pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HttpHost {
    /// Exactly this DNS name (stored in lowercase, without a trailing dot).
    Name(String),
    /// Any name that ends with `.` and this suffix, at any depth: `*.example.com`
    /// holds `a.example.com` and `a.b.example.com` but not `example.com`.
    Wildcard(String),
    /// Exactly this IP address.
    Ip(IpAddr),
}

impl HttpHost {
    /// Whether `host` (as it would appear in a request) is this host. Names are
    /// compared without regard to letter case or a trailing dot; anything that is
    /// not a well-formed name or address never matches.
    #[must_use]
    pub fn matches(&self, host: &str) -> bool {
        let Some(query) = QueryHost::parse(host) else {
            return false;
        };
        match (self, query) {
            (HttpHost::Name(name), QueryHost::Name(q)) => *name == q,
            (HttpHost::Wildcard(suffix), QueryHost::Name(q)) => is_strict_subdomain(&q, suffix),
            (HttpHost::Ip(ip), QueryHost::Ip(q)) => *ip == q,
            _ => false,
        }
    }

    /// Whether every host this one matches is also matched by `parent`.
    #[must_use]
    pub fn covered_by(&self, parent: &HttpHost) -> bool {
        match (self, parent) {
            (HttpHost::Name(a), HttpHost::Name(b)) => a == b,
            (HttpHost::Name(a), HttpHost::Wildcard(s)) => is_strict_subdomain(a, s),
            (HttpHost::Wildcard(a), HttpHost::Wildcard(s)) => a == s || is_strict_subdomain(a, s),
            (HttpHost::Ip(a), HttpHost::Ip(b)) => a == b,
            _ => false,
        }
    }
}

impl fmt::Display for HttpHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpHost::Name(n) => f.write_str(n),
            HttpHost::Wildcard(s) => write!(f, "*.{s}"),
            HttpHost::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            HttpHost::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// Whether `name` is `suffix` with at least one more label in front.
fn is_strict_subdomain(name: &str, suffix: &str) -> bool {
    name.len() > suffix.len() + 1
        && name.ends_with(suffix)
        && name.as_bytes()[name.len() - suffix.len() - 1] == b'.'
}

/// A well-formed DNS name in lowercase without a trailing dot, or `None`.
fn normalize_name(text: &str) -> Option<String> {
    let text = text.strip_suffix('.').unwrap_or(text);
    if text.is_empty() || text.len() > 253 {
        return None;
    }
    let lower = text.to_ascii_lowercase();
    let labels_ok = lower.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    });
    labels_ok.then_some(lower)
}

/// A host as a request names it.
enum QueryHost {
    Name(String),
    Ip(IpAddr),
}

impl QueryHost {
    fn parse(host: &str) -> Option<QueryHost> {
        if let Some(inner) = host.strip_prefix('[') {
            let inner = inner.strip_suffix(']')?;
            return match inner.parse::<IpAddr>() {
                Ok(ip @ IpAddr::V6(_)) => Some(QueryHost::Ip(ip.to_canonical())),
                _ => None,
            };
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Some(QueryHost::Ip(ip.to_canonical()));
        }
        normalize_name(host).map(QueryHost::Name)
    }
}

/// An origin, or a family of origins, the process may send HTTP requests to:
/// `SCHEME://HOST[:PORTS]`, e.g. `https://api.example.com`,
/// `http://127.0.0.1:8080` or `https://*.example.com:443`. Without a port the
/// scheme's default port is meant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpPattern {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// The host, exact or a leading wildcard.
    pub host: HttpHost,
    /// The ports; the scheme's default port when the pattern names none.
    pub ports: PortRange,
}

impl HttpPattern {
    /// Whether a request with this scheme, host and port is in the pattern. `port`
    /// `None` means the scheme's default port. An unknown scheme never matches.
    #[must_use]
    pub fn matches(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        let Some(scheme) = Scheme::from_name(scheme) else {
            return false;
        };
        let port = port.unwrap_or(scheme.default_port());
        scheme == self.scheme && self.ports.contains(port) && self.host.matches(host)
    }
}

impl fmt::Display for HttpPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        if self.ports != PortRange::single(self.scheme.default_port()) {
            write!(f, ":{}", self.ports)?;
        }
        Ok(())
    }
}

fn parse_http_host(text: &str) -> Result<HttpHost, PatternError> {
    let bad = || PatternError::BadHttpHost(text.to_string());
    if let Some(inner) = text.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or_else(bad)?;
        return match inner.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => Err(PatternError::Ipv4Mapped {
                    mapped: v6.to_string(),
                    ipv4: v4.to_string(),
                }),
                None => Ok(HttpHost::Ip(IpAddr::V6(v6))),
            },
            _ => Err(bad()),
        };
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return match ip {
            IpAddr::V4(_) => Ok(HttpHost::Ip(ip)),
            IpAddr::V6(_) => Err(PatternError::UnbracketedIpv6),
        };
    }
    if let Some(suffix) = text.strip_prefix("*.") {
        if suffix.contains('*') {
            return Err(PatternError::BadWildcard);
        }
        return normalize_name(suffix)
            .map(HttpHost::Wildcard)
            .ok_or_else(bad);
    }
    if text.contains('*') {
        return Err(PatternError::BadWildcard);
    }
    normalize_name(text).map(HttpHost::Name).ok_or_else(bad)
}

impl FromStr for HttpPattern {
    type Err = PatternError;

    fn from_str(s: &str) -> Result<Self, PatternError> {
        let (scheme_text, rest) = s.split_once("://").ok_or(PatternError::MissingScheme)?;
        let scheme = Scheme::from_name(scheme_text)
            .ok_or_else(|| PatternError::BadScheme(scheme_text.to_string()))?;
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if !path.is_empty() && path != "/" {
            return Err(PatternError::HasPath(path.to_string()));
        }
        let (host, ports) = if authority.starts_with('[') {
            match authority.find(']') {
                Some(close) => {
                    let (host, after) = authority.split_at(close + 1);
                    match after.strip_prefix(':') {
                        Some(ports) => (host, Some(ports)),
                        None if after.is_empty() => (host, None),
                        None => return Err(PatternError::BadHttpHost(authority.to_string())),
                    }
                }
                None => return Err(PatternError::BadHttpHost(authority.to_string())),
            }
        } else if authority.matches(':').count() > 1 {
            return Err(PatternError::UnbracketedIpv6);
        } else {
            match authority.split_once(':') {
                Some((host, ports)) => (host, Some(ports)),
                None => (authority, None),
            }
        };
        let ports = match ports {
            Some(p) => p.parse()?,
            None => PortRange::single(scheme.default_port()),
        };
        Ok(HttpPattern {
            scheme,
            host: parse_http_host(host)?,
            ports,
        })
    }
}

/// The `[http]` section: the origins the process may send outbound HTTP requests
/// to (`wasi:http/outgoing-handler`). An empty list denies every request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpPolicy {
    /// The granted origins.
    pub outbound: Vec<HttpPattern>,
}

impl HttpPolicy {
    /// Whether a request with this scheme, host and port is granted. `port` `None`
    /// means the scheme's default port; `host` may be a name, an IPv4 address or an
    /// IPv6 address with or without brackets.
    #[must_use]
    pub fn allows(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        self.outbound.iter().any(|p| p.matches(scheme, host, port))
    }

    /// Whether the section grants nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.outbound.is_empty()
    }

    /// Whether every request `child` matches is granted by `patterns` together.
    pub(crate) fn covers(patterns: &[HttpPattern], child: &HttpPattern) -> bool {
        let ports: Vec<PortRange> = patterns
            .iter()
            .filter(|p| p.scheme == child.scheme && child.host.covered_by(&p.host))
            .map(|p| p.ports)
            .collect();
        child.ports.covered_by_union(&ports)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(s: &str) -> HttpPattern {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn patterns_round_trip_through_display() {
        for s in [
            "https://api.example.com",
            "http://127.0.0.1:8080",
            "https://*.example.com",
            "http://[::1]:*",
            "https://example.com:8000-8100",
        ] {
            assert_eq!(pat(s).to_string(), s);
        }
        assert_eq!(
            pat("https://*.example.com:443").to_string(),
            "https://*.example.com"
        );
        assert_eq!(
            pat("HTTPS://API.Example.COM./").to_string(),
            "https://api.example.com"
        );
    }

    #[test]
    fn exact_host_matches_scheme_host_and_default_port_only() {
        let p = pat("https://api.example.com");
        assert!(p.matches("https", "api.example.com", None));
        assert!(p.matches("https", "api.example.com", Some(443)));
        assert!(p.matches("HTTPS", "API.EXAMPLE.COM.", Some(443)));
        assert!(!p.matches("http", "api.example.com", None));
        assert!(!p.matches("https", "api.example.com", Some(8443)));
        assert!(!p.matches("https", "example.com", None));
        assert!(!p.matches("https", "x.api.example.com", None));
        assert!(!p.matches("https", "api.example.com.evil.net", None));
        assert!(!p.matches("ftp", "api.example.com", None));
    }

    #[test]
    fn wildcard_matches_strict_subdomains_only() {
        let p = pat("https://*.example.com");
        assert!(p.matches("https", "a.example.com", None));
        assert!(p.matches("https", "a.b.example.com", None));
        assert!(!p.matches("https", "example.com", None));
        assert!(!p.matches("https", "evilexample.com", None));
        assert!(!p.matches("https", ".example.com", None));
        assert!(!p.matches("https", "a..example.com", None));
        assert!(!p.matches("https", "evil.com/.example.com", None));
        assert!(!p.matches("https", "evil.com:1@a.example.com", None));
        assert!(!p.matches("https", "a.example.com.evil", None));
    }

    #[test]
    fn ip_hosts_match_addresses_not_names() {
        let p = pat("http://127.0.0.1:8080");
        assert!(p.matches("http", "127.0.0.1", Some(8080)));
        assert!(p.matches("http", "[::ffff:127.0.0.1]", Some(8080)));
        assert!(!p.matches("http", "127.0.0.1", None));
        assert!(!p.matches("http", "localhost", Some(8080)));
        assert!(!p.matches("http", "127.0.0.2", Some(8080)));
        let v6 = pat("http://[::1]:8080");
        assert!(v6.matches("http", "[::1]", Some(8080)));
        assert!(v6.matches("http", "::1", Some(8080)));
        assert!(!v6.matches("http", "127.0.0.1", Some(8080)));
    }

    #[test]
    fn bad_patterns_say_what_is_wrong() {
        let err = |s: &str| s.parse::<HttpPattern>().unwrap_err();
        assert_eq!(err("api.example.com"), PatternError::MissingScheme);
        assert_eq!(err("ftp://x.com"), PatternError::BadScheme("ftp".into()));
        assert_eq!(err("https://x.com/v1"), PatternError::HasPath("/v1".into()));
        assert_eq!(err("https://x.com?a"), PatternError::HasPath("?a".into()));
        assert_eq!(err("https://*"), PatternError::BadWildcard);
        assert_eq!(err("https://a.*.com"), PatternError::BadWildcard);
        assert_eq!(err("https://*.*.com"), PatternError::BadWildcard);
        assert_eq!(err("https://"), PatternError::BadHttpHost(String::new()));
        assert_eq!(
            err("https://a_b.com"),
            PatternError::BadHttpHost("a_b.com".into())
        );
        assert_eq!(
            err("https://u@a.com"),
            PatternError::BadHttpHost("u@a.com".into())
        );
        assert_eq!(
            err("https://-a.com"),
            PatternError::BadHttpHost("-a.com".into())
        );
        assert_eq!(err("http://::1"), PatternError::UnbracketedIpv6);
        assert_eq!(err("http://[::1"), PatternError::BadHttpHost("[::1".into()));
        assert_eq!(
            err("http://[1.2.3.4]"),
            PatternError::BadHttpHost("[1.2.3.4]".into())
        );
        assert_eq!(err("http://a.com:x"), PatternError::BadPort("x".into()));
    }

    #[test]
    fn host_coverage() {
        let h = |s: &str| pat(&format!("https://{s}")).host;
        assert!(h("a.example.com").covered_by(&h("*.example.com")));
        assert!(h("*.a.example.com").covered_by(&h("*.example.com")));
        assert!(h("*.example.com").covered_by(&h("*.example.com")));
        assert!(!h("example.com").covered_by(&h("*.example.com")));
        assert!(!h("*.example.com").covered_by(&h("*.a.example.com")));
        assert!(!h("*.example.com").covered_by(&h("a.example.com")));
        assert!(!h("evilexample.com").covered_by(&h("*.example.com")));
        assert!(!h("*.evilexample.com").covered_by(&h("*.example.com")));
        assert!(h("1.2.3.4").covered_by(&h("1.2.3.4")));
        assert!(!h("1.2.3.4").covered_by(&h("*.example.com")));
    }

    #[test]
    fn coverage_unions_ports_of_matching_parents() {
        let parents = [
            pat("https://*.example.com:1-100"),
            pat("https://a.example.com:101-200"),
        ];
        assert!(HttpPolicy::covers(
            &parents,
            &pat("https://a.example.com:50-150")
        ));
        assert!(!HttpPolicy::covers(
            &parents,
            &pat("https://b.example.com:50-150")
        ));
        assert!(!HttpPolicy::covers(
            &parents,
            &pat("http://a.example.com:50")
        ));
    }
}
