//! IRC sessions against the core directly: registration, capability
//! negotiation and the shape of IRC lines, where a transcript would be
//! long-winded. Mixed IRC and native behaviour is in the transcripts.

mod irc_support;

use chatd_core::{Config, Dialect, Output};
use irc_support::{Harness, lines_to, registered};

#[test]
fn registration_sends_the_welcome_burst_once_nick_and_user_are_in() {
    let mut h = Harness::new(Config::default());
    let alice = h.connect(Dialect::Irc, 1);
    assert_eq!(h.say(alice, "NICK alice\r\n", alice), Vec::<String>::new());
    let lines = h.say(alice, "USER al 0 * :Alice A\r\n", alice);
    let codes: Vec<&str> = lines
        .iter()
        .map(|l| l.split(' ').nth(1).unwrap_or(""))
        .collect();
    assert_eq!(
        codes,
        [
            "001", "002", "003", "004", "005", "005", "251", "254", "255", "422"
        ]
    );
    assert_eq!(
        lines[0],
        ":chatd.local 001 alice :Welcome to the chatd IRC network, alice!~al@127.0.0.1"
    );
    assert!(lines[4].contains(" CASEMAPPING=ascii ") && lines[4].contains(" CHANTYPES=# "));
    assert!(lines[5].contains(" NETWORK=chatd ") && lines[5].contains(" PREFIX=(ov)@+ "));
    assert_eq!(
        h.say(alice, "USER again 0 * :x\r\n", alice),
        [":chatd.local 462 alice :You may not reregister"]
    );
}

#[test]
fn commands_before_registration_get_451_and_capability_negotiation_holds_it() {
    let mut h = Harness::new(Config::default());
    let alice = h.connect(Dialect::Irc, 1);
    assert_eq!(
        h.say(alice, "JOIN #rust\r\n", alice),
        [":chatd.local 451 * :You have not registered"]
    );
    let lines = h.say(
        alice,
        "CAP LS 302\r\nNICK alice\r\nUSER al 0 * :A\r\n",
        alice,
    );
    assert_eq!(lines.len(), 1, "registration waits for CAP END: {lines:?}");
    assert!(
        lines[0].starts_with(":chatd.local CAP * LS :")
            && lines[0].contains("draft/chathistory=100")
    );
    assert_eq!(
        h.say(alice, "CAP REQ :server-time bogus\r\n", alice),
        [":chatd.local CAP * NAK :server-time bogus"]
    );
    assert_eq!(
        h.say(
            alice,
            "CAP REQ :server-time echo-message\r\nCAP LIST\r\n",
            alice
        ),
        [
            ":chatd.local CAP * ACK :server-time echo-message",
            ":chatd.local CAP * LIST :echo-message server-time",
        ]
    );
    let lines = h.say(alice, "CAP END\r\n", alice);
    assert!(lines[0].starts_with(":chatd.local 001 alice "), "{lines:?}");
}

#[test]
fn a_wrong_or_missing_password_ends_the_connection() {
    let mut config = Config::default();
    config.irc.password = Some("sesame".into());
    let mut h = Harness::new(config);
    let alice = h.connect(Dialect::Irc, 1);
    h.server.handle(
        h.now,
        alice,
        b"PASS wrong\r\nNICK alice\r\nUSER al 0 * :A\r\n",
    );
    let outputs: Vec<Output> = std::iter::from_fn(|| h.server.poll_output()).collect();
    assert_eq!(
        lines_to(alice, &outputs),
        [
            ":chatd.local 464 * :Password incorrect",
            "ERROR :Closing Link: password required",
        ]
    );
    assert!(
        outputs
            .iter()
            .any(|o| matches!(o, Output::Close { conn, .. } if *conn == alice))
    );
    let bob = h.connect(Dialect::Irc, 2);
    let lines = h.say(bob, "PASS sesame\r\nNICK bob\r\nUSER b 0 * :B\r\n", bob);
    assert!(lines[0].starts_with(":chatd.local 001 bob "), "{lines:?}");
}

