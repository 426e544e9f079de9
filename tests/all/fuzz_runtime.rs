//! Fuzzing the `rusm:runtime` host functions on every test run: the shared harness
//! (`tests/fuzz/harness.rs`, also behind the libFuzzer target
//! `fuzz/fuzz_targets/runtime_calls.rs`) fed with programs from a seeded generator,
//! so every run checks the same few hundred programs.

#[path = "../fuzz/harness.rs"]
mod harness;

use harness::Harness;

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
    let loaded = [crate::components::RUNTIME_FUZZ, crate::components::TRIVIAL];
    // The libFuzzer target loads the same components by these names.
    assert_eq!(harness::COMPONENTS, loaded.map(|c| c.name()));
    let mut harness = Harness::new(crate::node(&loaded));
    // The libFuzzer target's committed seeds first.
    let seeds = rusm_e2e::components_dir().join("../fuzz/corpus/runtime_calls");
    let mut seeded = 0;
    for entry in std::fs::read_dir(&seeds).expect("the fuzz seeds are there") {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("seed-")
        {
            let program = std::fs::read(&path).unwrap();
            if let Err(why) = harness.check_program(&program).await {
                panic!("seed {}: {why}", path.display());
            }
            seeded += 1;
        }
    }
    assert!(seeded >= 2, "{seeded} seeds in {}", seeds.display());
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
