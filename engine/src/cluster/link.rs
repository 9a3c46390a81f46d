//! Connections to Redis: made lazily, with timeouts on connect and on every
//! answer (a cut link must show as an error, not a hang), dropped on the
//! first error so the next use connects afresh; and the reconnect backoff.

use std::time::Duration;

/// Longest wait to connect, and for any answer.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(2);

/// A connection made on first use, forgotten after an error.
pub(crate) struct Link {
    client: redis::Client,
    conn: Option<redis::Connection>,
}

impl Link {
    pub(crate) fn new(client: redis::Client) -> Self {
        Self { client, conn: None }
    }

    /// The connection, connecting first if there is none.
    pub(crate) fn get(&mut self) -> redis::RedisResult<&mut redis::Connection> {
        if self.conn.is_none() {
            self.conn = Some(connect(&self.client, TIMEOUT)?);
        }
        // Just set above if it was missing.
        Ok(self.conn.as_mut().expect("a connection"))
    }

    /// Forgets the connection (after an error: its state is unknown).
    pub(crate) fn reset(&mut self) {
        self.conn = None;
    }

    /// Runs `f` on the connection; an error forgets it.
    pub(crate) fn with<T>(
        &mut self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> redis::RedisResult<T> {
        let result = self.get().and_then(f);
        if result.is_err() {
            self.reset();
        }
        result
    }
}

/// A connection whose reads and writes time out after `timeout`.
pub(crate) fn connect(
    client: &redis::Client,
    timeout: Duration,
) -> redis::RedisResult<redis::Connection> {
    let conn = client.get_connection_with_timeout(TIMEOUT)?;
    conn.set_read_timeout(Some(timeout))?;
    conn.set_write_timeout(Some(TIMEOUT))?;
    Ok(conn)
}

/// Reconnect delays: 100 ms, doubling, at most 5 s.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);

    pub(crate) fn new() -> Self {
        Self { next: Self::FIRST }
    }

    /// The delay before the next attempt (and doubles the one after).
    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        delay
    }

    /// Connected: the next outage starts from the shortest delay again.
    pub(crate) fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_100ms_to_5s() {
        let mut backoff = Backoff::new();
        let delays: Vec<u64> = (0..8)
            .map(|_| backoff.next_delay().as_millis() as u64)
            .collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(100));
    }
}
