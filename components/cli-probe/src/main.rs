//! `cli-probe`: a plain WASI command (no rusm imports) that tries one operation with
//! Rust std and prints the outcome on stdout, so tests can see what `rusm run`'s
//! grants give a command.
//!
//! | arguments | does | prints on success |
//! | --- | --- | --- |
//! | `read PATH` | `std::fs::read_to_string(PATH)` | `cli-probe: read: <contents>` |
//! | `write PATH TEXT` | `std::fs::write(PATH, TEXT)` | `cli-probe: wrote PATH` |
//! | `env NAME` | `std::env::var(NAME)` | `cli-probe: env: NAME=<value>` |
//! | `connect ADDR` | `std::net::TcpStream::connect(ADDR)` | `cli-probe: connected to ADDR` |
//! | `clock wall` | `std::time::SystemTime::now()` | `cli-probe: wall clock read` |
//! | `clock monotonic` | `std::time::Instant::now()` | `cli-probe: monotonic clock read` |
//! | `cwd` | `std::env::current_dir()` | `cli-probe: cwd: <path>` |
//!
//! Before the operation it moves to the initial working directory the host names
//! (`wasi:cli/environment.initial-cwd`, the policy's `[env] cwd`), if any: Rust's std
//! on `wasm32-wasip2` starts in wasi-libc's `/` and does not ask, so a program that
//! wants it changes to it, and wasi-libc then resolves relative paths against it.
//!
//! It exits with 0 on success. A failed operation prints `cli-probe: failed: <Kind>:
//! <message>` (the `std::io::ErrorKind` as Rust prints it, or `NotPresent` for a
//! variable that is not set) and exits with 1; bad arguments exit with 2. Reading a
//! clock the host denies ends the process (clocks have no error channel).

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    if let Some(cwd) = initial_cwd()
        && let Err(e) = std::env::set_current_dir(&cwd)
    {
        println!("cli-probe: failed: cannot enter {cwd}: {}", describe(&e));
        return ExitCode::FAILURE;
    }
    let outcome = match args.as_slice() {
        ["read", path] => std::fs::read_to_string(path)
            .map(|text| format!("read: {text}"))
            .map_err(|e| describe(&e)),
        ["write", path, text] => std::fs::write(path, text)
            .map(|()| format!("wrote {path}"))
            .map_err(|e| describe(&e)),
        ["env", name] => std::env::var(name)
            .map(|value| format!("env: {name}={value}"))
            .map_err(|e| format!("{e:?}")),
        ["connect", addr] => std::net::TcpStream::connect(addr)
            .map(|_| format!("connected to {addr}"))
            .map_err(|e| describe(&e)),
        ["cwd"] => std::env::current_dir()
            .map(|dir| format!("cwd: {}", dir.display()))
            .map_err(|e| describe(&e)),
        ["clock", "wall"] => {
            let _ = std::time::SystemTime::now();
            Ok("wall clock read".to_owned())
        }
        ["clock", "monotonic"] => {
            let _ = std::time::Instant::now();
            Ok("monotonic clock read".to_owned())
        }
        _ => {
            eprintln!("cli-probe: unknown arguments {args:?}");
            return ExitCode::from(2);
        }
    };
    match outcome {
        Ok(done) => {
            println!("cli-probe: {done}");
            ExitCode::SUCCESS
        }
        Err(why) => {
            println!("cli-probe: failed: {why}");
            ExitCode::FAILURE
        }
    }
}

fn describe(error: &std::io::Error) -> String {
    format!("{:?}: {error}", error.kind())
}

/// `wasi:cli/environment.initial-cwd`, through the binding wasi-libc carries (std has
/// no API for it).
fn initial_cwd() -> Option<String> {
    #[repr(C)]
    struct WasiString {
        ptr: *mut u8,
        len: usize,
    }
    unsafe extern "C" {
        fn environment_initial_cwd(ret: *mut WasiString) -> bool;
        fn free(ptr: *mut std::ffi::c_void);
    }
    let mut ret = WasiString {
        ptr: std::ptr::null_mut(),
        len: 0,
    };
    // SAFETY: the binding writes a string it allocated with malloc into `ret` when it
    // returns true; it is copied out and freed once.
    unsafe {
        if !environment_initial_cwd(&mut ret) {
            return None;
        }
        if ret.len == 0 {
            return Some(String::new());
        }
        let text =
            String::from_utf8_lossy(std::slice::from_raw_parts(ret.ptr, ret.len)).into_owned();
        free(ret.ptr.cast());
        Some(text)
    }
}
