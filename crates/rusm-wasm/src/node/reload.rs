//! [`WasmNode::reload`] and the rest of the reload API, over the registry and the
//! upgrade protocol of [`crate::upgrade`].

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rusm_otp::Pid;
use tokio::sync::broadcast;

use super::WasmNode;
use crate::error::LoadError;
use crate::kind::ComponentKind;
use crate::registry::LoadedComponent;
use crate::upgrade::{DependencyCycle, ReloadError, ReloadEvent, ReloadEventKind, ReloadReport};

impl WasmNode {
    /// Load a new version of the component `name` and upgrade the processes running it.
    ///
    /// The bytes are compiled and link-checked on a blocking thread; only then does the
    /// new version become current (a name not loaded yet is simply loaded, as version
    /// 1). New spawns use it from then on. Each running actor process of the component
    /// is sent an upgrade request and either hands over its state and continues on the
    /// new version under the same pid (with the same mailbox and links), or is ended
    /// with `upgrade-timeout` after the grace period ([`WasmNode::set_upgrade_grace`])
    /// for its supervisor to restart on the new version. Then the processes of every
    /// component that depends on this one ([`WasmNode::set_dependencies`]) are upgraded
    /// the same way, in dependency order, each onto its own current version. Commands
    /// finish on the version they started with.
    ///
    /// Reloads of one name run one at a time, in the order they were called. Each one
    /// is reported through [`WasmNode::reload_events`]: `Preparing`, then `Reloaded` or
    /// `Failed`, then one event per upgraded or timed-out process.
    ///
    /// # Errors
    /// When the new version does not load ([`ReloadError::Load`]) or is another kind of
    /// component than the live one ([`ReloadError::KindChanged`]). The old version then
    /// stays current and no process is touched.
    ///
    /// # Cancel safety
    /// Dropping the future before it finishes may leave the new version loaded with
    /// only some processes asked to upgrade; those asked still upgrade or time out.
    pub async fn reload(&self, name: &str, bytes: Vec<u8>) -> Result<ReloadReport, ReloadError> {
        let shared = &self.shared.backend;
        let lock = Arc::clone(
            shared
                .upgrades
                .reload_locks
                .lock()
                .entry(name.to_owned())
                .or_default(),
        );
        let _serial = lock.lock().await;
        let live_version = shared.registry.current_version(name);
        shared.upgrades.emit(ReloadEvent {
            component: name.to_owned(),
            version: live_version,
            kind: ReloadEventKind::Preparing,
        });
        let result = match self.compile_off_thread(name, bytes).await {
            Ok(loaded) => shared.registry.install(loaded, |old, new| match old {
                Some(old) if old.kind != new.kind => Err(ReloadError::KindChanged {
                    component: name.to_owned(),
                    from: old.kind,
                    to: new.kind,
                }),
                Some(old)
                    if old.kind == ComponentKind::Http
                        && old.http_version() != new.http_version() =>
                {
                    Err(ReloadError::HttpVersionChanged {
                        component: name.to_owned(),
                        from: old.http_version(),
                        to: new.http_version(),
                    })
                }
                _ => Ok(()),
            }),
            Err(error) => Err(error),
        };
        let version = match result {
            Ok(version) => version,
            Err(error) => {
                shared.upgrades.emit(ReloadEvent {
                    component: name.to_owned(),
                    version: shared.registry.current_version(name),
                    kind: ReloadEventKind::Failed(error.clone()),
                });
                return Err(error);
            }
        };
        shared.upgrades.emit(ReloadEvent {
            component: name.to_owned(),
            version,
            kind: ReloadEventKind::Reloaded,
        });
        let order = shared.upgrades.dependencies.lock().upgrade_order(name);
        let mut upgrades = Vec::new();
        for component in order {
            let target = shared.registry.current_version(&component);
            upgrades.extend(
                shared
                    .upgrades
                    .upgrade_processes(&shared.rt, &component, target)
                    .await,
            );
        }
        Ok(ReloadReport {
            component: name.to_owned(),
            version,
            upgrades,
        })
    }

