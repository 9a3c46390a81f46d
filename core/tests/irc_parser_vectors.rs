//! The IRC wire layer against every vector of ircdocs/parser-tests, kept in
//! `shared/irc-parser-tests/` beside the repository (see its README.md).
//!
//! A missing folder or file fails the test: a mis-set path must never pass
//! by running nothing.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chatd_core::irc::mask::{is_valid_hostname, matches};
use chatd_core::irc::message::{Message, split_userhost, write};
use serde::Deserialize;

/// `shared/` sits beside the repository root, both for a worktree and for
/// the main checkout (and for CI's fresh clone).
const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/irc-parser-tests/"
);

#[derive(Deserialize)]
struct File<T> {
    tests: Vec<T>,
}

#[derive(Deserialize)]
struct Atoms {
    #[serde(default)]
    tags: BTreeMap<String, String>,
    #[serde(default)]
    source: Option<String>,
    verb: String,
    #[serde(default)]
    params: Vec<String>,
}

#[derive(Deserialize)]
struct Split {
    input: String,
    atoms: Atoms,
}

#[derive(Deserialize)]
struct Join {
    desc: String,
    atoms: Atoms,
    matches: Vec<String>,
}

#[derive(Deserialize)]
struct UserHost {
    source: String,
    atoms: UserHostAtoms,
}

#[derive(Deserialize)]
struct UserHostAtoms {
    #[serde(default)]
    nick: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    host: String,
}

#[derive(Deserialize)]
struct Hostname {
    host: String,
    valid: bool,
}

#[derive(Deserialize)]
struct Mask {
    mask: String,
    matches: Vec<String>,
    fails: Vec<String>,
}

/// Every case of one vector file; panics with the path if it cannot be read
/// or holds no case.
fn load<T: serde::de::DeserializeOwned>(name: &str) -> Vec<T> {
    let path = PathBuf::from(VECTORS).join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| {
        panic!(
            "cannot read IRC parser vectors at {}: {err}",
            path.display()
        )
    });
    let cases = serde_norway::from_str::<File<T>>(&text)
        .unwrap_or_else(|err| panic!("{} is not a vector file: {err}", path.display()))
        .tests;
    assert!(!cases.is_empty(), "{} holds no case", path.display());
    cases
}

#[test]
fn msg_split_parses_every_line_into_its_atoms() {
    let cases = load::<Split>("msg-split.yaml");
    for case in &cases {
        let input = &case.input;
        let msg = Message::parse(input).unwrap_or_else(|err| panic!("{input:?}: {err}"));
        let tags: BTreeMap<String, String> = msg
            .tags
            .iter()
            .map(|tag| (tag.key.to_owned(), tag.value.to_string()))
            .collect();
        assert_eq!(tags, case.atoms.tags, "tags of {input:?}");
        assert_eq!(
            msg.tags.len(),
            tags.len(),
            "a repeated key kept twice in {input:?}"
        );
        assert_eq!(
            msg.source,
            case.atoms.source.as_deref(),
            "source of {input:?}"
        );
        assert_eq!(msg.command, case.atoms.verb, "verb of {input:?}");
        assert_eq!(
            &msg.params[..],
            &case.atoms.params[..],
            "params of {input:?}"
        );
    }
    assert_eq!(cases.len(), 35, "msg-split.yaml changed; update the count");
}

#[test]
fn msg_join_writes_one_of_the_accepted_lines() {
    let cases = load::<Join>("msg-join.yaml");
    for case in &cases {
        let atoms = &case.atoms;
        // The vectors write "no value" as ""; `write` writes both bare.
        let tags: Vec<(&str, Option<&str>)> = atoms
            .tags
            .iter()
            .map(|(key, value)| (key.as_str(), Some(value.as_str())))
            .collect();
        let params: Vec<&str> = atoms.params.iter().map(String::as_str).collect();
        let mut out = String::new();
        write(
            &mut out,
            &tags,
            atoms.source.as_deref(),
            &atoms.verb,
            &params,
        );
        assert!(
            case.matches.contains(&out),
            "{}: wrote {out:?}, expected one of {:?}",
            case.desc,
            case.matches
        );
    }
    assert_eq!(cases.len(), 18, "msg-join.yaml changed; update the count");
}

#[test]
fn userhost_split_finds_nick_user_and_host() {
    let cases = load::<UserHost>("userhost-split.yaml");
    for case in &cases {
        let split = split_userhost(&case.source);
        let got = (
            split.nick,
            split.user.unwrap_or(""),
            split.host.unwrap_or(""),
        );
        let want = (
            case.atoms.nick.as_str(),
            case.atoms.user.as_str(),
            case.atoms.host.as_str(),
        );
        assert_eq!(got, want, "{:?}", case.source);
    }
    assert_eq!(
        cases.len(),
        7,
        "userhost-split.yaml changed; update the count"
    );
}

#[test]
fn validate_hostname_accepts_exactly_the_valid_hosts() {
    let cases = load::<Hostname>("validate-hostname.yaml");
    for case in &cases {
        assert_eq!(is_valid_hostname(&case.host), case.valid, "{:?}", case.host);
    }
    assert_eq!(
        cases.len(),
        19,
        "validate-hostname.yaml changed; update the count"
    );
}

#[test]
fn mask_match_matches_and_fails_as_listed() {
    let cases = load::<Mask>("mask-match.yaml");
    let mut checked = 0;
    for case in &cases {
        for text in &case.matches {
            assert!(
                matches(&case.mask, text),
                "{:?} should match {text:?}",
                case.mask
            );
            checked += 1;
        }
        for text in &case.fails {
            assert!(
                !matches(&case.mask, text),
                "{:?} should fail {text:?}",
                case.mask
            );
            checked += 1;
        }
    }
    assert_eq!(cases.len(), 6, "mask-match.yaml changed; update the count");
    assert!(checked > 0);
}
