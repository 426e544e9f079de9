//! The operator endpoint of a running app: a Unix socket beside its key-value database
//! (`kv.redb.sock` beside `kv.redb`), through which `rusm kv` reads and writes the
//! buckets while the node holds the database file locked.
//!
//! The socket is created with mode 0600 in the database's directory, so it reaches
//! exactly the people who could open the file itself when no node runs. One request,
//! one answer per connection, each a line of JSON ([`Request`], [`Reply`]); a request
//! is at most [`MAX_REQUEST`] bytes, and at most [`MAX_CONNECTIONS`] are served at
//! once. Requests go through the node's buckets as its processes reach them, so a
//! bucket shared through the cluster (`[cluster] kv_buckets`) is read and written in
//! its JetStream bucket, the others in the file (writes on a blocking thread).

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rusm_wasm::{KvStore, NodeBuckets, WriteLimits};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};

/// The longest request line, in bytes (a value to store is most of it).
pub const MAX_REQUEST: u64 = 64 << 20;
/// The most connections served at once; more wait to be accepted.
pub const MAX_CONNECTIONS: usize = 8;
/// How long a connection may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The socket of the node whose key-value database is `db`.
pub fn socket_path(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_owned();
    name.push(".sock");
    db.with_file_name(name)
}

/// What `rusm kv` asks a running node.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    /// The value of `key` in `bucket`.
    Get {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
    },
    /// Store `value` under `key` in `bucket`.
    Set {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// The value.
        value: Vec<u8>,
    },
    /// Remove `key` from `bucket`.
    Delete {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
    },
    /// The buckets that hold something, with their sizes.
    Buckets,
    /// A page of `bucket`'s keys, after skipping `skip`.
    Keys {
        /// The bucket.
        bucket: String,
        /// How many keys to skip.
        skip: u64,
    },
}

/// A running node's answer.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reply {
    /// The value (`None`: no such key).
    Value(Option<Vec<u8>>),
    /// The write is stored.
    Done,
    /// Buckets and their sizes in bytes.
    Buckets(Vec<(String, u64)>),
    /// A page of keys, and whether more follow.
    Keys {
        /// The keys.
        keys: Vec<String>,
        /// Whether another page follows.
        more: bool,
    },
    /// The request failed.
    Error(String),
}

async fn execute(store: &NodeBuckets, request: Request) -> Reply {
    let result = match request {
        Request::Get { bucket, key } => store.get(&bucket, &key).await.map(Reply::Value),
        Request::Set { bucket, key, value } => store
            .set_many(&bucket, vec![(key, value)], WriteLimits::NONE)
            .await
            .map(|()| Reply::Done),
        Request::Delete { bucket, key } => store
            .delete_many(&bucket, vec![key])
            .await
            .map(|()| Reply::Done),
        Request::Buckets => store.buckets().await.map(Reply::Buckets),
        Request::Keys { bucket, skip } => store
            .list(&bucket, skip, rusm_wasm::LIST_PAGE)
            .await
            .map(|(keys, more)| Reply::Keys { keys, more }),
    };
    result.unwrap_or_else(|e| Reply::Error(e.to_string()))
}

/// The endpoint while it serves: dropping it stops it and removes the socket.
pub struct Endpoint {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Endpoint {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Serve `store`, the node's, on the socket beside `db`. The caller holds `db` open
/// (and so locked), so a socket file already there is a dead node's and is replaced.
///
/// # Errors
/// When the socket cannot be created (a directory that cannot be written, a path
/// longer than a socket address allows).
pub fn serve(db: &Path, store: Arc<NodeBuckets>) -> anyhow::Result<Endpoint> {
    let path = socket_path(db);
    let cannot = || format!("cannot create the operator socket {}", path.display());
    // Bound under a name of its own, made owner-only, then moved into place: no one
    // else can connect between the bind and the chmod.
    let mut temp_name = path.file_name().unwrap_or_default().to_owned();
    temp_name.push(format!(".{}.new", std::process::id()));
    let temp = path.with_file_name(temp_name);
    let _ = std::fs::remove_file(&temp);
    let listener = tokio::net::UnixListener::bind(&temp).with_context(cannot)?;
    std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o600)).with_context(cannot)?;
    std::fs::rename(&temp, &path).with_context(cannot)?;
    let limit = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let task = tokio::spawn(async move {
        loop {
            let Ok(permit) = limit.clone().acquire_owned().await else {
                return;
            };
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors, say: wait a little rather than spin.
                    tracing::warn!(target: "rusm::app", "operator socket: {e}");
                    drop(permit);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let store = store.clone();
            tokio::spawn(async move {
                let _permit = permit;
                if let Err(e) = answer(stream, store).await {
                    tracing::debug!(target: "rusm::app", "operator connection: {e}");
                }
            });
        }
    });
    Ok(Endpoint { path, task })
}

/// Read one request from `stream`, answer it, and close.
async fn answer(stream: tokio::net::UnixStream, store: Arc<NodeBuckets>) -> anyhow::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = Vec::new();
    let mut reader = tokio::io::BufReader::new(read.take(MAX_REQUEST + 1));
    tokio::time::timeout(READ_TIMEOUT, reader.read_until(b'\n', &mut line))
        .await
        .context("no request in time")??;
    let reply = if line.len() as u64 > MAX_REQUEST {
        Reply::Error(format!("the request is longer than {MAX_REQUEST} bytes"))
    } else {
        match serde_json::from_slice::<Request>(&line) {
            Ok(request) => execute(&store, request).await,
            Err(e) => Reply::Error(format!("bad request: {e}")),
        }
    };
    let mut out = serde_json::to_vec(&reply)?;
    out.push(b'\n');
    write.write_all(&out).await?;
    write.shutdown().await?;
    Ok(())
}

/// Ask the node serving `socket`, or `None` when none answers there (no socket, or a
/// dead node's).
///
/// # Errors
/// When a node accepted the connection but the exchange failed.
pub fn ask(socket: &Path, request: &Request) -> anyhow::Result<Option<Reply>> {
    let mut stream = match std::os::unix::net::UnixStream::connect(socket) {
        Ok(stream) => stream,
        Err(_) => return Ok(None),
    };
    let answer = exchange(&mut stream, request)
        .with_context(|| format!("the node at {}", socket.display()))?;
    let reply = serde_json::from_str(&answer).with_context(|| {
        format!(
            "the node at {} answered something else than a reply",
            socket.display()
        )
    })?;
    Ok(Some(reply))
}

/// Send `request` on `stream` and read the answer's line.
fn exchange(
    stream: &mut std::os::unix::net::UnixStream,
    request: &Request,
) -> std::io::Result<String> {
    use std::io::{BufRead as _, Write as _};
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    stream.write_all(&line)?;
    let mut answer = String::new();
    std::io::BufReader::new(&*stream).read_line(&mut answer)?;
    Ok(answer)
}
