//! The cryptography beyond token signing: secrets sealed at rest (AES-256-GCM under keys
//! derived with HKDF from the key file's data key), and WeChat's legacy open-data checks:
//! the rawData signature, AES-128-CBC decryption and the checkSession signature.
//!
//! ring does all of it except AES-128-CBC. ring exposes AES only inside its AEADs and as
//! QUIC header protection (`aead::quic`, which returns five bytes of one block's
//! *encryption*); it has no AES block decryption, and CBC decryption cannot be built
//! without it. WeChat's legacy format is AES-128-CBC, so that one function uses
//! RustCrypto's `aes` and `cbc` crates.

use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{self, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::{digest, hkdf, hmac};
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

use crate::keys::random;

/// The length of the key file's data key.
pub const DATA_KEY_LEN: usize = 32;

/// The length of a web login state's tag.
pub const WEB_STATE_TAG_LEN: usize = 16;

/// The length of the nonce that leads a sealed value.
pub const SEAL_NONCE_LEN: usize = NONCE_LEN;

/// What a sealed value is for; each purpose has its own derived key, so a value sealed
/// for one can never be opened as another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A user's WeChat session_key.
    SessionKey,
    /// An app's access_token.
    AccessToken,
}

impl Purpose {
    fn info(self) -> &'static [u8] {
        match self {
            Purpose::SessionKey => b"wxauth/seal/session_key/v1",
            Purpose::AccessToken => b"wxauth/seal/access_token/v1",
        }
    }
}

/// The keys that seal secrets stored in the database. Derived from the key file's data
/// key, which is separate from the token-signing keys, so neither a copy of the database
/// nor a signing key alone opens them.
pub struct DataKeys {
    session_key: LessSafeKey,
    access_token: LessSafeKey,
    /// Signs the `state` of web logins.
    web_state: hmac::Key,
}

impl std::fmt::Debug for DataKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKeys(<redacted>)")
    }
}

impl DataKeys {
    /// Derives the sealing keys from the data key.
    pub fn derive(master: &[u8; DATA_KEY_LEN]) -> DataKeys {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"wxauth/data-key").extract(master);
        let key = |purpose: Purpose| {
            let info = [purpose.info()];
            let okm = prk
                .expand(&info, &aead::AES_256_GCM)
                .expect("HKDF can produce an AES-256 key");
            LessSafeKey::new(UnboundKey::from(okm))
        };
        let web_state = prk
            .expand(&[b"wxauth/mac/web-login-state/v1"], hmac::HMAC_SHA256)
            .expect("HKDF can produce an HMAC key");
        DataKeys {
            session_key: key(Purpose::SessionKey),
            access_token: key(Purpose::AccessToken),
            web_state: hmac::Key::from(web_state),
        }
    }

    /// The tag that signs a web login's state id: HMAC-SHA256, cut to 128 bits.
    pub fn web_state_tag(&self, id: &[u8]) -> [u8; WEB_STATE_TAG_LEN] {
        let mut tag = [0u8; WEB_STATE_TAG_LEN];
        tag.copy_from_slice(&hmac::sign(&self.web_state, id).as_ref()[..WEB_STATE_TAG_LEN]);
        tag
    }

    /// Whether `tag` is the tag of `id`, compared in constant time.
    pub fn web_state_tag_matches(&self, id: &[u8], tag: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        bool::from(self.web_state_tag(id).ct_eq(tag))
    }

    fn key(&self, purpose: Purpose) -> &LessSafeKey {
        match purpose {
            Purpose::SessionKey => &self.session_key,
            Purpose::AccessToken => &self.access_token,
        }
    }

    /// Encrypts `plaintext` bound to `aad` (whose value it belongs to). The result is a
    /// random 96-bit nonce followed by the ciphertext and tag.
    pub fn seal(&self, purpose: Purpose, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        self.seal_with_nonce(random::bytes(), purpose, aad, plaintext)
    }

    /// [`DataKeys::seal`] with a nonce the caller drew: random bytes fresh from the
    /// operating system, used for nothing else.
    pub fn seal_with_nonce(
        &self,
        nonce: [u8; SEAL_NONCE_LEN],
        purpose: Purpose,
        aad: &[u8],
        plaintext: &[u8],
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + aead::MAX_TAG_LEN);
        out.extend_from_slice(&nonce);
        let mut body = plaintext.to_vec();
        self.key(purpose)
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut body,
            )
            .expect("AES-GCM seals any short value");
        out.extend_from_slice(&body);
        out
    }

    /// Decrypts what [`DataKeys::seal`] made for the same purpose and `aad`; `None` when
    /// it was sealed for something else, under another data key, or was altered.
    pub fn open(&self, purpose: Purpose, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN + aead::MAX_TAG_LEN {
            return None;
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut body = body.to_vec();
        let plain = self
            .key(purpose)
            .open_in_place(nonce, Aad::from(aad), &mut body)
            .ok()?;
        Some(plain.to_vec())
    }
}

