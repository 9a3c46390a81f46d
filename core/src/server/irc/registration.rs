//! IRC registration: PASS, NICK, USER, CAP negotiation and the welcome
//! burst (001-005, LUSERS, MOTD).

use std::time::Instant;

use crate::error::ErrorCode;
use crate::ids::{ConnId, Nick};
use crate::io::CloseReason;
use crate::irc::caps::{self, Cap};
use crate::irc::numeric as n;
use crate::irc::render::{self as irc_render};
use crate::render::{IrcTags, Style};

use super::{CHATHISTORY_LIMIT, MAX_TARGETS, VERSION};
use crate::server::session::UserNames;
use crate::server::{Farewell, Server};

impl Server {
    pub(super) fn irc_pass(&mut self, conn: ConnId, params: &[&str]) {
        let Some(session) = self.sessions.get_mut(&conn) else {
            return;
        };
        if session.is_registered() {
            return self.numeric(conn, n::ERR_ALREADYREGISTERED, &["You may not reregister"]);
        }
        let Some(given) = params.first() else {
            return self.need_more_params(conn, "PASS");
        };
        let expected = self.config.irc.password.as_deref();
        let matched = expected.is_none_or(|expected| constant_time_eq(expected, given));
        if let Some(irc) = session.irc.as_mut() {
            irc.pass_ok = matched;
        }
    }

    pub(super) fn irc_nick(&mut self, now: Instant, conn: ConnId, params: &[&str]) {
        let Some(wanted) = params.first().filter(|p| !p.is_empty()) else {
            return self.numeric(conn, n::ERR_NONICKNAMEGIVEN, &["No nickname given"]);
        };
        let nick = match Nick::parse_chosen(wanted) {
            Ok(nick) => nick,
            Err(error) => {
                let text = format!("Erroneous nickname: {error}");
                return self.irc_error(conn, ErrorCode::BadNick, Some(wanted), &text);
            }
        };
        let before = self.sessions.get(&conn).map(|s| s.nick);
        self.change_nick_protected(now, conn, nick);
        let Some(session) = self.sessions.get_mut(&conn) else {
            return;
        };
        if session.nick != nick || before.is_none() {
            return;
        }
        if let Some(irc) = session.irc.as_mut()
            && !irc.registered
        {
            irc.nick_given = true;
            self.complete_registration(conn);
        }
    }

    /// A nickname granted by the cluster's claim after the client's NICK
    /// (cluster.rs): what `irc_nick` would have done had it been at once.
    pub(in crate::server) fn irc_nick_granted(&mut self, conn: ConnId) {
        let Some(irc) = self.sessions.get_mut(&conn).and_then(|s| s.irc.as_mut()) else {
            return;
        };
        if !irc.registered {
            irc.nick_given = true;
            self.complete_registration(conn);
        }
    }

    pub(super) fn irc_user(&mut self, conn: ConnId, params: &[&str]) {
        let Some(session) = self.sessions.get_mut(&conn) else {
            return;
        };
        if session.is_registered() {
            return self.numeric(conn, n::ERR_ALREADYREGISTERED, &["You may not reregister"]);
        }
        let [user, _, _, realname, ..] = params else {
            return self.need_more_params(conn, "USER");
        };
        // Without identd every user name is "~" and what the client
        // said, kept to what a host mask can safely hold.
        let clean: String = user
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            .take(9)
            .collect();
        let clean = if clean.is_empty() {
            "user".to_owned()
        } else {
            clean
        };
        let realname: String = realname.chars().take(100).collect();
        let user = format!("~{clean}");
        if let Some(irc) = session.irc.as_mut() {
            irc.user = Some(UserNames::new(&user, &realname));
        }
        self.complete_registration(conn);
    }

