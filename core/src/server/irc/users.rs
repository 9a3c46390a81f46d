//! IRC user commands: WHO, WHOIS, WHOWAS, ISON, USERHOST, AWAY, KILL,
//! WALLOPS.

use bytes::Bytes;

use crate::error::ErrorCode;
use crate::ids::{ConnId, Nick, RoomName};
use crate::io::Priority;
use crate::irc::caps::Cap;
use crate::irc::numeric as n;
use crate::irc::render::{self as irc_render, channel};
use crate::reply::{Reply, host_text};
use crate::text;

use crate::server::Server;

impl Server {
    pub(super) fn irc_who(&mut self, conn: ConnId, params: &[&str]) {
        let mask = params.first().copied().unwrap_or("*");
        let operators_only = params.get(1).is_some_and(|flags| flags.contains('o'));
        let server = self.config.irc.server_name.clone();
        let multi = self.has_cap(conn, Cap::MultiPrefix);
        let mut lines = Vec::new();
        // Members of the room on other nodes of a cluster.
        let mut remote: Vec<Vec<String>> = Vec::new();
        if let Some(room) = mask
            .strip_prefix('#')
            .and_then(|b| RoomName::parse(b).ok())
            .filter(|room| self.may_see(conn, room))
            && let Some(r) = self.rooms.get(&room)
        {
            for entry in crate::server::presence::who_entries(&self.sessions, r) {
                let Some(target) = self.user_named(entry.person.nick) else {
                    continue;
                };
                lines.push((target, Some(room.clone())));
            }
            if !operators_only {
                remote = self.remote_who_lines(&room, &server);
            }
        } else if matches!(mask, "*" | "0") {
            // Everyone visible: those who share a room with the asker,
            // bounded like any listing.
            let limit = self.config.limits.list_page;
            let mut seen = std::collections::BTreeSet::new();
            let rooms = self
                .sessions
                .get(&conn)
                .map(|s| s.rooms.to_vec())
                .unwrap_or_default();
            for name in rooms {
                if let Some(room) = self.rooms.get(&name) {
                    seen.extend(room.members());
                }
            }
            lines.extend(seen.into_iter().take(limit).map(|target| (target, None)));
        } else if let Ok(nick) = Nick::parse(mask)
            && let Some(target) = self.user_named(&nick)
        {
            lines.push((target, None));
        }
        let most = super::channels::listing_cap(self.config.max_outbound_bytes);
        let mut lines: Vec<Vec<String>> = lines
            .into_iter()
            .take(most)
            .filter(|(target, _)| !operators_only || self.sessions[target].is_operator())
            .map(|(target, room)| self.who_line(conn, target, room.as_ref(), &server, multi))
            .collect();
        if !remote.is_empty() {
            lines.extend(remote);
            // One listing in nickname order, wherever each member is.
            lines.sort_by_cached_key(|params| params[4].to_ascii_lowercase());
            lines.truncate(most);
        }
        for params in lines {
            let refs: Vec<&str> = params.iter().map(String::as_str).collect();
            self.numeric(conn, n::RPL_WHOREPLY, &refs);
        }
        self.numeric(conn, n::RPL_ENDOFWHO, &[mask, "End of WHO list"]);
    }

    /// The parameters of one `352` line after the recipient's nickname.
    pub(super) fn who_line(
        &self,
        asker: ConnId,
        target: ConnId,
        room: Option<&RoomName>,
        server: &str,
        multi_prefix: bool,
    ) -> Vec<String> {
        let session = &self.sessions[&target];
        let (user, host) = (session.user(), host_text(session.peer));
        let mut flags = String::from(if session.away().is_some() { "G" } else { "H" });
        if session.is_operator() {
            flags.push('*');
        }
        // Without a channel asked for, the first the asker may see.
        let room_name =
            room.or_else(|| session.rooms.iter().find(|name| self.may_see(asker, name)));
        if let Some(name) = room_name
            && let Some(r) = self.rooms.get(name)
        {
            let voice = r.member(target).is_some_and(|m| m.voice);
            if r.is_moderator(target) {
                flags.push('@');
            }
            if voice && (multi_prefix || !r.is_moderator(target)) {
                flags.push('+');
            }
        }
        let chan = room_name.map_or_else(|| "*".to_owned(), channel);
        vec![
            chan,
            user.to_owned(),
            host.to_owned(),
            server.to_owned(),
            session.nick.to_string(),
            flags,
            format!("0 {}", realname(session)),
        ]
    }

