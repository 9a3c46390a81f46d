//! Operator logins: what the core asks a driver to verify, the verdict it
//! gets back, and the policy that slows down password guessing.
//!
//! Argon2 is built to be slow (tens of milliseconds per check), so the core
//! never runs it: `#oper` emits [`crate::Output::VerifyPassword`] and the
//! driver answers with [`crate::Server::handle_password_verdict`]. An
//! unknown name is checked against a dummy hash with the same parameters as
//! a real one, so neither the time to answer nor the answer tells names
//! apart. Failed attempts delay the next attempt from the same address and
//! for the same name, doubling with each failure up to a cap.

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ahash::{AHashMap, AHashSet};
use argon2::password_hash::{Output as HashOutput, PasswordHash, Salt};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::address::AddressGroup;
use crate::config::{ConfigError, in_range};
use crate::duration::serde_human;
use crate::ids::{ConnId, Nick};

/// Throttling of failed operator logins (`[operator_login]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoginConfig {
    /// How long an address and a name must wait after their first failed
    /// login; each further failure doubles it.
    #[serde(with = "serde_human")]
    pub failure_delay: Duration,
    /// The longest wait the doubling reaches.
    #[serde(with = "serde_human")]
    pub max_failure_delay: Duration,
    /// Failures are forgotten once the wait they caused has been over for
    /// this long: the next failure starts again at `failure_delay`.
    #[serde(with = "serde_human")]
    pub forget_after: Duration,
    /// Most addresses, and separately most names, whose failures are
    /// remembered; past it the oldest are forgotten first.
    pub max_tracked: usize,
}

impl Default for LoginConfig {
    fn default() -> Self {
        Self {
            failure_delay: Duration::from_secs(1),
            max_failure_delay: Duration::from_secs(300),
            forget_after: Duration::from_secs(3600),
            max_tracked: 10_000,
        }
    }
}

impl LoginConfig {
    /// Checks that the settings are usable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let range = in_range;
        range(
            self.max_failure_delay <= MAX_DELAY_SETTING,
            "operator_login.max_failure_delay",
            "at most 1d",
        )?;
        range(
            self.failure_delay <= self.max_failure_delay,
            "operator_login.failure_delay",
            "at most operator_login.max_failure_delay",
        )?;
        range(
            self.forget_after <= MAX_DELAY_SETTING,
            "operator_login.forget_after",
            "at most 1d",
        )?;
        range(
            (1..=1_000_000).contains(&self.max_tracked),
            "operator_login.max_tracked",
            "between 1 and 1000000",
        )
    }
}

/// Keeps `now + delay` far from the end of `Instant`'s range on every
/// platform, whatever the config says.
const MAX_DELAY_SETTING: Duration = Duration::from_secs(86_400);

/// Identifies one verification the core asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LoginRequest(u64);

impl LoginRequest {
    /// A request id (the core makes its own; drivers' tests make these).
    pub fn new(raw: u64) -> Self {
        Self(raw)
    }

    /// The raw number (for logs).
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for LoginRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "login{}", self.0)
    }
}

/// A password as typed by a client: wiped from memory when dropped and
/// never shown by `Debug`, so it cannot end up in a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(Zeroizing<String>);

impl Password {
    /// Wraps a password.
    pub fn new(text: &str) -> Self {
        Self(Zeroizing::new(text.to_owned()))
    }

    /// The password itself, for the verifier.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// One password to check against one Argon2 hash, from
/// [`crate::Output::VerifyPassword`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordCheck {
    /// Hand back with the verdict.
    pub request: LoginRequest,
    /// The connection that tried (for the driver's log).
    pub conn: ConnId,
    /// The operator name as typed (for the driver's log).
    pub name: String,
    /// The address that tried (for the driver's log).
    pub peer: IpAddr,
    /// What the password is for (for the driver's log).
    pub purpose: CheckPurpose,
    /// The Argon2 PHC string to verify against: the account's, or the
    /// dummy for an unknown name.
    pub hash: String,
    /// What the client typed.
    pub password: Password,
}

/// What a [`PasswordCheck`] is for: the driver's log says which kind of
/// login failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckPurpose {
    /// `#oper` against a configured operator.
    Operator,
    /// A password of an account (`#login`, SASL, `#password`,
    /// `#unregister`).
    Account,
}

/// The driver's answer to a [`PasswordCheck`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordVerdict {
    /// The password matches the hash.
    Match,
    /// It does not (or the hash could not be used).
    Mismatch,
    /// The driver had no room to check it now; the attempt is refused
    /// without counting as a failure.
    Busy,
}

/// Why an attempt is refused before any password is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Recent failures: wait this long.
    Wait(Duration),
    /// Another attempt from this address or for this name is being checked.
    Checking,
}

