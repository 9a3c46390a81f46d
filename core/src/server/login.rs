//! `#oper`: asking the driver to verify a password, and taking its verdict.
//!
//! The policy lives here, the Argon2 work in the driver (see
//! [`crate::login`]). Every attempt that passes the throttle costs one
//! verification, whether the name exists or not, and both kinds of failure
//! get the same answer.

use std::time::Instant;

use crate::error::ErrorCode;
use crate::ids::{ConnId, Nick};
use crate::io::Output;
use crate::login::{
    CheckPurpose, LoginRequest, Password, PasswordCheck, PasswordVerdict, Pending, Purpose, Refusal,
};
use crate::reply::Reply;

use super::Server;
use super::session::Role;

/// The one answer to a wrong name or a wrong password.
const BAD_CREDENTIALS: &str = "wrong operator name or password";

impl Server {
    /// `#oper NAME PASSWORD`: refused at once while the address or name
    /// must wait, else handed to the driver as [`Output::VerifyPassword`].
    pub(super) fn oper(&mut self, now: Instant, conn: ConnId, name: &str, password: &str) {
        if self.refuse_plaintext(conn, "#oper") {
            return;
        }
        let Some(session) = self.sessions.get(&conn) else {
            return;
        };
        let peer = session.peer;
        let address = self.address_group(peer);
        // Operator names are valid nicknames (the config checks it); any
        // other text is a failure of the address alone, so the name table
        // only ever holds short keys.
        let key = Nick::parse(name).ok().map(|nick| nick.folded());
        let throttle = &self.logins.throttle;
        if let Err(refusal) = throttle.check(&self.config.operator_login, now, address, key) {
            let text = match refusal {
                Refusal::Wait(wait) => format!(
                    "too many failed operator logins; try again in {}",
                    crate::duration::format(wait)
                ),
                Refusal::Checking => {
                    "another operator login from your address or for that name is being checked; try again in a moment".to_owned()
                }
            };
            return self.out.error(conn, ErrorCode::TryLater, &text);
        }
        let account = self
            .config
            .operators
            .iter()
            .find(|account| account.name.eq_ignore_ascii_case(name));
        let hash = account.map_or_else(
            || self.logins.dummy_hash.clone(),
            |account| account.password_hash.clone(),
        );
        let request = self.logins.begin(Pending {
            conn,
            address,
            name: key,
            known: account.is_some(),
            purpose: Purpose::Oper,
        });
        self.out
            .push(Output::VerifyPassword(Box::new(PasswordCheck {
                request,
                conn,
                name: name.to_owned(),
                peer,
                purpose: CheckPurpose::Operator,
                hash,
                password: Password::new(password),
            })));
    }

    /// The driver's verdict on an [`Output::VerifyPassword`]. The attempt
    /// counts against its address and name even if its connection has
    /// gone meanwhile; a gone connection is told nothing.
    pub fn handle_password_verdict(
        &mut self,
        now: Instant,
        request: LoginRequest,
        verdict: PasswordVerdict,
    ) {
        let pending = self.logins.take(request);
        debug_assert!(
            pending.is_some(),
            "a verdict for {request}, never asked for"
        );
        let Some(pending) = pending else {
            return;
        };
        let matched = match verdict {
            PasswordVerdict::Busy => None,
            PasswordVerdict::Match => Some(pending.known),
            PasswordVerdict::Mismatch => Some(false),
        };
        let config = &self.config.operator_login;
        self.logins
            .throttle
            .finish(config, now, pending.address, pending.name, matched);
        let conn = pending.conn;
        if !self.sessions.contains_key(&conn) {
            return;
        }
        if !matches!(pending.purpose, Purpose::Oper) {
            return self.account_verdict(now, conn, pending.name, pending.purpose, matched);
        }
        let Some(session) = self.sessions.get_mut(&conn) else {
            return;
        };
        match matched {
            Some(true) => {
                session.role = Role::Operator;
                self.out.send(conn, &Reply::OperUp);
            }
            Some(false) => self
                .out
                .error(conn, ErrorCode::BadCredentials, BAD_CREDENTIALS),
            None => self.out.error(
                conn,
                ErrorCode::TryLater,
                "operator logins are busy; try again in a moment",
            ),
        }
    }
}
