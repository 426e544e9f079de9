# Common commands; each is also a plain cargo command (see README.md).

# Run the demo app: a supervised counter actor, an HTTP actor that talks to it on
# 127.0.0.1, a crashing actor its supervisor restarts, each under its own policy.
demo:
    cargo run --release -p rusm-cli -- run apps/demo/app.toml

# The same demo written against the libraries directly (no HTTP).
demo-lib:
    cargo run --release -p rusm-e2e --example demo

# The embedding example: a host calling its own plugins (see docs/embedding.md).
plugin-demo:
    cargo build --release --target wasm32-wasip2 --manifest-path components/Cargo.toml -p plugin-greeter -p plugin-greeter-v2 -p plugin-looper
    cargo run -p plugin-host -- components/target/wasm32-wasip2/release/plugin_greeter.wasm components/target/wasm32-wasip2/release/plugin_looper.wasm components/target/wasm32-wasip2/release/plugin_greeter_v2.wasm

# Run the whole test suite.
test:
    cargo test --workspace

# Everything CI checks.
ci:
    bash .ci/run

# Run a benchmark scenario (or `all`).
bench scenario="all":
    cargo run --release -p rusm-bench -- {{scenario}}

# Fuzz a target (policy_parse or runtime_calls) for a while (seconds); needs `cargo install cargo-fuzz`.
fuzz seconds="60" target="policy_parse":
    bash fuzz/run.sh {{seconds}} {{target}}
