//! What changed in the database since a point in time, for a caller that keeps copies
//! of rows in memory and must never use one that has since changed.
//!
//! SQLite's update hook on the writer's connection names every `users`, `identities` and
//! `sessions` row a transaction updates or deletes, and the writer publishes them after the commit
//! and before it answers anyone. Inserted rows are left out: no copy can hold a row read
//! before it existed, and a row id used again after a delete was made stale by that
//! delete. So a login that makes a new user disturbs no other session's copy. Each row falls into one of a fixed set of stripes, and a stripe
//! holds the number of the last commit that touched one of its rows. A copy taken at
//! commit number `m` stays good while none of its rows' stripes moved past `m`. Two rows
//! sharing a stripe only make a copy look stale too soon, never too late. (SQLite skips
//! the hook for rows that an `INSERT OR REPLACE` deletes; no statement on these two
//! tables uses one, and none may.)
//!
//! Other processes' commits (the admin commands: `wxauth users ban`, `wxauth sessions
//! revoke`, …, or an `UPDATE` in the `sqlite3` shell) cannot be followed row by row.
//! The writer's connection sees that one happened: its `PRAGMA data_version` changes
//! with every commit made by another connection, and never with its own. While copies
//! are in use, the server has the writer look every [`LOOK_INTERVAL`], and a look that
//! finds the value changed makes every copy taken before it stale. A copy is used only
//! while the latest look began less than [`MAX_EXTERNAL_LAG`] ago, and the admin
//! commands wait that long after they commit while a server runs (see
//! [`open_existing`](super::open_existing)): by the time one returns, a look has seen
//! its commit, or no copy is in use.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rusqlite::hooks::Action;

use crate::spread::spread;

/// How long after another process commits a change the server may still use a copy
/// from before it; the admin commands wait this long after each commit.
pub const MAX_EXTERNAL_LAG: Duration = Duration::from_millis(500);

/// How often the writer looks for other processes' commits while copies are in use: a
/// fifth of [`MAX_EXTERNAL_LAG`], so that a look waiting behind a queue of writes
/// rarely lets the copies lapse.
pub const LOOK_INTERVAL: Duration = Duration::from_millis(100);

/// Stripes are `2^STRIPE_BITS`: 128 KiB of counters, few enough that a login touching
/// three rows rarely disturbs another session's copy.
const STRIPE_BITS: u32 = 14;

/// A row whose copies a change makes stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangedRow {
    User(i64),
    Identity(i64),
    Session(i64),
}

impl ChangedRow {
    /// The row an update hook call names, when it is one whose copies it can make
    /// stale: an updated or deleted row of a table whose copies are kept.
    pub(super) fn from_hook(action: Action, table: &str, rowid: i64) -> Option<ChangedRow> {
        if action == Action::SQLITE_INSERT {
            return None;
        }
        match table {
            "users" => Some(ChangedRow::User(rowid)),
            "identities" => Some(ChangedRow::Identity(rowid)),
            "sessions" => Some(ChangedRow::Session(rowid)),
            _ => None,
        }
    }

    /// Whether a change to this row makes copies of `other` look stale too.
    #[cfg(test)]
    pub(crate) fn shares_stripe_with(self, other: ChangedRow) -> bool {
        self.stripe() == other.stripe()
    }

    fn stripe(self) -> usize {
        // The table's own constant keeps user 7, identity 7 and session 7 apart.
        let (table, id) = match self {
            ChangedRow::User(id) => (0x5555_5555_5555_5555_u64, id),
            ChangedRow::Identity(id) => (0x3333_3333_3333_3333_u64, id),
            ChangedRow::Session(id) => (0xaaaa_aaaa_aaaa_aaaa_u64, id),
        };
        spread(id as u64 ^ table, STRIPE_BITS) as usize
    }
}

/// A point in the database's history, taken before reading the copy it dates: the
/// server's commits so far, and the looks that found other processes' commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    commits: u64,
    external: u64,
}

