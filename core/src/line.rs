//! Line framing: bytes split at arbitrary points in, complete lines out.
//!
//! Rules (docs/PROTOCOL.md, "Lines"):
//! - A line ends at LF; one CR right before the LF is dropped (so CRLF works).
//! - A line longer than the limit (without its ending) yields
//!   [`Frame::TooLong`] once, and everything up to its LF is discarded. The
//!   connection survives.
//! - A line that is not UTF-8 yields [`Frame::InvalidUtf8`].
//! - A line holding a control character other than tab (NUL, ESC, a lone
//!   CR, DEL, the C1 controls) yields [`Frame::ControlChar`]: such lines are
//!   *rejected*, not stripped, so nobody can paint other users' terminals
//!   and nothing is silently changed in what a user sent.
//! - Empty lines are ignored.
//!
//! Only a partial line is kept between calls, never more than the limit
//! plus one byte, and its memory is released as soon as the line completes.

use std::ops::ControlFlow;

/// One framing result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A complete, valid line without its ending.
    Line(&'a str),
    /// A line exceeded the limit; it is being discarded up to its end.
    TooLong,
    /// A line was not valid UTF-8.
    InvalidUtf8,
    /// A line held a control character other than tab.
    ControlChar,
}

/// Per-connection framing state: a partial line, or the rest of an
/// over-long line being skipped.
#[derive(Debug, Default)]
pub struct LineBuffer {
    partial: Vec<u8>,
    discarding: bool,
    /// IRC's text formatting controls (bold, colour, CTCP's `\x01` ...)
    /// are allowed: IRC clients send them in ordinary chat. The native
    /// renderer strips them, so native terminals never see them.
    irc_formatting: bool,
}

/// The control characters IRC clients use for text formatting and CTCP:
/// `\x01` CTCP, `\x02` bold, `\x03` colour, `\x04` hex colour, `\x0f`
/// reset, `\x11` monospace, `\x16` reverse, `\x1d` italic, `\x1e`
/// strike, `\x1f` underline. None moves a terminal's cursor.
pub fn is_irc_formatting(c: char) -> bool {
    matches!(
        c,
        '\x01' | '\x02' | '\x03' | '\x04' | '\x0f' | '\x11' | '\x16' | '\x1d' | '\x1e' | '\x1f'
    )
}

impl LineBuffer {
    /// A buffer for an IRC connection: formatting controls pass.
    pub fn irc() -> Self {
        Self {
            irc_formatting: true,
            ..Self::default()
        }
    }

    /// Splits `input` into frames and hands each to `on_frame`, which may
    /// stop the feed (say, after the connection was closed). Bytes after a
    /// stop are dropped.
    pub fn feed<'s>(
        &'s mut self,
        mut input: &'s [u8],
        max_len: usize,
        mut on_frame: impl FnMut(Frame<'_>) -> ControlFlow<()>,
    ) {
        while !input.is_empty() {
            let Some(end) = input.iter().position(|&b| b == b'\n') else {
                if let Some(frame) = self.keep_partial(input, max_len) {
                    let _ = on_frame(frame);
                }
                return;
            };
            let (head, rest) = (&input[..end], &input[end + 1..]);
            input = rest;
            let flow = if self.discarding {
                self.discarding = false;
                ControlFlow::Continue(())
            } else if self.partial.is_empty() {
                classify(head, max_len, self.irc_formatting)
                    .map_or(ControlFlow::Continue(()), &mut on_frame)
            } else {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(head);
                classify(&line, max_len, self.irc_formatting)
                    .map_or(ControlFlow::Continue(()), &mut on_frame)
            };
            if flow.is_break() {
                return;
            }
        }
    }

    /// Bytes held for an unfinished line (for memory accounting and tests).
    pub fn pending_len(&self) -> usize {
        self.partial.len()
    }