#[test]
fn irc_and_native_users_talk_in_one_room() {
    let mut h = Harness::new(Config::default());
    let alice = registered(&mut h, 1, "alice");
    let bob = h.connect(Dialect::Native, 2);
    h.say(bob, "#nick bob\n", bob);
    assert_eq!(
        h.say(alice, "JOIN #general\r\n", alice),
        [
            ":alice!~alice@127.0.0.1 JOIN #general",
            ":chatd.local 353 alice = #general :alice bob",
            ":chatd.local 366 alice #general :End of /NAMES list",
        ]
    );
    // IRC formatting reaches IRC users, never a native terminal.
    assert_eq!(
        h.say(alice, "PRIVMSG #general :hello \x02there\x02\r\n", bob),
        ["[#general] alice: hello there"]
    );
    assert_eq!(
        h.say(alice, "PRIVMSG #general :\x01ACTION waves\x01\r\n", bob),
        ["[#general] * alice waves"]
    );
    assert_eq!(
        h.say(bob, "hi alice\n", alice),
        [":bob!native@127.0.0.2 PRIVMSG #general :hi alice"]
    );
    assert_eq!(
        h.say(bob, "#me waves back\n", alice),
        [":bob!native@127.0.0.2 PRIVMSG #general :\x01ACTION waves back\x01"]
    );
    assert_eq!(
        h.say(bob, "#msg alice psst\n", alice),
        [":bob!native@127.0.0.2 PRIVMSG alice :psst"]
    );
    assert_eq!(
        h.say(alice, "NOTICE bob :heads up\r\n", bob),
        ["[whisper] alice: heads up"]
    );
    assert_eq!(
        h.say(bob, "#topic x\n", alice),
        Vec::<String>::new(),
        "only operators set #general's topic"
    );
    assert!(h.server.check_invariants().is_ok());
}

#[test]
fn tags_and_echoes_follow_the_capabilities_asked_for() {
    let mut h = Harness::new(Config::default());
    let alice = h.connect(Dialect::Irc, 1);
    h.say(
        alice,
        "CAP REQ :server-time message-tags echo-message\r\nNICK alice\r\nUSER a 0 * :A\r\nCAP END\r\nJOIN #general\r\n",
        alice,
    );
    let bob = registered(&mut h, 2, "bob");
    h.say(bob, "JOIN #general\r\n", bob);
    // Alice's own line comes back to her (echo-message), with its id and
    // time; Bob asked for no tags and gets none. Both see the same id.
    let to_alice = h.say(alice, "PRIVMSG #general :hi\r\n", alice);
    assert_eq!(
        to_alice,
        ["@msgid=1;time=2026-11-18T11:06:40.000Z :alice!~a@127.0.0.1 PRIVMSG #general :hi"]
    );
    let to_bob = h.say(alice, "PRIVMSG #general :again\r\n", bob);
    assert_eq!(to_bob, [":alice!~a@127.0.0.1 PRIVMSG #general :again"]);
}

#[test]
fn channel_modes_are_enforced_for_every_dialect() {
    let mut h = Harness::new(Config::default());
    let alice = registered(&mut h, 1, "alice");
    assert!(h.say(alice, "JOIN #rust\r\n", alice)[1].ends_with(" :@alice"));
    let bob = h.connect(Dialect::Native, 2);
    h.say(bob, "#nick bob\n#join #rust\n", bob);
    assert_eq!(
        h.say(alice, "MODE #rust +mk secret\r\n", alice),
        [":alice!~alice@127.0.0.1 MODE #rust +mk secret"]
    );
    assert_eq!(
        h.say(bob, "hello?\n", bob),
        ["! muted: #rust is moderated: only its operators and voiced members speak"]
    );
    assert_eq!(
        h.say(alice, "MODE #rust +v bob\r\n", bob),
        ["* alice set mode +v bob on #rust"]
    );
    assert_eq!(
        h.say(bob, "now I speak\n", alice),
        [":bob!native@127.0.0.2 PRIVMSG #rust :now I speak"]
    );
    let carol = h.connect(Dialect::Native, 3);
    h.say(carol, "", carol);
    assert_eq!(
        h.say(carol, "#join #rust\n", carol),
        ["! bad-key: #rust needs the right key to join"]
    );
    let lines = h.say(carol, "#join #rust secret\n", carol);
    assert_eq!(lines[0], "* you joined #rust");
    assert_eq!(
        h.say(alice, "MODE #rust +b guest3\r\nMODE #rust b\r\n", alice),
        [
            ":alice!~alice@127.0.0.1 MODE #rust +b guest3!*@*",
            ":chatd.local 367 alice #rust :guest3!*@*",
            ":chatd.local 368 alice #rust :End of channel ban list",
        ]
    );
    assert_eq!(
        h.say(bob, "#mode\n", bob),
        ["! unknown-command: #mode is not a command; type #help for the list"]
    );
    assert_eq!(
        h.say(alice, "MODE #rust +z\r\n", alice),
        [":chatd.local 472 alice z :is unknown mode char to me"]
    );
    let dave = registered(&mut h, 4, "dave");
    assert_eq!(
        h.say(dave, "MODE #rust -m\r\n", dave),
        [
            ":chatd.local 482 dave #rust :only the owner of #rust or an operator may change modes here"
        ]
    );
    assert!(h.server.check_invariants().is_ok());
}

