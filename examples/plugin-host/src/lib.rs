//! The plugin-host example: an application that loads WebAssembly plugins through
//! rusm and talks to them through its own WIT interface, `myapp:plugin`
//! (`wit/plugin.wit`).
//!
//! Plugins import the application's `host` interface (a log and per-plugin settings)
//! and export `handler` (`describe`, `greet`, `add`, `run`). Each plugin runs under a
//! capability policy, as its own rusm process, and every call into it is bounded by a
//! deadline. `docs/embedding.md` walks through this file.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rusm::wasmtime::component::HasSelf;
use rusm::{CallOptions, Interrupted, Node, PluginError, PluginOptions, Policy};
use tokio::sync::watch;

// Typed bindings for the application's own world, generated against rusm's wasmtime.
rusm::wasmtime::component::bindgen!({
    path: "wit",
    world: "plugin",
    wasmtime_crate: rusm::wasmtime,
    exports: { default: async },
});

/// What plugins have logged, as `<plugin>: <message>` lines, oldest first; its
/// receivers hear of every new line.
pub type Log = Arc<watch::Sender<Vec<String>>>;

/// The host's state for one plugin: what its `host` imports work on. It lives in the
/// plugin's store, set when the plugin starts.
#[derive(Default)]
pub struct PluginHost {
    name: String,
    settings: HashMap<String, String>,
    log: Log,
}

impl myapp::plugin::host::Host for PluginHost {
    fn log(&mut self, message: String) {
        let line = format!("{}: {message}", self.name);
        self.log.send_modify(|lines| lines.push(line));
    }

    fn setting(&mut self, key: String) -> Option<String> {
        self.settings.get(&key).cloned()
    }
}

/// The application: a rusm node whose linker has the `host` interface, and the log
/// its plugins write to.
#[derive(Clone)]
pub struct App {
    node: Node,
    log: Log,
}

impl App {
    /// Build the application's node in the current tokio runtime.
    ///
    /// # Errors
    /// When there is no current tokio runtime or the engine cannot be built.
    pub fn new() -> anyhow::Result<App> {
        let node = Node::builder()
            .time_slice(Duration::from_millis(5))
            .link(|linker| {
                Plugin::add_to_linker::<_, HasSelf<PluginHost>>(linker, |state| {
                    state.extension_mut::<PluginHost>()
                })
            })
            .build()?;
        Ok(App {
            node,
            log: Log::default(),
        })
    }

    /// The rusm node (its runtime, registry and reload).
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Load (or replace) the plugin component `name` from a file.
    ///
    /// # Errors
    /// When the file is not a component or imports something the host lacks.
    pub fn load(&self, name: &str, path: &Path) -> Result<(), rusm::LoadError> {
        self.node.load_plugin_file(name, path).map(|_| ())
    }

    /// Hot-reload the plugin component `name` from a file: calls in flight finish on
    /// the old version, later calls run on the new one. Returns the new version.
    ///
    /// # Errors
    /// When the new version does not load; the old one then stays.
    pub async fn reload(&self, name: &str, path: &Path) -> Result<u64, rusm::ReloadError> {
        Ok(self.node.reload_file(name, path).await?.version)
    }

    /// Start the loaded plugin `name` with these settings, under `policy` (the node's
    /// default policy, which grants nothing, when `None`).
    ///
    /// # Errors
    /// When `name` is not a loaded plugin or its instance cannot start.
    pub async fn start(
        &self,
        name: &str,
        settings: &[(&str, &str)],
        policy: Option<Policy>,
    ) -> Result<PluginHandle, PluginError> {
        let settings = settings
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let options = plugin_options(name, settings, policy.map(Arc::new), self.log.clone());
        let plugin = self
            .node
            .spawn_plugin(name, options, |store, instance| {
                Plugin::new(store, instance)
            })
            .await?;
        Ok(PluginHandle { plugin })
    }

