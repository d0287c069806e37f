//! Operations: the admin commands' work, backups, `wxauth check`, the periodic
//! maintenance, and metrics.

pub mod admin;
pub mod backup;
pub mod check;
pub mod maintenance;
pub mod metrics;
