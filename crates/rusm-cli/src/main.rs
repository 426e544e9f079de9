//! The `rusm` command: run apps and components, serve HTTP components, check and
//! explain policies, inspect components and scaffold guest actors.
//!
//! Every command prints `--help`. Bad input (a missing file, bad TOML, a bad policy, a
//! `.wasm` that is not a component, a port in use) is reported as one line on stderr,
//! `rusm: error: ...`, with exit code 2; a run that fails (an actor ending abnormally,
//! a root supervisor giving up, a failed client step) exits with 1; a WASI command's
//! own exit code is passed through.

// First, so that its `out!`, `outln!` and `note!` are in scope in every module.
#[macro_use]
mod output;

mod app;
mod build;
mod cluster;
mod component;
mod grants;
mod http;
mod inspect;
mod kv;
mod lifecycle;
mod manifest;
mod metrics;
mod operator;
mod scaffold;
mod watch;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use rusm_otp::Runtime;
use rusm_wasm::{WasmConfig, WasmNode};

/// rusm: Erlang/OTP-style actors where every actor is a WebAssembly component.
#[derive(Parser)]
#[command(name = "rusm", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run an app manifest (APP.toml) or one component (COMPONENT.wasm).
    ///
    /// With an app manifest: build and load its components, start its supervision tree
    /// and HTTP listeners, run its client steps, and stop when they are done (or on
    /// Ctrl-C when it has none, or with --keep-running). Exits with 1 when the root
    /// supervisor gives up or a step fails.
    ///
    /// With a component: run it as one process under --policy (the default policy
    /// otherwise) and exit with 0 when it ends normally. A plain WASI command (one
    /// exporting wasi:cli/run) gets ARGS as its arguments and its exit code becomes
    /// rusm's.
    Run(RunArgs),
    /// Serve one HTTP component (exporting wasi:http/incoming-handler) on an address.
    Serve(ServeArgs),
    /// Check or explain a capability policy file.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Show a component's kind, imports and exports, and which imports a policy denies.
    Inspect(InspectArgs),
    /// Create a new guest actor crate, ready to build and run.
    New(NewArgs),
    /// Read and write a node's key-value database (wasi:keyvalue buckets): through the
    /// node running on it, or in the file when none does.
    Kv(kv::KvArgs),
    /// Look at a cluster of nodes joined through NATS.
    #[command(subcommand)]
    Cluster(ClusterCommand),
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// List the live nodes of a cluster, by listening to their heartbeats.
    Status {
        /// The NATS server (for example nats://127.0.0.1:4222).
        #[arg(long, value_name = "URL")]
        url: String,
        /// The cluster's name.
        #[arg(long, value_name = "NAME", default_value = rusm_cluster::DEFAULT_CLUSTER)]
        cluster_name: String,
        /// How long to listen (heartbeats come every half second by default).
        #[arg(long, value_name = "DURATION", default_value = "1200ms")]
        wait: String,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// The app manifest (.toml) or component (.wasm) to run.
    target: PathBuf,
    /// The policy the component runs under (components only; an app names its
    /// policies in its manifest).
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Init data for an actor, as UTF-8 text (components only).
    #[arg(long, value_name = "TEXT", conflicts_with = "init_hex")]
    init: Option<String>,
    /// Init data for an actor, as hexadecimal bytes (components only).
    #[arg(long, value_name = "HEX")]
    init_hex: Option<String>,
    /// Serve Prometheus metrics on this address (for example 127.0.0.1:9100).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// Keep the app running after its client steps, until Ctrl-C (apps only).
    #[arg(long)]
    keep_running: bool,
    /// Serve the app's HTTP listener on this address instead of its manifest's
    /// `listen` (apps with one listener only; port 0 takes a free port, shown in the
    /// log).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Reload a component when its code changes, upgrading its running processes in
    /// place (apps only): a path component's .wasm file, or a build component's
    /// Cargo.toml and src/ (rebuilt with cargo).
    #[arg(long)]
    watch: bool,
    /// Grants for this run on top of the policy (components only).
    #[command(flatten)]
    grants: grants::GrantArgs,
    /// The cluster to join.
    #[command(flatten)]
    cluster: cluster::ClusterArgs,
    /// Arguments for a WASI command component (after --); they replace the policy's
    /// [env] args, after the program name.
    #[arg(last = true, value_name = "ARGS")]
    args: Vec<String>,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// The HTTP component (.wasm) to serve.
    component: PathBuf,
    /// The address to listen on, such as 127.0.0.1:8080.
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    /// The policy each request's process runs under (the default policy otherwise).
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Serve Prometheus metrics on this address (for example 127.0.0.1:9100).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// Grants for each request's process on top of the policy.
    #[command(flatten)]
    grants: grants::GrantArgs,
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Check a policy file, and that each preopened host directory exists with no
    /// symbolic link on its path; prints "ok" or the first error with its line and column.
    Check {
        /// The policy file.
        file: PathBuf,
    },
    /// Explain a policy file in plain words, one line per grant or denied area.
    Explain {
        /// The policy file.
        file: PathBuf,
    },
}

