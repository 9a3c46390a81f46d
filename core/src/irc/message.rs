//! One IRC line, parsed into borrowed parts and written back.
//!
//! The grammar is the one of modern.ircdocs.horse plus IRCv3 message-tags:
//!
//! ```text
//! [@tags SPACE] [:source SPACE] command *(SPACE param) [SPACE :trailing]
//! ```
//!
//! Parsing is lenient where real servers and clients are (one *or more*
//! spaces separate parts, trailing spaces are ignored, the source is not
//! validated) and strict where leniency would be unsafe (NUL, CR and LF are
//! refused, so a parsed parameter can be written back without splitting the
//! line). The vectors of ircdocs/parser-tests pin the behaviour down; see
//! `core/tests/irc_parser_vectors.rs`.

use std::borrow::Cow;

use smallvec::SmallVec;

/// The longest tags section accepted, in bytes, counting the leading `@`
/// and the space after the tags (IRCv3 message-tags, "Size limit").
///
/// The spec further caps the tag data a *client* may send at 4094 bytes;
/// that is a policy for the caller, which knows who sent the line.
pub const MAX_TAGS_LEN: usize = 8191;

/// The most parameters a message has. Past the 14th middle parameter the
/// rest of the line is the 15th, spaces included (RFC 1459 and 2812
/// grammar), so a line never yields more than this.
pub const MAX_PARAMS: usize = 15;

/// One IRC message borrowed from its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    /// The IRCv3 tags in the order they were sent, one per key: when a key
    /// repeats, only its last value is kept (as the spec asks), at the
    /// position of that last occurrence.
    pub tags: Vec<Tag<'a>>,
    /// The source (prefix) without its `:`, unvalidated; `None` if absent.
    pub source: Option<&'a str>,
    /// The command as sent: letters or three digits. Its case is kept, so
    /// callers compare with [`str::eq_ignore_ascii_case`].
    pub command: &'a str,
    /// The parameters, the trailing one without its `:`. At most
    /// [`MAX_PARAMS`].
    pub params: SmallVec<[&'a str; 8]>,
}

/// One IRCv3 message tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag<'a> {
    /// The key, client-only `+` and vendor prefix included (`+example.com/x`).
    pub key: &'a str,
    /// The unescaped value; empty both for `@key` and `@key=`, which the spec
    /// treats alike.
    pub value: Cow<'a, str>,
}

/// Why a line is not an IRC message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// The line is empty or holds only spaces.
    #[error("the line is empty")]
    Empty,
    /// The line has tags or a source but nothing after them.
    #[error("the line has no command")]
    NoCommand,
    /// The command is neither letters nor exactly three digits.
    #[error("the command is neither letters nor three digits")]
    InvalidCommand,
    /// The tags section is longer than [`MAX_TAGS_LEN`] bytes.
    #[error("the tags are longer than {MAX_TAGS_LEN} bytes")]
    TagsTooLong,
    /// A tag key is empty or holds a character no key may hold.
    #[error("a tag key is empty or holds a character keys may not hold")]
    InvalidTagKey,
    /// The line starts with `:` followed by a space or nothing.
    #[error("the source is empty")]
    EmptySource,
    /// The line holds NUL, CR or LF, which no IRC line may hold.
    #[error("the line holds NUL, CR or LF")]
    ForbiddenChar,
}

impl<'a> Message<'a> {
    /// Parses one line, given without its CR/LF ending.
    ///
    /// Never panics, whatever the input.
    pub fn parse(line: &'a str) -> Result<Self, MessageError> {
        // Checked once up front so every borrowed part is safe to write back
        // on a line of its own.
        if line.bytes().any(|b| matches!(b, b'\0' | b'\r' | b'\n')) {
            return Err(MessageError::ForbiddenChar);
        }
        let rest = line.trim_start_matches(' ');
        if rest.is_empty() {
            return Err(MessageError::Empty);
        }
        let (tags, rest) = match rest.strip_prefix('@') {
            Some(tagged) => {
                let (raw, rest) = split_word(tagged);
                // The limit counts the '@' and one space after the tags.
                if raw.len() + 2 > MAX_TAGS_LEN {
                    return Err(MessageError::TagsTooLong);
                }
                (parse_tags(raw)?, rest)
            }
            None => (Vec::new(), rest),
        };
        let (source, rest) = match rest.strip_prefix(':') {
            Some(prefixed) => {
                let (source, rest) = split_word(prefixed);
                if source.is_empty() {
                    return Err(MessageError::EmptySource);
                }
                (Some(source), rest)
            }
            None => (None, rest),
        };
        let (command, rest) = split_word(rest);
        if command.is_empty() {
            return Err(MessageError::NoCommand);
        }
        if !is_command(command) {
            return Err(MessageError::InvalidCommand);
        }
        Ok(Message {
            tags,
            source,
            command,
            params: parse_params(rest),
        })
    }