/// Why WeChat's encrypted open data could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenDataError {
    #[error("encrypted_data, iv or the session_key is not valid base64 of the right length")]
    Encoding,
    #[error("the data does not decrypt with this session_key")]
    Decrypt,
    #[error("the decrypted data is not a JSON object")]
    NotJson,
    #[error("the data's watermark names another app")]
    WrongApp,
}

type CbcDecryptor = cbc::Decryptor<aes::Aes128>;
type CbcEncryptor = cbc::Encryptor<aes::Aes128>;

fn key_and_iv(session_key: &str, iv: &str) -> Result<([u8; 16], [u8; 16]), OpenDataError> {
    let decode = |text: &str| -> Result<[u8; 16], OpenDataError> {
        STANDARD
            .decode(text)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or(OpenDataError::Encoding)
    };
    Ok((decode(session_key)?, decode(iv)?))
}

/// Decrypts WeChat's `encryptedData` (AES-128-CBC, PKCS#7 padding, key = the base64
/// session_key, all base64) to its bytes. Padding is checked strictly: every pad byte.
pub fn decrypt_cbc(
    session_key: &str,
    encrypted_data: &str,
    iv: &str,
) -> Result<Vec<u8>, OpenDataError> {
    let (key, iv) = key_and_iv(session_key, iv)?;
    let mut data = STANDARD
        .decode(encrypted_data)
        .map_err(|_| OpenDataError::Encoding)?;
    if data.is_empty() || data.len() % 16 != 0 {
        return Err(OpenDataError::Decrypt);
    }
    let plain = CbcDecryptor::new(&key.into(), &iv.into())
        .decrypt_padded_mut::<Pkcs7>(&mut data)
        .map_err(|_| OpenDataError::Decrypt)?
        .len();
    data.truncate(plain);
    Ok(data)
}

/// Encrypts `plaintext` the way WeChat does, for the fake WeChat: base64 of AES-128-CBC
/// with PKCS#7 padding under the base64 `session_key` and `iv`.
pub fn encrypt_cbc(session_key: &str, iv: &str, plaintext: &[u8]) -> Result<String, OpenDataError> {
    let (key, iv) = key_and_iv(session_key, iv)?;
    let mut buf = plaintext.to_vec();
    buf.resize(plaintext.len() + 16, 0);
    let sealed = CbcEncryptor::new(&key.into(), &iv.into())
        .encrypt_padded_mut::<Pkcs7>(&mut buf, plaintext.len())
        .map_err(|_| OpenDataError::Decrypt)?;
    Ok(STANDARD.encode(sealed))
}

/// Decrypts open data and checks that it is a JSON object whose `watermark.appid` is
/// `appid`, as WeChat asks every server to do.
pub fn open_data(
    session_key: &str,
    encrypted_data: &str,
    iv: &str,
    appid: &str,
) -> Result<Map<String, Value>, OpenDataError> {
    let plain = decrypt_cbc(session_key, encrypted_data, iv)?;
    let Ok(Value::Object(data)) = serde_json::from_slice(&plain) else {
        return Err(OpenDataError::NotJson);
    };
    match data.get("watermark").and_then(|w| w.get("appid")) {
        Some(Value::String(found)) if found == appid => Ok(data),
        _ => Err(OpenDataError::WrongApp),
    }
}

