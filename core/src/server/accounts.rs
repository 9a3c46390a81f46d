//! Accounts: `#register`, `#login`, `#logout`, `#password`,
//! `#unregister`, `#whois`, operator accounts, and the protection of
//! registered nicknames.
//!
//! Slow and durable work is the driver's (see [`crate::accounts`]):
//! passwords are verified through [`Output::VerifyPassword`] (with the
//! `#oper` throttle: per address and per name, a doubling delay), hashed
//! through [`Output::HashPassword`], and every change is made durable
//! through [`Output::StoreAccount`] before it is applied in memory and the
//! client told. A failure at either step leaves the accounts as they were.

use std::time::Instant;

use crate::accounts::{Account, AccountChange, AccountWrite, Done, HashRequest, Job};
use crate::error::ErrorCode;
use crate::ids::{ConnId, Nick, RoomName};
use crate::io::{Output, Priority};
use crate::login::{
    CheckPurpose, LoginRequest, Password, PasswordCheck, Pending, Purpose, Refusal,
};
use crate::reply::Reply;
use crate::timers::Timer;

use super::Server;
use super::session::Role;

/// The one answer to a wrong account name or a wrong password.
const BAD_LOGIN: &str = "wrong account name or password";

impl Server {
    /// Loads the accounts the driver's store holds (call before accepting
    /// connections; replaces any loaded before).
    pub fn load_accounts(&mut self, accounts: Vec<Account>) {
        self.accounts.load(accounts);
    }

    /// How many accounts are registered.
    pub fn account_count(&self) -> usize {
        self.accounts.len()
    }

    /// Refuses (with an error) a password sent over a plain-text
    /// connection from beyond loopback, unless the config allows it.
    /// `true` when refused.
    pub(super) fn refuse_plaintext(&mut self, conn: ConnId, command: &str) -> bool {
        let Some(session) = self.sessions.get(&conn) else {
            return true;
        };
        if session.encrypted
            || session.peer.is_loopback()
            || self.config.accounts.allow_plaintext_auth
        {
            return false;
        }
        let text = format!(
            "{command} sends a password and this connection is not encrypted; connect over TLS"
        );
        self.out.error(conn, ErrorCode::EncryptionRequired, &text);
        true
    }

    /// `#register PASSWORD`: the password is hashed, then the account
    /// stored; only then is the registrant told (and logged in).
    pub(super) fn register(&mut self, _now: Instant, conn: ConnId, password: &str) {
        if self.refuse_plaintext(conn, "#register") {
            return;
        }
        let Some(session) = self.sessions.get(&conn) else {
            return;
        };
        let name = session.nick;
        if let Some(account) = session.account() {
            let text = format!("you are logged in to {account}; #logout first");
            return self.out.error(conn, ErrorCode::AccountExists, &text);
        }
        if name.is_guest_name() {
            let text = "guest names cannot be registered; pick a nickname with #nick first";
            return self.out.error(conn, ErrorCode::BadNick, text);
        }
        if self.accounts.is_registered(&name) {
            let text = format!("{name} is already registered");
            return self.out.error(conn, ErrorCode::AccountExists, &text);
        }
        if !self.password_acceptable(conn, password) || self.change_in_flight(conn, &name) {
            return;
        }
        let request = self.logins.fresh();
        self.accounts.changing.insert(name.folded());
        self.accounts
            .jobs
            .insert(request, Job::Register { conn, name });
        self.out.push(Output::HashPassword(Box::new(HashRequest {
            request,
            password: Password::new(password),
        })));
    }