#[derive(clap::Args)]
struct InspectArgs {
    /// The component (.wasm) to inspect.
    component: PathBuf,
    /// The policy to check its imports against (the default policy otherwise).
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
}

#[derive(clap::Args)]
struct NewArgs {
    /// The crate's name (letters, digits, - and _), also its directory.
    name: String,
    /// Create it inside this directory (the current one by default).
    #[arg(long, value_name = "DIR", default_value = ".")]
    dir: PathBuf,
    /// The rusm-guest crate to depend on (this rusm's own sources by default).
    #[arg(long, value_name = "DIR")]
    guest: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Run(args) => run(args),
        Command::Cluster(command) => cluster_command(command),
        Command::Serve(args) => component::serve(component::ServeOptions {
            component: args.component,
            listen: args.listen,
            policy: args.policy,
            metrics: args.metrics,
            grants: args.grants,
        }),
        Command::Policy(PolicyCommand::Check { file }) => load_checked_policy(&file).map(|_| {
            outln!("{}: ok", file.display());
            ExitCode::SUCCESS
        }),
        Command::Policy(PolicyCommand::Explain { file }) => load_policy(&file).map(|policy| {
            out!("{}", policy.explain());
            ExitCode::SUCCESS
        }),
        Command::Inspect(args) => inspect::inspect(&args.component, args.policy.as_deref()),
        Command::New(args) => scaffold::new_crate(&args.name, &args.dir, args.guest.as_deref()),
        Command::Kv(command) => kv::run(command),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            note!("rusm: error: {}", one_line(&format!("{e:#}")));
            ExitCode::from(2)
        }
    }
}

fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let is_app = args
        .target
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("toml"));
    if is_app {
        let component_only = [
            (args.policy.is_some(), "--policy"),
            (args.init.is_some(), "--init"),
            (args.init_hex.is_some(), "--init-hex"),
            (!args.args.is_empty(), "arguments after --"),
            (!args.grants.dirs.is_empty(), "--dir"),
            (!args.grants.env.is_empty(), "--env"),
            (!args.grants.wasi.is_empty(), "-S"),
            (args.grants.inherit_network, "--inherit-network"),
            (args.grants.wall_clock, "--wall-clock"),
            (args.grants.monotonic_clock, "--monotonic-clock"),
        ];
        if let Some((_, what)) = component_only.iter().find(|(given, _)| *given) {
            anyhow::bail!(
                "{what} applies to a single component, not to an app manifest; set init data and policies in {}",
                args.target.display()
            );
        }
        return app::run(
            &args.target,
            app::AppOptions {
                metrics: args.metrics,
                keep_running: args.keep_running,
                watch: args.watch,
                listen: args.listen,
                cluster: args.cluster,
            },
        );
    }
    if args.keep_running || args.watch || args.listen.is_some() {
        anyhow::bail!(
            "--keep-running, --watch and --listen apply to app manifests (.toml) only; \
             `rusm serve` serves one component on an address"
        );
    }
    let init = match (args.init, args.init_hex) {
        (Some(text), _) => text.into_bytes(),
        (None, Some(hex)) => parse_hex(&hex)?,
        (None, None) => Vec::new(),
    };
    component::run(component::RunOptions {
        component: args.target,
        policy: args.policy,
        init,
        args: args.args,
        metrics: args.metrics,
        grants: args.grants,
        cluster: args.cluster.config(None)?,
    })
}