    pub(super) fn irc_cap(&mut self, conn: ConnId, params: &[&str]) {
        let me = self.me(conn);
        let Some(sub) = params.first().map(|s| s.to_ascii_uppercase()) else {
            return self.need_more_params(conn, "CAP");
        };
        let Some(irc) = self.sessions.get_mut(&conn).and_then(|s| s.irc.as_mut()) else {
            return;
        };
        let scene = self.out.scene.clone();
        match sub.as_str() {
            "LS" => {
                if !irc.registered {
                    irc.negotiating = true;
                }
                let v302 = params
                    .get(1)
                    .and_then(|v| v.parse::<u32>().ok())
                    .is_some_and(|v| v >= 302);
                let listing = caps::listing(v302, CHATHISTORY_LIMIT).join(" ");
                let line = irc_render::server_line(&scene, "CAP", &[&me, "LS", &listing]);
                self.send_text(conn, line);
            }
            "LIST" => {
                let enabled: Vec<&str> = irc.caps.iter().map(Cap::name).collect();
                let line =
                    irc_render::server_line(&scene, "CAP", &[&me, "LIST", &enabled.join(" ")]);
                self.send_text(conn, line);
            }
            "REQ" => {
                if !irc.registered {
                    irc.negotiating = true;
                }
                let asked = params.get(1).copied().unwrap_or("");
                let changes: Option<Vec<(Cap, bool)>> = asked
                    .split(' ')
                    .filter(|word| !word.is_empty())
                    .map(|word| match word.strip_prefix('-') {
                        Some(name) => Cap::named(name).map(|cap| (cap, false)),
                        None => Cap::named(word).map(|cap| (cap, true)),
                    })
                    .collect();
                let verdict = match changes {
                    Some(changes) if !changes.is_empty() => {
                        for (cap, on) in changes {
                            irc.caps.set(cap, on);
                        }
                        "ACK"
                    }
                    _ => "NAK",
                };
                let line = irc_render::server_line(&scene, "CAP", &[&me, verdict, asked]);
                self.send_text(conn, line);
                if verdict == "ACK" {
                    self.restyle(conn);
                }
            }
            "END" => {
                irc.negotiating = false;
                self.complete_registration(conn);
            }
            _ => {
                let line = irc_render::numeric(
                    &scene,
                    &me,
                    n::ERR_INVALIDCAPCMD,
                    &[&sub, "Invalid CAP command"],
                );
                self.send_text(conn, line);
            }
        }
    }

    /// After capabilities changed: the connection's style (tags) follows,
    /// in its viewer and in every room it is in.
    pub(super) fn restyle(&mut self, conn: ConnId) {
        let Some(session) = self.sessions.get(&conn) else {
            return;
        };
        let Some(irc) = session.irc.as_ref() else {
            return;
        };
        let caps = irc.caps;
        let style = Style::Irc(IrcTags {
            time: caps.has(Cap::ServerTime),
            msgid: caps.has(Cap::MessageTags),
            account: caps.has(Cap::AccountTag),
        });
        for name in &session.rooms {
            if let Some(room) = self.rooms.get_mut(name) {
                room.restyle(conn, style);
            }
        }
        if let Some(viewer) = self.out.viewer_mut(conn) {
            viewer.style = style;
            viewer.caps = caps;
        }
    }

    /// Completes registration once NICK and USER are in and capability
    /// negotiation is over: checks PASS, then sends 001-005, LUSERS and
    /// the MOTD.
    pub(super) fn complete_registration(&mut self, conn: ConnId) {
        let Some(session) = self.sessions.get_mut(&conn) else {
            return;
        };
        let Some(irc) = session.irc.as_mut() else {
            return;
        };
        if irc.registered || irc.negotiating || !irc.nick_given || irc.user.is_none() {
            return;
        }
        if !irc.pass_ok {
            self.out
                .error_about(conn, ErrorCode::BadCredentials, None, "Password incorrect");
            let line = "ERROR :Closing Link: password required\r\n".to_owned();
            self.send_text(conn, line);
            self.remove_session(conn, Farewell::Silent);
            self.out.close(conn, CloseReason::Quit);
            return;
        }
        irc.registered = true;
        let mask = session.person().mask();
        if let Some(viewer) = self.out.viewer_mut(conn) {
            viewer.registering = false;
        }
        let network = self.config.irc.network.clone();
        let server = self.config.irc.server_name.clone();
        let welcome = format!("Welcome to the {network} IRC network, {mask}");
        self.numeric(conn, n::RPL_WELCOME, &[&welcome]);
        let host = format!("Your host is {server}, running version {VERSION}");
        self.numeric(conn, n::RPL_YOURHOST, &[&host]);
        let created = format!(
            "This server was created {} UTC",
            crate::wall_clock::format_utc(self.wall.anchor_unix_ms())
        );
        self.numeric(conn, n::RPL_CREATED, &[&created]);
        self.numeric(
            conn,
            n::RPL_MYINFO,
            &[&server, VERSION, "iow", "biklmnost", "bklov"],
        );
        self.isupport(conn);
        self.lusers(conn);
        self.motd(conn);
    }