    pub(super) fn irc_whois(&mut self, conn: ConnId, params: &[&str]) {
        // `WHOIS server nick` names the server first; there is one.
        let Some(target) = params.last() else {
            return self.numeric(conn, n::ERR_NONICKNAMEGIVEN, &["No nickname given"]);
        };
        let Some(found) = Nick::parse(target)
            .ok()
            .and_then(|nick| self.user_named(&nick))
        else {
            self.irc_error(
                conn,
                ErrorCode::NoSuchNick,
                Some(target),
                "No such nick/channel",
            );
            return self.numeric(conn, n::RPL_ENDOFWHOIS, &[target, "End of /WHOIS list"]);
        };
        let server = self.config.irc.server_name.clone();
        let session = &self.sessions[&found];
        let nick = session.nick.to_string();
        let (user, host) = (session.user().to_owned(), host_text(session.peer));
        let real = realname(session);
        let away = session.away().map(str::to_owned);
        let operator = session.is_operator();
        let account = session.account().map(|account| account.to_string());
        let channels: Vec<String> = session
            .rooms
            .iter()
            .filter(|room| self.may_see(conn, room))
            .map(|room| {
                let moderator = self.rooms.get(room).is_some_and(|r| r.is_moderator(found));
                format!("{}{}", if moderator { "@" } else { "" }, channel(room))
            })
            .collect();
        self.numeric(conn, n::RPL_WHOISUSER, &[&nick, &user, &host, "*", &real]);
        if !channels.is_empty() {
            self.numeric(conn, n::RPL_WHOISCHANNELS, &[&nick, &channels.join(" ")]);
        }
        self.numeric(conn, n::RPL_WHOISSERVER, &[&nick, &server, "chatd"]);
        if let Some(away) = away {
            self.numeric(conn, n::RPL_AWAY, &[&nick, &away]);
        }
        if operator {
            self.numeric(conn, n::RPL_WHOISOPERATOR, &[&nick, "is an IRC operator"]);
        }
        if let Some(account) = account {
            self.numeric(
                conn,
                n::RPL_WHOISACCOUNT,
                &[&nick, &account, "is logged in as"],
            );
        }
        self.numeric(conn, n::RPL_ENDOFWHOIS, &[&nick, "End of /WHOIS list"]);
    }

