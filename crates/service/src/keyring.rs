//! The PII key ring and its ciphers (a leaf component: no state, no I/O).
//!
//! Envelope encryption, Tink/Vault style: every record with PII has its own 256-bit data key (DEK);
//! the DEK encrypts the record's pii values and is stored *wrapped* by a master key of the ring. Master
//! keys come from `BASALT_PII_KEYS` or `[pii] keys_file`, never from the database, and are never
//! logged (`Debug` prints ids only). One key is the primary: new wraps and new blind indexes use it;
//! the others still unwrap and still match, until a rotation moved every record to the primary.
//!
//! Cipher: AES-256-GCM-SIV (RFC 8452, RustCrypto `aes-gcm-siv`), random 96-bit nonces. GCM-SIV is
//! nonce-misuse resistant, so a repeated random nonce under one master key (billions of wraps) leaks
//! only equality of identical messages, never the key stream. Every ciphertext is bound by associated
//! data to where it belongs: a wrapped DEK to `(collection id, record id)`, a value to
//! `(collection id, record id, field id)`, so a value copied to another row or field does not decrypt.
//!
//! Blind index: HMAC-SHA256 under a key derived per (master key, collection, field), truncated to
//! 128 bits (base64url, 22 characters). 128 bits keeps accidental collisions out of reach (2^64 values
//! for an even chance) at half the index size; per-field keys mean the same email in two fields or
//! collections gives unrelated index values. Equal values still give equal indexes: that is what
//! makes them searchable, and it is the leak every deterministic index has (frequencies).

use aes_gcm_siv::aead::{Aead, KeyInit, Payload};
use aes_gcm_siv::{Aes256GcmSiv, Nonce};
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use std::sync::Arc;

type HmacSha256 = Hmac<Sha256>;

pub type Dek = [u8; 32];

struct Key {
    id: String,
    secret: [u8; 32],
    /// The wrapping cipher, keyed by a key derived from `secret` (so the raw secret keys only HMACs).
    wrap: Aes256GcmSiv,
}

/// The master keys, one of them primary.
pub struct KeyRing {
    keys: Vec<Key>,
    primary: usize,
    /// Unwrapped data keys by wrapped form, with the record they belong to (the AWS Encryption
    /// SDK's data key caching): a record read again skips the unwrap. Bounded (cleared whole when
    /// full) and cleared on every erasure and restore, so a shredded key does not outlive its row here.
    deks: std::sync::Mutex<std::collections::HashMap<String, (String, String, Dek)>>,
    /// Masks by the exact stored state they were computed from (record, field, wrapped key,
    /// ciphertext): a masked read of an unchanged value skips its decryption. A mask is what any
    /// caller failing `revealRule` gets, so holding it in memory discloses nothing more.
    masks: std::sync::Mutex<std::collections::HashMap<String, Arc<str>>>,
}

const DEK_CACHE: usize = 16_384;

/// The mask cache's key: everything the mask was computed from.
pub fn mask_key(rec_id: &str, field_id: &str, wrapped: &str, stored: &str) -> String {
    let mut k =
        String::with_capacity(rec_id.len() + field_id.len() + wrapped.len() + stored.len() + 3);
    for (i, p) in [rec_id, field_id, wrapped, stored].into_iter().enumerate() {
        if i > 0 {
            k.push('\u{1}');
        }
        k.push_str(p);
    }
    k
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|k| k.id.as_str()).collect();
        f.debug_struct("KeyRing")
            .field("keys", &ids)
            .field("primary", &self.primary_id())
            .finish()
    }
}

