//! The mailbox: an ordered queue with an index by tag.
//!
//! # Complexity
//!
//! Messages live in one queue in arrival order. Each entry carries a sequence number;
//! taking a message out of the middle leaves a tombstone that is skipped, and the queue
//! is compacted once tombstones outnumber live entries (amortised O(1) per removal).
//!
//! Data messages are indexed by tag (tag → sequence numbers, in order), lazily: the
//! index is built the first time a tag receive finds another message at the front, kept
//! up to date while the mailbox holds messages, and dropped when it empties. A mailbox
//! used only with plain receives, or whose tag receives always find their message at
//! the front (call/reply), never pays for it.
//!
//! - `take_any` (plain receive): O(1) amortised.
//! - `take_tag` (selective receive by tag): O(1) when the front message matches;
//!   otherwise O(log n) — a hash lookup plus a binary search — once the index exists,
//!   and building the index is one O(n) pass per busy period. Repeated tag receives over
//!   a long mailbox are therefore O(n + m log n) in total, never quadratic.
//! - `take_match` (selective receive by predicate): examines messages in order from the
//!   receive's *save point*, so one waiting receive examines each message at most once,
//!   however many times it wakes up; a predicate receive that has to skip k
//!   non-matching messages costs O(k), as in Erlang.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;

use crate::error::SendErrorKind;
use crate::message::{Message, Tag};

/// What happens when a message arrives at a full bounded mailbox.
///
/// Only data messages count against the capacity and are ever dropped: exit signals and
/// `Down` messages are always delivered, because supervision depends on them.
/// The sender is never blocked and never fails with `send`; `try_send` reports the
/// overflow by handing the message back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Drop the arriving message (the default).
    #[default]
    DropNewest,
    /// Drop the oldest data message in the mailbox to make room for the new one.
    DropOldest,
    /// Refuse the arriving message as [`Overflow::DropNewest`] drops it, and say so:
    /// `try_send` reports [`SendErrorKind::Refused`] rather than
    /// [`SendErrorKind::Full`], so a sender that can see errors is told the message
    /// was not queued and why.
    Refuse,
}

/// Mailbox settings for one process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MailboxConfig {
    /// The most data messages the mailbox holds at once; `None` means unbounded.
    pub capacity: Option<usize>,
    /// What to do when a data message arrives at a full mailbox.
    pub overflow: Overflow,
    /// The most bytes of data payloads ([`Payload::Bytes`](crate::Payload::Bytes)) the
    /// mailbox holds at once; a message that would pass it meets a full mailbox.
    /// `None` means unbounded.
    pub max_bytes: Option<usize>,
    /// The largest data payload the process accepts, in bytes: a larger message is
    /// refused at the send ([`SendErrorKind::TooLarge`](crate::SendErrorKind::TooLarge)
    /// for `try_send`) and never queued. `None` means any.
    pub max_message: Option<usize>,
}

impl MailboxConfig {
    /// Why a data message of `size` payload bytes cannot be queued in a mailbox with
    /// `len` data messages and `bytes` payload bytes waiting, if it cannot.
    fn refusal(&self, size: usize, len: usize, bytes: usize) -> Option<SendErrorKind> {
        if let Some(limit) = self.max_message
            && size > limit
        {
            return Some(SendErrorKind::TooLarge { size, limit });
        }
        let full_count = self.capacity.is_some_and(|cap| len >= cap);
        let full_bytes = self
            .max_bytes
            .is_some_and(|max| bytes.saturating_add(size) > max);
        (full_count || full_bytes).then_some(SendErrorKind::Full)
    }
}

/// Counters a mailbox keeps about itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MailboxStats {
    /// Messages waiting now.
    pub len: usize,
    /// The most messages that ever waited at once.
    pub high_water: usize,
    /// Data messages dropped (or refused) because the mailbox was full.
    pub dropped: u64,
    /// Messages inspected by receives (a tag receive counts the one entry it takes;
    /// a predicate receive counts every message it shows the predicate).
    pub examined: u64,
}

