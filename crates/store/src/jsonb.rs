//! Writes SQLite's binary JSON ("JSONB", SQLite ≥ 3.45; format: <https://sqlite.org/jsonb.html>)
//! straight from Rust values, so a batch of many small documents can be stored as one BLOB that
//! SQLite's JSON functions (`jsonb_each`, `->>`, `json()`) read without parsing text.
//!
//! Every element is a header (low nibble: type; high nibble: the payload size, or how many bytes
//! after it hold the size) and a payload. Strings are stored raw (`TEXTRAW`: SQLite escapes them
//! when it renders JSON), so writing a string is a copy. Containers are opened with a 4-byte size
//! that [`Jsonb::close`] fills in; the format allows a size field wider than needed.

const NULL: u8 = 0;
const TRUE: u8 = 1;
const FALSE: u8 = 2;
const INT: u8 = 3;
const FLOAT: u8 = 5;
/// Text that needs no escaping (object keys written here are plain ASCII).
const TEXT: u8 = 7;
/// Text stored verbatim, escaped by SQLite when rendered as JSON.
const TEXTRAW: u8 = 10;
pub const ARRAY: u8 = 11;
pub const OBJECT: u8 = 12;

/// A JSONB document being written.
#[derive(Debug, Default, Clone)]
pub struct Jsonb {
    pub buf: Vec<u8>,
}

impl Jsonb {
    pub fn with_capacity(n: usize) -> Jsonb {
        Jsonb {
            buf: Vec::with_capacity(n),
        }
    }

    #[inline]
    fn header(&mut self, ty: u8, size: usize) {
        match size {
            0..=11 => self.buf.push(((size as u8) << 4) | ty),
            12..=0xff => self.buf.extend_from_slice(&[0xc0 | ty, size as u8]),
            0x100..=0xffff => {
                self.buf.push(0xd0 | ty);
                self.buf.extend_from_slice(&(size as u16).to_be_bytes());
            }
            _ => {
                self.buf.push(0xe0 | ty);
                self.buf.extend_from_slice(&(size as u32).to_be_bytes());
            }
        }
    }

    #[inline]
    fn leaf(&mut self, ty: u8, payload: &[u8]) {
        self.header(ty, payload.len());
        self.buf.extend_from_slice(payload);
    }