/// The record of what changed; see the module documentation.
#[derive(Debug)]
pub struct Changes {
    commits: AtomicU64,
    stripes: Box<[AtomicU64]>,
    /// Looks that found other processes' commits.
    external: AtomicU64,
    /// `PRAGMA data_version` at the latest look; `i64::MIN` before the first, so that
    /// the first counts as a change too and dates every copy from before it stale.
    data_version: AtomicI64,
    /// When the latest look began, in nanoseconds since `started`; `u64::MAX` before
    /// the first.
    looked_at: AtomicU64,
    started: Instant,
    /// Whether a copy was asked for since [`Changes::look_wanted`] last said so.
    wanted: AtomicBool,
}

impl Default for Changes {
    fn default() -> Self {
        Changes {
            commits: AtomicU64::new(0),
            stripes: (0..1 << STRIPE_BITS).map(|_| AtomicU64::new(0)).collect(),
            external: AtomicU64::new(0),
            data_version: AtomicI64::new(i64::MIN),
            looked_at: AtomicU64::new(u64::MAX),
            started: Instant::now(),
            wanted: AtomicBool::new(false),
        }
    }
}

impl Changes {
    /// Publishes one commit of the server's that touched `rows`.
    pub(super) fn committed(&self, rows: impl IntoIterator<Item = ChangedRow>) {
        let commit = self.commits.fetch_add(1, Ordering::SeqCst) + 1;
        for row in rows {
            self.stripes[row.stripe()].fetch_max(commit, Ordering::SeqCst);
        }
    }

    /// The current point, to be taken before reading the rows it will date.
    pub fn mark(&self) -> Mark {
        Mark {
            commits: self.commits.load(Ordering::SeqCst),
            external: self.external.load(Ordering::SeqCst),
        }
    }

    /// Whether, as far as the server can tell at `now`, nothing has changed `rows` since
    /// `mark`: none of its commits touched them, no look found another process's commit,
    /// and the latest look began less than [`MAX_EXTERNAL_LAG`] ago.
    pub fn unchanged_since(&self, mark: Mark, rows: &[ChangedRow], now: Instant) -> bool {
        // A look publishes its finding before its time, and its time is read here first:
        // a look recent enough to count has its finding seen too.
        let looked_at = self.looked_at.load(Ordering::SeqCst);
        let since_start = now.saturating_duration_since(self.started).as_nanos();
        let recent = looked_at != u64::MAX
            && since_start.saturating_sub(u128::from(looked_at)) < MAX_EXTERNAL_LAG.as_nanos();
        recent
            && self.external.load(Ordering::SeqCst) == mark.external
            && rows
                .iter()
                .all(|row| self.stripes[row.stripe()].load(Ordering::SeqCst) <= mark.commits)
    }

    /// Asks for looks to go on: a copy is wanted.
    pub fn want_looks(&self) {
        // Read first: the flag's cache line then stays shared while it is set.
        if !self.wanted.load(Ordering::Relaxed) {
            self.wanted.store(true, Ordering::Relaxed);
        }
    }

    /// Whether [`Changes::want_looks`] was called since the last call: the writer need
    /// look for other processes' commits only then, so an idle server makes no looks.
    pub fn look_wanted(&self) -> bool {
        self.wanted.swap(false, Ordering::Relaxed)
    }

