//! Reading deliveries back: the payloads in the bytes a client received.
//!
//! This runs once per delivery on the generator's reader threads, so it
//! has to stay far cheaper than the server's work per delivery, or the
//! generator, not the server, sets the measured rate. Lines are found with
//! `memchr`, parsed where they lie in the receive buffer (only a line cut
//! by the end of a read is copied), and numbers are read digit by digit.

use memchr::memchr;
use memchr::memmem::Finder;

/// The start of every payload; whatever a server wraps around it (chatd's
/// `[#room] nick: `, Redis's bulk string, an IRC prefix) is skipped.
pub const MARKER: &[u8] = b"~b ";

/// One payload read back: who sent it, its number, when it was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payload {
    /// The sender's index.
    pub sender: usize,
    /// The sender's sequence number.
    pub seq: u64,
    /// Nanoseconds since the run's start when it was sent.
    pub sent_at: u64,
}

/// Splits one client's byte stream into lines and yields the payloads.
#[derive(Debug)]
pub struct DeliveryScanner {
    /// The start of a line whose end has not arrived yet.
    partial: Vec<u8>,
    marker: Finder<'static>,
}

impl Default for DeliveryScanner {
    fn default() -> Self {
        Self {
            partial: Vec::new(),
            marker: Finder::new(MARKER),
        }
    }
}

impl DeliveryScanner {
    /// Takes the bytes of one read; calls `found` for every payload in a
    /// line completed by them.
    pub fn feed(&mut self, mut fresh: &[u8], mut found: impl FnMut(Payload)) {
        if !self.partial.is_empty() {
            let Some(end) = memchr(b'\n', fresh) else {
                self.partial.extend_from_slice(fresh);
                return;
            };
            self.partial.extend_from_slice(&fresh[..end]);
            if let Some(payload) = self.parse(&self.partial) {
                found(payload);
            }
            self.partial.clear();
            fresh = &fresh[end + 1..];
        }
        while let Some(end) = memchr(b'\n', fresh) {
            if let Some(payload) = self.parse(&fresh[..end]) {
                found(payload);
            }
            fresh = &fresh[end + 1..];
        }
        self.partial.extend_from_slice(fresh);
    }

    /// `... ~b SENDER SEQ NANOS xxx` (a trailing `\r` allowed).
    fn parse(&self, line: &[u8]) -> Option<Payload> {
        let at = self.marker.find(line)?;
        let mut rest = &line[at + MARKER.len()..];
        let sender = next_number(&mut rest)?;
        let seq = next_number(&mut rest)?;
        let sent_at = next_number(&mut rest)?;
        Some(Payload {
            sender: usize::try_from(sender).ok()?,
            seq,
            sent_at,
        })
    }
}

/// Reads a decimal number after any spaces; it must end at a space, `\r`
/// or the end of the line. Advances `rest` past it.
fn next_number(rest: &mut &[u8]) -> Option<u64> {
    let start = rest.iter().position(|&b| b != b' ')?;
    let digits = &rest[start..];
    let mut value: u64 = 0;
    let mut length = 0;
    for &byte in digits {
        match byte {
            b'0'..=b'9' => {
                value = value.checked_mul(10)?.checked_add(u64::from(byte - b'0'))?;
                length += 1;
            }
            b' ' | b'\r' => break,
            _ => return None,
        }
    }
    if length == 0 {
        return None;
    }
    *rest = &digits[length..];
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(chunks: &[&[u8]]) -> Vec<Payload> {
        let mut scanner = DeliveryScanner::default();
        let mut found = Vec::new();
        for chunk in chunks {
            scanner.feed(chunk, |payload| found.push(payload));
        }
        found
    }

    fn payload(sender: usize, seq: u64, sent_at: u64) -> Payload {
        Payload {
            sender,
            seq,
            sent_at,
        }
    }

    #[test]
    fn payloads_are_read_back_from_delivered_lines() {
        assert_eq!(
            scan(&[b"[#bench3] guest17: ~b 4 99 123456 xxxx\n"]),
            [payload(4, 99, 123_456)]
        );
        assert_eq!(scan(&[b"~b 4 99 123456\r\n"]), [payload(4, 99, 123_456)]);
        assert_eq!(scan(&[b"~b 4  99 7\n"]), [payload(4, 99, 7)]);
    }

    #[test]
    fn irc_deliveries_are_read_after_the_prefix() {
        // A user or nick that starts with `b` puts `~b` into the prefix,
        // never `~b ` (a prefix holds no space).
        assert_eq!(
            scan(&[b":b7!~b7@127.0.0.1 PRIVMSG #bench0 :~b 7 3 42 xxxx\r\n"]),
            [payload(7, 3, 42)]
        );
        // Registration, names and joins carry no payload.
        assert!(
            scan(&[
                b":chatd 001 u1 :Welcome to chatd u1\r\n",
                b":u2!~u2@127.0.0.1 JOIN #bench0\r\n:chatd 353 u1 = #bench0 :u1 u2\r\n",
            ])
            .is_empty()
        );
    }

    #[test]
    fn lines_without_a_whole_payload_yield_nothing() {
        assert!(scan(&[b"* guest2 joined #bench0\n"]).is_empty());
        assert!(scan(&[b"[#bench0] guest1: ~b x 1 2\n"]).is_empty());
        assert!(scan(&[b"~b 1 2\n"]).is_empty());
        assert!(scan(&[b"~b 1 2 3x\n"]).is_empty());
        assert!(scan(&[b"~b 1 2 99999999999999999999\n"]).is_empty());
    }

    #[test]
    fn a_line_cut_by_reads_is_joined_and_the_rest_waits() {
        let found = scan(&[
            b"x: ~b 1 5 10 pad\nx: ~b 2 ",
            b"6 2",
            b"0 pad\n$7\r\nmessage\r\n~b 3 7 30\r\n~b 4 8",
        ]);
        assert_eq!(
            found,
            [payload(1, 5, 10), payload(2, 6, 20), payload(3, 7, 30)]
        );
    }
}
