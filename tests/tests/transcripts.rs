//! Every transcript under tests/transcripts/, once per driver, and on both
//! backends once more over TLS (the harness's TLS mode: every client a
//! rustls client, on the TLS listener of its dialect).

use chatd_backend_iocp::IocpBackend;
use chatd_backend_poll::PollBackend;
use chatd_tests::memory::MemoryDriver;
use chatd_tests::runner;
use chatd_tests::socket::SocketDriver;
use chatd_tests::transcript::Transcript;
use chatd_tests::{seed_for, transcript_files};
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
    libtest_mimic::run(&args, trials).exit();
}
