//! The `[process]` section: spawning, killing and registering names.

use std::fmt;
use std::str::FromStr;

use crate::error::Location;
use crate::pattern::PatternError;

/// A set of names: one name, every name with a prefix (`cache-*`) or every name
/// (`*`). Used for component names and registered names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NamePattern {
    /// Exactly this name.
    Exact(String),
    /// Every name that starts with this prefix (written with a trailing `*`).
    Prefix(String),
    /// Every name.
    Any,
}

impl NamePattern {
    /// Whether `name` is in the set.
    #[must_use]
    pub fn matches(&self, name: &str) -> bool {
        match self {
            NamePattern::Exact(n) => n == name,
            NamePattern::Prefix(p) => name.starts_with(p.as_str()),
            NamePattern::Any => true,
        }
    }

    /// Whether every name of `other` is in this set.
    #[must_use]
    pub fn covers(&self, other: &NamePattern) -> bool {
        match (self, other) {
            (NamePattern::Any, _) => true,
            (_, NamePattern::Any) => false,
            (NamePattern::Prefix(p), NamePattern::Prefix(q)) => q.starts_with(p.as_str()),
            (NamePattern::Prefix(p), NamePattern::Exact(n)) => n.starts_with(p.as_str()),
            (NamePattern::Exact(a), NamePattern::Exact(b)) => a == b,
            (NamePattern::Exact(_), NamePattern::Prefix(_)) => false,
        }
    }
}

impl fmt::Display for NamePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NamePattern::Exact(n) => f.write_str(n),
            NamePattern::Prefix(p) => write!(f, "{p}*"),
            NamePattern::Any => f.write_str("*"),
        }
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/' | '@')
}

impl FromStr for NamePattern {
    type Err = PatternError;

    /// Parses `worker`, `cache-*` or `*`.
    fn from_str(s: &str) -> Result<Self, PatternError> {
        if s.is_empty() {
            return Err(PatternError::EmptyName);
        }
        if s == "*" {
            return Ok(NamePattern::Any);
        }
        let (body, wildcard) = match s.strip_suffix('*') {
            Some(body) => (body, true),
            None => (s, false),
        };
        if let Some(bad) = body.chars().find(|c| !is_name_char(*c)) {
            return Err(if bad == '*' {
                PatternError::BadNameStar
            } else {
                PatternError::BadNameChar(bad)
            });
        }
        Ok(if wildcard {
            NamePattern::Prefix(body.to_string())
        } else {
            NamePattern::Exact(body.to_string())
        })
    }
}

/// Whether `name` can name a policy in a library: lowercase ASCII letters, digits,
/// `-` and `_`, starting with a letter or digit, and not the reserved `self`.
#[must_use]
pub fn is_policy_name(name: &str) -> bool {
    let mut chars = name.chars();
    name != "self"
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// Which policy a spawned child runs under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PolicyRef {
    /// `self`: the spawning process's own policy (also what a spawn that names no
    /// policy gets).
    Own,
    /// The library policy of this name.
    Named(String),
}

impl PolicyRef {
    /// The reference a spawn request makes: `None` and `Some("self")` mean the
    /// caller's own policy.
    #[must_use]
    pub fn from_request(policy: Option<&str>) -> PolicyRef {
        match policy {
            None | Some("self") => PolicyRef::Own,
            Some(name) => PolicyRef::Named(name.to_string()),
        }
    }
}

impl fmt::Display for PolicyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyRef::Own => f.write_str("self"),
            PolicyRef::Named(n) => f.write_str(n),
        }
    }
}

impl FromStr for PolicyRef {
    type Err = PatternError;

    /// Parses `self` or a policy name (see [`is_policy_name`]).
    fn from_str(s: &str) -> Result<Self, PatternError> {
        if s == "self" {
            Ok(PolicyRef::Own)
        } else if is_policy_name(s) {
            Ok(PolicyRef::Named(s.to_string()))
        } else {
            Err(PatternError::BadPolicyName(s.to_string()))
        }
    }
}

/// One `spawn` entry: components the process may start, and the policy they run
/// under.
#[derive(Debug, Clone, Eq)]
pub struct SpawnRule {
    /// The components this rule covers.
    pub component: NamePattern,
    /// The policy the children run under.
    pub policy: PolicyRef,
    /// Where the rule was written, when it came from a file. Equality ignores it.
    pub location: Option<Location>,
}

impl PartialEq for SpawnRule {
    fn eq(&self, other: &Self) -> bool {
        self.component == other.component && self.policy == other.policy
    }
}

impl SpawnRule {
    /// A rule that did not come from a file.
    #[must_use]
    pub fn new(component: NamePattern, policy: PolicyRef) -> Self {
        SpawnRule {
            component,
            policy,
            location: None,
        }
    }
}

impl fmt::Display for SpawnRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{{ component = \"{}\", policy = \"{}\" }}",
            self.component, self.policy
        )
    }
}

/// Which processes a process may end with `kill` or `exit`.
///
/// The order is by power: `None < Children < Any`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum KillRight {
    /// `none`: no process but itself. The default.
    #[default]
    None,
    /// `children`: the processes it spawned itself.
    Children,
    /// `any`: every process of the node.
    Any,
}

impl KillRight {
    /// `none`, `children` or `any`, as written in a policy.
    #[must_use]
    pub fn key(self) -> &'static str {
        match self {
            KillRight::None => "none",
            KillRight::Children => "children",
            KillRight::Any => "any",
        }
    }
}

