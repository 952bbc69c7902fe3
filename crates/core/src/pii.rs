//! PII field options and the pure parts of PII protection: what a field marked `pii` stores beside
//! its ciphertext, the text its blind index is computed from, and the masks a caller who may not see
//! the value receives. Keys and ciphers live in `basalt-service` (`pii`); nothing here is secret.

use serde_json::{json, Map, Value as Json};

use crate::schema::{Field, FieldType};

/// The column holding a record's wrapped data key (absent from collections without PII fields).
pub const DEK_COLUMN: &str = "_pii";
/// Prefix of a stored ciphertext (`pii1:<base64>`); a value without it was never encrypted.
pub const CIPHER_PREFIX: &str = "pii1:";

/// What a caller who fails `revealRule` receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mask {
    /// `null`.
    #[default]
    Redact,
    /// Shape kept, most characters hidden: `j***@e***.com`, `+44 ****** 789`, `A***e`.
    Partial,
    /// `****6789`.
    Last4,
    /// A keyed hash of the value (`h:` + 16 hex digits): equal values give equal hashes, so a
    /// masked column still groups, and nothing about the value can be read from it.
    Hash,
}

impl Mask {
    pub fn as_str(self) -> &'static str {
        match self {
            Mask::Redact => "redact",
            Mask::Partial => "partial",
            Mask::Last4 => "last4",
            Mask::Hash => "hash",
        }
    }
    fn parse(s: &str) -> Option<Mask> {
        Some(match s {
            "redact" | "" => Mask::Redact,
            "partial" => Mask::Partial,
            "last4" => Mask::Last4,
            "hash" => Mask::Hash,
            _ => return None,
        })
    }
}

/// A field's `pii` object.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pii {
    /// Keep an equality-searchable blind index (`field = "x"`, `!=`, unique indexes, identity fields).
    pub searchable: bool,
    pub mask: Mask,
    /// Who sees the value (the filter language, like the collection's rules). `None`: superusers only;
    /// `""`: everyone who may read the record.
    pub reveal_rule: Option<String>,
    /// `"fpe": "digits"`: callers failing `revealRule` (and events) get a same-format token instead
    /// of the mask: the value's digits encrypted with FF1 (NIST SP 800-38G), everything else kept.
    pub fpe_digits: bool,
    /// Existing values are still being encrypted (the field was marked pii after it held data): some
    /// rows hold plaintext and no blind index, so equality also compares those rows' plaintext. Set by
    /// the server from [`MIGRATIONS_PARAM`], never part of the definition's JSON.
    pub pending: bool,
    /// pii was removed from the field and its values are being decrypted in the background: the
    /// field is plain for callers (no mask, no audit, events carry values, writes store plaintext)
    /// while rows not done yet still hold ciphertext. Set by the server from [`DECRYPTIONS_PARAM`].
    pub decrypting: bool,
}

/// The `_params` key listing `[collection id, field id, searchable]` whose pii was removed and whose
/// values are being decrypted.
pub const DECRYPTIONS_PARAM: &str = "piiDecryptions";

/// The query of the decryption list ([`parse_decryptions`] reads its answer).
pub fn decryptions_sql(d: crate::sql::Dialect) -> crate::sql::Sql {
    let mut q = crate::sql::Sql::new(d);
    q.push("SELECT value FROM _params WHERE key = ")
        .bind(crate::sql::Value::Text(DECRYPTIONS_PARAM.into()));
    q
}

pub fn parse_decryptions(v: Option<crate::sql::Value>) -> Vec<(String, String, bool)> {
    v.and_then(|v| serde_json::from_str(&v.into_string()).ok())
        .unwrap_or_default()
}

impl Pii {
    /// The transient protection of a field whose pii is being removed (see `decrypting`).
    pub fn decrypting(searchable: bool) -> Pii {
        Pii {
            searchable,
            reveal_rule: Some(String::new()),
            decrypting: true,
            ..Default::default()
        }
    }
}

