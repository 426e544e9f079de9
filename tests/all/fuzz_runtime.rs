//! Fuzzing the `rusm:runtime` host functions: the `runtime-fuzz` guest reads arbitrary
//! bytes as a program of calls with arbitrary arguments and makes them through the
//! real ABI; [`check_program`] runs one such program on a real node and checks what a
//! user relies on — the host never panics (a host panic would end the guest with a
//! crash the checks reject), every refusal is one of the runtime's typed errors with
//! a bounded text, the guest ends only in the documented ways, and nothing it made the
//! host hold outlives it. The test below feeds it programs from a seeded generator,
//! so every run checks the same few hundred programs.

use std::sync::Arc;
use std::time::Duration;

use rusm_otp::{Event, ExitReason, Pid};
use rusm_policy::Policy;
use rusm_wasm::{WasmNode, WasmSpawnOptions};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::{Probe, pid_bytes, policy, probe};

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
    reports: Probe,
    /// Every spawn on the node: the new pid and its parent.
    spawns: UnboundedReceiver<(Pid, Option<Pid>)>,
    /// Calls made by the guests that ran their programs to the end.
    pub calls: u64,
    /// Refusals seen, by error variant.
    pub errors: [u64; 6],
}

impl Harness {
    pub fn new() -> Harness {
        let node = crate::node(&["runtime-fuzz", "trivial"]);
        let (tx, spawns) = tokio::sync::mpsc::unbounded_channel();
        node.runtime().add_observer(move |event| {
            if let Event::Spawned { pid, parent, .. } = event {
                let _ = tx.send((*pid, *parent));
            }
        });
        let (reporter, reports) = probe(node.runtime());
        Harness {
            node,
            policy: policy(FUZZ_POLICY),
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
        let mut init = pid_bytes(self.reporter);
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
            match self.reports.next().await {
                rusm_otp::Message::Data(d) if d.tag == REPORT => {
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

/// A small, seeded pseudo-random generator (xorshift64*): the same programs on every
/// run, different ones for different seeds.
struct Seeded(u64);

impl Seeded {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A program of up to 48 calls in `runtime-fuzz`'s encoding, with arbitrary
    /// arguments: mostly small (the program's own pids, short names, small payloads and
    /// selectors), sometimes anything.
    fn program(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..self.below(48) {
            let op = self.below(20) as u8;
            out.push(op);
            match op {
                1 => {
                    self.pid(&mut out);
                    self.u64(&mut out);
                    self.size(&mut out);
                }
                2 => {
                    out.push(self.below(4) as u8);
                    self.selector(&mut out);
                }
                3 => self.selector(&mut out),
                4 => {
                    self.pid(&mut out);
                    self.u64(&mut out);
                    self.size(&mut out);
                    out.push(self.below(4) as u8);
                    self.selector(&mut out);
                }
                5 => {
                    let component: &[u8] = match self.below(4) {
                        0 => b"t",
                        1 => b"runtime-fuzz",
                        2 => b"nope",
                        _ => b"tt",
                    };
                    self.name(&mut out, component);
                    out.push(self.next() as u8);
                    out.push(self.next() as u8);
                    let policy: &[u8] = match self.below(4) {
                        0 | 1 => b"",
                        2 => b"self",
                        _ => b"other",
                    };
                    self.name(&mut out, policy);
                    self.size(&mut out);
                }
                6..=8 => self.pid(&mut out),
                12 => self.target(&mut out),
                9 | 17 => {
                    let raw = if self.below(2) == 0 { 0 } else { self.next() };
                    out.extend(raw.to_le_bytes());
                }
                10 => out.push(self.next() as u8),
                11 => {
                    self.target(&mut out);
                    let reason = self.next() as u8;
                    out.push(reason);
                    // Only a custom reason (2) has a text.
                    if reason % 4 == 2 {
                        let text = self.text();
                        self.name(&mut out, &text);
                    }
                }
                13..=15 => {
                    let name = self.text();
                    self.name(&mut out, &name);
                }
                16 => {
                    self.pid(&mut out);
                    self.u64(&mut out);
                    self.size(&mut out);
                    out.push(self.next() as u8);
                }
                18 => self.size(&mut out),
                _ => {}
            }
        }
        out
    }

    fn pid(&mut self, out: &mut Vec<u8>) {
        let choice = self.below(6) as u8;
        out.push(choice);
        match choice {
            3 => out.push(self.next() as u8),
            4 | 5 => {
                // A pid near the node's own (live or recently ended), or anything.
                let raw = if choice == 4 {
                    self.below(64)
                } else {
                    self.next()
                };
                out.extend(raw.to_le_bytes());
            }
            _ => {}
        }
    }

    /// A pid to end: itself only now and then, so most programs run on.
    fn target(&mut self, out: &mut Vec<u8>) {
        if self.below(8) == 0 {
            out.push(0);
        } else {
            let before = out.len();
            while out.len() == before || out[before] == 0 {
                out.truncate(before);
                self.pid(out);
            }
        }
    }

    fn u64(&mut self, out: &mut Vec<u8>) {
        let value = if self.below(2) == 0 {
            self.below(8)
        } else {
            self.next()
        };
        out.extend(value.to_le_bytes());
    }

    fn size(&mut self, out: &mut Vec<u8>) {
        let size = match self.below(8) {
            0 => self.next() as u16,
            1 => 32 * 1024 + self.below(4) as u16 - 2,
            _ => self.below(64) as u16,
        };
        out.extend(size.to_le_bytes());
    }

    fn selector(&mut self, out: &mut Vec<u8>) {
        let count = match self.below(8) {
            0 => self.next() as u8,
            1..=3 => 0,
            _ => self.below(4) as u8,
        };
        out.push(count);
        for _ in 1..count {
            self.u64(out);
        }
        if count > 0 {
            out.push(self.next() as u8);
        }
    }

    /// A name: one the policy lets it register, one it does not, or arbitrary bytes.
    fn text(&mut self) -> Vec<u8> {
        match self.below(5) {
            0 => format!("fuzz-{}", self.below(4)).into_bytes(),
            1 => b"counter".to_vec(),
            2 => Vec::new(),
            3 => (0..self.below(32)).map(|_| self.next() as u8).collect(),
            // Longer than any name may be.
            _ => (0..self.below(2048)).map(|_| self.next() as u8).collect(),
        }
    }

    fn name(&mut self, out: &mut Vec<u8>, name: &[u8]) {
        out.extend(u16::try_from(name.len()).unwrap().to_le_bytes());
        out.extend(name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arbitrary_sequences_of_runtime_calls_never_panic_the_host_and_hold_nothing_after() {
    let mut harness = Harness::new();
    let mut rng = Seeded(0x5eed_0fc0_ffee);
    for round in 0..300 {
        // Well-formed programs, and every tenth one arbitrary bytes throughout.
        let program = if round % 10 == 9 {
            (0..rng.below(400)).map(|_| rng.next() as u8).collect()
        } else {
            rng.program()
        };
        if let Err(why) = harness.check_program(&program).await {
            panic!(
                "program {round} ({} bytes): {why}\nprogram: {program:02x?}",
                program.len()
            );
        }
    }
    // The programs reached the runtime: many calls, and refusals of the kinds a guest
    // can provoke under this policy (not found, not permitted, already registered,
    // invalid; no such process would need the kill right over a dead process).
    assert!(harness.calls > 3_000, "only {} calls made", harness.calls);
    assert!(
        [0, 1, 3, 4].iter().all(|&v| harness.errors[v] > 0),
        "refusals by variant: {:?}",
        harness.errors
    );
}
