//! WeChat's server API: the client and its error codes, the managed access_token, and
//! the fake WeChat that dev mode and the tests talk to.

pub mod access_token;
pub mod client;
pub mod fake;
