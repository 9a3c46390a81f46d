//! TEMPORARY: replaced by the full wire layer.

use std::borrow::Cow;

/// One tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag<'a> {
    /// Key.
    pub key: &'a str,
    /// Unescaped value.
    pub value: Cow<'a, str>,
}

/// One parsed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    /// Tags.
    pub tags: Vec<Tag<'a>>,
    /// Source.
    pub source: Option<&'a str>,
    /// Command.
    pub command: &'a str,
    /// Params.
    pub params: Vec<&'a str>,
}

/// Error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// Empty.
    #[error("empty message")]
    Empty,
}

/// Parses.
pub fn parse(line: &str) -> Result<Message<'_>, MessageError> {
    let mut rest = line.trim_start_matches(' ');
    let mut tags = Vec::new();
    if let Some(t) = rest.strip_prefix('@') {
        let (t, r) = t.split_once(' ').unwrap_or((t, ""));
        for tag in t.split(';') {
            let (key, value) = tag.split_once('=').unwrap_or((tag, ""));
            tags.push(Tag { key, value: Cow::Borrowed(value) });
        }
        rest = r.trim_start_matches(' ');
    }
    let mut source = None;
    if let Some(s) = rest.strip_prefix(':') {
        let (s, r) = s.split_once(' ').unwrap_or((s, ""));
        source = Some(s);
        rest = r.trim_start_matches(' ');
    }
    let (command, mut rest) = rest.split_once(' ').unwrap_or((rest, ""));
    if command.is_empty() {
        return Err(MessageError::Empty);
    }
    let mut params = Vec::new();
    loop {
        rest = rest.trim_start_matches(' ');
        if rest.is_empty() {
            break;
        }
        if let Some(trailing) = rest.strip_prefix(':') {
            params.push(trailing);
            break;
        }
        let (p, r) = rest.split_once(' ').unwrap_or((rest, ""));
        params.push(p);
        rest = r;
    }
    Ok(Message { tags, source, command, params })
}

/// Writes.
pub fn write(
    out: &mut String,
    tags: &[(&str, Option<&str>)],
    source: Option<&str>,
    command: &str,
    params: &[&str],
) {
    if !tags.is_empty() {
        out.push('@');
        for (i, (k, v)) in tags.iter().enumerate() {
            if i > 0 {
                out.push(';');
            }
            out.push_str(k);
            if let Some(v) = v {
                out.push('=');
                out.push_str(v);
            }
        }
        out.push(' ');
    }
    if let Some(source) = source {
        out.push(':');
        out.push_str(source);
        out.push(' ');
    }
    out.push_str(command);
    for (i, p) in params.iter().enumerate() {
        out.push(' ');
        if i + 1 == params.len() && (p.is_empty() || p.contains(' ') || p.starts_with(':')) {
            out.push(':');
        }
        out.push_str(p);
    }
}
