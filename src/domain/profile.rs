//! Profile changes (`PATCH /v1/me`): which fields exist, what each accepts, and `null`
//! to clear; a new nickname is checked with WeChat where the app asks for it.

use serde_json::{Map, Value};

use crate::db::queries::{self, FieldValue, IdentityRow, ProfileField, UserRow};
use crate::domain::content_check;
use crate::domain::error::Error;
use crate::domain::profiles::Profiles;

const NICKNAME_MAX_CHARS: usize = 64;
const TEXT_MAX_CHARS: usize = 64;
const AVATAR_URL_MAX_BYTES: usize = 1024;

/// Applies a `PATCH /v1/me` body to `user`, checking a new nickname with WeChat where
/// the app of `identity` (the one the user logged in with) asks for it; returns the
/// updated user.
pub async fn update(
    profiles: &Profiles,
    user: &UserRow,
    identity: &IdentityRow,
    patch: Value,
) -> Result<UserRow, Error> {
    let changes = parse_patch(patch, profiles.public_url.as_deref())?;
    if let Some((_, FieldValue::Text(nickname))) =
        changes.iter().find(|(f, _)| *f == ProfileField::Nickname)
    {
        let app = profiles.app_of(identity)?;
        content_check::check_nickname(profiles, app, user, identity, nickname).await?;
    }
    if changes.is_empty() {
        return Ok(user.clone());
    }
    let (user_id, now) = (user.id, profiles.clock.now());
    Ok(profiles
        .db
        .write(move |c| queries::update_profile(c, user_id, &changes, now))
        .await?)
}

/// Parses a `PATCH /v1/me` body into the changes to apply, in field order.
/// `public_url` is the base of URLs wxauth itself serves, accepted as avatars too.
pub fn parse_patch(
    body: Value,
    public_url: Option<&str>,
) -> Result<Vec<(ProfileField, FieldValue)>, Error> {
    let Value::Object(map) = body else {
        return Err(Error::invalid("the body must be a JSON object"));
    };
    reject_unknown(&map)?;
    let mut changes = Vec::new();
    for field in ProfileField::ALL {
        let Some(value) = map.get(field.name()) else {
            continue;
        };
        let value = match value {
            Value::Null => FieldValue::Clear,
            value => parse_field(field, value, public_url)?,
        };
        changes.push((field, value));
    }
    Ok(changes)
}

fn reject_unknown(map: &Map<String, Value>) -> Result<(), Error> {
    for key in map.keys() {
        if !ProfileField::ALL.iter().any(|f| f.name() == key) {
            return Err(Error::invalid(format!(
                "unknown field `{key}`; allowed: nickname, avatar_url, gender, country, \
                 province, city, language"
            )));
        }
    }
    Ok(())
}

/// Checks one field's new value against its rules.
pub fn parse_field(
    field: ProfileField,
    value: &Value,
    public_url: Option<&str>,
) -> Result<FieldValue, Error> {
    let name = field.name();
    if field == ProfileField::Gender {
        return match value.as_i64() {
            Some(n @ 0..=2) if value.is_i64() || value.is_u64() => Ok(FieldValue::Number(n)),
            _ => Err(Error::invalid(
                "`gender` must be 0 (unknown), 1 (male) or 2 (female)",
            )),
        };
    }
    let Value::String(text) = value else {
        return Err(Error::invalid(format!("`{name}` must be a string or null")));
    };
    match field {
        ProfileField::Nickname => {
            let trimmed = text.trim();
            let chars = trimmed.chars().count();
            if chars == 0 || chars > NICKNAME_MAX_CHARS {
                return Err(Error::invalid(format!(
                    "`nickname` must be 1 to {NICKNAME_MAX_CHARS} characters after trimming"
                )));
            }
            reject_control(name, trimmed)?;
            Ok(FieldValue::Text(trimmed.to_owned()))
        }
        ProfileField::AvatarUrl => {
            validate_avatar_url(text, public_url)?;
            Ok(FieldValue::Text(text.clone()))
        }
        _ => {
            if text.chars().count() > TEXT_MAX_CHARS {
                return Err(Error::invalid(format!(
                    "`{name}` must be at most {TEXT_MAX_CHARS} characters"
                )));
            }
            reject_control(name, text)?;
            Ok(FieldValue::Text(text.clone()))
        }
    }
}

