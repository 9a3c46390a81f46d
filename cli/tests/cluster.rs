//! Several `chatd serve` processes as one cluster through a real
//! `redis-server` (docs/CLUSTER.md), mixing the poll and iocp backends:
//! lines, whispers, nicknames, `#who` and `#history` across nodes; 10,000
//! interleaved lines seen in one order everywhere; `kill -9` of a node;
//! `kill -9` and restart of Redis with no acknowledged line lost; and a
//! node's link to Redis cut and healed with nothing repeated or reordered.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use chatd_core::Dialect;
use chatd_engine::listener::parse_listening;
use chatd_tests::child::KillOnDrop;
use chatd_tests::client::LineClient;
use chatd_tests::driver::Received;
use chatd_tests::proxy::LinkProxy;
use chatd_tests::redis::RedisServer;

const CHATD: &str = env!("CARGO_BIN_EXE_chatd");

/// The lease after which a silent node is gone (docs/CLUSTER.md), plus
/// room for a loaded machine.
const LEASE_AND_SLACK: Duration = Duration::from_secs(20);

/// Rate limits off: the ordering test sends flat out. Room streams keep
/// 1,000 lines, so a node cut off while 300 are said catches up on all.
const CONFIG: &str = "max_connections_per_ip = 0\nhistory_size = 1000\n\n[rate_limit]\nenabled = false\nflood_disconnect_after = 0\n\n[idle]\nenabled = false\n";

/// One node: a chatd process, its native and HTTP addresses.
struct Node {
    process: KillOnDrop,
    native: SocketAddr,
    http: SocketAddr,
    _log: mpsc::Receiver<String>,
}

impl Node {
    fn start(name: &str, backend: &str, redis_url: &str, dir: &Path) -> Self {
        let config = dir.join("chatd.toml");
        std::fs::write(&config, CONFIG).expect("write the config");
        let data = dir.join(name);
        let mut child = Command::new(CHATD)
            .args(["serve", "--bind", "127.0.0.1:0", "--irc-bind", "none"])
            .args(["--http-bind", "127.0.0.1:0", "--threads", "2"])
            .args(["--backend", backend, "--node-name", name])
            .args(["--cluster", redis_url])
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(&data)
            .env_remove("RUST_BACKTRACE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chatd starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let (found, listening) = mpsc::channel();
        let (log_tx, log) = mpsc::channel();
        let node = name.to_owned();
        // Kept reading for the node's whole life, so it never blocks on a
        // full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("chatd listening on ").nth(1) {
                    let _ = found.send(parse_listening(rest));
                }
                if line.contains("ERROR") || line.contains("panicked") {
                    eprintln!("{node}: {line}");
                }
                let _ = log_tx.send(line);
            }
        });
        let listening = listening
            .recv_timeout(Duration::from_secs(15))
            .expect("a start-up line");
        let native = listening
            .iter()
            .find(|l| l.dialect == Dialect::Native && !l.http && !l.tls)
            .expect("a native listener")
            .address;
        let http = listening
            .iter()
            .find(|l| l.http)
            .expect("an HTTP listener")
            .address;
        let node = Self {
            process: KillOnDrop(child),
            native,
            http,
            _log: log,
        };
        node.wait_ready();
        node
    }

    /// Waits until `/readyz` says the node's bus reached Redis.
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if http_status(self.http, "/readyz") == Some(200) {
                return;
            }
            assert!(Instant::now() < deadline, "node not ready within 15 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn client(&self, from: u8) -> LineClient {
        let mut client =
            LineClient::connect(self.native, IpAddr::from([127, 0, 0, from])).expect("connect");
        client
            .wait_for(|line| line.starts_with("* welcome"))
            .expect("welcome");
        client
    }

    fn kill_9(&mut self) {
        let _ = self.process.0.kill();
        let _ = self.process.0.wait();
    }
}

fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.split_whitespace().nth(1)?.parse().ok()
}

/// Reads until a line `wanted` accepts, for at most `limit`.
fn wait_line(client: &mut LineClient, limit: Duration, wanted: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + limit;
    let mut seen = Vec::new();
    loop {
        match client.next_line().expect("read") {
            Received::Line(line) if wanted(&line) => return line,
            Received::Line(line) => seen.push(line),
            Received::Closed => panic!("closed; saw {seen:?}"),
            Received::Nothing => {}
        }
        assert!(
            Instant::now() < deadline,
            "nothing wanted within {limit:?}; saw {seen:?}"
        );
    }
}

