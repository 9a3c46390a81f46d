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
//! buffers); a completion backend hands the kernel one whole buffer at a
//! time, without copying it ([`OutQueue::take_batch`]), and gives back what
//! was not written ([`OutQueue::written`]).

use std::cell::RefCell;
use std::io::{self, IoSlice, Write};

use chatd_core::Priority;

/// A consumed prefix larger than this is given back by moving the rest
/// to the front (only once it is also at least half of the buffer, so the
/// move is paid for by what was written).
const COMPACT_AFTER: usize = 16 * 1024;

/// Most emptied queues a thread keeps for its connections' next output.
const SPARES: usize = 32;
/// Largest emptied queue kept for reuse (its buffers' capacity in all).
/// With [`SPARES`], at most 1 MiB per I/O thread.
const SPARE_CAPACITY: usize = 256 * 1024;

thread_local! {
    /// Emptied queues of this thread's connections. Under load most
    /// connections empty their queue every turn and fill it again the next;
    /// handing the buffers back to the allocator each time showed up as
    /// page faults and `free` in the profile. Each I/O thread owns its
    /// connections, so a thread-local pool needs no lock.
    #[allow(clippy::vec_box, reason = "a reused queue moves in and out as the box it lives in")]
    static SPARE: RefCell<Vec<Box<Pending>>> = const { RefCell::new(Vec::new()) };
}

/// One buffer handed to a completion write: it owns `bytes` while the
/// kernel sends `bytes[start..]`, then goes back through
/// [`OutQueue::written`].
#[derive(Debug)]
pub struct Batch {
    /// The buffer.
    pub bytes: Vec<u8>,
    /// Where the bytes to send begin (earlier ones were sent before).
    pub start: usize,
}

impl Batch {
    /// The bytes to send.
    pub fn unsent(&self) -> &[u8] {
        &self.bytes[self.start..]
    }
}

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
    /// An empty buffer for the next completion batch: the batch in flight
    /// and the lines queued behind it take turns with two buffers.
    spare: Vec<u8>,
}

impl Pending {
    /// An emptied queue of this thread's, or a new one.
    fn reused() -> Box<Self> {
        SPARE
            .with_borrow_mut(|spare| spare.pop())
            .unwrap_or_default()
    }

