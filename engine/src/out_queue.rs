//! One connection's outbound queue: whole lines waiting for the socket,
//! shared by both backends.
//!
//! Lines are copied into the connection's own byte buffers as they are
//! queued, so a busy connection's output leaves in one contiguous write
//! however many lines it holds. The copy is one `memcpy` of a line that
//! is hot in cache (the kernel copies it again either way); it replaced a
//! deque of shared `Bytes` whose per-line reference counting, per-line
//! `iovec` in the kernel's copy and deque growth cost more than the line
//! itself (ARCHITECTURE.md, decision 19).
//!
//! Urgent lines overtake queued normal ones but never split a line: bytes
//! whose place on the wire is fixed (the rest of a partly written line,
//! what a completion write handed back) go first. A readiness backend
//! flushes with [`OutQueue::flush`] (one `writev` of at most three
//! buffers); a completion backend hands the kernel an owned buffer
//! ([`OutQueue::take_batch`]) and gives back what was not written
//! ([`OutQueue::written`]).

use std::io::{self, IoSlice, Write};

use chatd_core::Priority;

/// A consumed prefix larger than this is given back by moving the rest
/// to the front (only once it is also at least half of the buffer, so the
/// move is paid for by what was written).
const COMPACT_AFTER: usize = 16 * 1024;

/// Queued output of one connection.
#[derive(Debug, Default)]
pub struct OutQueue {
    /// The buffers, allocated only while something is queued: an idle
    /// connection's queue is two words.
    pending: Option<Box<Pending>>,
    /// Bytes waiting, including those in a completion write in flight.
    queued: usize,
}

/// The three queues, in wire order.
#[derive(Debug, Default)]
struct Pending {
    /// Bytes whose place on the wire is fixed.
    committed: ByteQueue,
    urgent: ByteQueue,
    normal: ByteQueue,
}

impl Pending {
    fn len(&self) -> usize {
        self.committed.len() + self.urgent.len() + self.normal.len()
    }
}

/// Bytes with a consumed prefix, so a partial write costs no move.
#[derive(Debug, Default)]
struct ByteQueue {
    bytes: Vec<u8>,
    start: usize,
}

impl ByteQueue {
    fn len(&self) -> usize {
        self.bytes.len() - self.start
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn as_slice(&self) -> &[u8] {
        &self.bytes[self.start..]
    }

    /// Drops the first `n` bytes (at most [`ByteQueue::len`]).
    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.bytes.len() {
            self.bytes.clear();
            self.start = 0;
        } else if self.start > COMPACT_AFTER && self.start * 2 > self.bytes.len() {
            self.bytes.drain(..self.start);
            self.start = 0;
        }
    }

    /// Takes every byte, leaving the queue empty.
    fn take(&mut self) -> Vec<u8> {
        let mut bytes = std::mem::take(&mut self.bytes);
        if self.start > 0 {
            bytes.drain(..std::mem::take(&mut self.start));
        }
        bytes
    }
}

impl OutQueue {
    /// Queues whole lines; returns the bytes now queued.
    pub fn push(&mut self, lines: &[u8], priority: Priority) -> usize {
        self.queued += lines.len();
        let pending = self.pending.get_or_insert_with(Box::default);
        match priority {
            Priority::Urgent => pending.urgent.bytes.extend_from_slice(lines),
            Priority::Normal => pending.normal.bytes.extend_from_slice(lines),
        }
        self.queued
    }

