//! IRC clients and a native one on one server, fed arbitrary lines.
//!
//! Three IRC connections (two registered with every capability, one
//! left to register itself or not) and one native connection share a
//! server with tight limits (small rooms, low rate limit, small history).
//! The input is a sequence of records: a selector byte (low two bits: the
//! connection; high bit: advance time by up to a minute first), a length
//! byte, then that many bytes sent by the connection. A small vocabulary
//! of real commands is mixed in by the selector's middle bits, so the
//! fuzzer reaches deep commands (MODE, CHATHISTORY, labeled batches)
//! quickly. After every record:
//!
//! 1. nothing panics and `Server::check_invariants` holds;
//! 2. every output is whole lines of UTF-8, never to a closed connection,
//!    and no connection is closed twice;
//! 3. what IRC connections receive is IRC: every line ends in CRLF, has
//!    no other CR or LF, and parses as an IRC message;
//! 4. one `handle_timeout(now)` handles everything due.

#![no_main]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chatd_core::irc::message::Message;
use chatd_core::{Config, ConnId, Dialect, Output, Server};
use libfuzzer_sys::fuzz_target;

/// Lines the selector can prepend, so the fuzzer meets real commands.
const VOCABULARY: [&str; 16] = [
    "JOIN #a,#b key\r\n",
    "PRIVMSG #a,b2,#b :\u{1}ACTION hi\u{1}\r\n",
    "MODE #a +ovbklmnst b2 b2 *!*@* k 2\r\n",
    "MODE #a -ovbklmnst b2 b2 *!*@* k\r\n",
    "@label=x WHO #a\r\n",
    "CHATHISTORY AROUND #a msgid=2 5\r\n",
    "KICK #a b2,b3 :out\r\n",
    "PART #a :bye\r\n",
    "NICK b2\r\n",
    "TOPIC #a :t\r\n",
    "INVITE b3 #a\r\n",
    "WHOIS b2\r\nWHOWAS b4\r\nISON b2 b3\r\nUSERHOST b2\r\n",
    "AWAY :gone\r\nAWAY\r\n@+typing=active TAGMSG #a\r\n",
    "CAP REQ :-echo-message batch\r\nCAP LIST\r\n",
    "JOIN 0\r\n",
    "#join #a\n#kick b2\n#mute b3 5s\n#ban b3 1m\n",
];

fn peer(n: usize) -> SocketAddr {
    format!("127.0.0.{}:4000", n + 1).parse().expect("address")
}

struct Run {
    server: Server,
    now: Instant,
    conns: Vec<ConnId>,
    irc: Vec<bool>,
    closed: BTreeSet<ConnId>,
}

impl Run {
    fn drain(&mut self) {
        while let Some(output) = self.server.poll_output() {
            match output {
                Output::Send { to, bytes, .. } => self.check(&[to], None, &bytes),
                Output::Broadcast { to, except, bytes, .. } => {
                    assert!(to.windows(2).all(|w| w[0] < w[1]), "recipients out of order");
                    self.check(&to, except, &bytes);
                }
                Output::Close { conn, .. } => {
                    assert!(self.closed.insert(conn), "{conn} closed twice");
                }
                Output::Persist(record) => self.server.handle_persisted(self.now, record.id),
                Output::VerifyPassword(_) => {}
                Output::Bus(request) => {
                    panic!("bus request from a server outside a cluster: {request:?}")
                }
                // Account work is answered at once: a hash no password
                // matches, and every change stored.
                Output::HashPassword(request) => self.server.handle_password_hashed(
                    self.now,
                    request.request,
                    Some("$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA".to_owned()),
                ),
                Output::StoreAccount(write) => {
                    self.server
                        .handle_account_stored(self.now, write.request, true);
                }
                Output::QueryHistory(query) => self.server.handle_history_answer(
                    self.now,
                    chatd_core::history_query::HistoryAnswer {
                        request: query.request,
                        records: Vec::new(),
                        shortfall: None,
                    },
                ),
            }
        }
    }

    fn check(&self, to: &[ConnId], except: Option<ConnId>, bytes: &[u8]) {
        let text = std::str::from_utf8(bytes).expect("output is UTF-8");
        assert!(text.ends_with('\n'), "output is whole lines");
        for &conn in to.iter().filter(|&&c| Some(c) != except) {
            assert!(!self.closed.contains(&conn), "output to {conn} after its close");
            let Some(index) = self.conns.iter().position(|&c| c == conn) else {
                continue;
            };
            if !self.irc[index] {
                continue;
            }
            for line in text.split_inclusive('\n') {
                let body = line.strip_suffix("\r\n").expect("IRC lines end in CRLF");
                assert!(!body.contains(['\r', '\n']), "a bare CR or LF in {body:?}");
                Message::parse(body).unwrap_or_else(|e| panic!("{body:?} is not IRC: {e}"));
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut config = Config::default();
    config.max_line_bytes = 512;
    config.history_size = 8;
    config.limits.rooms_joined = 3;
    config.limits.bans_per_room = 2;
    config.rate_limit.messages = 12;
    #[allow(clippy::disallowed_methods)]
    let now = Instant::now();
    let Ok(server) = Server::new(config, now, 1_795_000_000_000) else {
        return;
    };
    let mut run = Run {
        server,
        now,
        conns: Vec::new(),
        irc: Vec::new(),
        closed: BTreeSet::new(),
    };
    for (n, dialect) in [Dialect::Irc, Dialect::Irc, Dialect::Irc, Dialect::Native]
        .into_iter()
        .enumerate()
    {
        let conn = run.server.accept_as(now, peer(n), dialect).expect("admitted");
        run.conns.push(conn);
        run.irc.push(dialect == Dialect::Irc);
    }
    for (n, setup) in [
        "CAP LS 302\r\nCAP REQ :echo-message labeled-response batch server-time message-tags multi-prefix userhost-in-names away-notify draft/chathistory\r\nNICK b2\r\nUSER u 0 * :r\r\nCAP END\r\n",
        "NICK b3\r\nUSER u 0 * :r\r\n",
    ]
    .iter()
    .enumerate()
    {
        let conn = run.conns[n];
        run.server.handle(now, conn, setup.as_bytes());
    }
    run.drain();
    let mut rest = data;
    while let [selector, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (bytes, next) = tail.split_at(len);
        rest = next;
        if selector & 0x80 != 0 {
            run.now += Duration::from_millis(len as u64 * 250);
            run.server.handle_timeout(run.now);
            run.drain();
            assert!(run.server.poll_timeout().is_none_or(|t| t > run.now), "a due timer was left");
        }
        let conn = run.conns[usize::from(selector & 3)];
        if run.closed.contains(&conn) {
            continue;
        }
        let word = usize::from((selector >> 2) & 0x1f);
        if let Some(line) = VOCABULARY.get(word) {
            run.server.handle(run.now, conn, line.as_bytes());
        }
        run.server.handle(run.now, conn, bytes);
        run.drain();
        if let Err(broken) = run.server.check_invariants() {
            panic!("invariant broken: {broken}");
        }
    }
});
