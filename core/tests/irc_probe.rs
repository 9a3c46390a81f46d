//! Hostile input on the IRC dialect, found by probing the IRC listener
//! (h-probe). Each test is a regression for one finding.

mod irc_support;

use chatd_core::{Config, Dialect, Output};
use irc_support::{Harness, lines_to, registered, sent_bytes};

fn unlimited() -> Config {
    let mut config = Config::default();
    config.rate_limit.enabled = false;
    config
}

/// `MODE #chan +bbbb...` (no mask parameters) sends the whole
/// ban list once per `b`: with 500 bans, one 4 KB line made the release
/// server build about 70 MB of output in one step (RSS 6 MB -> 350 MB,
/// every client stalled about 1 s) before the requester was cut off as a
/// slow consumer. One line's answer should stay bounded: a ban list
/// query at most once per MODE (or per MODES=4 letters).
#[test]
fn one_mode_line_sends_the_ban_list_at_most_once() {
    let mut h = Harness::new(unlimited());
    let alice = registered(&mut h, 1, "alice");
    h.say(alice, "JOIN #amp\r\n", alice);
    // Four masks a line: MODES=4 is the most a MODE line may set.
    for chunk in 0..25 {
        let masks: Vec<String> = (0..4).map(|i| format!("m{chunk}x{i}!*@*")).collect();
        let line = format!("MODE #amp +bbbb {}\r\n", masks.join(" "));
        h.say(alice, &line, alice);
    }
    let lines = h.say(alice, "MODE #amp b\r\n", alice);
    assert_eq!(lines.iter().filter(|l| l.contains(" 367 ")).count(), 100);

    let query = format!("MODE #amp +{}\r\n", "b".repeat(1000));
    h.server.handle(h.now, alice, query.as_bytes());
    let outputs: Vec<Output> = std::iter::from_fn(|| h.server.poll_output()).collect();
    let lists = lines_to(alice, &outputs)
        .iter()
        .filter(|l| l.contains(" 368 "))
        .count();
    let bytes = sent_bytes(alice, &outputs);
    assert!(
        lists <= 4,
        "one MODE line sent the ban list {lists} times ({bytes} bytes)"
    );
}

/// Was failing (fixed): CHATHISTORY reads any public room's history, even a room the
/// reader is banned from (native `#history` reads only your own room):
/// a banned user keeps reading what the room says after the ban.
#[test]
fn a_banned_user_cannot_read_the_room_with_chathistory() {
    let mut h = Harness::new(unlimited());
    let alice = registered(&mut h, 1, "alice");
    let mallory = registered(&mut h, 2, "mallory");
    h.say(alice, "JOIN #room\r\n", alice);
    h.say(mallory, "JOIN #room\r\n", mallory);
    h.say(
        alice,
        "MODE #room +b mallory!*@*\r\nKICK #room mallory :out\r\n",
        alice,
    );
    let lines = h.say(mallory, "JOIN #room\r\n", mallory);
    assert!(lines.iter().any(|l| l.contains(" 474 ")), "{lines:?}");
    h.say(alice, "PRIVMSG #room :said after the ban\r\n", alice);
    let lines = h.say(mallory, "CHATHISTORY LATEST #room * 10\r\n", mallory);
    assert!(
        !lines.iter().any(|l| l.contains("said after the ban")),
        "a banned user read the room: {lines:?}"
    );
}

/// Was failing (fixed): The same through a key: a `+k` room (not `+s`) is readable
/// with CHATHISTORY by anyone who never gave the key.
#[test]
fn a_keyed_room_cannot_be_read_with_chathistory_without_joining() {
    let mut h = Harness::new(unlimited());
    let alice = registered(&mut h, 1, "alice");
    let mallory = registered(&mut h, 2, "mallory");
    h.say(alice, "JOIN #vault\r\nMODE #vault +k sesame\r\n", alice);
    h.say(alice, "PRIVMSG #vault :the combination is 1234\r\n", alice);
    let lines = h.say(mallory, "JOIN #vault\r\n", mallory);
    assert!(lines.iter().any(|l| l.contains(" 475 ")), "{lines:?}");
    let lines = h.say(mallory, "CHATHISTORY LATEST #vault * 10\r\n", mallory);
    assert!(
        !lines.iter().any(|l| l.contains("combination")),
        "read a keyed room without its key: {lines:?}"
    );
}

