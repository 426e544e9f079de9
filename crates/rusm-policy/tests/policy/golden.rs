//! Golden error messages: every `tests/golden/NAME.toml` is invalid, and its error
//! must read exactly as `tests/golden/NAME.err`. Run with `RUSM_BLESS=1` to write
//! the `.err` files from the current messages.

use std::path::{Path, PathBuf};

use rusm_policy::Policy;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn golden_inputs() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(golden_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

/// The message for one golden input, with the path as the tests name it.
fn message_for(path: &Path) -> String {
    let name = path.file_name().unwrap().to_string_lossy();
    let origin = PathBuf::from("tests/golden").join(&*name);
    let source = std::fs::read_to_string(path).unwrap();
    match Policy::parse(&source, &origin) {
        Ok(_) => panic!("{} should be an invalid policy", origin.display()),
        Err(e) => {
            let location = e.location().expect("golden errors are located");
            let line_count = source.split('\n').count();
            assert!(location.line <= line_count, "{e}");
            e.to_string()
        }
    }
}

#[test]
fn every_golden_input_fails_with_its_recorded_message() {
    let bless = std::env::var_os("RUSM_BLESS").is_some_and(|v| v == "1");
    let inputs = golden_inputs();
    assert!(
        inputs.len() >= 40,
        "the golden set shrank to {}",
        inputs.len()
    );
    let mut mismatches = Vec::new();
    for input in &inputs {
        let actual = message_for(input);
        assert!(
            !actual.contains('\n'),
            "error messages are one line: {actual}"
        );
        let expected_path = input.with_extension("err");
        if bless {
            std::fs::write(&expected_path, format!("{actual}\n")).unwrap();
            continue;
        }
        match std::fs::read_to_string(&expected_path) {
            Ok(expected) if expected.trim_end_matches('\n') == actual => {}
            Ok(expected) => mismatches.push(format!(
                "{}:\n  expected: {}\n  actual:   {actual}",
                expected_path.display(),
                expected.trim_end_matches('\n')
            )),
            Err(_) => mismatches.push(format!(
                "{} is missing (run with RUSM_BLESS=1 to write it); actual: {actual}",
                expected_path.display()
            )),
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} golden mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

#[test]
fn every_err_file_has_its_input() {
    for entry in std::fs::read_dir(golden_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "err") {
            assert!(
                path.with_extension("toml").is_file(),
                "{} has no .toml input",
                path.display()
            );
        }
    }
}

#[test]
fn the_documented_example_message_is_reproduced() {
    let source = std::fs::read_to_string(golden_dir().join("unknown-key-net.toml")).unwrap();
    let err = Policy::parse(&source, Path::new("capabilities/bad.toml")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "capabilities/bad.toml:7:1: unknown key \"tcp_conect\" in [net]; expected one of: tcp_connect, tcp_bind, udp_bind, udp_connect, dns"
    );
}