impl fmt::Display for KillRight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// The `[process]` section.
///
/// `link`, `monitor` and their inverses are always allowed and are not part of the
/// policy: they only let a process observe another one end, never act on it. An
/// exit signal that travels over a link only ends processes that did not trap
/// exits, exactly as the process itself ending would, so it adds no authority.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessPolicy {
    /// Which components the process may spawn, and under which policies.
    pub spawn: Vec<SpawnRule>,
    /// Which processes it may end with `kill` or `exit` (itself always).
    pub kill: KillRight,
    /// The names it may register.
    pub register: Vec<NamePattern>,
}

impl ProcessPolicy {
    /// Whether the process may spawn `component` under the policy requested in its
    /// spawn options (`None` or `"self"` for its own policy). Whether the named
    /// policy exists and grants no more than the caller holds is checked separately
    /// (see [`PolicyLibrary::policy_for_spawn`](crate::PolicyLibrary::policy_for_spawn)).
    #[must_use]
    pub fn may_spawn(&self, component: &str, policy: Option<&str>) -> bool {
        let wanted = PolicyRef::from_request(policy);
        self.spawn
            .iter()
            .any(|r| r.policy == wanted && r.component.matches(component))
    }

    /// Whether the process may kill a process; `target_is_child` says whether the
    /// target is one it spawned.
    #[must_use]
    pub fn may_kill(&self, target_is_child: bool) -> bool {
        match self.kill {
            KillRight::None => false,
            KillRight::Children => target_is_child,
            KillRight::Any => true,
        }
    }

    /// Whether the process may register itself under `name`.
    #[must_use]
    pub fn may_register(&self, name: &str) -> bool {
        self.register.iter().any(|p| p.matches(name))
    }

    /// Whether the section grants nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.spawn.is_empty() && self.kill == KillRight::None && self.register.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> NamePattern {
        s.parse().unwrap()
    }

    #[test]
    fn name_patterns_match_exact_prefix_and_any() {
        assert!(name("counter").matches("counter"));
        assert!(!name("counter").matches("counter2"));
        assert!(!name("counter").matches("Counter"));
        assert!(name("cache-*").matches("cache-"));
        assert!(name("cache-*").matches("cache-users"));
        assert!(!name("cache-*").matches("cache"));
        assert!(!name("cache-*").matches("xcache-1"));
        assert!(name("*").matches(""));
        assert_eq!(name("a.b/c:d@e_f-*").to_string(), "a.b/c:d@e_f-*");
    }

    #[test]
    fn name_pattern_errors() {
        assert_eq!("".parse::<NamePattern>(), Err(PatternError::EmptyName));
        assert_eq!("a*b".parse::<NamePattern>(), Err(PatternError::BadNameStar));
        assert_eq!("**".parse::<NamePattern>(), Err(PatternError::BadNameStar));
        assert_eq!(
            "a b".parse::<NamePattern>(),
            Err(PatternError::BadNameChar(' '))
        );
    }

    #[test]
    fn name_pattern_coverage() {
        assert!(name("*").covers(&name("*")));
        assert!(name("*").covers(&name("x")));
        assert!(name("cache-*").covers(&name("cache-users-*")));
        assert!(name("cache-*").covers(&name("cache-1")));
        assert!(!name("cache-*").covers(&name("cach*")));
        assert!(!name("cache-*").covers(&name("*")));
        assert!(!name("cache-1").covers(&name("cache-*")));
        assert!(name("a").covers(&name("a")));
        assert!(!name("a").covers(&name("b")));
    }

    #[test]
    fn policy_names_and_refs() {
        assert!(is_policy_name("worker"));
        assert!(is_policy_name("http-proxy_2"));
        assert!(!is_policy_name("self"));
        assert!(!is_policy_name("Worker"));
        assert!(!is_policy_name("-x"));
        assert!(!is_policy_name(""));
        assert!(!is_policy_name("a.b"));
        assert_eq!("self".parse::<PolicyRef>(), Ok(PolicyRef::Own));
        assert_eq!(PolicyRef::from_request(Some("self")), PolicyRef::Own);
        assert_eq!(PolicyRef::from_request(None), PolicyRef::Own);
        assert_eq!(
            "Bad".parse::<PolicyRef>(),
            Err(PatternError::BadPolicyName("Bad".into()))
        );
    }

    #[test]
    fn rights_answer_queries() {
        let p = ProcessPolicy {
            spawn: vec![
                SpawnRule::new(name("worker"), PolicyRef::Named("worker".into())),
                SpawnRule::new(name("*"), PolicyRef::Own),
            ],
            kill: KillRight::Children,
            register: vec![name("counter"), name("cache-*")],
        };
        assert!(p.may_spawn("worker", Some("worker")));
        assert!(!p.may_spawn("other", Some("worker")));
        assert!(p.may_spawn("other", None));
        assert!(p.may_spawn("worker", Some("self")));
        assert!(!p.may_spawn("worker", Some("admin")));
        assert!(p.may_kill(true));
        assert!(!p.may_kill(false));
        assert!(p.may_register("counter"));
        assert!(p.may_register("cache-a"));
        assert!(!p.may_register("counter2"));
        let none = ProcessPolicy::default();
        assert!(!none.may_spawn("x", None));
        assert!(!none.may_kill(true));
        assert!(!none.may_register("x"));
        assert!(KillRight::None < KillRight::Children && KillRight::Children < KillRight::Any);
    }
}