/// Sets a nickname and waits for the answer.
fn nick(client: &mut LineClient, name: &str) {
    client.say(&format!("#nick {name}")).expect("send");
    let answer = wait_line(client, Duration::from_secs(5), |l| {
        l.starts_with("* you are now") || l.starts_with("! ")
    });
    assert_eq!(answer, format!("* you are now {name}"));
}

/// A real redis-server, or `None` when it is not installed: `start`
/// then says SKIPPED loudly (and fails instead under
/// `CHATD_REQUIRE_REDIS=1`, as in CI).
fn redis() -> Option<RedisServer> {
    RedisServer::start()
}

#[test]
fn lines_whispers_nicknames_who_and_history_cross_three_nodes() {
    let Some(redis) = redis() else { return };
    let dir = tempfile::tempdir().unwrap();
    let n1 = Node::start("n1", "poll", &redis.url(), dir.path());
    let n2 = Node::start("n2", "iocp", &redis.url(), dir.path());
    let n3 = Node::start("n3", "poll", &redis.url(), dir.path());
    let (mut alice, mut bob, mut carol) = (n1.client(1), n2.client(2), n3.client(3));
    nick(&mut alice, "alice");
    nick(&mut bob, "bob");
    nick(&mut carol, "carol");

    // A nickname is the cluster's, whatever the case.
    carol.say("#nick ALICE").unwrap();
    let refused = wait_line(&mut carol, Duration::from_secs(5), |l| l.starts_with("! "));
    assert!(refused.starts_with("! nick-taken"), "{refused}");

    alice.say("hello from n1").unwrap();
    for reader in [&mut bob, &mut carol] {
        wait_line(reader, Duration::from_secs(5), |l| {
            l == "[#general] alice: hello from n1"
        });
    }

    bob.say("#msg carol psst").unwrap();
    wait_line(&mut carol, Duration::from_secs(5), |l| {
        l == "[whisper] bob: psst"
    });
    wait_line(&mut bob, Duration::from_secs(5), |l| {
        l == "[whisper to carol] psst"
    });
    bob.say("#msg nobody hi").unwrap();
    let missing = wait_line(&mut bob, Duration::from_secs(5), |l| l.starts_with("! "));
    assert!(missing.starts_with("! no-such-nick"), "{missing}");

    // Each node lists the members of every node.
    for client in [&mut alice, &mut carol] {
        client.say("#who").unwrap();
        let listing = wait_line(client, Duration::from_secs(5), |l| l.starts_with("+ who"));
        assert_eq!(listing, "+ who #general 3: alice bob carol");
    }

    // The same history on every node, the speaker's included.
    bob.say("second line").unwrap();
    for reader in [&mut alice, &mut carol] {
        wait_line(reader, Duration::from_secs(5), |l| {
            l == "[#general] bob: second line"
        });
    }
    // A node shows (and keeps) a line when the bus brings it back, the
    // speaker's node too: ask until the newest line is there.
    let history = |client: &mut LineClient| {
        for _ in 0..50 {
            client.say("#history 5").unwrap();
            let header = wait_line(client, Duration::from_secs(5), |l| {
                l.starts_with("+ history")
            });
            let count: usize = header.rsplit(' ').next().unwrap().parse().unwrap();
            let mut lines = vec![header];
            for _ in 0..count {
                lines.push(wait_line(client, Duration::from_secs(5), |_| true));
            }
            if lines
                .last()
                .is_some_and(|l| l.ends_with("bob: second line"))
            {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the newest line never reached this node's history");
    };
    let on_n1 = history(&mut alice);
    assert!(on_n1.len() >= 3, "{on_n1:?}");
    assert_eq!(history(&mut carol), on_n1);
    assert_eq!(history(&mut bob), on_n1);
    drop((n1, n2, n3));
}

#[test]
fn a_client_back_on_another_node_catches_up_by_message_id() {
    let Some(redis) = redis() else { return };
    let dir = tempfile::tempdir().unwrap();
    let n1 = Node::start("n1", "poll", &redis.url(), dir.path());
    let n2 = Node::start("n2", "iocp", &redis.url(), dir.path());
    let mut alice = n1.client(1);
    nick(&mut alice, "alice");
    // Someone on n2 all along, to know when n2 has the lines.
    let mut watcher = n2.client(4);
    let mut bob = n1.client(2);
    bob.say("#ids on").unwrap();
    wait_line(&mut bob, Duration::from_secs(5), |l| l == "* ids on");
    alice.say("before the drop").unwrap();
    let seen = wait_line(&mut bob, Duration::from_secs(5), |l| {
        l.ends_with("before the drop")
    });
    // `[#general id=N] alice: ...`: the id is the room's offset in Redis.
    let last_id: u64 = seen
        .split("id=")
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("no id in {seen:?}"));
    drop(bob);
    for n in 0..5 {
        alice.say(&format!("missed {n}")).unwrap();
    }
    wait_line(&mut watcher, Duration::from_secs(5), |l| {
        l.ends_with("alice: missed 4")
    });
    // Back, on another node, and on a node that started since (its
    // memory holds none of it: the answer comes from the room's stream):
    // what was missed, by id, in order.
    let n3 = Node::start("n3", "poll", &redis.url(), dir.path());
    for node in [&n2, &n3] {
        catch_up(node, last_id);
    }
    drop((n1, n2, n3));
}

fn catch_up(node: &Node, last_id: u64) {
    let mut back = node.client(3);
    back.say(&format!("#history since {last_id}")).unwrap();
    let header = wait_line(&mut back, Duration::from_secs(5), |l| {
        l.starts_with("+ history")
    });
    assert_eq!(header, "+ history #general 5");
    for n in 0..5 {
        let line = wait_line(&mut back, Duration::from_secs(5), |_| true);
        assert!(line.ends_with(&format!("alice: missed {n}")), "{line}");
    }
}

#[test]
fn two_nodes_racing_for_one_nickname_grant_it_to_one() {
    let Some(redis) = redis() else { return };
    let dir = tempfile::tempdir().unwrap();
    let n1 = Node::start("n1", "poll", &redis.url(), dir.path());
    let n2 = Node::start("n2", "iocp", &redis.url(), dir.path());
    let mut left = n1.client(1);
    let mut right = n2.client(2);
    // Both ask at once, before either node can have heard of the other's
    // claim: only Redis's claim decides.
    let names: Vec<String> = (0..20).map(|i| format!("racer{i}")).collect();
    let answer = |client: &mut LineClient| {
        wait_line(client, Duration::from_secs(5), |l| {
            l.starts_with("* you are now") || l.starts_with("! nick-taken")
        })
    };
    let (mut from_left, mut from_right) = (Vec::new(), Vec::new());
    for name in &names {
        left.say(&format!("#nick {name}")).unwrap();
        right.say(&format!("#nick {name}")).unwrap();
        from_left.push(answer(&mut left));
        from_right.push(answer(&mut right));
    }
    let granted = |answers: &[String]| -> Vec<String> {
        answers
            .iter()
            .filter_map(|a| a.strip_prefix("* you are now ").map(str::to_owned))
            .collect()
    };
    let (won_left, won_right) = (granted(&from_left), granted(&from_right));
    for name in &names {
        let winners = usize::from(won_left.contains(name)) + usize::from(won_right.contains(name));
        assert_eq!(
            winners, 1,
            "{name} granted {winners} times: {won_left:?} {won_right:?}"
        );
    }
    drop((n1, n2));
}

#[test]
fn ten_thousand_interleaved_lines_are_seen_in_one_order_everywhere() {
    let Some(redis) = redis() else { return };
    let dir = tempfile::tempdir().unwrap();
    let n1 = Node::start("n1", "poll", &redis.url(), dir.path());
    let n2 = Node::start("n2", "iocp", &redis.url(), dir.path());
    let n3 = Node::start("n3", "iocp", &redis.url(), dir.path());
    let mut readers = vec![n1.client(11), n2.client(12), n3.client(13)];
    let mut senders = vec![n1.client(21), n2.client(22)];
    for (i, sender) in senders.iter_mut().enumerate() {
        nick(sender, &format!("sender{i}"));
    }
    const EACH: usize = 5_000;
    let threads: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(i, mut sender)| {
            std::thread::spawn(move || {
                let mut batch = String::new();
                for n in 0..EACH {
                    batch.push_str(&format!("s{i} {n}\n"));
                    if batch.len() > 8_000 {
                        sender.send(batch.as_bytes()).unwrap();
                        batch.clear();
                    }
                }
                sender.send(batch.as_bytes()).unwrap();
                sender
            })
        })
        .collect();
    let mut orders = Vec::new();
    for reader in &mut readers {
        let mut seen = Vec::with_capacity(2 * EACH);
        let deadline = Instant::now() + Duration::from_secs(120);
        while seen.len() < 2 * EACH {
            match reader.next_line().expect("read") {
                Received::Line(line) => {
                    if let Some(text) = line.split_once(": ").map(|(_, t)| t.to_owned())
                        && text.starts_with('s')
                        && line.starts_with("[#general] sender")
                    {
                        seen.push(text);
                    }
                }
                Received::Closed => panic!("a reader was closed after {} lines", seen.len()),
                Received::Nothing => {}
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {} lines within 120 s",
                seen.len(),
                2 * EACH
            );
        }
        orders.push(seen);
    }
    for thread in threads {
        thread.join().expect("a sender panicked");
    }
    // Each sender's lines in the order sent, none missing, none twice.
    for i in 0..2 {
        let own: Vec<&String> = orders[0]
            .iter()
            .filter(|t| t.starts_with(&format!("s{i} ")))
            .collect();
        let expected: Vec<String> = (0..EACH).map(|n| format!("s{i} {n}")).collect();
        assert!(
            own.iter()
                .map(|s| s.as_str())
                .eq(expected.iter().map(String::as_str)),
            "sender {i}'s lines out of order or missing"
        );
    }
    // And one interleaving, the same on every node.
    assert_eq!(orders[1], orders[0], "n2 saw another order than n1");
    assert_eq!(orders[2], orders[0], "n3 saw another order than n1");
    let switches = orders[0]
        .windows(2)
        .filter(|w| w[0].as_bytes()[1] != w[1].as_bytes()[1])
        .count();
    assert!(switches > 0, "the two senders never interleaved");
    drop((n1, n2, n3));
}