    /// [`WasmNode::reload`] from a file.
    ///
    /// # Errors
    /// As [`WasmNode::reload`]; also [`LoadError::Read`] (reported as a failed reload)
    /// when the file cannot be read.
    pub async fn reload_file(&self, name: &str, path: &Path) -> Result<ReloadReport, ReloadError> {
        let owned = path.to_owned();
        let read = tokio::task::spawn_blocking(move || std::fs::read(owned))
            .await
            .unwrap_or_else(|join| Err(std::io::Error::other(join.to_string())));
        let bytes = match read {
            Ok(bytes) => bytes,
            Err(source) => {
                let error = ReloadError::from(LoadError::Read {
                    path: path.to_owned(),
                    source,
                });
                self.shared.backend.upgrades.emit(ReloadEvent {
                    component: name.to_owned(),
                    version: self.shared.backend.registry.current_version(name),
                    kind: ReloadEventKind::Failed(error.clone()),
                });
                return Err(error);
            }
        };
        self.reload(name, bytes).await
    }

    async fn compile_off_thread(
        &self,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<LoadedComponent, ReloadError> {
        let shared = Arc::clone(&self.shared.backend);
        let owned = name.to_owned();
        match tokio::task::spawn_blocking(move || shared.registry.compile(&owned, &bytes, None))
            .await
        {
            Ok(loaded) => Ok(loaded?),
            Err(join) => Err(ReloadError::Aborted {
                component: name.to_owned(),
                detail: join.to_string(),
            }),
        }
    }

    /// Declare that the processes of `component` depend on the components in
    /// `depends_on` (replacing what was declared for it before): reloading any of them
    /// upgrades the processes of `component` after theirs. The names need not be loaded
    /// yet.
    ///
    /// # Errors
    /// [`DependencyCycle`] when the declaration would close a cycle (a component
    /// depending on itself included); the declared graph is then unchanged.
    pub fn set_dependencies<S: AsRef<str>>(
        &self,
        component: &str,
        depends_on: &[S],
    ) -> Result<(), DependencyCycle> {
        let deps = depends_on.iter().map(|d| d.as_ref().to_owned()).collect();
        self.shared
            .backend
            .upgrades
            .dependencies
            .lock()
            .set(component, deps)
    }

    /// The order in which [`WasmNode::reload`] of `component` upgrades processes:
    /// `component` itself, then the components that depend on it, directly or not,
    /// each after its own dependencies (ties by name).
    pub fn upgrade_order(&self, component: &str) -> Vec<String> {
        self.shared
            .backend
            .upgrades
            .dependencies
            .lock()
            .upgrade_order(component)
    }

    /// How long a process gets to hand over its state after an upgrade request before
    /// it is ended with `upgrade-timeout` (default [`DEFAULT_UPGRADE_GRACE`](crate::DEFAULT_UPGRADE_GRACE)). Applies
    /// to requests made from now on.
    pub fn set_upgrade_grace(&self, grace: Duration) {
        *self.shared.backend.upgrades.grace.lock() = grace;
    }

    /// Subscribe to the events of every reload and upgrade from now on.
    pub fn reload_events(&self) -> broadcast::Receiver<ReloadEvent> {
        self.shared.backend.upgrades.events.subscribe()
    }

    /// The current version of a component (0 when no component of that name is
    /// loaded). [`WasmNode::load_file`], [`WasmNode::load_bytes`] and a successful
    /// [`WasmNode::reload`] each make a new version.
    pub fn component_version(&self, name: &str) -> u64 {
        self.shared.backend.registry.current_version(name)
    }

    /// The running actor processes of a component, with the version each runs, sorted
    /// by pid.
    pub fn processes_of(&self, component: &str) -> Vec<(Pid, u64)> {
        self.shared.backend.upgrades.processes_of(component)
    }
}
