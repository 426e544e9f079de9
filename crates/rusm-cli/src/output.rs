//! Writing to stdout and stderr when the reader may be gone.
//!
//! `rusm` does what Unix tools do when the pipe it writes to closes (`rusm ... | head
//! -1`): its stdout is its result, so the first write to a closed stdout ends it by
//! `SIGPIPE`, quietly (a shell reports status 141). Its stderr is only a log: writes to
//! a closed stderr are dropped, never waited on and never fatal, so a long-running
//! `rusm serve` or `rusm run APP --keep-running` keeps serving when its log reader goes
//! away. The standard library's `println!` and `eprintln!` panic instead, and Rust
//! ignores `SIGPIPE`, so everything this crate prints goes through [`out!`] and
//! [`note!`], and logs through [`LogWriter`].
//!
//! Guests are not affected: a guest whose policy inherits stdout or stderr writes
//! through WASI and gets the stream error WASI defines when the reader is gone.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once a write to stderr has failed: later log lines are dropped at once.
static STDERR_GONE: AtomicBool = AtomicBool::new(false);

/// Print to stdout, as `print!`; a closed stdout ends `rusm` (see the module docs).
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::stdout(format_args!($($arg)*))
    };
}

/// Print a line to stdout, as `println!`; a closed stdout ends `rusm`.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// Print a line to stderr, as `eprintln!`, dropping it if stderr is closed.
macro_rules! note {
    ($($arg:tt)*) => {
        $crate::output::stderr(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// Write to stdout; on a closed stdout end the process as `SIGPIPE` would.
pub fn stdout(text: std::fmt::Arguments<'_>) {
    let mut stdout = io::stdout().lock();
    match stdout.write_fmt(text).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => die_of_broken_pipe(),
        // Anything else (a full disk, say) is not a reason to stop running actors.
        _ => {}
    }
}

/// Write to stderr, dropping the text if stderr is closed or fails.
pub fn stderr(text: std::fmt::Arguments<'_>) {
    if STDERR_GONE.load(Ordering::Relaxed) {
        return;
    }
    let mut stderr = io::stderr().lock();
    if stderr.write_fmt(text).is_err() {
        STDERR_GONE.store(true, Ordering::Relaxed);
    }
}

/// The writer of the log (`tracing_subscriber`'s `MakeWriter`): stderr, where a write
/// that fails is dropped and turns off later writes, and that never reports an error.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !STDERR_GONE.load(Ordering::Relaxed) && io::stderr().lock().write_all(buf).is_err() {
            STDERR_GONE.store(true, Ordering::Relaxed);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> LogWriter {
        LogWriter
    }
}

/// End the process by `SIGPIPE`, as a Unix tool whose output pipe closed does.
#[allow(unsafe_code)]
fn die_of_broken_pipe() -> ! {
    #[cfg(unix)]
    // SAFETY: `signal` with `SIG_DFL` and `raise` touch no memory of this process;
    // restoring the default disposition (Rust starts with `SIGPIPE` ignored) makes
    // the raise end the process at once, as the kernel would have on the write.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::raise(libc::SIGPIPE);
    }
    // Where there is no such signal (or it did not end us): the status a shell shows.
    std::process::exit(141)
}