#[test]
fn a_killed_node_s_users_leave_and_its_nicknames_are_free_within_the_lease() {
    let Some(redis) = redis() else { return };
    let dir = tempfile::tempdir().unwrap();
    let n1 = Node::start("n1", "iocp", &redis.url(), dir.path());
    let mut n2 = Node::start("n2", "poll", &redis.url(), dir.path());
    let mut alice = n1.client(1);
    nick(&mut alice, "alice");
    let mut bob = n2.client(2);
    nick(&mut bob, "bob");
    wait_line(&mut alice, Duration::from_secs(5), |l| l.contains("bob"));

    // While n2 lives, bob is taken.
    let mut other = n1.client(3);
    other.say("#nick bob").unwrap();
    let refused = wait_line(&mut other, Duration::from_secs(5), |l| l.starts_with("! "));
    assert!(refused.starts_with("! nick-taken"), "{refused}");

    n2.kill_9();
    let gone = wait_line(&mut alice, LEASE_AND_SLACK, |l| l.starts_with("* bob quit"));
    assert!(gone.contains("n2"), "{gone}");
    // n2 comes back under its name before anyone takes "bob": the key its
    // killed process left names n2, whose lease is live again, yet holds
    // no user.
    let n2 = Node::start("n2", "poll", &redis.url(), dir.path());
    nick(&mut other, "bob");
    drop((n1, n2));
}