    pub(super) fn irc_whowas(&mut self, conn: ConnId, params: &[&str]) {
        let Some(target) = params.first() else {
            return self.numeric(conn, n::ERR_NONICKNAMEGIVEN, &["No nickname given"]);
        };
        let server = self.config.irc.server_name.clone();
        let found: Vec<(String, String, String, String)> = Nick::parse(target)
            .ok()
            .map(|nick| {
                self.departed
                    .iter()
                    .rev()
                    .filter(|gone| gone.nick.folded() == nick.folded())
                    .map(|gone| {
                        (
                            gone.nick.to_string(),
                            gone.user.to_string(),
                            host_text(gone.host),
                            gone.realname.to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        if found.is_empty() {
            self.numeric(
                conn,
                n::ERR_WASNOSUCHNICK,
                &[target, "There was no such nickname"],
            );
        }
        for (nick, user, host, real) in found {
            self.numeric(conn, n::RPL_WHOWASUSER, &[&nick, &user, &host, "*", &real]);
            self.numeric(conn, n::RPL_WHOISSERVER, &[&nick, &server, "chatd"]);
        }
        self.numeric(conn, n::RPL_ENDOFWHOWAS, &[target, "End of WHOWAS"]);
    }

    pub(super) fn irc_ison(&mut self, conn: ConnId, params: &[&str]) {
        if params.is_empty() {
            return self.need_more_params(conn, "ISON");
        }
        let online: Vec<String> = params
            .iter()
            .flat_map(|p| p.split(' '))
            .filter_map(|word| Nick::parse(word).ok())
            .filter_map(|nick| self.user_named(&nick))
            .map(|found| self.sessions[&found].nick.to_string())
            .collect();
        self.numeric(conn, n::RPL_ISON, &[&online.join(" ")]);
    }

    pub(super) fn irc_userhost(&mut self, conn: ConnId, params: &[&str]) {
        if params.is_empty() {
            return self.need_more_params(conn, "USERHOST");
        }
        let replies: Vec<String> = params
            .iter()
            .take(5)
            .filter_map(|word| Nick::parse(word).ok())
            .filter_map(|nick| self.user_named(&nick))
            .map(|found| {
                let session = &self.sessions[&found];
                format!(
                    "{}{}={}{}",
                    session.nick,
                    if session.is_operator() { "*" } else { "" },
                    if session.away().is_some() { '-' } else { '+' },
                    format_args!("{}@{}", session.user(), host_text(session.peer))
                )
            })
            .collect();
        self.numeric(conn, n::RPL_USERHOST, &[&replies.join(" ")]);
    }

    pub(super) fn irc_away(&mut self, conn: ConnId, params: &[&str]) {
        let message = params
            .first()
            .filter(|m| !m.is_empty())
            .and_then(|m| text::trusted(m).ok())
            .map(|m| m.chars().take(390).collect::<String>());
        let Some(session) = self.sessions.get_mut(&conn) else {
            return;
        };
        if let Some(irc) = session.irc.as_mut() {
            irc.away = message.clone().map(Into::into);
        }
        match &message {
            Some(_) => self.numeric(
                conn,
                n::RPL_NOWAWAY,
                &["You have been marked as being away"],
            ),
            None => self.numeric(
                conn,
                n::RPL_UNAWAY,
                &["You are no longer marked as being away"],
            ),
        }
        // away-notify: peers that asked for it hear of the change.
        let peers = self.peers_except(conn);
        let Some(session) = self.sessions.get(&conn) else {
            return;
        };
        let params: Vec<&str> = message.as_deref().into_iter().collect();
        let line = Bytes::from(irc_render::person_line(session.person(), "AWAY", &params));
        for peer in peers {
            if self.has_cap(peer, Cap::AwayNotify) {
                self.out.send_bytes(peer, line.clone(), Priority::Normal);
            }
        }
    }

    pub(super) fn irc_kill(&mut self, conn: ConnId, params: &[&str]) {
        let [target, ..] = params else {
            return self.need_more_params(conn, "KILL");
        };
        if !self.sessions.get(&conn).is_some_and(|s| s.is_operator()) {
            return self.numeric(
                conn,
                n::ERR_NOPRIVILEGES,
                &["Permission Denied- You're not an IRC operator"],
            );
        }
        let Some(victim) = Nick::parse(target)
            .ok()
            .and_then(|nick| self.user_named(&nick))
        else {
            return self.irc_error(conn, ErrorCode::NoSuchNick, Some(target), "No such nick");
        };
        let reason = params
            .get(1)
            .and_then(|r| text::trusted(r).ok())
            .map(|r| r.into_owned());
        self.kill(conn, victim, reason.as_deref());
    }

    pub(super) fn irc_wallops(&mut self, conn: ConnId, params: &[&str]) {
        let Some(text) = params.first() else {
            return self.need_more_params(conn, "WALLOPS");
        };
        if !self.sessions.get(&conn).is_some_and(|s| s.is_operator()) {
            return self.numeric(
                conn,
                n::ERR_NOPRIVILEGES,
                &["Permission Denied- You're not an IRC operator"],
            );
        }
        let Some(text) = self.trusted(conn, text).map(|t| t.into_owned()) else {
            return;
        };
        let readers: Vec<ConnId> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.is_operator() || s.irc.as_ref().is_some_and(|irc| irc.wallops))
            .map(|(&id, _)| id)
            .collect();
        let Some(me) = self.sessions.get(&conn) else {
            return;
        };
        let reply = Reply::Wallops {
            from: me.person(),
            text: &text,
        };
        self.out
            .broadcast_to(readers, None, &reply, Priority::Normal);
    }
}

/// A client's real name (the native dialect has none: its nickname).
fn realname(session: &crate::server::session::Session) -> String {
    session
        .irc
        .as_ref()
        .and_then(|irc| irc.user.as_ref())
        .map_or_else(
            || session.nick.to_string(),
            |names| names.realname().to_owned(),
        )
}
