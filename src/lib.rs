//! wxauth: a self-hosted login and session server for WeChat Mini Programs.
//!
//! A mini program's `wx.login` code comes in, WeChat's `jscode2session` is asked who it
//! belongs to, the user and session are kept in one SQLite file, and an HMAC-signed token
//! goes back. `App` runs the whole server; the modules below are its parts.
//!
//! The folders are layers, and imports point down this list only (`.ci/layers` checks
//! it, and that no two modules import each other):
//!
//! | layer | what it owns |
//! |---|---|
//! | [`cli`] | the `wxauth` command, one file per command group |
//! | [`app`] | the composition root: opens everything and starts serving |
//! | [`http`] | the HTTP edge: routes, handlers, views, the one error mapping |
//! | [`ops`] | operations: admin, backup, check, maintenance, metrics |
//! | [`domain`] | the rules of login, sessions and the profile |
//! | [`wechat`] | WeChat's API: the client, its error codes, the managed access_token, the fake |
//! | [`db`] | storage: connections, the writer, migrations, queries |
//! | [`config`] | settings from defaults, the config file, the environment and flags |
//! | [`keys`] | keys and crypto: tokens, sealing, the key file, randomness, secrets |
//! | [`clock`], [`datadir`], [`redirect_uri`], [`spread`] | time, the data directory's files, which URLs a web login may return to, hashing spread |

pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod datadir;
pub mod db;
pub mod domain;
pub mod http;
pub mod keys;
pub mod ops;
pub mod redirect_uri;
pub mod spread;
pub mod wechat;

pub use app::App;
pub use config::Config;
