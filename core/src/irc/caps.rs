//! IRCv3 capabilities the server offers (`CAP LS 302`), and the set a
//! client has enabled.

/// One capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Cap {
    /// `message-tags`: tags on messages (`msgid`), and client tags.
    MessageTags,
    /// `server-time`: `@time=` on messages.
    ServerTime,
    /// `echo-message`: a client's own PRIVMSG and NOTICE come back to it.
    EchoMessage,
    /// `multi-prefix`: every channel prefix in NAMES and WHO, not only the
    /// highest.
    MultiPrefix,
    /// `away-notify`: AWAY changes of channel peers.
    AwayNotify,
    /// `userhost-in-names`: `nick!user@host` in NAMES.
    UserhostInNames,
    /// `batch`: grouped replies (chathistory answers come in one).
    Batch,
    /// `labeled-response`: a command's `label` tag comes back on its
    /// answer.
    LabeledResponse,
    /// `draft/chathistory`: the durable history on request.
    ChatHistory,
    /// `sasl`: AUTHENTICATE PLAIN against the server's accounts.
    Sasl,
    /// `account-tag`: `account=NAME` on messages from logged-in users.
    AccountTag,
    /// `account-notify`: `ACCOUNT` when channel peers log in or out.
    AccountNotify,
}

impl Cap {
    /// Every capability, in the order `CAP LS` lists them.
    pub const ALL: [Cap; 12] = [
        Cap::AccountNotify,
        Cap::AccountTag,
        Cap::AwayNotify,
        Cap::Batch,
        Cap::ChatHistory,
        Cap::EchoMessage,
        Cap::LabeledResponse,
        Cap::MessageTags,
        Cap::MultiPrefix,
        Cap::Sasl,
        Cap::ServerTime,
        Cap::UserhostInNames,
    ];

    /// The name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Cap::MessageTags => "message-tags",
            Cap::ServerTime => "server-time",
            Cap::EchoMessage => "echo-message",
            Cap::MultiPrefix => "multi-prefix",
            Cap::AwayNotify => "away-notify",
            Cap::UserhostInNames => "userhost-in-names",
            Cap::Batch => "batch",
            Cap::LabeledResponse => "labeled-response",
            Cap::ChatHistory => "draft/chathistory",
            Cap::Sasl => "sasl",
            Cap::AccountTag => "account-tag",
            Cap::AccountNotify => "account-notify",
        }
    }

    /// The capability of a name (exact, as the specification says).
    pub fn named(name: &str) -> Option<Cap> {
        Cap::ALL.into_iter().find(|cap| cap.name() == name)
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// A set of capabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Caps(u16);

impl Caps {
    /// Whether `cap` is in the set.
    pub fn has(self, cap: Cap) -> bool {
        self.0 & cap.bit() != 0
    }

    /// Adds or removes `cap`.
    pub fn set(&mut self, cap: Cap, on: bool) {
        if on {
            self.0 |= cap.bit();
        } else {
            self.0 &= !cap.bit();
        }
    }

    /// The capabilities in the set, in [`Cap::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Cap> {
        Cap::ALL.into_iter().filter(move |cap| self.has(*cap))
    }
}

/// The `CAP LS` value list. With version 302 or later, values follow
/// their capability (`draft/chathistory=100`).
pub fn listing(version_302: bool, chathistory_limit: usize) -> Vec<String> {
    Cap::ALL
        .into_iter()
        .map(|cap| match cap {
            Cap::ChatHistory if version_302 => format!("{}={chathistory_limit}", cap.name()),
            Cap::Sasl if version_302 => format!("{}=PLAIN", cap.name()),
            _ => cap.name().to_owned(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_hold_what_was_added() {
        let mut caps = Caps::default();
        caps.set(Cap::ServerTime, true);
        caps.set(Cap::EchoMessage, true);
        caps.set(Cap::EchoMessage, false);
        assert!(caps.has(Cap::ServerTime));
        assert!(!caps.has(Cap::EchoMessage));
        assert_eq!(caps.iter().collect::<Vec<_>>(), [Cap::ServerTime]);
        assert_eq!(Cap::named("draft/chathistory"), Some(Cap::ChatHistory));
        assert_eq!(Cap::named("SERVER-TIME"), None);
    }
}
