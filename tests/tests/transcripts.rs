//! Every transcript under tests/transcripts/, once per driver, and on both
//! backends once more over TLS (the harness's TLS mode: every client a
//! rustls client, on the TLS listener of its dialect) and once more over
//! WebSockets (every client on the HTTP listener, at `/ws` or `/irc`),
//! but for the few that test what a WebSocket carries differently
//! ([`web_exempt`]). The cluster transcripts (`tests/transcripts/cluster/`)
//! run on the memory cluster driver only, as `cluster::NAME`.

use chatd_backend_iocp::IocpBackend;
use chatd_backend_poll::PollBackend;
use chatd_tests::memory::MemoryDriver;
use chatd_tests::memory_cluster::MemoryClusterDriver;
use chatd_tests::runner;
use chatd_tests::socket::SocketDriver;
use chatd_tests::transcript::Transcript;
use chatd_tests::{cluster_transcript_files, seed_for, transcript_files};
use libtest_mimic::{Arguments, Failed, Trial};

/// The issue asks for at least this many transcripts; fewer means files
/// went missing.
const MINIMUM_TRANSCRIPTS: usize = 30;

fn main() {
    let args = Arguments::from_args();
    let files = transcript_files();
    let mut trials = vec![Trial::test("transcript_suite_is_complete", {
        let count = files.len();
        move || {
            if count < MINIMUM_TRANSCRIPTS {
                return Err(format!(
                    "only {count} transcripts, expected at least {MINIMUM_TRANSCRIPTS}"
                )
                .into());
            }
            Ok(())
        }
    })];
    for path in files {
        let memory_path = path.clone();
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        trials.push(Trial::test(format!("memory::{name}"), move || {
            let transcript =
                Transcript::load(&memory_path).map_err(|e| Failed::from(e.to_string()))?;
            let mut driver = MemoryDriver::new(seed_for(&transcript.name));
            runner::run(&transcript, &mut driver).map_err(|e| Failed::from(e.to_string()))
        }));
        let iocp_path = path.clone();
        trials.push(Trial::test(format!("iocp::{name}"), move || {
            let transcript =
                Transcript::load(&iocp_path).map_err(|e| Failed::from(e.to_string()))?;
            let mut driver = SocketDriver::new(IocpBackend::default(), 2)
                .map_err(|e| Failed::from(e.to_string()))?;
            runner::run(&transcript, &mut driver).map_err(|e| Failed::from(e.to_string()))
        }));
        for web_backend in ["poll", "iocp"] {
            let web_path = path.clone();
            let exempt = web_exempt(&name);
            let trial = Trial::test(format!("web-{web_backend}::{name}"), move || {
                let transcript =
                    Transcript::load(&web_path).map_err(|e| Failed::from(e.to_string()))?;
                let result = if web_backend == "poll" {
                    let mut driver = SocketDriver::new_web(PollBackend, 2)
                        .map_err(|e| Failed::from(e.to_string()))?;
                    runner::run(&transcript, &mut driver)
                } else {
                    let mut driver = SocketDriver::new_web(IocpBackend::default(), 2)
                        .map_err(|e| Failed::from(e.to_string()))?;
                    runner::run(&transcript, &mut driver)
                };
                result.map_err(|e| Failed::from(e.to_string()))
            });
            // Listed as ignored, with the reason in its name's place: the
            // count shows, and `--ignored` runs them to see the difference.
            trials.push(match exempt {
                Some(_) => trial.with_ignored_flag(true),
                None => trial,
            });
        }
        for tls_backend in ["poll", "iocp"] {
            let tls_path = path.clone();
            trials.push(Trial::test(
                format!("tls-{tls_backend}::{name}"),
                move || {
                    let transcript =
                        Transcript::load(&tls_path).map_err(|e| Failed::from(e.to_string()))?;
                    let result = if tls_backend == "poll" {
                        let mut driver = SocketDriver::new_tls(PollBackend, 2)
                            .map_err(|e| Failed::from(e.to_string()))?;
                        runner::run(&transcript, &mut driver)
                    } else {
                        let mut driver = SocketDriver::new_tls(IocpBackend::default(), 2)
                            .map_err(|e| Failed::from(e.to_string()))?;
                        runner::run(&transcript, &mut driver)
                    };
                    result.map_err(|e| Failed::from(e.to_string()))
                },
            ));
        }
        trials.push(Trial::test(format!("poll::{name}"), move || {
            let transcript = Transcript::load(&path).map_err(|e| Failed::from(e.to_string()))?;
            // Two I/O threads, so connections really live on different threads.
            let mut driver =
                SocketDriver::new(PollBackend, 2).map_err(|e| Failed::from(e.to_string()))?;
            runner::run(&transcript, &mut driver).map_err(|e| Failed::from(e.to_string()))
        }));
    }
    let cluster_files = cluster_transcript_files();
    let cluster_names: Vec<String> = cluster_files
        .iter()
        .filter_map(|path| path.file_stem())
        .map(|stem| stem.to_string_lossy().into_owned())
        .collect();
    trials.push(Trial::test("cluster_waiting_list_is_current", move || {
        // A name left on the list after its file was renamed or removed
        // would hide nothing, but say something false.
        match CLUSTER_WAITING
            .iter()
            .find(|(name, _)| !cluster_names.iter().any(|n| n == name))
        {
            Some((name, _)) => {
                Err(format!("CLUSTER_WAITING names {name}, which is no cluster transcript").into())
            }
            None => Ok(()),
        }
    }));
    for path in cluster_files {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let waiting = CLUSTER_WAITING.iter().any(|(waiting, _)| *waiting == name);
        let replies_path = path.clone();
        let trial = Trial::test(format!("cluster-replies-first::{name}"), move || {
            let transcript =
                Transcript::load(&replies_path).map_err(|e| Failed::from(e.to_string()))?;
            let mut driver = MemoryClusterDriver::replies_first(seed_for(&transcript.name));
            runner::run(&transcript, &mut driver).map_err(|e| Failed::from(e.to_string()))
        });
        trials.push(trial.with_ignored_flag(waiting));
        let trial = Trial::test(format!("cluster::{name}"), move || {
            let transcript = Transcript::load(&path).map_err(|e| Failed::from(e.to_string()))?;
            if !transcript.is_cluster() {
                return Err(format!(
                    "{}: a cluster transcript starts with a nodes line",
                    transcript.name
                )
                .into());
            }
            let mut driver = MemoryClusterDriver::new(seed_for(&transcript.name));
            runner::run(&transcript, &mut driver).map_err(|e| Failed::from(e.to_string()))
        });
        trials.push(trial.with_ignored_flag(waiting));
    }
    libtest_mimic::run(&args, trials).exit();
}

/// Cluster transcripts written ahead of the core behaviour they test,
/// with what they wait for: listed as ignored until it lands (`--ignored`
/// runs them).
const CLUSTER_WAITING: &[(&str, &str)] = &[];

/// Why a transcript does not hold over a WebSocket, if it does not: it
/// sends bytes a WebSocket carries differently (docs/PROTOCOL.md,
/// "WebSocket"), so the server rightly answers otherwise.
fn web_exempt(name: &str) -> Option<&'static str> {
    WEB_EXEMPT
        .iter()
        .find(|(exempt, _)| *exempt == name)
        .map(|(_, why)| *why)
}

/// The transcripts [`web_exempt`] names, with the reason.
const WEB_EXEMPT: &[(&str, &str)] = &[
    (
        "bad_bytes",
        "text that is not UTF-8 closes a WebSocket (1007) instead of `! bad-utf8`",
    ),
    (
        "long_lines",
        "a line sent without its end is no WebSocket message yet: `! line-too-long` comes when the message ends",
    ),
];