#[test]
fn acknowledged_lines_survive_kill_9_and_restart_of_redis() {
    let Some(mut redis) = redis() else { return };
    let dir = tempfile::tempdir().unwrap();
    let n1 = Node::start("n1", "poll", &redis.url(), dir.path());
    let n2 = Node::start("n2", "iocp", &redis.url(), dir.path());
    let mut alice = n1.client(1);
    nick(&mut alice, "alice");
    alice.say("#ack on").unwrap();
    wait_line(&mut alice, Duration::from_secs(5), |l| l.contains("ack"));
    let mut acked = 0;
    for n in 0..50 {
        alice.say(&format!("kept {n}")).unwrap();
        wait_line(&mut alice, Duration::from_secs(5), |l| {
            l.starts_with("+ ack")
        });
        acked += 1;
    }
    redis.kill_9();
    // Down: a line is refused out loud, #help still answers.
    let refused = (0..100)
        .find_map(|_| {
            alice.say("lost?").unwrap();
            let line = wait_line(&mut alice, Duration::from_secs(5), |l| {
                l.starts_with("! ") || l.starts_with("+ ack")
            });
            if line.starts_with("! unavailable") {
                Some(line)
            } else {
                std::thread::sleep(Duration::from_millis(100));
                None
            }
        })
        .expect("lines refused while Redis is down");
    assert!(refused.starts_with("! unavailable"));
    alice.say("#help").unwrap();
    wait_line(&mut alice, Duration::from_secs(5), |l| l.contains("#nick"));

    redis.restart();
    n1.wait_ready();
    n2.wait_ready();
    let mut bob = n2.client(2);
    bob.say("#history 100").unwrap();
    let header = wait_line(&mut bob, Duration::from_secs(5), |l| {
        l.starts_with("+ history")
    });
    let count: usize = header.rsplit(' ').next().unwrap().parse().unwrap();
    let mut kept = Vec::new();
    for _ in 0..count {
        let line = wait_line(&mut bob, Duration::from_secs(5), |_| true);
        if let Some((_, text)) = line.split_once(": kept ") {
            kept.push(text.parse::<usize>().unwrap());
        }
    }
    assert_eq!(
        kept,
        (0..acked).collect::<Vec<_>>(),
        "acknowledged lines lost"
    );
    drop((n1, n2));
}

