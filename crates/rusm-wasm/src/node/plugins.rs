//! The plugin entry points of [`WasmNode`]: loading plugins, starting them as
//! processes of [`crate::kinds::plugin`], and supervised plugins.

use std::sync::Arc;

use rusm_otp::supervisor::ChildSpec;
use rusm_otp::{Context, ExitReason};
use tokio::sync::watch;

use super::{NodeShared, WasmNode};
use crate::error::{LoadError, SpawnError};
use crate::kind::ComponentKind;
use crate::kinds::{
    self,
    plugin::{BindFn, Plugin, PluginError, PluginOptions, SupervisedPlugin},
};
use crate::registry::ComponentInfo;

impl WasmNode {
    /// Compile a plugin component and register it under `name`: a component that
    /// exports the embedder's own interface rather than an entry point. Its imports
    /// are checked against the node's linker (WASI, `rusm:runtime` and the embedder's
    /// host functions, see [`WasmNode::with_linker`]). A later [`WasmNode::reload`] of
    /// the name loads the new version as a plugin too.
    ///
    /// # Errors
    /// As [`WasmNode::load_bytes`], except that no entry point is needed.
    pub fn load_plugin_bytes(&self, name: &str, bytes: &[u8]) -> Result<ComponentInfo, LoadError> {
        let registry = &self.shared.backend.registry;
        let loaded = registry.compile(name, bytes, Some(ComponentKind::Plugin))?;
        let version = registry.install(loaded, |_, _| Ok::<(), LoadError>(()))?;
        tracing::info!(component = name, version, "plugin loaded");
        Ok(ComponentInfo {
            name: name.to_owned(),
            kind: ComponentKind::Plugin,
        })
    }

    /// [`WasmNode::load_plugin_bytes`] from a file.
    ///
    /// # Errors
    /// As [`WasmNode::load_plugin_bytes`]; also when the file cannot be read.
    pub fn load_plugin_file(
        &self,
        name: &str,
        path: &std::path::Path,
    ) -> Result<ComponentInfo, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        self.load_plugin_bytes(name, &bytes)
    }

    /// Start the loaded plugin `component` as a new process (no parent) and make its
    /// first instance, with `bind` making the typed bindings of each instance.
    ///
    /// # Errors
    /// [`PluginError::Spawn`] when no component of that name is loaded, it is not a
    /// plugin, or the node cannot honour the policy; [`PluginError::Start`] when the
    /// process started but its instance could not (the process has then ended).
    pub async fn spawn_plugin<B: Send + 'static>(
        &self,
        component: &str,
        options: PluginOptions,
        bind: BindFn<B>,
    ) -> Result<Plugin<B>, PluginError> {
        let (plugin, started) = self.begin_plugin(component, options, bind)?;
        started.await?;
        Ok(plugin)
    }

    /// Start the plugin's process at once and hand back its handle, with the future
    /// that makes its first instance (and ends the process if that fails).
    fn begin_plugin<B: Send + 'static>(
        &self,
        component: &str,
        options: PluginOptions,
        bind: BindFn<B>,
    ) -> Result<
        (
            Plugin<B>,
            impl Future<Output = Result<(), PluginError>> + Send + 'static,
        ),
        PluginError,
    > {
        let node = &self.shared;
        let loaded = node.backend.registry.component(component)?;
        if loaded.kind != ComponentKind::Plugin {
            return Err(SpawnError::NotPlugin(component.to_owned()).into());
        }
        let policy = options.policy.unwrap_or_else(|| node.default_policy());
        let granted = node.grant(policy, None)?;
        super::check_counts(&loaded, &granted.limits)?;
        let core =
            NodeShared::core_options(&loaded, &granted, options.mailbox, false, false, false);
        let (plugin, started) = kinds::plugin::begin(
            &node.backend,
            loaded,
            granted,
            core,
            options.deadline,
            options.interrupted,
            options.extensions,
            bind,
        );
        Ok((plugin, started))
    }

    /// A plugin kept running by a rusm supervisor: the [`ChildSpec`] to put in a
    /// [`SupervisorSpec`](rusm_otp::supervisor::SupervisorSpec), and the
    /// [`SupervisedPlugin`] handle through which calls reach whichever instance the
    /// supervisor last started.
    ///
    /// Each start spawns a new plugin process with `options()` (so a restarted plugin
    /// has a new pid and starts from a fresh instance) and makes its instance in the
    /// background; an instance that cannot be made ends the process, which the
    /// supervisor sees like any other exit. Restart type, intensity and shutdown are the
    /// supervisor's, as for a native child. A crash in a call is returned to its caller
    /// as [`PluginError::Crashed`] and restarts the plugin; calls made after that wait
    /// for the new instance.
    pub fn plugin_child<B, O>(
        &self,
        id: impl Into<String>,
        component: &str,
        options: O,
        bind: BindFn<B>,
    ) -> (ChildSpec, SupervisedPlugin<B>)
    where
        B: Send + 'static,
        O: Fn() -> PluginOptions + Send + Sync + 'static,
    {
        let (current, receiver) = watch::channel(None::<Plugin<B>>);
        let node = self.clone();
        let component: Arc<str> = component.into();
        let spec_component = Arc::clone(&component);
        let spec = ChildSpec::new(id, move |_supervisor: &Context| {
            let (plugin, started) = node
                .begin_plugin(&component, options(), bind)
                .map_err(|err| ExitReason::crashed(err.to_string()))?;
            let pid = plugin.pid();
            let current = current.clone();
            node.runtime().handle().spawn(async move {
                match started.await {
                    Ok(()) => {
                        current.send_replace(Some(plugin));
                    }
                    Err(err) => tracing::warn!(%pid, "supervised plugin did not start: {err}"),
                }
            });
            Ok(pid)
        });
        let component = spec_component;
        (spec, SupervisedPlugin::new(component, receiver))
    }
}
