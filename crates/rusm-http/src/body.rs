//! Request and response bodies.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use rusm_wasm::HttpBodyError;
use tokio::time::Sleep;

/// The error a response body may end with.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What the server answers with.
pub(crate) type ResponseBody = UnsyncBoxBody<Bytes, BoxError>;

/// A small body the server writes itself.
pub(crate) fn full(text: impl Into<Bytes>) -> ResponseBody {
    Full::new(text.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// What became of a request body: whether it passed the size cap or its read time.
#[derive(Debug, Default)]
pub(crate) struct BodyOutcome {
    too_large: AtomicBool,
    timed_out: AtomicBool,
}

impl BodyOutcome {
    /// Whether the body went past the size cap.
    pub(crate) fn too_large(&self) -> bool {
        self.too_large.load(Ordering::Acquire)
    }

    /// Whether the body was not in by its read deadline.
    pub(crate) fn timed_out(&self) -> bool {
        self.timed_out.load(Ordering::Acquire)
    }
}

/// A request body that fails once more than `limit` bytes have come through, or when
/// it has not ended by `deadline`, and records which (so the server can answer 413 or
/// 408 whatever the guest made of it).
pub(crate) struct LimitedBody<B> {
    inner: B,
    remaining: u64,
    limit: u64,
    deadline: Option<Pin<Box<Sleep>>>,
    outcome: Arc<BodyOutcome>,
}

impl<B> LimitedBody<B> {
    pub(crate) fn new(
        inner: B,
        limit: u64,
        deadline: Option<Instant>,
        outcome: Arc<BodyOutcome>,
    ) -> LimitedBody<B> {
        LimitedBody {
            inner,
            remaining: limit,
            limit,
            deadline: deadline.map(|at| Box::pin(tokio::time::sleep_until(at.into()))),
            outcome,
        }
    }
}

impl<B> Body for LimitedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<HttpBodyError>,
{
    type Data = Bytes;
    type Error = HttpBodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpBodyError>>> {
        let this = &mut *self;
        if this.outcome.timed_out() {
            return Poll::Ready(Some(Err(HttpBodyError::ConnectionReadTimeout)));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > this.remaining {
                        this.outcome.too_large.store(true, Ordering::Release);
                        this.remaining = 0;
                        return Poll::Ready(Some(Err(HttpBodyError::HttpRequestBodySize(Some(
                            this.limit,
                        )))));
                    }
                    this.remaining -= len;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => {
                this.deadline = None;
                Poll::Ready(None)
            }
            Poll::Pending => {
                let passed = this
                    .deadline
                    .as_mut()
                    .is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready());
                if passed {
                    this.outcome.timed_out.store(true, Ordering::Release);
                    Poll::Ready(Some(Err(HttpBodyError::ConnectionReadTimeout)))
                } else {
                    Poll::Pending
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The request body type handed to the handler: read whole beforehand, or streamed.
pub(crate) type RequestBody = UnsyncBoxBody<Bytes, HttpBodyError>;

/// A request body already read whole.
pub(crate) fn buffered(bytes: Bytes) -> RequestBody {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    /// A body made of fixed chunks.
    struct Chunks(VecDeque<Bytes>);

    impl Body for Chunks {
        type Data = Bytes;
        type Error = HttpBodyError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, HttpBodyError>>> {
            Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
        }
    }

    fn chunks(parts: &[&'static [u8]]) -> Chunks {
        Chunks(parts.iter().map(|p| Bytes::from_static(p)).collect())
    }

    #[tokio::test]
    async fn passes_bodies_within_the_limit() {
        let outcome = Arc::new(BodyOutcome::default());
        let body = LimitedBody::new(chunks(&[b"abc", b"de"]), 5, None, outcome.clone());
        let bytes = body.collect().await.map(|c| c.to_bytes()).ok();
        assert_eq!(bytes.as_deref(), Some(&b"abcde"[..]));
        assert!(!outcome.too_large());
        assert!(!outcome.timed_out());
    }

    #[tokio::test]
    async fn fails_and_records_past_the_limit() {
        let outcome = Arc::new(BodyOutcome::default());
        let body = LimitedBody::new(chunks(&[b"abc", b"def"]), 5, None, outcome.clone());
        let err = body.collect().await.err().map(|e| format!("{e:?}"));
        assert!(
            err.as_ref()
                .is_some_and(|e| e.contains("HttpRequestBodySize")),
            "{err:?}"
        );
        assert!(outcome.too_large());
    }

    /// A body that has sent one chunk and then never another.
    struct Stalled(Option<Bytes>);

    impl Body for Stalled {
        type Data = Bytes;
        type Error = HttpBodyError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, HttpBodyError>>> {
            match self.0.take() {
                Some(b) => Poll::Ready(Some(Ok(Frame::data(b)))),
                None => Poll::Pending,
            }
        }
    }

    #[tokio::test]
    async fn fails_and_records_a_body_not_in_by_its_deadline() {
        let outcome = Arc::new(BodyOutcome::default());
        let deadline = Instant::now() + std::time::Duration::from_millis(50);
        let body = Stalled(Some(Bytes::from_static(b"abc")));
        let body = LimitedBody::new(body, 1024, Some(deadline), outcome.clone());
        let err = body.collect().await.err().map(|e| format!("{e:?}"));
        assert!(
            err.as_ref()
                .is_some_and(|e| e.contains("ConnectionReadTimeout")),
            "{err:?}"
        );
        assert!(outcome.timed_out());
        assert!(!outcome.too_large());
    }
}
