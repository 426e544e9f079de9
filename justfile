# Common commands; each is also a plain cargo command (see README.md).

# Run the demo: a supervised counter actor, a crashing actor its supervisor restarts.
demo:
    cargo run --release -p rusm-e2e --example demo

# Run the whole test suite.
test:
    cargo test --workspace

# Everything CI checks.
ci:
    bash .ci/run

# Run a benchmark scenario (or `all`).
bench scenario="all":
    cargo run --release -p rusm-bench -- {{scenario}}
