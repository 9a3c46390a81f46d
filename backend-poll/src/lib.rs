//! backend-poll: chatd on readiness I/O, through the `polling` crate
//! (epoll on Linux, kqueue on macOS and the BSDs, AFD/IOCP on Windows).
//!
//! Only socket I/O lives here ([`PollBackend`] implements
//! [`chatd_engine::Backend`]): N I/O threads, each with its own `Poller` and
//! a disjoint set of connections; thread 0 also accepts, on every listener
//! (one per dialect). Reads go through
//! one 64 KiB buffer per thread, so an idle connection holds no read
//! buffer at all; output waits in a per-connection queue of shared lines,
//! bounded by `max_outbound_bytes`, and leaves in vectored writes. The
//! chat itself runs on the engine's core thread.

mod io_thread;

use std::io;
use std::sync::Arc;

use chatd_engine::hub::{Inbox, Mailbox};
use chatd_engine::listener::Listener;
use chatd_engine::{Backend, IoThread};
use polling::{PollMode, Poller};

use crate::io_thread::IoLoop;

/// The readiness backend.
#[derive(Debug, Default, Clone, Copy)]
pub struct PollBackend;

impl Backend for PollBackend {
    fn name(&self) -> &'static str {
        "poll"
    }

    fn mechanism(&self) -> String {
        mechanism().to_owned()
    }

    fn start(
        &self,
        listeners: Vec<Listener>,
        threads: usize,
        max_outbound_bytes: usize,
        inbox: Arc<Inbox>,
    ) -> io::Result<Vec<IoThread>> {
        let threads = threads.max(1);
        let mut listeners = Some(listeners);
        let mut started = Vec::with_capacity(threads);
        for index in 0..threads {
            let poller = Arc::new(Poller::new()?);
            let mode = if poller.supports_level() {
                PollMode::Level
            } else {
                PollMode::Oneshot
            };
            let waker = poller.clone();
            let mailbox = Arc::new(Mailbox::new(move || {
                if let Err(error) = waker.notify() {
                    tracing::error!(%error, "cannot wake an I/O thread");
                }
            }));
            let io_loop = IoLoop::new(
                index,
                threads,
                poller,
                mode,
                mailbox.clone(),
                inbox.clone(),
                listeners.take().unwrap_or_default(),
                max_outbound_bytes,
            );
            let thread = std::thread::Builder::new()
                .name(format!("chatd-io-{index}"))
                .spawn(move || io_loop.run())?;
            started.push(IoThread { mailbox, thread });
        }
        Ok(started)
    }
}

/// The readiness mechanism `polling` uses on this platform.
pub fn mechanism() -> &'static str {
    if cfg!(any(target_os = "linux", target_os = "android")) {
        "epoll"
    } else if cfg!(any(
        target_os = "macos",
        target_os = "ios",
        target_os = "freebsd",
        target_os = "openbsd",
        target_os = "netbsd",
        target_os = "dragonfly"
    )) {
        "kqueue"
    } else if cfg!(windows) {
        "IOCP (AFD poll)"
    } else if cfg!(any(target_os = "illumos", target_os = "solaris")) {
        "event ports"
    } else {
        "poll"
    }
}