    /// Opens an [`ARRAY`] or [`OBJECT`]; returns the mark [`Jsonb::close`] takes.
    pub fn open(&mut self, ty: u8) -> usize {
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0xe0 | ty, 0, 0, 0, 0]);
        at
    }

    /// Closes the container opened at `mark` (its payload is everything written since).
    pub fn close(&mut self, mark: usize) {
        let size = (self.buf.len() - mark - 5) as u32;
        self.buf[mark + 1..mark + 5].copy_from_slice(&size.to_be_bytes());
    }

    /// An object key: plain ASCII that needs no escaping (`"type"`, `"execTime"`).
    #[inline]
    pub fn key(&mut self, k: &str) {
        debug_assert!(k
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\'));
        self.leaf(TEXT, k.as_bytes());
    }

    #[inline]
    pub fn str(&mut self, s: &str) {
        self.leaf(TEXTRAW, s.as_bytes());
    }

    /// One string made of `parts` (`"GET " + url`) without joining them first.
    pub fn str_parts(&mut self, parts: &[&str]) {
        self.header(TEXTRAW, parts.iter().map(|p| p.len()).sum());
        for p in parts {
            self.buf.extend_from_slice(p.as_bytes());
        }
    }

    pub fn int(&mut self, n: i64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut v = n.unsigned_abs();
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        if n < 0 {
            i -= 1;
            digits[i] = b'-';
        }
        self.leaf(INT, &digits[i..]);
    }

    /// A finite float as serde_json writes it (`0.125`, `1e-7`: the shortest text that reads back
    /// the same); a non-finite one as `null`, as serde_json does.
    pub fn float(&mut self, f: f64) {
        if f.is_finite() {
            let mut b = zmij::Buffer::new();
            let text = b.format_finite(f);
            self.leaf(FLOAT, text.as_bytes());
        } else {
            self.buf.push(NULL);
        }
    }

    /// Any JSON value (error details, imported entries' data).
    pub fn value(&mut self, v: &serde_json::Value) {
        use serde_json::Value as J;
        match v {
            J::Null => self.buf.push(NULL),
            J::Bool(true) => self.buf.push(TRUE),
            J::Bool(false) => self.buf.push(FALSE),
            J::Number(n) => match n.as_i64() {
                Some(i) => self.int(i),
                None => {
                    // u64 past i64, or a float: its JSON text as it is.
                    let text = n.to_string();
                    let ty = if n.is_u64() { INT } else { FLOAT };
                    self.leaf(ty, text.as_bytes());
                }
            },
            J::String(s) => self.str(s),
            J::Array(items) => {
                let m = self.open(ARRAY);
                for item in items {
                    self.value(item);
                }
                self.close(m);
            }
            J::Object(map) => {
                let m = self.open(OBJECT);
                for (k, item) in map {
                    // Keys from elsewhere may need escaping: stored raw.
                    self.str(k);
                    self.value(item);
                }
                self.close(m);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SQLite itself reads what is written here: `json()` renders it as the JSON serde writes for
    /// the same value, `json_valid(x, 8)` accepts it as well-formed JSONB, and `->>` finds values.
    #[test]
    fn sqlite_reads_it_as_the_same_json() -> rusqlite::Result<()> {
        let c = rusqlite::Connection::open_in_memory()?;
        let long = "x".repeat(300);
        let huge = "y".repeat(70_000);
        let cases = [
            serde_json::json!(null),
            serde_json::json!([
                true,
                false,
                0,
                -1,
                12,
                -9_223_372_036_854_775_808i64,
                18_446_744_073_709_551_615u64
            ]),
            // SQLite renders floats with 15 significant digits (as its JSON functions always do).
            serde_json::json!([0.5, 0.125, 1e-7, 123456789.123456, -2.5e300]),
            serde_json::json!({"a": "plain", "q": "quote \" backslash \\ tab \t nl \n ctl \u{1} é €", "empty": ""}),
            serde_json::json!({"k \"odd\"": {"nested": [1, {"deep": [[]]}, {}]}, "long": long, "huge": huge}),
        ];
        for v in cases {
            let mut j = Jsonb::default();
            j.value(&v);
            let (text, valid): (String, bool) =
                c.query_row("SELECT json(?1), json_valid(?1, 8)", [&j.buf], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
            assert!(valid, "well-formed JSONB: {v}");
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(&text).unwrap_or_default(),
                v,
                "{text}"
            );
        }
        // The writer's own calls: keys, raw strings, ints and floats in an array of objects.
        let mut j = Jsonb::default();
        let a = j.open(ARRAY);
        for i in 0..3 {
            let o = j.open(OBJECT);
            j.key("id");
            j.str_parts(&["r", &i.to_string()]);
            j.key("n");
            j.int(i * 1000 - 1);
            j.key("t");
            j.float(0.25 * i as f64);
            j.key("nan");
            j.float(f64::NAN);
            j.close(o);
        }
        j.close(a);
        let rows: Vec<(String, i64, f64, Option<f64>)> = c
            .prepare("SELECT e.value ->> '$.id', e.value ->> '$.n', e.value ->> '$.t', e.value ->> '$.nan' FROM jsonb_each(?1) AS e")?
            .query_map([&j.buf], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
            .collect::<rusqlite::Result<_>>()?;
        assert_eq!(
            rows,
            vec![
                ("r0".into(), -1, 0.0, None),
                ("r1".into(), 999, 0.25, None),
                ("r2".into(), 1999, 0.5, None)
            ]
        );
        Ok(())
    }
}