#[test]
fn chathistory_answers_in_a_batch() {
    let mut h = Harness::new(Config::default());
    let alice = h.connect(Dialect::Irc, 1);
    h.say(
        alice,
        "CAP REQ :batch server-time\r\nNICK alice\r\nUSER a 0 * :A\r\nCAP END\r\nJOIN #general\r\n",
        alice,
    );
    for text in ["one", "two", "three"] {
        h.say(alice, &format!("PRIVMSG #general :{text}\r\n"), alice);
    }
    let lines = h.say(alice, "CHATHISTORY LATEST #general * 2\r\n", alice);
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(
        lines[0].starts_with(":chatd.local BATCH +") && lines[0].ends_with(" chathistory #general")
    );
    assert!(lines[1].starts_with("@batch=") && lines[1].ends_with("PRIVMSG #general :two"));
    assert!(lines[2].ends_with("PRIVMSG #general :three"));
    assert!(lines[3].starts_with(":chatd.local BATCH -"));
    let lines = h.say(alice, "CHATHISTORY BEFORE #general msgid=2 10\r\n", alice);
    assert!(lines[1].ends_with(" :one") && lines.len() == 3, "{lines:?}");
    assert_eq!(
        h.say(alice, "CHATHISTORY LATEST #nowhere * 10\r\n", alice),
        [":chatd.local FAIL CHATHISTORY INVALID_TARGET :No such channel or you may not read it"]
    );
}

#[test]
fn nick_changes_and_quits_reach_each_peer_once() {
    let mut h = Harness::new(Config::default());
    let alice = registered(&mut h, 1, "alice");
    let bob = registered(&mut h, 2, "bob");
    h.say(alice, "JOIN #a,#b\r\n", alice);
    h.say(bob, "JOIN #a,#b\r\n", bob);
    assert_eq!(
        h.say(alice, "NICK Alicia\r\n", bob),
        [":alice!~alice@127.0.0.1 NICK Alicia"]
    );
    assert_eq!(
        h.say(bob, "NICK ALICIA\r\n", bob),
        [":chatd.local 433 bob ALICIA :ALICIA is taken; pick another nickname"]
    );
    assert_eq!(
        h.say(alice, "QUIT :later\r\n", bob),
        [
            ":Alicia!~alice@127.0.0.1 QUIT :Quit: later",
            ":chatd.local MODE #a +o bob",
            ":chatd.local MODE #b +o bob",
        ]
    );
    assert!(h.server.check_invariants().is_ok());
}

#[test]
fn labeled_commands_get_their_label_back() {
    let mut h = Harness::new(Config::default());
    let alice = h.connect(Dialect::Irc, 1);
    h.say(
        alice,
        "CAP REQ :labeled-response batch echo-message\r\nNICK alice\r\nUSER a 0 * :A\r\nCAP END\r\n",
        alice,
    );
    assert_eq!(
        h.say(alice, "@label=one PING x\r\n", alice),
        ["@label=one :chatd.local PONG chatd.local x"]
    );
    assert_eq!(
        h.say(alice, "@label=two PONG x\r\n", alice),
        ["@label=two :chatd.local ACK"]
    );
    let lines = h.say(alice, "@label=three JOIN #rust\r\n", alice);
    assert_eq!(lines.len(), 5, "{lines:?}");
    assert!(
        lines[0].starts_with("@label=three :chatd.local BATCH +")
            && lines[0].ends_with(" labeled-response")
    );
    let id = lines[0]
        .split(' ')
        .nth(3)
        .unwrap_or("")
        .trim_start_matches('+')
        .to_owned();
    assert_eq!(
        lines[1],
        format!("@batch={id} :alice!~a@127.0.0.1 JOIN #rust")
    );
    assert!(lines[2].starts_with(&format!("@batch={id} :chatd.local 353 ")));
    assert_eq!(lines[4], format!(":chatd.local BATCH -{id}"));
    // A broadcast that reaches the sender (here its PART) is part of its
    // labeled answer.
    assert_eq!(
        h.say(alice, "@label=four PART #rust\r\n", alice),
        ["@label=four :alice!~a@127.0.0.1 PART #rust"]
    );
    // Without the capability, a label is ignored.
    let bob = registered(&mut h, 2, "bob");
    assert_eq!(
        h.say(bob, "@label=five PING y\r\n", bob),
        [":chatd.local PONG chatd.local y"]
    );
}