    /// `005`: what this server supports, thirteen tokens a line.
    pub(super) fn isupport(&mut self, conn: ConnId) {
        let limits = &self.config.limits;
        let tokens = [
            "AWAYLEN=390".to_owned(),
            "CASEMAPPING=ascii".to_owned(),
            format!("CHANLIMIT=#:{}", limits.rooms_joined),
            "CHANMODES=b,k,l,imnst".to_owned(),
            format!("CHANNELLEN={}", 1 + crate::ids::RoomName::MAX_LEN),
            "CHANTYPES=#".to_owned(),
            format!("CHATHISTORY={CHATHISTORY_LIMIT}"),
            "HOSTLEN=64".to_owned(),
            "KICKLEN=390".to_owned(),
            format!("MAXLIST=b:{}", limits.bans_per_room),
            format!("MAXTARGETS={MAX_TARGETS}"),
            "MODES=4".to_owned(),
            "MSGREFTYPES=msgid,timestamp".to_owned(),
            format!("NETWORK={}", self.config.irc.network),
            format!("NICKLEN={}", Nick::MAX_LEN),
            "PREFIX=(ov)@+".to_owned(),
            format!(
                "TARGMAX=JOIN:{MAX_TARGETS},KICK:{MAX_TARGETS},NAMES:1,PART:{MAX_TARGETS},PRIVMSG:{MAX_TARGETS},NOTICE:{MAX_TARGETS},WHOIS:1"
            ),
            "TOPICLEN=390".to_owned(),
            "USERLEN=10".to_owned(),
        ];
        for chunk in tokens.chunks(13) {
            let mut params: Vec<&str> = chunk.iter().map(String::as_str).collect();
            params.push("are supported by this server");
            self.numeric(conn, n::RPL_ISUPPORT, &params);
        }
    }

    pub(super) fn lusers(&mut self, conn: ConnId) {
        let users = self.sessions.len();
        let operators = self.sessions.values().filter(|s| s.is_operator()).count();
        let rooms = self.rooms.len();
        let line = format!("There are {users} users and 0 invisible on 1 servers");
        self.numeric(conn, n::RPL_LUSERCLIENT, &[&line]);
        if operators > 0 {
            self.numeric(
                conn,
                n::RPL_LUSEROP,
                &[&operators.to_string(), "operator(s) online"],
            );
        }
        self.numeric(
            conn,
            n::RPL_LUSERCHANNELS,
            &[&rooms.to_string(), "channels formed"],
        );
        let line = format!("I have {users} clients and 0 servers");
        self.numeric(conn, n::RPL_LUSERME, &[&line]);
    }

    pub(super) fn motd(&mut self, conn: ConnId) {
        let Some(motd) = self.config.irc.motd.clone() else {
            return self.numeric(conn, n::ERR_NOMOTD, &["MOTD File is missing"]);
        };
        let server = self.config.irc.server_name.clone();
        self.numeric(
            conn,
            n::RPL_MOTDSTART,
            &[&format!("- {server} Message of the day - ")],
        );
        for line in motd.lines() {
            self.numeric(conn, n::RPL_MOTD, &[&format!("- {line}")]);
        }
        self.numeric(conn, n::RPL_ENDOFMOTD, &["End of /MOTD command."]);
    }
}

/// Compares without stopping at the first difference, so the time taken
/// says nothing about how much of a password was right.
fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}
