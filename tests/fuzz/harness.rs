//! The harness that fuzzes the `rusm:runtime` host functions, shared by the seeded
//! test (`tests/all/fuzz_runtime.rs`) and the libFuzzer target
//! (`fuzz/fuzz_targets/runtime_calls.rs`): the `runtime-fuzz` guest reads arbitrary
//! bytes as a program of calls with arbitrary arguments and makes them through the
//! real ABI; [`Harness::check_program`] runs one such program on a real node and
//! checks what a user relies on — the host never panics (a host panic would end the
//! guest with a crash the checks reject), every refusal is one of the runtime's typed
//! errors with a bounded text, the guest ends only in the documented ways, and nothing
//! it made the host hold (children, memory grants) outlives it.

use std::sync::Arc;
use std::time::Duration;

use rusm_otp::{Event, ExitReason, Message, Pid, Runtime};
use rusm_policy::Policy;
use rusm_wasm::{WasmNode, WasmSpawnOptions};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

/// The components a fuzzing node must have loaded.
pub const COMPONENTS: [&str; 2] = ["runtime-fuzz", "trivial"];

/// What a fuzzed guest runs under: every right and limit in play, all bounded, and a
/// deadline so every program ends.
const FUZZ_POLICY: &str = r#"
[process]
spawn = [{ component = "trivial" }]
kill = "children"
register = ["fuzz-*"]

[limits]
memory = "16 MiB"
deadline = "3s"
message_size = "32 KiB"
mailbox = 256
mailbox_bytes = "4 MiB"
timers = 64
monitors = 256
links = 64
children = 8
descendants = 8
spawns = 32
"#;

/// The tag of `runtime-fuzz`'s report.
const REPORT: u64 = 1000;

/// The most bytes of error text one refused call may carry, whatever the program
/// chose: the runtime's own words and at most a name of the longest length allowed,
/// escaped.
const MAX_ERROR_TEXT: usize = 4096;

/// A node for fuzzing, the policy its guests run under, and a watch on every exit.
pub struct Harness {
    node: WasmNode,
    policy: Arc<Policy>,
    reporter: Pid,
    reports: UnboundedReceiver<Message>,
    /// Every spawn on the node: the new pid and its parent.
    spawns: UnboundedReceiver<(Pid, Option<Pid>)>,
    /// Calls made by the guests that ran their programs to the end.
    pub calls: u64,
    /// Refusals seen, by error variant.
    pub errors: [u64; 6],
}

impl Harness {
    /// A harness on `node`, which has [`COMPONENTS`] loaded.
    pub fn new(node: WasmNode) -> Harness {
        let (tx, spawns) = tokio::sync::mpsc::unbounded_channel();
        node.runtime().add_observer(move |event| {
            if let Event::Spawned { pid, parent, .. } = event {
                let _ = tx.send((*pid, *parent));
            }
        });
        let (reporter, reports) = reporter(node.runtime());
        let policy = Policy::parse(FUZZ_POLICY, std::path::Path::new("fuzz-policy.toml"))
            .expect("the fuzzing policy is valid");
        Harness {
            node,
            policy: Arc::new(policy),
            reporter,
            reports,
            spawns,
            calls: 0,
            errors: [0; 6],
        }
    }

    /// Run `program` in a fresh guest and check everything above.
    ///
    /// # Errors
    /// What went wrong, for the failure message (the caller adds the program).
    pub async fn check_program(&mut self, program: &[u8]) -> Result<(), String> {
        let rt = self.node.runtime().clone();
        let mut init = self.reporter.as_raw().to_le_bytes().to_vec();
        init.extend_from_slice(program);
        let (pid, end) = self
            .node
            .spawn_watched(
                "runtime-fuzz",
                WasmSpawnOptions {
                    init,
                    policy: Some(self.policy.clone()),
                    ..WasmSpawnOptions::default()
                },
            )
            .map_err(|e| format!("the guest did not spawn: {e}"))?;
        let reason = tokio::time::timeout(Duration::from_secs(30), end)
            .await
            .map_err(|_| "the guest outlived its 3 s deadline by 27 s".to_owned())?;
        match &reason {
            ExitReason::Normal => self.check_report(pid).await?,
            // `exit` of itself, or a linked child's end it did not trap.
            ExitReason::Shutdown | ExitReason::Killed | ExitReason::DeadlineExceeded => {}
            ExitReason::Custom(text) if text.len() <= 4096 => {}
            // The calls without an error channel trap past their bounds, naming them.
            ExitReason::Crashed(text)
                if text.contains("the policy allows at most")
                    || text.contains("is larger than the 256 allowed") => {}
            other => return Err(format!("the guest ended with {other}")),
        }
        // Nothing it made the host hold outlives it: its children end (they are
        // `trivial`, or linked to it), and so do the memory grants of all of them.
        // Every child's spawn was announced before the guest ended.
        let mut children = Vec::new();
        while let Ok((child, parent)) = self.spawns.try_recv() {
            if parent == Some(pid) {
                children.push(child);
            }
        }
        for child in children {
            tokio::time::timeout(Duration::from_secs(30), rt.watch(child))
                .await
                .map_err(|_| format!("{pid}'s child {child} still runs 30 s after it ended"))?;
        }
        if rt.is_alive(pid) {
            return Err(format!("{pid} is alive after its end was announced"));
        }
        if self.node.granted_memory() != 0 {
            return Err(format!(
                "{} bytes of memory still granted after every guest ended",
                self.node.granted_memory()
            ));
        }
        Ok(())
    }

    /// The report of a guest that ran its program to the end: typed errors with
    /// bounded texts.
    async fn check_report(&mut self, pid: Pid) -> Result<(), String> {
        // The guest may have sent the reporter messages of its own before its report.
        let payload = loop {
            let next = tokio::time::timeout(Duration::from_secs(30), self.reports.recv()).await;
            let Ok(Some(msg)) = next else {
                return Err(format!("no report from {pid} within 30 s"));
            };
            match msg {
                Message::Data(d) if d.tag == REPORT => {
                    let bytes = d.payload.downcast::<Vec<u8>>().unwrap_or_default();
                    if bytes.len() >= 4 {
                        break bytes;
                    }
                }
                _ => {}
            }
        };
        self.calls += u64::from(u32::from_le_bytes(payload[..4].try_into().unwrap()));
        let mut rest = &payload[4..];
        while let Some((&variant, after)) = rest.split_first() {
            let len_bytes: [u8; 4] = after
                .get(..4)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| format!("{pid}'s report is cut short"))?;
            let len = u32::from_le_bytes(len_bytes) as usize;
            let text = after
                .get(4..4 + len)
                .ok_or_else(|| format!("{pid}'s report is cut short"))?;
            rest = &after[4 + len..];
            match variant {
                // Noproc carries no text; every other error says why.
                2 if len == 0 => self.errors[2] += 1,
                0 | 1 | 3 | 4 | 5 if len > 0 && len <= MAX_ERROR_TEXT => {
                    self.errors[usize::from(variant)] += 1;
                }
                _ => {
                    return Err(format!(
                        "an untyped or unbounded error: variant {variant}, {len} bytes: {:?}",
                        String::from_utf8_lossy(text)
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A native process forwarding everything it receives.
fn reporter(rt: &Runtime) -> (Pid, UnboundedReceiver<Message>) {
    let (tx, rx) = unbounded_channel();
    let pid = rt.spawn(move |ctx| async move {
        loop {
            if tx.send(ctx.recv().await).is_err() {
                return;
            }
        }
    });
    (pid, rx)
}
