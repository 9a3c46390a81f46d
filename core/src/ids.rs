//! Identifiers and validated names.
//!
//! Every name that crosses the edge of the core is parsed into one of these
//! newtypes first: if a [`Nick`] or [`RoomName`] exists, it is valid.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// One connection, for its whole life.
///
/// Allocated by the core in increasing order and never reused, so every
/// backend and the in-memory driver see the same ids for the same script.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConnId(u64);

impl ConnId {
    pub(crate) fn new(raw: u64) -> Self {
        Self(raw)
    }

    /// The raw number, for backend maps and log lines.
    pub fn get(self) -> u64 {
        self.0
    }

    /// The id whose raw number is `raw`, for a backend that keeps it as a
    /// map key or poller token ([`ConnId::get`]) rather than store it
    /// twice. Only numbers the core handed out name connections.
    pub fn from_raw(raw: u64) -> Self {
        Self(raw)
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn{}", self.0)
    }
}

/// A chat message's id: increasing across the server's life and across
/// restarts (the next id follows the largest one recovered from history).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageId(u64);

impl MessageId {
    /// Wraps a raw id, as read back from a history record.
    pub fn new(raw: u64) -> Self {
        Self(raw)
    }

    /// The raw number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Why a name was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name was empty.
    #[error("it is empty")]
    Empty,
    /// The name was longer than allowed.
    #[error("it is longer than {max} characters")]
    TooLong {
        /// The maximum length in characters.
        max: usize,
    },
    /// The name held a character that is not allowed.
    #[error("{found:?} is not allowed{where_}")]
    BadChar {
        /// The offending character.
        found: char,
        /// Whether it was the first character (some characters may not start a name).
        where_: &'static str,
    },
    /// The name is one the server hands out itself (guest names).
    #[error("names of the form guestN are reserved for the server")]
    Reserved,
}

/// A user's nickname: 1 to 24 ASCII characters, letters, digits and
/// `_-[]{}\|^`, not starting with a digit or `-`.
///
/// Comparison and uniqueness ignore ASCII case ([`Nick::folded`]); the
/// spelling the user chose is kept for display. A nickname is short and
/// ASCII by construction, so it is stored inline: no allocation per user.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Nick {
    len: u8,
    bytes: [u8; Nick::MAX_LEN],
}

impl Nick {
    /// The longest nickname, in characters.
    pub const MAX_LEN: usize = 24;

    /// Parses any syntactically valid nickname, guest names included
    /// (used for targets such as `#msg guest3 hi` and for history records).
    pub fn parse(text: &str) -> Result<Self, NameError> {
        check_chars(text, Self::MAX_LEN, is_nick_start, is_nick_char)?;
        Ok(Self::inline(text))
    }

    /// Parses a nickname a user asks for: like [`Nick::parse`], but the
    /// server's own guest names are refused.
    pub fn parse_chosen(text: &str) -> Result<Self, NameError> {
        let nick = Self::parse(text)?;
        if nick.is_guest_name() {
            return Err(NameError::Reserved);
        }
        Ok(nick)
    }

    /// The guest nickname the server gives a new connection.
    pub(crate) fn guest(conn: ConnId) -> Self {
        // "guest" and at most 20 digits: always within the limit.
        Self::inline(&format!("guest{}", conn.get()))
    }

    /// The nickname as the user spelled it.
    pub fn as_str(&self) -> &str {
        // Only validated ASCII is ever stored, so this cannot fail.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }

    /// The case-folded form, used for uniqueness and lookups.
    pub fn folded(&self) -> Nick {
        let mut folded = *self;
        folded.bytes.make_ascii_lowercase();
        folded
    }

    /// Copies already validated text (ASCII, at most `MAX_LEN` bytes).
    fn inline(text: &str) -> Self {
        let mut bytes = [0; Self::MAX_LEN];
        let len = text.len().min(Self::MAX_LEN);
        bytes[..len].copy_from_slice(&text.as_bytes()[..len]);
        Self {
            len: len as u8,
            bytes,
        }
    }

    pub(crate) fn is_guest_name(&self) -> bool {
        let folded = self.folded();
        let Some(rest) = folded.as_str().strip_prefix("guest") else {
            return false;
        };
        // A node of a cluster adds its name: `guest7-n2`.
        let digits = rest.split_once('-').map_or(rest, |(digits, _)| digits);
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
    }

    /// The guest nickname a node of a cluster gives a new connection: the
    /// node's name keeps guests of different nodes apart. Node names are
    /// at most 8 characters, so this fits unless a node hands out more
    /// than 10^10 connections (then it is cut to the limit).
    pub(crate) fn guest_on(conn: ConnId, node: &str) -> Self {
        Self::inline(&format!("guest{}-{node}", conn.get()))
    }
}

impl PartialOrd for Nick {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Nick {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl fmt::Debug for Nick {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Nick").field(&self.as_str()).finish()
    }
}

impl fmt::Display for Nick {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for Nick {
    type Error = NameError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Nick> for String {
    fn from(value: Nick) -> Self {
        value.as_str().to_owned()
    }
}

/// A room's name, without any dialect's prefix (the native dialect shows
/// `#general`; the model stores `general`).
///
/// 1 to 32 characters: lowercase ASCII letters, digits, `_`, `-` and `.`,
/// starting with a letter or digit. Upper case is folded to lower case on
/// parse, so `General` and `general` are the same room. The rules also make
/// every room name a safe file name. The text is shared: every session in a
/// room holds the same allocation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RoomName(Arc<str>);

impl RoomName {
    /// The longest room name, in characters.
    pub const MAX_LEN: usize = 32;

