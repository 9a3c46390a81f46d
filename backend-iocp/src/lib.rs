//! backend-iocp: chatd on completion I/O through compio (io_uring on
//! Linux, IOCP on Windows, compio's polling driver where io_uring is
//! refused).
//!
//! Only socket I/O lives here ([`IocpBackend`] implements
//! [`chatd_engine::Backend`]); the chat runs on the engine's core thread,
//! exactly as with backend-poll. N I/O threads each run one compio runtime
//! and own the connections whose id modulo N is their index. One blocking
//! acceptor thread per listener (one per dialect) hands new sockets to the
//! core unattached, because on
//! IOCP a socket belongs to one completion port for life. The core's thread
//! wakes an I/O thread through an atomic flag and waker ([`signal`]).

mod acceptor;
mod io_thread;
mod signal;

use std::io;
use std::sync::{Arc, Mutex, mpsc};

use chatd_engine::hub::{Inbox, Mailbox};
use chatd_engine::listener::Listener;
use chatd_engine::{Backend, IoThread};
use compio::driver::DriverType;
use compio::runtime::{Runtime, RuntimeBuilder};

use crate::acceptor::Acceptor;
use crate::io_thread::ThreadContext;
use crate::signal::Signal;

/// The completion backend.
#[derive(Debug, Default)]
pub struct IocpBackend {
    /// The driver the runtimes chose, once started.
    driver: Mutex<Option<String>>,
}

impl Backend for IocpBackend {
    fn name(&self) -> &'static str {
        "iocp"
    }

    fn mechanism(&self) -> String {
        self.driver
            .lock()
            .ok()
            .and_then(|driver| driver.clone())
            .unwrap_or_else(|| "compio (not started)".into())
    }

    fn start(
        &self,
        listeners: Vec<Listener>,
        threads: usize,
        max_outbound_bytes: usize,
        inbox: Arc<Inbox>,
    ) -> io::Result<Vec<IoThread>> {
        let threads = threads.max(1);
        let acceptors = listeners
            .into_iter()
            .map(|listener| Acceptor::start(listener, inbox.clone()))
            .collect::<io::Result<Vec<_>>>()?;
        let mut acceptors = Some(acceptors);
        let mut started = Vec::with_capacity(threads);
        for index in 0..threads {
            let signal = Arc::new(Signal::default());
            let raise = signal.clone();
            let mailbox = Arc::new(Mailbox::new(move || raise.raise()));
            let (ready, report) = mpsc::channel();
            let context = PendingContext {
                index,
                threads,
                max_outbound: max_outbound_bytes,
                inbox: inbox.clone(),
                mailbox: mailbox.clone(),
                signal,
                acceptors: acceptors.take().unwrap_or_default(),
            };
            let thread = std::thread::Builder::new()
                .name(format!("chatd-io-{index}"))
                .spawn(move || run_thread(context, &ready))?;
            let driver = report
                .recv()
                .map_err(|_| io::Error::other("an I/O thread died while starting"))??;
            if index == 0
                && let Ok(mut recorded) = self.driver.lock()
            {
                *recorded = Some(driver);
            }
            started.push(IoThread { mailbox, thread });
        }
        Ok(started)
    }
}

/// A thread's context before its runtime exists.
struct PendingContext {
    index: usize,
    threads: usize,
    max_outbound: usize,
    inbox: Arc<Inbox>,
    mailbox: Arc<Mailbox>,
    signal: Arc<Signal>,
    acceptors: Vec<Acceptor>,
}

fn run_thread(pending: PendingContext, ready: &mpsc::Sender<io::Result<String>>) {
    let runtime = match build_runtime() {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = ready.send(Err(error));
            return;
        }
    };
    let _ = ready.send(Ok(describe(runtime.driver_type())));
    let context = ThreadContext {
        index: pending.index,
        threads: pending.threads,
        max_outbound: pending.max_outbound,
        inbox: pending.inbox,
        mailbox: pending.mailbox,
        signal: pending.signal,
        acceptors: pending.acceptors,
    };
    runtime.block_on(io_thread::run(context));
}

fn build_runtime() -> io::Result<Runtime> {
    RuntimeBuilder::new().build()
}

/// The name the start-up line shows for the driver in use.
fn describe(driver: DriverType) -> String {
    let reads = io_thread::READS;
    match driver {
        DriverType::IoUring => format!("io_uring, {reads}"),
        DriverType::IOCP => format!("IOCP, {reads}"),
        DriverType::Poll => format!("polling fallback, {reads}"),
    }
}