/// While `f`'s values are being encrypted or decrypted (`pending`, `decrypting`), rows in clear have
/// no blind index: appends ` OR (<that row holds text in clear>)` to an equality on the blind index.
/// `q` qualifies the columns (`"_m".` or nothing).
pub fn or_clear_match(s: &mut crate::sql::Sql, q: &str, f: &Field, text: &str) {
    if !f.pii.as_ref().is_some_and(|p| p.pending || p.decrypting) {
        return;
    }
    let col = format!("{q}{}", crate::sql::ident(&f.name));
    s.push(" OR (")
        .push(q)
        .ident(&index_column(f))
        .push(" = '' AND substr(")
        .push(&col)
        .push(", 1, 5) != 'pii1:' AND ");
    if f.ty() == FieldType::Email {
        s.push("LOWER(").push(&col).push(")");
    } else {
        s.push(&col);
    }
    s.push(" = ")
        .bind(crate::sql::Value::Text(text.to_string()))
        .push(")");
}

/// The `_params` key listing `[collection id, field id]` pairs whose existing values are being
/// encrypted in the background.
pub const MIGRATIONS_PARAM: &str = "piiMigrations";

/// The query of that list ([`parse_migrations`] reads its answer).
pub fn migrations_sql(d: crate::sql::Dialect) -> crate::sql::Sql {
    let mut q = crate::sql::Sql::new(d);
    q.push("SELECT value FROM _params WHERE key = ")
        .bind(crate::sql::Value::Text(MIGRATIONS_PARAM.into()));
    q
}

/// The list from its stored value (none when missing or unreadable).
pub fn parse_migrations(v: Option<crate::sql::Value>) -> Vec<(String, String)> {
    v.and_then(|v| serde_json::from_str(&v.into_string()).ok())
        .unwrap_or_default()
}

/// The field types whose values may be marked `pii`.
pub fn supported(t: FieldType) -> bool {
    matches!(
        t,
        FieldType::Text
            | FieldType::Email
            | FieldType::Number
            | FieldType::Date
            | FieldType::Json
            | FieldType::Editor
    )
}

impl Pii {
    /// Parses a field's `pii` value: `null`/absent is no protection; an object is validated.
    pub fn from_json(v: Option<&Json>) -> Result<Option<Pii>, String> {
        let o = match v {
            None | Some(Json::Null) => return Ok(None),
            Some(Json::Object(o)) => o,
            Some(_) => return Err("pii must be an object or null".into()),
        };
        for k in o.keys() {
            if !matches!(k.as_str(), "searchable" | "mask" | "revealRule" | "fpe") {
                return Err(format!(
                    "unknown pii option {k:?} (searchable, mask, revealRule, fpe)"
                ));
            }
        }
        let searchable = match o.get("searchable") {
            None | Some(Json::Null) => false,
            Some(Json::Bool(b)) => *b,
            Some(_) => return Err("pii.searchable must be a boolean".into()),
        };
        let mask = match o.get("mask") {
            None | Some(Json::Null) => Mask::Redact,
            Some(Json::String(s)) => Mask::parse(s).ok_or_else(|| {
                format!("pii.mask {s:?} is not one of redact, partial, last4, hash")
            })?,
            Some(_) => return Err("pii.mask must be a string".into()),
        };
        let reveal_rule = match o.get("revealRule") {
            None | Some(Json::Null) => None,
            Some(Json::String(s)) => Some(s.clone()),
            Some(_) => return Err("pii.revealRule must be a string or null".into()),
        };
        let fpe_digits = match o.get("fpe") {
            None | Some(Json::Null) => false,
            Some(Json::String(s)) if s == "digits" => true,
            Some(_) => return Err("pii.fpe must be \"digits\" or null".into()),
        };
        Ok(Some(Pii {
            searchable,
            mask,
            reveal_rule,
            fpe_digits,
            pending: false,
            decrypting: false,
        }))
    }