    /// `#login NAME PASSWORD` (and SASL PLAIN when `sasl`): checked as
    /// `#oper` is, against the dummy hash when the name is not registered.
    pub(super) fn login(
        &mut self,
        now: Instant,
        conn: ConnId,
        name: Nick,
        password: &str,
        sasl: bool,
    ) {
        if !sasl && self.refuse_plaintext(conn, "#login") {
            return;
        }
        let Some(session) = self.sessions.get(&conn) else {
            return;
        };
        if let Some(account) = session.account() {
            if sasl {
                return self.sasl_already(conn);
            }
            let text = format!("you are logged in to {account}; #logout first");
            return self.out.error(conn, ErrorCode::AccountExists, &text);
        }
        let account = self.accounts.get(&name);
        let hash = account.map_or_else(
            || self.accounts.dummy_hash.clone(),
            |account| account.password_hash.clone(),
        );
        let known = account.is_some();
        self.verify(
            now,
            conn,
            name,
            password,
            known,
            hash,
            Purpose::Login { sasl },
        );
    }

    /// `#logout`: the nickname stays, protected again (a grace period
    /// starts); an operator by account is an operator no more.
    pub(super) fn logout(&mut self, now: Instant, conn: ConnId) {
        let Some(session) = self.sessions.get_mut(&conn) else {
            return;
        };
        let Some(account) = session.standing_if_any().and_then(|s| s.account.take()) else {
            return self
                .out
                .error(conn, ErrorCode::NotLoggedIn, "you are not logged in");
        };
        let oper_down = std::mem::take(&mut session.standing_mut().oper_by_account);
        if oper_down {
            session.role = Role::User;
        }
        let reply = Reply::LoggedOut {
            me: session.person(),
            account: &account,
        };
        self.out.send(conn, &reply);
        if oper_down {
            self.out.send(conn, &Reply::OperDown);
        }
        self.announce_account(conn, None);
        self.protect(now, conn);
    }

    /// `#password OLD NEW`: OLD is verified (throttled like a login),
    /// then NEW hashed and stored.
    pub(super) fn change_password(&mut self, now: Instant, conn: ConnId, old: &str, new: &str) {
        if self.refuse_plaintext(conn, "#password") {
            return;
        }
        let Some(account) = self.logged_in(conn) else {
            return;
        };
        if !self.password_acceptable(conn, new) || self.change_in_flight(conn, &account.name) {
            return;
        }
        let (name, hash) = (account.name, account.password_hash);
        let purpose = Purpose::ChangePassword(Password::new(new));
        self.verify(now, conn, name, old, true, hash, purpose);
    }

    /// `#unregister PASSWORD`: verified, then the account removed.
    pub(super) fn unregister(&mut self, now: Instant, conn: ConnId, password: &str) {
        if self.refuse_plaintext(conn, "#unregister") {
            return;
        }
        let Some(account) = self.logged_in(conn) else {
            return;
        };
        if self.change_in_flight(conn, &account.name) {
            return;
        }
        let (name, hash) = (account.name, account.password_hash);
        self.verify(now, conn, name, password, true, hash, Purpose::Unregister);
    }

    /// `#whois NAME`.
    pub(super) fn whois(&mut self, conn: ConnId, nick: &Nick) {
        let asker_is_operator = self.sessions.get(&conn).is_some_and(|s| s.is_operator());
        let account = self.accounts.get(nick);
        let folded = nick.folded();
        let logins = self
            .sessions
            .values()
            .filter(|s| s.account().is_some_and(|a| a.folded() == folded))
            .count();
        let shown = account.map_or(*nick, |account| account.name);
        let reply = Reply::Whois {
            nick: &shown,
            registered: account.is_some(),
            logins,
            online: self.user_named(nick).is_some() || self.online_elsewhere(nick),
            operator: asker_is_operator && account.is_some_and(|a| a.operator),
        };
        self.out.send(conn, &reply);
    }

    /// `#oper-grant NAME` / `#oper-revoke NAME` (operators only): the
    /// account's operator flag, stored.
    pub(super) fn set_operator_account(&mut self, conn: ConnId, name: &Nick, operator: bool) {
        if !self.sessions.get(&conn).is_some_and(|s| s.is_operator()) {
            let text = "only an operator may change operator accounts";
            return self.out.error(conn, ErrorCode::PermissionDenied, text);
        }
        let Some(account) = self.accounts.get(name) else {
            let text = format!("{name} is not registered");
            return self
                .out
                .error_about(conn, ErrorCode::NotLoggedIn, Some(name.as_str()), &text);
        };
        let changed = Account {
            operator,
            ..account.clone()
        };
        if self.change_in_flight(conn, &changed.name) {
            return;
        }
        self.store(conn, AccountChange::Put(changed), Done::Operator(operator));
    }

