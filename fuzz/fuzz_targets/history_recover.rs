//! Recovery of a room log from arbitrary bytes (`history::recover` and
//! `history::decode`). Checked:
//!
//! 1. nothing panics;
//! 2. `valid_len` never exceeds the input, and ends at a line boundary;
//! 3. a torn tail starts at or after `valid_len` and reaches the end of the
//!    input; skipped damage lies before `valid_len`;
//! 4. recovering only the first `valid_len` bytes (what the writer keeps
//!    after cutting the tail) gives the same records with no torn tail;
//! 5. every record re-encodes to one line that decodes to itself, and the
//!    re-encoded records recover to the same records, undamaged, with
//!    `valid_len` the whole re-encoded log.

#![no_main]

use chatd_core::history::{self, recover};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let recovery = recover(bytes);
    let valid = recovery.valid_len;
    assert!(valid <= bytes.len(), "valid_len {valid} > {}", bytes.len());
    assert!(
        valid == 0 || bytes[valid - 1] == b'\n',
        "valid_len mid-line"
    );
    if let Some(torn) = &recovery.torn_tail {
        assert!(torn.offset >= valid, "torn tail before valid_len");
        assert_eq!(
            torn.offset + torn.len,
            bytes.len(),
            "torn tail short of the end"
        );
    }
    for damage in &recovery.skipped {
        assert!(
            damage.offset + damage.len <= valid,
            "skipped damage after valid_len"
        );
    }
    assert!(recovery.records.is_empty() == (valid == 0));

    let cut = recover(&bytes[..valid]);
    assert_eq!(
        cut.records, recovery.records,
        "cutting the tail lost records"
    );
    assert!(cut.torn_tail.is_none(), "a cut log still has a torn tail");
    assert_eq!(cut.valid_len, valid);

    let mut log = Vec::new();
    for record in &recovery.records {
        let line = history::encode(record);
        assert_eq!(line.last(), Some(&b'\n'));
        let body = &line[..line.len() - 1];
        assert!(
            !body.contains(&b'\n'),
            "a record encodes to more than one line"
        );
        assert_eq!(
            history::decode(body).as_ref(),
            Ok(record),
            "record does not round-trip"
        );
        log.extend_from_slice(&line);
    }
    let again = recover(&log);
    assert_eq!(
        again.records, recovery.records,
        "re-encoded records recover differently"
    );
    assert!(again.skipped.is_empty() && again.torn_tail.is_none());
    assert_eq!(again.valid_len, log.len());
});
