//! Service keys: the credentials the team's own services present to the backend routes
//! (`POST /v1/introspect`, `GET /v1/events`, …), each allowed only the routes of its
//! scopes. A key is `wxsk_` and 32 random bytes; only its SHA-256 is stored. Keys are looked up
//! in the database on every call, so one created or revoked by `wxauth service-keys`
//! takes effect at once, also while a server is running.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::digest;
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::clock::{Clock, UnixTime};
use crate::db::{Db, DbError};
use crate::domain::error::Error;
use crate::domain::sessions::bearer_token;
use crate::keys::random;
use crate::keys::secret::Secret;

/// How every key starts, so a leaked one is recognisable (and greppable in a repository).
pub const KEY_PREFIX: &str = "wxsk_";
/// How every key id starts; names may not, so a name can never be taken for an id.
pub const ID_PREFIX: &str = "sk_";
/// Random bytes in a key.
const KEY_BYTES: usize = 32;
/// The longest name a key may have.
const NAME_MAX: usize = 64;
/// How stale `last_used_at` may get before a call updates it; spares the writer.
const TOUCH_EVERY_SECS: i64 = 60;

/// Why a service-key operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceKeyError {
    #[error("{0}")]
    InvalidName(String),
    #[error(
        "a live service key named `{0}` already exists; revoke it first or choose another name"
    )]
    NameTaken(String),
    #[error("no service key has the id or name `{0}`")]
    NotFound(String),
    #[error("the service key `{0}` is already revoked")]
    AlreadyRevoked(String),
    #[error("{0}")]
    InvalidScopes(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// What a service key may call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// `POST /v1/introspect`; what every key made before scopes existed may do.
    Introspect,
    /// The shared WeChat access_token.
    AccessToken,
    /// `GET /v1/events`.
    Events,
}

impl Scope {
    /// Every scope, in the order they are listed.
    pub const ALL: [Scope; 3] = [Scope::Introspect, Scope::AccessToken, Scope::Events];

    /// The scope's name, as stored and written on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Introspect => "introspect",
            Scope::AccessToken => "access_token",
            Scope::Events => "events",
        }
    }
}

/// Parses a comma-separated list of scopes (at least one; each once, in any order) into
/// the scopes in their listed order.
pub fn parse_scopes(text: &str) -> Result<Vec<Scope>, String> {
    let mut scopes = Vec::new();
    for name in text.split(',').map(str::trim) {
        let scope = Scope::ALL
            .into_iter()
            .find(|s| s.as_str() == name)
            .ok_or_else(|| {
                format!(
                    "`{name}` is not a scope; the scopes are {}",
                    Scope::ALL.map(Scope::as_str).join(", ")
                )
            })?;
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    scopes.sort();
    Ok(scopes)
}

/// A service key as stored: everything but the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceKeyRow {
    /// Internal row id.
    pub id: i64,
    /// The `sk_…` id shown to people.
    pub public_id: String,
    pub name: String,
    pub created_at: UnixTime,
    pub revoked_at: Option<UnixTime>,
    pub last_used_at: Option<UnixTime>,
    pub scopes: Vec<Scope>,
}

impl ServiceKeyRow {
    /// Whether the key is still accepted.
    pub fn is_live(&self) -> bool {
        self.revoked_at.is_none()
    }

    /// The scopes as stored: names joined by commas.
    pub fn scope_list(&self) -> String {
        join_scopes(&self.scopes)
    }
}

fn join_scopes(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

const COLUMNS: &str = "id, public_id, name, created_at, revoked_at, last_used_at, scopes";

fn row(r: &Row) -> rusqlite::Result<ServiceKeyRow> {
    let scopes: String = r.get(6)?;
    Ok(ServiceKeyRow {
        id: r.get(0)?,
        public_id: r.get(1)?,
        name: r.get(2)?,
        created_at: r.get(3)?,
        revoked_at: r.get(4)?,
        last_used_at: r.get(5)?,
        // Only this module writes the column, from parsed scopes.
        scopes: parse_scopes(&scopes).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(6, rusqlite::types::Type::Text, e.into())
        })?,
    })
}

/// Checks a key name: 1–64 ASCII letters, digits, `.`, `_` or `-`, starting with a letter
/// or digit, and not shaped like a key id.
pub fn validate_name(name: &str) -> Result<(), String> {
    let well_formed = (1..=NAME_MAX).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric());
    if !well_formed {
        return Err(format!(
            "`{name}` is not a usable name: use 1 to {NAME_MAX} letters, digits, `.`, `_` or `-`, \
             starting with a letter or digit"
        ));
    }
    if name.starts_with(ID_PREFIX) {
        return Err(format!(
            "`{name}`: names may not start with `{ID_PREFIX}`, which marks key ids"
        ));
    }
    Ok(())
}

