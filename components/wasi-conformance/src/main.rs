//! `wasi-conformance`: a plain WASI preview 2 command (Rust std only, no rusm
//! imports) that runs the conformance case named by its first argument and prints
//! what it observed on stdout, one fact per line, so that a test can compare the
//! output of `rusm run` (or `wasmtime run`) with the exact text expected.
//!
//! Every case ends with the line `ok` and exit code 0 when each step did what WASI
//! promises. A step that fails prints `STEP failed: KIND: MESSAGE` (the
//! `std::io::ErrorKind` as Rust names it) and exits with 1; an unknown case exits with 2. Steps that are
//! expected to be refused print `STEP refused: KIND: MESSAGE` and go on (a failure
//! prints its message too: wasi-libc's text for the WASI error code).
//!
//! | case | needs | does |
//! | --- | --- | --- |
//! | `fs-rw` | a read-write preopen named `.` | write, read, append, truncate, rename, hard link, directories, listing, removal; relative, `./` and absolute names |
//! | `fs-ro` | a read-only preopen named `readonly` holding `fixture.txt` (`fixture`) and `sub/inner.txt` | reads and lists it; every change is refused |
//! | `fs-multi` | `readonly` as above, read-write preopens `/out` and `scratch/tmp` | copies and moves between preopens; paths that lead out of every preopen are refused |
//! | `args A...` | — | prints the arguments after the program name |
//! | `env` | — | prints every variable, sorted |
//! | `cwd FILE` | — | changes to the initial working directory the host names, prints it and reads FILE relative to it |
//! | `stdin` | — | reads stdin to its end, prints its size, line count and first line |
//! | `stdout-large N` / `stderr-large N` | — | writes N bytes of lines of `a`–`z` to the stream |
//! | `clocks` | both clocks | the wall clock is past 2020; the monotonic clock does not go back and measures a sleep |
//! | `sleep MS` | nothing | sleeps MS milliseconds without reading a clock |
//! | `random` | nothing | two 32-byte draws of `wasi:random` differ and are not all zeros |
//! | `tcp-loopback` | bind and connect on 127.0.0.1 | listens on an ephemeral port, connects to itself, echoes bytes |
//! | `tcp-connect ADDR` | connect to ADDR | sends `ping` to ADDR and prints what comes back |
//! | `udp` | UDP bind and send on 127.0.0.1 | two sockets exchange a datagram |
//! | `dns` | name lookups | `localhost` resolves to a loopback address |

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

/// A step that did not do what it should: what was tried and how it failed.
struct Failed(String);

type Step<T = ()> = Result<T, Failed>;

/// Attach the step's name to an I/O error.
trait Named<T> {
    fn step(self, what: &str) -> Step<T>;
}

impl<T> Named<T> for std::io::Result<T> {
    fn step(self, what: &str) -> Step<T> {
        self.map_err(|e| Failed(format!("{what} failed: {:?}: {e}", e.kind())))
    }
}

fn ensure(holds: bool, what: &str) -> Step {
    if holds {
        Ok(())
    } else {
        Err(Failed(format!("{what} failed: it does not hold")))
    }
}

