//! `rusm run APP.toml`: build and load the components, start the supervision tree and
//! the HTTP listeners, run the client steps, and stop gracefully.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context as _, bail};
use rusm_otp::supervisor::{ChildSpec, INIT_DONE_TAG, SupervisorSpec, supervise};
use rusm_otp::{Context, Event, ExitReason, Message, Pid, Runtime, SpawnOptions};
use rusm_wasm::{WasmNode, WasmSpawnOptions};
use tokio::sync::{Notify, oneshot};

use crate::manifest::{ChildKind, Manifest, Source, Step, SupervisorDecl};
use crate::{build, http, lifecycle, metrics};

/// How long the node gives processes to stop at shutdown.
const GRACE: Duration = Duration::from_secs(5);
/// How long a step waits for something to happen before it fails.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// Options of `rusm run APP.toml`.
#[derive(Debug, Clone, Default)]
pub struct AppOptions {
    /// Serve metrics here.
    pub metrics: Option<SocketAddr>,
    /// Keep running after the steps, until Ctrl-C.
    pub keep_running: bool,
    /// Reload components when their code changes.
    pub watch: bool,
    /// Serve the one listener here instead of at its manifest's address.
    pub listen: Option<SocketAddr>,
    /// The cluster flags, over the manifest's `[cluster]`.
    pub cluster: crate::cluster::ClusterArgs,
}

/// Run the app of manifest `file`.
///
/// # Errors
/// Bad input (manifest, policies, components, addresses), reported before anything
/// runs.
pub fn run(file: &Path, options: AppOptions) -> anyhow::Result<ExitCode> {
    let mut manifest = crate::manifest::load(file)?;
    if let Some(addr) = options.listen {
        let [listener] = &mut manifest.listeners[..] else {
            bail!(
                "--listen replaces the address of an app's one HTTP listener, and {} has {} `[[listeners]]`",
                file.display(),
                manifest.listeners.len()
            );
        };
        listener.listen = addr;
    }
    let files = prepare_components(&manifest)?;
    crate::runtime()?.block_on(run_app(manifest, files, options))
}

/// The `.wasm` file of every component, building cargo packages first.
fn prepare_components(manifest: &Manifest) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    let mut files = BTreeMap::new();
    let mut target_checked = false;
    for (name, component) in &manifest.components {
        let file = match &component.source {
            Source::Wasm(path) => path.clone(),
            Source::Cargo(dir) => {
                if !target_checked {
                    build::ensure_target()?;
                    target_checked = true;
                }
                note!(
                    "rusm: building component {name} from {} (cargo build --release --target {})",
                    dir.display(),
                    build::TARGET
                );
                build::build_package(dir).with_context(|| format!("component {name:?}"))?
            }
        };
        files.insert(name.clone(), file);
    }
    Ok(files)
}

/// The current pid of every child of the tree, by path (`counter`, `crashers/crasher`),
/// and how the last one ended.
#[derive(Default)]
pub(crate) struct Tree {
    state: Mutex<HashMap<String, ChildState>>,
    changed: Notify,
    /// Told of every registration and every exit on the node (`Tree::observe_names`).
    names: Notify,
}

#[derive(Clone)]
struct ChildState {
    pid: Pid,
    ended: Option<ExitReason>,
}

impl Tree {
    fn started(self: &Arc<Self>, rt: &Runtime, path: &str, pid: Pid) {
        self.lock()
            .insert(path.to_owned(), ChildState { pid, ended: None });
        self.changed.notify_waiters();
        let tree = self.clone();
        let path = path.to_owned();
        let ended = rt.watch(pid);
        tokio::spawn(async move {
            let reason = ended.await;
            if let Some(state) = tree.lock().get_mut(&path)
                && state.pid == pid
            {
                state.ended = Some(reason);
            }
            tree.changed.notify_waiters();
        });
    }

    /// Wake [`Tree::wait_for_names`] at every registration and exit on `rt`.
    fn observe_names(self: &Arc<Self>, rt: &Runtime) {
        let tree = Arc::downgrade(self);
        rt.add_observer(move |event| {
            if matches!(event, Event::Registered { .. } | Event::Exited { .. })
                && let Some(tree) = tree.upgrade()
            {
                tree.names.notify_waiters();
            }
        });
    }

