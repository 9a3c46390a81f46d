//! Wildcard masks (`nick!user@host` bans and the like) and hostname checks.
//!
//! Matching is ASCII case-insensitive because the server announces
//! `CASEMAPPING=ascii`: `A`..`Z` equal `a`..`z`, and nothing else folds.

/// Whether `text` matches `mask`, where `*` stands for any run of
/// characters (none included) and `?` for exactly one character. Every other
/// character is literal, `[` and `]` too, and letters compare ASCII
/// case-insensitively.
///
/// Runs in O(mask × text) time at worst, never exponential: on a mismatch
/// only the latest `*` is retried, one character further on, because an
/// earlier `*` could never reach a match the latest one misses.
pub fn matches(mask: &str, text: &str) -> bool {
    let (mask, text) = (mask.as_bytes(), text.as_bytes());
    let (mut m, mut t) = (0, 0);
    // Where to resume after the latest `*`: (mask index after it, text index
    // it has swallowed up to).
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match mask.get(m) {
            Some(b'*') => {
                star = Some((m + 1, t));
                m += 1;
                continue;
            }
            Some(b'?') => {
                m += 1;
                t += utf8_len(text[t]);
                continue;
            }
            // Byte-wise comparison keeps UTF-8 aligned: equal lead bytes
            // mean equal sequence lengths.
            Some(c) if c.eq_ignore_ascii_case(&text[t]) => {
                m += 1;
                t += 1;
                continue;
            }
            _ => {}
        }
        let Some((after_star, swallowed)) = star else {
            return false;
        };
        let swallowed = swallowed + utf8_len(text[swallowed]);
        star = Some((after_star, swallowed));
        m = after_star;
        t = swallowed;
    }
    mask[m.min(mask.len())..].iter().all(|&b| b == b'*')
}

/// Whether `host` is a hostname an IRC server accepts for itself or a
/// client: dot-separated labels of ASCII letters, digits and inner `-`, each
/// 1 to 63 bytes, at most 253 bytes in all (plus an optional final `.`).
///
/// A single label is refused unless it ends with a dot (`services.` is
/// fine, `irc` is not), so a bare word is never taken for a host.
/// Internationalised names must come punycoded (`xn--...`). IPv4 addresses
/// pass as dotted digits; IPv6 addresses are not hostnames and fail.
pub fn is_valid_hostname(host: &str) -> bool {
    let (name, trailing_dot) = match host.strip_suffix('.') {
        Some(name) => (name, true),
        None => (host, false),
    };
    if name.is_empty() || name.len() > 253 {
        return false;
    }
    if !trailing_dot && !name.contains('.') {
        return false;
    }
    name.split('.').all(is_valid_label)
}

/// Turns what a user typed as a ban into a full `nick!user@host` mask, the
/// way ergo and InspIRCd do:
///
/// | typed | mask |
/// | --- | --- |
/// | `nick` | `nick!*@*` |
/// | `nick!user` | `nick!user@*` |
/// | `user@host` | `*!user@host` |
/// | `host.with.dot` (or an IPv6 address, with `:`) | `*!*@host.with.dot` |
/// | `nick!user@host` | unchanged |
///
/// An empty part becomes `*`. Case is kept; [`matches()`] ignores it anyway.
pub fn normalize_ban_mask(text: &str) -> String {
    let (nick, user, host) = match (text.find('!'), text.find('@')) {
        (None, None) if text.contains(['.', ':']) => ("*", "*", text),
        (None, None) => (text, "*", "*"),
        (None, Some(at)) => ("*", &text[..at], &text[at + 1..]),
        // A `!` after the `@` belongs to the host (odd, but it is what the
        // user typed), so the mask still has its three parts.
        (Some(bang), Some(at)) if at < bang => ("*", &text[..at], &text[at + 1..]),
        (Some(bang), None) => (&text[..bang], &text[bang + 1..], "*"),
        (Some(bang), Some(at)) => (&text[..bang], &text[bang + 1..at], &text[at + 1..]),
    };
    let or_star = |part: &str| {
        if part.is_empty() {
            "*".to_owned()
        } else {
            part.to_owned()
        }
    };
    format!("{}!{}@{}", or_star(nick), or_star(user), or_star(host))
}

