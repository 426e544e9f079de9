//! The `kv` scenario: `wasi:keyvalue` get, set and increment rates from an actor,
//! beside the same operations on redb's own API in the same run.
//!
//! A run does `n` sets or increments, or `20 n` gets (a get costs about a hundredth of
//! a durable commit, so the same count would be over too soon to time).
//!
//! The rusm side is one `kv-probe` actor on a node whose store is a redb file in a
//! temporary directory, under a policy granting bucket `bench` (`rw`). A run sends it
//! one message, `repeat n get k` (or `set k VALUE`, `inc c 1`), and is timed from the
//! send to the answer: `n` operations in a loop inside the guest, each a host call
//! through the grant's checks into the store (a read transaction per get; a write
//! transaction, committed durably, per set and increment, on a blocking thread).
//!
//! The baseline opens another redb file in the same directory and does the same `n`
//! operations from one blocking thread: a read transaction, `open_table` and `get` per
//! get; a write transaction with `insert` and a durable `commit` per set; and per
//! increment a write transaction that reads, parses, adds and writes the decimal
//! number back. One unit is one operation; the target for gets is at least 0.7 of the
//! baseline's rate.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, Result, bail, ensure};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use rusm_otp::{Message, Pid, Runtime};
use rusm_wasm::{WasmConfig, WasmNode, WasmSpawnOptions};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use crate::harness::{Contender, interleaved};
use crate::native::Params;
use crate::report::{Figure, Sample, Side};

/// The value every get reads and every set writes.
const VALUE: &str = "0123456789abcdef";

/// The baseline's one table, as rusm names a bucket's.
const TABLE: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("bucket:bench");

/// A temporary directory, removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The actor and the native process that receives its answers.
struct Probe {
    rt: Runtime,
    actor: Pid,
    me: Pid,
    answers: tokio::sync::Mutex<UnboundedReceiver<Vec<u8>>>,
}

impl Probe {
    async fn ask(&self, command: &str) -> Result<String> {
        let mut payload = self.me.as_raw().to_le_bytes().to_vec();
        payload.extend(command.as_bytes());
        let mut answers = self.answers.lock().await;
        self.rt.send_tagged(self.actor, 1, payload);
        let answer = answers.recv().await.context("the kv-probe actor ended")?;
        Ok(String::from_utf8(answer)?)
    }
}

/// One operation of the scenario.
#[derive(Clone, Copy)]
enum Op {
    Get,
    Set,
    Increment,
}

impl Op {
    fn command(self, n: u64) -> String {
        match self {
            Op::Get => format!("repeat {n} get k"),
            Op::Set => format!("repeat {n} set k {VALUE}"),
            Op::Increment => format!("repeat {n} inc c 1"),
        }
    }

    /// `n` of this operation on redb's own API.
    fn on_redb(self, db: &Database, n: u64) -> Result<()> {
        for _ in 0..n {
            match self {
                Op::Get => {
                    let txn = db.begin_read()?;
                    let table = txn.open_table(TABLE)?;
                    let value = table.get("k")?.context("k is missing")?;
                    ensure!(value.value() == VALUE.as_bytes(), "k holds something else");
                }
                Op::Set => {
                    let txn = db.begin_write()?;
                    txn.open_table(TABLE)?.insert("k", VALUE.as_bytes())?;
                    txn.commit()?;
                }
                Op::Increment => {
                    let txn = db.begin_write()?;
                    {
                        let mut table = txn.open_table(TABLE)?;
                        let current = match table.get("c")? {
                            Some(v) => std::str::from_utf8(v.value())?.parse::<u64>()?,
                            None => 0,
                        };
                        let next = (current + 1).to_string();
                        table.insert("c", next.as_bytes())?;
                    }
                    txn.commit()?;
                }
            }
        }
        Ok(())
    }
}