    /// The value of tag `key`, if the message has it.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|tag| tag.key == key)
            .map(|tag| tag.value.as_ref())
    }
}

/// Appends one message to `out` in wire form, **without** the CR/LF ending:
/// callers add it, so they can also measure or truncate the line first.
///
/// Tag values are escaped here; a value of `None` or `Some("")` is written
/// as the bare key (`@key`), the spec's preferred form. The last parameter
/// gets a `:` only when it needs one: it is empty, holds a space, or starts
/// with `:`.
///
/// The caller must pass well-formed parts (checked with `debug_assert!`):
/// no NUL, CR or LF anywhere, no space in the tag keys, the source or the
/// command, and every parameter but the last non-empty, without spaces and
/// not starting with `:`. Parameters of a parsed [`Message`] always qualify.
pub fn write(
    out: &mut String,
    tags: &[(&str, Option<&str>)],
    source: Option<&str>,
    command: &str,
    params: &[&str],
) {
    debug_assert!(
        !command.is_empty() && is_word(command),
        "bad command {command:?}"
    );
    for (i, (key, value)) in tags.iter().enumerate() {
        debug_assert!(!key.is_empty() && is_word(key) && !key.contains([';', '=']));
        out.push(if i == 0 { '@' } else { ';' });
        out.push_str(key);
        if let Some(value) = value.filter(|value| !value.is_empty()) {
            out.push('=');
            push_escaped(out, value);
        }
    }
    if !tags.is_empty() {
        out.push(' ');
    }
    if let Some(source) = source {
        debug_assert!(
            !source.is_empty() && is_word(source),
            "bad source {source:?}"
        );
        out.push(':');
        out.push_str(source);
        out.push(' ');
    }
    out.push_str(command);
    let Some((last, middle)) = params.split_last() else {
        return;
    };
    for param in middle {
        debug_assert!(is_middle(param), "bad middle parameter {param:?}");
        out.push(' ');
        out.push_str(param);
    }
    debug_assert!(!last.contains(['\0', '\r', '\n']), "bad last parameter");
    out.push(' ');
    if !is_middle(last) {
        out.push(':');
    }
    out.push_str(last);
}

/// Escapes a tag value for the wire (IRCv3 message-tags): `;` becomes `\:`,
/// space `\s`, `\` `\\`, CR `\r` and LF `\n`. Borrows when nothing changes.
pub fn escape_tag_value(value: &str) -> Cow<'_, str> {
    if !value.contains([';', ' ', '\\', '\r', '\n']) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 8);
    push_escaped(&mut out, value);
    Cow::Owned(out)
}

/// Undoes [`escape_tag_value`], reading left to right one character at a
/// time: `\:` `\s` `\\` `\r` `\n` map back, any other `\X` becomes `X`, and
/// a lone `\` at the end is dropped. Borrows when there is no `\`.
pub fn unescape_tag_value(raw: &str) -> Cow<'_, str> {
    if !raw.contains('\\') {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(':') => out.push(';'),
            Some('s') => out.push(' '),
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            // `\\` and any other `\X` both keep X.
            Some(other) => out.push(other),
            None => {}
        }
    }
    Cow::Owned(out)
}

/// A source split into its `nick!user@host` parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserHost<'a> {
    /// Everything before the first `!` or `@` (the whole text if neither).
    pub nick: &'a str,
    /// The part after `!`, up to `@`; `None` without a `!`.
    pub user: Option<&'a str>,
    /// The part after the first `@`; `None` without an `@`.
    pub host: Option<&'a str>,
}

/// Splits a source such as `nick!user@host`, `nick@host`, `nick!user` or a
/// bare `nick`. Nothing is validated: control codes are kept as they are.
pub fn split_userhost(text: &str) -> UserHost<'_> {
    let (before_host, host) = match text.split_once('@') {
        Some((before, host)) => (before, Some(host)),
        None => (text, None),
    };
    let (nick, user) = match before_host.split_once('!') {
        Some((nick, user)) => (nick, Some(user)),
        None => (before_host, None),
    };
    UserHost { nick, user, host }
}

