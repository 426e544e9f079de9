//! The component registry: every loaded component by name, each compiled once and
//! link-checked into the pre-instantiated form its kind runs from ([`Prepared`]),
//! with its version under its name. No process logic lives here.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p3::bindings::ServicePre;

use crate::bindings::{ActorPre, HandlerActorPre};
use crate::error::{LoadError, SpawnError};
use crate::kind::ComponentKind;
use crate::state::ProcessState;

/// A component compiled and linked for its kind.
pub(crate) enum Prepared {
    Actor(ActorPre<ProcessState>),
    Command(CommandPre<ProcessState>),
    Http(ProxyPre<ProcessState>),
    /// A `wasi:http/handler@0.3` service: one instance serves concurrent requests.
    HttpP3(ServicePre<ProcessState>),
    Handler(HandlerActorPre<ProcessState>),
    Plugin(wasmtime::component::InstancePre<ProcessState>),
}

/// A compiled, link-checked component, ready to instantiate.
pub(crate) struct LoadedComponent {
    /// Shared with the label of every process spawned from it.
    pub(crate) name: Arc<str>,
    pub(crate) kind: ComponentKind,
    pub(crate) prepared: Prepared,
    /// The HTTP handler of a component of another kind that also exports
    /// `wasi:http/incoming-handler` (a command built for the `wasi:http/proxy`
    /// world), so that it serves requests as it is, whatever its kind.
    pub(crate) also_http: Option<ProxyPre<ProcessState>>,
    /// Its version under its name, counted from 1 (0 until it is installed).
    pub(crate) version: u64,
    /// Linear memories its instance creates, all core instances together.
    pub(crate) memories: u32,
    /// Tables its instance creates.
    pub(crate) tables: u32,
}

impl LoadedComponent {
    /// What serves its HTTP requests: its own pre-instantiated form for an HTTP
    /// handler, the handler it also exports for any other kind, `None` when it exports
    /// no `wasi:http/incoming-handler` (a `wasi:http/handler@0.3` service has its
    /// own, [`LoadedComponent::http_service`]).
    pub(crate) fn http_handler(&self) -> Option<&ProxyPre<ProcessState>> {
        match &self.prepared {
            Prepared::Http(pre) => Some(pre),
            _ => self.also_http.as_ref(),
        }
    }

    /// What serves its HTTP requests when it exports `wasi:http/handler@0.3` (and
    /// not the 0.2 `incoming-handler`): one instance serves several at once.
    pub(crate) fn http_service(&self) -> Option<&ServicePre<ProcessState>> {
        match &self.prepared {
            Prepared::HttpP3(pre) => Some(pre),
            _ => None,
        }
    }

    /// The version of `wasi:http` it serves requests through: `0.3` for a service,
    /// `0.2` otherwise.
    pub(crate) fn http_version(&self) -> &'static str {
        if self.http_service().is_some() {
            "0.3"
        } else {
            "0.2"
        }
    }

    /// Whether it serves HTTP requests, through either version of `wasi:http`.
    pub(crate) fn serves_http(&self) -> bool {
        self.http_handler().is_some() || self.http_service().is_some()
    }
}

/// What [`WasmNode::load_bytes`](crate::WasmNode::load_bytes) reports about a component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentInfo {
    /// The name it is registered under.
    pub name: String,
    /// Actor or command.
    pub kind: ComponentKind,
}

/// The loaded components of a node.
pub(crate) struct ComponentRegistry {
    engine: Engine,
    linker: Linker<ProcessState>,
    components: RwLock<HashMap<String, Arc<LoadedComponent>>>,
    /// Bumped by every install of a component version, so a plugin notices a reload
    /// with one atomic load per call.
    installs: AtomicU64,
}

impl ComponentRegistry {
    /// An empty registry whose components link against `linker`.
    pub(crate) fn new(engine: Engine, linker: Linker<ProcessState>) -> ComponentRegistry {
        ComponentRegistry {
            engine,
            linker,
            components: RwLock::new(HashMap::new()),
            installs: AtomicU64::new(0),
        }
    }

