//! Accounts as a driver sees them: the core asks for hashes, stores and
//! password checks, and changes nothing until the driver says a change is
//! stored. Transcripts (accounts*.chat) cover what people see; these
//! cover the contract with the driver and what transcripts cannot reach
//! (addresses beyond loopback, failing stores).

use std::net::SocketAddr;
use std::time::Instant;

use argon2::PasswordHash;
use chatd_core::{
    Account, AccountChange, Arrival, CheckPurpose, Config, ConnId, Dialect, Nick, Output,
    PasswordVerdict, Server,
};

/// `opensesame` at m=1024,t=1,p=1 (an account's stored hash here).
const HASH: &str = "$argon2id$v=19$m=1024,t=1,p=1$Y2hhdGQtdHJhbnNjcmlwdHM$607V5zJpUmsmI3NpQeCJXClNnsXw/01C4mbkTOOEljk";

#[allow(clippy::disallowed_methods)]
fn epoch() -> Instant {
    Instant::now()
}

fn server(config: Config) -> (Server, Instant) {
    let now = epoch();
    let mut server = Server::new(config, now, 1_795_000_000_000).expect("valid config");
    server.load_accounts(vec![Account {
        name: Nick::parse("Admin").expect("nick"),
        password_hash: HASH.into(),
        operator: true,
        registered_at_ms: 1,
    }]);
    (server, now)
}

fn connect(server: &mut Server, now: Instant, peer: &str, encrypted: bool) -> ConnId {
    let peer: SocketAddr = peer.parse().expect("address");
    let arrival = Arrival {
        dialect: Dialect::Native,
        encrypted,
        web: false,
    };
    let conn = server.accept_via(now, peer, arrival).expect("admitted");
    drain(server);
    conn
}

fn drain(server: &mut Server) -> Vec<Output> {
    std::iter::from_fn(|| server.poll_output()).collect()
}

/// The lines sent to `conn` among `outputs`.
fn lines(conn: ConnId, outputs: &[Output]) -> Vec<String> {
    outputs
        .iter()
        .filter_map(|output| match output {
            Output::Send { to, bytes, .. } if *to == conn => {
                Some(String::from_utf8(bytes.to_vec()).expect("UTF-8"))
            }
            _ => None,
        })
        .collect()
}

fn send(server: &mut Server, now: Instant, conn: ConnId, line: &str) -> Vec<Output> {
    server.handle(now, conn, format!("{line}\n").as_bytes());
    drain(server)
}

#[test]
fn a_password_over_plain_text_from_beyond_loopback_is_refused() {
    let (mut server, now) = server(Config::default());
    let remote = connect(&mut server, now, "203.0.113.5:5000", false);
    send(&mut server, now, remote, "#nick carol");
    for command in [
        "#register longenough",
        "#login admin opensesame",
        "#password opensesame newpassword",
        "#unregister opensesame",
        "#oper admin opensesame",
    ] {
        let outputs = send(&mut server, now, remote, command);
        let name = command.split(' ').next().expect("a word");
        assert_eq!(
            lines(remote, &outputs),
            [format!(
                "! encryption-required: {name} sends a password and this connection is not encrypted; connect over TLS\n"
            )],
        );
        assert!(
            !outputs
                .iter()
                .any(|o| matches!(o, Output::VerifyPassword(_) | Output::HashPassword(_)))
        );
    }
    // Over TLS, or from loopback, the same is accepted.
    let tls = connect(&mut server, now, "203.0.113.6:5000", true);
    let outputs = send(&mut server, now, tls, "#login admin opensesame");
    assert!(matches!(outputs.as_slice(), [Output::VerifyPassword(_)]));
    let local = connect(&mut server, now, "[::1]:5000", false);
    send(&mut server, now, local, "#nick dave");
    let outputs = send(&mut server, now, local, "#register longenough");
    assert!(matches!(outputs.as_slice(), [Output::HashPassword(_)]));
}

#[test]
fn allow_plaintext_auth_accepts_passwords_from_anywhere() {
    let mut config = Config::default();
    config.accounts.allow_plaintext_auth = true;
    let (mut server, now) = server(config);
    let remote = connect(&mut server, now, "203.0.113.5:5000", false);
    let outputs = send(&mut server, now, remote, "#login admin opensesame");
    assert!(matches!(outputs.as_slice(), [Output::VerifyPassword(_)]));
}