    /// Bytes waiting.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// Writes as much as the socket takes. Returns `Ok(true)` when the
    /// queue is empty, `Ok(false)` when the socket would block.
    pub fn flush(&mut self, socket: &mut impl Write) -> io::Result<bool> {
        while let Some(pending) = self.pending.as_deref_mut() {
            let slices = [
                IoSlice::new(pending.committed.as_slice()),
                IoSlice::new(pending.urgent.as_slice()),
                IoSlice::new(pending.normal.as_slice()),
            ];
            let first = slices.iter().position(|s| !s.is_empty()).unwrap_or(3);
            let written = match socket.write_vectored(&slices[first..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            };
            self.consume(written);
        }
        Ok(true)
    }

    /// Takes everything queued, in wire order, for a completion write that
    /// owns its buffer. It still counts as queued until
    /// [`OutQueue::written`]. Empty when nothing waits.
    pub fn take_batch(&mut self) -> Vec<u8> {
        let Some(pending) = self.pending.as_deref_mut() else {
            return Vec::new();
        };
        if pending.committed.is_empty() && pending.urgent.is_empty() {
            return pending.normal.take();
        }
        let mut batch = Vec::with_capacity(pending.len());
        for queue in [
            &mut pending.committed,
            &mut pending.urgent,
            &mut pending.normal,
        ] {
            batch.extend_from_slice(queue.as_slice());
            queue.consume(queue.len());
        }
        batch
    }

    /// A completion write of `batch` wrote `written` bytes: what it did not
    /// write goes back in front of everything else. The buffer is kept for
    /// the next lines when nothing was queued meanwhile.
    pub fn written(&mut self, mut batch: Vec<u8>, written: usize) {
        self.queued -= written;
        if self.queued == 0 {
            self.pending = None;
            return;
        }
        let pending = self.pending.get_or_insert_with(Box::default);
        if written < batch.len() {
            let unwritten = ByteQueue {
                bytes: batch,
                start: written,
            };
            // Only one write is in flight, so nothing was committed since
            // the batch was taken; keep any such bytes behind it regardless.
            let later = std::mem::replace(&mut pending.committed, unwritten);
            pending.committed.bytes.extend_from_slice(later.as_slice());
        } else if pending.normal.bytes.capacity() == 0 {
            batch.clear();
            pending.normal.bytes = batch;
        }
    }

    /// Forgets `written` bytes from the front after a readiness write.
    fn consume(&mut self, mut written: usize) {
        self.queued -= written;
        if self.queued == 0 {
            // Gives the buffers back: an idle connection should cost next
            // to nothing.
            self.pending = None;
            return;
        }
        let Some(pending) = self.pending.as_deref_mut() else {
            return;
        };
        for queue in [&mut pending.committed, &mut pending.urgent] {
            let taken = written.min(queue.len());
            queue.consume(taken);
            written -= taken;
        }
        if written == 0 {
            return;
        }
        // The write ended inside the normal lines: unless it ended on a
        // line's end, the rest of that line is committed, so an urgent
        // line queued now cannot land in the middle of it.
        let sent = &pending.normal.as_slice()[..written];
        if sent.last() != Some(&b'\n') {
            let rest = &pending.normal.as_slice()[written..];
            let line_end = memchr::memchr(b'\n', rest).map_or(rest.len(), |at| at + 1);
            pending.committed.bytes.extend_from_slice(&rest[..line_end]);
            written += line_end;
        }
        pending.normal.consume(written);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket that takes at most `budget` bytes per call, then blocks.
    struct Trickle {
        taken: Vec<u8>,
        budget: usize,
        calls: usize,
    }

    impl Trickle {
        fn with_budget(budget: usize) -> Self {
            Self {
                taken: Vec::new(),
                budget,
                calls: 0,
            }
        }
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }

        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            if self.budget == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.calls += 1;
            let mut n = 0;
            for buf in bufs {
                let take = buf.len().min(self.budget - n);
                self.taken.extend_from_slice(&buf[..take]);
                n += take;
                if n == self.budget {
                    break;
                }
            }
            self.budget -= n;
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn many_lines_leave_in_one_write() {
        let mut queue = OutQueue::default();
        for i in 0..100 {
            queue.push(format!("line {i}\n").as_bytes(), Priority::Normal);
        }
        let mut socket = Trickle::with_budget(1 << 20);
        assert!(queue.flush(&mut socket).unwrap());
        assert_eq!(socket.calls, 1);
        let text = String::from_utf8(socket.taken).unwrap();
        assert!(text.starts_with("line 0\nline 1\n"));
        assert!(text.ends_with("line 99\n"));
        assert!(queue.is_empty());
    }

    #[test]
    fn completion_batches_hand_back_what_was_not_written() {
        let mut queue = OutQueue::default();
        queue.push(b"one\n", Priority::Normal);
        queue.push(b"two\n", Priority::Normal);
        let batch = queue.take_batch();
        assert_eq!(batch, b"one\ntwo\n");
        queue.push(b"NOW\n", Priority::Urgent);
        // Six bytes went out: "one\n" and "tw"; "o\n" keeps its place.
        queue.written(batch, 6);
        assert_eq!(queue.queued(), 6);
        let rest = queue.take_batch();
        assert_eq!(rest, b"o\nNOW\n");
        queue.written(rest, 6);
        assert!(queue.is_empty());
        assert!(queue.take_batch().is_empty());
    }

    #[test]
    fn lines_queued_during_a_completion_write_follow_it() {
        let mut queue = OutQueue::default();
        queue.push(b"first\n", Priority::Normal);
        let batch = queue.take_batch();
        queue.push(b"second\n", Priority::Normal);
        queue.written(batch, 6);
        assert_eq!(queue.queued(), 7);
        assert_eq!(queue.take_batch(), b"second\n");
    }

    #[test]
    fn urgent_overtakes_queued_lines_but_never_splits_one() {
        let mut queue = OutQueue::default();
        queue.push(b"first line\n", Priority::Normal);
        queue.push(b"second\n", Priority::Normal);
        let mut socket = Trickle::with_budget(4);
        assert!(!queue.flush(&mut socket).unwrap());
        queue.push(b"URGENT\n", Priority::Urgent);
        socket.budget = 1 << 10;
        assert!(queue.flush(&mut socket).unwrap());
        assert_eq!(socket.taken, b"first line\nURGENT\nsecond\n");
        assert_eq!(queue.queued(), 0);
    }

    #[test]
    fn a_write_ending_on_a_line_end_lets_urgent_lines_in_there() {
        let mut queue = OutQueue::default();
        queue.push(b"one\ntwo\n", Priority::Normal);
        let mut socket = Trickle::with_budget(4);
        assert!(!queue.flush(&mut socket).unwrap());
        queue.push(b"NOW\n", Priority::Urgent);
        socket.budget = 1 << 10;
        assert!(queue.flush(&mut socket).unwrap());
        assert_eq!(socket.taken, b"one\nNOW\ntwo\n");
    }

    #[test]
    fn a_slow_reader_does_not_keep_what_it_already_took() {
        let mut queue = OutQueue::default();
        let line: Vec<u8> = [b'x'; 99].iter().chain(b"\n").copied().collect();
        for _ in 0..10 {
            queue.push(&line, Priority::Normal);
        }
        // Half a line first, so every later write ends inside a line.
        let mut socket = Trickle::with_budget(50);
        assert!(!queue.flush(&mut socket).unwrap());
        for _ in 0..2_000 {
            queue.push(&line, Priority::Normal);
            socket.budget = line.len();
            assert!(!queue.flush(&mut socket).unwrap());
            assert_eq!(queue.queued(), 950);
            let pending = queue.pending.as_ref().unwrap();
            // 200,000 bytes go through; what stays allocated is bounded by
            // what waits and the compaction threshold, not by the total.
            let held = pending.committed.bytes.len() + pending.normal.bytes.len();
            assert!(held <= COMPACT_AFTER + 2 * 950, "{held} bytes held");
        }
        socket.budget = usize::MAX;
        assert!(queue.flush(&mut socket).unwrap());
        assert_eq!(socket.taken.len(), 201_000);
        assert!(socket.taken.chunks(100).all(|chunk| chunk == line));
    }
}