/// Splits at the first space: the word before it and everything after the
/// spaces that follow it.
fn split_word(text: &str) -> (&str, &str) {
    match text.split_once(' ') {
        Some((word, rest)) => (word, rest.trim_start_matches(' ')),
        None => (text, ""),
    }
}

/// Parses the tags section (without `@`), keeping the last value of a
/// repeated key.
fn parse_tags(raw: &str) -> Result<Vec<Tag<'_>>, MessageError> {
    let mut tags = Vec::new();
    // A trailing `;` is sent by some software; an empty item is skipped
    // rather than refused, but an empty key with a value is an error.
    for item in raw.split(';').filter(|item| !item.is_empty()) {
        let (key, value) = item.split_once('=').unwrap_or((item, ""));
        if !is_tag_key(key) {
            return Err(MessageError::InvalidTagKey);
        }
        tags.push(Tag {
            key,
            value: unescape_tag_value(value),
        });
    }
    keep_last_of_each_key(&mut tags);
    Ok(tags)
}

/// Drops every tag whose key appears again later. Sorting indices keeps
/// this O(n log n): a line may carry thousands of tags.
fn keep_last_of_each_key(tags: &mut Vec<Tag<'_>>) {
    if tags.len() < 2 {
        return;
    }
    let mut order: Vec<usize> = (0..tags.len()).collect();
    order.sort_by(|&a, &b| tags[a].key.cmp(tags[b].key).then(a.cmp(&b)));
    let mut keep = vec![true; tags.len()];
    for pair in order.windows(2) {
        if tags[pair[0]].key == tags[pair[1]].key {
            keep[pair[0]] = false;
        }
    }
    let mut index = 0;
    tags.retain(|_| {
        index += 1;
        keep[index - 1]
    });
}

/// A tag key: an optional client-only `+`, an optional vendor (a hostname)
/// and `/`, then letters, digits and `-`. Checked by alphabet only, which is
/// what keeps a relayed key from breaking the line.
fn is_tag_key(key: &str) -> bool {
    let name = key.strip_prefix('+').unwrap_or(key);
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'/' | b'.'))
}

/// Letters, or exactly three digits.
fn is_command(command: &str) -> bool {
    let bytes = command.as_bytes();
    bytes.iter().all(u8::is_ascii_alphabetic)
        || (bytes.len() == 3 && bytes.iter().all(u8::is_ascii_digit))
}

/// Splits the parameters: words separated by spaces, then either a
/// `:`-trailing parameter or, once 14 are taken, the rest of the line.
fn parse_params(mut rest: &str) -> SmallVec<[&str; 8]> {
    let mut params = SmallVec::new();
    loop {
        rest = rest.trim_start_matches(' ');
        if rest.is_empty() {
            return params;
        }
        if let Some(trailing) = rest.strip_prefix(':') {
            params.push(trailing);
            return params;
        }
        if params.len() == MAX_PARAMS - 1 {
            params.push(rest);
            return params;
        }
        let (word, after) = rest.split_once(' ').unwrap_or((rest, ""));
        params.push(word);
        rest = after;
    }
}

