//! `net-probe`: tries one socket operation or name lookup with Rust std (`std::net`)
//! and reports the outcome, so tests can see what a policy's `[net]` section allows
//! from inside a guest.
//!
//! All integers are little-endian; a pid is its raw number as a `u64`; a string is a
//! `u32` byte length then UTF-8.
//!
//! # Init
//!
//! `reporter` pid, `op` `u8`, `target` string, and for udp-send only a `local` string
//! after it:
//!
//! | op | name | `target` | what it does | the `ok` payload |
//! | --- | --- | --- | --- | --- |
//! | 1 | tcp-connect | `IP:PORT` | `TcpStream::connect`, writes `net-probe`, closes | the peer address as text |
//! | 2 | tcp-listen | `IP:PORT` | `TcpListener::bind` (bind and listen), then accepts one connection | the bound address as text |
//! | 3 | udp-bind | `IP:PORT` | `UdpSocket::bind` | the bound address as text |
//! | 4 | udp-send | `IP:PORT` | binds `local` (`IP:PORT`; `0.0.0.0:0` is what an implicit bind would use), sends the datagram `net-probe` to `target` | the bytes sent, as decimal text |
//! | 5 | dns | a host name | `(name, 0).to_socket_addrs()` | each address found (sorted, no repeats) as a string |
//!
//! # Reports to `reporter`
//!
//! | tag | name | payload |
//! | --- | --- | --- |
//! | 1 | ok | as in the table above |
//! | 2 | error | `<Kind>: <message>`: the `std::io::ErrorKind` name as Rust prints it (`PermissionDenied`, ...), then the error text |
//! | 3 | accepted | tcp-listen only, after `ok`: everything the accepted connection sent before closing |
//!
//! One `ok` or `error`, and for a listening probe then one `accepted` or `error`;
//! then the probe returns (`normal`). A bad init ends the process with
//! `custom:net-probe: bad init: ...`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs, UdpSocket};

use rusm_guest::wire::{Reader, Writer};
use rusm_guest::{Pid, Tag, send};

const OK: Tag = 1;
const ERROR: Tag = 2;
const ACCEPTED: Tag = 3;

const TCP_CONNECT: u8 = 1;
const TCP_LISTEN: u8 = 2;
const UDP_BIND: u8 = 3;
const UDP_SEND: u8 = 4;
const DNS: u8 = 5;

/// What the probe writes or sends.
const GREETING: &[u8] = b"net-probe";

fn report(reporter: Pid, outcome: std::io::Result<Vec<u8>>, ok_tag: Tag) -> Result<(), String> {
    let (tag, payload) = match outcome {
        Ok(detail) => (ok_tag, detail),
        Err(error) => (ERROR, format!("{:?}: {error}", error.kind()).into_bytes()),
    };
    send(reporter, tag, payload).map_err(|e| format!("net-probe: cannot report to {reporter}: {e}"))
}

fn connect(target: &str) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(target)?;
    stream.write_all(GREETING)?;
    let peer = stream.peer_addr()?;
    Ok(peer.to_string().into_bytes())
}

fn udp_send(target: &str, local: &str) -> std::io::Result<Vec<u8>> {
    let to: SocketAddr = target
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let socket = UdpSocket::bind(local)?;
    let sent = socket.send_to(GREETING, to)?;
    Ok(sent.to_string().into_bytes())
}

fn lookup(name: &str) -> std::io::Result<Vec<u8>> {
    let mut addrs: Vec<String> = (name, 0)
        .to_socket_addrs()?
        .map(|addr| addr.ip().to_string())
        .collect();
    addrs.sort();
    addrs.dedup();
    let mut out = Writer::new();
    for addr in &addrs {
        out.str(addr);
    }
    Ok(out.finish())
}

fn listen(reporter: Pid, target: &str) -> Result<(), String> {
    let listener = match TcpListener::bind(target) {
        Ok(listener) => listener,
        Err(error) => return report(reporter, Err(error), OK),
    };
    let bound = listener
        .local_addr()
        .map(|addr| addr.to_string().into_bytes());
    let failed = bound.is_err();
    report(reporter, bound, OK)?;
    if failed {
        return Ok(());
    }
    let received = listener.accept().and_then(|(mut stream, _)| {
        let mut data = Vec::new();
        stream.read_to_end(&mut data)?;
        Ok(data)
    });
    report(reporter, received, ACCEPTED)
}

fn run(init: Vec<u8>) -> Result<(), String> {
    let bad = |e: rusm_guest::wire::DecodeError| format!("net-probe: bad init: {e}");
    let mut reader = Reader::new(&init);
    let reporter = reader.pid().map_err(bad)?;
    let op = reader.u8().map_err(bad)?;
    let target = reader.str().map_err(bad)?;
    let local = if op == UDP_SEND {
        reader.str().map_err(bad)?
    } else {
        ""
    };
    reader.end().map_err(bad)?;
    let outcome = match op {
        TCP_CONNECT => connect(target),
        TCP_LISTEN => return listen(reporter, target),
        UDP_BIND => UdpSocket::bind(target)
            .and_then(|socket| socket.local_addr())
            .map(|addr| addr.to_string().into_bytes()),
        UDP_SEND => udp_send(target, local),
        DNS => lookup(target),
        other => return Err(format!("net-probe: bad init: unknown op {other}")),
    };
    report(reporter, outcome, OK)
}

rusm_guest::actor!(run);