fn reject_control(name: &str, text: &str) -> Result<(), Error> {
    if text.chars().any(char::is_control) {
        return Err(Error::invalid(format!(
            "`{name}` must not contain control characters"
        )));
    }
    Ok(())
}

/// An avatar URL is `https://…`, or a URL under wxauth's own `/v1/avatars/`.
fn validate_avatar_url(text: &str, public_url: Option<&str>) -> Result<(), Error> {
    let refuse = || {
        Error::invalid(format!(
            "`avatar_url` must be an https:// URL of at most {AVATAR_URL_MAX_BYTES} bytes, \
             or an avatar URL this server handed out"
        ))
    };
    if text.len() > AVATAR_URL_MAX_BYTES {
        return Err(refuse());
    }
    if text.starts_with("/v1/avatars/")
        || public_url.is_some_and(|base| {
            text.strip_prefix(base)
                .is_some_and(|rest| rest.starts_with("/v1/avatars/"))
        })
    {
        return Ok(());
    }
    match reqwest::Url::parse(text) {
        Ok(url) if url.scheme() == "https" && url.host().is_some() => Ok(()),
        _ => Err(refuse()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(v: Value) -> Result<Vec<(ProfileField, FieldValue)>, Error> {
        parse_patch(v, Some("https://auth.example.com"))
    }

    #[test]
    fn accepts_every_field_and_null() {
        let changes = parse(json!({
            "nickname": "  小明 🐼 ", "avatar_url": "https://img.example.com/a.png",
            "gender": 2, "country": "中国", "province": null, "city": "", "language": "zh_CN"
        }))
        .unwrap();
        assert_eq!(
            changes[0],
            (ProfileField::Nickname, FieldValue::Text("小明 🐼".into()))
        );
        assert_eq!(changes[2], (ProfileField::Gender, FieldValue::Number(2)));
        assert_eq!(changes[4], (ProfileField::Province, FieldValue::Clear));
        assert_eq!(changes.len(), 7);
    }

    #[test]
    fn enforces_the_limits() {
        let cases = [
            json!({"nickname": "   "}),
            json!({"nickname": "a".repeat(65)}),
            json!({"nickname": "tab\there"}),
            json!({"nickname": 5}),
            json!({"gender": 3}),
            json!({"gender": "1"}),
            json!({"gender": 1.0}),
            json!({"avatar_url": "http://img.example.com/a.png"}),
            json!({"avatar_url": "javascript:alert(1)"}),
            json!({"avatar_url": format!("https://e.com/{}", "a".repeat(1020))}),
            json!({"city": "c".repeat(65)}),
            json!({"openid": "x"}),
            json!(["nickname"]),
        ];
        for case in cases {
            assert!(parse(case.clone()).is_err(), "accepted {case}");
        }
        // 64 characters of emoji are 64 characters, not 256 bytes.
        assert!(parse(json!({"nickname": "😀".repeat(64)})).is_ok());
        assert!(parse(json!({"city": "😀".repeat(64)})).is_ok());
    }

    #[test]
    fn accepts_its_own_avatar_urls() {
        assert!(parse(json!({"avatar_url": "/v1/avatars/abc"})).is_ok());
        assert!(parse(json!({"avatar_url": "https://auth.example.com/v1/avatars/abc"})).is_ok());
        assert!(
            parse_patch(
                json!({"avatar_url": "http://localhost:8080/v1/avatars/a"}),
                Some("http://localhost:8080")
            )
            .is_ok()
        );
    }
}