#[test]
fn the_registrant_is_told_only_once_the_account_is_stored() {
    let (mut server, now) = server(Config::default());
    let alice = connect(&mut server, now, "127.0.0.1:5000", false);
    send(&mut server, now, alice, "#nick alice");
    let outputs = send(&mut server, now, alice, "#register longenough");
    let [Output::HashPassword(request)] = outputs.as_slice() else {
        panic!("a hash request: {outputs:?}");
    };
    assert_eq!(request.password.expose(), "longenough");
    server.handle_password_hashed(now, request.request, Some(HASH.into()));
    let outputs = drain(&mut server);
    let [Output::StoreAccount(write)] = outputs.as_slice() else {
        panic!("a store request: {outputs:?}");
    };
    let AccountChange::Put(account) = &write.change else {
        panic!("a put: {write:?}");
    };
    assert_eq!(
        (account.name.as_str(), account.password_hash.as_str()),
        ("alice", HASH)
    );
    assert_eq!(server.account_count(), 1, "not applied before it is stored");
    server.handle_account_stored(now, write.request, true);
    assert_eq!(
        lines(alice, &drain(&mut server)),
        ["* you registered alice; you are logged in\n"]
    );
    assert_eq!(server.account_count(), 2);
}

#[test]
fn a_change_that_could_not_be_stored_changes_nothing() {
    let (mut server, now) = server(Config::default());
    let alice = connect(&mut server, now, "127.0.0.1:5000", false);
    send(&mut server, now, alice, "#nick alice");
    let outputs = send(&mut server, now, alice, "#register longenough");
    let [Output::HashPassword(request)] = outputs.as_slice() else {
        panic!("a hash request: {outputs:?}");
    };
    server.handle_password_hashed(now, request.request, Some(HASH.into()));
    let outputs = drain(&mut server);
    let [Output::StoreAccount(write)] = outputs.as_slice() else {
        panic!("a store request: {outputs:?}");
    };
    server.handle_account_stored(now, write.request, false);
    assert_eq!(
        lines(alice, &drain(&mut server)),
        ["! not-stored: the account change could not be stored; nothing changed\n"]
    );
    assert_eq!(server.account_count(), 1);
    let outputs = send(&mut server, now, alice, "#whois alice");
    assert_eq!(
        lines(alice, &outputs),
        ["+ whois alice: not registered, online\n"]
    );
    // A hash that failed changes nothing either, and the name is free to
    // try again.
    let outputs = send(&mut server, now, alice, "#register longenough");
    let [Output::HashPassword(request)] = outputs.as_slice() else {
        panic!("a hash request: {outputs:?}");
    };
    server.handle_password_hashed(now, request.request, None);
    assert_eq!(
        lines(alice, &drain(&mut server)),
        [
            "! try-later: the server is busy hashing passwords; try again in a moment (nothing changed)\n"
        ]
    );
    let outputs = send(&mut server, now, alice, "#register longenough");
    assert!(matches!(outputs.as_slice(), [Output::HashPassword(_)]));
}

#[test]
fn an_unknown_account_is_checked_against_a_hash_as_costly_as_a_stored_one() {
    let (mut server, now) = server(Config::default());
    let alice = connect(&mut server, now, "127.0.0.1:5000", false);
    let bob = connect(&mut server, now, "127.0.0.2:5000", false);
    let check = |outputs: Vec<Output>| match outputs.as_slice() {
        [Output::VerifyPassword(check)] => (**check).clone(),
        other => panic!("a check: {other:?}"),
    };
    let known = check(send(&mut server, now, alice, "#login admin guess"));
    let unknown = check(send(&mut server, now, bob, "#login nobody guess"));
    assert_eq!(known.hash, HASH);
    assert_eq!(
        (known.purpose, unknown.purpose),
        (CheckPurpose::Account, CheckPurpose::Account)
    );
    let (real, dummy) = (
        PasswordHash::new(&known.hash).expect("PHC"),
        PasswordHash::new(&unknown.hash).expect("PHC"),
    );
    assert_ne!(real.hash, dummy.hash);
    assert_eq!(real.params, dummy.params);
    // A match against the dummy never logs anyone in.
    server.handle_password_verdict(now, unknown.request, PasswordVerdict::Match);
    assert_eq!(
        lines(bob, &drain(&mut server)),
        ["! bad-credentials: wrong account name or password\n"]
    );
    // A match against a stored operator account logs in and makes an
    // operator.
    server.handle_password_verdict(now, known.request, PasswordVerdict::Match);
    assert_eq!(
        lines(alice, &drain(&mut server)),
        [
            "* you are logged in as Admin\n",
            "* you are now a server operator\n",
            "* you are now Admin\n"
        ]
    );
}