    pub fn to_json(&self) -> Json {
        json!({
            "searchable": self.searchable,
            "mask": self.mask.as_str(),
            "revealRule": self.reveal_rule,
            "fpe": if self.fpe_digits { json!("digits") } else { Json::Null },
        })
    }
}

/// The column of a searchable field's blind index, named by the field's id so a rename keeps it.
pub fn index_column(f: &Field) -> String {
    format!("_bi_{}", f.id)
}

/// The text a value's blind index is computed from: emails lower-cased (sign-in matches them
/// case-insensitively), numbers in their canonical JSON form (`42`, not `42.0`), JSON values
/// serialised, text as it is. `None` for an empty value (stored and indexed as `''`, never encrypted).
pub fn canonical(f: &Field, v: &Json) -> Option<String> {
    let s = match v {
        Json::Null => return None,
        Json::String(s) if s.is_empty() => return None,
        Json::String(s) => match f.ty() {
            FieldType::Email => s.to_lowercase(),
            FieldType::Number => {
                let n: f64 = s.trim().parse().ok()?;
                crate::record::num_json(n).to_string()
            }
            FieldType::Json => v.to_string(),
            _ => s.clone(),
        },
        Json::Number(n) => match f.ty() {
            FieldType::Number | FieldType::Text | FieldType::Editor => n
                .as_f64()
                .map(|x| crate::record::num_json(x).to_string())
                .unwrap_or_else(|| n.to_string()),
            _ => v.to_string(),
        },
        Json::Bool(_) if f.ty() != FieldType::Json => v.to_string(),
        other => other.to_string(),
    };
    Some(s)
}

/// The masked form of a plaintext value (`hash` is given the keyed hash by the caller).
pub fn mask(m: Mask, f: &Field, plain: &Json, hash: impl FnOnce() -> String) -> Json {
    if is_empty(plain) {
        return plain.clone();
    }
    let text = match plain {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    };
    match m {
        Mask::Redact => Json::Null,
        Mask::Hash => Json::String(hash()),
        Mask::Last4 => {
            let chars: Vec<char> = text.chars().filter(|c| !c.is_whitespace()).collect();
            let tail: String = chars[chars.len().saturating_sub(4)..].iter().collect();
            Json::String(format!("****{tail}"))
        }
        Mask::Partial => Json::String(match f.ty() {
            FieldType::Email => partial_email(&text),
            FieldType::Date => partial_date(&text),
            FieldType::Json | FieldType::Number => "***".to_string(),
            _ if looks_like_phone(&text) => partial_phone(&text),
            _ => partial_text(&text),
        }),
    }
}

fn is_empty(v: &Json) -> bool {
    match v {
        Json::Null => true,
        Json::String(s) => s.is_empty(),
        _ => false,
    }
}

fn first_char(s: &str) -> String {
    s.chars().next().map(String::from).unwrap_or_default()
}

/// `john@example.com` → `j***@e***.com`.
fn partial_email(s: &str) -> String {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return partial_text(s);
    };
    let (host, tld) = domain.rsplit_once('.').unwrap_or((domain, ""));
    let mut out = format!("{}***@{}***", first_char(local), first_char(host));
    if !tld.is_empty() {
        out.push('.');
        out.push_str(tld);
    }
    out
}

/// `1990-05-17 00:00:00.000Z` → `1990-**-** **:**:**.***Z` (the year only).
fn partial_date(s: &str) -> String {
    s.char_indices()
        .map(|(i, c)| if i >= 4 && c.is_ascii_digit() { '*' } else { c })
        .collect()
}

fn looks_like_phone(s: &str) -> bool {
    let digits = s.chars().filter(char::is_ascii_digit).count();
    digits >= 6
        && s.chars()
            .all(|c| c.is_ascii_digit() || " +-().".contains(c))
}