/// Was failing (fixed): A PRIVMSG made only of IRC formatting passes the
/// invisible-text check (which runs before formatting is stripped) and
/// reaches native users as an empty chat line `[#room] alice: ` (and an
/// empty action for `\x01ACTION \x02\x02\x01`). PROTOCOL.md: a text with
/// nothing visible gets `invisible-text` and is not sent.
#[test]
fn formatting_only_text_never_reaches_a_native_user_as_an_empty_line() {
    let mut h = Harness::new(unlimited());
    let alice = registered(&mut h, 1, "alice");
    let bob = h.connect(Dialect::Native, 2);
    h.say(bob, "#nick bob\n", bob);
    h.say(alice, "JOIN #general\r\n", alice);
    for text in [
        "\x02\x02\x03",
        "\x034",
        "\x01ACTION \x02\x02\x01",
        "\x1f \x0f",
    ] {
        let lines = h.say(alice, &format!("PRIVMSG #general :{text}\r\n"), bob);
        assert!(
            lines.is_empty(),
            "{text:?} reached the native user as {lines:?}"
        );
    }
}

/// Was failing (fixed): Framing errors from an IRC client (invalid UTF-8, control
/// characters, over-long lines) are answered at once and never count
/// against the rate limit: 5,000 two-byte lines `\xff\n` got 5,000 NOTICEs
/// (83 bytes each) and no flood disconnect. A native client's bad lines
/// count like any line (PROTOCOL.md: every line counts against the rate
/// limit) and a flood of them disconnects it.
#[test]
fn irc_framing_errors_count_against_the_rate_limit() {
    let mut h = Harness::new(Config::default());
    let alice = registered(&mut h, 1, "alice");
    h.server.handle(h.now, alice, &b"\xff\r\n".repeat(200));
    let outputs: Vec<Output> = std::iter::from_fn(|| h.server.poll_output()).collect();
    let notices = lines_to(alice, &outputs)
        .iter()
        .filter(|l| l.contains("bad-utf8"))
        .count();
    let closed = outputs
        .iter()
        .any(|o| matches!(o, Output::Close { conn, .. } if *conn == alice));
    assert!(
        closed || notices <= 20,
        "200 bad lines in one instant: {notices} answers, not disconnected"
    );
}

/// Was failing (fixed): An IRC connection that sent only `NICK squatter` holds the
/// nickname for as long as it answers the idle check (no registration
/// timeout), and a native whisper to it is accepted (`[whisper to
/// squatter]`) and delivered before registration as `PRIVMSG * :...`
/// (`*` is its name in numerics before 001). A client that has not
/// registered should not be reachable as a user.
#[test]
fn an_unregistered_irc_client_is_not_reachable_by_whispers() {
    let mut h = Harness::new(Config::default());
    let squatter = h.connect(Dialect::Irc, 1);
    h.say(squatter, "NICK squatter\r\n", squatter);
    let bob = h.connect(Dialect::Native, 2);
    h.say(bob, "#nick bob\n", bob);
    h.server.handle(h.now, bob, b"#msg squatter hello\n");
    let outputs: Vec<Output> = std::iter::from_fn(|| h.server.poll_output()).collect();
    let to_squatter = lines_to(squatter, &outputs);
    let to_bob = lines_to(bob, &outputs);
    assert!(
        to_squatter.is_empty(),
        "an unregistered client got {to_squatter:?} (bob got {to_bob:?})"
    );
}