fn derive(secret: &[u8; 32], label: &[u8]) -> [u8; 32] {
    let mut m = <HmacSha256 as Mac>::new_from_slice(secret).expect("any key length");
    m.update(label);
    m.finalize().into_bytes().into()
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 32
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl KeyRing {
    /// A ring from `(id, base64 key)` pairs; `primary` names the primary key.
    pub fn new(keys: &[(String, String)], primary: &str) -> Result<KeyRing, String> {
        if keys.is_empty() {
            return Err("the PII key ring is empty".into());
        }
        let mut out: Vec<Key> = Vec::with_capacity(keys.len());
        for (id, b64) in keys {
            if !valid_id(id) {
                return Err(format!(
                    "PII key id {id:?}: use 1 to 32 letters, digits, '_' or '-'"
                ));
            }
            if out.iter().any(|k| &k.id == id) {
                return Err(format!("PII key id {id:?} is given twice"));
            }
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .or_else(|_| URL_SAFE_NO_PAD.decode(b64.trim()))
                .map_err(|_| format!("PII key {id:?} is not base64"))?;
            let secret: [u8; 32] = raw.try_into().map_err(|_| {
                format!("PII key {id:?} must be 32 bytes (44 base64 characters); generate one with `openssl rand -base64 32`")
            })?;
            let wrap = Aes256GcmSiv::new(&derive(&secret, b"basalt/pii/wrap").into());
            out.push(Key {
                id: id.clone(),
                secret,
                wrap,
            });
        }
        let primary = out
            .iter()
            .position(|k| k.id == primary)
            .ok_or_else(|| format!("the primary PII key {primary:?} is not in the ring"))?;
        Ok(KeyRing {
            keys: out,
            primary,
            deks: Default::default(),
            masks: Default::default(),
        })
    }

    /// `BASALT_PII_KEYS`: `id:base64[,id:base64…]`, the first one primary.
    pub fn parse_env(s: &str) -> Result<KeyRing, String> {
        let mut keys = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (id, key) = part
                .split_once(':')
                .ok_or("BASALT_PII_KEYS: write each key as id:base64, the primary first")?;
            keys.push((id.trim().to_string(), key.trim().to_string()));
        }
        let primary = keys.first().map(|(id, _)| id.clone()).unwrap_or_default();
        KeyRing::new(&keys, &primary)
    }

    pub fn primary_id(&self) -> &str {
        &self.keys[self.primary].id
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.id.as_str())
    }

    /// A fresh data key.
    pub fn new_dek() -> Dek {
        let mut k = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut k);
        k
    }

    fn dek_ad(coll_id: &str, rec_id: &str) -> Vec<u8> {
        format!("basalt/dek/{coll_id}/{rec_id}").into_bytes()
    }

    /// `<key id>.<base64(nonce | ciphertext)>`: the DEK wrapped by the primary key.
    pub fn wrap(&self, dek: &Dek, coll_id: &str, rec_id: &str) -> String {
        let k = &self.keys[self.primary];
        format!(
            "{}.{}",
            k.id,
            seal(&k.wrap, dek, &Self::dek_ad(coll_id, rec_id))
        )
    }

    /// The key id a wrapped DEK names.
    pub fn wrapped_by(wrapped: &str) -> Option<&str> {
        wrapped.split_once('.').map(|(id, _)| id)
    }

    /// [`KeyRing::unwrap`] without the cache: a key used once (an event's).
    pub fn unwrap_once(&self, wrapped: &str, coll_id: &str, rec_id: &str) -> Option<Dek> {
        let (id, body) = wrapped.split_once('.')?;
        let k = self.keys.iter().find(|k| k.id == id)?;
        open(&k.wrap, body, &Self::dek_ad(coll_id, rec_id))?
            .try_into()
            .ok()
    }

    /// Unwraps a DEK; `None` when its key is not in the ring, or it was moved to another record.
    pub fn unwrap(&self, wrapped: &str, coll_id: &str, rec_id: &str) -> Option<Dek> {
        if let Ok(m) = self.deks.lock() {
            if let Some((c, r, k)) = m.get(wrapped) {
                // The cache answers only for the record the key was unwrapped for.
                if c == coll_id && r == rec_id {
                    return Some(*k);
                }
            }
        }
        let dek = self.unwrap_once(wrapped, coll_id, rec_id)?;
        if let Ok(mut m) = self.deks.lock() {
            if m.len() >= DEK_CACHE {
                m.clear();
            }
            m.insert(
                wrapped.to_string(),
                (coll_id.to_string(), rec_id.to_string(), dek),
            );
        }
        Some(dek)
    }

    /// Forgets every cached data key and mask (an erasure, a restore).
    pub fn forget_keys(&self) {
        if let Ok(mut m) = self.deks.lock() {
            m.clear();
        }
        if let Ok(mut m) = self.masks.lock() {
            m.clear();
        }
    }

    /// A cached mask (see `masks`); the key is [`mask_key`].
    pub fn cached_mask(&self, key: &str) -> Option<Arc<str>> {
        self.masks.lock().ok()?.get(key).cloned()
    }

    pub fn cache_mask(&self, key: String, mask: Arc<str>) {
        if let Ok(mut m) = self.masks.lock() {
            if m.len() >= DEK_CACHE {
                m.clear();
            }
            m.insert(key, mask);
        }
    }

    fn index_with(k: &Key, coll_id: &str, field_id: &str, text: &str) -> String {
        let fk = derive(
            &k.secret,
            format!("basalt/pii/index/{coll_id}/{field_id}").as_bytes(),
        );
        let mut m = <HmacSha256 as Mac>::new_from_slice(&fk).expect("any key length");
        m.update(text.as_bytes());
        URL_SAFE_NO_PAD.encode(&m.finalize().into_bytes()[..16])
    }

    /// The blind index a write stores (primary key).
    pub fn index(&self, coll_id: &str, field_id: &str, text: &str) -> String {
        Self::index_with(&self.keys[self.primary], coll_id, field_id, text)
    }

    /// Every blind index `text` may be stored under (each key of the ring, the primary first).
    pub fn index_all(&self, coll_id: &str, field_id: &str, text: &str) -> Vec<String> {
        let mut out = vec![self.index(coll_id, field_id, text)];
        for (i, k) in self.keys.iter().enumerate() {
            if i != self.primary {
                out.push(Self::index_with(k, coll_id, field_id, text));
            }
        }
        out
    }

    /// The `hash` mask: `h:` + 16 hex digits of a keyed hash (stable while the primary key is).
    pub fn mask_hash(&self, coll_id: &str, field_id: &str, text: &str) -> String {
        let fk = derive(
            &self.keys[self.primary].secret,
            format!("basalt/pii/mask/{coll_id}/{field_id}").as_bytes(),
        );
        let mut m = <HmacSha256 as Mac>::new_from_slice(&fk).expect("any key length");
        m.update(text.as_bytes());
        let d = m.finalize().into_bytes();
        let mut s = String::with_capacity(18);
        s.push_str("h:");
        for b in &d[..8] {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }
}