/// `+44 123456 789` → `+44 ****** 789`: the country code (a leading `+` group) and the last three
/// digits stay, every other digit is hidden, separators are kept.
fn partial_phone(s: &str) -> String {
    let total = s.chars().filter(char::is_ascii_digit).count();
    let mut seen = 0;
    let mut in_cc = s.starts_with('+');
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii_digit() {
            seen += 1;
            out.push(if in_cc || seen + 3 > total { c } else { '*' });
        } else {
            if c != '+' {
                in_cc = false;
            }
            out.push(c);
        }
    }
    out
}

/// `Alice Smith` → `A***h`; one or two characters → `***`.
fn partial_text(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= 2 {
        return "***".into();
    }
    format!("{}***{}", chars[0], chars[chars.len() - 1])
}

/// The field definitions of a collection that carry `pii`.
pub fn fields(fields: &[Field]) -> impl Iterator<Item = &Field> {
    fields.iter().filter(|f| f.pii.is_some())
}

/// Writes `pii` into a field's JSON object when set.
pub fn write_json(f: &Field, o: &mut Map<String, Json>) {
    // A field whose pii is being removed is already plain in its definition.
    if let Some(p) = f.pii.as_ref().filter(|p| !p.decrypting) {
        o.insert("pii".into(), p.to_json());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(t: FieldType) -> Field {
        Field::new("x", t)
    }

    #[test]
    fn masks_keep_the_shape_and_hide_the_value() {
        let e = field(FieldType::Email);
        let t = field(FieldType::Text);
        let p = |f: &Field, v: &str| mask(Mask::Partial, f, &json!(v), String::new);
        assert_eq!(p(&e, "john@example.com"), json!("j***@e***.com"));
        assert_eq!(p(&t, "+44 123456 789"), json!("+44 ****** 789"));
        assert_eq!(p(&t, "Alice Smith"), json!("A***h"));
        assert_eq!(p(&t, "Al"), json!("***"));
        assert_eq!(
            p(&field(FieldType::Date), "1990-05-17 10:00:00.000Z"),
            json!("1990-**-** **:**:**.***Z")
        );
        assert_eq!(
            mask(Mask::Last4, &t, &json!("4111 1111 1111 1234"), String::new),
            json!("****1234")
        );
        assert_eq!(mask(Mask::Redact, &t, &json!("x"), String::new), Json::Null);
        assert_eq!(
            mask(Mask::Hash, &t, &json!("x"), || "h:01".into()),
            json!("h:01")
        );
        // An empty value stays empty: nothing to hide.
        assert_eq!(mask(Mask::Redact, &t, &json!(""), String::new), json!(""));
    }

    #[test]
    fn canonical_text_matches_what_filters_compare() {
        let n = field(FieldType::Number);
        assert_eq!(canonical(&n, &json!(42.0)), canonical(&n, &json!("42")));
        let e = field(FieldType::Email);
        assert_eq!(canonical(&e, &json!("A@B.io")).as_deref(), Some("a@b.io"));
        assert_eq!(canonical(&e, &json!("")), None);
    }

    #[test]
    fn options_are_validated() {
        assert!(Pii::from_json(Some(&json!({"mask": "nope"}))).is_err());
        assert!(Pii::from_json(Some(&json!({"searchable": "yes"}))).is_err());
        assert!(Pii::from_json(Some(&json!({"other": 1}))).is_err());
        let p = Pii::from_json(Some(
            &json!({"searchable": true, "mask": "partial", "revealRule": "id = @request.auth.id"}),
        ))
        .unwrap()
        .unwrap();
        assert!(p.searchable);
        assert_eq!(p.mask, Mask::Partial);
        assert_eq!(Pii::from_json(Some(&p.to_json())).unwrap(), Some(p));
        assert_eq!(Pii::from_json(None).unwrap(), None);
    }
}
