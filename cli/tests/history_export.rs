//! `chatd history export` as a process: on a data directory written here
//! in the segment layout, and on the data directory of a running server.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use chatd_core::history::{self, Record, RecordKind};
use chatd_core::{Dialect, MessageId, Nick, RoomName};
use chatd_engine::listener::parse_listening;
use chatd_engine::persist::index::build_for_segment;
use chatd_engine::persist::reader::{index_name, segment_name};
use chatd_tests::client::LineClient;

const CHATD: &str = env!("CARGO_BIN_EXE_chatd");
const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
/// 2026-11-18 00:00:00 UTC.
const DAY: u64 = 1_794_960_000_000;

fn record(id: u64, room: &str, ts: u64, kind: RecordKind, text: &str) -> Record {
    Record {
        id: MessageId::new(id),
        room: RoomName::parse(room).unwrap(),
        ts,
        from: Nick::parse("alice").unwrap(),
        kind,
        text: text.into(),
        to: None,
        private: false,
    }
}

/// `#general` in two segments (the first sealed, with its index), `#dev`
/// in one, a whisper; the last segment of #general ends in a torn line.
fn write_data_dir(dir: &Path) -> Vec<Record> {
    let general = [
        record(
            1,
            "general",
            DAY - 3_600_000,
            RecordKind::Msg,
            "the day before",
        ),
        record(2, "general", DAY - 1, RecordKind::Action, "waves"),
        record(
            4,
            "general",
            DAY,
            RecordKind::Urgent,
            "midnight \"quoted\" é",
        ),
        record(5, "general", DAY + 66_000, RecordKind::Msg, "hi"),
    ];
    let room_dir = dir.join("general");
    std::fs::create_dir_all(&room_dir).unwrap();
    let first: Vec<u8> = general[..2].iter().flat_map(history::encode).collect();
    std::fs::write(room_dir.join(segment_name(MessageId::new(1))), &first).unwrap();
    std::fs::write(
        room_dir.join(index_name(MessageId::new(1))),
        build_for_segment(&first),
    )
    .unwrap();
    let mut second: Vec<u8> = general[2..].iter().flat_map(history::encode).collect();
    second.extend_from_slice(
        &history::encode(&record(6, "general", DAY, RecordKind::Msg, "torn"))[..25],
    );
    std::fs::write(room_dir.join(segment_name(MessageId::new(4))), &second).unwrap();
    let dev_dir = dir.join("dev");
    std::fs::create_dir_all(&dev_dir).unwrap();
    std::fs::write(
        dev_dir.join(segment_name(MessageId::new(3))),
        history::encode(&record(3, "dev", DAY, RecordKind::Msg, "elsewhere")),
    )
    .unwrap();
    let whispers = dir.join("_whispers");
    std::fs::create_dir_all(&whispers).unwrap();
    let mut whisper = record(7, "general", DAY, RecordKind::Whisper, "psst");
    whisper.to = Some(Nick::parse("bob").unwrap());
    std::fs::write(
        whispers.join(segment_name(MessageId::new(7))),
        history::encode(&whisper),
    )
    .unwrap();
    general.to_vec()
}

fn chatd(args: &[&str]) -> Output {
    Command::new(CHATD)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("chatd runs")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(snapshot(&path));
        } else {
            files.push((path.display().to_string(), std::fs::read(&path).unwrap()));
        }
    }
    files.sort();
    files
}

