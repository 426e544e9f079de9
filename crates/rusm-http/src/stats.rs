//! Request counts and latencies, for a metrics endpoint.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency histogram buckets, in seconds (the Prometheus
/// default buckets); a last, unbounded bucket follows.
pub const LATENCY_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A snapshot of a server's counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HttpStats {
    /// Responses by status code (including those the server made itself: 404, 413,
    /// 503, ...).
    pub by_status: BTreeMap<u16, u64>,
    /// How many requests fell in each latency bucket (time until the response head):
    /// `latency_buckets[i]` counts those at most [`LATENCY_BUCKETS`]`[i]` seconds and
    /// above the previous bound; the last element counts the rest. Not cumulative.
    pub latency_buckets: Vec<u64>,
    /// The sum of all latencies, in seconds.
    pub latency_sum_seconds: f64,
    /// Requests being handled now.
    pub in_flight: u64,
    /// Connections open now.
    pub connections_open: u64,
    /// Connections accepted since the server started.
    pub connections_accepted: u64,
    /// How many times the listener stopped accepting because `max_connections`
    /// connections were open (further clients waited in the accept backlog).
    pub connection_cap_reached: u64,
    /// Connections closed because a request head did not arrive within
    /// `header_read_timeout`.
    pub header_read_timeouts: u64,
    /// Requests whose body did not arrive within `body_read_timeout` (answered 408,
    /// or their connection closed).
    pub body_read_timeouts: u64,
    /// WebSocket connections open now.
    pub websockets_open: u64,
    /// WebSocket connections accepted since the server started.
    pub websockets_accepted: u64,
    /// SSE streams open now.
    pub sse_open: u64,
    /// SSE streams accepted since the server started.
    pub sse_accepted: u64,
    /// Upgrade or stream requests refused (503) because `max_streams` were open.
    pub streams_refused: u64,
    /// Frames received from WebSocket clients, and their payload bytes.
    pub frames_in: u64,
    /// Payload bytes of `frames_in`.
    pub bytes_in: u64,
    /// Frames and events written to clients (heartbeats included).
    pub frames_out: u64,
    /// Bytes of `frames_out`.
    pub bytes_out: u64,
    /// WebSocket closes, by close code, whichever side closed (1006: the socket was
    /// lost without one).
    pub closes_by_code: BTreeMap<u16, u64>,
    /// Connections closed because the client sent nothing for `idle_timeout`.
    pub idle_timeouts: u64,
    /// Connections dropped because a write waited `write_timeout` (a client not
    /// reading).
    pub write_timeouts: u64,
    /// Connections closed because a queue was full: its outgoing queue, or its
    /// guest's mailbox.
    pub queue_overflows: u64,
    /// Connections closed because a client's message passed `max_message_bytes`.
    pub oversized_messages: u64,
}

/// Which kind of long-lived connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamKind {
    WebSocket,
    Sse,
}

impl HttpStats {
    /// All responses counted.
    pub fn requests(&self) -> u64 {
        self.by_status.values().sum()
    }

    /// Responses with this status.
    pub fn status(&self, code: u16) -> u64 {
        self.by_status.get(&code).copied().unwrap_or(0)
    }
}

/// The live counters behind [`HttpStats`].
#[derive(Debug)]
pub(crate) struct StatsRecorder {
    inner: Mutex<HttpStats>,
}

impl StatsRecorder {
    pub(crate) fn new() -> StatsRecorder {
        StatsRecorder {
            inner: Mutex::new(HttpStats {
                latency_buckets: vec![0; LATENCY_BUCKETS.len() + 1],
                ..HttpStats::default()
            }),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut HttpStats) -> R) -> R {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    pub(crate) fn started(&self) {
        self.with(|s| s.in_flight += 1);
    }

    pub(crate) fn finished(&self, status: u16, latency: Duration) {
        let secs = latency.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|bound| secs <= *bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.with(|s| {
            s.in_flight = s.in_flight.saturating_sub(1);
            *s.by_status.entry(status).or_default() += 1;
            s.latency_buckets[bucket] += 1;
            s.latency_sum_seconds += secs;
        });
    }

    pub(crate) fn connection_opened(&self) {
        self.with(|s| {
            s.connections_open += 1;
            s.connections_accepted += 1;
        });
    }

    pub(crate) fn connection_closed(&self) {
        self.with(|s| s.connections_open = s.connections_open.saturating_sub(1));
    }

    pub(crate) fn connection_cap_reached(&self) {
        self.with(|s| s.connection_cap_reached += 1);
    }

    pub(crate) fn header_read_timeout(&self) {
        self.with(|s| s.header_read_timeouts += 1);
    }

    pub(crate) fn body_read_timeout(&self) {
        self.with(|s| s.body_read_timeouts += 1);
    }

    pub(crate) fn stream_opened(&self, kind: StreamKind) {
        self.with(|s| match kind {
            StreamKind::WebSocket => {
                s.websockets_open += 1;
                s.websockets_accepted += 1;
            }
            StreamKind::Sse => {
                s.sse_open += 1;
                s.sse_accepted += 1;
            }
        });
    }

    pub(crate) fn stream_closed(&self, kind: StreamKind) {
        self.with(|s| match kind {
            StreamKind::WebSocket => s.websockets_open = s.websockets_open.saturating_sub(1),
            StreamKind::Sse => s.sse_open = s.sse_open.saturating_sub(1),
        });
    }

    pub(crate) fn stream_refused(&self) {
        self.with(|s| s.streams_refused += 1);
    }

    pub(crate) fn frame_in(&self, bytes: usize) {
        self.with(|s| {
            s.frames_in += 1;
            s.bytes_in += bytes as u64;
        });
    }

    pub(crate) fn frame_out(&self, bytes: usize) {
        self.with(|s| {
            s.frames_out += 1;
            s.bytes_out += bytes as u64;
        });
    }

    pub(crate) fn stream_close_code(&self, code: u16) {
        self.with(|s| *s.closes_by_code.entry(code).or_default() += 1);
    }

    pub(crate) fn idle_timeout(&self) {
        self.with(|s| s.idle_timeouts += 1);
    }

    pub(crate) fn write_timeout(&self) {
        self.with(|s| s.write_timeouts += 1);
    }

    pub(crate) fn queue_overflow(&self) {
        self.with(|s| s.queue_overflows += 1);
    }

    pub(crate) fn oversized(&self) {
        self.with(|s| s.oversized_messages += 1);
    }

    pub(crate) fn snapshot(&self) -> HttpStats {
        self.with(|s| s.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_status_and_bucket() {
        let rec = StatsRecorder::new();
        rec.started();
        rec.started();
        rec.finished(200, Duration::from_millis(1));
        assert_eq!(rec.snapshot().in_flight, 1);
        rec.finished(404, Duration::from_secs(60));
        let s = rec.snapshot();
        assert_eq!(s.requests(), 2);
        assert_eq!(s.status(200), 1);
        assert_eq!(s.status(404), 1);
        assert_eq!(s.status(500), 0);
        assert_eq!(s.latency_buckets[0], 1);
        assert_eq!(s.latency_buckets[LATENCY_BUCKETS.len()], 1);
        assert_eq!(s.latency_buckets.iter().sum::<u64>(), 2);
        assert_eq!(s.in_flight, 0);
    }
}