/// The legacy `rawData` signature: lowercase hex of `sha1(raw_data + session_key)`.
pub fn raw_data_signature(raw_data: &str, session_key: &str) -> String {
    let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(raw_data.as_bytes());
    ctx.update(session_key.as_bytes());
    hex(ctx.finish().as_ref())
}

/// Whether `signature` is the `rawData` signature, compared in constant time.
pub fn raw_data_signature_matches(raw_data: &str, session_key: &str, signature: &str) -> bool {
    let expected = raw_data_signature(raw_data, session_key);
    let given = signature.trim().to_ascii_lowercase();
    bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

/// WeChat's user-state signature: lowercase hex of HMAC-SHA256 keyed by the session_key
/// string's own bytes (not base64-decoded) over `message`.
pub fn user_state_signature(session_key: &str, message: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, session_key.as_bytes());
    hex(hmac::sign(&key, message).as_ref())
}

/// The signature `checksession` asks for: the user-state signature of the empty message.
pub fn check_session_signature(session_key: &str) -> String {
    user_state_signature(session_key, b"")
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    // WeChat's published samples (开放数据校验与解密 and its decryption demo code).
    const DEMO_APPID: &str = "wx4f4bc4dec97d474b";
    const DEMO_SESSION_KEY: &str = "tiihtNczf5v6AKRyjwEUhQ==";
    const DEMO_IV: &str = "r7BXXKkLb8qrSNn05n0qiA==";
    const DEMO_ENCRYPTED_DATA: &str = "CiyLU1Aw2KjvrjMdj8YKliAjtP4gsMZMQmRzooG2xrDcvSnxIMXFufNstNGTyaGS9uT5geRa0W4oTOb1WT7fJlAC+oNPdbB+3hVbJSRgv+4lGOETKUQz6OYStslQ142dNCuabNPGBzlooOmB231qMM85d2/fV6ChevvXvQP8Hkue1poOFtnEtpyxVLW1zAo6/1Xx1COxFvrc2d7UL/lmHInNlxuacJXwu0fjpXfz/YqYzBIBzD6WUfTIF9GRHpOn/Hz7saL8xz+W//FRAUid1OksQaQx4CMs8LOddcQhULW4ucetDf96JcR3g0gfRK4PC7E/r7Z6xNrXd2UIeorGj5Ef7b1pJAYB6Y5anaHqZ9J6nKEBvB4DnNLIVWSgARns/8wR2SiRS7MNACwTyrGvt9ts8p12PKFdlqYTopNHR1Vf7XjfhQlVsAJdNiKdYmYVoKlaRv85IfVunYzO0IKXsyl7JCUjCpoG20f0a04COwfneQAGGwd5oa+T8yO5hzuyDb/XcxxmK01EpqOyuxINew==";
    const DEMO_PLAINTEXT: &str = "{\"openId\":\"oGZUI0egBJY1zhBYw2KhdUfwVJJE\",\"nickName\":\"Band\",\"gender\":1,\"language\":\"zh_CN\",\"city\":\"Guangzhou\",\"province\":\"Guangdong\",\"country\":\"CN\",\"avatarUrl\":\"http://wx.qlogo.cn/mmopen/vi_32/aSKcBBPpibyKNicHNTMM0qJVh8Kjgiak2AHWr8MHM4WgMEm7GFhsf8OYrySdbvAMvTsw3mo8ibKicsnfN5pRjl1p8HQ/0\",\"unionId\":\"ocMvos6NjeKLIBqg5Mr9QjxrP1FA\",\"watermark\":{\"timestamp\":1477314187,\"appid\":\"wx4f4bc4dec97d474b\"}}";

    const SIGNED_RAW_DATA: &str = "{\"nickName\":\"Band\",\"gender\":1,\"language\":\"zh_CN\",\"city\":\"Guangzhou\",\"province\":\"Guangdong\",\"country\":\"CN\",\"avatarUrl\":\"http://wx.qlogo.cn/mmopen/vi_32/1vZvI39NWFQ9XM4LtQpFrQJ1xlgZxx3w7bQxKARol6503Iuswjjn6nIGBiaycAjAtpujxyzYsrztuuICqIM5ibXQ/0\"}";
    const SIGNED_SESSION_KEY: &str = "HyVFkGl5F5OQWJZZaNzBBg==";
    const SIGNATURE: &str = "75e81ceda165f4ffa64f4068af58c64b8f54b88c";

    const CHECK_SESSION_KEY: &str = "tiihtNczf5v6AKRyjwEUhQ==";
    const CHECK_SESSION_SIGNATURE: &str =
        "7154f9f8b4b76b92f541cbf0e37d48840fa06e5e42da92a6f80168a1516a4735";

    const HMAC_DOC_KEY: &str = "o0q0otL8aEzpcZL/FT9WsQ==";
    const HMAC_DOC_MESSAGE: &str = "{\"foo\":\"bar\"}";
    const HMAC_DOC_SIGNATURE: &str =
        "654571f79995b2ce1e149e53c0a33dc39c0a74090db514261454e8dbe432aa0b";

    #[test]
    fn wechats_demo_data_decrypts_to_the_documented_user() {
        let plain = decrypt_cbc(DEMO_SESSION_KEY, DEMO_ENCRYPTED_DATA, DEMO_IV).unwrap();
        assert_eq!(String::from_utf8(plain).unwrap(), DEMO_PLAINTEXT);
        let data = open_data(DEMO_SESSION_KEY, DEMO_ENCRYPTED_DATA, DEMO_IV, DEMO_APPID).unwrap();
        assert_eq!(data["nickName"], "Band");
        assert_eq!(data["watermark"]["appid"], DEMO_APPID);
    }

    #[test]
    fn the_watermark_must_name_this_app() {
        assert_eq!(
            open_data(
                DEMO_SESSION_KEY,
                DEMO_ENCRYPTED_DATA,
                DEMO_IV,
                "wx0000000000000000"
            ),
            Err(OpenDataError::WrongApp)
        );
    }

    #[test]
    fn tampering_and_wrong_keys_fail_to_decrypt() {
        // The last block carries the padding: flipping a bit in the block before it
        // corrupts the padding, which strict PKCS#7 refuses.
        let mut bytes = STANDARD.decode(DEMO_ENCRYPTED_DATA).unwrap();
        let n = bytes.len();
        bytes[n - 17] ^= 0x01;
        let tampered = STANDARD.encode(&bytes);
        assert_eq!(
            decrypt_cbc(DEMO_SESSION_KEY, &tampered, DEMO_IV),
            Err(OpenDataError::Decrypt)
        );
        // Another key gives garbage, which fails the padding or the JSON check.
        assert!(open_data(SIGNED_SESSION_KEY, DEMO_ENCRYPTED_DATA, DEMO_IV, DEMO_APPID).is_err());
        // A truncated ciphertext is not a whole number of blocks.
        assert_eq!(
            decrypt_cbc(DEMO_SESSION_KEY, &STANDARD.encode(&bytes[..20]), DEMO_IV),
            Err(OpenDataError::Decrypt)
        );
        for (key, iv, data) in [
            ("short", DEMO_IV, DEMO_ENCRYPTED_DATA),
            (DEMO_SESSION_KEY, "AAAA", DEMO_ENCRYPTED_DATA),
            (DEMO_SESSION_KEY, DEMO_IV, "not base64!"),
        ] {
            assert_eq!(decrypt_cbc(key, data, iv), Err(OpenDataError::Encoding));
        }
    }

    #[test]
    fn padding_is_checked_strictly() {
        let iv = "AAAAAAAAAAAAAAAAAAAAAA==";
        // One block whose last byte claims 2 bytes of padding but whose byte before is
        // not 2: a lenient unpadder would accept it.
        let mut block = [b'x'; 16];
        block[15] = 2;
        block[14] = 3;
        let mut buf = block.to_vec();
        let key = aes::cipher::generic_array::GenericArray::from([0u8; 16]);
        let raw = CbcEncryptor::new(&key, &[0u8; 16].into())
            .encrypt_padded_mut::<aes::cipher::block_padding::NoPadding>(&mut buf, 16)
            .unwrap()
            .to_vec();
        let zero_key = STANDARD.encode([0u8; 16]);
        assert_eq!(
            decrypt_cbc(&zero_key, &STANDARD.encode(&raw), iv),
            Err(OpenDataError::Decrypt)
        );
    }

    #[test]
    fn encryption_round_trips() {
        let sealed = encrypt_cbc(DEMO_SESSION_KEY, DEMO_IV, DEMO_PLAINTEXT.as_bytes()).unwrap();
        assert_eq!(sealed, DEMO_ENCRYPTED_DATA);
        let empty = encrypt_cbc(DEMO_SESSION_KEY, DEMO_IV, b"").unwrap();
        assert_eq!(decrypt_cbc(DEMO_SESSION_KEY, &empty, DEMO_IV).unwrap(), b"");
    }

    #[test]
    fn wechats_raw_data_signature_vector() {
        assert_eq!(
            raw_data_signature(SIGNED_RAW_DATA, SIGNED_SESSION_KEY),
            SIGNATURE
        );
        assert!(raw_data_signature_matches(
            SIGNED_RAW_DATA,
            SIGNED_SESSION_KEY,
            SIGNATURE
        ));
        assert!(raw_data_signature_matches(
            SIGNED_RAW_DATA,
            SIGNED_SESSION_KEY,
            &SIGNATURE.to_uppercase()
        ));
        assert!(!raw_data_signature_matches(
            SIGNED_RAW_DATA,
            DEMO_SESSION_KEY,
            SIGNATURE
        ));
        assert!(!raw_data_signature_matches(
            &SIGNED_RAW_DATA.replace("Band", "Bond"),
            SIGNED_SESSION_KEY,
            SIGNATURE
        ));
        assert!(!raw_data_signature_matches(
            SIGNED_RAW_DATA,
            SIGNED_SESSION_KEY,
            &SIGNATURE[..39]
        ));
    }

    #[test]
    fn wechats_user_state_signature_vectors() {
        assert_eq!(
            check_session_signature(CHECK_SESSION_KEY),
            CHECK_SESSION_SIGNATURE
        );
        assert_eq!(
            user_state_signature(HMAC_DOC_KEY, HMAC_DOC_MESSAGE.as_bytes()),
            HMAC_DOC_SIGNATURE
        );
    }

    #[test]
    fn web_state_tags_depend_on_the_id_and_the_data_key() {
        let keys = DataKeys::derive(&[1; DATA_KEY_LEN]);
        let other = DataKeys::derive(&[2; DATA_KEY_LEN]);
        let tag = keys.web_state_tag(b"state-id");
        assert!(keys.web_state_tag_matches(b"state-id", &tag));
        assert!(!keys.web_state_tag_matches(b"state-ie", &tag));
        assert!(!other.web_state_tag_matches(b"state-id", &tag));
        assert!(!keys.web_state_tag_matches(b"state-id", &tag[..15]));
        let mut flipped = tag;
        flipped[0] ^= 1;
        assert!(!keys.web_state_tag_matches(b"state-id", &flipped));
    }

    #[test]
    fn sealed_values_open_only_for_their_purpose_aad_and_key() {
        let keys = DataKeys::derive(&[7; DATA_KEY_LEN]);
        let sealed = keys.seal(Purpose::SessionKey, b"u_1", b"the secret");
        assert_eq!(sealed.len(), NONCE_LEN + 10 + aead::MAX_TAG_LEN);
        assert_eq!(
            keys.open(Purpose::SessionKey, b"u_1", &sealed).unwrap(),
            b"the secret"
        );
        assert_ne!(
            sealed,
            keys.seal(Purpose::SessionKey, b"u_1", b"the secret"),
            "a fresh nonce each time"
        );
        assert!(keys.open(Purpose::SessionKey, b"u_2", &sealed).is_none());
        assert!(keys.open(Purpose::AccessToken, b"u_1", &sealed).is_none());
        let other = DataKeys::derive(&[8; DATA_KEY_LEN]);
        assert!(other.open(Purpose::SessionKey, b"u_1", &sealed).is_none());
        let mut flipped = sealed.clone();
        flipped[NONCE_LEN] ^= 1;
        assert!(keys.open(Purpose::SessionKey, b"u_1", &flipped).is_none());
        assert!(
            keys.open(Purpose::SessionKey, b"u_1", &sealed[..20])
                .is_none()
        );
        assert!(!format!("{keys:?}").contains('7'));
    }
}