    /// The account `conn` is logged in to, or a `not-logged-in` error.
    fn logged_in(&mut self, conn: ConnId) -> Option<Account> {
        let account = self.sessions.get(&conn)?.account();
        match account.and_then(|name| self.accounts.get(&name)) {
            Some(account) => Some(account.clone()),
            None => {
                let text = "you are not logged in to an account";
                self.out.error(conn, ErrorCode::NotLoggedIn, text);
                None
            }
        }
    }

    /// Whether a new password is long enough and not too long (else an
    /// error).
    fn password_acceptable(&mut self, conn: ConnId, password: &str) -> bool {
        let length = password.chars().count();
        let min = self.config.accounts.min_password_length;
        let max = crate::accounts::MAX_PASSWORD_LENGTH;
        let text = if length < min {
            format!("passwords need at least {min} characters")
        } else if length > max {
            format!("passwords may have at most {max} characters")
        } else {
            return true;
        };
        self.out.error(conn, ErrorCode::BadArgument, &text);
        false
    }

    /// Whether a change to this account is already in flight (then an
    /// error): changes to one account go one at a time.
    fn change_in_flight(&mut self, conn: ConnId, name: &Nick) -> bool {
        if !self.accounts.changing.contains(&name.folded()) {
            return false;
        }
        let text = format!("a change to {name} is being stored; try again in a moment");
        self.out.error(conn, ErrorCode::TryLater, &text);
        true
    }

    /// Asks the driver to check a password for an account, through the
    /// failed-login throttle.
    #[allow(clippy::too_many_arguments)] // one call per purpose; a struct would only rename them
    fn verify(
        &mut self,
        now: Instant,
        conn: ConnId,
        name: Nick,
        password: &str,
        known: bool,
        hash: String,
        purpose: Purpose,
    ) {
        let sasl = matches!(purpose, Purpose::Login { sasl: true });
        let Some(session) = self.sessions.get(&conn) else {
            return;
        };
        let peer = session.peer;
        let address = self.address_group(peer);
        let key = Some(name.folded());
        let throttle = &self.logins.throttle;
        if let Err(refusal) = throttle.check(&self.config.operator_login, now, address, key) {
            let text = match refusal {
                Refusal::Wait(wait) => format!(
                    "too many failed logins; try again in {}",
                    crate::duration::format(wait)
                ),
                Refusal::Checking => "another login from your address or for that name is being checked; try again in a moment".to_owned(),
            };
            if sasl {
                return self.sasl_failed(conn);
            }
            return self.out.error(conn, ErrorCode::TryLater, &text);
        }
        let request = self.logins.begin(Pending {
            conn,
            address,
            name: key,
            known,
            purpose,
        });
        self.out
            .push(Output::VerifyPassword(Box::new(PasswordCheck {
                request,
                conn,
                name: name.to_string(),
                peer,
                purpose: CheckPurpose::Account,
                hash,
                password: Password::new(password),
            })));
    }