/// An operation that must be refused: prints how, or fails if it succeeded.
fn refused<T>(what: &str, result: std::io::Result<T>) -> Step {
    match result {
        Ok(_) => Err(Failed(format!("{what} failed: it was allowed"))),
        Err(e) => {
            println!("{what} refused: {:?}: {e}", e.kind());
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let outcome = match args.as_slice() {
        ["fs-rw"] => fs_rw(),
        ["fs-ro"] => fs_ro(),
        ["fs-multi"] => fs_multi(),
        ["args", rest @ ..] => {
            println!("args: {rest:?}");
            Ok(())
        }
        ["env"] => {
            let mut vars: Vec<(String, String)> = std::env::vars().collect();
            vars.sort();
            for (name, value) in vars {
                println!("env: {name}={value}");
            }
            Ok(())
        }
        ["cwd", file] => cwd(file),
        ["stdin"] => stdin(),
        ["stdout-large", n] => large(n, &mut std::io::stdout().lock()),
        ["stderr-large", n] => large(n, &mut std::io::stderr().lock()),
        ["clocks"] => clocks(),
        ["sleep", ms] => sleep(ms),
        ["random"] => random(),
        ["tcp-loopback"] => tcp_loopback(),
        ["tcp-connect", addr] => tcp_connect(addr),
        ["udp"] => udp(),
        ["dns"] => dns(),
        _ => {
            eprintln!("wasi-conformance: unknown case {args:?}");
            return ExitCode::from(2);
        }
    };
    match outcome {
        Ok(()) => {
            println!("ok");
            ExitCode::SUCCESS
        }
        Err(Failed(why)) => {
            println!("{why}");
            ExitCode::FAILURE
        }
    }
}

fn read(path: &str) -> Step<String> {
    let text = fs::read_to_string(path).step(&format!("read {path}"))?;
    println!("read {path}: {text:?}");
    Ok(text)
}

fn fs_rw() -> Step {
    fs::write("a.txt", "hello").step("write a.txt")?;
    ensure(
        read("./a.txt")? == "hello",
        "./a.txt holds what was written",
    )?;
    let mut file = fs::OpenOptions::new()
        .append(true)
        .open("a.txt")
        .step("open a.txt to append")?;
    file.write_all(b" world").step("append to a.txt")?;
    drop(file);
    ensure(read("/a.txt")? == "hello world", "the append is at the end")?;
    let file = fs::OpenOptions::new()
        .write(true)
        .open("a.txt")
        .step("open a.txt to write")?;
    file.set_len(5).step("truncate a.txt")?;
    drop(file);
    ensure(read("a.txt")? == "hello", "the truncation kept 5 bytes")?;
    fs::write("a.txt", "hey").step("rewrite a.txt")?;
    ensure(read("a.txt")? == "hey", "a rewrite truncates")?;

    fs::rename("a.txt", "b.txt").step("rename a.txt to b.txt")?;
    refused("read a.txt after the rename", fs::read("a.txt"))?;
    fs::hard_link("b.txt", "c.txt").step("hard link b.txt to c.txt")?;
    let mut link = fs::OpenOptions::new()
        .append(true)
        .open("c.txt")
        .step("open c.txt to append")?;
    link.write_all(b"!").step("append to c.txt")?;
    drop(link);
    ensure(read("b.txt")? == "hey!", "both names are one file")?;

    fs::create_dir_all("d/e").step("create d/e")?;
    fs::write("/d/e/f.txt", "deep").step("write /d/e/f.txt")?;
    ensure(read("d/./e/f.txt")? == "deep", "nested files read back")?;
    let mut names: Vec<String> = fs::read_dir(".")
        .step("list .")?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()
        .step("read an entry of .")?;
    names.sort();
    println!("list .: {names:?}");
    let meta = fs::metadata("d").step("stat d")?;
    ensure(meta.is_dir(), "d is a directory")?;
    println!(
        "size of b.txt: {}",
        fs::metadata("b.txt").step("stat b.txt")?.len()
    );

    fs::remove_file("c.txt").step("remove c.txt")?;
    ensure(
        read("b.txt")? == "hey!",
        "removing one name keeps the other",
    )?;
    refused("remove d while it holds files", fs::remove_dir("d"))?;
    fs::remove_dir_all("d").step("remove d and what it holds")?;
    refused("read d/e/f.txt after removal", fs::read("d/e/f.txt"))
}

fn fs_ro() -> Step {
    ensure(
        read("readonly/fixture.txt")? == "fixture",
        "the fixture reads back",
    )?;
    ensure(
        read("/readonly/sub/inner.txt")? == "inner",
        "a nested fixture reads back",
    )?;
    let mut names: Vec<String> = fs::read_dir("readonly")
        .step("list readonly")?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()
        .step("read an entry of readonly")?;
    names.sort();
    println!("list readonly: {names:?}");
    refused(
        "create readonly/new.txt",
        fs::write("readonly/new.txt", "x"),
    )?;
    refused(
        "open readonly/fixture.txt to append",
        fs::OpenOptions::new()
            .append(true)
            .open("readonly/fixture.txt"),
    )?;
    refused(
        "open readonly/fixture.txt to truncate",
        fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open("readonly/fixture.txt"),
    )?;
    refused(
        "rename readonly/fixture.txt",
        fs::rename("readonly/fixture.txt", "readonly/moved.txt"),
    )?;
    refused(
        "hard link readonly/fixture.txt",
        fs::hard_link("readonly/fixture.txt", "readonly/link.txt"),
    )?;
    refused(
        "remove readonly/fixture.txt",
        fs::remove_file("readonly/fixture.txt"),
    )?;
    refused("create readonly/dir", fs::create_dir("readonly/dir"))?;
    ensure(
        read("readonly/fixture.txt")? == "fixture",
        "the fixture is unchanged",
    )
}

fn fs_multi() -> Step {
    let copied = fs::copy("readonly/fixture.txt", "/out/copy.txt")
        .step("copy readonly/fixture.txt to /out/copy.txt")?;
    println!("copied {copied} bytes");
    ensure(
        read("/out/copy.txt")? == "fixture",
        "the copy holds the fixture",
    )?;
    fs::write("scratch/tmp/t.txt", "moving").step("write scratch/tmp/t.txt")?;
    fs::rename("scratch/tmp/t.txt", "/out/t.txt").step("rename scratch/tmp/t.txt to /out/t.txt")?;
    ensure(read("/out/t.txt")? == "moving", "the moved file reads back")?;
    refused(
        "read scratch/tmp/t.txt after the move",
        fs::read("scratch/tmp/t.txt"),
    )?;
    refused(
        "move readonly/fixture.txt out",
        fs::rename("readonly/fixture.txt", "/out/stolen.txt"),
    )?;
    ensure(
        read("readonly/fixture.txt")? == "fixture",
        "the fixture stays",
    )?;
    // Names that lead out of every preopen.
    refused(
        "read readonly/../../outside.txt",
        fs::read("readonly/../../outside.txt"),
    )?;
    refused("read /out/../outside.txt", fs::read("/out/../outside.txt"))?;
    refused("read /outside.txt", fs::read("/outside.txt"))?;
    refused("write ../outside.txt", fs::write("../outside.txt", "x"))?;
    Ok(())
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

fn cwd(file: &str) -> Step {
    println!("initial cwd: {:?}", initial_cwd());
    if let Some(dir) = initial_cwd() {
        std::env::set_current_dir(&dir).step(&format!("change to {dir}"))?;
    }
    let now = std::env::current_dir().step("read the working directory")?;
    println!("cwd: {}", now.display());
    read(file).map(drop)
}

fn stdin() -> Step {
    let mut bytes = Vec::new();
    std::io::stdin()
        .read_to_end(&mut bytes)
        .step("read stdin")?;
    let text = String::from_utf8_lossy(&bytes);
    println!("stdin: {} bytes", bytes.len());
    println!("stdin: {} lines", text.lines().count());
    println!("stdin: first line {:?}", text.lines().next().unwrap_or(""));
    Ok(())
}

/// Lines of 63 letters and a newline: `abc...` shifted by one per line.
fn large(n: &str, out: &mut impl Write) -> Step {
    let n: usize = n
        .parse()
        .map_err(|_| Failed(format!("size {n:?} failed: not a number")))?;
    let mut text = Vec::with_capacity(n);
    let mut i = 0usize;
    while text.len() < n {
        text.push(if i % 64 == 63 {
            b'\n'
        } else {
            b'a' + ((i / 64 + i % 64) % 26) as u8
        });
        i += 1;
    }
    out.write_all(&text).step("write the output")?;
    out.flush().step("flush the output")?;
    Ok(())
}

fn clocks() -> Step {
    let since_epoch = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|_| Failed("read the wall clock failed: before 1970".into()))?;
    // 2020-01-01T00:00:00Z.
    ensure(
        since_epoch.as_secs() > 1_577_836_800,
        "the wall clock is past 2020",
    )?;
    println!("wall clock: after 2020");
    let start = Instant::now();
    let again = Instant::now();
    ensure(again >= start, "the monotonic clock does not go back")?;
    std::thread::sleep(Duration::from_millis(20));
    let slept = start.elapsed();
    ensure(
        slept >= Duration::from_millis(20),
        "a 20 ms sleep takes 20 ms or more",
    )?;
    println!("monotonic clock: measured a 20 ms sleep");
    Ok(())
}

fn sleep(ms: &str) -> Step {
    let ms: u64 = ms
        .parse()
        .map_err(|_| Failed(format!("sleep {ms:?} failed: not a number")))?;
    std::thread::sleep(Duration::from_millis(ms));
    println!("slept {ms} ms");
    Ok(())
}

fn random() -> Step {
    unsafe extern "C" {
        // wasi-libc's, over wasi:random/random get-random-bytes.
        fn getentropy(buffer: *mut u8, len: usize) -> i32;
    }
    let draw = || -> Step<[u8; 32]> {
        let mut bytes = [0u8; 32];
        // SAFETY: the buffer is 32 writable bytes, at most getentropy's 256.
        let status = unsafe { getentropy(bytes.as_mut_ptr(), bytes.len()) };
        ensure(status == 0, "getentropy")?;
        Ok(bytes)
    };
    let (a, b) = (draw()?, draw()?);
    ensure(a != b, "two draws differ")?;
    ensure(a != [0; 32] && b != [0; 32], "a draw is not all zeros")?;
    println!("random: two 32-byte draws differ");
    Ok(())
}

fn tcp_loopback() -> Step {
    let listener = TcpListener::bind("127.0.0.1:0").step("tcp bind 127.0.0.1:0")?;
    let addr = listener.local_addr().step("tcp local address")?;
    ensure(addr.port() != 0, "an ephemeral port was chosen")?;
    let mut client = TcpStream::connect(addr).step("tcp connect to the listener")?;
    let (mut server, peer) = listener.accept().step("tcp accept")?;
    ensure(
        peer == client.local_addr().step("tcp client address")?,
        "the accepted peer is the client",
    )?;
    client.write_all(b"ping").step("tcp send")?;
    let mut got = [0u8; 4];
    server.read_exact(&mut got).step("tcp receive")?;
    server.write_all(&got).step("tcp echo")?;
    let mut back = [0u8; 4];
    client.read_exact(&mut back).step("tcp receive the echo")?;
    ensure(&back == b"ping", "the echo is what was sent")?;
    println!(
        "tcp: echoed {:?} over 127.0.0.1",
        String::from_utf8_lossy(&back)
    );
    Ok(())
}

fn tcp_connect(addr: &str) -> Step {
    let mut stream = TcpStream::connect(addr).step(&format!("tcp connect to {addr}"))?;
    stream.write_all(b"ping").step("tcp send")?;
    stream
        .shutdown(std::net::Shutdown::Write)
        .step("tcp shutdown")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).step("tcp receive")?;
    println!("tcp: {addr} answered {answer:?}");
    Ok(())
}

fn udp() -> Step {
    let a = UdpSocket::bind("127.0.0.1:0").step("udp bind 127.0.0.1:0")?;
    let b = UdpSocket::bind("127.0.0.1:0").step("udp bind a second socket")?;
    let b_addr = b.local_addr().step("udp local address")?;
    a.send_to(b"datagram", b_addr).step("udp send")?;
    let mut buf = [0u8; 64];
    let (n, from) = b.recv_from(&mut buf).step("udp receive")?;
    ensure(
        from == a.local_addr().step("udp sender address")?,
        "the datagram comes from the sender",
    )?;
    println!("udp: received {:?}", String::from_utf8_lossy(&buf[..n]));
    Ok(())
}

fn dns() -> Step {
    let addrs: Vec<std::net::SocketAddr> = ("localhost", 80)
        .to_socket_addrs()
        .step("resolve localhost")?
        .collect();
    ensure(!addrs.is_empty(), "localhost has an address")?;
    ensure(
        addrs.iter().all(|a| a.ip().is_loopback()),
        "localhost is loopback",
    )?;
    println!("dns: localhost is loopback");
    Ok(())
}
