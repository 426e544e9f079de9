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
//! | 4 | swap and spawn | `target` string, `policy` string, `child_init` byte string | the exit reason of the child, as text (see below) |
//!
//! `swap and spawn` is what a guest holding `rw` on a directory would try to widen a
//! child's preopen with: it removes the (empty) directory at `path`, makes `path` a
//! symbolic link to `target` (wasi-libc's `symlink`, which Rust std does not
//! expose on this target), then spawns
//! `fs-probe` under the policy named `policy` with `child_init` as its init, monitors
//! it, and reports how it ended (`normal`, `crashed:<text>`, ...). A refused spawn is
//! reported as an error with the spawn error's text.
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
use rusm_guest::{Message, Pid, SpawnOptions, Tag, receive, send, spawn};

const OK: Tag = 1;
const ERROR: Tag = 2;

const READ: u8 = 1;
const WRITE: u8 = 2;
const LIST: u8 = 3;
const SWAP_AND_SPAWN: u8 = 4;

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

/// `symlink(2)` as wasi-libc (which Rust std links on `wasm32-wasip2`) provides it.
fn symlink(target: &str, path: &str) -> std::io::Result<()> {
    unsafe extern "C" {
        fn symlink(target: *const std::ffi::c_char, path: *const std::ffi::c_char) -> i32;
    }
    let target = std::ffi::CString::new(target).map_err(std::io::Error::other)?;
    let path = std::ffi::CString::new(path).map_err(std::io::Error::other)?;
    // SAFETY: both are NUL-terminated strings that outlive the call.
    if unsafe { symlink(target.as_ptr(), path.as_ptr()) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Replaces the directory `path` with a symbolic link to `target`, spawns a child
/// `fs-probe` under `policy` and returns its exit reason.
fn swap_and_spawn(
    path: &str,
    target: &str,
    policy: &str,
    child_init: &[u8],
) -> std::io::Result<Vec<u8>> {
    std::fs::remove_dir(path)?;
    symlink(target, path)?;
    let options = SpawnOptions::new()
        .monitor(true)
        .policy(policy)
        .init(child_init.to_vec());
    let child = spawn("fs-probe", options).map_err(|e| std::io::Error::other(e.to_string()))?;
    loop {
        if let Message::Down { pid, reason, .. } = receive()
            && pid == child.pid
        {
            return Ok(reason.to_string().into_bytes());
        }
    }
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
    let outcome = match op {
        WRITE => {
            let data = reader.bytes().map_err(bad)?;
            reader.end().map_err(bad)?;
            std::fs::write(path, data).map(|()| Vec::new())
        }
        SWAP_AND_SPAWN => {
            let target = reader.str().map_err(bad)?;
            let policy = reader.str().map_err(bad)?;
            let child_init = reader.bytes().map_err(bad)?;
            reader.end().map_err(bad)?;
            swap_and_spawn(path, target, policy, child_init)
        }
        READ | LIST => {
            reader.end().map_err(bad)?;
            if op == LIST {
                list(path)
            } else {
                std::fs::read(path)
            }
        }
        other => return Err(format!("fs-probe: bad init: unknown op {other}")),
    };
    report(reporter, outcome)
}

rusm_guest::actor!(run);