    /// A verdict on an account's password (`matched`: `None` when the
    /// driver was too busy to check). `name` is the folded account name.
    pub(super) fn account_verdict(
        &mut self,
        now: Instant,
        conn: ConnId,
        name: Option<Nick>,
        purpose: Purpose,
        matched: Option<bool>,
    ) {
        let sasl = matches!(purpose, Purpose::Login { sasl: true });
        let account = name.and_then(|name| self.accounts.get(&name)).cloned();
        let account = match (matched, account) {
            (Some(true), Some(account)) => account,
            (None, _) if !sasl => {
                let text = "logins are busy; try again in a moment";
                return self.out.error(conn, ErrorCode::TryLater, text);
            }
            _ if sasl => return self.sasl_failed(conn),
            _ => {
                let text = match purpose {
                    Purpose::Login { .. } => BAD_LOGIN,
                    _ => "wrong password",
                };
                return self.out.error(conn, ErrorCode::BadCredentials, text);
            }
        };
        match purpose {
            Purpose::Oper => debug_assert!(false, "an operator verdict in account_verdict"),
            Purpose::Login { sasl } => self.log_in(now, conn, &account, sasl),
            Purpose::ChangePassword(new) => {
                if self.change_in_flight(conn, &account.name) {
                    return;
                }
                let request = self.logins.fresh();
                self.accounts.changing.insert(account.name.folded());
                let job = Job::NewPassword {
                    conn,
                    name: account.name,
                };
                self.accounts.jobs.insert(request, job);
                self.out.push(Output::HashPassword(Box::new(HashRequest {
                    request,
                    password: new,
                })));
            }
            Purpose::Unregister => {
                if self.change_in_flight(conn, &account.name) {
                    return;
                }
                let change = AccountChange::Remove { name: account.name };
                self.store(conn, change, Done::Unregistered);
            }
        }
    }

    /// The driver hashed a password from [`Output::HashPassword`]
    /// (`hash` is `None` if it could not). The change is then stored.
    pub fn handle_password_hashed(
        &mut self,
        now: Instant,
        request: LoginRequest,
        hash: Option<String>,
    ) {
        let job = self.accounts.jobs.remove(&request);
        debug_assert!(job.is_some(), "a hash for {request}, never asked for");
        let (conn, name, done) = match job {
            Some(Job::Register { conn, name }) => (conn, name, Done::Registered),
            Some(Job::NewPassword { conn, name }) => (conn, name, Done::PasswordChanged),
            Some(Job::Store { .. }) | None => return,
        };
        let Some(hash) = hash else {
            self.accounts.changing.remove(&name.folded());
            // The driver hashes on one worker with a bounded queue: no
            // hash means it was full (a flood of registrations).
            let text =
                "the server is busy hashing passwords; try again in a moment (nothing changed)";
            return self.error_if_present(conn, ErrorCode::TryLater, text);
        };
        let account = match done {
            Done::Registered => Account {
                name,
                password_hash: hash,
                operator: false,
                registered_at_ms: self.wall.unix_ms(now),
            },
            _ => match self.accounts.get(&name) {
                Some(account) => Account {
                    password_hash: hash,
                    ..account.clone()
                },
                None => {
                    self.accounts.changing.remove(&name.folded());
                    let text = format!("{name} is no longer registered");
                    return self.error_if_present(conn, ErrorCode::NotLoggedIn, &text);
                }
            },
        };
        // The name stays in `changing` until the store answers.
        self.store(conn, AccountChange::Put(account), done);
    }

    /// Asks the driver to make a change durable.
    fn store(&mut self, conn: ConnId, change: AccountChange, done: Done) {
        let request = self.logins.fresh();
        self.accounts.changing.insert(change.name().folded());
        let job = Job::Store {
            conn,
            change: change.clone(),
            done,
        };
        self.accounts.jobs.insert(request, job);
        self.out.push(Output::StoreAccount(Box::new(AccountWrite {
            request,
            change,
        })));
    }

    /// The driver stored (or failed to store) a change from
    /// [`Output::StoreAccount`]. Only a stored change is applied.
    pub fn handle_account_stored(&mut self, now: Instant, request: LoginRequest, stored: bool) {
        let job = self.accounts.jobs.remove(&request);
        debug_assert!(
            job.is_some(),
            "a store outcome for {request}, never asked for"
        );
        let Some(Job::Store { conn, change, done }) = job else {
            return;
        };
        let name = change.name();
        self.accounts.changing.remove(&name.folded());
        if !stored {
            let text = "the account change could not be stored; nothing changed";
            return self.error_if_present(conn, ErrorCode::NotStored, text);
        }
        self.accounts.apply(&change);
        match done {
            Done::Registered => {
                if let Some(session) = self.sessions.get_mut(&conn) {
                    session.standing_mut().account = Some(name);
                    self.out.send(conn, &Reply::Registered { account: &name });
                    self.announce_account(conn, Some(name));
                }
                // Whoever holds the nickname now without being logged
                // in to it (the registrant may have changed nick since).
                if let Some(holder) = self.conn_named(&name) {
                    self.protect(now, holder);
                }
            }
            Done::PasswordChanged => {
                if self.sessions.contains_key(&conn) {
                    self.out.send(conn, &Reply::PasswordChanged);
                }
            }
            Done::Unregistered => self.after_unregister(conn, name),
            Done::Operator(operator) => {
                self.after_operator_flag(name, operator);
                if self.sessions.contains_key(&conn) {
                    let reply = Reply::OperatorAccount {
                        account: &name,
                        operator,
                    };
                    self.out.send(conn, &reply);
                }
            }
        }
    }