impl KeyRing {
    /// The same-format token of `text` (`"fpe": "digits"`): its ASCII digits, taken as one decimal
    /// numeral string, encrypted with FF1 (NIST SP 800-38G; FF3 is withdrawn) under a key derived per
    /// (primary key, collection, field), written back in place; other characters are kept. Equal
    /// values give equal tokens. `None` below 6 digits (FF1's minimum domain of a million values).
    pub fn fpe_digits(&self, coll_id: &str, field_id: &str, text: &str) -> Option<String> {
        use fpe::ff1::{FlexibleNumeralString, FF1};
        let digits: Vec<u16> = text
            .bytes()
            .filter(u8::is_ascii_digit)
            .map(|b| u16::from(b - b'0'))
            .collect();
        if digits.len() < 6 {
            return None;
        }
        let key = derive(
            &self.keys[self.primary].secret,
            format!("basalt/pii/fpe/{coll_id}/{field_id}").as_bytes(),
        );
        let ff = FF1::<aes::Aes256>::new(&key, 10).ok()?;
        let out: Vec<u16> = ff
            .encrypt(&[], &FlexibleNumeralString::from(digits))
            .ok()?
            .into();
        let mut it = out.into_iter();
        Some(
            text.chars()
                .map(|c| {
                    if c.is_ascii_digit() {
                        it.next()
                            .and_then(|d| char::from_digit(u32::from(d), 10))
                            .unwrap_or('0')
                    } else {
                        c
                    }
                })
                .collect(),
        )
    }
}

/// A new random master key, base64 (`basalt pii keygen`).
pub fn generate_key() -> String {
    base64::engine::general_purpose::STANDARD.encode(KeyRing::new_dek())
}

fn value_ad(coll_id: &str, rec_id: &str, field_id: &str) -> Vec<u8> {
    format!("basalt/value/{coll_id}/{rec_id}/{field_id}").into_bytes()
}

fn seal(c: &Aes256GcmSiv, plain: &[u8], ad: &[u8]) -> String {
    let mut nonce = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut nonce);
    let ct = c
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plain,
                aad: ad,
            },
        )
        .expect("AES-GCM-SIV encrypts any message below 64 GiB");
    let mut buf = Vec::with_capacity(12 + ct.len());
    buf.extend_from_slice(&nonce);
    buf.extend_from_slice(&ct);
    STANDARD_NO_PAD.encode(buf)
}

fn open(c: &Aes256GcmSiv, body: &str, ad: &[u8]) -> Option<Vec<u8>> {
    let raw = STANDARD_NO_PAD.decode(body).ok()?;
    if raw.len() < 12 + 16 {
        return None;
    }
    let (nonce, ct) = raw.split_at(12);
    c.decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: ad })
        .ok()
}

/// A record's data key, ready to seal and open its values.
pub struct RecordKey<'a> {
    cipher: Aes256GcmSiv,
    coll_id: &'a str,
    rec_id: &'a str,
}

impl<'a> RecordKey<'a> {
    pub fn new(dek: &Dek, coll_id: &'a str, rec_id: &'a str) -> Self {
        RecordKey {
            cipher: Aes256GcmSiv::new(dek.into()),
            coll_id,
            rec_id,
        }
    }