    /// Parses and normalises a room name.
    pub fn parse(text: &str) -> Result<Self, NameError> {
        let lower = text.to_ascii_lowercase();
        check_chars(&lower, Self::MAX_LEN, is_room_start, is_room_char)?;
        Ok(Self(lower.into()))
    }

    /// The room every connection lands in.
    pub fn general() -> Self {
        Self("general".into())
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for RoomName {
    type Error = NameError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<RoomName> for String {
    fn from(value: RoomName) -> Self {
        value.0.as_ref().into()
    }
}

fn check_chars(
    text: &str,
    max: usize,
    start_ok: fn(char) -> bool,
    char_ok: fn(char) -> bool,
) -> Result<(), NameError> {
    let mut chars = text.chars();
    let first = chars.next().ok_or(NameError::Empty)?;
    if !start_ok(first) {
        return Err(NameError::BadChar {
            found: first,
            where_: " at the start",
        });
    }
    if let Some(bad) = chars.clone().find(|&c| !char_ok(c)) {
        return Err(NameError::BadChar {
            found: bad,
            where_: "",
        });
    }
    if text.chars().count() > max {
        return Err(NameError::TooLong { max });
    }
    Ok(())
}

fn is_nick_start(c: char) -> bool {
    c.is_ascii_alphabetic() || "_[]{}\\|^`".contains(c)
}

fn is_nick_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_-[]{}\\|^`".contains(c)
}

fn is_room_start(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn is_room_char(c: char) -> bool {
    is_room_start(c) || "_-.".contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nick_accepts_irc_style_names_and_keeps_case() {
        let nick = Nick::parse("Alice_[away]").unwrap();
        assert_eq!(nick.as_str(), "Alice_[away]");
        assert_eq!(nick.folded().as_str(), "alice_[away]");
        assert_eq!(
            Nick::parse("ALICE").unwrap().folded(),
            Nick::parse("alice").unwrap()
        );
    }

    #[test]
    fn nick_rejects_leading_digit_spaces_and_length() {
        assert!(matches!(
            Nick::parse("1abc"),
            Err(NameError::BadChar { .. })
        ));
        assert!(matches!(Nick::parse("a b"), Err(NameError::BadChar { .. })));
        assert_eq!(Nick::parse(""), Err(NameError::Empty));
        assert_eq!(
            Nick::parse(&"a".repeat(25)),
            Err(NameError::TooLong { max: 24 })
        );
        assert!(Nick::parse(&"a".repeat(24)).is_ok());
    }

    #[test]
    fn chosen_nick_cannot_be_a_guest_name() {
        assert_eq!(Nick::parse_chosen("Guest12"), Err(NameError::Reserved));
        assert!(Nick::parse_chosen("guest").is_ok());
        assert!(Nick::parse_chosen("guestx1").is_ok());
        assert!(Nick::parse("guest12").is_ok());
        assert!(Nick::parse_chosen("guest12-n2").is_err());
        assert!(Nick::parse_chosen("guest-n2").is_ok());
        assert_eq!(Nick::guest_on(ConnId::new(7), "n2").as_str(), "guest7-n2");
    }

    #[test]
    fn room_names_fold_case_and_refuse_dot_start() {
        assert_eq!(RoomName::parse("Rust-Lang").unwrap().as_str(), "rust-lang");
        assert!(RoomName::parse(".hidden").is_err());
        assert!(RoomName::parse("..").is_err());
        assert!(RoomName::parse("a/b").is_err());
        assert!(RoomName::parse("#general").is_err());
    }
}
