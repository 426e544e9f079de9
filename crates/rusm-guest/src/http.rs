//! HTTP handlers and outbound HTTP (cargo feature `http`).
//!
//! A handler component exports `wasi:http/incoming-handler` (the `http-actor` world of
//! `wit/rusm-runtime`). The host runs it once per request, in a fresh instance that is
//! also a rusm process, so the handler may use everything else in this crate
//! ([`whereis`](crate::whereis), [`call`](crate::call), [`send`](crate::send), ...).
//! Declare it with [`http_handler!`](crate::http_handler):
//!
//! ```no_run
//! use rusm_guest::http::{IncomingRequest, ResponseOutparam, respond};
//!
//! fn handle(request: IncomingRequest, out: ResponseOutparam) {
//!     let path = request.path_with_query().unwrap_or_default();
//!     respond(out, 200, &[("content-type", b"text/plain")], format!("you asked for {path}\n").as_bytes());
//! }
//!
//! rusm_guest::http_handler!(handle);
//! # fn main() {}
//! ```
//!
//! Bodies stream: [`BodyReader`] reads the request body chunk by chunk,
//! [`start_response`] sends the head at once and returns a [`BodyWriter`]. [`fetch`]
//! sends an outbound request; it works from any component (a plain actor too), and the
//! process's policy decides where it may go (a denied origin fails with
//! [`ErrorCode::HttpRequestDenied`]).

#[allow(missing_docs, unsafe_code, unused_imports, clippy::all)]
/// The raw bindings generated for the `http-actor` world. The `rusm:runtime`
/// interfaces are the crate's own ([`crate::bindings`]); the WASI ones are generated
/// here.
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/rusm-runtime",
        world: "http-actor",
        features: ["clocks-timezone"],
        with: {
            "rusm:runtime/types@0.1.0": crate::bindings::rusm::runtime::types,
            "rusm:runtime/process@0.1.0": crate::bindings::rusm::runtime::process,
        },
        generate_all,
        pub_export_macro: true,
        default_bindings_module: "rusm_guest::http::bindings",
    });
}

use bindings::wasi::http::outgoing_handler;
pub use bindings::wasi::http::types::{
    ErrorCode, Fields, IncomingBody, IncomingRequest, IncomingResponse, Method, OutgoingBody,
    OutgoingRequest, OutgoingResponse, ResponseOutparam, Scheme,
};
use bindings::wasi::io::streams::{InputStream, OutputStream, StreamError};

/// The most bytes one `blocking-write-and-flush` may carry.
const WRITE_CHUNK: usize = 4096;

/// Declares the HTTP handler of a component: a function (or closure) of type
/// `fn(IncomingRequest, ResponseOutparam)`. Use it once per component, at module
/// level, in a crate that enables this crate's `http` feature.
#[macro_export]
macro_rules! http_handler {
    ($handle:expr $(,)?) => {
        #[allow(unsafe_code)]
        const _: () = {
            struct RusmHttpHandler;

            impl $crate::http::bindings::exports::wasi::http::incoming_handler::Guest
                for RusmHttpHandler
            {
                fn handle(
                    request: $crate::http::IncomingRequest,
                    out: $crate::http::ResponseOutparam,
                ) {
                    ($handle)(request, out)
                }
            }

    $crate::http::bindings::export!(RusmHttpHandler with_types_in $crate::http::bindings);
        };
    };
}

/// Header fields from `(name, value)` pairs; pairs the host refuses (a forbidden or
/// malformed name) are left out.
pub fn fields(headers: &[(&str, &[u8])]) -> Fields {
    let fields = Fields::new();
    for (name, value) in headers {
        let _ = fields.append(name, value);
    }
    fields
}

/// Send a whole response: status, headers and body.
pub fn respond(out: ResponseOutparam, status: u16, headers: &[(&str, &[u8])], body: &[u8]) {
    let mut writer = start_response(out, status, headers);
    // A client that went away cannot be answered; nothing else to do.
    let _ = writer.write(body);
    writer.finish();
}

/// Send the response head now and return a writer for the body, which streams to the
/// client as it is written. Call [`BodyWriter::finish`] at the end.
pub fn start_response(out: ResponseOutparam, status: u16, headers: &[(&str, &[u8])]) -> BodyWriter {
    let response = OutgoingResponse::new(fields(headers));
    let _ = response.set_status_code(status);
    let body = response.body().expect("a new response has a body");
    ResponseOutparam::set(out, Ok(response));
    BodyWriter::new(body)
}

/// The body of an outgoing response or request, written in pieces.
pub struct BodyWriter {
    // Declared before `body`: the stream must go before the body it belongs to.
    stream: Option<OutputStream>,
    body: Option<OutgoingBody>,
}

impl BodyWriter {
    fn new(body: OutgoingBody) -> BodyWriter {
        let stream = body.write().ok();
        BodyWriter {
            stream,
            body: Some(body),
        }
    }

    /// Write `bytes`, waiting while the other side is not ready for more.
    ///
    /// # Errors
    /// When the stream is closed (the client went away) or failed.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), StreamError> {
        let Some(stream) = &self.stream else {
            return Err(StreamError::Closed);
        };
        for chunk in bytes.chunks(WRITE_CHUNK) {
            stream.blocking_write_and_flush(chunk)?;
        }
        Ok(())
    }

    /// End the body.
    pub fn finish(mut self) {
        self.stream.take();
        if let Some(body) = self.body.take() {
            let _ = OutgoingBody::finish(body, None);
        }
    }
}

