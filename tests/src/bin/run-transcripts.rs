//! Runs every transcript against a `chatd` server process: natively, or a
//! Windows build under Wine (scripts/test-windows.sh).
//!
//! ```sh
//! run-transcripts --backend iocp --expect-driver IOCP -- wine target/x86_64-pc-windows-gnu/release/chatd.exe
//! ```
//!
//! `--tls` runs them in the TLS mode: the server also gets TLS listeners
//! (a certificate made for the run) and every client connects over TLS.
//!
//! Prints one line per transcript, then `N passed, N failed`; exits
//! non-zero if any failed or if a server's start-up line does not name the
//! expected driver.

use std::process::ExitCode;

use chatd_tests::process::ProcessDriver;
use chatd_tests::runner;
use chatd_tests::transcript::Transcript;
use chatd_tests::transcript_files;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut backend = "iocp".to_owned();
    let mut expect_driver: Option<String> = None;
    let mut only: Option<String> = None;
    let mut tls = false;
    let mut command = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--backend" => backend = args.next().unwrap_or_default(),
            "--expect-driver" => expect_driver = args.next(),
            "--only" => only = args.next(),
            "--tls" => tls = true,
            "--" => command.extend(args.by_ref()),
            other => {
                eprintln!("run-transcripts: unknown argument {other:?}");
                return ExitCode::from(2);
            }
        }
    }
    if command.is_empty() {
        eprintln!(
            "usage: run-transcripts [--backend B] [--expect-driver D] [--only NAME] [--tls] -- COMMAND..."
        );
        return ExitCode::from(2);
    }
    let (mut passed, mut failed) = (0, 0);
    for path in transcript_files() {
        let transcript = match Transcript::load(&path) {
            Ok(transcript) => transcript,
            Err(error) => {
                println!("FAILED {error}");
                failed += 1;
                continue;
            }
        };
        if only
            .as_deref()
            .is_some_and(|name| !transcript.name.contains(name))
        {
            continue;
        }
        let driver = if tls {
            ProcessDriver::new_tls(command.clone(), &backend, 2)
        } else {
            ProcessDriver::new(command.clone(), &backend, 2)
        };
        let mut driver = match driver {
            Ok(driver) => driver,
            Err(error) => {
                println!("FAILED {}: {error}", transcript.name);
                failed += 1;
                continue;
            }
        };
        let result = runner::run(&transcript, &mut driver);
        let wrong_driver = expect_driver.as_ref().and_then(|expected| {
            driver
                .startup_lines()
                .iter()
                .find(|line| !line.contains(&format!("({expected}")))
                .map(|line| format!("expected driver {expected}, start-up line was {line:?}"))
        });
        match (result, wrong_driver) {
            (Ok(()), None) => {
                println!("ok     {}", transcript.name);
                passed += 1;
            }
            (Err(failure), _) => {
                println!("FAILED {failure}");
                failed += 1;
            }
            (Ok(()), Some(problem)) => {
                println!("FAILED {}: {problem}", transcript.name);
                failed += 1;
            }
        }
    }
    println!("transcripts: {passed} passed, {failed} failed");
    if failed == 0 && passed > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
