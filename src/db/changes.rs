//! What the server changed in the database since a point in time, for a caller that
//! keeps copies of rows in memory and must never use one the server has since changed.
//!
//! SQLite's update hook on the writer's connection names every `users` and `sessions`
//! row a transaction touches, and the writer publishes them after the commit and before
//! it answers anyone. Each row falls into one of a fixed set of stripes, and a stripe
//! holds the number of the last commit that touched one of its rows. A copy taken at
//! commit number `m` stays good while none of its rows' stripes moved past `m`. Two rows
//! sharing a stripe only make a copy look stale too soon, never too late. (SQLite skips
//! the hook for rows that an `INSERT OR REPLACE` deletes; no statement on these two
//! tables uses one, and none may.)
//!
//! Other processes' commits (the admin commands: `wxauth users ban`, `wxauth sessions
//! revoke`, …) cannot be followed this way. A copy is therefore used for
//! [`MAX_COPY_AGE`] at most, and those commands wait that long after they commit while
//! a server runs (see [`open_existing`](super::open_existing)): by the time one returns,
//! no copy from before its change is left in use.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The longest a copy of rows may be used, counted from before it was read.
pub const MAX_COPY_AGE: Duration = Duration::from_millis(500);

/// Stripes are `2^STRIPE_BITS`: 128 KiB of counters, few enough that a login touching
/// three rows rarely disturbs another session's copy.
const STRIPE_BITS: u32 = 14;

/// A row whose copies a change makes stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangedRow {
    User(i64),
    Session(i64),
}

impl ChangedRow {
    /// The row an update hook call names, when it is one whose copies are kept.
    pub(super) fn from_hook(table: &str, rowid: i64) -> Option<ChangedRow> {
        match table {
            "users" => Some(ChangedRow::User(rowid)),
            "sessions" => Some(ChangedRow::Session(rowid)),
            _ => None,
        }
    }

    fn stripe(self) -> usize {
        // Fibonacci hashing spreads consecutive ids over the stripes; the table's own
        // constant keeps user 7 and session 7 apart.
        let (table, id) = match self {
            ChangedRow::User(id) => (0x5555_5555_5555_5555_u64, id),
            ChangedRow::Session(id) => (0xaaaa_aaaa_aaaa_aaaa_u64, id),
        };
        ((id as u64 ^ table).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - STRIPE_BITS)) as usize
    }
}

/// A point in the server's history of commits, taken before reading the copy it dates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark(u64);

/// The server's record of what it changed; see the module documentation.
#[derive(Debug)]
pub struct Changes {
    commits: AtomicU64,
    stripes: Box<[AtomicU64]>,
}

impl Default for Changes {
    fn default() -> Self {
        Changes {
            commits: AtomicU64::new(0),
            stripes: (0..1 << STRIPE_BITS).map(|_| AtomicU64::new(0)).collect(),
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
        Mark(self.commits.load(Ordering::SeqCst))
    }

    /// Whether no commit since `mark` touched any of `rows`.
    pub fn unchanged_since(&self, mark: Mark, rows: &[ChangedRow]) -> bool {
        rows.iter()
            .all(|row| self.stripes[row.stripe()].load(Ordering::SeqCst) <= mark.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_makes_its_rows_stale_and_leaves_others_alone() {
        let changes = Changes::default();
        let before = changes.mark();
        changes.committed([ChangedRow::User(7), ChangedRow::Session(40)]);
        assert!(!changes.unchanged_since(before, &[ChangedRow::User(7)]));
        assert!(!changes.unchanged_since(before, &[ChangedRow::Session(40)]));
        assert!(!changes.unchanged_since(before, &[ChangedRow::Session(1), ChangedRow::User(7)]));
        assert!(changes.unchanged_since(before, &[ChangedRow::Session(7)]));
        assert!(changes.unchanged_since(before, &[ChangedRow::User(40), ChangedRow::User(8)]));

        let after = changes.mark();
        assert!(changes.unchanged_since(after, &[ChangedRow::User(7), ChangedRow::Session(40)]));
    }

    #[test]
    fn hook_tables_map_to_rows_and_stripes_spread() {
        assert_eq!(ChangedRow::from_hook("users", 3), Some(ChangedRow::User(3)));
        assert_eq!(
            ChangedRow::from_hook("sessions", 3),
            Some(ChangedRow::Session(3))
        );
        assert_eq!(ChangedRow::from_hook("login_codes", 3), None);
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