/// Failures of one address or one name.
#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    /// No attempt before this.
    until: Instant,
}

/// Failed logins per address and per name, and attempts in flight.
/// Addresses are [`AddressGroup`]s: an IPv6 guesser's whole network
/// counts as one address, as for every other per-address limit.
///
/// Memory is bounded: each table holds at most
/// [`LoginConfig::max_tracked`] entries, and attempts in flight are at most
/// one per address.
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    by_address: AHashMap<AddressGroup, Failures>,
    by_name: AHashMap<Nick, Failures>,
    checking_addresses: AHashSet<AddressGroup>,
    checking_names: AHashSet<Nick>,
}

impl Throttle {
    /// Whether an attempt from `address` for `name` (folded; `None` when
    /// it cannot be an operator name at all) may be checked now.
    pub(crate) fn check(
        &self,
        config: &LoginConfig,
        now: Instant,
        address: AddressGroup,
        name: Option<Nick>,
    ) -> Result<(), Refusal> {
        let wait = |failures: Option<&Failures>| {
            failures
                .filter(|f| !is_forgotten(config, f, now))
                .map_or(Duration::ZERO, |f| f.until.saturating_duration_since(now))
        };
        let by_name = name.and_then(|name| self.by_name.get(&name));
        let longest = wait(self.by_address.get(&address)).max(wait(by_name));
        if !longest.is_zero() {
            return Err(Refusal::Wait(longest));
        }
        let name_checking = name.is_some_and(|name| self.checking_names.contains(&name));
        if self.checking_addresses.contains(&address) || name_checking {
            return Err(Refusal::Checking);
        }
        Ok(())
    }

    /// An attempt that passed [`Throttle::check`] is being checked.
    pub(crate) fn begin(&mut self, address: AddressGroup, name: Option<Nick>) {
        self.checking_addresses.insert(address);
        if let Some(name) = name {
            self.checking_names.insert(name);
        }
    }

    /// The attempt's verdict came back: `Some(true)` matched (the name's
    /// failures forgotten), `Some(false)` failed (the wait grows), `None`
    /// was never checked.
    pub(crate) fn finish(
        &mut self,
        config: &LoginConfig,
        now: Instant,
        address: AddressGroup,
        name: Option<Nick>,
        matched: Option<bool>,
    ) {
        self.checking_addresses.remove(&address);
        if let Some(name) = name {
            self.checking_names.remove(&name);
        }
        match matched {
            None => {}
            Some(true) => {
                // Only the name's failures: the address's stay until they
                // are forgotten, or an attacker could log in to an account
                // of their own between guesses at others' to keep its
                // wait from growing.
                if let Some(name) = name {
                    self.by_name.remove(&name);
                }
            }
            Some(false) => {
                record_failure(&mut self.by_address, config, now, address);
                if let Some(name) = name {
                    record_failure(&mut self.by_name, config, now, name);
                }
            }
        }
    }

    /// Entries remembered (addresses, names), for tests and invariants.
    #[cfg(test)]
    fn tracked(&self) -> (usize, usize) {
        (self.by_address.len(), self.by_name.len())
    }
}

fn is_forgotten(config: &LoginConfig, failures: &Failures, now: Instant) -> bool {
    now.saturating_duration_since(failures.until) >= config.forget_after
}

/// Counts one more failure for `key` and sets its wait, making room first
/// when the table is full.
fn record_failure<K: Copy + Eq + std::hash::Hash>(
    table: &mut AHashMap<K, Failures>,
    config: &LoginConfig,
    now: Instant,
    key: K,
) {
    if !table.contains_key(&key) && table.len() >= config.max_tracked {
        // Only failures reach here, at the pace the verifier allows, so a
        // scan of the table is cheap enough and needs no second index.
        table.retain(|_, failures| !is_forgotten(config, failures, now));
        if table.len() >= config.max_tracked
            && let Some(oldest) = table
                .iter()
                .min_by_key(|(_, failures)| failures.until)
                .map(|(key, _)| *key)
        {
            table.remove(&oldest);
        }
    }
    let failures = table.entry(key).or_insert(Failures {
        count: 0,
        until: now,
    });
    if is_forgotten(config, failures, now) {
        failures.count = 0;
    }
    failures.count = failures.count.saturating_add(1);
    let delay = delay_after(config, failures.count);
    failures.until = now.checked_add(delay).unwrap_or(now);
}

/// The wait after `count` failures: `failure_delay`, doubled per further
/// failure, capped at `max_failure_delay`.
fn delay_after(config: &LoginConfig, count: u32) -> Duration {
    let doublings = count.saturating_sub(1).min(31);
    config
        .failure_delay
        .saturating_mul(1 << doublings)
        .min(config.max_failure_delay)
}