#[test]
fn past_the_rate_limit_irc_lines_wait_then_flooding_disconnects() {
    let mut config = Config::default();
    config.rate_limit.messages = 3;
    config.rate_limit.window = std::time::Duration::from_secs(10);
    let mut h = Harness::new(config);
    let alice = registered(&mut h, 1, "alice");
    // Registration used two of the three lines; the third goes at once,
    // the next two wait for the window instead of being dropped.
    let lines = h.say(alice, "PING a\r\nPING b\r\nPING c\r\n", alice);
    assert_eq!(lines, [":chatd.local PONG chatd.local a"]);
    let later = h.now + std::time::Duration::from_secs(11);
    assert!(h.server.poll_timeout().is_some_and(|t| t <= later));
    h.server.handle_timeout(later);
    let outputs: Vec<Output> = std::iter::from_fn(|| h.server.poll_output()).collect();
    assert_eq!(
        lines_to(alice, &outputs),
        [
            ":chatd.local PONG chatd.local b",
            ":chatd.local PONG chatd.local c"
        ]
    );
    assert!(h.server.check_invariants().is_ok());
    h.now = later;
    let flood: String = (0..40).map(|i| format!("PING {i}\r\n")).collect();
    h.server.handle(h.now, alice, flood.as_bytes());
    let outputs: Vec<Output> = std::iter::from_fn(|| h.server.poll_output()).collect();
    let lines = lines_to(alice, &outputs);
    assert_eq!(
        lines.last().map(String::as_str),
        Some("ERROR :Closing Link: alice (you kept sending past the rate limit; disconnecting)")
    );
    assert!(
        outputs
            .iter()
            .any(|o| matches!(o, Output::Close { conn, .. } if *conn == alice))
    );
    assert!(h.server.check_invariants().is_ok());
}

#[test]
fn empty_list_items_are_answered_with_valid_lines() {
    // Found by the irc_session fuzz target: an empty channel in a list
    // was echoed as an empty middle parameter, which no IRC line may hold.
    let mut h = Harness::new(Config::default());
    let alice = registered(&mut h, 1, "alice");
    let lines = h.say(alice, "JOIN ,#a\r\n", alice);
    assert_eq!(
        lines[0],
        ":chatd.local 403 alice * :No such channel (rooms are # and up to 32 letters, digits, _ - .)"
    );
    assert_eq!(lines[1], ":alice!~alice@127.0.0.1 JOIN #a");
}

#[test]
fn client_tags_and_tagmsg_reach_clients_that_take_tags() {
    let mut h = Harness::new(Config::default());
    let alice = h.connect(Dialect::Irc, 1);
    h.say(
        alice,
        "CAP REQ :message-tags\r\nNICK alice\r\nUSER a 0 * :A\r\nCAP END\r\nJOIN #general\r\n",
        alice,
    );
    let bob = h.connect(Dialect::Irc, 2);
    h.say(
        bob,
        "CAP REQ :message-tags\r\nNICK bob\r\nUSER b 0 * :B\r\nCAP END\r\nJOIN #general\r\n",
        bob,
    );
    let carol = registered(&mut h, 3, "carol");
    h.say(carol, "JOIN #general\r\n", carol);
    let dave = h.connect(Dialect::Native, 4);
    h.say(dave, "", dave);
    assert_eq!(
        h.say(alice, "@+typing=active TAGMSG #general\r\n", bob),
        ["@+typing=active :alice!~a@127.0.0.1 TAGMSG #general"]
    );
    assert_eq!(
        h.say(alice, "@+typing=active TAGMSG #general\r\n", carol),
        Vec::<String>::new()
    );
    assert_eq!(
        h.say(alice, "@+typing=active TAGMSG #general\r\n", dave),
        Vec::<String>::new()
    );
    assert_eq!(
        h.say(
            alice,
            "@+draft/reply=1;+x=a\\sb;server=no PRIVMSG #general :hi\r\n",
            bob
        ),
        ["@+draft/reply=1;+x=a\\sb;msgid=1 :alice!~a@127.0.0.1 PRIVMSG #general :hi"]
    );
    assert_eq!(
        h.say(alice, "@+draft/reply=1 PRIVMSG #general :hi\r\n", carol),
        [":alice!~a@127.0.0.1 PRIVMSG #general :hi"]
    );
}

