//! [`WasmNode::serve_http`]: one HTTP request as a process of [`crate::kinds::http`].

use std::path::Path;

use bytes::Bytes;
use rusm_otp::MailboxConfig;

use super::{NodeShared, WasmNode};
use crate::error::{LoadError, SpawnError};
use crate::kind::ComponentKind;
use crate::kinds::HttpBodyError;
use crate::kinds::http::{HttpInvocation, HttpRequestOptions};
use crate::registry::ComponentInfo;

impl WasmNode {
    /// Compile a component and register it under `name` as an HTTP handler, whatever
    /// else it exports: a component exporting both `wasi:http/incoming-handler` and
    /// `wasi:cli/run` (a `wasm32-wasip2` binary built for the `wasi:http/proxy` world)
    /// is a command when loaded with [`WasmNode::load_bytes`] (which
    /// [`WasmNode::serve_http`] serves too), and only an HTTP handler when loaded this
    /// way: it is not spawned. Its later versions stay HTTP handlers (see
    /// [`WasmNode::reload`]).
    ///
    /// # Errors
    /// As [`WasmNode::load_bytes`]; [`LoadError::NotHttpHandler`] when it does not
    /// export `wasi:http/incoming-handler`.
    pub fn load_http_bytes(&self, name: &str, bytes: &[u8]) -> Result<ComponentInfo, LoadError> {
        let registry = &self.shared.backend.registry;
        let loaded = registry.compile(name, bytes, Some(ComponentKind::Http))?;
        let version = registry.install(loaded, |_, _| Ok::<(), LoadError>(()))?;
        tracing::info!(component = name, version, "HTTP handler loaded");
        Ok(ComponentInfo {
            name: name.to_owned(),
            kind: ComponentKind::Http,
        })
    }

    /// [`WasmNode::load_http_bytes`] from a file.
    ///
    /// # Errors
    /// As [`WasmNode::load_http_bytes`]; also when the file cannot be read.
    pub fn load_http_file(&self, name: &str, path: &Path) -> Result<ComponentInfo, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        self.load_http_bytes(name, &bytes)
    }

    /// Whether the component loaded under `name` serves HTTP requests through
    /// [`WasmNode::serve_http`]: it exports `wasi:http/incoming-handler`, whatever
    /// its kind (an HTTP handler, or a command built for the `wasi:http/proxy` world
    /// loaded with [`WasmNode::load_bytes`]), or a `wasi:http/handler@0.3` service
    /// (see [`WasmNode::is_http_service`]). `false` when none is loaded.
    pub fn serves_http(&self, name: &str) -> bool {
        self.shared
            .backend
            .registry
            .component(name)
            .is_ok_and(|c| c.serves_http())
    }

    /// Whether the component loaded under `name` is a `wasi:http` 0.3 service
    /// (it exports `wasi:http/handler@0.3` and not the 0.2 `incoming-handler`): it
    /// is served through an [`HttpPool`](crate::HttpPool), whose instances each
    /// serve several requests at once. `false` when none is loaded.
    pub fn is_http_service(&self, name: &str) -> bool {
        self.shared
            .backend
            .registry
            .component(name)
            .is_ok_and(|c| c.http_service().is_some())
    }

    /// What kind of component is loaded under `name`, if any.
    pub fn component_kind(&self, name: &str) -> Option<ComponentKind> {
        self.shared
            .backend
            .registry
            .component(name)
            .ok()
            .map(|c| c.kind)
    }

    /// Serve one HTTP request with the loaded component `component`, which must
    /// export `wasi:http/incoming-handler` (see [`WasmNode::serves_http`]), as a new
    /// rusm process (no parent) under `options.policy`.
    ///
    /// The request's URI needs an authority or a `Host` header (the guest sees it as
    /// the request's authority).
    ///
    /// # Errors
    /// [`SpawnError::UnknownComponent`] when no component of that name is loaded,
    /// [`SpawnError::NotHttpHandler`] when it does not export
    /// `wasi:http/incoming-handler`, [`SpawnError::NotPermitted`] when this node cannot
    /// honour the policy (a fuel limit without fuel metering).
    pub fn serve_http<B>(
        &self,
        component: &str,
        request: hyper::Request<B>,
        options: HttpRequestOptions,
    ) -> Result<HttpInvocation, SpawnError>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<HttpBodyError>,
    {
        let node = &self.shared;
        let loaded = node.backend.registry.component(component)?;
        if loaded.http_service().is_some() {
            return Err(SpawnError::NotPermitted(format!(
                "component {component:?} is a wasi:http 0.3 service: serve it through an HttpPool (WasmNode::http_pool)"
            )));
        }
        if loaded.http_handler().is_none() {
            return Err(SpawnError::NotHttpHandler(component.to_owned()));
        }
        let policy = options.policy.unwrap_or_else(|| node.default_policy());
        let mut granted = node.grant(policy, None)?;
        super::check_counts(&loaded, &granted.limits)?;
        granted.limits = granted.limits.with_deadline(options.deadline);
        let core = NodeShared::core_options(
            &loaded,
            &granted,
            MailboxConfig::default(),
            false,
            false,
            false,
        );
        Ok(HttpInvocation::start(
            &node.backend,
            loaded,
            granted,
            core,
            request,
            options.https,
        ))
    }
}
