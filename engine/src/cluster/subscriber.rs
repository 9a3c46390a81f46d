//! The subscriber thread: reads this node's channel and hands what arrives
//! to the core, lines in their rooms' order.
//!
//! It serves one session at a time: the command thread starts a session
//! (a new number) and waits until this thread has subscribed; when the
//! session fails (here or there) this thread drops its connection and
//! waits for the next one.

use std::time::{Duration, Instant};

use chatd_core::cluster::{ChannelMessage, Envelope, keys};

use super::link::{Link, TIMEOUT, connect};
use super::{Shared, Stop};

/// How long one read waits: how soon a stop or a new session is seen.
const READ_WAIT: Duration = Duration::from_millis(250);
/// After this long without a message, the channel's connection is asked
/// for a PING: a link cut without a reset would otherwise go unnoticed.
const PING_EVERY: Duration = Duration::from_secs(2);

pub(crate) fn run(shared: &Shared) {
    let mut served = 0;
    // For the reads a gap needs: the pub/sub connection cannot run them.
    let mut reader = Link::new(shared.client.clone());
    loop {
        let session = {
            let mut state = shared.state();
            loop {
                if state.stop != Stop::No {
                    return;
                }
                if state.session_live && state.session != served {
                    break state.session;
                }
                state = shared
                    .wake
                    .wait_timeout(state, READ_WAIT)
                    .map_or_else(|poisoned| poisoned.into_inner().0, |(state, _)| state);
            }
        };
        served = session;
        if let Err(error) = serve(shared, session, &mut reader) {
            tracing::debug!(%error, "cluster: the pub/sub connection failed");
            reader.reset();
            let mut state = shared.state();
            if state.session == session {
                state.broken = session;
            }
            drop(state);
            shared.wake.notify_all();
        }
    }
}

/// Subscribes, says so, then reads until the session ends or fails.
fn serve(shared: &Shared, session: u64, reader: &mut Link) -> redis::RedisResult<()> {
    let mut conn = connect(&shared.client, TIMEOUT)?;
    let mut pubsub = conn.as_pubsub();
    pubsub.subscribe(keys::channel(&shared.node))?;
    pubsub.set_read_timeout(Some(READ_WAIT))?;
    {
        let mut state = shared.state();
        state.subscribed = session;
    }
    shared.wake.notify_all();
    let mut quiet_since = Instant::now();
    loop {
        {
            let state = shared.state();
            if state.stop != Stop::No || !state.session_live || state.session != session {
                return Ok(());
            }
        }
        let message = match pubsub.get_message() {
            Ok(message) => message,
            Err(error) if error.is_timeout() => {
                // A quiet channel and a cut link look alike: ask.
                if quiet_since.elapsed() >= PING_EVERY {
                    pubsub.ping::<redis::Value>()?;
                    quiet_since = Instant::now();
                }
                continue;
            }
            Err(error) => return Err(error),
        };
        quiet_since = Instant::now();
        let message = match ChannelMessage::decode(message.get_payload_bytes()) {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(%error, "cluster: dropped a message that does not decode");
                continue;
            }
        };
        // A failed gap read stays open: the new session's catch-up reads
        // it from the stream.
        match message {
            ChannelMessage::Batch(batch) => {
                let mut rooms = shared.rooms();
                for (id, prev, line) in batch.chained() {
                    rooms.arrived(reader, id, prev, line, &shared.sink)?;
                }
            }
            ChannelMessage::Envelope(Envelope::Line { id, prev, line }) => {
                shared
                    .rooms()
                    .arrived(reader, id, prev, line, &shared.sink)?;
            }
            ChannelMessage::Envelope(other) => shared.deliver(other.into_event()),
        }
    }
}