    /// Logs `conn` in to `account`: it takes the nickname (renaming a
    /// holder not logged in to it at once), becomes an operator if the
    /// account is one, and takes back the rooms the account owns.
    fn log_in(&mut self, now: Instant, conn: ConnId, account: &Account, sasl: bool) {
        let name = account.name;
        let Some(session) = self.sessions.get_mut(&conn) else {
            return;
        };
        let standing = session.standing_mut();
        standing.account = Some(name);
        standing.grace_until = None;
        if let Some(at) = standing.grace_at.take() {
            self.timers.cancel(at, &Timer::NickGrace(conn));
        }
        let oper_up = account.operator && !session.is_operator();
        if oper_up {
            session.role = Role::Operator;
            session.standing_mut().oper_by_account = true;
        }
        let reply = Reply::LoggedIn {
            me: session.person(),
            account: &name,
        };
        self.out.send(conn, &reply);
        if sasl {
            self.sasl_succeeded(conn);
        }
        if oper_up {
            self.out.send(conn, &Reply::OperUp);
        }
        self.announce_account(conn, Some(name));
        // The nickname: taken from a holder not logged in to it; a
        // holder logged in to it (another connection of the same
        // account) keeps it, and this connection keeps its own.
        match self.conn_named(&name) {
            Some(holder) if holder == conn => {}
            Some(holder) => {
                let same_account =
                    self.sessions.get(&holder).and_then(|s| s.account()) == Some(name);
                if same_account {
                    // This connection keeps its own nickname, which may
                    // be someone else's registered one.
                    self.protect(now, conn);
                } else {
                    self.rename_to_guest(holder);
                    self.change_nick_protected(now, conn, name);
                }
            }
            None => self.change_nick_protected(now, conn, name),
        }
        self.reclaim_rooms(conn, &name);
        self.enforce_account_bans(now, conn, &name);
    }

    /// Rooms `account` is banned from that `conn` is in (it joined them as
    /// a guest, whose bans go by address): it leaves each as the ban had
    /// it leave when set, so logging in inside a room does not escape a
    /// ban on the account. Operators are exempt, as from every ban.
    fn enforce_account_bans(&mut self, now: Instant, conn: ConnId, account: &Nick) {
        let folded = account.folded();
        let Some(session) = self.sessions.get(&conn) else {
            return;
        };
        if session.is_operator() {
            return;
        }
        let banned: Vec<(RoomName, String)> = session
            .rooms
            .iter()
            .filter_map(|name| {
                let (_, ban) = self.rooms.get(name)?.account_bans.get(&folded)?;
                ban.is_active(now).then(|| {
                    (
                        name.clone(),
                        super::describe_ban(&format!("#{name}"), ban, now),
                    )
                })
            })
            .collect();
        for (room_name, text) in banned {
            let chan = format!("#{room_name}");
            self.out
                .error_about(conn, ErrorCode::Banned, Some(&chan), &text);
            self.put_out(conn, &room_name, Some("banned"));
        }
    }