pub(crate) struct Entry {
    seq: u64,
    msg: Option<Message>,
}

pub(crate) struct Mailbox {
    queue: VecDeque<Entry>,
    next_seq: u64,
    tombstones: usize,
    data_len: usize,
    /// Payload bytes of the data messages waiting.
    data_bytes: usize,
    by_tag: FxHashMap<Tag, VecDeque<u64>>,
    /// Whether `by_tag` is maintained (see the module docs).
    indexed: bool,
    config: MailboxConfig,
    high_water: usize,
    dropped: u64,
    examined: u64,
}

/// The outcome of a predicate receive that found nothing.
#[derive(Debug)]
pub(crate) struct Scanned {
    /// The first sequence number not yet shown to the predicate.
    pub next_seq: u64,
}

impl Mailbox {
    pub(crate) fn new(config: MailboxConfig) -> Mailbox {
        Mailbox {
            queue: VecDeque::new(),
            next_seq: 0,
            tombstones: 0,
            data_len: 0,
            data_bytes: 0,
            by_tag: FxHashMap::default(),
            indexed: false,
            config,
            high_water: 0,
            dropped: 0,
            examined: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.queue.len() - self.tombstones
    }

    /// System messages (`down`, `exit`) waiting: these never count against the bound.
    pub(crate) fn system_len(&self) -> usize {
        self.len() - self.data_len
    }

    pub(crate) fn stats(&self) -> MailboxStats {
        MailboxStats {
            len: self.len(),
            high_water: self.high_water,
            dropped: self.dropped,
            examined: self.examined,
        }
    }

    /// Count a data message refused at the send.
    pub(crate) fn count_dropped(&mut self) {
        self.dropped += 1;
    }

    /// Why a data message of `size` payload bytes would not be queued now, if it would
    /// not (with [`Overflow::DropOldest`] a full mailbox makes room instead).
    pub(crate) fn refusal(&self, size: usize) -> Option<SendErrorKind> {
        match self.config.refusal(size, self.data_len, self.data_bytes)? {
            SendErrorKind::Full if self.config.overflow == Overflow::DropOldest => {
                let never_fits = self.config.capacity == Some(0)
                    || self.config.max_bytes.is_some_and(|max| size > max);
                never_fits.then_some(SendErrorKind::Full)
            }
            SendErrorKind::Full if self.config.overflow == Overflow::Refuse => {
                Some(SendErrorKind::Refused)
            }
            why => Some(why),
        }
    }

    /// Append a message. A data message that does not fit is handed back.
    pub(crate) fn push(&mut self, msg: Message) -> Result<(), Message> {
        if let Message::Data(data) = &msg {
            let size = data.payload.byte_len();
            if self.refusal(size).is_some() {
                self.dropped += 1;
                return Err(msg);
            }
            // Room is made by dropping the oldest data messages (DropOldest), or there
            // is room already.
            while self
                .config
                .refusal(size, self.data_len, self.data_bytes)
                .is_some()
            {
                self.dropped += 1;
                self.drop_oldest_data();
            }
            self.data_len += 1;
            self.data_bytes += size;
            if self.indexed {
                self.by_tag
                    .entry(data.tag)
                    .or_default()
                    .push_back(self.next_seq);
            }
        }
        self.queue.push_back(Entry {
            seq: self.next_seq,
            msg: Some(msg),
        });
        self.next_seq += 1;
        self.high_water = self.high_water.max(self.len());
        Ok(())
    }

    fn drop_oldest_data(&mut self) {
        let pos = self
            .queue
            .iter()
            .position(|e| matches!(e.msg, Some(Message::Data(_))))
            .expect("a full mailbox holds a data message");
        drop(self.take_at(pos));
    }

    /// Plain receive: the oldest message of any kind.
    pub(crate) fn take_any(&mut self) -> Option<Message> {
        let pos = self.queue.iter().position(|e| e.msg.is_some())?;
        self.examined += 1;
        Some(self.take_at(pos))
    }

    /// Selective receive by tag: the oldest data message with this tag.
    pub(crate) fn take_tag(&mut self, tag: Tag) -> Option<Message> {
        if !self.indexed {
            // The front is always live (see `tidy`): the common call/reply case.
            let front = self.queue.front()?;
            self.examined += 1;
            if matches!(&front.msg, Some(Message::Data(d)) if d.tag == tag) {
                return Some(self.take_at(0));
            }
            self.build_index();
        }
        let seq = *self.by_tag.get(&tag)?.front()?;
        let pos = self.position_of(seq);
        self.examined += 1;
        Some(self.take_at(pos))
    }

    fn build_index(&mut self) {
        for entry in &self.queue {
            if let Some(Message::Data(data)) = &entry.msg {
                self.by_tag
                    .entry(data.tag)
                    .or_default()
                    .push_back(entry.seq);
            }
        }
        self.examined += self.len() as u64;
        self.indexed = true;
    }

    /// Selective receive by predicate, starting at `from_seq` (the receive's save point).
    pub(crate) fn take_match(
        &mut self,
        from_seq: u64,
        pred: &mut dyn FnMut(&Message) -> bool,
    ) -> Result<Message, Scanned> {
        let start = self.queue.partition_point(|e| e.seq < from_seq);
        let mut found = None;
        for (offset, entry) in self.queue.range(start..).enumerate() {
            if let Some(msg) = &entry.msg {
                self.examined += 1;
                if pred(msg) {
                    found = Some(start + offset);
                    break;
                }
            }
        }
        match found {
            Some(pos) => Ok(self.take_at(pos)),
            None => Err(Scanned {
                next_seq: self.next_seq,
            }),
        }
    }

    /// Remove every message the predicate selects (used to flush stale system messages).
    pub(crate) fn remove_all(&mut self, mut pred: impl FnMut(&Message) -> bool) -> usize {
        let positions: Vec<usize> = self
            .queue
            .iter()
            .enumerate()
            .filter(|(_, e)| e.msg.as_ref().is_some_and(&mut pred))
            .map(|(pos, _)| pos)
            .collect();
        // Removing leaves tombstones, so the positions stay valid; compaction is
        // deferred until all are taken.
        for &pos in &positions {
            let entry = &mut self.queue[pos];
            let seq = entry.seq;
            let msg = entry.msg.take().expect("selected entries are live");
            self.tombstones += 1;
            self.unindex(seq, &msg);
        }
        self.tidy();
        positions.len()
    }

    /// Drop everything (the process ended).
    pub(crate) fn clear(&mut self) -> VecDeque<Entry> {
        self.by_tag.clear();
        self.indexed = false;
        self.tombstones = 0;
        self.data_len = 0;
        self.data_bytes = 0;
        std::mem::take(&mut self.queue)
    }

    fn position_of(&self, seq: u64) -> usize {
        self.queue
            .binary_search_by_key(&seq, |e| e.seq)
            .expect("indexed messages are in the queue")
    }

    fn take_at(&mut self, pos: usize) -> Message {
        let entry = &mut self.queue[pos];
        let seq = entry.seq;
        let msg = entry.msg.take().expect("take_at is given a live entry");
        self.tombstones += 1;
        self.unindex(seq, &msg);
        self.tidy();
        msg
    }

    fn unindex(&mut self, seq: u64, msg: &Message) {
        let Message::Data(data) = msg else { return };
        self.data_len -= 1;
        self.data_bytes -= data.payload.byte_len();
        if !self.indexed {
            return;
        }
        let seqs = self
            .by_tag
            .get_mut(&data.tag)
            .expect("data messages are indexed");
        if seqs.front() == Some(&seq) {
            seqs.pop_front();
        } else if let Ok(i) = seqs.binary_search(&seq) {
            seqs.remove(i);
        }
        if seqs.is_empty() {
            self.by_tag.remove(&data.tag);
        }
    }

    fn tidy(&mut self) {
        while self.queue.front().is_some_and(|e| e.msg.is_none()) {
            self.queue.pop_front();
            self.tombstones -= 1;
        }
        if self.indexed && self.queue.is_empty() {
            // Empty: the index is dropped until a tag receive needs it again.
            self.by_tag.clear();
            self.indexed = false;
        }
        if self.tombstones > 32 && self.tombstones * 2 > self.queue.len() {
            self.queue.retain(|e| e.msg.is_some());
            self.tombstones = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Data, Payload};

    fn data(tag: Tag, n: u32) -> Message {
        Message::Data(Data {
            tag,
            payload: Payload::value(n),
        })
    }

    fn num(msg: Message) -> (Tag, u32) {
        let d = msg.into_data().unwrap();
        (d.tag, d.payload.downcast::<u32>().unwrap())
    }

    #[test]
    fn plain_receive_is_fifo() {
        let mut mb = Mailbox::new(MailboxConfig::default());
        for i in 0..5 {
            mb.push(data(i % 2, i as u32)).unwrap();
        }
        let got: Vec<_> = std::iter::from_fn(|| mb.take_any()).map(num).collect();
        assert_eq!(got, vec![(0, 0), (1, 1), (0, 2), (1, 3), (0, 4)]);
        assert_eq!(mb.len(), 0);
    }

    #[test]
    fn tag_receive_keeps_order_of_the_rest() {
        let mut mb = Mailbox::new(MailboxConfig::default());
        for i in 0..6u32 {
            mb.push(data(if i == 2 || i == 4 { 7 } else { 1 }, i))
                .unwrap();
        }
        assert_eq!(num(mb.take_tag(7).unwrap()), (7, 2));
        assert_eq!(num(mb.take_tag(7).unwrap()), (7, 4));
        assert!(mb.take_tag(7).is_none());
        let rest: Vec<_> = std::iter::from_fn(|| mb.take_any())
            .map(|m| num(m).1)
            .collect();
        assert_eq!(rest, vec![0, 1, 3, 5]);
        assert!(
            mb.by_tag.is_empty(),
            "index entries are removed with their messages"
        );
    }

    #[test]
    fn tag_index_is_built_only_when_a_tag_receive_must_skip() {
        let mut mb = Mailbox::new(MailboxConfig::default());
        for i in 0..10u32 {
            mb.push(data(u64::from(i), i)).unwrap();
        }
        // Front matches: no index.
        assert_eq!(num(mb.take_tag(0).unwrap()), (0, 0));
        assert!(!mb.indexed);
        // Skipping the front builds it; it stays correct while messages come and go.
        assert_eq!(num(mb.take_tag(5).unwrap()), (5, 5));
        assert!(mb.indexed);
        mb.push(data(5, 50)).unwrap();
        assert_eq!(num(mb.take_any().unwrap()), (1, 1));
        assert_eq!(num(mb.take_tag(5).unwrap()), (5, 50));
        while mb.take_any().is_some() {}
        assert!(
            !mb.indexed && mb.by_tag.is_empty(),
            "an empty mailbox drops its index"
        );
    }

    #[test]
    fn predicate_receive_resumes_from_save_point() {
        let mut mb = Mailbox::new(MailboxConfig::default());
        for i in 0..3u32 {
            mb.push(data(0, i)).unwrap();
        }
        let mut calls = 0;
        let mut pred = |m: &Message| {
            calls += 1;
            m.tag() == Some(9)
        };
        let scanned = mb.take_match(0, &mut pred).unwrap_err();
        assert_eq!(scanned.next_seq, 3);
        mb.push(data(9, 3)).unwrap();
        let got = mb.take_match(scanned.next_seq, &mut pred).unwrap();
        assert_eq!(num(got), (9, 3));
        assert_eq!(calls, 4, "the first three messages are shown once only");
        assert_eq!(mb.len(), 3);
    }

    #[test]
    fn bounded_mailbox_drop_newest_and_oldest() {
        let cfg = MailboxConfig {
            capacity: Some(2),
            overflow: Overflow::DropNewest,
            ..MailboxConfig::default()
        };
        let mut mb = Mailbox::new(cfg);
        mb.push(data(0, 1)).unwrap();
        mb.push(data(0, 2)).unwrap();
        let back = mb.push(data(0, 3)).unwrap_err();
        assert_eq!(num(back).1, 3);
        assert_eq!(mb.stats().dropped, 1);

        let cfg = MailboxConfig {
            capacity: Some(2),
            overflow: Overflow::DropOldest,
            ..MailboxConfig::default()
        };
        let mut mb = Mailbox::new(cfg);
        for i in 1..=3 {
            mb.push(data(0, i)).unwrap();
        }
        let rest: Vec<_> = std::iter::from_fn(|| mb.take_any())
            .map(|m| num(m).1)
            .collect();
        assert_eq!(rest, vec![2, 3]);
    }

    fn bytes(tag: Tag, len: usize) -> Message {
        Message::Data(crate::message::Data {
            tag,
            payload: crate::Payload::Bytes(vec![0; len]),
        })
    }

    #[test]
    fn payload_bytes_are_bounded_and_large_messages_refused() {
        let cfg = MailboxConfig {
            max_bytes: Some(100),
            max_message: Some(60),
            ..MailboxConfig::default()
        };
        let mut mb = Mailbox::new(cfg);
        assert_eq!(
            mb.refusal(61),
            Some(SendErrorKind::TooLarge {
                size: 61,
                limit: 60
            })
        );
        mb.push(bytes(1, 60)).unwrap();
        mb.push(bytes(1, 40)).unwrap();
        assert_eq!(mb.refusal(1), Some(SendErrorKind::Full));
        assert!(
            mb.push(bytes(1, 1)).is_err(),
            "a full mailbox in bytes refuses"
        );
        // Native values count no bytes; taking a message frees its bytes.
        mb.push(data(2, 7)).unwrap();
        mb.take_tag(1).unwrap();
        mb.push(bytes(1, 60)).unwrap();
        assert_eq!(mb.stats().dropped, 1);

        let cfg = MailboxConfig {
            max_bytes: Some(100),
            overflow: Overflow::DropOldest,
            ..MailboxConfig::default()
        };
        let mut mb = Mailbox::new(cfg);
        for len in [50, 30, 40] {
            mb.push(bytes(u64::try_from(len).unwrap(), len)).unwrap();
        }
        // 50 went to make room for 40.
        assert_eq!(mb.take_any().map(|m| m.into_data().unwrap().tag), Some(30));
        assert!(mb.push(bytes(9, 101)).is_err(), "never fits, even emptied");
    }

    #[test]
    fn compaction_keeps_sequence_lookup_working() {
        let mut mb = Mailbox::new(MailboxConfig::default());
        for i in 0..1000u32 {
            mb.push(data(u64::from(i % 3 == 0), i)).unwrap();
        }
        // Take tag 1 from the middle repeatedly: tombstones pile up and get compacted.
        let mut taken = 0;
        while let Some(m) = mb.take_tag(1) {
            assert_eq!(num(m).1 % 3, 0);
            taken += 1;
        }
        assert_eq!(taken, 334);
        assert!(mb.tombstones <= mb.queue.len());
        let rest: Vec<_> = std::iter::from_fn(|| mb.take_any())
            .map(|m| num(m).1)
            .collect();
        assert_eq!(rest.len(), 666);
        assert!(rest.windows(2).all(|w| w[0] < w[1]), "order is kept");
    }
}
