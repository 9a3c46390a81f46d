//! Line framing plus the native parser, over arbitrary bytes in arbitrary
//! chunks.
//!
//! Input layout: byte 0 picks the line limit (64 to 319 bytes, small so
//! over-long lines are common), bytes 1 to 3 are chunk lengths used in
//! turn, the rest is the stream a client sends. Checked:
//!
//! 1. nothing panics;
//! 2. the frames do not depend on the chunking: the stream fed in chunks
//!    gives exactly the frames of the stream fed whole, and both equal an
//!    independent oracle that splits at LF (docs/PROTOCOL.md, "Lines");
//! 3. a `Line` frame keeps the framing limits: not empty, at most the
//!    limit, no LF or CR, no control character but tab;
//! 4. the partial line kept between chunks never exceeds the limit plus
//!    one byte (the CR of a CRLF);
//! 5. every parsed command keeps the range checks: ban and mute durations
//!    are longer than zero and at most `duration::MAX`, `#history` counts
//!    are at least one, addresses are canonical (no IPv4-mapped IPv6);
//!    every parse error has a code and a message;
//! 6. every word that parses as a duration is at most `duration::MAX`,
//!    and what `duration::format` prints for it parses back to at least
//!    as long, less than a second longer, and still at most the maximum.

#![no_main]

use std::ops::ControlFlow;
use std::time::Duration;

use chatd_core::duration;
use chatd_core::line::{Frame, LineBuffer};
use chatd_core::native;
use chatd_core::{BanTarget, Command};
use libfuzzer_sys::fuzz_target;

/// A frame with its text owned, so frames from two feeds can be compared.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owned {
    Line(String),
    TooLong,
    InvalidUtf8,
    ControlChar,
}

fn own(frame: Frame<'_>) -> Owned {
    match frame {
        Frame::Line(text) => Owned::Line(text.to_owned()),
        Frame::TooLong => Owned::TooLong,
        Frame::InvalidUtf8 => Owned::InvalidUtf8,
        Frame::ControlChar => Owned::ControlChar,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((header, stream)) = data.split_first_chunk::<4>() else {
        return;
    };
    let max_len = 64 + usize::from(header[0]);
    let chunk_lens = [header[1], header[2], header[3]].map(|b| usize::from(b) + 1);

    let whole = feed(&[stream], max_len);
    let mut chunks = Vec::new();
    let mut rest = stream;
    for len in chunk_lens.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (chunk, after) = rest.split_at((*len).min(rest.len()));
        chunks.push(chunk);
        rest = after;
    }
    let chunked = feed(&chunks, max_len);
    assert_eq!(whole, chunked, "the chunking changed the frames");
    assert_eq!(
        whole,
        oracle(stream, max_len),
        "framing disagrees with the rules"
    );

    for frame in &whole {
        if let Owned::Line(line) = frame {
            check_line(line, max_len);
        }
    }
});

/// Feeds the chunks in order and returns the frames.
fn feed(chunks: &[&[u8]], max_len: usize) -> Vec<Owned> {
    let mut buffer = LineBuffer::default();
    let mut frames = Vec::new();
    for chunk in chunks {
        buffer.feed(chunk, max_len, |frame| {
            frames.push(own(frame));
            ControlFlow::Continue(())
        });
        assert!(
            buffer.pending_len() <= max_len + 1,
            "{} bytes kept for a partial line (limit {max_len})",
            buffer.pending_len()
        );
    }
    frames
}

/// The framing rules written out directly over the whole stream: each
/// LF-terminated line is classified, an unterminated tail is only
/// reported once it is already too long to ever be accepted.
fn oracle(stream: &[u8], max_len: usize) -> Vec<Owned> {
    let mut frames = Vec::new();
    let mut pieces = stream.split(|&b| b == b'\n').peekable();
    while let Some(piece) = pieces.next() {
        if pieces.peek().is_none() {
            // The bytes after the last LF (possibly none).
            if piece.len() > max_len + 1 {
                frames.push(Owned::TooLong);
            }
            break;
        }
        let line = piece.strip_suffix(b"\r").unwrap_or(piece);
        if line.is_empty() {
            continue;
        }
        frames.push(if line.len() > max_len {
            Owned::TooLong
        } else {
            match std::str::from_utf8(line) {
                Err(_) => Owned::InvalidUtf8,
                Ok(text) if text.chars().any(|c| c.is_control() && c != '\t') => Owned::ControlChar,
                Ok(text) => Owned::Line(text.to_owned()),
            }
        });
    }
    frames
}

fn check_line(line: &str, max_len: usize) {
    assert!(!line.is_empty() && line.len() <= max_len, "{line:?}");
    assert!(
        !line.chars().any(|c| c.is_control() && c != '\t'),
        "{line:?} holds a control character"
    );
    match native::parse(line) {
        Ok(command) => check_command(&command),
        Err(error) => {
            let _ = error.code();
            assert!(!error.to_string().is_empty());
        }
    }
    for word in line.split([' ', '\t']) {
        check_duration_word(word);
    }
}

fn check_command(command: &Command<'_>) {
    let in_range = |length: Duration| !length.is_zero() && length <= duration::MAX;
    match command {
        Command::Ban {
            target, duration, ..
        } => {
            if let Some(length) = duration {
                assert!(in_range(*length), "ban for {length:?}");
            }
            if let BanTarget::Ip(address) = target {
                assert_eq!(address.to_canonical(), *address, "ban on a mapped address");
            }
        }
        Command::Unban(address) => {
            assert_eq!(
                address.to_canonical(),
                *address,
                "unban of a mapped address"
            );
        }
        Command::Mute { duration, .. } => assert!(in_range(*duration), "mute for {duration:?}"),
        Command::History(args) => {
            if let Some(count) = args.count {
                assert!(count >= 1, "history of {count}");
            }
        }
        Command::Search { terms, .. } => {
            let words = terms.words();
            assert!(
                !words.is_empty() && words.len() <= 8,
                "search for {words:?}"
            );
        }
        _ => {}
    }
}

fn check_duration_word(word: &str) {
    let Ok(length) = duration::parse(word) else {
        return;
    };
    assert!(length <= duration::MAX, "{word:?} parsed to {length:?}");
    let shown = duration::format(length);
    let back = duration::parse(&shown)
        .unwrap_or_else(|error| panic!("{word:?} formats as {shown:?}, which fails: {error}"));
    assert!(
        back >= length && back - length < Duration::from_secs(1) && back <= duration::MAX,
        "{word:?} is {length:?}, formats as {shown:?}, which reads back as {back:?}"
    );
}
