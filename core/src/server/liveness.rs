//! Idle checks: ping silent clients, drop those that stay silent.

use std::time::Instant;

use crate::error::ErrorCode;
use crate::ids::ConnId;
use crate::io::CloseReason;
use crate::reply::Reply;
use crate::timers::Timer;

use super::session::Liveness;
use super::{Farewell, Server};

impl Server {
    /// An idle timer fired for `conn`. Any line from the client since the
    /// last check counts as an answer; the timer is re-armed from the last
    /// activity instead of on every line.
    pub(super) fn check_idle(&mut self, now: Instant, conn: ConnId) {
        let idle = self.config.idle.clone();
        let Some(session) = self.sessions.get_mut(&conn) else {
            return;
        };
        if !session.is_registered() {
            // An IRC client has until its first idle check to register;
            // answering pings is not enough to hold a nickname forever.
            let allowed = if idle.enabled {
                idle.ping_after
            } else {
                super::REGISTRATION_TIMEOUT
            };
            let text = format!(
                "registration did not complete within {}; disconnecting",
                crate::duration::format(allowed)
            );
            self.out.error(conn, ErrorCode::IdleTimeout, &text);
            self.remove_session(conn, Farewell::Silent);
            self.out.close(conn, CloseReason::IdleTimeout);
            return;
        }
        if !idle.enabled {
            // Only the registration deadline was armed.
            session.idle_at = None;
            return;
        }
        match session.liveness {
            Liveness::Active => {
                let due = session.last_active + idle.ping_after;
                if due > now {
                    return self.arm_idle(conn, due);
                }
                session.liveness = Liveness::Pinged(now);
                self.arm_idle(conn, now + idle.timeout);
                self.out.send(
                    conn,
                    &Reply::IdlePing {
                        timeout: idle.timeout,
                    },
                );
            }
            Liveness::Pinged(at) => {
                let deadline = at + idle.timeout;
                if deadline > now {
                    return self.arm_idle(conn, deadline);
                }
                let text = format!(
                    "no answer to the idle check within {}; disconnecting",
                    crate::duration::format(idle.timeout)
                );
                self.out.error(conn, ErrorCode::IdleTimeout, &text);
                self.remove_session(conn, Farewell::Quit(Some("idle timeout")));
                self.out.close(conn, CloseReason::IdleTimeout);
            }
        }
    }

    /// Arms `conn`'s idle timer for `at`, remembering when, so that the
    /// timer can be cancelled when the connection goes.
    pub(super) fn arm_idle(&mut self, conn: ConnId, at: Instant) {
        if let Some(session) = self.sessions.get_mut(&conn) {
            session.idle_at = Some(at);
            self.timers.schedule(at, Timer::Idle(conn));
        }
    }
}
