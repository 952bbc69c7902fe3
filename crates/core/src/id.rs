//! Record, collection and field ids as the protocol defines them.

use rand::Rng;

const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// A random string of `len` characters from `[a-z0-9]`.
pub fn random_id(len: usize) -> String {
    let mut rng = rand::thread_rng();
    let mut out = String::with_capacity(len);
    // One 128-bit draw gives up to 15 characters (36^15 < 2^78): the top one is off uniform by less
    // than 2^-50, and one draw instead of fifteen bounded ones (~1% of a create's CPU).
    while out.len() < len {
        let mut x: u128 = rng.gen();
        for _ in 0..(len - out.len()).min(15) {
            out.push(ALPHABET[(x % 36) as usize] as char);
            x /= 36;
        }
    }
    out
}

/// A new 15-character record id: `[a-z0-9]{15}` as the protocol has it, made of 6 characters of
/// time and 9 random ones.
///
/// The first 6 characters are the milliseconds since the Unix epoch modulo 36^6 (a cycle of 25.2
/// days) in base 36 with the digits `0-9a-z`, most significant first, so they sort as bytes do; the other 9 are random (46.5 bits). Ids made close in
/// time are therefore close in the `id` index, so a group commit of many creates dirties one or two
/// of its pages instead of one per create: on SQLite +40% creates/s under 32 concurrent clients
/// (docs/benchmarks.md, issue #13). What that costs: an id tells its creation time modulo 25 days,
/// and a guess of an id whose millisecond is known still has 36^9 (~10^14) values to try.
/// Records made in one millisecond, or a cycle apart, are in no particular order.
pub fn new_record_id() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    time_ordered_id(ms)
}

fn time_ordered_id(unix_ms: i64) -> String {
    const CYCLE: i64 = 36 * 36 * 36 * 36 * 36 * 36;
    // Digits in byte order, so that the time part sorts as SQLite and PostgreSQL compare text.
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut t = unix_ms.rem_euclid(CYCLE);
    let mut head = [0u8; 6];
    for c in head.iter_mut().rev() {
        *c = DIGITS[(t % 36) as usize];
        t /= 36;
    }
    let mut id = String::with_capacity(15);
    id.extend(head.iter().map(|&b| b as char));
    id.push_str(&random_id(9));
    id
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
    fn random_ids_use_every_character_evenly_at_every_length() {
        assert_eq!(random_id(0), "");
        assert_eq!(random_id(40).len(), 40);
        let mut all = [0u32; 36];
        let mut top = [0u32; 36];
        for _ in 0..20_000 {
            let id = random_id(15);
            for (i, b) in id.bytes().enumerate() {
                let k = ALPHABET.iter().position(|&a| a == b).unwrap();
                all[k] += 1;
                if i == 14 {
                    top[k] += 1;
                }
            }
        }
        // 8,333 expected per character overall (σ ≈ 90) and 556 at the last position (σ ≈ 23).
        for k in 0..36 {
            assert!(
                (7_900..=8_770).contains(&all[k]),
                "{}: {}",
                ALPHABET[k] as char,
                all[k]
            );
            assert!(
                (420..=690).contains(&top[k]),
                "{}: {}",
                ALPHABET[k] as char,
                top[k]
            );
        }
    }

    #[test]
    fn record_ids_sort_by_time_within_a_cycle() {
        let t = 1_764_950_400_123; // 2025-12-05T16:00:00.123Z
        let (a, b, c) = (
            time_ordered_id(t),
            time_ordered_id(t + 1),
            time_ordered_id(t + 60_000),
        );
        assert!(a < b && b < c, "{a} {b} {c}");
        assert_eq!(a[..6], time_ordered_id(t)[..6]);
        assert_ne!(a[6..], time_ordered_id(t)[6..]);
        // One cycle later the time part repeats.
        assert_eq!(a[..6], time_ordered_id(t + 36i64.pow(6))[..6]);
        assert_eq!(time_ordered_id(0)[..6], *"000000");
        assert_eq!(time_ordered_id(35)[..6], *"00000z");
        assert_eq!(time_ordered_id(36)[..6], *"000010");
        assert_eq!(time_ordered_id(-1)[..6], *"zzzzzz");
    }

    #[test]
    fn names_reject_sql_metacharacters() {
        assert!(is_valid_name("posts_2"));
        for bad in ["", "a b", "a\"b", "a;drop", "x'--", "ü"] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }
}