    /// The engine components are compiled for.
    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The names of the loaded components, sorted.
    pub(crate) fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.components.read().keys().cloned().collect();
        names.sort();
        names
    }

    /// How many installs there have been (see [`ComponentRegistry::install`]).
    pub(crate) fn installs(&self) -> u64 {
        self.installs.load(Ordering::Acquire)
    }

    /// Make `loaded` the current version of its name, unless `check` (given the live
    /// version, if any, and the new one) refuses it; returns the new version number.
    pub(crate) fn install<E>(
        &self,
        mut loaded: LoadedComponent,
        check: impl FnOnce(Option<&LoadedComponent>, &LoadedComponent) -> Result<(), E>,
    ) -> Result<u64, E> {
        let mut components = self.components.write();
        let old = components.get(&*loaded.name);
        check(old.map(|old| &**old), &loaded)?;
        loaded.version = old.map_or(0, |old| old.version) + 1;
        let version = loaded.version;
        components.insert(loaded.name.to_string(), Arc::new(loaded));
        self.installs.fetch_add(1, Ordering::Release);
        Ok(version)
    }

    /// The current version of a component, 0 when none of that name is loaded.
    pub(crate) fn current_version(&self, name: &str) -> u64 {
        self.components.read().get(name).map_or(0, |c| c.version)
    }

    /// Compile and link-check a component (no registration), as `kind` when given
    /// (otherwise by what it exports). Blocking: compiling takes a while, so reloads
    /// call it off the scheduler threads. A name loaded as a plugin stays a
    /// plugin (its new versions need no entry point), and one loaded as an HTTP
    /// handler stays one while it exports the handler, whatever else it exports.
    pub(crate) fn compile(
        &self,
        name: &str,
        bytes: &[u8],
        kind: Option<ComponentKind>,
    ) -> Result<LoadedComponent, LoadError> {
        let live = self.components.read().get(name).map(|c| c.kind);
        let name_owned = name.to_owned();
        if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
            return Err(LoadError::NotWasm {
                component: name_owned,
            });
        }
        if bytes[4..8] == [1, 0, 0, 0] {
            return Err(LoadError::CoreModule {
                component: name_owned,
            });
        }
        let component = Component::new(&self.engine, bytes).map_err(|e| LoadError::Invalid {
            component: name_owned.clone(),
            detail: format!("{e:#}"),
        })?;
        let exports: Vec<String> = component
            .component_type()
            .exports(&self.engine)
            .map(|(export, _)| export.to_owned())
            .collect();
        let exports_p2 = exports
            .iter()
            .any(|e| e.starts_with("wasi:http/incoming-handler@0.2"));
        // A wasi:http 0.3 service, served only when it does not also export the 0.2
        // handler (which then wins: it is what every other kind serves).
        let exports_p3 = !exports_p2
            && exports
                .iter()
                .any(|e| e.starts_with("wasi:http/handler@0.3"));
        let exports_handler = exports_p2 || exports_p3;
        let kind = if let Some(kind) = kind {
            if kind == ComponentKind::Http && !exports_handler {
                return Err(LoadError::NotHttpHandler {
                    component: name_owned,
                    exports,
                });
            }
            kind
        } else if live == Some(ComponentKind::Plugin) {
            ComponentKind::Plugin
        } else if live == Some(ComponentKind::Http) && exports_handler {
            ComponentKind::Http
        } else if exports.iter().any(|e| e.starts_with("rusm:runtime/entry@")) {
            ComponentKind::Actor
        } else if exports
            .iter()
            .any(|e| e.starts_with("rusm:runtime/handler@"))
        {
            ComponentKind::Handler
        } else if exports.iter().any(|e| e.starts_with("wasi:cli/run@0.2")) {
            ComponentKind::Command
        } else if exports_handler {
            ComponentKind::Http
        } else {
            return Err(LoadError::NoEntryPoint {
                component: name_owned,
                exports,
            });
        };
        let pre =
            self.linker
                .instantiate_pre(&component)
                .map_err(|e| LoadError::UnsatisfiedImport {
                    component: name_owned.clone(),
                    detail: format!("{e:#}"),
                })?;
        // A component of another kind that also exports the handler serves requests
        // too; one whose export does not have the handler's type simply does not.
        let also_http = (kind != ComponentKind::Http && exports_p2)
            .then(|| ProxyPre::new(pre.clone()).ok())
            .flatten();
        let prepared = match kind {
            ComponentKind::Actor => {
                Prepared::Actor(ActorPre::new(pre).map_err(|e| LoadError::BadEntryPoint {
                    component: name_owned.clone(),
                    detail: format!("{e:#}"),
                })?)
            }
            ComponentKind::Command => {
                Prepared::Command(CommandPre::new(pre).map_err(|e| LoadError::BadEntryPoint {
                    component: name_owned.clone(),
                    detail: format!("{e:#}"),
                })?)
            }
            ComponentKind::Http if exports_p3 => {
                Prepared::HttpP3(ServicePre::new(pre).map_err(|e| LoadError::BadEntryPoint {
                    component: name_owned.clone(),
                    detail: format!("{e:#}"),
                })?)
            }
            ComponentKind::Http => {
                Prepared::Http(ProxyPre::new(pre).map_err(|e| LoadError::BadEntryPoint {
                    component: name_owned.clone(),
                    detail: format!("{e:#}"),
                })?)
            }
            ComponentKind::Handler => {
                Prepared::Handler(HandlerActorPre::new(pre).map_err(|e| {
                    LoadError::BadEntryPoint {
                        component: name_owned.clone(),
                        detail: format!("{e:#}"),
                    }
                })?)
            }
            ComponentKind::Plugin => Prepared::Plugin(pre),
        };
        // What every instance will create; a component importing core modules cannot
        // say, and is held to its limits as it instantiates them.
        let needs = component.resources_required();
        Ok(LoadedComponent {
            name: name_owned.as_str().into(),
            kind,
            prepared,
            also_http,
            version: 0,
            memories: needs.as_ref().map_or(0, |n| n.num_memories),
            tables: needs.as_ref().map_or(0, |n| n.num_tables),
        })
    }

    /// The current version of the component `name`.
    ///
    /// # Errors
    /// [`SpawnError::UnknownComponent`] when none of that name is loaded.
    pub(crate) fn component(&self, name: &str) -> Result<Arc<LoadedComponent>, SpawnError> {
        self.components
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| SpawnError::UnknownComponent(name.to_owned()))
    }
}
