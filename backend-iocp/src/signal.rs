//! Waking a compio task from another thread.
//!
//! The core's thread delivers commands to an I/O thread's mailbox and then
//! calls the mailbox's waker: [`Signal::raise`] sets a flag and wakes the
//! task waiting in [`Signal::wait`], which runs on the I/O thread's runtime.

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;

use atomic_waker::AtomicWaker;

/// A flag with a waker: raised from any thread, awaited on one.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    raised: AtomicBool,
    waker: AtomicWaker,
}

impl Signal {
    /// Raises the flag and wakes the waiting task (from any thread).
    pub(crate) fn raise(&self) {
        self.raised.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Waits until the flag is raised, then lowers it.
    pub(crate) async fn wait(&self) {
        poll_fn(|cx| {
            if self.raised.swap(false, Ordering::AcqRel) {
                return Poll::Ready(());
            }
            self.waker.register(cx.waker());
            // Raised between the check and the registration: do not sleep.
            if self.raised.swap(false, Ordering::AcqRel) {
                return Poll::Ready(());
            }
            Poll::Pending
        })
        .await;
    }
}
