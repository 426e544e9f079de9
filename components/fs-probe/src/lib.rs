//! `fs-probe`: tries one file-system operation with Rust std (`std::fs`) and reports
//! the outcome, so tests can see what a policy's preopens allow from inside a guest.
//!
//! All integers are little-endian; a pid is its raw number as a `u64`; a string is a
//! `u32` byte length then UTF-8; a byte string is a `u32` length then the bytes.
//!
//! # Init
//!
//! `reporter` pid, `op` `u8`, `path` string, then per op:
//!
//! | op | name | more fields | on success, the `ok` payload |
//! | --- | --- | --- | --- |
//! | 1 | read | — | the file's bytes (`std::fs::read`) |
//! | 2 | write | `data` byte string | empty (`std::fs::write`: creates or truncates) |
//! | 3 | list | — | the entry names, sorted, each as a string (`std::fs::read_dir`) |
//!
//! # Reports to `reporter`
//!
//! Exactly one, then the probe returns (`normal`):
//!
//! | tag | name | payload |
//! | --- | --- | --- |
//! | 1 | ok | as in the table above |
//! | 2 | error | `<Kind>: <message>`: the `std::io::ErrorKind` name as Rust prints it (`PermissionDenied`, `NotFound`, ...), then the error text |
//!
//! A bad init ends the process with `custom:fs-probe: bad init: ...`.

use rusm_guest::wire::{Reader, Writer};
use rusm_guest::{Pid, Tag, send};

const OK: Tag = 1;
const ERROR: Tag = 2;

const READ: u8 = 1;
const WRITE: u8 = 2;
const LIST: u8 = 3;

fn describe(error: &std::io::Error) -> String {
    format!("{:?}: {error}", error.kind())
}

fn list(path: &str) -> std::io::Result<Vec<u8>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(path)? {
        names.push(entry?.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    let mut out = Writer::new();
    for name in &names {
        out.str(name);
    }
    Ok(out.finish())
}

fn report(reporter: Pid, outcome: std::io::Result<Vec<u8>>) -> Result<(), String> {
    let (tag, payload) = match outcome {
        Ok(detail) => (OK, detail),
        Err(error) => (ERROR, describe(&error).into_bytes()),
    };
    send(reporter, tag, payload).map_err(|e| format!("fs-probe: cannot report to {reporter}: {e}"))
}

fn run(init: Vec<u8>) -> Result<(), String> {
    let bad = |e: rusm_guest::wire::DecodeError| format!("fs-probe: bad init: {e}");
    let mut reader = Reader::new(&init);
    let reporter = reader.pid().map_err(bad)?;
    let op = reader.u8().map_err(bad)?;
    let path = reader.str().map_err(bad)?;
    let data = match op {
        WRITE => Some(reader.bytes().map_err(bad)?),
        READ | LIST => None,
        other => return Err(format!("fs-probe: bad init: unknown op {other}")),
    };
    reader.end().map_err(bad)?;
    let outcome = match (op, data) {
        (WRITE, Some(data)) => std::fs::write(path, data).map(|()| Vec::new()),
        (LIST, _) => list(path),
        _ => std::fs::read(path),
    };
    report(reporter, outcome)
}

rusm_guest::actor!(run);
