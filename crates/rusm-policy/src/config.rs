//! The `[config]` section: the values a process reads through `wasi:config/store`.

use std::collections::BTreeMap;

/// Where one configuration value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigValue {
    /// The text written in the policy.
    Literal(String),
    /// The host's environment variable of this name, read when the guest asks (a
    /// secret kept out of the policy file). A variable the host does not define leaves
    /// the key unset.
    Env(String),
}

impl ConfigValue {
    /// The value the guest sees, with `host_env` reading the host's environment.
    pub fn resolve(&self, host_env: impl Fn(&str) -> Option<String>) -> Option<String> {
        match self {
            ConfigValue::Literal(text) => Some(text.clone()),
            ConfigValue::Env(name) => host_env(name),
        }
    }
}

/// The `[config]` section. With nothing set the process sees no configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigPolicy {
    /// The keys the process sees and where each value comes from.
    pub vars: BTreeMap<String, ConfigValue>,
}

impl ConfigPolicy {
    /// Every key with its value, sorted by key; keys whose host variable is unset are
    /// left out.
    pub fn resolve(&self, host_env: impl Fn(&str) -> Option<String>) -> Vec<(String, String)> {
        self.vars
            .iter()
            .filter_map(|(k, v)| v.resolve(&host_env).map(|v| (k.clone(), v)))
            .collect()
    }

    /// Whether the process sees no configuration.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_reads_literals_and_present_host_variables() {
        let config = ConfigPolicy {
            vars: [
                ("mode".to_string(), ConfigValue::Literal("fast".into())),
                (
                    "password".to_string(),
                    ConfigValue::Env("DB_PASSWORD".into()),
                ),
                ("token".to_string(), ConfigValue::Env("MISSING".into())),
            ]
            .into(),
        };
        let host = |k: &str| (k == "DB_PASSWORD").then(|| "s3cret".to_string());
        assert_eq!(
            config.resolve(host),
            vec![
                ("mode".to_string(), "fast".to_string()),
                ("password".to_string(), "s3cret".to_string())
            ]
        );
    }
}
