//! What a node knows of each other node: whether it is up, and the state of the one
//! ordered stream between the two (the connection).
//!
//! A connection is a pair of sessions, one each way. The sender numbers its frames
//! 1, 2, 3, ... within its session; the receiver accepts only the next number. A gap
//! (a frame lost, or one out of order) ends the connection instead of delivering out
//! of order: both sides fire every link and monitor across it with `noconnection`,
//! and the next frame each way starts a new session at 1. A frame that starts a new
//! session while the old one stood means the other side ended the connection; this
//! side ends its own too before accepting it.

use std::time::Instant;

/// Counters for one peer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerStats {
    /// Frames sent to it.
    pub frames_sent: u64,
    /// Bytes of frames sent to it.
    pub bytes_sent: u64,
    /// Frames from it accepted.
    pub frames_received: u64,
    /// Bytes of frames from it accepted.
    pub bytes_received: u64,
    /// Frames from it refused (wrong sequence, forged pids, malformed).
    pub frames_refused: u64,
    /// Connections to it that ended (by a gap, its disconnect, or its silence).
    pub connections_ended: u64,
    /// Times it was declared down for its silence.
    pub downs: u64,
    /// Processes spawned here at its request.
    pub spawns_served: u64,
    /// Spawn requests from it refused here (more asked than its caller holds, an
    /// unknown component or policy, a malformed request).
    pub spawns_refused: u64,
}

/// One other node.
#[derive(Debug)]
pub(crate) struct Peer {
    pub(crate) name: String,
    pub(crate) last_seen: Instant,
    pub(crate) up: bool,
    tx_session: u32,
    tx_seq: u64,
    rx_session: Option<u32>,
    rx_seq: u64,
    pub(crate) stats: PeerStats,
}

/// What to do with a frame that arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The next frame of the stream: deliver it.
    Deliver,
    /// The first frame of a new session from a peer whose previous session stood: end
    /// this side of the connection, then deliver it.
    Restart,
    /// Not the next frame: drop it and end the connection; `established` says whether
    /// anything had crossed it (only then is there anything to fire).
    Gap { established: bool },
}

impl Peer {
    pub(crate) fn new(name: String, now: Instant) -> Peer {
        Peer {
            name,
            last_seen: now,
            up: true,
            tx_session: 1,
            tx_seq: 0,
            rx_session: None,
            rx_seq: 0,
            stats: PeerStats::default(),
        }
    }

    /// The session and sequence number of the next frame to send.
    pub(crate) fn next_out(&mut self) -> (u32, u64) {
        self.tx_seq += 1;
        (self.tx_session, self.tx_seq)
    }

    /// Judge a frame of `session` numbered `seq`.
    pub(crate) fn judge(&mut self, session: u32, seq: u64) -> Verdict {
        match self.rx_session {
            Some(current) if current == session => {
                if seq == self.rx_seq.wrapping_add(1) {
                    self.rx_seq = seq;
                    Verdict::Deliver
                } else {
                    Verdict::Gap { established: true }
                }
            }
            Some(_) if seq == 1 => {
                self.end();
                self.rx_session = Some(session);
                self.rx_seq = 1;
                Verdict::Restart
            }
            Some(_) => Verdict::Gap { established: true },
            None if seq == 1 => {
                self.rx_session = Some(session);
                self.rx_seq = 1;
                Verdict::Deliver
            }
            None => Verdict::Gap {
                established: self.tx_seq > 0,
            },
        }
    }

    /// End the connection: the next frame each way starts a new session. Returns
    /// whether anything had crossed it.
    pub(crate) fn end(&mut self) -> bool {
        let established = self.rx_session.is_some() || self.tx_seq > 0;
        self.tx_session = self.tx_session.wrapping_add(1);
        self.tx_seq = 0;
        self.rx_session = None;
        self.rx_seq = 0;
        self.stats.connections_ended += u64::from(established);
        established
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> Peer {
        Peer::new("b".into(), Instant::now())
    }

    #[test]
    fn frames_in_order_are_delivered() {
        let mut p = peer();
        for seq in 1..=5 {
            assert_eq!(p.judge(1, seq), Verdict::Deliver);
        }
    }

    #[test]
    fn a_gap_or_a_repeat_is_refused() {
        let mut p = peer();
        assert_eq!(p.judge(1, 1), Verdict::Deliver);
        assert_eq!(p.judge(1, 3), Verdict::Gap { established: true });
        let mut p = peer();
        assert_eq!(p.judge(1, 1), Verdict::Deliver);
        assert_eq!(p.judge(1, 1), Verdict::Gap { established: true });
    }

    #[test]
    fn a_stream_must_start_at_one() {
        let mut p = peer();
        assert_eq!(p.judge(1, 2), Verdict::Gap { established: false });
        p.next_out();
        assert_eq!(p.judge(1, 2), Verdict::Gap { established: true });
    }

    #[test]
    fn a_new_session_restarts_the_connection_and_resets_our_side() {
        let mut p = peer();
        assert_eq!(p.next_out(), (1, 1));
        assert_eq!(p.judge(4, 1), Verdict::Deliver);
        assert_eq!(p.judge(5, 1), Verdict::Restart);
        assert_eq!(p.next_out(), (2, 1), "our side starts a new session too");
        assert_eq!(p.judge(5, 2), Verdict::Deliver);
        assert_eq!(p.judge(6, 3), Verdict::Gap { established: true });
    }

    #[test]
    fn ending_counts_only_connections_that_carried_something() {
        let mut p = peer();
        assert!(!p.end());
        p.next_out();
        assert!(p.end());
        assert_eq!(p.stats.connections_ended, 1);
        assert_eq!(p.next_out(), (3, 1));
    }
}
