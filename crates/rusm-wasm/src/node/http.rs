//! [`WasmNode::serve_http`]: one HTTP request as a process of [`crate::kinds::http`].

use bytes::Bytes;
use rusm_otp::MailboxConfig;

use super::{NodeShared, WasmNode};
use crate::error::SpawnError;
use crate::kind::ComponentKind;
use crate::kinds::http::{HttpBodyError, HttpInvocation, HttpRequestOptions};

impl WasmNode {
    /// What kind of component is loaded under `name`, if any.
    pub fn component_kind(&self, name: &str) -> Option<ComponentKind> {
        self.shared
            .backend
            .registry
            .component(name)
            .ok()
            .map(|c| c.kind)
    }

    /// Serve one HTTP request with the loaded HTTP handler `component`, as a new rusm
    /// process (no parent) under `options.policy`.
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
        if loaded.kind != ComponentKind::Http {
            return Err(SpawnError::NotHttpHandler(component.to_owned()));
        }
        let policy = options.policy.unwrap_or_else(|| node.default_policy());
        let mut granted = node.grant(policy, None)?;
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
