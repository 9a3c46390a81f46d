//! Text people can trust: what the server accepts as chat, topics and
//! reasons before anyone else sees it.
//!
//! Two tricks are refused or defused here, for every dialect alike:
//!
//! - a line made only of invisible characters (zero-width spaces, fillers,
//!   variation selectors, tag characters) looks like nothing in a client
//!   yet is a message, which is how people spoof empty lines and evade
//!   filters; it is refused;
//! - an unclosed bidirectional embedding, override or isolate
//!   (U+202A–U+202E, U+2066–U+2069) flips the direction of whatever a
//!   client prints after it on the same line (the next field, a nickname,
//!   a timestamp); each one left open is closed at the end of the text.

use std::borrow::Cow;

use crate::line::is_irc_formatting;

/// Why a text was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// Nothing in it would be visible.
    #[error("the text has no visible characters")]
    Invisible,
}

/// Checks a text that others will see and returns it with every open
/// bidirectional control closed; borrowed when nothing had to change.
pub fn trusted(text: &str) -> Result<Cow<'_, str>, TextError> {
    // Every chat line passes here, and nearly all are ASCII: no ASCII
    // character is a bidirectional control, and the first non-blank one is
    // visible. That path costs a word-at-a-time ASCII check and usually one
    // byte, where the general one walks every character.
    // IRC's formatting (with a colour's digits) shows nothing: what is
    // left without it must be visible. Native lines never hold controls.
    if has_control_byte(text.as_bytes()) && !without_irc_formatting(text).chars().any(is_visible) {
        return Err(TextError::Invisible);
    }
    if text.is_ascii() {
        // Graphic, not merely non-blank: IRC's formatting controls (the
        // only controls that get this far) show nothing either.
        return if text.bytes().any(|b| b.is_ascii_graphic()) {
            Ok(Cow::Borrowed(text))
        } else {
            Err(TextError::Invisible)
        };
    }
    if !text.chars().any(is_visible) {
        return Err(TextError::Invisible);
    }
    if !has_bidi_control(text.as_bytes()) {
        return Ok(Cow::Borrowed(text));
    }
    Ok(close_bidi(text))
}

/// Whether the UTF-8 bytes hold U+202A-U+202E or U+2066-U+2069, all of
/// which are encoded `E2 80 AA..AE` or `E2 81 A6..A9`: a byte scan, so
/// lines in other scripts do not pay for the pairing walk.
fn has_bidi_control(bytes: &[u8]) -> bool {
    bytes
        .windows(3)
        .any(|w| w[0] == 0xE2 && matches!((w[1], w[2]), (0x80, 0xAA..=0xAE) | (0x81, 0xA6..=0xA9)))
}

/// Whether a character shows as something: not white space, not a
/// default-ignorable code point (Unicode's DerivedCoreProperties
/// `Default_Ignorable_Code_Point`, which clients render as nothing), and
/// not one of the blank-looking letters used as invisible filler.
fn is_visible(c: char) -> bool {
    !(c.is_whitespace() || c.is_control() || is_default_ignorable(c) || matches!(c, '\u{2800}'))
}

/// Unicode 15's `Default_Ignorable_Code_Point` ranges.
fn is_default_ignorable(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFF8}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// What an opening bidirectional control waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    /// LRE, RLE, LRO or RLO: closed by PDF (U+202C).
    Embedding,
    /// LRI, RLI or FSI: closed by PDI (U+2069), which also closes every
    /// embedding opened inside the isolate.
    Isolate,
}

const PDF: char = '\u{202C}';
const PDI: char = '\u{2069}';

/// Appends a PDF or PDI for each embedding or isolate left open, innermost
/// first, following the pairing rules of the bidirectional algorithm
/// (UAX #9, X6a and X7): a PDF closes the innermost embedding only if no
/// isolate was opened after it, a PDI closes the innermost open isolate and
/// everything opened inside it, and unmatched closers change nothing.
fn close_bidi(text: &str) -> Cow<'_, str> {
    let mut open: Vec<Open> = Vec::new();
    for c in text.chars() {
        match c {
            '\u{202A}' | '\u{202B}' | '\u{202D}' | '\u{202E}' => open.push(Open::Embedding),
            '\u{2066}'..='\u{2068}' => open.push(Open::Isolate),
            PDF if open.last() == Some(&Open::Embedding) => {
                open.pop();
            }
            PDI => {
                if let Some(isolate) = open.iter().rposition(|o| *o == Open::Isolate) {
                    open.truncate(isolate);
                }
            }
            _ => {}
        }
    }
    if open.is_empty() {
        return Cow::Borrowed(text);
    }
    let mut closed = String::with_capacity(text.len() + open.len() * 3);
    closed.push_str(text);
    for unclosed in open.iter().rev() {
        closed.push(match unclosed {
            Open::Embedding => PDF,
            Open::Isolate => PDI,
        });
    }
    Cow::Owned(closed)
}