    /// Wait until `done` holds, checking it again at each registration and exit, up
    /// to `limit`; whether it held.
    async fn wait_for_names(&self, limit: Duration, mut done: impl FnMut() -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.names.notified();
            if done() {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return false;
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ChildState>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn get(&self, path: &str) -> Option<ChildState> {
        self.lock().get(path).cloned()
    }

    /// Wait until `done` holds for the child at `path`, up to `limit`.
    async fn wait_for(
        &self,
        path: &str,
        limit: Duration,
        mut done: impl FnMut(Option<&ChildState>) -> bool,
    ) -> Option<ChildState> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.changed.notified();
            let state = self.get(path);
            if done(state.as_ref()) {
                return state;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }
}

/// The supervisor spec of `decl`, whose children start `node`'s components.
fn supervisor_spec(
    node: &WasmNode,
    manifest: &Manifest,
    decl: &SupervisorDecl,
    prefix: &str,
    tree: &Arc<Tree>,
) -> SupervisorSpec {
    let mut spec = SupervisorSpec::new(decl.strategy).intensity(decl.max_restarts, decl.period);
    for child in &decl.children {
        let path = format!("{prefix}{}", child.id);
        let tree = tree.clone();
        let mut child_spec = match &child.kind {
            ChildKind::Worker {
                component,
                init,
                nodes,
            } if !nodes.is_empty() => remote_child(&child.id, component, init, nodes),
            ChildKind::Worker {
                component, init, ..
            } => {
                let node = node.clone();
                let component = component.clone();
                let init = init.clone();
                let policy = manifest.components[&component].policy.clone();
                ChildSpec::new(child.id.clone(), move |ctx: &Context| {
                    let options = WasmSpawnOptions {
                        init: init.clone(),
                        link: true,
                        policy: Some(policy.clone()),
                        ..WasmSpawnOptions::default()
                    };
                    let pid = node
                        .spawn_with(Some(ctx), &component, options)
                        .map_err(|e| ExitReason::custom(e.to_string()))?
                        .pid;
                    tree.started(ctx.runtime(), &path, pid);
                    Ok(pid)
                })
            }
            ChildKind::Supervisor(inner) => {
                let inner_spec = supervisor_spec(node, manifest, inner, &format!("{path}/"), &tree);
                let label: Arc<str> = format!("supervisor {}", inner.id).into();
                let mut spec = ChildSpec::new(child.id.clone(), move |ctx: &Context| {
                    let inner_spec = inner_spec.clone();
                    let options = SpawnOptions {
                        link: true,
                        label: Some(label.clone()),
                        ..SpawnOptions::default()
                    };
                    let pid = ctx
                        .spawn_with(options, move |c| supervise(c, inner_spec))
                        .pid;
                    tree.started(ctx.runtime(), &path, pid);
                    Ok(pid)
                });
                // Like `ChildSpec::supervisor`: started once all its own children are.
                spec.await_init = Some(Duration::from_secs(60));
                spec
            }
        };
        child_spec = child_spec.restart(child.restart).shutdown(child.shutdown);
        spec = spec.child(child_spec);
    }
    spec
}

/// A worker started on the first of `nodes` that takes it (a spawn through the
/// cluster, by component name: the receiving node runs its own component of that
/// name under the policy its own manifest gives it), linked to its supervisor, so
/// its node going down is a `noconnection` exit its supervisor restarts it after,
/// again on the first node of the list that takes it.
fn remote_child(id: &str, component: &str, init: &[u8], nodes: &[String]) -> ChildSpec {
    let nodes: Arc<[String]> = nodes.into();
    let spawn = rusm_otp::RemoteSpawn {
        component: component.to_owned(),
        init: init.to_vec(),
        link: true,
        ..rusm_otp::RemoteSpawn::default()
    };
    let id = id.to_owned();
    ChildSpec::awaited(id.clone(), move |ctx| {
        let (nodes, spawn, id) = (nodes.clone(), spawn.clone(), id.clone());
        Box::pin(async move {
            let mut refusals = Vec::new();
            for node in nodes.iter() {
                match ctx.spawn_on(node, spawn.clone()).await {
                    Ok(spawned) => {
                        tracing::info!(target: "rusm::app", "started {id} ({}) on node {node} as {}", spawn.component, spawned.pid);
                        return Ok(spawned.pid);
                    }
                    Err(why) => {
                        tracing::warn!(target: "rusm::app", "could not start {id} on node {node}: {why}");
                        refusals.push(format!("{node}: {why}"));
                    }
                }
            }
            Err(ExitReason::custom(format!(
                "no node could start {id} ({})",
                refusals.join("; ")
            )))
        })
    })
}

/// Start the root supervisor under a native `app` process that reports when the tree
/// is up and ends with the root's reason when the root gives up.
fn start_tree(
    rt: &Runtime,
    spec: SupervisorSpec,
) -> (oneshot::Receiver<Result<Pid, ExitReason>>, rusm_otp::Watch) {
    let (ready_tx, ready_rx) = oneshot::channel();
    let options = SpawnOptions {
        trap_exit: true,
        label: Some("app".into()),
        ..SpawnOptions::default()
    };
    let (_app, ended) = rt.spawn_watched(options, move |ctx| async move {
        let root_options = SpawnOptions {
            link: true,
            label: Some("supervisor root".into()),
            ..SpawnOptions::default()
        };
        let root = ctx
            .spawn_with(root_options, move |c| supervise(c, spec))
            .pid;
        let first = ctx
            .recv_match(|m| match m {
                Message::Data(d) => d.tag == INIT_DONE_TAG,
                Message::Exit(_) => true,
                _ => false,
            })
            .await;
        match first {
            Message::Exit(signal) if signal.from == root => {
                let _ = ready_tx.send(Err(signal.reason.clone()));
                return signal.reason;
            }
            Message::Exit(signal) => {
                ctx.exit(root, ExitReason::Shutdown);
                let _ = ready_tx.send(Err(signal.reason.clone()));
                return signal.reason;
            }
            _ => {
                let _ = ready_tx.send(Ok(root));
            }
        }
        loop {
            if let Message::Exit(signal) = ctx.recv().await {
                if signal.from == root {
                    return signal.reason;
                }
                // Node shutdown (or Ctrl-C): stop the tree in order, then end.
                ctx.exit(root, ExitReason::Shutdown);
                loop {
                    if let Message::Exit(s) = ctx.recv().await
                        && s.from == root
                    {
                        return ExitReason::Normal;
                    }
                }
            }
        }
    });
    (ready_rx, ended)
}

async fn run_app(
    manifest: Manifest,
    files: BTreeMap<String, PathBuf>,
    options: AppOptions,
) -> anyhow::Result<ExitCode> {
    // One Ctrl-C listener for the whole run, listening from now on: a signal that
    // comes between the end of the steps and the wait after them is not lost.
    let (interrupt, mut interrupted) = oneshot::channel::<()>();
    let ctrl_c = crate::ctrl_c()?;
    let _ctrl_c = AbortOnDrop(tokio::spawn(async move {
        ctrl_c.await;
        let _ = interrupt.send(());
    }));
    let rt = Runtime::new();
    // Joined before anything is spawned, so every pid of the node names it; kept to
    // the end of the run.
    let cluster_config = options.cluster.config(manifest.cluster.as_ref())?;
    if cluster_config.is_none()
        && let Some(table) = &manifest.cluster
        && let Some(at) = &table.kv_buckets_at
    {
        bail!(
            "{at}: [cluster] kv_buckets shares {} through the cluster, but this node joins \
             no cluster: give url in [cluster] or rusm run --cluster nats://HOST:PORT",
            table.kv_buckets.join(", ")
        );
    }
    let cluster = crate::cluster::join(&rt, cluster_config).await?;
    let mut config = manifest.node.apply(rusm_wasm::WasmConfig::default());
    // Nodes of a cluster started from one manifest each keep their own database.
    if let Some(cluster) = &cluster
        && let Some(path) = manifest.node.kv_path_for(Some(cluster.node_name()))
    {
        config.kv_path = Some(path);
    }
    tracing::info!(
        target: "rusm::app",
        "node: {} allocator, at most {} instances, {}, memory budget {}",
        match config.allocator {
            rusm_wasm::Allocator::Pooling => "pooling",
            _ => "arena",
        },
        config.max_instances(),
        match config.preemption {
            rusm_wasm::Preemption::Slice(slice) => {
                format!("time slice {}", rusm_policy::format_duration(slice))
            }
            rusm_wasm::Preemption::Tick(tick) => {
                format!("epoch tick {}", rusm_policy::format_duration(tick))
            }
        },
        budget_text(config.memory_budget)
    );
    let kv_path = config.kv_path.clone();
    let node = crate::new_node_with(&rt, config)?;
    if let (Some(cluster), Some(table)) = (&cluster, &manifest.cluster)
        && !table.kv_buckets.is_empty()
    {
        crate::cluster::share_buckets(&node, cluster, &table.kv_buckets).await?;
    }
    // `rusm kv` reaches the buckets through this while the node holds the file.
    // Without it (a directory it cannot write, a path too long for a socket) the app
    // still runs; only `rusm kv` cannot reach it, and says so.
    let _operator = match &kv_path {
        Some(db) => match crate::operator::serve(db, node.buckets()) {
            Ok(endpoint) => {
                tracing::info!(
                    target: "rusm::app",
                    "operator socket at {}",
                    endpoint.path().display()
                );
                Some(endpoint)
            }
            Err(e) => {
                tracing::warn!(
                    target: "rusm::app",
                    "no operator socket, so rusm kv cannot reach this node: {e:#}"
                );
                None
            }
        },
        None => None,
    };
    if let Some(library) = &manifest.library {
        node.set_policies(library.clone());
    }
    // What another node of the cluster asks to run by name runs under the policy
    // this manifest gives the component.
    for (name, component) in &manifest.components {
        node.set_component_policy(name, component.policy.clone());
    }
    if cluster.is_none()
        && let Some(child) = remote_worker(&manifest.root)
    {
        bail!(
            "child {child:?} names nodes to run on, but this app joins no cluster; add a [cluster] table or --cluster nats://HOST:PORT"
        );
    }
    // Each is loaded by what it exports; a listener routes to any that exports
    // wasi:http/incoming-handler, so a wasm32-wasip2 binary of the wasi:http/proxy
    // world can be routed to and run as a worker (a command) alike.
    for (name, file) in &files {
        let info = node
            .load_file(name, file)
            .map_err(|e| anyhow::anyhow!(crate::one_line(&e.to_string())))?;
        let component = &manifest.components[name];
        tracing::info!(
            target: "rusm::app",
            "loaded  {name} ({}) from {} under {}",
            crate::component::kind_name(info.kind),
            file.display(),
            component.policy_origin
        );
    }
    check_kinds(&node, &manifest.root)?;
    let quiet: HashSet<String> = manifest
        .listeners
        .iter()
        .flat_map(|l| l.routes.iter().map(|r| r.component.clone()))
        .collect();
    lifecycle::log_lifecycle(&rt, quiet);

    let tree = Arc::new(Tree::default());
    tree.observe_names(&rt);
    let spec = supervisor_spec(&node, &manifest, &manifest.root, "", &tree);
    let (ready, mut app_ended) = start_tree(&rt, spec);
    match ready.await {
        Ok(Ok(_root)) => {}
        Ok(Err(reason)) => {
            rt.shutdown(GRACE).await;
            note!(
                "rusm: the supervision tree of {} failed to start: {}",
                manifest.name,
                lifecycle::first_line(&reason)
            );
            return Ok(ExitCode::FAILURE);
        }
        Err(_) => bail!("the app process ended before the tree started"),
    }

    let mut servers = Vec::new();
    for listener in &manifest.listeners {
        match http::bind(&node, &manifest, listener).await {
            Ok(server) => servers.push(server),
            Err(e) => {
                for server in servers {
                    http::shutdown(server).await;
                }
                rt.shutdown(GRACE).await;
                return Err(e);
            }
        }
    }
    let _metrics = match options.metrics {
        Some(addr) => {
            let sources = metrics::Sources {
                rt: rt.clone(),
                http: servers.iter().map(http::stats_source).collect(),
            };
            match metrics::serve(addr, sources).await {
                Ok(server) => {
                    tracing::info!(target: "rusm::app", "metrics at http://{}/metrics", server.local_addr());
                    Some(server)
                }
                Err(e) => {
                    for server in servers {
                        http::shutdown(server).await;
                    }
                    rt.shutdown(GRACE).await;
                    return Err(e);
                }
            }
        }
        None => None,
    };
    let addresses: Vec<SocketAddr> = servers.iter().map(http::local_addr).collect();
    for (listener, addr) in manifest.listeners.iter().zip(&addresses) {
        for route in &listener.routes {
            let (what, scheme) = match route.kind {
                rusm_http::RouteKind::WebSocket => ("websocket", "ws"),
                rusm_http::RouteKind::Sse => ("sse", "http"),
                _ => (route.method.as_deref().unwrap_or("*"), "http"),
            };
            tracing::info!(
                target: "rusm::app",
                "serving {what} {scheme}://{addr}{} with {}",
                route.path,
                route.component
            );
        }
    }
    let _watcher = options
        .watch
        .then(|| AbortOnDrop(crate::watch::spawn(node.clone(), &manifest, &files)));
    let stays = manifest.steps.is_empty() || options.keep_running;
    tracing::info!(
        target: "rusm::app",
        "app {} is up{}",
        manifest.name,
        if stays { "; press Ctrl-C to stop" } else { "" }
    );

    // The client steps, then (unless told to stay) the end.
    let steps = {
        let rt = rt.clone();
        let tree = tree.clone();
        let steps = manifest.steps.clone();
        let http_addr = addresses.first().copied();
        async move { run_steps(&rt, &tree, &steps, http_addr).await }
    };
    let mut outcome: Result<(), String> = Ok(());
    let mut root_reason = None;
    tokio::select! {
        result = steps => {
            match result {
                Err(e) => outcome = Err(e),
                Ok(()) if !manifest.steps.is_empty() => {
                    outln!("all {} steps done", manifest.steps.len());
                }
                Ok(()) => {}
            }
            if outcome.is_ok() && stays {
                tokio::select! {
                    _ = &mut interrupted => note!("rusm: Ctrl-C; stopping"),
                    reason = &mut app_ended => root_reason = Some(reason),
                }
            }
        }
        _ = &mut interrupted => note!("rusm: Ctrl-C; stopping"),
        reason = &mut app_ended => root_reason = Some(reason),
    }

    for server in servers {
        http::shutdown(server).await;
    }
    rt.shutdown(GRACE).await;
    // The peers hear that this node leaves, rather than waiting out its silence.
    if let Some(cluster) = cluster {
        cluster.leave().await;
    }
    let stats = rt.stats();
    let exits: Vec<String> = stats
        .exits
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(kind, n)| format!("{n} {kind}"))
        .collect();
    outln!(
        "stopped {}: {} processes spawned, {} restarts; exits: {}",
        manifest.name,
        stats.spawned,
        stats.restarts,
        if exits.is_empty() {
            "none".to_owned()
        } else {
            exits.join(", ")
        }
    );
    if let Some(reason) = root_reason {
        note!(
            "rusm: the root supervisor of {} ended: {}",
            manifest.name,
            lifecycle::first_line(&reason)
        );
        return Ok(ExitCode::FAILURE);
    }
    if let Err(e) = outcome {
        note!("rusm: {e}");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// The id of a worker of the tree that runs on other nodes, if any.
fn remote_worker(sup: &SupervisorDecl) -> Option<&str> {
    sup.children.iter().find_map(|child| match &child.kind {
        ChildKind::Worker { nodes, .. } if !nodes.is_empty() => Some(child.id.as_str()),
        ChildKind::Worker { .. } => None,
        ChildKind::Supervisor(inner) => remote_worker(inner),
    })
}

/// Every worker of the tree must run an actor or a command: HTTP handlers are routed
/// to, not spawned.
fn check_kinds(node: &WasmNode, sup: &SupervisorDecl) -> anyhow::Result<()> {
    for child in &sup.children {
        match &child.kind {
            ChildKind::Worker { component, .. } => {
                if node.component_kind(component) == Some(rusm_wasm::ComponentKind::Http) {
                    bail!(
                        "child {:?} of supervisor {:?} runs {component:?}, an HTTP handler; HTTP handlers serve requests: route to it from a [[listeners]] entry instead",
                        child.id,
                        sup.id
                    );
                }
            }
            ChildKind::Supervisor(inner) => check_kinds(node, inner)?,
        }
    }
    Ok(())
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Run the client steps in order, printing each and what came of it.
async fn run_steps(
    rt: &Runtime,
    tree: &Tree,
    steps: &[Step],
    http_addr: Option<SocketAddr>,
) -> Result<(), String> {
    let total = steps.len();
    for (i, step) in steps.iter().enumerate() {
        let n = i + 1;
        let fail = |what: String| format!("step {n}/{total} ({}) failed: {what}", step.describe());
        match step {
            Step::Say(text) => outln!("[{n}/{total}] {text}"),
            Step::Sleep(d) => {
                outln!("[{n}/{total}] {}", step.describe());
                tokio::time::sleep(*d).await;
            }
            Step::Http {
                method,
                path,
                body,
                expect_status,
                expect_body,
            } => {
                let addr = http_addr.ok_or_else(|| fail("no listener".into()))?;
                let response = http::request(addr, method, path, body.as_deref())
                    .await
                    .map_err(|e| fail(format!("{e:#}")))?;
                outln!(
                    "[{n}/{total}] {} -> {} {}",
                    step.describe(),
                    response.status,
                    response.body.trim()
                );
                if let Some(status) = expect_status
                    && *status != response.status
                {
                    return Err(fail(format!(
                        "expected status {status}, got {}",
                        response.status
                    )));
                }
                if let Some(expected) = expect_body
                    && expected.trim() != response.body.trim()
                {
                    return Err(fail(format!(
                        "expected body {:?}, got {:?}",
                        expected.trim(),
                        response.body.trim()
                    )));
                }
            }
            Step::Exit { child, reason } => {
                outln!("[{n}/{total}] {}", step.describe());
                let Some(state) = tree.get(child).filter(|s| s.ended.is_none()) else {
                    return Err(fail(format!("{child} is not running")));
                };
                let old = state.pid;
                let name = rt.registered_name(old);
                rt.exit(old, ExitReason::custom(reason.clone()));
                let Some(ended) = tree
                    .wait_for(child, STEP_TIMEOUT, |s| {
                        s.is_some_and(|s| s.pid != old || s.ended.is_some())
                    })
                    .await
                else {
                    return Err(fail(format!("{child} {old} did not end")));
                };
                let restarted = if ended.pid == old {
                    tree.wait_for(child, STEP_TIMEOUT, |s| s.is_some_and(|s| s.pid != old))
                        .await
                } else {
                    Some(ended)
                };
                match restarted {
                    Some(new) => {
                        // A restarted server is usable once it has registered its name
                        // again, as the old one had.
                        if let Some(name) = name {
                            tree.wait_for_names(STEP_TIMEOUT, || {
                                rt.whereis(&name) == Some(new.pid) || !rt.is_alive(new.pid)
                            })
                            .await;
                        }
                        outln!(
                            "[{n}/{total}] {child} {old} ended; its supervisor restarted it as {}",
                            new.pid
                        );
                    }
                    None => outln!("[{n}/{total}] {child} {old} ended and was not restarted"),
                }
            }
            Step::AwaitName(name) => {
                outln!("[{n}/{total}] {}", step.describe());
                let mut pid = None;
                tree.wait_for_names(STEP_TIMEOUT, || {
                    pid = rt.whereis(name);
                    pid.is_some()
                })
                .await;
                let Some(pid) = pid else {
                    return Err(fail(format!(
                        "nothing registered {name:?} within {STEP_TIMEOUT:?}"
                    )));
                };
                outln!("[{n}/{total}] {name:?} is {pid}");
            }
            Step::AwaitExit {
                child,
                expect_reason,
            } => {
                outln!("[{n}/{total}] {}", step.describe());
                let Some(state) = tree
                    .wait_for(child, STEP_TIMEOUT, |s| {
                        s.is_some_and(|s| s.ended.is_some())
                    })
                    .await
                else {
                    return Err(fail(format!("{child} did not end within {STEP_TIMEOUT:?}")));
                };
                let reason = state.ended.expect("waited for it to end");
                outln!(
                    "[{n}/{total}] {child} {} ended: {}",
                    state.pid,
                    lifecycle::first_line(&reason)
                );
                if let Some(kind) = expect_reason
                    && reason.kind() != kind
                {
                    return Err(fail(format!(
                        "expected a {kind} exit, got {}",
                        reason.kind()
                    )));
                }
            }
        }
    }
    Ok(())
}

/// A memory budget as the node line shows it: exactly when it is a whole number of
/// some unit (as set in a manifest), else in whole GiB (as derived from the machine).
fn budget_text(bytes: u64) -> String {
    let exact = rusm_policy::format_size(bytes);
    if bytes >= 1 << 30 && exact.ends_with("bytes") {
        format!("about {} GiB", bytes >> 30)
    } else {
        exact
    }
}