    /// Rooms owned by `account` that `conn` is in come back to it.
    pub(super) fn reclaim_rooms(&mut self, conn: ConnId, account: &Nick) {
        let folded = account.folded();
        let Some(session) = self.sessions.get(&conn) else {
            return;
        };
        let nick = session.nick;
        let rooms: Vec<_> = session.rooms.iter().cloned().collect();
        for name in rooms {
            let Some(room) = self.rooms.get_mut(&name) else {
                continue;
            };
            if room.owner_account != Some(folded) || room.owner == Some(conn) {
                continue;
            }
            // On a node of a cluster the room passes when the bus brings
            // the change back, from the owner this node knows.
            if let Some(cluster) = &self.cluster {
                // While the bus is down the room stays as the cluster has
                // it; the account takes it back at its next login.
                if !cluster.up {
                    continue;
                }
                let was = cluster.settings.get(&name).and_then(|s| s.owner);
                let setting = crate::cluster::Setting::Owner {
                    nick: Some(nick),
                    was,
                };
                self.settle_in_cluster(conn, &name, setting);
                continue;
            }
            room.owner = Some(conn);
            let reply = Reply::OwnerChanged {
                room: &name,
                nick: &nick,
            };
            self.broadcast_in(&name, &reply, Priority::Normal);
        }
    }

    /// `#nick` (and IRC `NICK`) with protection: a registered nickname
    /// taken without being logged in to it starts a grace period.
    pub(super) fn change_nick_protected(&mut self, now: Instant, conn: ConnId, nick: Nick) {
        if let Some(session) = self.sessions.get(&conn)
            && self.accounts.is_registered(&nick)
            && session
                .account()
                .is_none_or(|a| a.folded() != nick.folded())
            && session
                .standing()
                .grace_until
                .is_some_and(|until| until <= now)
        {
            // This connection's one grace period is over: it may not take
            // a registered nickname again without its password.
            let text = format!(
                "{nick} is registered and this connection's grace period is over; log in to it with #login {nick} PASSWORD"
            );
            return self.out.error(conn, ErrorCode::PermissionDenied, &text);
        }
        let before = self.sessions.get(&conn).map(|s| s.nick);
        self.change_nick(conn, nick);
        let after = self.sessions.get(&conn).map(|s| s.nick);
        // Only a change restarts protection: a refused `#nick` must not
        // renew a grace period.
        if after != before {
            self.protect(now, conn);
        }
    }

    /// Starts the grace period if `conn` holds a registered nickname it
    /// is not logged in to, and ends one that no longer applies.
    pub(super) fn protect(&mut self, now: Instant, conn: ConnId) {
        let Some(session) = self.sessions.get_mut(&conn) else {
            return;
        };
        let nick = session.nick;
        let exposed = self.accounts.is_registered(&nick)
            && session
                .account()
                .is_none_or(|a| a.folded() != nick.folded());
        if let Some(at) = session.standing_if_any().and_then(|s| s.grace_at.take()) {
            self.timers.cancel(at, &Timer::NickGrace(conn));
        }
        if !exposed {
            return;
        }
        let at = *session
            .standing_mut()
            .grace_until
            .get_or_insert(now + self.config.accounts.nick_grace);
        if at <= now {
            // This connection's grace period is spent already.
            self.rename_to_guest(conn);
            return;
        }
        session.standing_mut().grace_at = Some(at);
        self.timers.schedule(at, Timer::NickGrace(conn));
        let grace = at - now;
        self.out
            .send(conn, &Reply::NickProtected { nick: &nick, grace });
    }

    /// A grace timer fired: rename the holder if it still holds a
    /// registered nickname it is not logged in to.
    pub(super) fn end_grace(&mut self, at: Instant, conn: ConnId) {
        let Some(session) = self.sessions.get_mut(&conn) else {
            return;
        };
        if session.standing().grace_at != Some(at) {
            return;
        }
        session.standing_mut().grace_at = None;
        let nick = session.nick;
        let exposed = self.accounts.is_registered(&nick)
            && session
                .account()
                .is_none_or(|a| a.folded() != nick.folded());
        if exposed {
            self.rename_to_guest(conn);
        }
    }