    /// `pii1:<base64(nonce | ciphertext)>`.
    pub fn seal(&self, field_id: &str, plain: &str) -> String {
        let mut s = String::from(basalt_core::pii::CIPHER_PREFIX);
        s.push_str(&seal(
            &self.cipher,
            plain.as_bytes(),
            &value_ad(self.coll_id, self.rec_id, field_id),
        ));
        s
    }

    /// The plaintext of a stored value; `None` when it does not decrypt here (another record's or
    /// field's value, a shredded key, tampering).
    pub fn open(&self, field_id: &str, stored: &str) -> Option<String> {
        let body = stored.strip_prefix(basalt_core::pii::CIPHER_PREFIX)?;
        let plain = open(
            &self.cipher,
            body,
            &value_ad(self.coll_id, self.rec_id, field_id),
        )?;
        String::from_utf8(plain).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> String {
        base64::engine::general_purpose::STANDARD.encode([b; 32])
    }

    #[test]
    fn values_decrypt_only_where_they_were_written() {
        let ring = KeyRing::parse_env(&format!("k1:{}", key(1))).unwrap();
        let dek = KeyRing::new_dek();
        let w = ring.wrap(&dek, "c1", "r1");
        assert!(w.starts_with("k1."));
        assert_eq!(ring.unwrap(&w, "c1", "r1"), Some(dek));
        // A wrapped key moved to another record does not unwrap (cached or not).
        assert_eq!(ring.unwrap(&w, "c1", "r2"), None);
        ring.forget_keys();
        assert_eq!(ring.unwrap(&w, "c1", "r2"), None);
        assert_eq!(ring.unwrap(&w, "c1", "r1"), Some(dek));
        let rk = RecordKey::new(&dek, "c1", "r1");
        let ct = rk.seal("f1", "alice@example.com");
        assert!(!ct.contains("alice"));
        assert_eq!(rk.open("f1", &ct).as_deref(), Some("alice@example.com"));
        assert_eq!(rk.open("f2", &ct), None);
        assert_eq!(RecordKey::new(&dek, "c1", "r2").open("f1", &ct), None);
        // Two seals of one value differ (random nonces).
        assert_ne!(rk.seal("f1", "x"), rk.seal("f1", "x"));
    }

    #[test]
    fn rotation_keeps_old_wraps_and_indexes_readable() {
        let old = KeyRing::parse_env(&format!("k1:{}", key(1))).unwrap();
        let both = KeyRing::parse_env(&format!("k2:{},k1:{}", key(2), key(1))).unwrap();
        let dek = KeyRing::new_dek();
        let w = old.wrap(&dek, "c", "r");
        assert_eq!(both.unwrap(&w, "c", "r"), Some(dek));
        assert!(both.wrap(&dek, "c", "r").starts_with("k2."));
        let i1 = old.index("c", "f", "a@b.io");
        let all = both.index_all("c", "f", "a@b.io");
        assert_eq!(all.len(), 2);
        assert_eq!(all[1], i1);
        assert_ne!(all[0], i1);
        assert_eq!(i1.len(), 22);
        // Per-field keys: the same value in another field indexes differently.
        assert_ne!(old.index("c", "g", "a@b.io"), i1);
        assert!(format!("{both:?}").contains("k2") && !format!("{both:?}").contains(&key(2)));
    }

    #[test]
    fn fpe_tokens_keep_the_shape() {
        let ring = KeyRing::parse_env(&format!("k1:{}", key(1))).unwrap();
        let t = ring.fpe_digits("c", "f", "4111-1111-1111-1234").unwrap();
        assert_eq!(t.len(), 19);
        assert_eq!(t.matches('-').count(), 3);
        assert!(t.chars().all(|c| c.is_ascii_digit() || c == '-'));
        assert_ne!(t, "4111-1111-1111-1234");
        // Deterministic per field; another field tokenizes differently.
        assert_eq!(ring.fpe_digits("c", "f", "4111-1111-1111-1234").unwrap(), t);
        assert_ne!(ring.fpe_digits("c", "g", "4111-1111-1111-1234").unwrap(), t);
        assert_eq!(
            ring.fpe_digits("c", "f", "12345"),
            None,
            "too few digits for FF1"
        );
    }

    #[test]
    fn bad_rings_are_refused() {
        assert!(KeyRing::parse_env("").is_err());
        assert!(KeyRing::parse_env("k1:short").is_err());
        assert!(KeyRing::parse_env(&format!("k.1:{}", key(1))).is_err());
        assert!(KeyRing::parse_env(&format!("k1:{},k1:{}", key(1), key(2))).is_err());
        assert!(KeyRing::new(&[("a".into(), key(1))], "b").is_err());
    }
}
