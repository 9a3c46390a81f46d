//! The load generator against the bare relay, in process: the templated
//! line protocol, the relay and the delivery accounting agree.

use std::net::TcpListener;
use std::time::Duration;

use chatd_benches::fanout::{self, FanoutPlan, LineTemplates, Peer};
use chatd_benches::relay;

#[test]
fn every_message_reaches_every_other_member_through_the_relay() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || relay::serve(listener));
    let peer = Peer::Lines(LineTemplates {
        hello: String::new(),
        registered: None,
        join: "JOIN {room}".into(),
        say: "{payload}".into(),
        settle: Duration::from_millis(300),
    });
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
    let report = fanout::run(addr, &peer, &plan, false).expect("the run completes");
    assert!(report.sent >= 50, "sent only {}", report.sent);
    // Three members per room: each message reaches the two others.
    assert_eq!(report.expected, report.sent * 2);
    assert_eq!(report.delivered, report.expected, "lost {}", report.lost());
    assert_eq!(report.latency.count(), report.delivered);
}
