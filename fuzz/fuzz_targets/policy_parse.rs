//! Coverage-guided fuzzing of the policy parser, `Policy::parse`.
//!
//! For every UTF-8 input:
//! - parsing never panics;
//! - an error is one line, names the origin, and its line and column lie inside
//!   the input (the column may be one past a line's last character);
//! - a policy that parses is a subset of itself, explains itself without
//!   panicking (one line per entry, ending in a newline), its patterns and
//!   durations print back to themselves, parsing is deterministic, and the empty
//!   policy is a subset of it except for the limits it sets.

#![no_main]

use std::path::Path;

use libfuzzer_sys::{Corpus, fuzz_target};
use rusm_policy::{
    Escalation, HttpPattern, NamePattern, Policy, PolicyError, SocketKind, SocketPattern,
    format_duration, parse_duration,
};

const ORIGIN: &str = "fuzz/policy.toml";

fuzz_target!(|data: &[u8]| -> Corpus {
    // Policy sources are text; `Policy::from_file` rejects other bytes before
    // parsing, so only UTF-8 reaches the parser.
    let Ok(source) = std::str::from_utf8(data) else {
        return Corpus::Reject;
    };
    match Policy::parse(source, Path::new(ORIGIN)) {
        Ok(policy) => check_policy(source, &policy),
        Err(err) => check_error(source, &err),
    }
    Corpus::Keep
});

fn check_error(source: &str, err: &PolicyError) {
    let shown = err.to_string();
    assert!(!shown.contains('\n'), "multi-line error {shown:?}");
    assert!(
        shown.starts_with(&format!("{ORIGIN}:")),
        "error does not name its origin: {shown:?}"
    );
    assert_eq!(err.path(), Path::new(ORIGIN));
    let location = err.location().expect("a parse error has a location");
    // `split('\n')` counts the (empty) line after a trailing newline, where an
    // error at the very end of the input points.
    let lines: Vec<&str> = source.split('\n').collect();
    assert!(
        (1..=lines.len()).contains(&location.line),
        "line {} outside the input ({} lines): {shown:?}",
        location.line,
        lines.len()
    );
    let width = lines[location.line - 1].chars().count();
    assert!(
        (1..=width + 1).contains(&location.column),
        "column {} outside line {} ({width} characters): {shown:?}",
        location.column,
        location.line
    );
}

fn check_policy(source: &str, policy: &Policy) {
    // Parsing is a function of its input.
    let again = Policy::parse(source, Path::new(ORIGIN)).expect("a second parse fails");
    assert_eq!(&again, policy, "two parses of one input differ");

    // Attenuation is reflexive.
    if let Err(e) = policy.is_subset_of(policy) {
        panic!("a policy is not a subset of itself: {e}");
    }
    assert!(policy.escalations(policy).is_empty());

    // The empty policy grants nothing, so it escalates only where this policy
    // sets a limit (an unset limit means the node's default, which may be higher).
    let empty = Policy::deny_all();
    let escalations = empty.escalations(policy);
    assert!(
        escalations
            .iter()
            .all(|e| matches!(e, Escalation::Limit { child: None, .. })),
        "the empty policy escalates beyond limits: {escalations:?}"
    );
    assert_eq!(
        escalations.is_empty(),
        policy.limits.is_empty(),
        "limit escalations of the empty policy disagree with the limits set"
    );
    if policy.limits.is_empty() {
        assert!(empty.is_subset_of(policy).is_ok());
    }
    // And this policy is within the empty one only when it grants nothing: its
    // arguments carry no authority, and limits only take authority away.
    let mut bare = policy.clone();
    bare.env.args.clear();
    bare.limits = rusm_policy::Limits::default();
    assert_eq!(
        policy.is_subset_of(&empty).is_ok(),
        bare == empty,
        "subset of the empty policy disagrees with granting nothing"
    );

    // The plain-words rendering.
    let explained = policy.explain();
    assert!(explained.ends_with('\n'), "explain does not end a line");
    assert!(
        explained.lines().all(|l| !l.is_empty()),
        "explain has an empty line: {explained:?}"
    );

    // Everything with a printed form prints back to itself.
    for kind in SocketKind::ALL {
        for p in policy.net.patterns(kind) {
            let printed = p.to_string();
            assert_eq!(
                printed.parse::<SocketPattern>().as_ref(),
                Ok(p),
                "{printed}"
            );
        }
    }
    for p in &policy.http.outbound {
        let printed = p.to_string();
        assert_eq!(printed.parse::<HttpPattern>().as_ref(), Ok(p), "{printed}");
    }
    for p in policy
        .process
        .register
        .iter()
        .chain(policy.process.spawn.iter().map(|r| &r.component))
    {
        let printed = p.to_string();
        assert_eq!(printed.parse::<NamePattern>().as_ref(), Ok(p), "{printed}");
    }
    if let Some(deadline) = policy.limits.deadline {
        let printed = format_duration(deadline);
        assert_eq!(parse_duration(&printed), Ok(deadline), "{printed}");
    }
}