/// Lists past TARGMAX, bad mode parameters and a channel operator's
/// reach: each answered, none silently dropped.
#[test]
fn what_is_not_done_is_said() {
    let mut h = Harness::new(unlimited());
    let alice = registered(&mut h, 1, "alice");
    let lines = h.say(alice, "JOIN #a,#b,#c,#d,#e,#f\r\n", alice);
    assert_eq!(
        lines[0],
        ":chatd.local 407 alice #e :Too many targets; only the first 4 were taken"
    );
    for bad in ["0", "-5", "999999999999999999999"] {
        assert_eq!(
            h.say(alice, &format!("MODE #a +l {bad}\r\n"), alice),
            [format!(
                ":chatd.local 696 alice #a l {bad} :The limit must be a whole number of at least 1"
            )]
        );
    }
    // A channel operator acts with the owner's rights, never on the owner.
    let bob = registered(&mut h, 2, "bob");
    h.say(bob, "JOIN #a\r\n", bob);
    h.say(alice, "MODE #a +o bob\r\n", alice);
    assert_eq!(
        h.say(bob, "KICK #a alice\r\n", bob),
        [":chatd.local 482 bob #a :alice owns #a"]
    );
}

/// An IRC client that never registers is cut at its first idle check.
#[test]
fn registration_has_a_deadline() {
    let mut h = Harness::new(Config::default());
    let squatter = h.connect(Dialect::Irc, 1);
    h.say(squatter, "NICK squatter\r\n", squatter);
    let deadline = h.server.poll_timeout().expect("the idle check is armed");
    h.server.handle_timeout(deadline);
    let outputs: Vec<Output> = std::iter::from_fn(|| h.server.poll_output()).collect();
    assert_eq!(
        lines_to(squatter, &outputs),
        ["ERROR :Closing Link: * (registration did not complete within 5m; disconnecting)"]
    );
    assert!(
        outputs
            .iter()
            .any(|o| matches!(o, Output::Close { conn, .. } if *conn == squatter))
    );
    assert!(h.server.check_invariants().is_ok());
}

/// A LIST is queued whole, so it stops within the slow-consumer bound
/// and says what it left out.
#[test]
fn a_long_list_is_cut_within_the_output_bound() {
    let mut config = unlimited();
    config.max_outbound_bytes = 64 * 1024;
    config.limits.rooms_per_connection = 1_000;
    config.limits.rooms_per_ip = 1_000;
    config.limits.rooms_joined = 1_000;
    let mut h = Harness::new(config);
    let alice = registered(&mut h, 1, "alice");
    for i in 0..100 {
        h.say(alice, &format!("JOIN #room{i}\r\n"), alice);
    }
    h.server.handle(h.now, alice, b"LIST\r\n");
    let outputs: Vec<Output> = std::iter::from_fn(|| h.server.poll_output()).collect();
    let lines = lines_to(alice, &outputs);
    assert_eq!(lines.iter().filter(|l| l.contains(" 322 ")).count(), 64);
    assert!(
        lines.iter().any(|l| l.contains("more rooms not listed")),
        "{lines:?}"
    );
    assert!(sent_bytes(alice, &outputs) < 32 * 1024);
}

/// Findings of the fresh review of the IRC change, one test each.
mod review {
    use super::*;
    use chatd_core::{OperatorConfig, PasswordVerdict};

    /// A valid PHC string; the verdict is given by the test, never checked.
    const HASH: &str = "$argon2id$v=19$m=1024,t=1,p=1$Y2hhdGQtdHJhbnNjcmlwdHM$607V5zJpUmsmI3NpQeCJXClNnsXw/01C4mbkTOOEljk";

    fn operator(h: &mut Harness, conn: chatd_core::ConnId) {
        h.server.handle(h.now, conn, b"OPER admin secret\r\n");
        let outputs: Vec<Output> = std::iter::from_fn(|| h.server.poll_output()).collect();
        let check = outputs.into_iter().find_map(|o| match o {
            Output::VerifyPassword(check) => Some(check),
            _ => None,
        });
        h.server.handle_password_verdict(
            h.now,
            check.expect("a check").request,
            PasswordVerdict::Match,
        );
        while h.server.poll_output().is_some() {}
    }

    fn with_operator() -> Config {
        let mut config = unlimited();
        config.operators.push(OperatorConfig {
            name: "admin".into(),
            password_hash: HASH.into(),
        });
        config
    }