fn cluster_command(command: ClusterCommand) -> anyhow::Result<ExitCode> {
    match command {
        ClusterCommand::Status {
            url,
            cluster_name,
            wait,
        } => {
            let wait =
                rusm_policy::parse_duration(&wait).map_err(|e| anyhow::anyhow!("--wait: {e}"))?;
            cluster::status(&url, &cluster_name, wait)
        }
    }
}

fn parse_hex(text: &str) -> anyhow::Result<Vec<u8>> {
    let digits: Vec<char> = text.chars().filter(|c| !c.is_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        anyhow::bail!("--init-hex needs an even number of hexadecimal digits");
    }
    digits
        .chunks(2)
        .map(|pair| {
            let s: String = pair.iter().collect();
            u8::from_str_radix(&s, 16)
                .map_err(|_| anyhow::anyhow!("--init-hex: {s:?} is not a hexadecimal byte"))
        })
        .collect()
}

/// Read and validate a policy file; the error is one line with file, line and column.
fn load_policy(file: &std::path::Path) -> anyhow::Result<rusm_policy::Policy> {
    rusm_policy::Policy::from_file(file).map_err(|e| match e {
        rusm_policy::PolicyError::Read { path, source } => anyhow::anyhow!(
            "cannot read policy file {}: {source}; check the path",
            path.display()
        ),
        other => anyhow::anyhow!("{other}"),
    })
}

/// [`load_policy`], also refusing a preopen whose host directory is missing or
/// reached through a symbolic link (the runtime would refuse to open it).
fn load_checked_policy(file: &std::path::Path) -> anyhow::Result<rusm_policy::Policy> {
    let policy = load_policy(file)?;
    policy.fs.check_host_paths()?;
    Ok(policy)
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "warn,rusm::=info".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_timer(tracing_subscriber::fmt::time::uptime())
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        // A closed stderr drops log lines (and the subscriber must not report that on
        // the same stderr); see `output`.
        .with_writer(output::LogWriter)
        .log_internal_errors(false)
        .init();
}

/// The tokio runtime every command runs on.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// A wasm node on `rt`, with a compiled-code cache under the user's cache directory
/// when there is one.
/// Listen for Ctrl-C (`SIGINT`) from now on: the handler is installed before this
/// returns, so a signal that comes before the future is first polled (right after a
/// "press Ctrl-C" line, say) is not lost, nor ends the process.
///
/// # Errors
/// When the signal handler cannot be installed.
fn ctrl_c() -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    let mut interrupts = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("cannot listen for Ctrl-C")?;
    Ok(async move {
        if interrupts.recv().await.is_none() {
            // No more signals can come: never report a Ctrl-C.
            std::future::pending::<()>().await;
        }
    })
}

fn new_node(rt: &Runtime) -> anyhow::Result<WasmNode> {
    new_node_with(rt, WasmConfig::default())
}

/// [`new_node`] with `config` (an app manifest's `[node]` settings) instead of the
/// defaults; the compiled-code cache is set the same way.
fn new_node_with(rt: &Runtime, config: WasmConfig) -> anyhow::Result<WasmNode> {
    let cache_dir = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .map(|dir| dir.join("rusm").join("wasmtime"))
        .filter(|dir| std::fs::create_dir_all(dir).is_ok());
    let config = WasmConfig {
        cache_dir,
        ..config
    };
    WasmNode::new(rt.clone(), config).context("cannot start the wasm engine")
}

/// `text` on one line: line breaks become `; `.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Why binding failed, with what to do about it.
fn bind_error_hint(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => {
            format!("{e}; another program uses that port: stop it or choose another port")
        }
        std::io::ErrorKind::AddrNotAvailable => {
            format!("{e}; the address is not one of this machine's: use 127.0.0.1 or 0.0.0.0")
        }
        std::io::ErrorKind::PermissionDenied => {
            format!("{e}; ports below 1024 need privileges: choose a port above 1024")
        }
        _ => e.to_string(),
    }
}