/// Salt of the dummy hash (any fixed 16 bytes do).
const DUMMY_SALT: &str = "Y2hhdGQtZHVtbXktc2FsdA";
/// Output bytes of the dummy hash: no password is known to produce them.
const DUMMY_OUTPUT: [u8; 64] = [0x5a; 64];

/// The hash an unknown name is checked against: the same algorithm,
/// version, parameters and output length as `template` (the first
/// operator's hash), so it costs the same to verify; without a usable
/// template, Argon2id with the argon2 crate's default parameters (the ones
/// `chatd hash-password` uses).
pub(crate) fn dummy_hash(template: Option<&str>) -> String {
    let default_template = format!(
        "$argon2id$v=19$m={},t={},p={}${DUMMY_SALT}",
        argon2::Params::DEFAULT_M_COST,
        argon2::Params::DEFAULT_T_COST,
        argon2::Params::DEFAULT_P_COST,
    );
    let parsed = template
        .and_then(|text| PasswordHash::new(text).ok())
        .or_else(|| PasswordHash::new(&default_template).ok());
    let Some(template) = parsed else {
        // The default template is a valid PHC string (a unit test proves it).
        return default_template;
    };
    let length = template.hash.map_or(32, |output| output.len());
    let (Ok(salt), Ok(output)) = (
        Salt::from_b64(DUMMY_SALT),
        HashOutput::new(&DUMMY_OUTPUT[..length.min(DUMMY_OUTPUT.len())]),
    ) else {
        return default_template;
    };
    PasswordHash {
        salt: Some(salt),
        hash: Some(output),
        ..template
    }
    .to_string()
}

/// Requests in flight and the throttle: the core's side of `#oper`.
#[derive(Debug)]
pub(crate) struct Logins {
    next_request: u64,
    pending: AHashMap<LoginRequest, Pending>,
    pub(crate) throttle: Throttle,
    /// What an unknown name is verified against.
    pub(crate) dummy_hash: String,
}

/// What a verification in flight will do once it matches.
#[derive(Debug, Clone)]
pub(crate) enum Purpose {
    /// `#oper`: the connection becomes an operator.
    Oper,
    /// `#login` (or SASL PLAIN, `sasl` set): the connection logs in.
    Login {
        /// Answer as SASL (IRC numerics 903/904) rather than as `#login`.
        sasl: bool,
    },
    /// `#password`: the old one matched, so the new one is hashed.
    ChangePassword(Password),
    /// `#unregister`: the account is removed.
    Unregister,
}

/// What the core remembers about a verification in flight.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    /// Who asked (may be gone when the verdict arrives).
    pub(crate) conn: ConnId,
    /// From where (IPv6 per network, as per-address limits count).
    pub(crate) address: AddressGroup,
    /// The folded name, when it is a valid name at all.
    pub(crate) name: Option<Nick>,
    /// Whether the name is an operator's or an account's: a match
    /// against the dummy hash must never let anyone in.
    pub(crate) known: bool,
    /// What a match does.
    pub(crate) purpose: Purpose,
}

impl Logins {
    /// Empty tables; unknown names will cost what `template` costs.
    pub(crate) fn new(template: Option<&str>) -> Self {
        Self {
            next_request: 1,
            pending: AHashMap::new(),
            throttle: Throttle::default(),
            dummy_hash: dummy_hash(template),
        }
    }

    /// A request id never used before (also for account hashes and
    /// stores, so no two requests of any kind share one).
    pub(crate) fn fresh(&mut self) -> LoginRequest {
        let request = LoginRequest(self.next_request);
        self.next_request += 1;
        request
    }

    /// Registers a verification about to be asked for.
    pub(crate) fn begin(&mut self, pending: Pending) -> LoginRequest {
        let request = self.fresh();
        self.throttle.begin(pending.address, pending.name);
        self.pending.insert(request, pending);
        request
    }

