//! Routes: path prefix (and method) to component.

use std::sync::Arc;

use http::Method;
use rusm_policy::Policy;
use rusm_wasm::HttpPool;

use crate::connection::ConnectionConfig;

/// What a route serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RouteKind {
    /// A `wasi:http` request handler: a fresh instance per request, or, with
    /// [`Route::reuse`], instances from a pool, each serving several in turn.
    #[default]
    Http,
    /// WebSocket connections: an actor or handler-style component, one process per
    /// connection (see `rusm_guest::ws`).
    WebSocket,
    /// Server-sent events streams: an actor or handler-style component, one process
    /// per stream (see `rusm_guest::sse`).
    Sse,
}

/// Requests whose path starts with `prefix` (at a segment boundary), and whose method
/// is `method` when one is given, go to `component`, run under `policy` (the node's
/// default policy when `None`).
///
/// `Route::new("/api", "c")` matches `/api`, `/api/` and `/api/x`, not `/apix`;
/// `Route::new("/", "c")` matches every path. The longest matching prefix wins; among
/// routes with the same prefix, one naming the method wins over one naming none.
#[derive(Debug, Clone)]
pub struct Route {
    prefix: String,
    method: Option<Method>,
    component: String,
    policy: Option<Arc<Policy>>,
    kind: RouteKind,
    connection: ConnectionConfig,
    reuse: u32,
    /// Whether `reuse` was set (a `wasi:http` 0.3 service's instances are otherwise
    /// not retired by count).
    reuse_set: bool,
    concurrency: Option<u32>,
    pool_size: usize,
    /// The route's pool of reused instances, made at bind when `reuse` is above 1.
    pub(crate) pool: Option<HttpPool>,
}

impl Route {
    /// A route for every method under `prefix` to the loaded component `component`.
    pub fn new(prefix: impl Into<String>, component: impl Into<String>) -> Route {
        Route {
            prefix: prefix.into(),
            method: None,
            component: component.into(),
            policy: None,
            kind: RouteKind::Http,
            connection: ConnectionConfig::default(),
            reuse: 1,
            reuse_set: false,
            concurrency: None,
            pool_size: rusm_wasm::DEFAULT_POOL_INSTANCES,
            pool: None,
        }
    }

    /// A route upgrading the requests under `prefix` to WebSocket connections, each
    /// served by a process of the actor (or handler-style) component `component`.
    pub fn websocket(prefix: impl Into<String>, component: impl Into<String>) -> Route {
        Route {
            kind: RouteKind::WebSocket,
            ..Route::new(prefix, component)
        }
    }

    /// A route answering the requests under `prefix` with server-sent events
    /// streams, each fed by a process of the actor (or handler-style) component
    /// `component`.
    pub fn sse(prefix: impl Into<String>, component: impl Into<String>) -> Route {
        Route {
            kind: RouteKind::Sse,
            ..Route::new(prefix, component)
        }
    }

    /// The settings of the route's connections (WebSocket and SSE routes).
    #[must_use]
    pub fn connection(mut self, config: ConnectionConfig) -> Route {
        self.connection = config;
        self
    }

    /// Serve up to `requests` requests in turn on one instance (an HTTP route): the
    /// route keeps a pool of warm instances ([`Route::pool`]), each retired after
    /// `requests` requests, a trap, or the deadline. 1, the default, is a fresh
    /// instance per request; 0 is refused at bind. See [`rusm_wasm::HttpPool`].
    #[must_use]
    ///
    /// On a route whose component is a `wasi:http` 0.3 service, `reuse` caps the
    /// requests one instance takes in all (by default there is no cap: an instance
    /// retires when idle, after a trap or a missed deadline, or on reload).
    pub fn reuse(mut self, requests: u32) -> Route {
        self.reuse = requests;
        self.reuse_set = true;
        self
    }

    /// For a route whose component exports `wasi:http/handler@0.3`: how many
    /// requests one instance serves at once ([`rusm_wasm::DEFAULT_P3_CONCURRENCY`]
    /// by default). The route's pool holds up to [`Route::pool`] such instances; a
    /// request that finds every slot of every instance taken waits up to the
    /// server's `queue_timeout`, then gets 503. 0 is refused at bind, and so is
    /// setting it on a route whose component is a 0.2 handler.
    #[must_use]
    pub fn concurrency(mut self, requests: u32) -> Route {
        self.concurrency = Some(requests);
        self
    }

    /// The concurrency the route sets, if it sets one.
    pub fn concurrency_setting(&self) -> Option<u32> {
        self.concurrency
    }

    /// Whether the route sets `reuse` itself.
    pub(crate) fn reuse_is_set(&self) -> bool {
        self.reuse_set
    }

    /// With [`Route::reuse`], the most instances the route's pool holds at once,
    /// busy and idle together ([`rusm_wasm::DEFAULT_POOL_INSTANCES`] by default): a
    /// request that finds them all busy waits for one up to the server's
    /// `queue_timeout`, then gets 503.
    #[must_use]
    pub fn pool(mut self, instances: usize) -> Route {
        self.pool_size = instances;
        self
    }

    /// How many requests one instance serves in turn (1: a fresh one per request).
    pub fn reuse_count(&self) -> u32 {
        self.reuse
    }

    /// The most instances the route's pool holds, when it reuses them.
    pub fn pool_size(&self) -> usize {
        self.pool_size
    }