/// The SHA-256 under which a key is stored. A plain hash is enough: the key is 256 random
/// bits, so there is nothing to guess that a slow hash would protect.
pub fn hash(key: &str) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, key.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Whether `text` has the shape of a key; anything else is refused without a lookup.
fn looks_like_key(text: &str) -> bool {
    text.strip_prefix(KEY_PREFIX).is_some_and(|rest| {
        rest.len() == base64::encoded_len(KEY_BYTES, false).unwrap_or(0)
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// Creates a key named `name` allowed `scopes` and returns its row and the key itself,
/// which is not stored and so cannot be shown again.
pub fn create(
    conn: &Connection,
    name: &str,
    scopes: &[Scope],
    now: UnixTime,
) -> Result<(ServiceKeyRow, Secret), ServiceKeyError> {
    validate_name(name).map_err(ServiceKeyError::InvalidName)?;
    if scopes.is_empty() {
        return Err(ServiceKeyError::InvalidScopes(
            "a service key needs at least one scope".into(),
        ));
    }
    let mut scopes = scopes.to_vec();
    scopes.sort();
    scopes.dedup();
    let key = format!(
        "{KEY_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(random::bytes::<KEY_BYTES>())
    );
    let public_id = random::public_id(ID_PREFIX);
    let inserted = conn
        .prepare_cached(
            "INSERT INTO service_keys (public_id, name, key_hash, created_at, scopes) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .and_then(|mut s| {
            s.execute(params![
                public_id,
                name,
                &hash(&key)[..],
                now,
                join_scopes(&scopes)
            ])
        });
    match inserted {
        Ok(_) => {}
        // The id and hash are random; the one constraint a caller can hit is the name.
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            return Err(ServiceKeyError::NameTaken(name.to_owned()));
        }
        Err(e) => return Err(DbError::from(e).into()),
    }
    let row = ServiceKeyRow {
        id: conn.last_insert_rowid(),
        public_id,
        name: name.to_owned(),
        created_at: now,
        revoked_at: None,
        last_used_at: None,
        scopes,
    };
    Ok((row, Secret::new(key)))
}

/// Every key, live and revoked, oldest first.
pub fn list(conn: &Connection) -> Result<Vec<ServiceKeyRow>, DbError> {
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {COLUMNS} FROM service_keys ORDER BY id"))?;
    let rows = stmt.query_map([], row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Revokes the key with id `name_or_id`, or the live key with that name; returns it as
/// revoked.
pub fn revoke(
    conn: &Connection,
    name_or_id: &str,
    now: UnixTime,
) -> Result<ServiceKeyRow, ServiceKeyError> {
    let not_found = || ServiceKeyError::NotFound(name_or_id.to_owned());
    let candidate = if name_or_id.starts_with(ID_PREFIX) {
        conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM service_keys WHERE public_id = ?1"
        ))
        .map_err(DbError::from)?
        .query_row([name_or_id], row)
        .optional()
        .map_err(DbError::from)?
    } else {
        // The live key of that name if there is one, else its latest revoked one, to say
        // "already revoked" rather than "not found".
        conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM service_keys WHERE name = ?1 \
             ORDER BY revoked_at IS NULL DESC, id DESC LIMIT 1"
        ))
        .map_err(DbError::from)?
        .query_row([name_or_id], row)
        .optional()
        .map_err(DbError::from)?
    };
    let mut key = candidate.ok_or_else(not_found)?;
    let changed = conn
        .prepare_cached(
            "UPDATE service_keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
        )
        .map_err(DbError::from)?
        .execute(params![key.id, now])
        .map_err(DbError::from)?;
    if changed == 0 {
        return Err(ServiceKeyError::AlreadyRevoked(name_or_id.to_owned()));
    }
    key.revoked_at = Some(now);
    Ok(key)
}

/// The live key whose hash is `key_hash`.
pub fn live_by_hash(
    conn: &Connection,
    key_hash: &[u8; 32],
) -> Result<Option<ServiceKeyRow>, DbError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM service_keys WHERE key_hash = ?1 AND revoked_at IS NULL"
        ))?
        .query_row([&key_hash[..]], row)
        .optional()?)
}

/// Notes that a key was used.
pub fn touch(conn: &Connection, id: i64, now: UnixTime) -> Result<(), DbError> {
    conn.prepare_cached(
        "UPDATE service_keys SET last_used_at = ?2 \
         WHERE id = ?1 AND (last_used_at IS NULL OR last_used_at < ?2)",
    )?
    .execute(params![id, now])?;
    Ok(())
}

