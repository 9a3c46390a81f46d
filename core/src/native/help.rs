//! The native dialect's command table: names, usage and help text.

/// One command of the native dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandSpec {
    /// The name without `#`, lowercase.
    pub name: &'static str,
    /// Other names for it.
    pub aliases: &'static [&'static str],
    /// Usage, e.g. `#msg NAME TEXT`.
    pub usage: &'static str,
    /// What it does, one sentence.
    pub summary: &'static str,
}

/// Every command, in help order.
pub const COMMANDS: &[CommandSpec] = &[
    spec(
        "help",
        &[],
        "#help [COMMAND]",
        "list commands, or explain one",
    ),
    spec("nick", &[], "#nick NAME", "change your nickname"),
    spec(
        "join",
        &[],
        "#join ROOM",
        "leave your room and join ROOM, creating it (and owning it) if absent",
    ),
    spec(
        "create",
        &[],
        "#create ROOM [private]",
        "create ROOM, owned by you, and switch to it; a private room admits only invited users",
    ),
    spec(
        "invite",
        &[],
        "#invite NAME",
        "invite NAME to your private room (owner only)",
    ),
    spec(
        "leave",
        &[],
        "#leave",
        "leave your room and go back to #general",
    ),
    spec(
        "rooms",
        &[],
        "#rooms [PAGE]",
        "list rooms with member count and topic, a page at a time",
    ),
    spec(
        "who",
        &[],
        "#who [PAGE]",
        "list the members of your room (@ marks the owner), a page at a time",
    ),
    spec("msg", &["w"], "#msg NAME TEXT", "send a private message"),
    spec("me", &[], "#me ACTION", "describe an action in your room"),
    spec(
        "topic",
        &[],
        "#topic [TEXT]",
        "show your room's topic, or set it (owner or operator)",
    ),
    spec(
        "history",
        &[],
        "#history [#ROOM|@NAME] [before ID|since ID|around ID] [N]",
        "show N stored messages (default 20) of your room, of ROOM, or of your whispers with NAME; before, since and around page by message id (see #ids)",
    ),
    spec(
        "search",
        &[],
        "#search TEXT [in #ROOM]",
        "show the newest messages that contain every word of TEXT, in the rooms you may read or in ROOM",
    ),
    spec(
        "ack",
        &[],
        "#ack on|off",
        "acknowledge each chat line you send once it is stored and delivered",
    ),
    spec(
        "ids",
        &[],
        "#ids on|off",
        "show each chat line's message id as id=N (for #history before, since and around)",
    ),
    spec(
        "urgent",
        &[],
        "#urgent TEXT",
        "send a message that overtakes queued traffic (owner or operator)",
    ),
    spec(
        "ping",
        &[],
        "#ping [TOKEN]",
        "ask the server for a pong carrying TOKEN",
    ),
    spec(
        "pong",
        &[],
        "#pong [TOKEN]",
        "answer the server's idle check (any line does)",
    ),
    spec(
        "oper",
        &[],
        "#oper NAME PASSWORD",
        "become a server operator",
    ),
    spec(
        "kick",
        &[],
        "#kick NAME [REASON]",
        "remove NAME from your room; in #general an operator's kick disconnects (owner or operator)",
    ),
    spec(
        "ban",
        &[],
        "#ban NAME|IP [DURATION] [REASON]",
        "ban an address from your room (owner) or the server (operator), forever or for DURATION such as 10m",
    ),
    spec(
        "unban",
        &[],
        "#unban IP",
        "lift a ban on an address, in your room (owner) or on the server (operator)",
    ),
    spec(
        "mute",
        &[],
        "#mute NAME DURATION",
        "silence NAME in your room for DURATION such as 30s or 10m (owner or operator)",
    ),
    spec(
        "unmute",
        &[],
        "#unmute NAME",
        "lift a mute in your room (owner or operator)",
    ),
    spec("quit", &[], "#quit [MESSAGE]", "leave the server"),
    spec(
        "register",
        &[],
        "#register PASSWORD",
        "register your nickname as an account with a one-word password; only you may then use the nickname",
    ),
    spec(
        "login",
        &[],
        "#login NAME PASSWORD",
        "log in to the account NAME and take its nickname",
    ),
    spec(
        "logout",
        &[],
        "#logout",
        "log out of your account (keep its nickname and you are renamed after a grace period)",
    ),
    spec(
        "password",
        &[],
        "#password OLD NEW",
        "change your account's password",
    ),
    spec(
        "unregister",
        &[],
        "#unregister PASSWORD",
        "delete your account; its nickname is free for anyone",
    ),
    spec(
        "whois",
        &[],
        "#whois NAME",
        "show whether NAME is registered, logged in and on how many connections",
    ),
    spec(
        "oper-grant",
        &[],
        "#oper-grant NAME",
        "make the account NAME an operator account: logging in to it makes an operator (operator only)",
    ),
    spec(
        "oper-revoke",
        &[],
        "#oper-revoke NAME",
        "take the operator flag from the account NAME (operator only)",
    ),
];

const fn spec(
    name: &'static str,
    aliases: &'static [&'static str],
    usage: &'static str,
    summary: &'static str,
) -> CommandSpec {
    CommandSpec {
        name,
        aliases,
        usage,
        summary,
    }
}

/// Finds a command by name or alias, ignoring case and a leading `#`.
pub fn find(name: &str) -> Option<&'static CommandSpec> {
    let name = name.strip_prefix('#').unwrap_or(name);
    COMMANDS.iter().find(|spec| {
        spec.name.eq_ignore_ascii_case(name)
            || spec
                .aliases
                .iter()
                .any(|alias| alias.eq_ignore_ascii_case(name))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_ignores_case_hash_and_finds_aliases() {
        assert_eq!(find("MSG").map(|s| s.name), Some("msg"));
        assert_eq!(find("#w").map(|s| s.name), Some("msg"));
        assert_eq!(find("nope"), None);
    }

    #[test]
    fn every_usage_starts_with_its_name() {
        for spec in COMMANDS {
            assert!(
                spec.usage.starts_with(&format!("#{}", spec.name)),
                "{spec:?}"
            );
        }
    }
}
