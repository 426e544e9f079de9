//! A real `nats-server` for tests: started on a free loopback port with JetStream in
//! a fresh directory, ready once it accepts connections, killed and cleaned up when
//! dropped. Enabled by the `testing` feature.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The program started; Debian's package of the same name installs it.
pub const PROGRAM: &str = "nats-server";

/// How long a server may take to accept its first connection.
const READY_WITHIN: Duration = Duration::from_secs(20);

/// A running `nats-server`.
#[derive(Debug)]
pub struct NatsServer {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl NatsServer {
    /// Start one with JetStream, on a port the OS picked.
    ///
    /// # Errors
    /// Says to install the `nats-server` package when the program is missing, and
    /// what went wrong when the server exits or does not accept connections in time.
    pub fn start() -> Result<NatsServer, String> {
        let mut last = String::new();
        // The port is free when picked; another process could take it before the
        // server binds it, so a server that exits at once is tried again.
        for _ in 0..5 {
            match NatsServer::try_start(free_port()?) {
                Ok(server) => return Ok(server),
                Err(Started::Missing(why)) => return Err(why),
                Err(Started::Failed(why)) => last = why,
            }
        }
        Err(last)
    }

    fn try_start(port: u16) -> Result<NatsServer, Started> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "rusm-nats-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        NatsServer::start_in(port, dir)
    }

    /// Stop the server and start it again on the same port with the same JetStream
    /// directory, as an operator's restart would; returns once it accepts connections.
    ///
    /// # Errors
    /// As [`NatsServer::start`].
    pub fn restart(&mut self) -> Result<(), String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = std::mem::take(&mut self.dir);
        match NatsServer::start_in(self.port, dir) {
            Ok(mut fresh) => {
                std::mem::swap(self, &mut fresh);
                // `fresh` now holds the old, dead child and no directory.
                fresh.dir = PathBuf::new();
                Ok(())
            }
            Err(Started::Missing(why) | Started::Failed(why)) => Err(why),
        }
    }

    fn start_in(port: u16, dir: PathBuf) -> Result<NatsServer, Started> {
        std::fs::create_dir_all(&dir)
            .map_err(|e| Started::Failed(format!("cannot create {}: {e}", dir.display())))?;
        let child = Command::new(PROGRAM)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(Started::Missing(format!(
                    "`{PROGRAM}` is not installed: the cluster tests need a NATS server \
                     (Debian package `nats-server`: apt-get install -y nats-server)"
                )));
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(Started::Failed(format!("cannot start {PROGRAM}: {e}")));
            }
        };
        let mut server = NatsServer { child, port, dir };
        let deadline = Instant::now() + READY_WITHIN;
        let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
        loop {
            if TcpStream::connect_timeout(&addr.into(), Duration::from_millis(200)).is_ok() {
                return Ok(server);
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(Started::Failed(format!(
                    "{PROGRAM} on port {port} exited at start: {status}"
                )));
            }
            if Instant::now() >= deadline {
                return Err(Started::Failed(format!(
                    "{PROGRAM} on port {port} accepted no connection within {READY_WITHIN:?}"
                )));
            }
            // Poll again: a refused connection returns at once.
            std::thread::yield_now();
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The server's URL, `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

enum Started {
    Missing(String),
    Failed(String),
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot pick a free port: {e}"))
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