#[test]
fn export_prints_a_room_as_stored_or_as_chat_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let records = write_data_dir(tmp.path());
    let dir = tmp.path().to_str().unwrap();
    let before = snapshot(tmp.path());

    let jsonl = stdout(&chatd(&[
        "history",
        "export",
        "#general",
        "--data-dir",
        dir,
    ]));
    let expected: String = records
        .iter()
        .map(|record| {
            let line = String::from_utf8(history::encode(record)).unwrap();
            line[9..].to_owned()
        })
        .collect();
    assert_eq!(jsonl, expected);

    let text = stdout(&chatd(&[
        "history",
        "export",
        "General",
        "--format",
        "text",
        "--data-dir",
        dir,
    ]));
    assert_eq!(
        text,
        "[#general 2026-11-17 23:00:00] alice: the day before\n\
         [#general 2026-11-17 23:59:59] * alice waves\n\
         [#general 2026-11-18 00:00:00] URGENT alice: midnight \"quoted\" é\n\
         [#general 2026-11-18 00:01:06] alice: hi\n"
    );

    let since = stdout(&chatd(&[
        "history",
        "export",
        "general",
        "--since",
        "2026-11-18",
        "--format",
        "text",
        "--data-dir",
        dir,
    ]));
    assert_eq!(since.lines().count(), 2, "{since}");
    assert!(since.starts_with("[#general 2026-11-18 00:00:00] URGENT"));
    let since = stdout(&chatd(&[
        "history",
        "export",
        "general",
        "--since",
        "2026-11-18T01:00:30+01:00",
        "--data-dir",
        dir,
    ]));
    assert_eq!(since.lines().count(), 1, "{since}");
    assert!(since.contains("\"text\":\"hi\""));

    assert_eq!(snapshot(tmp.path()), before, "an export writes nothing");
}

#[test]
fn export_errors_are_one_clear_line_and_exit_code_1() {
    let tmp = tempfile::tempdir().unwrap();
    write_data_dir(tmp.path());
    let dir = tmp.path().to_str().unwrap();
    let cases: [(&[&str], &str); 5] = [
        (&["#nowhere"], "unknown room #nowhere"),
        (&["#general", "--since", "yesterday"], "is not a date"),
        (&["#general", "--since", "2026-02-30"], "is not a date"),
        (&["#no/pe"], "is not a room name"),
        (&["_whispers"], "is not a room name"),
    ];
    for (args, message) in cases {
        let mut all = vec!["history", "export"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--data-dir", dir]);
        let output = chatd(&all);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(output.stdout.is_empty());
    }
    let missing = tmp.path().join("missing");
    let output = chatd(&[
        "history",
        "export",
        "general",
        "--data-dir",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no data directory"));
    let output = chatd(&[
        "history",
        "export",
        "general",
        "--format",
        "xml",
        "--data-dir",
        dir,
    ]);
    assert_eq!(output.status.code(), Some(2), "a usage error");
}

/// A running server.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(data_dir: &Path) -> Self {
        let mut child = Command::new(CHATD)
            .args(common::SERVE_NATIVE_ONLY)
            .args(["--threads", "1", "--fsync", "always", "--data-dir"])
            .arg(data_dir)
            .env_remove("RUST_BACKTRACE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chatd starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let (found, address) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("chatd listening on ").nth(1) {
                    let _ = found.send(parse_listening(rest));
                }
            }
        });
        let listening = address
            .recv_timeout(Duration::from_secs(10))
            .expect("start-up line");
        let addr = listening
            .iter()
            .find(|l| l.dialect == Dialect::Native)
            .expect("a native listener")
            .address;
        Self { child, addr }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn export_reads_the_history_of_a_running_server() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path());
    let mut alice = LineClient::connect(server.addr, LOCAL).expect("connects");
    alice
        .wait_for(|l| l.starts_with("* welcome"))
        .expect("welcome");
    alice.say("#ack on").expect("send");
    alice
        .wait_for(|l| l == "* acknowledgements on")
        .expect("acks on");
    for n in 1..=3 {
        alice.say(&format!("stored line {n}")).expect("send");
        alice.wait_for(|l| l.starts_with("+ ack ")).expect("stored");
    }
    let dir = tmp.path().to_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = stdout(&chatd(&[
            "history",
            "export",
            "#general",
            "--format",
            "text",
            "--data-dir",
            dir,
        ]));
        if text.lines().count() == 3 || Instant::now() > deadline {
            break text;
        }
        thread::sleep(Duration::from_millis(50));
    };
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    for (n, line) in lines.iter().enumerate() {
        assert!(line.starts_with("[#general "), "{line}");
        assert!(
            line.ends_with(&format!(": stored line {}", n + 1)),
            "{line}"
        );
    }
    // The server still works and still writes after the export.
    alice.say("after the export").expect("send");
    alice.wait_for(|l| l.starts_with("+ ack ")).expect("stored");
}
