#!/usr/bin/env bash
# Runs a fuzz target for a bounded time (default: the policy parser's, for 45
# seconds) and exits non-zero if it finds an input that crashes or fails a property.
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`). Works on stable Rust:
# no sanitizer (AddressSanitizer needs nightly, and the code under test is safe
# Rust), coverage-guided through libFuzzer's own instrumentation.
#
# Usage: fuzz/run.sh [SECONDS] [TARGET]   (TARGET: policy_parse or runtime_calls)
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-45}"
target="${2:-policy_parse}"
case "$target" in
policy_parse)
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
    ;;
runtime_calls)
    # Each input is a program for the runtime-fuzz guest, run on a real node; a
    # program ends within its policy's 3 s deadline.
    cargo fuzz run --sanitizer none --features runtime runtime_calls \
        fuzz/corpus/runtime_calls \
        -- \
        -max_total_time="$seconds" \
        -max_len=4096 \
        -timeout=60 \
        -print_final_stats=1
    ;;
*)
    echo "unknown fuzz target $target (policy_parse or runtime_calls)" >&2
    exit 2
    ;;
esac