/// Appends `value` escaped as a tag value.
fn push_escaped(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            ';' => out.push_str("\\:"),
            ' ' => out.push_str("\\s"),
            '\\' => out.push_str("\\\\"),
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Text that can stand between spaces: no space, NUL, CR or LF.
fn is_word(text: &str) -> bool {
    !text.contains([' ', '\0', '\r', '\n'])
}

/// A parameter that may be written without a `:`.
fn is_middle(param: &str) -> bool {
    !param.is_empty() && !param.starts_with(':') && is_word(param)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(
        tags: &[(&str, Option<&str>)],
        source: Option<&str>,
        command: &str,
        params: &[&str],
    ) -> String {
        let mut out = String::new();
        write(&mut out, tags, source, command, params);
        out
    }

    #[test]
    fn empty_and_blank_lines_are_refused() {
        assert_eq!(Message::parse(""), Err(MessageError::Empty));
        assert_eq!(Message::parse("   "), Err(MessageError::Empty));
    }

    #[test]
    fn tags_or_source_without_a_command_are_refused() {
        assert_eq!(Message::parse("@a=b"), Err(MessageError::NoCommand));
        assert_eq!(Message::parse("@a=b   "), Err(MessageError::NoCommand));
        assert_eq!(Message::parse(":nick"), Err(MessageError::NoCommand));
        assert_eq!(Message::parse("@a :nick "), Err(MessageError::NoCommand));
    }

    #[test]
    fn an_empty_source_is_refused() {
        assert_eq!(Message::parse(": PING"), Err(MessageError::EmptySource));
        assert_eq!(Message::parse(":"), Err(MessageError::EmptySource));
    }

    #[test]
    fn commands_are_letters_or_three_digits() {
        assert!(Message::parse("privmsg #a :hi").is_ok());
        assert!(Message::parse("001 nick :welcome").is_ok());
        for bad in ["PRIV1 x", "01 x", "0001 x", "PR-V x", "ÉTÉ x"] {
            assert_eq!(
                Message::parse(bad),
                Err(MessageError::InvalidCommand),
                "{bad}"
            );
        }
    }

    #[test]
    fn nul_cr_and_lf_are_refused_anywhere() {
        for bad in [
            "PRIVMSG #a :a\0b",
            "PRIVMSG #a :a\rb",
            "@k=\n PING",
            "PING\n",
        ] {
            assert_eq!(
                Message::parse(bad),
                Err(MessageError::ForbiddenChar),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn tags_longer_than_the_limit_are_refused() {
        // '@' + data + ' ' may be exactly MAX_TAGS_LEN bytes.
        let fits = format!("@k={} PING", "v".repeat(MAX_TAGS_LEN - 4));
        assert!(Message::parse(&fits).is_ok());
        let over = format!("@k={} PING", "v".repeat(MAX_TAGS_LEN - 3));
        assert_eq!(Message::parse(&over), Err(MessageError::TagsTooLong));
    }

    #[test]
    fn bad_tag_keys_are_refused_and_empty_items_skipped() {
        assert_eq!(Message::parse("@=v PING"), Err(MessageError::InvalidTagKey));
        assert_eq!(Message::parse("@+ PING"), Err(MessageError::InvalidTagKey));
        assert_eq!(
            Message::parse("@a\u{3}b PING"),
            Err(MessageError::InvalidTagKey)
        );
        let msg = Message::parse("@a=1;;+example.com/b-2=x; PING").unwrap();
        assert_eq!(msg.tag("a"), Some("1"));
        assert_eq!(msg.tag("+example.com/b-2"), Some("x"));
        assert_eq!(msg.tags.len(), 2);
    }

    #[test]
    fn a_repeated_tag_keeps_its_last_value_at_its_last_place() {
        let msg = Message::parse("@a=1;b=2;a=3 PING").unwrap();
        let keys: Vec<_> = msg.tags.iter().map(|tag| tag.key).collect();
        assert_eq!(keys, ["b", "a"]);
        assert_eq!(msg.tag("a"), Some("3"));
    }

    #[test]
    fn unescaped_values_borrow_and_escaped_ones_allocate() {
        let msg = Message::parse(r"@a=plain;b=x\sy PING").unwrap();
        assert!(matches!(msg.tags[0].value, Cow::Borrowed("plain")));
        assert!(matches!(&msg.tags[1].value, Cow::Owned(v) if v == "x y"));
    }

    #[test]
    fn past_fourteen_params_the_rest_of_the_line_is_the_fifteenth() {
        let input = "CMD 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16  17 ";
        let msg = Message::parse(input).unwrap();
        assert_eq!(msg.params.len(), MAX_PARAMS);
        assert_eq!(msg.params[14], "15 16  17 ");
        let colon = Message::parse("CMD 1 2 3 4 5 6 7 8 9 10 11 12 13 14 :15 16").unwrap();
        assert_eq!(colon.params[14], "15 16");
    }

    #[test]
    fn leading_spaces_are_skipped() {
        let msg = Message::parse("   PING  x").unwrap();
        assert_eq!((msg.command, &msg.params[..]), ("PING", &["x"][..]));
    }

    #[test]
    fn write_adds_a_colon_only_when_the_last_param_needs_one() {
        assert_eq!(line(&[], None, "PING", &[]), "PING");
        assert_eq!(line(&[], None, "JOIN", &["#a"]), "JOIN #a");
        assert_eq!(
            line(&[], None, "PRIVMSG", &["#a", "hi there"]),
            "PRIVMSG #a :hi there"
        );
        assert_eq!(line(&[], None, "PRIVMSG", &["#a", ":)"]), "PRIVMSG #a ::)");
        assert_eq!(line(&[], Some("s"), "AWAY", &[""]), ":s AWAY :");
    }

    #[test]
    fn write_escapes_tag_values_and_writes_empty_ones_bare() {
        let tags = [("a", Some("x y;z\\")), ("b", None), ("c", Some(""))];
        assert_eq!(
            line(&tags, Some("n!u@h"), "TAGMSG", &["#a"]),
            r"@a=x\sy\:z\\;b;c :n!u@h TAGMSG #a"
        );
    }

    #[test]
    fn escaping_round_trips() {
        for value in ["", "plain", "a b;c\\d\re\nf", "\\\\s", "é; ü"] {
            assert_eq!(
                unescape_tag_value(&escape_tag_value(value)),
                value,
                "{value:?}"
            );
        }
        assert!(matches!(escape_tag_value("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn written_messages_parse_back_to_the_same_parts() {
        let mut out = String::new();
        write(
            &mut out,
            &[("t", Some("a b"))],
            Some("n!u@h"),
            "PRIVMSG",
            &["#a", ":-) hi"],
        );
        let msg = Message::parse(&out).unwrap();
        assert_eq!(msg.tag("t"), Some("a b"));
        assert_eq!(msg.source, Some("n!u@h"));
        assert_eq!(msg.command, "PRIVMSG");
        assert_eq!(&msg.params[..], ["#a", ":-) hi"]);
    }

    #[test]
    fn userhost_splits_at_the_first_bang_before_the_first_at() {
        let uh = split_userhost("n!u@h@x");
        assert_eq!((uh.nick, uh.user, uh.host), ("n", Some("u"), Some("h@x")));
        let uh = split_userhost("");
        assert_eq!((uh.nick, uh.user, uh.host), ("", None, None));
    }

    /// Text drawn from `alphabet`, one pick per byte.
    fn soup(picks: &[u8], alphabet: &[&str]) -> String {
        picks
            .iter()
            .map(|&pick| alphabet[usize::from(pick) % alphabet.len()])
            .collect()
    }

    /// A line shaped like IRC (tags, source, command, parameters) made of
    /// syntax characters, so random input mostly parses and exercises
    /// escapes, repeated keys, spaces and trailing parameters.
    fn shaped_line(tags: &[u8], source: &[u8], params: &[u8], shape: u8) -> String {
        const KEYS: [&str; 5] = ["a", "b", "+c", "v.example/d", "a"];
        const VALUES: [&str; 9] = ["", "x", "=", ":", "é", "\\", "\\s", "\\:", "\\\\"];
        const SOURCE: [&str; 7] = ["n", "!", "@", "~", ".", ":", "\u{3}"];
        const PARAMS: [&str; 9] = [" ", " ", ":", "a", "b", "é", "\\", "@", "!"];
        const COMMANDS: [&str; 4] = ["PRIVMSG", "001", "mode", "X"];
        let mut line = String::new();
        if shape & 1 != 0 {
            // Three picks make one tag: its key and two pieces of value.
            let tags: Vec<String> = tags
                .chunks(3)
                .map(|pick| soup(&pick[..1], &KEYS) + "=" + &soup(&pick[1..], &VALUES))
                .collect();
            line = format!("@{} ", tags.join(";"));
        }
        if shape & 2 != 0 {
            line += &format!(":{} ", soup(source, &SOURCE));
        }
        line += COMMANDS[usize::from(shape >> 2) % COMMANDS.len()];
        line + " " + &soup(params, &PARAMS)
    }

    #[test]
    fn any_line_parses_without_panic_and_writes_back_to_the_same_parts() {
        fn property(parts: (Vec<u8>, Vec<u8>, Vec<u8>, u8), text: String) -> bool {
            let _ = Message::parse(&text);
            let (tags, source, params, shape) = parts;
            let soup = shaped_line(&tags, &source, &params, shape);
            let Ok(msg) = Message::parse(&soup) else {
                return true;
            };
            let tags: Vec<(&str, Option<&str>)> = msg
                .tags
                .iter()
                .map(|tag| (tag.key, Some(tag.value.as_ref())))
                .collect();
            let mut out = String::new();
            write(&mut out, &tags, msg.source, msg.command, &msg.params);
            let Ok(again) = Message::parse(&out) else {
                return false;
            };
            again.tags == msg.tags
                && again.source == msg.source
                && again.command == msg.command
                && again.params == msg.params
        }
        quickcheck::QuickCheck::new()
            .tests(2000)
            .rng(quickcheck::Gen::new(60))
            .quickcheck(property as fn((Vec<u8>, Vec<u8>, Vec<u8>, u8), String) -> bool);
    }

    #[test]
    fn parse_never_panics_on_odd_input() {
        let odd = [
            "@",
            "@ ",
            "@;",
            "@=",
            ":",
            ": ",
            "@a :",
            "@a=\\",
            "\u{1F600}",
            "A :",
            "A  :",
            "@\u{e9}=x A",
        ];
        for input in odd {
            let _ = Message::parse(input);
        }
    }
}