    fn keep_partial(&mut self, tail: &[u8], max_len: usize) -> Option<Frame<'static>> {
        if self.discarding {
            return None;
        }
        // One byte of slack: it may be the CR of a CRLF ending.
        if self.partial.len() + tail.len() > max_len + 1 {
            self.partial = Vec::new();
            self.discarding = true;
            return Some(Frame::TooLong);
        }
        self.partial.extend_from_slice(tail);
        None
    }
}

fn classify(line: &[u8], max_len: usize, irc_formatting: bool) -> Option<Frame<'_>> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() {
        return None;
    }
    if line.len() > max_len {
        return Some(Frame::TooLong);
    }
    let Ok(text) = std::str::from_utf8(line) else {
        return Some(Frame::InvalidUtf8);
    };
    let refused =
        |c: char| c.is_control() && c != '\t' && !(irc_formatting && is_irc_formatting(c));
    if text.chars().any(refused) {
        return Some(Frame::ControlChar);
    }
    Some(Frame::Line(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(chunks: &[&[u8]], max: usize) -> Vec<String> {
        let mut buffer = LineBuffer::default();
        let mut out = Vec::new();
        for chunk in chunks {
            buffer.feed(chunk, max, |frame| {
                out.push(format!("{frame:?}"));
                ControlFlow::Continue(())
            });
        }
        out
    }

    #[test]
    fn lf_and_crlf_end_lines_and_chunks_join() {
        assert_eq!(
            frames(&[b"he", b"llo\r", b"\nwor", b"ld\n\n"], 64),
            ["Line(\"hello\")", "Line(\"world\")"]
        );
    }

    #[test]
    fn over_long_line_reports_once_and_resumes_after_its_end() {
        let long = vec![b'x'; 100];
        assert_eq!(
            frames(&[&long[..50], &long[50..], b"tail\nok\n"], 64),
            ["TooLong", "Line(\"ok\")"]
        );
        let mut whole = long.clone();
        whole.extend_from_slice(b"\nok\n");
        assert_eq!(frames(&[&whole], 64), ["TooLong", "Line(\"ok\")"]);
    }

    #[test]
    fn exact_limit_with_crlf_is_accepted_in_any_split() {
        let mut line = vec![b'a'; 64];
        line.extend_from_slice(b"\r\n");
        assert_eq!(frames(&[&line], 64).len(), 1);
        assert_eq!(
            frames(&[&line[..65], &line[65..]], 64),
            frames(&[&line], 64)
        );
        assert_eq!(frames(&[&line], 64)[0].len(), "Line(\"\")".len() + 64);
    }

    #[test]
    fn invalid_utf8_and_control_chars_are_rejected() {
        assert_eq!(frames(&[b"caf\xc3\n"], 64), ["InvalidUtf8"]);
        assert_eq!(frames(&[b"a\x00b\n"], 64), ["ControlChar"]);
        assert_eq!(frames(&[b"\x1b[31mred\n"], 64), ["ControlChar"]);
        assert_eq!(frames(&[b"a\rb\n"], 64), ["ControlChar"]);
        assert_eq!(frames(&[b"tab\there\n"], 64), ["Line(\"tab\\there\")"]);
    }

    #[test]
    fn stop_drops_the_rest() {
        let mut buffer = LineBuffer::default();
        let mut seen = 0;
        buffer.feed(b"a\nb\nc", 64, |_| {
            seen += 1;
            ControlFlow::Break(())
        });
        assert_eq!(seen, 1);
    }

    #[test]
    fn partial_memory_is_released_after_the_line_completes() {
        let mut buffer = LineBuffer::default();
        buffer.feed(b"abc", 64, |_| ControlFlow::Continue(()));
        assert_eq!(buffer.pending_len(), 3);
        buffer.feed(b"\n", 64, |_| ControlFlow::Continue(()));
        assert_eq!(buffer.pending_len(), 0);
        assert_eq!(buffer.partial.capacity(), 0);
    }
}