#[test]
fn one_change_at_a_time_per_account() {
    let (mut server, now) = server(Config::default());
    let alice = connect(&mut server, now, "127.0.0.1:5000", false);
    let outputs = send(&mut server, now, alice, "#login admin opensesame");
    let [Output::VerifyPassword(check)] = outputs.as_slice() else {
        panic!("a check: {outputs:?}");
    };
    server.handle_password_verdict(now, check.request, PasswordVerdict::Match);
    drain(&mut server);
    let outputs = send(&mut server, now, alice, "#oper-revoke admin");
    assert!(matches!(outputs.as_slice(), [Output::StoreAccount(_)]));
    let outputs = send(&mut server, now, alice, "#oper-grant admin");
    assert_eq!(
        lines(alice, &outputs),
        ["! try-later: a change to Admin is being stored; try again in a moment\n"]
    );
}

#[test]
fn account_settings_are_validated() {
    let mut config = Config::default();
    config.accounts.min_password_length = 0;
    assert!(config.validate().is_err());
    let mut config = Config::default();
    config.accounts.nick_grace = std::time::Duration::ZERO;
    assert!(config.validate().is_err());
    let config: Config = serde_json::from_str(
        r#"{"accounts": {"nick_grace": "1m", "min_password_length": 12, "allow_plaintext_auth": true}}"#,
    )
    .expect("valid settings");
    assert_eq!(
        (
            config.accounts.nick_grace.as_secs(),
            config.accounts.min_password_length,
            config.accounts.allow_plaintext_auth
        ),
        (60, 12, true)
    );
}

#[test]
fn a_second_login_of_an_account_keeps_protecting_the_nickname_it_holds() {
    let (mut server, now) = server(Config::default());
    let mut accounts = vec![];
    for name in ["alice", "bob"] {
        accounts.push(Account {
            name: Nick::parse(name).expect("nick"),
            password_hash: HASH.into(),
            operator: false,
            registered_at_ms: 1,
        });
    }
    server.load_accounts(accounts);
    let login = |server: &mut Server, conn: ConnId| {
        let outputs = send(server, now, conn, "#login alice opensesame");
        let [Output::VerifyPassword(check)] = outputs.as_slice() else {
            panic!("a check: {outputs:?}");
        };
        server.handle_password_verdict(now, check.request, PasswordVerdict::Match);
        drain(server)
    };
    let first = connect(&mut server, now, "127.0.0.1:5000", false);
    login(&mut server, first);
    let second = connect(&mut server, now, "127.0.0.2:5000", false);
    let outputs = send(&mut server, now, second, "#nick bob");
    assert_eq!(
        lines(second, &outputs)[1],
        "* bob is registered; log in with #login bob PASSWORD within 30s or you will be renamed\n"
    );
    // Logged in to alice, which the first connection holds: the second
    // keeps bob's nickname, still not its own, and is renamed in time.
    let outputs = login(&mut server, second);
    assert_eq!(
        lines(second, &outputs),
        [
            "* you are logged in as alice\n",
            "* bob is registered; log in with #login bob PASSWORD within 30s or you will be renamed\n"
        ]
    );
    let later = now + std::time::Duration::from_secs(30);
    server.handle_timeout(later);
    assert_eq!(
        lines(second, &drain(&mut server))[..2],
        [
            "* bob is registered to an account you are not logged in to; you are renamed\n",
            "* you are now guest2\n"
        ]
    );
}

/// Runs every timer due by `now`.
fn run_timers(server: &mut Server, now: Instant) -> Vec<Output> {
    let mut outputs = Vec::new();
    while server.poll_timeout().is_some_and(|at| at <= now) {
        server.handle_timeout(now);
        outputs.extend(drain(server));
    }
    outputs
}

/// Sends `#login NAME PASSWORD` and answers its check with `verdict`.
fn login(
    server: &mut Server,
    now: Instant,
    conn: ConnId,
    name: &str,
    verdict: PasswordVerdict,
) -> Vec<Output> {
    let outputs = send(server, now, conn, &format!("#login {name} somepassword"));
    let Some(Output::VerifyPassword(check)) = outputs.first() else {
        return outputs;
    };
    server.handle_password_verdict(now, check.request, verdict);
    drain(server)
}

/// A server with `Admin` and an ordinary account `Mine`.
fn server_with_mine() -> (Server, Instant) {
    let (mut server, now) = server(Config::default());
    server.load_accounts(vec![
        Account {
            name: Nick::parse("Admin").expect("nick"),
            password_hash: HASH.into(),
            operator: true,
            registered_at_ms: 1,
        },
        Account {
            name: Nick::parse("Mine").expect("nick"),
            password_hash: HASH.into(),
            operator: false,
            registered_at_ms: 2,
        },
    ]);
    (server, now)
}