    #[test]
    fn channel_operator_status_in_general_is_refused() {
        let mut h = Harness::new(with_operator());
        let admin = registered(&mut h, 1, "admin");
        operator(&mut h, admin);
        h.say(admin, "JOIN #general\r\n", admin);
        let bob = registered(&mut h, 2, "bob");
        h.say(bob, "JOIN #general\r\n", bob);
        assert_eq!(
            h.say(admin, "MODE #general +o bob\r\n", admin),
            [":chatd.local 482 admin #general :#general's operators are the server operators"]
        );
        let victim = h.connect(Dialect::Native, 3);
        h.say(victim, "", victim);
        assert!(h.say(bob, "KICK #general guest3\r\n", victim).is_empty());
    }

    #[test]
    fn an_irc_user_kicked_off_the_server_quits_its_other_rooms() {
        let mut h = Harness::new(with_operator());
        let admin = registered(&mut h, 1, "admin");
        operator(&mut h, admin);
        h.say(admin, "JOIN #general\r\n", admin);
        let victim = registered(&mut h, 2, "victim");
        h.say(victim, "JOIN #general,#other\r\n", victim);
        let watcher = registered(&mut h, 3, "watcher");
        h.say(watcher, "JOIN #other\r\n", watcher);
        h.server
            .handle(h.now, admin, b"KICK #general victim :bye\r\n");
        let outputs: Vec<Output> = std::iter::from_fn(|| h.server.poll_output()).collect();
        assert_eq!(
            lines_to(victim, &outputs),
            ["ERROR :Closing Link: victim (Killed by admin: bye)"]
        );
        let seen = lines_to(watcher, &outputs);
        assert!(
            seen.iter()
                .any(|l| l == ":victim!~victim@127.0.0.2 QUIT :Quit: kicked by admin"),
            "{seen:?}"
        );
        assert!(h.server.check_invariants().is_ok());
    }

    #[test]
    fn secret_rooms_stay_secret_to_topic_mode_and_who() {
        let mut h = Harness::new(unlimited());
        let alice = registered(&mut h, 1, "alice");
        h.say(
            alice,
            "JOIN #hidden\r\nMODE #hidden +is\r\nTOPIC #hidden :the plan\r\n",
            alice,
        );
        let mallory = registered(&mut h, 2, "mallory");
        for query in ["TOPIC #hidden", "MODE #hidden"] {
            assert_eq!(
                h.say(mallory, &format!("{query}\r\n"), mallory),
                [":chatd.local 442 mallory #hidden :You're not on that channel"]
            );
        }
        let who = h.say(mallory, "WHO alice\r\n", mallory);
        assert!(!who.iter().any(|l| l.contains("#hidden")), "{who:?}");
    }

    #[test]
    fn a_mode_line_with_a_missing_parameter_still_announces_what_it_changed() {
        let mut h = Harness::new(unlimited());
        let alice = registered(&mut h, 1, "alice");
        h.say(alice, "JOIN #r\r\n", alice);
        assert_eq!(
            h.say(alice, "MODE #r +mk\r\n", alice),
            [
                ":chatd.local 461 alice MODE :Not enough parameters",
                ":alice!~alice@127.0.0.1 MODE #r +m",
            ]
        );
    }

    #[test]
    fn registration_has_a_deadline_without_idle_checks_too() {
        let mut config = unlimited();
        config.idle.enabled = false;
        let mut h = Harness::new(config);
        let squatter = h.connect(Dialect::Irc, 1);
        h.say(squatter, "NICK squatter\r\n", squatter);
        let deadline = h.server.poll_timeout().expect("a registration deadline");
        assert_eq!(deadline, h.now + std::time::Duration::from_secs(60));
        h.server.handle_timeout(deadline);
        let outputs: Vec<Output> = std::iter::from_fn(|| h.server.poll_output()).collect();
        assert!(
            outputs
                .iter()
                .any(|o| matches!(o, Output::Close { conn, .. } if *conn == squatter))
        );
        // A registered client has no timer left when idle checks are off.
        let alice = registered(&mut h, 2, "alice");
        let deadline = h.server.poll_timeout().expect("its registration deadline");
        h.server.handle_timeout(deadline);
        while h.server.poll_output().is_some() {}
        assert_eq!(h.server.poll_timeout(), None);
        assert!(h.say(alice, "PING x\r\n", alice).len() == 1);
    }

