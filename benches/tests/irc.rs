//! The load generator speaking IRC, against a minimal IRC relay in
//! process: it registers, waits for `001`, joins after it, and counts
//! each `PRIVMSG` delivery once, whatever prefix and other lines (joins,
//! numerics) surround it. The same templates drive chatd's IRC listener
//! in `chatd bench compare --dialect irc`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chatd_benches::fanout::{self, FanoutPlan, LineTemplates, Peer};

/// Room name -> the members' sockets (clones to write to).
type Rooms = Arc<Mutex<HashMap<String, Vec<TcpStream>>>>;

/// A tiny IRC server: NICK/USER get `001` (and a `005` of noise), JOIN
/// is announced to the room, PRIVMSG goes to the room's other members
/// with a `nick!~user@host` prefix, as IRC servers send it.
fn serve_irc(listener: TcpListener) {
    let rooms: Rooms = Arc::default();
    for stream in listener.incoming().map_while(Result::ok) {
        let rooms = rooms.clone();
        std::thread::spawn(move || {
            let mut me = stream.try_clone().expect("clone");
            let mut nick = String::new();
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let line = line.trim_end_matches('\r');
                if let Some(name) = line.strip_prefix("NICK ") {
                    nick = name.to_owned();
                } else if line.starts_with("USER ") {
                    let welcome = format!(
                        ":test 001 {nick} :Welcome\r\n:test 005 {nick} CHANTYPES=# :are supported\r\n"
                    );
                    me.write_all(welcome.as_bytes()).expect("write");
                } else if let Some(room) = line.strip_prefix("JOIN ") {
                    let mut rooms = rooms.lock().expect("lock");
                    let members = rooms.entry(room.to_owned()).or_default();
                    members.push(me.try_clone().expect("clone"));
                    let join = format!(":{nick}!~{nick}@127.0.0.1 JOIN {room}\r\n");
                    for member in members.iter_mut() {
                        let _ = member.write_all(join.as_bytes());
                    }
                } else if let Some(rest) = line.strip_prefix("PRIVMSG ") {
                    let (room, _) = rest.split_once(' ').expect("PRIVMSG ROOM :TEXT");
                    let relayed = format!(":{nick}!~{nick}@127.0.0.1 PRIVMSG {rest}\r\n");
                    let mut rooms = rooms.lock().expect("lock");
                    let me_addr = me.peer_addr().ok();
                    for member in rooms.get_mut(room).into_iter().flatten() {
                        if member.peer_addr().ok() != me_addr {
                            let _ = member.write_all(relayed.as_bytes());
                        }
                    }
                }
            }
        });
    }
}

#[test]
fn irc_deliveries_are_counted_once_each() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || serve_irc(listener));
    let mut templates = LineTemplates::chatd_irc();
    templates.settle = Duration::from_millis(300);
    let plan = FanoutPlan {
        clients: 6,
        rooms: 2,
        senders: 2,
        rate: Some(200),
        in_flight: 8,
        payload: 64,
        duration: Duration::from_millis(500),
        reader_threads: 2,
        tls: None,
        web: false,
    };
    let report =
        fanout::run(addr, &Peer::Lines(templates), &plan, false).expect("the run completes");
    assert!(report.sent >= 50, "sent only {}", report.sent);
    // Three members per room: each message reaches the two others.
    assert_eq!(report.expected, report.sent * 2);
    assert_eq!(report.delivered, report.expected, "lost {}", report.lost());
    assert_eq!(report.latency.count(), report.delivered);
}