/// Conformance points found by running irctest and by hand against the
/// specifications (RFC 2812 and modern.ircdocs.horse).
#[test]
fn answers_follow_the_specifications() {
    let mut h = Harness::new(Config::default());
    let alice = h.connect(Dialect::Irc, 1);
    h.say(
        alice,
        "CAP REQ :echo-message multi-prefix\r\nNICK alice\r\nUSER a 0 * :A\r\nCAP END\r\n",
        alice,
    );
    let bob = registered(&mut h, 2, "bob");
    h.say(alice, "JOIN #chan\r\n", alice);
    h.say(bob, "JOIN #chan\r\n", bob);
    // PART of a channel one is not in: 442, not 441.
    let carol = registered(&mut h, 3, "carol");
    assert_eq!(
        h.say(carol, "PART #chan\r\n", carol),
        [":chatd.local 442 carol #chan :You're not on that channel"]
    );
    assert_eq!(
        h.say(carol, "TOPIC #chan :mine\r\n", carol),
        [":chatd.local 442 carol #chan :You're not on that channel"]
    );
    // NOTICE is never answered with an error.
    assert_eq!(
        h.say(carol, "NOTICE #nowhere :x\r\nNOTICE nobody :x\r\n", carol),
        Vec::<String>::new()
    );
    // An echoed private NOTICE stays a NOTICE.
    assert_eq!(
        h.say(alice, "NOTICE bob :pm notice\r\n", alice),
        [":alice!~a@127.0.0.1 NOTICE bob :pm notice"]
    );
    // WHO shows every prefix with multi-prefix.
    h.say(alice, "MODE #chan +v alice\r\n", alice);
    let who = h.say(alice, "WHO #chan\r\n", alice);
    assert!(who[0].contains(" alice H@+ :0 A"), "{who:?}");
    // INVITE to a public channel is passed on; to a member it is 443.
    assert_eq!(
        h.say(alice, "INVITE carol #chan\r\n", carol),
        [":alice!~a@127.0.0.1 INVITE carol #chan"]
    );
    assert_eq!(
        h.say(alice, "INVITE bob #chan\r\n", alice),
        [":chatd.local 443 alice bob #chan :is already on channel"]
    );
    // KICK pairs channels and nicknames.
    h.say(alice, "JOIN #third\r\n", alice);
    h.say(bob, "JOIN #third\r\n", bob);
    let kicks = h.say(alice, "KICK #chan,#third bob,bob :bye\r\n", bob);
    assert_eq!(
        kicks,
        [
            ":alice!~a@127.0.0.1 KICK #chan bob :bye",
            ":alice!~a@127.0.0.1 KICK #third bob :bye",
        ]
    );
    h.say(bob, "JOIN #chan\r\n", bob);
    // An empty topic clears it.
    h.say(alice, "TOPIC #chan :something\r\n", alice);
    assert_eq!(
        h.say(alice, "TOPIC #chan :\r\nTOPIC #chan\r\n", alice),
        [
            ":alice!~a@127.0.0.1 TOPIC #chan :",
            ":chatd.local 331 alice #chan :No topic is set",
        ]
    );
    // Missing parameters.
    assert_eq!(
        h.say(bob, "PING\r\n", bob),
        [":chatd.local 409 bob :No origin specified"]
    );
    assert_eq!(
        h.say(bob, "ISON\r\n", bob),
        [":chatd.local 461 bob ISON :Not enough parameters"]
    );
    assert_eq!(
        h.say(alice, "MODE #chan +k\r\n", alice),
        [":chatd.local 461 alice MODE :Not enough parameters"]
    );
    // The backtick is a nickname character.
    assert_eq!(
        h.say(carol, "NICK c`x\r\n", carol),
        [":carol!~carol@127.0.0.3 NICK c`x"]
    );
    // Client tags beyond the line limit are allowed, up to their own.
    let tags = format!("@+x={} PING y\r\n", "a".repeat(4000));
    assert_eq!(h.say(bob, &tags, bob), [":chatd.local PONG chatd.local y"]);
    assert!(h.server.check_invariants().is_ok());
}