    /// Empties it and keeps it for reuse, if it is small enough.
    fn recycle(mut self: Box<Self>) {
        let capacity = self.committed.bytes.capacity()
            + self.urgent.bytes.capacity()
            + self.normal.bytes.capacity()
            + self.spare.capacity();
        if capacity > SPARE_CAPACITY {
            return;
        }
        for queue in [&mut self.committed, &mut self.urgent, &mut self.normal] {
            queue.consume(queue.len());
        }
        SPARE.with_borrow_mut(|spare| {
            if spare.len() < SPARES {
                spare.push(self);
            }
        });
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
}

impl OutQueue {
    /// Queues whole lines; returns the bytes now queued.
    pub fn push(&mut self, lines: &[u8], priority: Priority) -> usize {
        self.queued += lines.len();
        let pending = self.pending.get_or_insert_with(Pending::reused);
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

    /// Takes the next buffer to send, for a completion write that owns it:
    /// the committed bytes if any, else the urgent lines if any, else the
    /// normal ones. Whole buffers move, nothing is copied; the next batch
    /// takes the next buffer. It still counts as queued until
    /// [`OutQueue::written`]. `None` when nothing waits.
    pub fn take_batch(&mut self) -> Option<Batch> {
        let pending = self.pending.as_deref_mut()?;
        let queue = [
            &mut pending.committed,
            &mut pending.urgent,
            &mut pending.normal,
        ]
        .into_iter()
        .find(|queue| !queue.is_empty())?;
        let spare = std::mem::take(&mut pending.spare);
        let taken = std::mem::replace(
            queue,
            ByteQueue {
                bytes: spare,
                start: 0,
            },
        );
        Some(Batch {
            bytes: taken.bytes,
            start: taken.start,
        })
    }

    /// A completion write of `batch` wrote `written` of its bytes: what it
    /// did not write goes back in front of everything else. The buffer is
    /// kept for the next lines.
    pub fn written(&mut self, batch: Batch, written: usize) {
        self.queued -= written;
        let pending = self.pending.get_or_insert_with(Pending::reused);
        let Batch { mut bytes, start } = batch;
        if start + written < bytes.len() {
            let unwritten = ByteQueue {
                bytes,
                start: start + written,
            };
            // Only one write is in flight and only this adds committed
            // bytes, so there are none; keep any behind it regardless.
            let later = std::mem::replace(&mut pending.committed, unwritten);
            pending.committed.bytes.extend_from_slice(later.as_slice());
        } else if pending.spare.capacity() == 0 {
            bytes.clear();
            pending.spare = bytes;
        }
        if self.queued == 0 {
            self.release();
        }
    }

    /// Gives the buffers back (to the thread's spares or the allocator):
    /// an idle connection should cost next to nothing.
    fn release(&mut self) {
        if let Some(pending) = self.pending.take() {
            pending.recycle();
        }
    }

    /// Forgets `written` bytes from the front after a readiness write.
    fn consume(&mut self, mut written: usize) {
        self.queued -= written;
        if self.queued == 0 {
            self.release();
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

    /// Sends batches as a completion backend does, `budget` bytes per
    /// write, until the queue is empty; returns what went out.
    fn send_batches(queue: &mut OutQueue, budget: usize) -> Vec<u8> {
        let mut wire = Vec::new();
        while let Some(batch) = queue.take_batch() {
            let written = batch.unsent().len().min(budget);
            wire.extend_from_slice(&batch.unsent()[..written]);
            queue.written(batch, written);
        }
        wire
    }

    #[test]
    fn completion_batches_hand_back_what_was_not_written() {
        let mut queue = OutQueue::default();
        queue.push(b"one\n", Priority::Normal);
        queue.push(b"two\n", Priority::Normal);
        let batch = queue.take_batch().unwrap();
        assert_eq!(batch.unsent(), b"one\ntwo\n");
        queue.push(b"NOW\n", Priority::Urgent);
        // Six bytes went out: "one\n" and "tw"; "o\n" keeps its place.
        queue.written(batch, 6);
        assert_eq!(queue.queued(), 6);
        let rest = queue.take_batch().unwrap();
        assert_eq!(rest.unsent(), b"o\n");
        queue.written(rest, 2);
        assert_eq!(send_batches(&mut queue, 100), b"NOW\n");
        assert!(queue.is_empty());
        assert!(queue.take_batch().is_none());
    }

    #[test]
    fn completion_batches_never_split_or_reorder_lines_whatever_the_kernel_takes() {
        for budget in [1, 3, 5, 64] {
            let mut queue = OutQueue::default();
            let mut wire = Vec::new();
            for i in 0..20 {
                let priority = if i % 7 == 3 {
                    Priority::Urgent
                } else {
                    Priority::Normal
                };
                queue.push(format!("line {i}\n").as_bytes(), priority);
                if let Some(batch) = queue.take_batch() {
                    let written = batch.unsent().len().min(budget);
                    wire.extend_from_slice(&batch.unsent()[..written]);
                    queue.written(batch, written);
                }
            }
            wire.extend(send_batches(&mut queue, budget));
            let text = String::from_utf8(wire).unwrap();
            let numbers: Vec<u32> = text
                .lines()
                .map(|line| line.strip_prefix("line ").unwrap().parse().unwrap())
                .collect();
            assert_eq!(numbers.len(), 20, "budget {budget}: {text:?}");
            // Urgent lines may overtake normal ones; within each kind the
            // order is kept.
            for urgent in [true, false] {
                let kind: Vec<u32> = numbers
                    .iter()
                    .copied()
                    .filter(|n| (n % 7 == 3) == urgent)
                    .collect();
                assert!(kind.is_sorted(), "budget {budget}: {text:?}");
            }
        }
    }

    #[test]
    fn lines_queued_during_a_completion_write_follow_it() {
        let mut queue = OutQueue::default();
        queue.push(b"first\n", Priority::Normal);
        let batch = queue.take_batch().unwrap();
        queue.push(b"second\n", Priority::Normal);
        queue.written(batch, 6);
        assert_eq!(queue.queued(), 7);
        assert_eq!(send_batches(&mut queue, 100), b"second\n");
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

    fn spares() -> usize {
        SPARE.with_borrow(Vec::len)
    }

    #[test]
    fn an_emptied_queue_is_kept_for_the_next_output_unless_it_is_large() {
        let mut queue = OutQueue::default();
        queue.push(b"hello\n", Priority::Normal);
        let mut socket = Trickle::with_budget(usize::MAX);
        assert!(queue.flush(&mut socket).unwrap());
        assert!(queue.pending.is_none(), "an empty queue holds no buffer");
        assert_eq!(spares(), 1);
        queue.push(b"again\n", Priority::Normal);
        assert_eq!(spares(), 0);
        assert!(queue.pending.as_ref().unwrap().normal.bytes.capacity() >= 7);

        queue.push(&vec![b'x'; SPARE_CAPACITY], Priority::Normal);
        assert!(queue.flush(&mut socket).unwrap());
        assert_eq!(spares(), 0, "a large buffer goes back to the allocator");
    }

    #[test]
    fn completion_batches_take_turns_with_two_buffers() {
        let mut queue = OutQueue::default();
        queue.push(b"one\n", Priority::Normal);
        let first = queue.take_batch().unwrap();
        queue.push(b"two\n", Priority::Normal);
        let first_at = first.bytes.as_ptr();
        queue.written(first, 4);
        let second = queue.take_batch().unwrap();
        assert_eq!(second.unsent(), b"two\n");
        queue.push(b"three\n", Priority::Normal);
        assert_eq!(
            queue.pending.as_ref().unwrap().normal.bytes.as_ptr(),
            first_at,
            "the first batch's buffer takes the next lines"
        );
        queue.written(second, 4);
        assert_eq!(send_batches(&mut queue, 100), b"three\n");
    }
}