/// Text without IRC's formatting controls
/// (bold, colour with its digits, CTCP markers), which IRC clients may
/// send, are removed; nothing else is changed.
pub fn without_irc_formatting(text: &str) -> Cow<'_, str> {
    // Every formatting control is an ASCII byte below 0x20: a byte scan
    // settles ordinary text without decoding it.
    if !has_control_byte(text.as_bytes()) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x04' {
            // A hex colour: six hex digits, then optionally a comma and
            // six more.
            skip_hex(&mut chars);
            let mut lookahead = chars.clone();
            if lookahead.next() == Some(',')
                && lookahead.next().is_some_and(|d| d.is_ascii_hexdigit())
            {
                chars.next();
                skip_hex(&mut chars);
            }
        } else if c == '\x03' {
            // A colour code: up to two digits, then optionally a comma
            // and up to two more.
            skip_digits(&mut chars);
            let mut lookahead = chars.clone();
            if lookahead.next() == Some(',') && lookahead.next().is_some_and(|d| d.is_ascii_digit())
            {
                chars.next();
                skip_digits(&mut chars);
            }
        } else if !is_irc_formatting(c) {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Whether any byte is below 0x20, in chunks the compiler can vectorise
/// (no early exit inside a chunk).
pub fn has_control_byte(bytes: &[u8]) -> bool {
    bytes
        .chunks(32)
        .any(|chunk| chunk.iter().fold(false, |found, &b| found | (b < 0x20)))
}

fn skip_hex(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    for _ in 0..6 {
        if chars.peek().is_some_and(char::is_ascii_hexdigit) {
            chars.next();
        }
    }
}

fn skip_digits(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    for _ in 0..2 {
        if chars.peek().is_some_and(char::is_ascii_digit) {
            chars.next();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_text_passes_unchanged_and_borrowed() {
        for text in ["hello", "  spaced  ", "émoji 🎉", "שלום", "a\u{200B}b"] {
            assert!(matches!(trusted(text), Ok(Cow::Borrowed(t)) if t == text));
        }
    }

    #[test]
    fn text_made_only_of_invisible_characters_is_refused() {
        for text in [
            " ",
            "\t \t",
            "\u{200B}\u{200B}",
            "\u{3164}",
            "\u{2800}\u{2800}",
            "\u{FE0F}",
            "\u{E0041}\u{E0042}",
            "\u{00A0}\u{2003}",
            "\u{202E}",
            "\u{2066}\u{2069}",
        ] {
            assert_eq!(trusted(text), Err(TextError::Invisible), "{text:?}");
        }
    }

    #[test]
    fn an_unclosed_override_is_closed_at_the_end() {
        assert_eq!(
            trusted("evil \u{202E}txet").unwrap(),
            "evil \u{202E}txet\u{202C}"
        );
        assert_eq!(
            trusted("\u{2067}a\u{202B}b").unwrap(),
            "\u{2067}a\u{202B}b\u{202C}\u{2069}"
        );
    }

    #[test]
    fn the_byte_scan_finds_every_bidi_control_and_nothing_else() {
        for c in '\u{2000}'..='\u{20FF}' {
            let text = format!("x{c}");
            let control = matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
            assert_eq!(has_bidi_control(text.as_bytes()), control, "{c:?}");
        }
    }

    #[test]
    fn balanced_controls_are_left_alone() {
        for text in [
            "a\u{202E}b\u{202C}c",
            "a\u{2066}b\u{2069}c",
            "\u{2067}x\u{202B}y\u{2069}",
        ] {
            assert!(matches!(trusted(text), Ok(Cow::Borrowed(_))), "{text:?}");
        }
    }

    #[test]
    fn unmatched_closers_do_not_cancel_a_later_opener() {
        assert_eq!(
            trusted("\u{202C}\u{2069}x\u{202E}").unwrap(),
            "\u{202C}\u{2069}x\u{202E}\u{202C}"
        );
        // A PDF cannot close an embedding from outside an isolate.
        assert_eq!(
            trusted("\u{202E}\u{2066}x\u{202C}").unwrap(),
            "\u{202E}\u{2066}x\u{202C}\u{2069}\u{202C}"
        );
    }
}