    /// Records a look begun at `began`, on the writer's connection outside any
    /// transaction, that read `data_version`.
    pub(super) fn looked(&self, data_version: i64, began: Instant) {
        if self.data_version.swap(data_version, Ordering::SeqCst) != data_version {
            self.external.fetch_add(1, Ordering::SeqCst);
        }
        let at = began.saturating_duration_since(self.started).as_nanos();
        self.looked_at
            .store(u64::try_from(at).unwrap_or(u64::MAX - 1), Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Changes that a look at `data_version` 1 has just vouched for.
    fn looked_now() -> (Changes, Instant) {
        let changes = Changes::default();
        let now = Instant::now();
        changes.looked(1, now);
        (changes, now)
    }

    #[test]
    fn a_commit_makes_its_rows_stale_and_leaves_others_alone() {
        let (changes, now) = looked_now();
        let unchanged = |mark, rows: &[ChangedRow]| changes.unchanged_since(mark, rows, now);
        let before = changes.mark();
        changes.committed([ChangedRow::User(7), ChangedRow::Session(40)]);
        assert!(!unchanged(before, &[ChangedRow::User(7)]));
        assert!(!unchanged(before, &[ChangedRow::Session(40)]));
        assert!(!unchanged(
            before,
            &[ChangedRow::Session(1), ChangedRow::User(7)]
        ));
        assert!(unchanged(before, &[ChangedRow::Session(7)]));
        assert!(unchanged(
            before,
            &[ChangedRow::User(40), ChangedRow::User(8)]
        ));

        let after = changes.mark();
        assert!(unchanged(
            after,
            &[ChangedRow::User(7), ChangedRow::Session(40)]
        ));
    }

    #[test]
    fn a_look_that_finds_another_processs_commit_makes_every_earlier_copy_stale() {
        let (changes, now) = looked_now();
        let rows = [ChangedRow::User(1), ChangedRow::Session(1)];
        let before = changes.mark();
        changes.looked(1, now);
        assert!(changes.unchanged_since(before, &rows, now), "nothing new");
        changes.looked(2, now);
        assert!(
            !changes.unchanged_since(before, &rows, now),
            "another commit"
        );
        assert!(
            changes.unchanged_since(changes.mark(), &rows, now),
            "dated after"
        );
    }

    #[test]
    fn nothing_counts_as_unchanged_without_a_recent_look() {
        let changes = Changes::default();
        let rows = [ChangedRow::User(1)];
        let mark = changes.mark();
        let now = Instant::now();
        assert!(!changes.unchanged_since(mark, &rows, now), "no look yet");
        changes.looked(1, now);
        assert!(
            !changes.unchanged_since(mark, &rows, now),
            "the first look dates earlier copies stale"
        );
        let mark = changes.mark();
        assert!(changes.unchanged_since(mark, &rows, now));
        let later = now + MAX_EXTERNAL_LAG - Duration::from_millis(1);
        assert!(changes.unchanged_since(mark, &rows, later));
        let too_late = now + MAX_EXTERNAL_LAG;
        assert!(!changes.unchanged_since(mark, &rows, too_late));
    }

    #[test]
    fn looks_are_wanted_only_after_a_copy_was_asked_for() {
        let changes = Changes::default();
        assert!(!changes.look_wanted());
        changes.want_looks();
        changes.want_looks();
        assert!(changes.look_wanted());
        assert!(!changes.look_wanted(), "until the next ask");
    }

    #[test]
    fn hook_calls_map_to_rows_and_stripes_spread() {
        let update = Action::SQLITE_UPDATE;
        assert_eq!(
            ChangedRow::from_hook(update, "users", 3),
            Some(ChangedRow::User(3))
        );
        assert_eq!(
            ChangedRow::from_hook(Action::SQLITE_DELETE, "sessions", 3),
            Some(ChangedRow::Session(3))
        );
        assert_eq!(ChangedRow::from_hook(update, "login_codes", 3), None);
        assert_eq!(
            ChangedRow::from_hook(Action::SQLITE_INSERT, "sessions", 3),
            None,
            "a new row is in no copy"
        );
        let stripes: std::collections::HashSet<usize> = (0..1000)
            .map(|id| ChangedRow::Session(id).stripe())
            .collect();
        assert!(stripes.len() > 950, "{} distinct stripes", stripes.len());
        assert_ne!(
            ChangedRow::User(5).stripe(),
            ChangedRow::Session(5).stripe()
        );
    }
}
