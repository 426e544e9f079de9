#!/usr/bin/env bash
# Runs the policy parser's fuzz target for a bounded time (default 45 seconds)
# and exits non-zero if it finds an input that crashes or fails a property.
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`). Works on stable Rust:
# no sanitizer (AddressSanitizer needs nightly, and the parser is safe code),
# coverage-guided through libFuzzer's own instrumentation.
#
# Usage: fuzz/run.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-45}"
# The first corpus directory gets what the run finds (ignored by git, except the
# committed seed-* files); the policy library and the golden error cases are
# read as further seeds, so new example policies seed the fuzzer too.
cargo fuzz run --sanitizer none policy_parse \
    fuzz/corpus/policy_parse capabilities crates/rusm-policy/tests/golden \
    -- \
    -dict=fuzz/policy.dict \
    -max_total_time="$seconds" \
    -max_len=4096 \
    -timeout=10 \
    -print_final_stats=1