    /// What the route serves.
    pub fn kind(&self) -> RouteKind {
        self.kind
    }

    /// The settings of the route's connections.
    pub fn connection_config(&self) -> &ConnectionConfig {
        &self.connection
    }

    /// Only for requests with this method.
    #[must_use]
    pub fn method(mut self, method: Method) -> Route {
        self.method = Some(method);
        self
    }

    /// Run the route's requests under this policy.
    #[must_use]
    pub fn policy(mut self, policy: Arc<Policy>) -> Route {
        self.policy = Some(policy);
        self
    }

    /// The path prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The method, when the route is for one only.
    pub fn method_filter(&self) -> Option<&Method> {
        self.method.as_ref()
    }

    /// The component's name.
    pub fn component(&self) -> &str {
        &self.component
    }

    /// The policy, when the route names one.
    pub fn policy_ref(&self) -> Option<&Arc<Policy>> {
        self.policy.as_ref()
    }

    /// Whether `path` is under this route's prefix.
    fn covers(&self, path: &str) -> bool {
        let prefix = self.prefix.trim_end_matches('/');
        match path.strip_prefix(prefix) {
            Some(rest) => rest.is_empty() || rest.starts_with('/') || prefix.is_empty(),
            None => false,
        }
    }
}

/// What routing decided for a request.
#[derive(Debug)]
pub(crate) enum Routed<'a> {
    /// Serve it with this route.
    Found(&'a Route),
    /// Routes cover the path, but none for this method; the methods they allow.
    WrongMethod(Vec<Method>),
    /// No route covers the path.
    NotFound,
}

/// The routes of a server, longest prefix first.
#[derive(Debug)]
pub(crate) struct Router {
    routes: Vec<Route>,
}

impl Router {
    pub(crate) fn new(mut routes: Vec<Route>) -> Router {
        // Longest prefix first; with equal prefixes, method-specific routes first.
        routes.sort_by(|a, b| {
            let len = |r: &Route| r.prefix.trim_end_matches('/').len();
            len(b)
                .cmp(&len(a))
                .then(b.method.is_some().cmp(&a.method.is_some()))
        });
        Router { routes }
    }

    pub(crate) fn routes(&self) -> &[Route] {
        &self.routes
    }

    pub(crate) fn route(&self, method: &Method, path: &str) -> Routed<'_> {
        let mut allowed = Vec::new();
        let mut matched_len = None;
        for route in self.routes.iter().filter(|r| r.covers(path)) {
            let len = route.prefix.trim_end_matches('/').len();
            // Only routes of the longest covering prefix decide.
            if matched_len.is_some_and(|l| l != len) {
                break;
            }
            matched_len = Some(len);
            match &route.method {
                None => return Routed::Found(route),
                Some(m) if m == method => return Routed::Found(route),
                Some(m) => allowed.push(m.clone()),
            }
        }
        if allowed.is_empty() {
            Routed::NotFound
        } else {
            Routed::WrongMethod(allowed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found<'a>(router: &'a Router, method: &Method, path: &str) -> Option<&'a str> {
        match router.route(method, path) {
            Routed::Found(r) => Some(r.component()),
            _ => None,
        }
    }

    #[test]
    fn longest_prefix_at_segment_boundaries() {
        let router = Router::new(vec![
            Route::new("/", "root"),
            Route::new("/api", "api"),
            Route::new("/api/v2/", "v2"),
        ]);
        let get = Method::GET;
        assert_eq!(found(&router, &get, "/"), Some("root"));
        assert_eq!(found(&router, &get, "/other"), Some("root"));
        assert_eq!(found(&router, &get, "/api"), Some("api"));
        assert_eq!(found(&router, &get, "/api/x"), Some("api"));
        assert_eq!(found(&router, &get, "/apix"), Some("root"));
        assert_eq!(found(&router, &get, "/api/v2"), Some("v2"));
        assert_eq!(found(&router, &get, "/api/v2/y"), Some("v2"));
        assert_eq!(found(&router, &get, "/api/v22"), Some("api"));
    }

    #[test]
    fn no_root_route_means_not_found() {
        let router = Router::new(vec![Route::new("/hello", "hello")]);
        assert!(matches!(
            router.route(&Method::GET, "/bye"),
            Routed::NotFound
        ));
        assert!(matches!(router.route(&Method::GET, "/"), Routed::NotFound));
        assert!(matches!(
            router.route(&Method::GET, "/hellox"),
            Routed::NotFound
        ));
    }

    #[test]
    fn methods_filter_and_report_what_is_allowed() {
        let router = Router::new(vec![
            Route::new("/items", "list").method(Method::GET),
            Route::new("/items", "create").method(Method::POST),
            Route::new("/any", "any"),
            Route::new("/any", "any-get").method(Method::GET),
        ]);
        assert_eq!(found(&router, &Method::GET, "/items"), Some("list"));
        assert_eq!(found(&router, &Method::POST, "/items/1"), Some("create"));
        match router.route(&Method::DELETE, "/items") {
            Routed::WrongMethod(allowed) => {
                assert!(allowed.contains(&Method::GET) && allowed.contains(&Method::POST));
            }
            other => panic!("expected a wrong method, got {other:?}"),
        }
        assert_eq!(found(&router, &Method::GET, "/any"), Some("any-get"));
        assert_eq!(found(&router, &Method::PUT, "/any"), Some("any"));
    }
}