#[test]
fn holding_a_registered_nickname_does_not_read_its_whispers() {
    let (mut server, now) = server(Config::default());
    let squatter = connect(&mut server, now, "127.0.0.1:5000", false);
    send(&mut server, now, squatter, "#nick admin");
    let outputs = send(&mut server, now, squatter, "#history @bob");
    assert_eq!(
        lines(squatter, &outputs),
        [
            "! permission-denied: admin is a registered nickname: log in to it to read its whispers\n"
        ]
    );
    assert!(!outputs.iter().any(|o| matches!(o, Output::QueryHistory(_))));
}

#[test]
fn changing_case_or_going_round_does_not_renew_the_grace_period() {
    let (mut server, now) = server(Config::default());
    let squatter = connect(&mut server, now, "127.0.0.1:5000", false);
    send(&mut server, now, squatter, "#nick admin");
    let at = |secs| now + std::time::Duration::from_secs(secs);
    let outputs = send(&mut server, at(20), squatter, "#nick ADMIN");
    assert!(
        lines(squatter, &outputs)
            .iter()
            .any(|l| l.contains("within 10s")),
        "{outputs:?}"
    );
    send(&mut server, at(25), squatter, "#nick other");
    send(&mut server, at(26), squatter, "#nick admin");
    let outputs = run_timers(&mut server, at(31));
    assert!(
        lines(squatter, &outputs)
            .iter()
            .any(|l| l.contains("you are renamed")),
        "the first grace period still ends it: {outputs:?}"
    );
    // Spent: taking it again is refused.
    let outputs = send(&mut server, at(40), squatter, "#nick admin");
    assert_eq!(
        lines(squatter, &outputs),
        [
            "! permission-denied: admin is registered and this connection's grace period is over; log in to it with #login admin PASSWORD\n"
        ]
    );
}

#[test]
fn logging_in_to_your_own_account_does_not_clear_the_address_wait() {
    let (mut server, now) = server_with_mine();
    let at = |millis| now + std::time::Duration::from_millis(millis);
    let guesser = connect(&mut server, now, "127.0.0.1:5000", false);
    login(
        &mut server,
        at(0),
        guesser,
        "victim1",
        PasswordVerdict::Mismatch,
    );
    // The first failure's wait (1 s) is over; a login of their own.
    let outputs = login(
        &mut server,
        at(1_100),
        guesser,
        "mine",
        PasswordVerdict::Match,
    );
    assert!(
        lines(guesser, &outputs)
            .iter()
            .any(|l| l.contains("logged in")),
        "{outputs:?}"
    );
    send(&mut server, at(1_150), guesser, "#logout");
    // A second failure from the address: its wait doubles to 2 s.
    login(
        &mut server,
        at(1_200),
        guesser,
        "victim2",
        PasswordVerdict::Mismatch,
    );
    let outputs = send(&mut server, at(2_500), guesser, "#login victim3 guess");
    assert!(
        lines(guesser, &outputs)
            .iter()
            .any(|l| l.starts_with("! try-later")),
        "the address still waits: {outputs:?}"
    );
}

#[test]
fn logging_in_inside_a_room_the_account_is_banned_from_puts_you_out() {
    let (mut server, now) = server_with_mine();
    let owner = connect(&mut server, now, "127.0.0.1:5000", false);
    send(&mut server, now, owner, "#nick owner");
    send(&mut server, now, owner, "#join crb");
    let first = connect(&mut server, now, "127.0.0.2:5000", false);
    login(&mut server, now, first, "mine", PasswordVerdict::Match);
    send(&mut server, now, first, "#join crb");
    send(&mut server, now, owner, "#ban mine");
    // From another address, as a guest: the address ban does not apply.
    let again = connect(&mut server, now, "127.0.0.3:5000", false);
    let outputs = send(&mut server, now, again, "#join crb");
    assert!(
        lines(again, &outputs)
            .iter()
            .any(|l| l.starts_with("* you joined #crb")),
        "{outputs:?}"
    );
    let outputs = login(&mut server, now, again, "mine", PasswordVerdict::Match);
    let seen = lines(again, &outputs);
    assert!(seen.iter().any(|l| l.starts_with("! banned")), "{seen:?}");
    let who = send(&mut server, now, owner, "#who");
    assert!(
        !lines(owner, &who).iter().any(|l| l.contains("mine")),
        "{who:?}"
    );
}