#[test]
fn a_node_cut_off_from_redis_and_healed_shows_every_line_once_in_order() {
    let Some(redis) = redis() else { return };
    let dir = tempfile::tempdir().unwrap();
    let link = LinkProxy::start(SocketAddr::from(([127, 0, 0, 1], redis.port()))).unwrap();
    let n1 = Node::start("n1", "poll", &redis.url(), dir.path());
    let cut_url = format!("redis://{}/0", link.addr());
    let n2 = Node::start("n2", "iocp", &cut_url, dir.path());
    let mut alice = n1.client(1);
    nick(&mut alice, "alice");
    let mut bob = n2.client(2);
    nick(&mut bob, "bob");
    const LINES: usize = 300;
    let mut said = 0;
    let mut say_some = |alice: &mut LineClient, count: usize| {
        for _ in 0..count {
            alice.say(&format!("line {said}")).unwrap();
            said += 1;
        }
    };
    say_some(&mut alice, 100);
    link.cut();
    // n2 notices (its users are told lines are unavailable)...
    let deadline = Instant::now() + Duration::from_secs(10);
    while http_status(n2.http, "/readyz") == Some(200) {
        assert!(Instant::now() < deadline, "n2 did not notice the cut");
        std::thread::sleep(Duration::from_millis(50));
    }
    // ...while n1 goes on. A whisper to bob cannot reach him: said so,
    // not acknowledged as sent.
    alice.say("#msg bob are you there?").unwrap();
    let answer = wait_line(&mut alice, Duration::from_secs(5), |l| {
        l.starts_with("! ") || l.starts_with("[whisper to")
    });
    assert!(answer.starts_with("! unavailable"), "{answer}");
    say_some(&mut alice, 100);
    link.heal();
    n2.wait_ready();
    say_some(&mut alice, LINES - 200);
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < LINES {
        match bob.next_line().expect("read") {
            Received::Line(line) => {
                if let Some(n) = line.strip_prefix("[#general] alice: line ") {
                    seen.push(n.parse::<usize>().unwrap());
                }
            }
            Received::Closed => panic!("bob was closed"),
            Received::Nothing => {}
        }
        assert!(
            Instant::now() < deadline,
            "bob saw {} of {LINES}: {seen:?}",
            seen.len()
        );
    }
    assert_eq!(seen, (0..LINES).collect::<Vec<_>>());
    // Nothing more comes: no line twice.
    alice.say("#ping end").unwrap();
    wait_line(&mut alice, Duration::from_secs(5), |l| l == "+ pong end");
    std::thread::sleep(Duration::from_millis(300));
    while let Received::Line(line) = bob.next_line().expect("read") {
        assert!(!line.contains(": line "), "seen twice: {line}");
    }
    drop((n1, n2));
}
