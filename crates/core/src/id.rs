//! Record, collection and field ids as the protocol defines them.

use rand::Rng;

const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// A random string of `len` characters from `[a-z0-9]`.
pub fn random_id(len: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// A new 15-character record id.
pub fn new_record_id() -> String {
    random_id(15)
}

/// A record id as clients may send it: `^[a-z0-9]{15}$` by default. Custom id fields may set other
/// lengths and patterns; the caller checks those.
pub fn is_valid_record_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `pbc_` + decimal CRC32 of type+name, as PocketBase derives collection ids.
pub fn collection_id(kind: &str, name: &str) -> String {
    let mut h = crc32fast::Hasher::new();
    h.update(kind.as_bytes());
    h.update(name.as_bytes());
    format!("pbc_{}", h.finalize())
}

/// `<type><crc32(name)>`, as PocketBase derives field ids.
pub fn field_id(kind: &str, name: &str) -> String {
    format!("{kind}{}", crc32fast::hash(name.as_bytes()))
}

/// Names of collections and fields: `^[a-zA-Z0-9_]+$`, at most 100 chars. Only such names reach SQL text.
pub fn is_valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 100 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn superusers_collection_id_matches_the_sdk_constant() {
        assert_eq!(collection_id("auth", "_superusers"), "pbc_3142635823");
    }

    #[test]
    fn record_ids_have_the_protocol_shape() {
        let id = new_record_id();
        assert_eq!(id.len(), 15);
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
    }

    #[test]
    fn names_reject_sql_metacharacters() {
        assert!(is_valid_name("posts_2"));
        for bad in ["", "a b", "a\"b", "a;drop", "x'--", "ü"] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }
}
