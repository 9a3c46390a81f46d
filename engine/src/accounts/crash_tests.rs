//! The account store's crash test: random changes over several restarts
//! on the simulated disk (`persist/sim.rs`), with injected failures (a
//! write cut short, failed syncs and length changes, a failed open), and
//! the power cut before any operation. After the cut the store must open
//! and hold exactly what was promised: every change `apply` acknowledged
//! (and every account an earlier open handed out), possibly plus one
//! change that was attempted after the last promise; never a damaged
//! store, never a lost acknowledged change.

use std::collections::BTreeMap;

use chatd_core::{Account, AccountChange, Nick};
use quickcheck::{QuickCheck, TestResult};

use super::store::{AccountStore, apply_to};
use crate::persist::sim::{Faults, Image, Rng, SimDisk};

/// Live accounts by folded name.
type State = BTreeMap<Nick, Account>;

/// What the store promised, in order, with the disk's operation count.
#[derive(Debug)]
enum Mark {
    /// This state is durable once `at` operations are done: `apply`
    /// returned Ok, or `open` handed these accounts out.
    Promise { at: u64, state: State },
    /// `apply` of this change began after `at` operations.
    Attempt { at: u64, change: AccountChange },
}

/// The states the disk may hold after a power cut before operation
/// `cut`: the last promise made by then, alone or with one change
/// attempted after it (the one in flight, or a failed one the store had
/// not yet been able to cut off).
fn allowed(marks: &[Mark], cut: u64) -> Vec<State> {
    let (from, promised) = marks
        .iter()
        .enumerate()
        .rev()
        .find_map(|(index, mark)| match mark {
            Mark::Promise { at, state } if *at <= cut => Some((index, state.clone())),
            _ => None,
        })
        .unwrap_or_default();
    let mut states = vec![promised.clone()];
    for mark in &marks[from..] {
        if let Mark::Attempt { at, change } = mark
            && *at < cut
        {
            let mut state = promised.clone();
            apply_to(&mut state, change.clone());
            states.push(state);
        }
    }
    states
}

fn state_of(accounts: Vec<Account>) -> State {
    accounts
        .into_iter()
        .map(|account| (account.name.folded(), account))
        .collect()
}

/// A random change among a few names, so that puts replace each other
/// and the log grows past twice its live size (compaction at open).
fn a_change(rng: &mut Rng, n: u64) -> AccountChange {
    let name = ["alice", "Bob", "carol"][rng.below(3) as usize];
    let name = Nick::parse(name).expect("valid nick");
    if rng.chance(250) {
        return AccountChange::Remove { name };
    }
    AccountChange::Put(Account {
        name,
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$salt{n}$hash{n}"),
        operator: rng.chance(300),
        registered_at_ms: 1_795_000_000_000 + n,
    })
}

/// Runs `restarts + 1` sessions of `steps` changes each on one disk with
/// the power cut before operation `cut`; returns the promises, the
/// image at the cut and the cut's operation count.
fn run(seed: u64, faults: Faults, steps: u64, restarts: u64, cut: u64) -> (Vec<Mark>, Image, u64) {
    let disk = SimDisk::new(seed, faults);
    disk.cut_before(cut);
    let mut rng = Rng::new(seed ^ 0x5bd1_e995);
    let mut marks = vec![Mark::Promise {
        at: 0,
        state: State::new(),
    }];
    let mut n = 0;
    for _ in 0..=restarts {
        let Ok((mut store, accounts)) = AccountStore::open_on(disk.clone()) else {
            // An injected failure: nothing was handed out.
            continue;
        };
        let state = state_of(accounts);
        assert!(
            allowed(&marks, disk.ops()).contains(&state),
            "open handed out {state:?}, not what was promised: {marks:?}"
        );
        marks.push(Mark::Promise {
            at: disk.ops(),
            state: state.clone(),
        });
        let mut state = state;
        for _ in 0..steps {
            n += 1;
            let change = a_change(&mut rng, n);
            marks.push(Mark::Attempt {
                at: disk.ops(),
                change: change.clone(),
            });
            if store.apply(&change).is_ok() {
                apply_to(&mut state, change);
                marks.push(Mark::Promise {
                    at: disk.ops(),
                    state: state.clone(),
                });
            }
        }
    }
    let cut = cut.min(disk.ops());
    (marks, disk.image(), cut)
}

/// Opens what survived the cut and checks it against the promises, then
/// that the recovered store takes and keeps a new change.
fn check(marks: &[Mark], image: &Image, cut: u64, seed: u64) -> Result<(), String> {
    let disk = SimDisk::from_image(image, seed);
    let (mut store, accounts) = AccountStore::open_on(disk.clone())
        .map_err(|error| format!("the store does not open after the cut: {error}"))?;
    let mut state = state_of(accounts);
    let allowed = allowed(marks, cut);
    if !allowed.contains(&state) {
        return Err(format!(
            "after a cut before op {cut} the store holds {state:?}; allowed: {allowed:?}"
        ));
    }
    let change = a_change(&mut Rng::new(seed), 1_000);
    store
        .apply(&change)
        .map_err(|error| format!("the recovered store refuses a change: {error}"))?;
    apply_to(&mut state, change);
    drop(store);
    let (_store, reopened) = AccountStore::open_on(disk)
        .map_err(|error| format!("the store does not reopen: {error}"))?;
    if state_of(reopened) != state {
        return Err("a change to the recovered store was lost".into());
    }
    Ok(())
}

#[test]
fn a_power_cut_before_any_operation_keeps_exactly_the_acknowledged_changes() {
    for seed in 1..=25 {
        // How many operations the whole run takes without a cut.
        let disk_ops = {
            let (_, _, ops) = run(seed, Faults::default(), 10, 3, u64::MAX);
            ops
        };
        for cut in 0..=disk_ops {
            let (marks, image, cut) = run(seed, Faults::default(), 10, 3, cut);
            if let Err(problem) = check(&marks, &image, cut, seed) {
                panic!("seed {seed}: {problem}");
            }
        }
    }
}

fn crash_property(seed: u64, steps: u8, restarts: u8, faulty: bool, cut: u16) -> TestResult {
    let faults = if faulty {
        Faults {
            write: 60,
            set_len: 60,
            sync: 60,
            sync_dir: 60,
            open: 60,
        }
    } else {
        Faults::default()
    };
    let (marks, image, cut) = run(
        seed,
        faults,
        u64::from(steps % 30),
        u64::from(restarts % 5),
        u64::from(cut),
    );
    match check(&marks, &image, cut, seed) {
        Ok(()) => TestResult::passed(),
        Err(problem) => TestResult::error(problem),
    }
}

#[test]
fn failed_writes_syncs_and_opens_never_lose_or_damage_accounts() {
    QuickCheck::new()
        .tests(3000)
        .max_tests(3000)
        .quickcheck(crash_property as fn(u64, u8, u8, bool, u16) -> TestResult);
}
