//! The rules of login, sessions and the profile. Domain code takes what it uses (the
//! database, the WeChat client, the clock, the keys) and returns [`Error`]; the HTTP
//! edge decides how each error is answered.

pub mod access_jwts;
pub mod avatars;
pub mod content_check;
pub mod error;
pub mod login;
pub mod phone;
pub mod profile;
pub mod profiles;
pub mod recent_codes;
pub mod service_keys;
pub mod session_cache;
pub mod session_keys;
pub mod sessions;
pub mod web_login;
pub mod wechat_profile;

pub use error::Error;
