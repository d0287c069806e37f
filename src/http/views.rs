//! The JSON the API sends: what a mini program may see of users and sessions.

use serde::Serialize;

use crate::clock::{Rfc3339, UnixTime};
use crate::db::queries::{IdentityRow, SessionRow, UserRow};
use crate::domain::login::LoginOutcome;
use crate::domain::sessions::seconds_until;

/// The User object: no openid, unionid or session_key.
#[derive(Debug, Serialize)]
pub struct UserView<'a> {
    id: &'a str,
    /// The app the current session logged in through.
    appid: &'a str,
    /// The apps of all of the person's identities, oldest first.
    apps: &'a [String],
    nickname: Option<&'a str>,
    avatar_url: Option<&'a str>,
    gender: i64,
    country: Option<&'a str>,
    province: Option<&'a str>,
    city: Option<&'a str>,
    language: Option<&'a str>,
    phone: Option<&'a str>,
    created_at: Rfc3339,
    updated_at: Rfc3339,
}

impl<'a> UserView<'a> {
    /// The User `u` as seen through a session that logged in with `identity`.
    pub fn new(u: &'a UserRow, identity: &'a IdentityRow) -> Self {
        UserView {
            id: &u.public_id,
            appid: &identity.appid,
            apps: &u.apps,
            nickname: u.nickname.as_deref(),
            avatar_url: u.avatar_url.as_deref(),
            gender: u.gender,
            country: u.country.as_deref(),
            province: u.province.as_deref(),
            city: u.city.as_deref(),
            language: u.language.as_deref(),
            phone: u.phone.as_deref(),
            created_at: Rfc3339(u.created_at),
            updated_at: Rfc3339(u.updated_at),
        }
    }
}

/// The session part of `GET /v1/session`.
#[derive(Debug, Serialize)]
pub struct SessionView<'a> {
    id: &'a str,
    created_at: Rfc3339,
    expires_at: Rfc3339,
    last_seen_at: Rfc3339,
}

impl<'a> From<&'a SessionRow> for SessionView<'a> {
    fn from(s: &'a SessionRow) -> Self {
        SessionView {
            id: &s.public_id,
            created_at: Rfc3339(s.created_at),
            expires_at: Rfc3339(s.expires_at),
            last_seen_at: Rfc3339(s.last_seen_at),
        }
    }
}

/// `GET /v1/session`.
#[derive(Debug, Serialize)]
pub struct SessionInfo<'a> {
    pub user: UserView<'a>,
    pub session: SessionView<'a>,
}

/// The answer to a login or a refresh.
#[derive(Debug, Serialize)]
pub struct TokenResponse<'a> {
    token: &'a str,
    token_type: &'static str,
    expires_in: i64,
    expires_at: Rfc3339,
    new_user: bool,
    user: UserView<'a>,
}

impl<'a> TokenResponse<'a> {
    /// The response for a login outcome at `now`.
    pub fn new(outcome: &'a LoginOutcome, now: UnixTime) -> Self {
        TokenResponse {
            token: &outcome.token,
            token_type: "Bearer",
            expires_in: seconds_until(outcome.session.expires_at, now),
            expires_at: Rfc3339(outcome.session.expires_at),
            new_user: outcome.new_user,
            user: UserView::new(&outcome.user, &outcome.identity),
        }
    }
}
