//! Operations: the admin commands' work, backups, `wxauth check`, keeping the key file
//! and the database together, the periodic maintenance, and metrics.

pub mod admin;
pub mod admins;
pub mod audit;
pub mod backup;
pub mod check;
pub mod key_guard;
pub mod maintenance;
pub mod merge;
pub mod metrics;
pub mod overview;