/// The body of an incoming request or response, read in chunks.
pub struct BodyReader {
    // Declared before `body`: the stream must go before the body it belongs to.
    stream: InputStream,
    _body: IncomingBody,
}

/// Why a body could not be read to its end.
#[derive(Debug)]
pub enum BodyError {
    /// The body was already taken.
    Taken,
    /// The stream failed (for example the host refused a body over its size limit).
    Failed(String),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::Taken => f.write_str("the body was already taken"),
            BodyError::Failed(why) => write!(f, "reading the body failed: {why}"),
        }
    }
}

impl std::error::Error for BodyError {}

impl BodyReader {
    /// The body of `request` (once per request).
    ///
    /// # Errors
    /// [`BodyError::Taken`] when it was taken before.
    pub fn of_request(request: &IncomingRequest) -> Result<BodyReader, BodyError> {
        let body = request.consume().map_err(|()| BodyError::Taken)?;
        BodyReader::from_body(body)
    }

    /// The body of `response` (once per response).
    ///
    /// # Errors
    /// [`BodyError::Taken`] when it was taken before.
    pub fn of_response(response: &IncomingResponse) -> Result<BodyReader, BodyError> {
        let body = response.consume().map_err(|()| BodyError::Taken)?;
        BodyReader::from_body(body)
    }

    fn from_body(body: IncomingBody) -> Result<BodyReader, BodyError> {
        let stream = body.stream().map_err(|()| BodyError::Taken)?;
        Ok(BodyReader {
            stream,
            _body: body,
        })
    }

    /// The next chunk (at most `max` bytes), waiting for it; `None` at the end.
    ///
    /// # Errors
    /// [`BodyError::Failed`] when the stream failed.
    pub fn chunk(&mut self, max: u64) -> Result<Option<Vec<u8>>, BodyError> {
        loop {
            match self.stream.blocking_read(max) {
                Ok(bytes) if bytes.is_empty() => continue,
                Ok(bytes) => return Ok(Some(bytes)),
                Err(StreamError::Closed) => return Ok(None),
                Err(StreamError::LastOperationFailed(e)) => {
                    return Err(BodyError::Failed(e.to_debug_string()));
                }
            }
        }
    }

    /// The rest of the body.
    ///
    /// # Errors
    /// [`BodyError::Failed`] when the stream failed.
    pub fn read_all(mut self) -> Result<Vec<u8>, BodyError> {
        let mut all = Vec::new();
        while let Some(chunk) = self.chunk(64 * 1024)? {
            all.extend_from_slice(&chunk);
        }
        Ok(all)
    }
}

/// A response fetched with [`fetch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The status code.
    pub status: u16,
    /// The headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The whole body.
    pub body: Vec<u8>,
}

/// Why [`fetch`] failed.
#[derive(Debug, Clone)]
pub enum FetchError {
    /// The URL is not `http://` or `https://` followed by an authority.
    BadUrl(String),
    /// The host refused or failed the request: `HttpRequestDenied` when the policy
    /// does not grant the origin, a connection or protocol error otherwise.
    Http(ErrorCode),
    /// Reading the response body failed.
    Body(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::BadUrl(url) => write!(f, "bad url {url:?}"),
            FetchError::Http(code) => write!(f, "http error: {code:?}"),
            FetchError::Body(why) => write!(f, "reading the response failed: {why}"),
        }
    }
}

impl std::error::Error for FetchError {}

/// Send a request to `url` (`http://host[:port]/path?query` or `https://...`) with
/// `method`, `headers` and `body`, and wait for the whole response.
///
/// # Errors
/// See [`FetchError`]; a request to an origin the policy does not grant fails with
/// `FetchError::Http(ErrorCode::HttpRequestDenied)`.
pub fn fetch(
    method: Method,
    url: &str,
    headers: &[(&str, &[u8])],
    body: &[u8],
) -> Result<Fetched, FetchError> {
    let bad = || FetchError::BadUrl(url.to_owned());
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        _ => return Err(bad()),
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(bad());
    }
    let request = OutgoingRequest::new(fields(headers));
    request.set_method(&method).map_err(|()| bad())?;
    request.set_scheme(Some(&scheme)).map_err(|()| bad())?;
    request.set_authority(Some(authority)).map_err(|()| bad())?;
    request
        .set_path_with_query(Some(path))
        .map_err(|()| bad())?;
    let outgoing = request.body().map_err(|()| bad())?;
    let pending = outgoing_handler::handle(request, None).map_err(FetchError::Http)?;
    let mut writer = BodyWriter::new(outgoing);
    if !body.is_empty() {
        writer
            .write(body)
            .map_err(|e| FetchError::Body(format!("{e:?}")))?;
    }
    writer.finish();
    pending.subscribe().block();
    let response = match pending.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(FetchError::Http(code)),
        Some(Err(())) | None => {
            return Err(FetchError::Body("the response was already taken".into()));
        }
    };
    let status = response.status();
    let headers = response.headers().entries();
    let body = BodyReader::of_response(&response)
        .and_then(BodyReader::read_all)
        .map_err(|e| FetchError::Body(e.to_string()))?;
    Ok(Fetched {
        status,
        headers,
        body,
    })
}
