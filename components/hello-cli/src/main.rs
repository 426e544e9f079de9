//! `hello-cli`: a plain WASI command that knows nothing of rusm.
//!
//! Prints `hello from rusm` on stdout, then exits with the code given as its first
//! argument (an integer from 0 to 255), or 0 without one. Any other first argument
//! prints an error on stderr and exits with code 2. WASI preview 2 itself only tells
//! success from failure, so a host may see every non-zero code as 1.

use std::process::ExitCode;

fn main() -> ExitCode {
    println!("hello from rusm");
    let Some(arg) = std::env::args().nth(1) else {
        return ExitCode::SUCCESS;
    };
    match arg.parse::<u8>() {
        Ok(code) => ExitCode::from(code),
        Err(_) => {
            eprintln!("hello-cli: the exit code must be an integer from 0 to 255, got {arg:?}");
            ExitCode::from(2)
        }
    }
}
