//! The `[env]` section: environment variables and program arguments.

use std::collections::BTreeMap;

/// The `[env]` section. With nothing set the guest sees an empty environment and no
/// arguments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvPolicy {
    /// Variables with the values written in the policy.
    pub vars: BTreeMap<String, String>,
    /// Names of host variables passed through with the host's value; a name the
    /// host does not define is left out.
    pub inherit: Vec<String>,
    /// The program arguments.
    pub args: Vec<String>,
    /// The initial working directory the guest is told of
    /// (`wasi:cli/environment.initial-cwd`), normalised as preopen guest paths are;
    /// `None` when the policy names none. A path in the guest's own view: it opens
    /// nothing, and a program resolves relative paths against it only if it asks for
    /// it (as `wasmtime-wasi`'s `initial_cwd` does).
    pub cwd: Option<String>,
}

impl EnvPolicy {
    /// The environment the guest gets: every explicit variable, and every inherited
    /// variable that `host_env` defines, sorted by name.
    pub fn resolve(&self, host_env: impl Fn(&str) -> Option<String>) -> Vec<(String, String)> {
        let mut out: BTreeMap<String, String> = self.vars.clone();
        for name in &self.inherit {
            if let Some(value) = host_env(name) {
                out.insert(name.clone(), value);
            }
        }
        out.into_iter().collect()
    }

    /// Whether the guest gets no variables, no arguments and no working directory.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
            && self.inherit.is_empty()
            && self.args.is_empty()
            && self.cwd.is_none()
    }
}

/// Whether `name` is a portable variable name: ASCII letters, digits and `_`, not
/// starting with a digit.
pub(crate) fn is_var_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_merges_explicit_and_present_inherited_variables() {
        let env = EnvPolicy {
            vars: [("MODE".to_string(), "fast".to_string())].into(),
            inherit: vec!["HOME".into(), "MISSING".into()],
            args: vec![],
            cwd: None,
        };
        let host = |k: &str| match k {
            "HOME" => Some("/home/u".to_string()),
            "PATH" => Some("/bin".to_string()),
            _ => None,
        };
        assert_eq!(
            env.resolve(host),
            vec![
                ("HOME".to_string(), "/home/u".to_string()),
                ("MODE".to_string(), "fast".to_string())
            ]
        );
        assert!(EnvPolicy::default().resolve(host).is_empty());
    }

    #[test]
    fn variable_names_are_portable() {
        assert!(is_var_name("HOME"));
        assert!(is_var_name("_x1"));
        assert!(!is_var_name("1X"));
        assert!(!is_var_name(""));
        assert!(!is_var_name("A=B"));
        assert!(!is_var_name("A-B"));
    }
}