    /// Plugin `name` (default settings and policy) as the child of a supervisor:
    /// the child spec to put in a [`SupervisorSpec`](rusm::supervisor::SupervisorSpec),
    /// and the handle that reaches whichever instance the supervisor last started.
    /// Each restart is a new process (a new pid) on a fresh instance.
    pub fn supervised(&self, name: &str) -> (rusm::supervisor::ChildSpec, SupervisedHandle) {
        let log = self.log.clone();
        let owned = name.to_owned();
        let (spec, plugin) = self.node.plugin_child(
            name,
            name,
            move || plugin_options(&owned, HashMap::new(), None, log.clone()),
            |store, instance| Plugin::new(store, instance),
        );
        (spec, SupervisedHandle { plugin })
    }

    /// Everything the plugins have logged so far.
    pub fn log(&self) -> Vec<String> {
        self.log.borrow().clone()
    }

    /// Waits until what the plugins have logged satisfies `done`, and returns it.
    pub async fn log_until(&self, done: impl FnMut(&Vec<String>) -> bool) -> Vec<String> {
        let mut log = self.log.subscribe();
        let lines = log
            .wait_for(done)
            .await
            .expect("the app holds the log's sender");
        lines.clone()
    }
}

/// How every plugin of the app starts: its own host state (name, settings, the shared
/// log), a 10 s default deadline per call.
fn plugin_options(
    name: &str,
    settings: HashMap<String, String>,
    policy: Option<Arc<Policy>>,
    log: Log,
) -> PluginOptions {
    let host = PluginHost {
        name: name.to_owned(),
        settings,
        log,
    };
    PluginOptions {
        policy,
        extensions: rusm::Extensions::new().with(host),
        deadline: Some(Duration::from_secs(10)),
        ..PluginOptions::default()
    }
}

/// A plugin kept running by a supervisor; see [`App::supervised`].
#[derive(Clone, Debug)]
pub struct SupervisedHandle {
    plugin: rusm::SupervisedPlugin<Plugin>,
}

impl SupervisedHandle {
    /// The running instance, waiting for the supervisor to restart it if it has ended.
    ///
    /// # Errors
    /// When no instance can come any more (the supervisor has ended).
    pub async fn ready(&self) -> Result<PluginHandle, PluginError> {
        Ok(PluginHandle {
            plugin: self.plugin.ready().await?,
        })
    }
}

/// A running plugin, called through the typed `handler` bindings.
#[derive(Clone, Debug)]
pub struct PluginHandle {
    plugin: rusm::Plugin<Plugin>,
}

impl PluginHandle {
    /// The plugin's pid: link to it, monitor it, send to it.
    pub fn pid(&self) -> rusm::Pid {
        self.plugin.pid()
    }

    /// The rusm handle (cancel, kill, stop, exit reason).
    pub fn plugin(&self) -> &rusm::Plugin<Plugin> {
        &self.plugin
    }

    /// The plugin's name and version.
    ///
    /// # Errors
    /// When the call does not return (see [`PluginError`]).
    pub async fn describe(&self) -> Result<String, PluginError> {
        self.plugin
            .call(async |p, store| p.myapp_plugin_handler().call_describe(store).await)
            .await
    }

    /// The plugin's greeting for `name`.
    ///
    /// # Errors
    /// When the call does not return (see [`PluginError`]).
    pub async fn greet(&self, name: &str) -> Result<String, PluginError> {
        self.plugin
            .call(async |p, store| p.myapp_plugin_handler().call_greet(store, name).await)
            .await
    }

    /// `a + b`, computed by the plugin.
    ///
    /// # Errors
    /// When the call does not return (see [`PluginError`]).
    pub async fn add(&self, a: u32, b: u32) -> Result<u32, PluginError> {
        self.plugin
            .call(async |p, store| p.myapp_plugin_handler().call_add(store, a, b).await)
            .await
    }

    /// Run the plugin's job `job` within `deadline`; when the deadline passes the
    /// plugin is ended or kept on a fresh instance, as `interrupted` says.
    ///
    /// # Errors
    /// When the call does not return (see [`PluginError`]); the plugin's own error is
    /// the inner `Err`.
    pub async fn run(
        &self,
        job: &str,
        deadline: Duration,
        interrupted: Interrupted,
    ) -> Result<Result<String, String>, PluginError> {
        let options = CallOptions::deadline(deadline).on_interrupt(interrupted);
        self.plugin
            .call_with(options, async |p, store| {
                p.myapp_plugin_handler().call_run(store, job).await
            })
            .await
    }
}
