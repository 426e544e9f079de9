//! `env-probe`: reads its environment variables or program arguments with Rust std
//! (`std::env`) and reports them, so tests can see what a policy's `[env]` section
//! hands a guest.
//!
//! All integers are little-endian; a pid is its raw number as a `u64`; a string is a
//! `u32` byte length then UTF-8.
//!
//! # Init
//!
//! `reporter` pid, `op` `u8`, then per op:
//!
//! | op | name | more fields | the `ok` payload |
//! | --- | --- | --- | --- |
//! | 1 | var | `name` string | the variable's value, raw UTF-8 (`std::env::var`) |
//! | 2 | args | — | every argument in order, each as a string (`std::env::args`) |
//! | 3 | vars | — | the name of every variable, sorted, each as a string (`std::env::vars`) |
//!
//! # Reports to `reporter`
//!
//! Exactly one, then the probe returns (`normal`):
//!
//! | tag | name | payload |
//! | --- | --- | --- |
//! | 1 | ok | as in the table above |
//! | 2 | error | `var` only: `NotPresent` or `NotUnicode` (`std::env::VarError`) |
//!
//! A bad init ends the process with `custom:env-probe: bad init: ...`.

use rusm_guest::wire::{Reader, Writer};
use rusm_guest::{Tag, send};

const OK: Tag = 1;
const ERROR: Tag = 2;

const VAR: u8 = 1;
const ARGS: u8 = 2;
const VARS: u8 = 3;

fn strings<'a>(items: impl IntoIterator<Item = &'a String>) -> Vec<u8> {
    let mut out = Writer::new();
    for item in items {
        out.str(item);
    }
    out.finish()
}

fn run(init: Vec<u8>) -> Result<(), String> {
    let bad = |e: rusm_guest::wire::DecodeError| format!("env-probe: bad init: {e}");
    let mut reader = Reader::new(&init);
    let reporter = reader.pid().map_err(bad)?;
    let op = reader.u8().map_err(bad)?;
    let (tag, payload) = match op {
        VAR => {
            let name = reader.str().map_err(bad)?;
            match std::env::var(name) {
                Ok(value) => (OK, value.into_bytes()),
                Err(std::env::VarError::NotPresent) => (ERROR, b"NotPresent".to_vec()),
                Err(std::env::VarError::NotUnicode(_)) => (ERROR, b"NotUnicode".to_vec()),
            }
        }
        ARGS => (OK, strings(&std::env::args().collect::<Vec<_>>())),
        VARS => {
            let mut names: Vec<String> = std::env::vars_os()
                .map(|(name, _)| name.to_string_lossy().into_owned())
                .collect();
            names.sort();
            (OK, strings(&names))
        }
        other => return Err(format!("env-probe: bad init: unknown op {other}")),
    };
    reader.end().map_err(bad)?;
    send(reporter, tag, payload).map_err(|e| format!("env-probe: cannot report to {reporter}: {e}"))
}

rusm_guest::actor!(run);
