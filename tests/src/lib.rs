//! The transcript harness: one script format (docs/TRANSCRIPTS.md), run
//! unchanged against every way of running chatd.
//!
//! - [`transcript`] parses the files under `tests/transcripts/`;
//! - [`driver::Driver`] is what a way of running the server must offer;
//! - [`memory::MemoryDriver`] runs the core alone, with input split at
//!   seeded random points;
//! - [`memory_cluster::MemoryClusterDriver`] runs several cores as the
//!   nodes of a cluster, joined by the memory bus ([`cluster_bus`]), for
//!   the cluster transcripts under `tests/transcripts/cluster/`;
//! - [`socket::SocketDriver`] runs a real backend over TCP on 127.0.0.1
//!   with a manual clock;
//! - [`process::ProcessDriver`] runs a `chatd` binary as a process (also a
//!   Windows build under Wine) on its hidden manual clock;
//! - [`runner::run`] plays a transcript and reports the first mismatch with
//!   file, line, expected, actual and the driver's name.
//!
//! Nothing in a transcript may depend on a driver's internals: clients only
//! send bytes and read lines, time only moves by `advance`, and ordering
//! across clients is only asserted after a barrier.

pub mod child;
pub mod client;
pub mod cluster_bus;
pub mod driver;
pub mod memory;
pub mod memory_cluster;
pub mod process;
pub mod proxy;
pub mod redis;
pub mod runner;
pub mod socket;
pub mod tls;
pub mod transcript;

use std::path::{Path, PathBuf};

/// The loopback address `127.0.0.LAST`: tests give each client its own
/// source address, so per-address limits and bans see them apart.
pub fn host(last: u8) -> std::net::IpAddr {
    std::net::IpAddr::from([127, 0, 0, last])
}

/// Runs each named scenario (a `fn(&impl Backend)` in the calling test
/// file) once per backend, as `poll::NAME` and `iocp::NAME`.
#[macro_export]
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {
        mod poll {
            $(#[test]
            fn $scenario() {
                super::$scenario(&chatd_backend_poll::PollBackend);
            })*
        }
        mod iocp {
            $(#[test]
            fn $scenario() {
                super::$scenario(&chatd_backend_iocp::IocpBackend::default());
            })*
        }
    };
}

/// The transcript files, sorted by name: one server's, every driver runs
/// them (the cluster ones are in a folder of their own).
pub fn transcript_files() -> Vec<PathBuf> {
    chat_files_in(&Path::new(env!("CARGO_MANIFEST_DIR")).join("transcripts"))
}

/// The cluster transcripts (`tests/transcripts/cluster/`), sorted by name:
/// only the memory cluster driver runs them.
pub fn cluster_transcript_files() -> Vec<PathBuf> {
    chat_files_in(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("transcripts")
            .join("cluster"),
    )
}

fn chat_files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "chat"))
        .collect();
    files.sort();
    files
}

/// A stable seed per transcript name (FNV-1a), optionally mixed with
/// `CHATD_TRANSCRIPT_SEED` to explore other chunkings.
pub fn seed_for(name: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.bytes() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    let extra = std::env::var("CHATD_TRANSCRIPT_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0);
    hash ^ extra
}
