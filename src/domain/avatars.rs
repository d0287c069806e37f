//! Avatars: storing an uploaded picture (`PUT /v1/me/avatar`) and finding it again
//! (`GET /v1/avatars/<id>`). An image's type is read from its first bytes, never taken
//! from the client. Images live in the database, one per user: a new upload replaces
//! the last.

use bytes::Bytes;
use ring::digest;
use rusqlite::{OptionalExtension, params};

use crate::db::Db;
use crate::db::queries::{self, UserRow};
use crate::domain::error::Error;
use crate::domain::profiles::Profiles;
use crate::keys::crypto::hex;
use crate::keys::random;

/// The image formats accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageType {
    Png,
    Jpeg,
    WebP,
    Gif,
}

impl ImageType {
    /// Recognises an image by its signature bytes.
    pub fn sniff(bytes: &[u8]) -> Option<ImageType> {
        if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(ImageType::Png)
        } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
            Some(ImageType::Jpeg)
        } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
            Some(ImageType::WebP)
        } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
            Some(ImageType::Gif)
        } else {
            None
        }
    }

    /// Its media type.
    pub fn mime(self) -> &'static str {
        match self {
            ImageType::Png => "image/png",
            ImageType::Jpeg => "image/jpeg",
            ImageType::WebP => "image/webp",
            ImageType::Gif => "image/gif",
        }
    }
}

/// A stored avatar, as served.
#[derive(Debug)]
pub struct Avatar {
    pub content_type: String,
    /// Lowercase hex SHA-256 of the bytes: the ETag.
    pub sha256: String,
    /// `None` when the client's copy is current and only its validator is needed.
    pub bytes: Option<Vec<u8>>,
}

/// The path an avatar is served at.
pub fn path_of(id: &str) -> String {
    format!("/v1/avatars/{id}")
}

/// Stores `image` as `user`'s avatar, deletes the one before, points `avatar_url` at the
/// new one and returns the updated user.
pub async fn save(
    profiles: &Profiles,
    user: &UserRow,
    image: Bytes,
    kind: ImageType,
) -> Result<UserRow, Error> {
    // Hashing two megabytes is a few milliseconds: off the async workers.
    let (image, sha256) = tokio::task::spawn_blocking(move || {
        let sha256 = hex(digest::digest(&digest::SHA256, &image).as_ref());
        (image, sha256)
    })
    .await
    .map_err(|e| Error::Broken(format!("hashing the avatar failed: {e}").into()))?;
    let id = random::public_id("a_");
    let url = match &profiles.public_url {
        Some(base) => format!("{base}{}", path_of(&id)),
        None => path_of(&id),
    };
    let (user_id, now) = (user.id, profiles.clock.now());
    let changes = [(
        queries::ProfileField::AvatarUrl,
        queries::FieldValue::Text(url),
    )];
    let updated = profiles
        .db
        .write(move |c| {
            c.prepare_cached("DELETE FROM avatars WHERE user_id = ?1")?
                .execute([user_id])?;
            c.prepare_cached(
                "INSERT INTO avatars (id, user_id, content_type, sha256, bytes, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![id, user_id, kind.mime(), sha256, &image[..], now])?;
            queries::update_profile(c, user_id, &changes, now)
        })
        .await?;
    tracing::info!(user = %user.public_id, kind = kind.mime(), "avatar uploaded");
    Ok(updated)
}

/// Whether `id` has the shape of an avatar id, so garbage is refused before a lookup.
fn is_avatar_id(id: &str) -> bool {
    id.strip_prefix("a_")
        .is_some_and(|hex| hex.len() == 24 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The avatar `id`, without its bytes when `if_none_match` already names its ETag.
pub async fn load(
    db: &Db,
    id: String,
    if_none_match: Option<String>,
) -> Result<Option<Avatar>, Error> {
    if !is_avatar_id(&id) {
        return Ok(None);
    }
    Ok(db
        .read(move |c| {
            let found: Option<(String, String)> = c
                .prepare_cached("SELECT content_type, sha256 FROM avatars WHERE id = ?1")?
                .query_row([&id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let Some((content_type, sha256)) = found else {
                return Ok(None);
            };
            let bytes = if if_none_match.is_some_and(|h| etag_matches(&h, &sha256)) {
                None
            } else {
                Some(
                    c.prepare_cached("SELECT bytes FROM avatars WHERE id = ?1")?
                        .query_row([&id], |r| r.get(0))?,
                )
            };
            Ok(Some(Avatar {
                content_type,
                sha256,
                bytes,
            }))
        })
        .await?)
}

/// Whether an `If-None-Match` value names the ETag `"<sha256>"` (weak comparison, as
/// RFC 9110 asks for this header) or is `*`.
pub fn etag_matches(header: &str, sha256: &str) -> bool {
    header.split(',').map(str::trim).any(|tag| {
        tag == "*"
            || tag
                .strip_prefix("W/")
                .unwrap_or(tag)
                .strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                == Some(sha256)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_recognised_by_their_bytes() {
        assert_eq!(
            ImageType::sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
            Some(ImageType::Png)
        );
        assert_eq!(
            ImageType::sniff(&[0xff, 0xd8, 0xff, 0xe0]),
            Some(ImageType::Jpeg)
        );
        assert_eq!(
            ImageType::sniff(b"RIFF\x24\0\0\0WEBPVP8 "),
            Some(ImageType::WebP)
        );
        assert_eq!(ImageType::sniff(b"GIF89a\x01\0"), Some(ImageType::Gif));
        for not_image in [
            &b"<svg xmlns='http://www.w3.org/2000/svg'/>"[..],
            b"<html><script>",
            b"RIFF\0\0\0\0WAVEfmt ",
            b"\x89PNG",
            b"",
        ] {
            assert_eq!(ImageType::sniff(not_image), None);
        }
    }

    #[test]
    fn if_none_match_is_compared_weakly() {
        assert!(etag_matches("\"abc\"", "abc"));
        assert!(etag_matches("W/\"abc\"", "abc"));
        assert!(etag_matches("\"x\", \"abc\"", "abc"));
        assert!(etag_matches("*", "abc"));
        assert!(!etag_matches("\"abcd\"", "abc"));
        assert!(!etag_matches("abc", "abc"));
    }

    #[test]
    fn avatar_ids_are_checked_for_shape() {
        assert!(is_avatar_id(&random::public_id("a_")));
        assert!(!is_avatar_id("a_123"));
        assert!(!is_avatar_id("u_0123456789abcdef01234567"));
        assert!(!is_avatar_id("a_../../etc/passwd000000000"));
    }
}