    /// Renames a holder of a registered nickname to its guest name,
    /// telling it why.
    fn rename_to_guest(&mut self, conn: ConnId) {
        let Some(session) = self.sessions.get_mut(&conn) else {
            return;
        };
        let nick = session.nick;
        if let Some(at) = session.standing_if_any().and_then(|s| s.grace_at.take()) {
            self.timers.cancel(at, &Timer::NickGrace(conn));
        }
        self.out.send_with(
            conn,
            &Reply::NickReclaimed { nick: &nick },
            Priority::Urgent,
        );
        let guest = self.guest_nick(conn);
        self.change_nick(conn, guest);
    }

    /// The connections logged in to the account `folded` (a folded name).
    fn logged_in_to(&self, folded: Nick) -> Vec<ConnId> {
        self.sessions
            .iter()
            .filter(|(_, s)| s.account().is_some_and(|a| a.folded() == folded))
            .map(|(&c, _)| c)
            .collect()
    }

    /// After `#unregister`: every connection logged in to the account is
    /// logged out; rooms it owned belong to their current owners.
    fn after_unregister(&mut self, conn: ConnId, name: Nick) {
        if self.sessions.contains_key(&conn) {
            self.out.send(conn, &Reply::Unregistered { account: &name });
        }
        let folded = name.folded();
        let logged_in = self.logged_in_to(folded);
        for member in logged_in {
            let Some(session) = self.sessions.get_mut(&member) else {
                continue;
            };
            let standing = session.standing_mut();
            standing.account = None;
            let oper_down = std::mem::take(&mut standing.oper_by_account);
            if oper_down {
                session.role = Role::User;
            }
            if member != conn {
                let reply = Reply::LoggedOut {
                    me: session.person(),
                    account: &name,
                };
                self.out.send(member, &reply);
            }
            if oper_down {
                self.out.send(member, &Reply::OperDown);
            }
            self.announce_account(member, None);
        }
        for (room_name, room) in &mut self.rooms {
            if room.owner_account == Some(folded) {
                room.owner_account = None;
            }
            room.account_bans.remove(&folded);
            if let Some(until) = room.account_mutes.remove(&folded) {
                let timer = Timer::AccountMuteExpiry {
                    room: room_name.clone(),
                    account: folded,
                };
                self.timers.cancel(until, &timer);
            }
        }
    }

    /// After an operator flag changed: connections logged in to the
    /// account gain or lose operator rights at once.
    fn after_operator_flag(&mut self, name: Nick, operator: bool) {
        let folded = name.folded();
        let logged_in = self.logged_in_to(folded);
        for member in logged_in {
            let Some(session) = self.sessions.get_mut(&member) else {
                continue;
            };
            if operator && !session.is_operator() {
                session.role = Role::Operator;
                session.standing_mut().oper_by_account = true;
                self.out.send(member, &Reply::OperUp);
            } else if !operator && session.standing().oper_by_account {
                session.role = Role::User;
                session.standing_mut().oper_by_account = false;
                self.out.send(member, &Reply::OperDown);
            }
        }
    }

    /// An account mute's timer fired.
    pub(super) fn expire_account_mute(
        &mut self,
        at: Instant,
        room_name: &crate::ids::RoomName,
        account: Nick,
    ) {
        let Some(room) = self.rooms.get_mut(room_name) else {
            return;
        };
        if room.account_mutes.get(&account) != Some(&at) {
            return;
        }
        room.account_mutes.remove(&account);
        // Members of the account no longer under a connection mute of
        // their own (those are announced when that mute ends) are told.
        let freed: Vec<Nick> = room
            .members()
            .filter(|member| !room.mutes.contains_key(member))
            .filter_map(|member| self.sessions.get(&member))
            .filter(|s| s.account_key() == Some(account))
            .map(|s| s.nick)
            .collect();
        for nick in freed {
            let reply = Reply::Unmuted {
                room: room_name,
                nick: &nick,
                by: None,
            };
            self.broadcast_in(room_name, &reply, Priority::Normal);
        }
    }

    fn error_if_present(&mut self, conn: ConnId, code: ErrorCode, text: &str) {
        if self.sessions.contains_key(&conn) {
            self.out.error(conn, code, text);
        }
    }
}
