//! wxauth: a self-hosted login and session server for WeChat Mini Programs.
//!
//! A mini program's `wx.login` code comes in, WeChat's `jscode2session` is asked who it
//! belongs to, the user and session are kept in one SQLite file, and an HMAC-signed token
//! goes back. `App` runs the whole server; the modules below are its parts.

pub mod access_token;
pub mod admin;
pub mod app;
pub mod avatars;
pub mod backup;
pub mod check;
pub mod cli;
pub mod clock;
pub mod config;
pub mod content_check;
pub mod crypto;
pub mod datadir;
pub mod db;
pub mod http;
pub mod keys;
pub mod login;
pub mod maintenance;
pub mod metrics;
pub mod mock_wechat;
pub mod phone;
pub mod profile;
pub mod random;
pub mod ratelimit;
pub mod recent_codes;
pub mod sealed;
pub mod secret;
pub mod server;
pub mod service_keys;
pub mod session_cache;
pub mod session_keys;
pub mod sessions;
pub mod spread;
pub mod store;
pub mod token;
pub mod wechat;
pub mod wechat_profile;

pub use app::App;
pub use config::Config;