/// Checks the `Authorization: Bearer <service key>` of a request against the live keys,
/// and that the key has `scope`.
pub async fn authenticate(
    db: &Db,
    clock: &dyn Clock,
    authorization: Option<&str>,
    scope: Scope,
) -> Result<ServiceKeyRow, Error> {
    let key = bearer_token(authorization).map_err(|_| {
        Error::InvalidToken(
            "send a service key as `Authorization: Bearer <key>`; \
             create one with `wxauth service-keys create NAME`",
        )
    })?;
    let refused = || Error::InvalidToken("the service key is not known or has been revoked");
    if !looks_like_key(key) {
        return Err(refused());
    }
    let key_hash = hash(key);
    let found = db
        .read(move |c| live_by_hash(c, &key_hash))
        .await?
        .ok_or_else(refused)?;
    let now = clock.now();
    if found
        .last_used_at
        .is_none_or(|at| now - at >= TOUCH_EVERY_SECS)
    {
        let id = found.id;
        db.write_detached(move |c| touch(c, id, now));
    }
    if !found.scopes.contains(&scope) {
        return Err(Error::Forbidden(format!(
            "the service key `{}` lacks the scope `{}`; create a key with it: \
             wxauth service-keys create NAME --scope {}",
            found.name,
            scope.as_str(),
            scope.as_str()
        )));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("t.db")).unwrap();
        crate::db::migrate(&mut conn).unwrap();
        (dir, conn)
    }

    #[test]
    fn names_are_checked() {
        for good in ["billing", "a", "svc-1.prod_eu", &"x".repeat(NAME_MAX)] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-x",
            ".x",
            "with space",
            "名字",
            "a/b",
            "sk_0123",
            &"x".repeat(NAME_MAX + 1),
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_key_is_stored_only_as_its_hash_and_found_by_it() {
        let (_dir, conn) = database();
        let (created, key) = create(&conn, "billing", &[Scope::Introspect], 100).unwrap();
        let key = key.expose().to_owned();
        assert!(looks_like_key(&key), "{key}");
        assert!(created.public_id.starts_with(ID_PREFIX));
        let stored: Vec<u8> = conn
            .query_row("SELECT key_hash FROM service_keys", [], |r| r.get(0))
            .unwrap();
        assert_eq!(stored, hash(&key));
        assert_eq!(live_by_hash(&conn, &hash(&key)).unwrap(), Some(created));
        assert_eq!(live_by_hash(&conn, &hash("wxsk_other")).unwrap(), None);
    }

    #[test]
    fn names_are_unique_among_live_keys_only() {
        let (_dir, conn) = database();
        let (first, _) = create(&conn, "billing", &[Scope::Introspect], 100).unwrap();
        assert!(matches!(
            create(&conn, "billing", &[Scope::Introspect], 101),
            Err(ServiceKeyError::NameTaken(_))
        ));
        let revoked = revoke(&conn, "billing", 102).unwrap();
        assert_eq!(revoked.id, first.id);
        assert_eq!(revoked.revoked_at, Some(102));
        let (second, _) = create(&conn, "billing", &[Scope::Introspect], 103).unwrap();
        assert_ne!(second.id, first.id);
        assert_eq!(list(&conn).unwrap().len(), 2);
    }

    #[test]
    fn revoke_by_id_or_name_and_explain_failures() {
        let (_dir, conn) = database();
        let (key, secret) = create(&conn, "search", &[Scope::Introspect], 100).unwrap();
        assert!(matches!(
            revoke(&conn, "nothing", 101),
            Err(ServiceKeyError::NotFound(_))
        ));
        assert!(matches!(
            revoke(&conn, "sk_000000000000000000000000", 101),
            Err(ServiceKeyError::NotFound(_))
        ));
        revoke(&conn, &key.public_id, 101).unwrap();
        assert!(matches!(
            revoke(&conn, &key.public_id, 102),
            Err(ServiceKeyError::AlreadyRevoked(_))
        ));
        assert!(matches!(
            revoke(&conn, "search", 102),
            Err(ServiceKeyError::AlreadyRevoked(_))
        ));
        assert_eq!(live_by_hash(&conn, &hash(secret.expose())).unwrap(), None);
    }

    #[test]
    fn the_key_never_shows_in_debug_output() {
        let (_dir, conn) = database();
        let (_, key) = create(&conn, "logs", &[Scope::Introspect], 1).unwrap();
        assert!(!format!("{key:?}").contains(KEY_PREFIX));
    }
}
