//! Keys and crypto: the session token, access JWTs, sealing data at rest, the key file,
//! randomness, and the types that keep secrets out of logs.

pub mod crypto;
pub mod jwt;
pub mod key_file;
pub mod password;
pub mod random;
pub mod sealed;
pub mod secret;
pub mod token;