/// One label of a hostname.
fn is_valid_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// The length of the UTF-8 sequence a lead byte starts, so `?` and `*`
/// step over whole characters. Continuation bytes never start a step on a
/// `&str`, but count 1 so that nothing could loop or overrun.
fn utf8_len(lead: u8) -> usize {
    match lead {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_match_ascii_case_insensitively_and_nothing_else_folds() {
        assert!(matches("COOL!*@Example.COM", "cool!u@example.com"));
        assert!(matches("cool*", "COOLGUY"));
        assert!(!matches("É*", "é!u@h"));
        // Not rfc1459 casemapping: `[` is not `{`.
        assert!(!matches("a[b", "a{b"));
    }

    #[test]
    fn question_mark_is_one_whole_character() {
        assert!(matches("n?ck", "nück"));
        assert!(!matches("n??ck", "nück"));
        assert!(matches("*k", "ü\u{1F600}k"));
        assert!(matches("?", "\u{1F600}"));
    }

    #[test]
    fn empty_masks_and_texts() {
        assert!(matches("", ""));
        assert!(matches("*", ""));
        assert!(matches("**", ""));
        assert!(!matches("?", ""));
        assert!(!matches("", "a"));
    }

    #[test]
    fn many_stars_against_a_long_text_stay_fast() {
        // With naive backtracking this is exponential and would never end.
        let text = "a".repeat(20_000);
        assert!(!matches("*a*a*a*a*a*a*a*a*b", &text));
        assert!(matches("*a*a*a*a*a*a*a*a*", &text));
        let text = format!("{}b", "a".repeat(20_000));
        assert!(matches("*a*a*a*a*a*a*a*a*b", &text));
    }

    #[test]
    fn hostnames_have_limits_on_labels_and_length() {
        assert!(is_valid_hostname("127.0.0.1"));
        assert!(is_valid_hostname(&format!("{}.net", "a".repeat(63))));
        assert!(!is_valid_hostname(&format!("{}.net", "a".repeat(64))));
        let long = vec!["abcdefgh"; 29].join("."); // 29 * 9 - 1 = 260 bytes
        assert!(!is_valid_hostname(&long));
        assert!(!is_valid_hostname("a..b"));
        assert!(!is_valid_hostname("."));
        assert!(!is_valid_hostname("lol-.net"));
        assert!(!is_valid_hostname("::1"));
    }

    #[test]
    fn ban_masks_are_completed_like_ergo_and_inspircd() {
        assert_eq!(normalize_ban_mask("nick"), "nick!*@*");
        assert_eq!(normalize_ban_mask("nick!user"), "nick!user@*");
        assert_eq!(normalize_ban_mask("user@host"), "*!user@host");
        assert_eq!(normalize_ban_mask("host.with.dot"), "*!*@host.with.dot");
        assert_eq!(normalize_ban_mask("2001:db8::1"), "*!*@2001:db8::1");
        assert_eq!(normalize_ban_mask("n!u@h"), "n!u@h");
        assert_eq!(normalize_ban_mask("*!*@*.example.com"), "*!*@*.example.com");
    }

    #[test]
    fn empty_ban_mask_parts_become_stars() {
        assert_eq!(normalize_ban_mask(""), "*!*@*");
        assert_eq!(normalize_ban_mask("!@"), "*!*@*");
        assert_eq!(normalize_ban_mask("nick!"), "nick!*@*");
        assert_eq!(normalize_ban_mask("@host"), "*!*@host");
        assert_eq!(normalize_ban_mask("u@h!x"), "*!u@h!x");
    }

    #[test]
    fn a_normalized_ban_matches_what_the_short_form_meant() {
        assert!(matches(&normalize_ban_mask("Bob"), "bob!~b@example.com"));
        assert!(matches(
            &normalize_ban_mask("*.example.com"),
            "x!y@host.example.com"
        ));
        assert!(!matches(&normalize_ban_mask("bob"), "bobby!b@example.com"));
    }
}
