//! Integration tests for rusm-policy: every section's queries, golden error
//! messages, attenuation, explanations, the policy library and a robustness run
//! over mutated inputs.

mod explain;
mod fuzz;
mod golden;
mod keyvalue;
mod library;
mod sections;
mod subset;

use std::path::Path;

use rusm_policy::Policy;

/// Parses `source` as `capabilities/test.toml`, panicking with the error if invalid.
pub fn policy(source: &str) -> Policy {
    Policy::parse(source, Path::new("capabilities/test.toml"))
        .unwrap_or_else(|e| panic!("policy should be valid: {e}\n{source}"))
}

/// The error `source` produces, as displayed.
pub fn error(source: &str) -> String {
    match Policy::parse(source, Path::new("capabilities/test.toml")) {
        Ok(p) => panic!("policy should be invalid, got {p:?}\n{source}"),
        Err(e) => e.to_string(),
    }
}