/// `kv`: `n` gets, sets and increments per run from one actor, vs redb's own API.
pub async fn kv(p: Params) -> Result<Vec<Figure>> {
    let n = p.n;
    ensure!(n > 0, "kv: n must be at least 1");
    let dir = Scratch(std::env::temp_dir().join(format!("rusm-bench-kv-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0)?;
    let probe = std::sync::Arc::new(start_probe(&dir.0, &p).await?);
    let db = std::sync::Arc::new(Database::create(dir.0.join("baseline.redb"))?);
    {
        let txn = db.begin_write()?;
        txn.open_table(TABLE)?.insert("k", VALUE.as_bytes())?;
        txn.commit()?;
    }

    let mut figures = Vec::new();
    for (op, name, target, count) in [
        (Op::Get, "get of a 16-byte value", Some(0.7), 20 * n),
        (Op::Set, "set of a 16-byte value (durable commit)", None, n),
        (Op::Increment, "increment (durable commit)", None, n),
    ] {
        let n = count;
        let rusm_probe = probe.clone();
        let redb = db.clone();
        let sides = vec![
            Contender::new("rusm wasi:keyvalue", move || {
                let probe = rusm_probe.clone();
                async move {
                    let start = Instant::now();
                    let answer = probe.ask(&op.command(n)).await?;
                    let elapsed = start.elapsed();
                    if !answer.starts_with("ok") {
                        bail!("kv-probe answered {answer:?}");
                    }
                    Ok(Sample {
                        units: n,
                        elapsed,
                        latencies: Vec::new(),
                    })
                }
            }),
            Contender::new("redb API", move || {
                let db = redb.clone();
                async move {
                    let start = Instant::now();
                    tokio::task::spawn_blocking(move || op.on_redb(&db, n)).await??;
                    Ok(Sample {
                        units: n,
                        elapsed: start.elapsed(),
                        latencies: Vec::new(),
                    })
                }
            }),
        ];
        let series = interleaved(p.repeats, p.rusm_only, sides).await?;
        let rusm_us = 1e6 / series[0].median();
        let redb_us = 1e6 / series[1].median();
        figures.push(
            Figure::new(
                "kv",
                name,
                "ops",
                format!("n={n}"),
                Side::new("rusm", &series[0], None),
                Side::new("redb", &series[1], None),
                target,
            )
            .with_note(format!(
                "{rusm_us:.1} us vs {redb_us:.1} us per op (medians), one actor vs one thread"
            )),
        );
    }
    Ok(figures)
}

/// A node on a redb file in `dir` and a `kv-probe` with bucket `bench` open, `k` set.
async fn start_probe(dir: &Path, p: &Params) -> Result<Probe> {
    let config = WasmConfig {
        cache_dir: Some(crate::wasm::cache_dir()),
        preemption: p.preemption,
        kv_path: Some(dir.join("node.redb")),
        ..WasmConfig::default()
    };
    let node = WasmNode::new(Runtime::new(), config)?;
    node.load_file("kv-probe", crate::wasm::component_path("kv-probe")?)?;
    let policy = rusm_policy::Policy::parse(
        "[keyvalue]\nbuckets = [{ name = \"bench\", mode = \"rw\" }]\n",
        Path::new("kv-bench.toml"),
    )?;
    let rt = node.runtime().clone();
    let (tx, rx) = unbounded_channel();
    let me = rt.spawn(move |ctx| async move {
        loop {
            if let Message::Data(d) = ctx.recv().await
                && let Ok(bytes) = d.payload.downcast::<Vec<u8>>()
                && tx.send(bytes).is_err()
            {
                return;
            }
        }
    });
    let options = WasmSpawnOptions {
        policy: Some(std::sync::Arc::new(policy)),
        ..Default::default()
    };
    let actor = node.spawn_with(None, "kv-probe", options)?.pid;
    let probe = Probe {
        rt,
        actor,
        me,
        answers: tokio::sync::Mutex::new(rx),
    };
    for setup in ["open bench", &format!("set k {VALUE}")] {
        let answer = probe.ask(setup).await?;
        ensure!(answer == "ok", "kv-probe: {setup} answered {answer:?}");
    }
    // The node lives as long as its processes: the actor keeps it.
    drop(node);
    Ok(probe)
}