    #[test]
    fn a_long_partial_irc_line_keeps_the_invariants() {
        let mut h = Harness::new(unlimited());
        let alice = registered(&mut h, 1, "alice");
        h.say(alice, &"x".repeat(6_000), alice);
        assert!(h.server.check_invariants().is_ok());
    }

    #[test]
    fn tagmsg_follows_the_rules_of_speech_and_names_its_target() {
        let mut h = Harness::new(unlimited());
        let alice = h.connect(Dialect::Irc, 1);
        h.say(alice, "CAP REQ :message-tags echo-message\r\nNICK alice\r\nUSER a 0 * :A\r\nCAP END\r\nJOIN #r\r\nMODE #r +m\r\n", alice);
        let bob = h.connect(Dialect::Irc, 2);
        h.say(bob, "CAP REQ :message-tags echo-message\r\nNICK bob\r\nUSER b 0 * :B\r\nCAP END\r\nJOIN #r\r\n", bob);
        assert!(h.say(bob, "@+react=x TAGMSG #r\r\n", alice).is_empty());
        assert_eq!(
            h.say(alice, "@+typing=active TAGMSG bob\r\n", alice),
            ["@+typing=active :alice!~a@127.0.0.1 TAGMSG bob"]
        );
    }

    #[test]
    fn names_takes_one_channel_and_a_bounded_list() {
        let mut config = unlimited();
        config.max_outbound_bytes = 16 * 1024;
        let mut h = Harness::new(config);
        let alice = registered(&mut h, 1, "alice");
        h.say(alice, "JOIN #general\r\n", alice);
        for i in 0..100 {
            let conn = h.connect(Dialect::Native, 2 + (i % 50) as u8);
            h.say(conn, "", conn);
        }
        let lines = h.say(alice, "NAMES #general,#general\r\n", alice);
        assert_eq!(lines.iter().filter(|l| l.contains(" 366 ")).count(), 1);
        let names: usize = lines
            .iter()
            .filter(|l| l.contains(" 353 "))
            .map(|l| l.rsplit(':').next().unwrap_or("").split(' ').count())
            .sum();
        assert_eq!(names, 64);
    }

    #[test]
    fn mode_minus_b_lifts_an_address_ban_and_masks_silence() {
        let mut h = Harness::new(with_operator());
        let owner = h.connect(Dialect::Native, 1);
        h.say(
            owner,
            "#create #r
#ban 127.0.0.9
",
            owner,
        );
        let admin = registered(&mut h, 2, "admin");
        operator(&mut h, admin);
        h.say(
            admin, "JOIN #r
", admin,
        );
        assert_eq!(
            h.say(
                admin,
                "MODE #r -b *!*@127.0.0.9
MODE #r b
",
                admin
            ),
            [
                ":admin!~admin@127.0.0.2 MODE #r -b *!*@127.0.0.9",
                ":chatd.local 368 admin #r :End of channel ban list",
            ]
        );
        // A member matching a ban mask may not speak.
        let bob = registered(&mut h, 3, "bob");
        h.say(
            bob, "JOIN #r
", bob,
        );
        h.say(
            admin,
            "MODE #r +b bob
",
            admin,
        );
        assert_eq!(
            h.say(
                bob,
                "PRIVMSG #r :hi
",
                bob
            ),
            [":chatd.local 404 bob #r :you are banned from #r"]
        );
    }

    #[test]
    fn chathistory_sends_no_tags_to_a_client_that_takes_none() {
        let mut h = Harness::new(unlimited());
        let alice = registered(&mut h, 1, "alice");
        h.say(alice, "JOIN #r\r\nPRIVMSG #r :one\r\n", alice);
        let lines = h.say(alice, "CHATHISTORY LATEST #r * 5\r\n", alice);
        assert_eq!(lines, [":alice PRIVMSG #r :one"]);
    }
}
