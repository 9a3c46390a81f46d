//! One connection's outbound queue: whole lines waiting for the socket,
//! shared by both backends.
//!
//! Lines are shared `Bytes` (a broadcast line is one allocation for all its
//! recipients). Urgent lines overtake queued normal ones but never split a
//! line: bytes already committed to the wire go first. A readiness backend
//! flushes with [`OutQueue::flush`] (one `writev` of up to [`MAX_SLICES`]
//! lines per call); a completion backend hands the kernel an owned batch
//! ([`OutQueue::take_batch`]) and gives back what was not written
//! ([`OutQueue::written`]).

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};

use bytes::Bytes;
use chatd_core::Priority;

/// Most lines handed to one `writev`.
pub const MAX_SLICES: usize = 256;

/// Queued output of one connection.
#[derive(Debug, Default)]
pub struct OutQueue {
    /// Bytes whose place on the wire is fixed: the rest of a partly written
    /// line, or what a completion write handed back.
    /// The lines, allocated only while something is queued: an idle
    /// connection's queue is two words.
    lines: Option<Box<Lines>>,
    /// Bytes waiting, including those in a completion write in flight.
    queued: usize,
}

#[derive(Debug, Default)]
struct Lines {
    committed: VecDeque<Bytes>,
    urgent: VecDeque<Bytes>,
    normal: VecDeque<Bytes>,
}

impl OutQueue {
    /// Adds lines; returns the bytes now queued.
    pub fn push(&mut self, bytes: Bytes, priority: Priority) -> usize {
        self.queued += bytes.len();
        match priority {
            Priority::Urgent => self.lines_mut().urgent.push_back(bytes),
            Priority::Normal => self.lines_mut().normal.push_back(bytes),
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
        while !self.is_empty() {
            let written = {
                let slices = self.slices();
                match socket.write_vectored(&slices) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => n,
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                    Err(error) => return Err(error),
                }
            };
            self.consume(written);
        }
        self.release_memory();
        Ok(true)
    }

    /// Takes up to `max` lines, in wire order, for a completion write that
    /// owns its buffers. They still count as queued until [`OutQueue::written`].
    pub fn take_batch(&mut self, max: usize) -> Vec<Bytes> {
        let mut batch = Vec::with_capacity(max.min(self.lines()));
        while batch.len() < max {
            let Some(line) = self.pop_line() else {
                break;
            };
            batch.push(line);
        }
        batch
    }

    /// A completion write of `batch` wrote `written` bytes: what it did not
    /// write goes back in front of everything else, in order.
    pub fn written(&mut self, batch: Vec<Bytes>, mut written: usize) {
        self.queued -= written;
        let mut unwritten = Vec::new();
        for line in batch {
            if written >= line.len() {
                written -= line.len();
                continue;
            }
            unwritten.push(line.slice(written..));
            written = 0;
        }
        for line in unwritten.into_iter().rev() {
            self.lines_mut().committed.push_front(line);
        }
        if self.is_empty() {
            self.release_memory();
        }
    }

    fn lines_mut(&mut self) -> &mut Lines {
        self.lines.get_or_insert_with(Box::default)
    }

    fn lines(&self) -> usize {
        self.lines
            .as_ref()
            .map_or(0, |l| l.committed.len() + l.urgent.len() + l.normal.len())
    }

    fn pop_line(&mut self) -> Option<Bytes> {
        let lines = self.lines.as_mut()?;
        lines
            .committed
            .pop_front()
            .or_else(|| lines.urgent.pop_front())
            .or_else(|| lines.normal.pop_front())
    }

    /// Gives the queues' memory back: an idle connection should cost next
    /// to nothing.
    fn release_memory(&mut self) {
        self.lines = None;
    }

    fn slices(&self) -> Vec<IoSlice<'_>> {
        let Some(lines) = &self.lines else {
            return Vec::new();
        };
        lines
            .committed
            .iter()
            .chain(&lines.urgent)
            .chain(&lines.normal)
            .take(MAX_SLICES)
            .map(|line| IoSlice::new(line))
            .collect()
    }

    fn consume(&mut self, mut written: usize) {
        self.queued -= written;
        while written > 0 {
            let Some(line) = self.pop_line() else {
                return;
            };
            if written < line.len() {
                self.lines_mut().committed.push_front(line.slice(written..));
                return;
            }
            written -= line.len();
        }
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
    fn many_lines_leave_in_one_vectored_write() {
        let mut queue = OutQueue::default();
        for i in 0..100 {
            queue.push(Bytes::from(format!("line {i}\n")), Priority::Normal);
        }
        let mut socket = Trickle {
            taken: Vec::new(),
            budget: 1 << 20,
            calls: 0,
        };
        assert!(queue.flush(&mut socket).unwrap());
        assert_eq!(socket.calls, 1);
        assert!(
            String::from_utf8(socket.taken)
                .unwrap()
                .ends_with("line 99\n")
        );
    }

    #[test]
    fn completion_batches_hand_back_what_was_not_written() {
        let mut queue = OutQueue::default();
        queue.push(Bytes::from_static(b"one\n"), Priority::Normal);
        queue.push(Bytes::from_static(b"two\n"), Priority::Normal);
        let batch = queue.take_batch(8);
        assert_eq!(batch.len(), 2);
        queue.push(Bytes::from_static(b"NOW\n"), Priority::Urgent);
        // Six bytes went out: "one\n" and "tw"; "o\n" keeps its place.
        queue.written(batch, 6);
        assert_eq!(queue.queued(), 6);
        let rest: Vec<Bytes> = queue.take_batch(8);
        assert_eq!(
            rest,
            [Bytes::from_static(b"o\n"), Bytes::from_static(b"NOW\n")]
        );
        queue.written(rest, 6);
        assert!(queue.is_empty());
    }

    #[test]
    fn urgent_overtakes_queued_lines_but_never_splits_one() {
        let mut queue = OutQueue::default();
        queue.push(Bytes::from_static(b"first line\n"), Priority::Normal);
        queue.push(Bytes::from_static(b"second\n"), Priority::Normal);
        let mut socket = Trickle {
            taken: Vec::new(),
            budget: 4,
            calls: 0,
        };
        assert!(!queue.flush(&mut socket).unwrap());
        queue.push(Bytes::from_static(b"URGENT\n"), Priority::Urgent);
        socket.budget = 1 << 10;
        assert!(queue.flush(&mut socket).unwrap());
        assert_eq!(socket.taken, b"first line\nURGENT\nsecond\n");
        assert_eq!(queue.queued(), 0);
    }
}