    /// Takes back a verification whose verdict arrived (`None` if the core
    /// never asked for it or already had its answer).
    pub(crate) fn take(&mut self, request: LoginRequest) -> Option<Pending> {
        self.pending.remove(&request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(last: u8) -> AddressGroup {
        AddressGroup::of(IpAddr::from([127, 0, 0, last]), 64)
    }

    fn name(text: &str) -> Option<Nick> {
        Some(Nick::parse(text).unwrap().folded())
    }

    #[test]
    fn each_failure_doubles_the_wait_up_to_the_cap() {
        let config = LoginConfig {
            max_failure_delay: Duration::from_secs(5),
            ..LoginConfig::default()
        };
        let waits: Vec<u64> = (1..=5)
            .map(|count| delay_after(&config, count).as_secs())
            .collect();
        assert_eq!(waits, [1, 2, 4, 5, 5]);
        assert_eq!(delay_after(&config, u32::MAX), Duration::from_secs(5));
    }

    #[test]
    fn a_failure_blocks_its_address_and_its_name_until_the_wait_is_over() {
        let config = LoginConfig::default();
        let mut throttle = Throttle::default();
        let now = crate::test_support::epoch();
        throttle.begin(address(2), name("admin"));
        assert_eq!(
            throttle.check(&config, now, address(3), name("admin")),
            Err(Refusal::Checking)
        );
        throttle.finish(&config, now, address(2), name("admin"), Some(false));
        let wait = Err(Refusal::Wait(Duration::from_secs(1)));
        assert_eq!(throttle.check(&config, now, address(2), name("x")), wait);
        assert_eq!(
            throttle.check(&config, now, address(3), name("ADMIN")),
            wait
        );
        assert_eq!(throttle.check(&config, now, address(3), name("x")), Ok(()));
        let later = now + Duration::from_secs(1);
        assert_eq!(
            throttle.check(&config, later, address(2), name("admin")),
            Ok(())
        );
    }

    #[test]
    fn a_match_forgets_the_names_failures_but_not_the_addresss() {
        let config = LoginConfig::default();
        let mut throttle = Throttle::default();
        let now = crate::test_support::epoch();
        throttle.finish(&config, now, address(2), name("admin"), Some(false));
        throttle.finish(&config, now, address(2), name("admin"), Some(true));
        assert_eq!(throttle.tracked(), (1, 0));
        // The address waits out its failure, then may try any name.
        assert_eq!(
            throttle.check(&config, now, address(2), name("other")),
            Err(Refusal::Wait(Duration::from_secs(1)))
        );
        assert_eq!(
            throttle.check(
                &config,
                now + Duration::from_secs(1),
                address(2),
                name("admin")
            ),
            Ok(())
        );
    }

    #[test]
    fn failures_are_forgotten_after_a_quiet_spell() {
        let config = LoginConfig::default();
        let mut throttle = Throttle::default();
        let now = crate::test_support::epoch();
        for _ in 0..3 {
            throttle.finish(&config, now, address(2), None, Some(false));
        }
        let much_later = now + Duration::from_secs(4) + config.forget_after;
        throttle.finish(&config, much_later, address(2), None, Some(false));
        assert_eq!(
            throttle.check(&config, much_later, address(2), None),
            Err(Refusal::Wait(Duration::from_secs(1)))
        );
    }

    #[test]
    fn tables_never_hold_more_than_max_tracked_and_drop_the_oldest() {
        let config = LoginConfig {
            max_tracked: 3,
            ..LoginConfig::default()
        };
        let mut throttle = Throttle::default();
        let start = crate::test_support::epoch();
        for last in 1..=10u8 {
            let now = start + Duration::from_millis(u64::from(last));
            let nick = format!("user{last}");
            throttle.finish(&config, now, address(last), name(&nick), Some(false));
            assert!(throttle.tracked().0 <= 3 && throttle.tracked().1 <= 3);
        }
        let now = start + Duration::from_millis(10);
        assert_eq!(throttle.check(&config, now, address(1), None), Ok(()));
        assert!(throttle.check(&config, now, address(10), None).is_err());
    }

    #[test]
    fn the_dummy_hash_has_the_template_parameters_and_parses() {
        let template = "$argon2id$v=19$m=1024,t=1,p=1$Y2hhdGQtdHJhbnNjcmlwdHM$607V5zJpUmsmI3NpQeCJXClNnsXw/01C4mbkTOOEljk";
        let dummy = dummy_hash(Some(template));
        let parsed = PasswordHash::new(&dummy).unwrap();
        let original = PasswordHash::new(template).unwrap();
        assert_eq!(parsed.algorithm, original.algorithm);
        assert_eq!(parsed.params, original.params);
        assert_eq!(parsed.hash.unwrap().len(), original.hash.unwrap().len());
        assert_ne!(dummy, template);
        let default_dummy = dummy_hash(None);
        let default = PasswordHash::new(&default_dummy).unwrap();
        assert_eq!(default.params.get_decimal("m"), Some(19_456));
        assert_eq!(default.params.get_decimal("t"), Some(2));
        // Without an output, argon2 would answer without hashing at all.
        assert_eq!(default.hash.map(|output| output.len()), Some(32));
    }

    #[test]
    fn a_password_never_shows_in_debug_output() {
        let password = Password::new("hunter2");
        assert!(!format!("{password:?}").contains("hunter2"));
        assert_eq!(password.expose(), "hunter2");
    }
}
