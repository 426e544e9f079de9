//! Request and response bodies.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use rusm_wasm::HttpBodyError;

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

/// A request body that fails once more than `limit` bytes have come through, and
/// records that it did (so the server can answer 413 whatever the guest made of it).
pub(crate) struct LimitedBody<B> {
    inner: B,
    remaining: u64,
    limit: u64,
    exceeded: Arc<AtomicBool>,
}

impl<B> LimitedBody<B> {
    pub(crate) fn new(inner: B, limit: u64, exceeded: Arc<AtomicBool>) -> LimitedBody<B> {
        LimitedBody {
            inner,
            remaining: limit,
            limit,
            exceeded,
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
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > this.remaining {
                        this.exceeded.store(true, Ordering::Release);
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
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
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
        let exceeded = Arc::new(AtomicBool::new(false));
        let body = LimitedBody::new(chunks(&[b"abc", b"de"]), 5, exceeded.clone());
        let bytes = body.collect().await.map(|c| c.to_bytes()).ok();
        assert_eq!(bytes.as_deref(), Some(&b"abcde"[..]));
        assert!(!exceeded.load(Ordering::Acquire));
    }

    #[tokio::test]
    async fn fails_and_records_past_the_limit() {
        let exceeded = Arc::new(AtomicBool::new(false));
        let body = LimitedBody::new(chunks(&[b"abc", b"def"]), 5, exceeded.clone());
        let err = body.collect().await.err().map(|e| format!("{e:?}"));
        assert!(
            err.as_ref()
                .is_some_and(|e| e.contains("HttpRequestBodySize")),
            "{err:?}"
        );
        assert!(exceeded.load(Ordering::Acquire));
    }
}
