//! IRC SASL PLAIN (IRCv3 sasl-3.1) against the server's accounts, and
//! `account-notify`.
//!
//! `AUTHENTICATE PLAIN`, then the base64 of `authzid NUL authcid NUL
//! password` (in 400-byte pieces, a shorter one ending it): the
//! password is checked as `#login` checks it (same throttle, same dummy
//! hash), with numerics 900/903 on success and 904 on any failure.

use std::time::Instant;

use base64ct::{Base64, Encoding};
use bytes::Bytes;

use crate::ids::{ConnId, Nick};
use crate::io::Priority;
use crate::irc::caps::Cap;
use crate::irc::render::{self as irc_render};
use crate::reply::{Reply, SaslStep};
use crate::server::Server;

/// One AUTHENTICATE piece: a piece this long says more follow.
const PIECE: usize = 400;

/// The most base64 an exchange may send (credentials of up to about
/// 600 bytes: a nickname, 256 characters of password and the framing).
const MAX_CREDENTIALS: usize = 3 * PIECE;

impl Server {
    /// `AUTHENTICATE mechanism` or `AUTHENTICATE data`.
    pub(super) fn irc_authenticate(&mut self, now: Instant, conn: ConnId, params: &[&str]) {
        let Some(&word) = params.first() else {
            return self.need_more_params(conn, "AUTHENTICATE");
        };
        let Some(session) = self.sessions.get_mut(&conn) else {
            return;
        };
        if session.account().is_some() {
            return self.out.send(conn, &Reply::Sasl(SaslStep::Already));
        }
        let Some(irc) = session.irc.as_mut() else {
            return;
        };
        if word == "*" {
            if irc.sasl.take().is_some() {
                return self.out.send(conn, &Reply::Sasl(SaslStep::Aborted));
            }
            return self.out.send(conn, &Reply::Sasl(SaslStep::Failed));
        }
        let Some(buffer) = irc.sasl.as_mut() else {
            // The first line names the mechanism.
            if !word.eq_ignore_ascii_case("PLAIN") {
                self.out.send(conn, &Reply::Sasl(SaslStep::Mechanisms));
                return self.out.send(conn, &Reply::Sasl(SaslStep::Failed));
            }
            if self.refuse_plaintext(conn, "SASL") {
                return self.out.send(conn, &Reply::Sasl(SaslStep::Failed));
            }
            if let Some(irc) = self.sessions.get_mut(&conn).and_then(|s| s.irc.as_mut()) {
                irc.sasl = Some(Box::default());
            }
            return self.out.send(conn, &Reply::Sasl(SaslStep::Continue));
        };
        if word != "+" {
            buffer.push_str(word);
        }
        if buffer.len() > MAX_CREDENTIALS {
            irc.sasl = None;
            return self.out.send(conn, &Reply::Sasl(SaslStep::TooLong));
        }
        if word.len() == PIECE {
            return;
        }
        let Some(data) = irc.sasl.take() else {
            return;
        };
        match plain_credentials(&data) {
            Some((name, password)) => self.login(now, conn, name, password.expose(), true),
            None => self.out.send(conn, &Reply::Sasl(SaslStep::Failed)),
        }
    }

    /// A SASL attempt failed (904).
    pub(in crate::server) fn sasl_failed(&mut self, conn: ConnId) {
        self.out.send(conn, &Reply::Sasl(SaslStep::Failed));
    }

    /// A SASL attempt succeeded (903; the 900 went before it).
    pub(in crate::server) fn sasl_succeeded(&mut self, conn: ConnId) {
        self.out.send(conn, &Reply::Sasl(SaslStep::Succeeded));
    }

    /// SASL while logged in already (907).
    pub(in crate::server) fn sasl_already(&mut self, conn: ConnId) {
        self.out.send(conn, &Reply::Sasl(SaslStep::Already));
    }

    /// `account-notify`: peers that asked for it hear `ACCOUNT NAME` (or
    /// `ACCOUNT *`) when `conn` logs in or out.
    pub(in crate::server) fn announce_account(&mut self, conn: ConnId, account: Option<Nick>) {
        let peers = self.peers_except(conn);
        let Some(session) = self.sessions.get(&conn) else {
            return;
        };
        let name = account.map_or_else(|| "*".to_owned(), |account| account.to_string());
        let line = Bytes::from(irc_render::person_line(
            session.person(),
            "ACCOUNT",
            &[&name],
        ));
        for peer in peers {
            if self.has_cap(peer, Cap::AccountNotify) {
                self.out.send_bytes(peer, line.clone(), Priority::Normal);
            }
        }
    }
}

/// `authzid NUL authcid NUL password`, base64: the account (authcid; an
/// authzid, if given, must name the same account) and the password.
fn plain_credentials(data: &str) -> Option<(Nick, crate::login::Password)> {
    // Wiped when dropped, on every path: it holds the password.
    let mut buffer = zeroize::Zeroizing::new([0u8; MAX_CREDENTIALS]);
    let decoded = Base64::decode(data, &mut buffer[..]).ok()?;
    let text = std::str::from_utf8(decoded).ok()?;
    let mut parts = text.split('\0');
    let (authzid, authcid, password) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || password.is_empty() {
        return None;
    }
    let name = Nick::parse(authcid).ok()?;
    if !authzid.is_empty() && !authzid.eq_ignore_ascii_case(authcid) {
        return None;
    }
    Some((name, crate::login::Password::new(password)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_credentials_take_the_authcid_and_password() {
        let (name, password) = plain_credentials("AGFsaWNlAGh1bnRlcjIy").unwrap();
        assert_eq!(name.as_str(), "alice");
        assert_eq!(password.expose(), "hunter22");
        assert!(plain_credentials("Ym9iAGFsaWNlAGh1bnRlcjIy").is_none());
        assert!(plain_credentials("not base64!").is_none());
    }
}
