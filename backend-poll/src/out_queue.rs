//! One connection's outbound queue: whole lines waiting for the socket.
//!
//! Lines are shared `Bytes` (a broadcast line is one allocation for all its
//! recipients). Urgent lines overtake queued normal ones but never split a
//! line: the line already being written finishes first. A flush hands the
//! socket up to [`MAX_SLICES`] lines in one vectored write.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};

use bytes::Bytes;
use chatd_core::Priority;

/// Most lines handed to one `writev`.
pub const MAX_SLICES: usize = 256;

/// Queued output of one connection.
#[derive(Debug, Default)]
pub struct OutQueue {
    /// The line being written and how much of it is gone.
    started: Option<(Bytes, usize)>,
    urgent: VecDeque<Bytes>,
    normal: VecDeque<Bytes>,
    queued: usize,
}

impl OutQueue {
    /// Adds lines; returns the bytes now queued.
    pub fn push(&mut self, bytes: Bytes, priority: Priority) -> usize {
        self.queued += bytes.len();
        match priority {
            Priority::Urgent => self.urgent.push_back(bytes),
            Priority::Normal => self.normal.push_back(bytes),
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
        // Give the queues' memory back: an idle connection should cost next
        // to nothing.
        self.urgent = VecDeque::new();
        self.normal = VecDeque::new();
        Ok(true)
    }

    fn slices(&self) -> Vec<IoSlice<'_>> {
        let mut slices =
            Vec::with_capacity(MAX_SLICES.min(1 + self.urgent.len() + self.normal.len()));
        if let Some((line, offset)) = &self.started {
            slices.push(IoSlice::new(&line[*offset..]));
        }
        for line in self.urgent.iter().chain(&self.normal) {
            if slices.len() == MAX_SLICES {
                break;
            }
            slices.push(IoSlice::new(line));
        }
        slices
    }

    fn consume(&mut self, mut written: usize) {
        self.queued -= written;
        while written > 0 {
            let (line, offset) = match self.started.take() {
                Some(started) => started,
                None => match self.urgent.pop_front().or_else(|| self.normal.pop_front()) {
                    Some(line) => (line, 0),
                    None => return,
                },
            };
            let left = line.len() - offset;
            if written < left {
                self.started = Some((line, offset + written));
                return;
            }
            written -= left;
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
