//! Records: request bodies → validated, typed column values; stored rows → record JSON.

use serde_json::{Map, Value as Json};

use crate::error::{Error, FieldError, FieldErrors, Result};
use crate::schema::{Collection, ColumnKind, Field, FieldType};
use crate::sql::Value;
use crate::{id, time};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// A record's values keyed by field name, already in their JSON output types.
pub type Data = Map<String, Json>;

/// A record's id (`""` when missing).
pub fn id_of(d: &Data) -> &str {
    d.get("id").and_then(Json::as_str).unwrap_or("")
}

/// Converts a stored column value to the field's JSON type.
pub fn column_to_json(f: &Field, v: Value) -> Json {
    if f.pii.is_some() {
        match v {
            // Opened by the service: the value's output JSON.
            Value::Json(s) => return serde_json::from_str(&s).unwrap_or(Json::Null),
            // Never a ciphertext to a caller, whatever path forgot to open it.
            Value::Text(s) if s.starts_with(crate::pii::CIPHER_PREFIX) => return Json::Null,
            Value::Null => return zero(f),
            Value::Text(s) if s.is_empty() => return zero(f),
            _ => {}
        }
    }
    match f.column_kind() {
        ColumnKind::Number => num_json(v.as_f64().unwrap_or(0.0)),
        ColumnKind::Bool => Json::Bool(v.as_bool()),
        ColumnKind::Json => match v {
            Value::Null => {
                if f.is_multiple() {
                    Json::Array(vec![])
                } else {
                    Json::Null
                }
            }
            Value::Text(s) | Value::Json(s) => serde_json::from_str(&s).unwrap_or(Json::Null),
            Value::Int(i) => Json::from(i),
            Value::Real(f) => num_json(f),
            other => Json::String(other.into_string()),
        },
        ColumnKind::Text => Json::String(match v {
            Value::Null => String::new(),
            other => other.into_string(),
        }),
    }
}

pub fn num_json(f: f64) -> Json {
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        Json::from(f as i64)
    } else {
        serde_json::Number::from_f64(f)
            .map(Json::Number)
            .unwrap_or(Json::from(0))
    }
}

/// Converts a field's JSON value to the value bound for its column.
pub fn json_to_column(f: &Field, v: &Json) -> Value {
    match f.column_kind() {
        ColumnKind::Number => Value::Real(v.as_f64().unwrap_or(0.0)),
        ColumnKind::Bool => Value::Bool(v.as_bool().unwrap_or(false)),
        ColumnKind::Json => {
            if v.is_null() {
                if f.is_multiple() {
                    Value::Json("[]".into())
                } else {
                    Value::Null
                }
            } else {
                Value::Json(v.to_string())
            }
        }
        ColumnKind::Text => Value::Text(match v {
            Json::String(s) => s.clone(),
            Json::Null => String::new(),
            other => other.to_string(),
        }),
    }
}

/// The zero value of a field.
pub fn zero(f: &Field) -> Json {
    if f.is_multiple() {
        return Json::Array(vec![]);
    }
    if f.ty() == FieldType::GeoPoint {
        return serde_json::json!({"lon": 0, "lat": 0});
    }
    match f.column_kind() {
        ColumnKind::Number => Json::from(0),
        ColumnKind::Bool => Json::Bool(false),
        ColumnKind::Json => Json::Null,
        ColumnKind::Text => Json::String(String::new()),
    }
}

fn as_list(v: &Json) -> Vec<String> {
    match v {
        Json::Array(a) => a
            .iter()
            .filter_map(scalar_string)
            .filter(|s| !s.is_empty())
            .collect(),
        Json::Null => vec![],
        other => scalar_string(other)
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect(),
    }
}

fn scalar_string(v: &Json) -> Option<String> {
    match v {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        Json::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Normalizes one incoming value to the field's type (lenient like the protocol: "12" → 12 for numbers,
/// "true" → true, a single value for a multi field → [value]). Returns an error code on type mismatch.
pub fn normalize(f: &Field, v: &Json) -> std::result::Result<Json, FieldError> {
    let invalid = |m: &str| FieldError::new(crate::codes::INVALID_VALUE, m.to_string());
    // NUL cannot be stored in PostgreSQL text; refuse it on every backend alike.
    if contains_nul(v) {
        return Err(invalid("Must not contain null characters."));
    }
    Ok(match f.ty() {
        FieldType::Number => match v {
            Json::Number(n) => num_json(n.as_f64().unwrap_or(0.0)),
            Json::String(s) if s.trim().is_empty() => Json::from(0),
            // The protocol coerces unparsable strings to 0 rather than failing.
            Json::String(s) => match s.trim().parse::<f64>() {
                Ok(x) if x.is_finite() => num_json(x),
                _ => Json::from(0),
            },
            Json::Bool(b) => Json::from(*b as i64),
            Json::Null => Json::from(0),
            _ => return Err(invalid("Must be a valid number.")),
        },
        FieldType::Bool => match v {
            Json::Bool(b) => Json::Bool(*b),
            Json::String(s) => Json::Bool(matches!(s.as_str(), "true" | "1" | "on")),
            Json::Number(n) => Json::Bool(n.as_f64().unwrap_or(0.0) != 0.0),
            Json::Null => Json::Bool(false),
            _ => return Err(invalid("Must be a boolean.")),
        },
        FieldType::Json => match v {
            // A string that holds JSON is parsed, as the protocol does for form values.
            Json::String(s) if !s.is_empty() => {
                serde_json::from_str(s).unwrap_or_else(|_| v.clone())
            }
            _ => v.clone(),
        },
        FieldType::GeoPoint => {
            geo_point(v).ok_or_else(|| invalid("Must be an object with numeric lon and lat."))?
        }
        FieldType::Select | FieldType::Relation | FieldType::File => {
            let list = as_list(v);
            if f.is_multiple() {
                let mut seen = Vec::with_capacity(list.len());
                for x in list {
                    if !seen.contains(&x) {
                        seen.push(x);
                    }
                }
                Json::Array(seen.into_iter().map(Json::String).collect())
            } else {
                Json::String(list.last().cloned().unwrap_or_default())
            }
        }
        FieldType::Date | FieldType::Autodate => match v {
            Json::Null => Json::String(String::new()),
            Json::String(s) if s.is_empty() => Json::String(String::new()),
            // Unparsable dates are stored empty, as the protocol does.
            Json::String(s) => Json::String(time::normalize(s).unwrap_or_default()),
            _ => Json::String(String::new()),
        },
        _ => match v {
            Json::String(s) => Json::String(s.clone()),
            Json::Null => Json::String(String::new()),
            Json::Number(_) | Json::Bool(_) => Json::String(scalar_string(v).unwrap_or_default()),
            _ => return Err(invalid("Must be a string.")),
        },
    })
}

/// A geoPoint as the protocol keeps it: `{lon, lat}` and nothing else, from an object or a JSON
/// string of one (other keys dropped, a missing or null coordinate 0, as PocketBase's GeoPoint
/// scan does); `None` when a coordinate is not a number.
fn geo_point(v: &Json) -> Option<Json> {
    match v {
        Json::Null => Some(serde_json::json!({"lon": 0, "lat": 0})),
        Json::String(s) if s.trim().is_empty() => Some(serde_json::json!({"lon": 0, "lat": 0})),
        Json::String(s) => match serde_json::from_str::<Json>(s).ok()? {
            o @ Json::Object(_) => geo_point(&o),
            _ => None,
        },
        Json::Object(o) => {
            let coord = |k: &str| match o.get(k) {
                None | Some(Json::Null) => Some(0.0),
                Some(Json::Number(n)) => n.as_f64(),
                Some(_) => None,
            };
            let (lon, lat) = (coord("lon")?, coord("lat")?);
            Some(serde_json::json!({"lon": num_json(lon), "lat": num_json(lat)}))
        }
        _ => None,
    }
}

fn contains_nul(v: &Json) -> bool {
    match v {
        Json::String(s) => s.contains('\0'),
        Json::Array(a) => a.iter().any(contains_nul),
        Json::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)),
        _ => false,
    }
}

fn is_empty(v: &Json) -> bool {
    match v {
        Json::Null => true,
        Json::String(s) => s.is_empty(),
        Json::Array(a) => a.is_empty(),
        Json::Number(n) => n.as_f64() == Some(0.0),
        Json::Bool(b) => !b,
        Json::Object(o) => o.is_empty(),
    }
}

fn len_params(k: &str, n: i64) -> serde_json::Value {
    serde_json::json!({ k: n })
}

/// Checks one normalized value against the field's options. Relations are checked for existence by the
/// caller (it needs the database).
pub fn validate_value(f: &Field, v: &Json) -> std::result::Result<(), FieldError> {
    if f.required && is_empty(v) && f.ty() != FieldType::Autodate {
        return Err(FieldError::required());
    }
    match f.ty() {
        FieldType::Text | FieldType::Editor | FieldType::Password => {
            let s = v.as_str().unwrap_or("");
            let n = s.chars().count() as i64;
            if f.ty() == FieldType::Editor {
                let max = if f.max_size > 0 { f.max_size } else { 5 << 20 };
                if s.len() as i64 > max {
                    return Err(FieldError::new(
                        crate::codes::MAX_SIZE_CONSTRAINT,
                        format!("Must be less than {max} bytes."),
                    ));
                }
                return Ok(());
            }
            if n == 0 {
                return Ok(());
            }
            if let Some(min) = f.min_num().filter(|m| *m > 0.0) {
                if (n as f64) < min {
                    return Err(FieldError::new(
                        crate::codes::MIN_TEXT_CONSTRAINT,
                        format!("Must be at least {} character(s).", min as i64),
                    )
                    .with_params(len_params("min", min as i64)));
                }
            }
            let max =
                f.max_num()
                    .filter(|m| *m > 0.0)
                    .unwrap_or(if f.ty() == FieldType::Password {
                        71.0
                    } else {
                        5000.0
                    });
            if (n as f64) > max {
                return Err(FieldError::new(
                    crate::codes::MAX_TEXT_CONSTRAINT,
                    format!("Must be no more than {} character(s).", max as i64),
                )
                .with_params(len_params("max", max as i64)));
            }
            // Empty text returned above: `required` is what refuses it, as in PocketBase. A pattern
            // that does not compile cannot be saved; one stored before that check is not enforced.
            if !f.pattern.is_empty() && text_pattern(&f.pattern).is_ok_and(|re| !re.is_match(s)) {
                return Err(FieldError::new(
                    crate::codes::INVALID_FORMAT,
                    "Invalid value format.",
                ));
            }
        }
        FieldType::Number => {
            let x = v.as_f64().unwrap_or(0.0);
            if f.only_int && x.fract() != 0.0 {
                return Err(FieldError::new(
                    crate::codes::ONLY_INT_CONSTRAINT,
                    "Decimal numbers are not allowed.",
                ));
            }
            if let Some(min) = f.min_num() {
                if x < min {
                    return Err(FieldError::new(
                        crate::codes::MIN_NUMBER_CONSTRAINT,
                        format!("Must be greater or equal than {}.", num_json(min)),
                    )
                    .with_params(serde_json::json!({"min": min})));
                }
            }
            if let Some(max) = f.max_num() {
                if x > max {
                    return Err(FieldError::new(
                        crate::codes::MAX_NUMBER_CONSTRAINT,
                        format!("Must be less or equal than {}.", num_json(max)),
                    )
                    .with_params(serde_json::json!({"max": max})));
                }
            }
        }
        FieldType::Email => {
            let s = v.as_str().unwrap_or("");
            if !s.is_empty() {
                if !is_email(s) {
                    return Err(FieldError::new(
                        crate::codes::IS_EMAIL,
                        "Must be a valid email address.",
                    ));
                }
                domain_check(f, s.rsplit('@').next().unwrap_or(""))?;
            }
        }
        FieldType::Url => {
            let s = v.as_str().unwrap_or("");
            if !s.is_empty() {
                let host = s
                    .strip_prefix("https://")
                    .or_else(|| s.strip_prefix("http://"));
                match host {
                    Some(h)
                        if !h.is_empty()
                            && !h.starts_with('/')
                            && !s.chars().any(char::is_whitespace) =>
                    {
                        domain_check(f, h.split(['/', ':', '?', '#']).next().unwrap_or(""))?;
                    }
                    _ => {
                        return Err(FieldError::new(
                            crate::codes::INVALID_URL,
                            "Must be a valid url.",
                        ))
                    }
                }
            }
        }
        FieldType::Select => {
            for x in as_list(v) {
                if !f.values.contains(&x) {
                    return Err(FieldError::new(
                        crate::codes::INVALID_VALUE,
                        format!("Invalid value {x}."),
                    )
                    .with_params(serde_json::json!({ "value": x })));
                }
            }
            let n = as_list(v).len() as i64;
            if f.is_multiple() && n > f.max_select {
                return Err(FieldError::new(
                    crate::codes::TOO_MANY_VALUES,
                    format!("Select no more than {}.", f.max_select),
                )
                .with_params(len_params("maxSelect", f.max_select)));
            }
        }
        FieldType::File => {
            let n = as_list(v).len() as i64;
            if f.is_multiple() && n > f.max_select {
                return Err(FieldError::new(
                    crate::codes::TOO_MANY_FILES,
                    format!("The maximum allowed files is {}.", f.max_select),
                )
                .with_params(serde_json::json!({ "maxSelect": f.max_select })));
            }
        }
        FieldType::Relation => {
            let n = as_list(v).len() as i64;
            if f.is_multiple() && n > f.max_select {
                return Err(FieldError::new(
                    crate::codes::TOO_MANY_VALUES,
                    format!("Select no more than {}.", f.max_select),
                )
                .with_params(len_params("maxSelect", f.max_select)));
            }
            if n > 0 && n < f.min_select {
                return Err(FieldError::new(
                    crate::codes::NOT_ENOUGH_VALUES,
                    format!("Select at least {}.", f.min_select),
                )
                .with_params(len_params("minSelect", f.min_select)));
            }
        }
        FieldType::GeoPoint => {
            let (lon, lat) = (
                v["lon"].as_f64().unwrap_or(0.0),
                v["lat"].as_f64().unwrap_or(0.0),
            );
            if lon == 0.0 && lat == 0.0 && f.required {
                return Err(FieldError::required());
            }
            if !(-90.0..=90.0).contains(&lat) {
                return Err(FieldError::new(
                    crate::codes::INVALID_LATITUDE,
                    "Latitude must be between -90 and 90 degrees.",
                ));
            }
            if !(-180.0..=180.0).contains(&lon) {
                return Err(FieldError::new(
                    crate::codes::INVALID_LONGITUDE,
                    "Longitude must be between -180 and 180 degrees.",
                ));
            }
        }
        FieldType::Json => {
            let max = if f.max_size > 0 { f.max_size } else { 1 << 20 };
            if v.to_string().len() as i64 > max {
                return Err(FieldError::new(
                    crate::codes::JSON_SIZE_LIMIT,
                    format!("The maximum allowed JSON size is {max} bytes."),
                ));
            }
        }
        FieldType::Date => {
            let s = v.as_str().unwrap_or("");
            if !s.is_empty() {
                if let Some(min) = f.min.as_str().and_then(time::normalize) {
                    if s < min.as_str() {
                        return Err(FieldError::new(
                            crate::codes::MIN_DATE_CONSTRAINT,
                            format!("Must be no earlier than {min}."),
                        ));
                    }
                }
                if let Some(max) = f.max.as_str().and_then(time::normalize) {
                    if s > max.as_str() {
                        return Err(FieldError::new(
                            crate::codes::MAX_DATE_CONSTRAINT,
                            format!("Must be no later than {max}."),
                        ));
                    }
                }
            }
        }
        _ => {}
    }
    Ok(())
}

fn domain_check(f: &Field, domain: &str) -> std::result::Result<(), FieldError> {
    let d = domain.to_ascii_lowercase();
    if !f.only_domains.is_empty() && !f.only_domains.iter().any(|x| x.eq_ignore_ascii_case(&d)) {
        return Err(FieldError::new(
            crate::codes::EMAIL_DOMAIN_NOT_ALLOWED,
            "Email domain is not allowed.",
        ));
    }
    if f.except_domains.iter().any(|x| x.eq_ignore_ascii_case(&d)) {
        return Err(FieldError::new(
            crate::codes::EMAIL_DOMAIN_NOT_ALLOWED,
            "Email domain is not allowed.",
        ));
    }
    Ok(())
}

pub fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && local.len() <= 64
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && s.len() <= 254
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c == '<' || c == '>' || c == '"' || c == ',')
}

/// A text field's `pattern`, compiled once per distinct pattern. The syntax is RE2's, as PocketBase's
/// Go `regexp` has it: unanchored unless the pattern anchors itself, and `\d`, `\w`, `\s`, `\b` match
/// ASCII only. A pattern whose `.` or negated class would need Unicode mode (`regex` refuses to let those
/// match single bytes of a `str`) is compiled in Unicode mode, where those classes also match non-ASCII
/// letters and digits. `Err` is the parse error, for `validation_invalid_regex`.
pub fn text_pattern(pattern: &str) -> Result<Arc<regex::Regex>, String> {
    static CACHE: PatternCache<regex::Regex> = OnceLock::new();
    cached(&CACHE, pattern, || {
        let build = |unicode: bool| {
            regex::RegexBuilder::new(pattern)
                .unicode(unicode)
                .size_limit(1 << 20)
                .build()
        };
        build(false).or_else(|_| build(true)).map_err(|e| match e {
            regex::Error::Syntax(m) => m
                .lines()
                .rfind(|l| l.starts_with("error: "))
                .map(|l| l.trim_start_matches("error: ").to_string())
                .unwrap_or(m),
            other => other.to_string(),
        })
    })
}

/// What a pattern compiled to (or why it did not), by pattern text.
type PatternCache<T> = OnceLock<Mutex<HashMap<String, Result<Arc<T>, String>>>>;

/// `cache`'s entry for `pattern`, made by `build` on a miss. Patterns come from collection schemas,
/// so there are few; the cache is emptied at 1,024 all the same.
fn cached<T>(
    cache: &PatternCache<T>,
    pattern: &str,
    build: impl FnOnce() -> Result<T, String>,
) -> Result<Arc<T>, String> {
    let cache = cache.get_or_init(Default::default);
    if let Some(hit) = cache.lock().ok().and_then(|c| c.get(pattern).cloned()) {
        return hit;
    }
    let made = build().map(Arc::new);
    if let Ok(mut c) = cache.lock() {
        if c.len() >= 1024 {
            c.clear();
        }
        c.insert(pattern.to_string(), made.clone());
    }
    made
}

/// A new record id: the time-ordered default ([`id::new_record_id`]) while the id field keeps
/// PocketBase's default `autogeneratePattern`, else one made from the field's own pattern.
fn new_id(f: &Field) -> String {
    match f.autogenerate_pattern.as_str() {
        "" | crate::schema::DEFAULT_ID_PATTERN => id::new_record_id(),
        p => autogenerate(p).unwrap_or_else(|_| id::new_record_id()),
    }
}

/// A value made from a text field's `autogeneratePattern`, as PocketBase makes them: the same RE2
/// syntax (ASCII classes where the pattern allows, as in [`text_pattern`]); anchors and word
/// boundaries are ignored; `*`, `+` and `{n,}` repeat at most 8 more times. The generator is
/// compiled once per distinct pattern. `Err` is why the pattern cannot generate.
pub fn autogenerate(pattern: &str) -> Result<String, String> {
    use rand::Rng;
    static CACHE: PatternCache<rand_regex::Regex> = OnceLock::new();
    let gen = cached(&CACHE, pattern, || {
        text_pattern(pattern)?;
        let parse = |unicode: bool| {
            regex_syntax::ParserBuilder::new()
                .unicode(unicode)
                .build()
                .parse(pattern)
                .map_err(|e| match e {
                    regex_syntax::Error::Parse(e) => e.kind().to_string(),
                    regex_syntax::Error::Translate(e) => e.kind().to_string(),
                    other => other.to_string(),
                })
        };
        let hir = parse(false).or_else(|_| parse(true))?;
        // Bounded before `rand_regex` sees it: `((a{1000}){1000}){1000}` would ask for a
        // 10^9-character value, and stacked repetitions (`x****…`) overflow its counters.
        if generated_size(&hir) > MAX_GENERATED {
            return Err(format!(
                "the pattern can make values longer than {MAX_GENERATED} characters"
            ));
        }
        rand_regex::Regex::with_hir(without_assertions(hir), 8).map_err(|e| e.to_string())
    })?;
    rand::thread_rng()
        .sample::<Result<String, _>, _>(&*gen)
        .map_err(|e| e.to_string())
}

/// The longest value an `autogeneratePattern` may make.
const MAX_GENERATED: u64 = 10_000;

/// An upper bound of the characters a value generated from `hir` holds, where every repetition
/// counts its body as at least one (so repetitions of nothing are bounded too).
fn generated_size(hir: &regex_syntax::hir::Hir) -> u64 {
    use regex_syntax::hir::HirKind;
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) | HirKind::Class(_) => 1,
        HirKind::Literal(l) => l.0.len() as u64,
        HirKind::Capture(c) => generated_size(&c.sub),
        HirKind::Repetition(r) => {
            let upper = r.max.unwrap_or(r.min.saturating_add(8)) as u64;
            generated_size(&r.sub).max(1).saturating_mul(upper)
        }
        HirKind::Concat(v) => v.iter().map(generated_size).fold(0, u64::saturating_add),
        HirKind::Alternation(v) => v.iter().map(generated_size).max().unwrap_or(0),
    }
}

/// `hir` with its anchors and word-boundary assertions removed (they constrain where a match is,
/// not what a generated value holds).
fn without_assertions(hir: regex_syntax::hir::Hir) -> regex_syntax::hir::Hir {
    use regex_syntax::hir::{Capture, Hir, HirKind, Repetition};
    match hir.into_kind() {
        HirKind::Empty | HirKind::Look(_) => Hir::empty(),
        HirKind::Literal(l) => Hir::literal(l.0),
        HirKind::Class(c) => Hir::class(c),
        HirKind::Capture(c) => Hir::capture(Capture {
            sub: Box::new(without_assertions(*c.sub)),
            ..c
        }),
        HirKind::Repetition(r) => Hir::repetition(Repetition {
            sub: Box::new(without_assertions(*r.sub)),
            ..r
        }),
        HirKind::Concat(v) => Hir::concat(v.into_iter().map(without_assertions).collect()),
        HirKind::Alternation(v) => {
            Hir::alternation(v.into_iter().map(without_assertions).collect())
        }
    }
}

/// What a write does to one record. Built by [`prepare`].
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Full record data after the write (all fields, including hidden ones).
    pub data: Data,
    /// Relation ids to check for existence: (field, target collection id, ids).
    pub relations: Vec<(String, String, Vec<String>)>,
    /// A new plaintext password to hash, if one was set.
    pub new_password: Option<String>,
}

pub struct WriteCtx<'a> {
    pub coll: &'a Collection,
    /// The stored record for updates.
    pub existing: Option<&'a Data>,
    /// Superuser or manageRule match: may set email/verified and change passwords without oldPassword.
    pub is_manager: bool,
    pub is_superuser: bool,
}

/// Whether `k` is a modifier key (`name+`, `+name`, `name-`).
pub fn is_modifier(k: &str) -> bool {
    k.starts_with('+') || k.ends_with('+') || k.ends_with('-') || k.ends_with(":autogenerate")
}

/// `body` with its `name:autogenerate` keys folded into `name`: the value sent (usually "") followed
/// by one generated from the text field's autogeneratePattern (PocketBase 0.40.6: "zzz" gives
/// "zzzYTXLQO"); a key of a field without a pattern is dropped. `None` when there is none. Each call
/// generates anew, so a write resolves these once and gives the result to its rules and its
/// record alike.
pub fn resolve_autogenerate(coll: &Collection, body: &Data) -> Option<Data> {
    const SUFFIX: &str = ":autogenerate";
    if !body.keys().any(|k| k.ends_with(SUFFIX)) {
        return None;
    }
    let mut out = body.clone();
    for f in coll.fields.iter().filter(|f| f.ty() == FieldType::Text) {
        let Some(v) = out.remove(&format!("{}{SUFFIX}", f.name)) else {
            continue;
        };
        if let (false, Ok(g)) = (
            f.autogenerate_pattern.is_empty(),
            autogenerate(&f.autogenerate_pattern),
        ) {
            let prefix = match v {
                Json::String(s) => s,
                Json::Null => String::new(),
                other => other.to_string(),
            };
            out.insert(f.name.clone(), Json::String(prefix + &g));
        }
    }
    Some(out)
}

/// Folds a body's modifiers (`name+` and `+name` append/prepend or add, `name-` removes or
/// subtracts, on number, select, relation and file fields; `name:autogenerate` on text fields, see
/// [`resolve_autogenerate`]) into plain `name` keys holding the value
/// the write will store, computed from the body's own `name` if it has one, else the stored record
/// (`existing`, on update) or the field's zero value (on create). The modifier keys are removed.
///
/// Access rules see this body, never the raw one, so `@request.body.credits:isset = false` refuses
/// `{"credits+": 1000}` like it refuses `{"credits": 1000}` (PocketBase resolves modifiers the same
/// way before its rules run). Returns the errors of modifier values that do not fit their field;
/// the field then keeps its plain value (if any) and is reported by the write.
pub fn resolve_modifiers(
    coll: &Collection,
    existing: Option<&Data>,
    body: &Data,
) -> (Data, FieldErrors) {
    let mut errs = FieldErrors::new();
    if !body.keys().any(|k| is_modifier(k)) {
        return (body.clone(), errs);
    }
    let mut out = resolve_autogenerate(coll, body).unwrap_or_else(|| body.clone());
    for f in &coll.fields {
        let name = f.name.as_str();
        let ty = f.ty();
        if !matches!(
            ty,
            FieldType::Number | FieldType::Select | FieldType::Relation | FieldType::File
        ) {
            continue;
        }
        let (ak, pk, rk) = (format!("{name}+"), format!("+{name}"), format!("{name}-"));
        let (append, prepend, remove) = (body.get(&ak), body.get(&pk), body.get(&rk));
        if append.is_none() && prepend.is_none() && remove.is_none() {
            continue;
        }
        for k in [&ak, &pk, &rk] {
            out.remove(k);
        }
        let base = match body.get(name) {
            Some(v) => match normalize(f, v) {
                Ok(n) => n,
                Err(e) => {
                    errs.insert(name.into(), e);
                    continue;
                }
            },
            None => existing
                .and_then(|e| e.get(name).cloned())
                .unwrap_or_else(|| zero(f)),
        };
        let next = if ty == FieldType::Number {
            let mut x = base.as_f64().unwrap_or(0.0);
            for (v, sign) in [(append, 1.0), (prepend, 1.0), (remove, -1.0)] {
                if let Some(v) = v {
                    match normalize(f, v) {
                        Ok(n) => x += sign * n.as_f64().unwrap_or(0.0),
                        Err(e) => {
                            errs.insert(name.into(), e);
                        }
                    }
                }
            }
            num_json(x)
        } else {
            let mut list = as_list(&base);
            if let Some(v) = prepend {
                let mut p = as_list(v);
                p.retain(|x| !list.contains(x));
                p.extend(list);
                list = p;
            }
            if let Some(v) = append {
                for x in as_list(v) {
                    if !list.contains(&x) {
                        list.push(x);
                    }
                }
            }
            if let Some(v) = remove {
                let r = as_list(v);
                list.retain(|x| !r.contains(x));
            }
            if f.is_multiple() {
                Json::Array(list.into_iter().map(Json::String).collect())
            } else {
                Json::String(list.last().cloned().unwrap_or_default())
            }
        };
        if !errs.contains_key(name) {
            out.insert(name.into(), next);
        }
    }
    (out, errs)
}

/// Checks an id a client sent on create against the id field's own `min`, `max` and `pattern` (as
/// PocketBase does; by default 15 characters of `[a-z0-9]`). Whatever the pattern allows, an id also
/// stays within [`id::is_valid_record_id`]'s characters, since it names the record's file folder
/// and is matched in URLs, and with a pattern other than the default it may not be one of the names
/// Windows reserves (PocketBase's rule).
fn client_id(f: &Field, s: &str) -> std::result::Result<(), FieldError> {
    validate_value(f, &Json::String(s.to_string()))?;
    if !id::is_valid_record_id(s) {
        return Err(FieldError::new(
            crate::codes::INVALID_FORMAT,
            "Invalid value format.",
        ));
    }
    const RESERVED: [&str; 22] = [
        "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
        "COM9", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
    ];
    if f.pattern != crate::schema::DEFAULT_ID_FORMAT {
        if let Some(r) = RESERVED.iter().find(|r| r.eq_ignore_ascii_case(s)) {
            return Err(FieldError::new(
                crate::codes::RESERVED_PK,
                format!("The primary key '{r}' is reserved and cannot be used."),
            )
            .with_params(serde_json::json!({ "reserved": r })));
        }
    }
    Ok(())
}

/// Applies a request body to a record (defaults for create, stored values for update), honouring
/// modifiers, and validates the result.
pub fn prepare(ctx: &WriteCtx, body: &Data) -> Result<Prepared> {
    let (p, errs) = prepare_partial(ctx, body);
    if !errs.is_empty() {
        let msg = if ctx.existing.is_none() {
            "Failed to create record."
        } else {
            "Failed to update record."
        };
        return Err(Error::validation(msg, errs));
    }
    Ok(p)
}

/// Like [`prepare`], but returns the field errors beside the result so the caller can add the ones it
/// finds in the database (missing relations) and report them all at once.
pub fn prepare_partial(ctx: &WriteCtx, body: &Data) -> (Prepared, FieldErrors) {
    let coll = ctx.coll;
    let creating = ctx.existing.is_none();
    let mut errs = FieldErrors::new();
    let mut data: Data = match ctx.existing {
        Some(e) => e.clone(),
        None => coll
            .fields
            .iter()
            .map(|f| (f.name.clone(), zero(f)))
            .collect(),
    };
    let mut new_password = None;
    // Modifiers become plain values first, exactly as the access rules saw them.
    let (resolved, modifier_errs) = resolve_modifiers(coll, ctx.existing, body);
    let body = &resolved;
    errs.extend(modifier_errs);
    for f in &coll.fields {
        let name = f.name.as_str();
        if f.ty() == FieldType::Autodate {
            continue;
        }
        if name == "id" {
            if creating {
                match body.get("id") {
                    Some(Json::String(s)) if !s.is_empty() => {
                        if let Err(e) = client_id(f, s) {
                            errs.insert("id".into(), e);
                        }
                        data.insert("id".into(), Json::String(s.clone()));
                    }
                    Some(Json::String(_)) | None | Some(Json::Null) => {
                        data.insert("id".into(), Json::String(new_id(f)));
                    }
                    Some(_) => {
                        errs.insert(
                            "id".into(),
                            FieldError::new(crate::codes::INVALID_FORMAT, "Invalid value format."),
                        );
                    }
                }
            }
            continue;
        }
        if coll.is_auth() {
            match name {
                "tokenKey" => {
                    if creating {
                        data.insert(name.into(), Json::String(id::random_id(50)));
                    }
                    continue;
                }
                "password" => {
                    if let Some(pw) = body.get("password") {
                        let pw = pw.as_str().unwrap_or("").to_string();
                        if !creating && pw.is_empty() {
                            continue;
                        }
                        if let Err(e) = validate_value(f, &Json::String(pw.clone())) {
                            errs.insert("password".into(), e);
                        } else if pw.is_empty() {
                            errs.insert("password".into(), FieldError::required());
                        }
                        let confirm = body
                            .get("passwordConfirm")
                            .and_then(Json::as_str)
                            .unwrap_or("");
                        if confirm != pw {
                            errs.insert(
                                "passwordConfirm".into(),
                                FieldError::new(
                                    crate::codes::VALUES_MISMATCH,
                                    "Values don't match.",
                                ),
                            );
                        }
                        if !creating
                            && !ctx.is_manager
                            && body
                                .get("oldPassword")
                                .and_then(Json::as_str)
                                .unwrap_or("")
                                .is_empty()
                        {
                            errs.insert("oldPassword".into(), FieldError::required());
                        }
                        new_password = Some(pw);
                    } else if creating {
                        errs.insert("password".into(), FieldError::required());
                    }
                    continue;
                }
                "email" | "verified" if !creating && !ctx.is_manager => {
                    if let Some(v) = body.get(name) {
                        if let Ok(n) = normalize(f, v) {
                            if Some(&n) != data.get(name) {
                                errs.insert(
                                    name.into(),
                                    FieldError::new(
                                        crate::codes::VALUES_MISMATCH,
                                        "The field can be changed only by managers.",
                                    ),
                                );
                            }
                        }
                    }
                    continue;
                }
                "verified" if creating && !ctx.is_manager => {
                    if body
                        .get(name)
                        .map(|v| normalize(f, v).ok() == Some(Json::Bool(true)))
                        .unwrap_or(false)
                    {
                        errs.insert(
                            name.into(),
                            FieldError::new(
                                crate::codes::VALUES_MISMATCH,
                                "The field can be changed only by managers.",
                            ),
                        );
                    }
                    continue;
                }
                _ => {}
            }
        }
        if f.hidden && !ctx.is_superuser {
            continue;
        }
        if let Some(v) = body.get(name) {
            match normalize(f, v) {
                Ok(n) => {
                    data.insert(name.into(), n);
                }
                Err(e) => {
                    errs.insert(name.into(), e);
                }
            }
        }
    }
    // Text fields with an autogeneratePattern and no value get a generated one on create (an update
    // keeps what it is given, "" included, as PocketBase does).
    if creating {
        for f in &coll.fields {
            let empty = data
                .get(&f.name)
                .and_then(Json::as_str)
                .is_none_or(str::is_empty);
            if f.ty() == FieldType::Text
                && f.name != "id"
                && !f.autogenerate_pattern.is_empty()
                && empty
                && !errs.contains_key(&f.name)
            {
                if let Ok(v) = autogenerate(&f.autogenerate_pattern) {
                    data.insert(f.name.clone(), Json::String(v));
                }
            }
        }
    }
    // Autodates.
    let now = time::now();
    for f in &coll.fields {
        if f.ty() == FieldType::Autodate
            && ((creating && f.on_create) || (!creating && f.on_update))
        {
            data.insert(f.name.clone(), Json::String(now.clone()));
        }
    }
    // Validate every field's final value.
    let mut relations = vec![];
    for f in &coll.fields {
        if errs.contains_key(&f.name)
            || f.name == "id"
            || f.name == "tokenKey"
            || f.ty() == FieldType::Password
        {
            continue;
        }
        let v = data.get(&f.name).cloned().unwrap_or(Json::Null);
        if let Err(e) = validate_value(f, &v) {
            errs.insert(f.name.clone(), e);
            continue;
        }
        if f.ty() == FieldType::Relation {
            let ids = as_list(&v);
            if !ids.is_empty() {
                relations.push((f.name.clone(), f.collection_id.clone(), ids));
            }
        }
    }
    (
        Prepared {
            data,
            relations,
            new_password,
        },
        errs,
    )
}

/// Record JSON as a client sees it. `show_email`: the viewer may see this auth record's email.
pub fn to_output(
    coll: &Collection,
    mut data: Data,
    show_hidden: bool,
    show_email: bool,
) -> Map<String, Json> {
    // Values are moved, not cloned: this runs for every record of every response.
    let mut o = Map::with_capacity(coll.fields.len() + 2);
    o.insert("collectionId".into(), Json::String(coll.id.clone()));
    o.insert("collectionName".into(), Json::String(coll.name.clone()));
    let email_visible = show_email
        || data
            .get("emailVisibility")
            .and_then(Json::as_bool)
            .unwrap_or(false);
    for f in &coll.fields {
        if f.ty() == FieldType::Password || (coll.is_auth() && f.name == "tokenKey") {
            continue;
        }
        if f.hidden && !show_hidden {
            continue;
        }
        if coll.is_auth() && f.name == "email" && !email_visible {
            continue;
        }
        let v = data.remove(&f.name).unwrap_or_else(|| zero(f));
        o.insert(f.name.clone(), v);
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::CollectionType;

    fn posts() -> Collection {
        let mut c = Collection::scaffold(CollectionType::Base, "posts");
        c.id = "pbc_1".into();
        let mut t = Field::new("title", FieldType::Text);
        t.required = true;
        t.max = serde_json::json!(10);
        let n = Field::new("n", FieldType::Number);
        let mut tags = Field::new("tags", FieldType::Select);
        tags.values = vec!["a".into(), "b".into(), "c".into()];
        tags.max_select = 3;
        c.fields.extend([t, n, tags]);
        c
    }

    #[test]
    fn create_validates_and_generates_id() {
        let c = posts();
        let ctx = WriteCtx {
            coll: &c,
            existing: None,
            is_manager: false,
            is_superuser: false,
        };
        let body: Data = serde_json::from_str(r#"{"title":"hi","n":"3","tags":"b"}"#).unwrap();
        let p = prepare(&ctx, &body).unwrap();
        assert_eq!(p.data["id"].as_str().unwrap().len(), 15);
        assert_eq!(p.data["n"], serde_json::json!(3));
        assert_eq!(p.data["tags"], serde_json::json!(["b"]));
        let bad: Data = serde_json::from_str(r#"{"title":"","tags":["z"]}"#).unwrap();
        let Err(Error::Validation { fields, .. }) = prepare(&ctx, &bad) else {
            panic!()
        };
        assert_eq!(fields["title"].code, crate::codes::REQUIRED);
        assert_eq!(fields["tags"].code, crate::codes::INVALID_VALUE);
    }

    #[test]
    fn client_ids_follow_the_id_field() {
        let mut c = posts();
        let code = |c: &Collection, id: &str| {
            let ctx = WriteCtx {
                coll: c,
                existing: None,
                is_manager: false,
                is_superuser: false,
            };
            let body: Data =
                serde_json::from_value(serde_json::json!({"title": "t", "id": id})).unwrap();
            match prepare(&ctx, &body) {
                Ok(p) => {
                    assert_eq!(p.data["id"], serde_json::json!(id));
                    "ok".to_string()
                }
                Err(Error::Validation { fields, .. }) => fields["id"].code.clone(),
                Err(e) => panic!("{e}"),
            }
        };
        // the default id field: 15 characters of [a-z0-9]
        assert_eq!(code(&c, "abcdefghij12345"), "ok");
        assert_eq!(code(&c, "abc"), crate::codes::MIN_TEXT_CONSTRAINT);
        assert_eq!(
            code(&c, "abcdefghij123456"),
            crate::codes::MAX_TEXT_CONSTRAINT
        );
        assert_eq!(code(&c, "ABCDEFGHIJ12345"), crate::codes::INVALID_FORMAT);
        assert_eq!(code(&c, "con"), crate::codes::MIN_TEXT_CONSTRAINT);
        // an id field of its own: its limits and pattern, then the folder-name rules
        let id = c.fields.iter_mut().find(|f| f.name == "id").unwrap();
        id.min = serde_json::json!(3);
        id.max = serde_json::json!(40);
        id.pattern = "^[A-Za-z0-9_-]+$".into();
        assert_eq!(code(&c, "Order-2026_0001"), "ok");
        assert_eq!(code(&c, "ab"), crate::codes::MIN_TEXT_CONSTRAINT);
        assert_eq!(code(&c, "has space"), crate::codes::INVALID_FORMAT);
        assert_eq!(code(&c, "Com1"), crate::codes::RESERVED_PK);
        let id = c.fields.iter_mut().find(|f| f.name == "id").unwrap();
        id.pattern = "^.+$".into();
        assert_eq!(code(&c, "a/b/c"), crate::codes::INVALID_FORMAT);
        assert_eq!(code(&c, "a.b"), crate::codes::INVALID_FORMAT);
    }

    #[test]
    fn update_applies_modifiers() {
        let c = posts();
        let existing: Data = serde_json::from_str(
            r#"{"id":"abc","title":"x","n":5,"tags":["a","b"],"created":"","updated":""}"#,
        )
        .unwrap();
        let ctx = WriteCtx {
            coll: &c,
            existing: Some(&existing),
            is_manager: false,
            is_superuser: false,
        };
        let body: Data = serde_json::from_str(r#"{"n+":2,"tags-":"a","tags+":["c"]}"#).unwrap();
        let p = prepare(&ctx, &body).unwrap();
        assert_eq!(p.data["n"], serde_json::json!(7));
        assert_eq!(p.data["tags"], serde_json::json!(["b", "c"]));
    }

    #[test]
    fn autogenerate_follows_the_pattern() {
        for _ in 0..50 {
            let v = autogenerate("[A-Z]{6}").unwrap();
            assert!(
                v.len() == 6 && v.bytes().all(|b| b.is_ascii_uppercase()),
                "{v}"
            );
            let v = autogenerate(r"^inv-\d{4}$").unwrap();
            assert!(text_pattern(r"^inv-\d{4}$").unwrap().is_match(&v), "{v}");
            let v = autogenerate(r"(ab|cd)\w+").unwrap();
            assert!((3..=11).contains(&v.len()) && v.is_ascii(), "{v}");
        }
        assert_ne!(
            autogenerate("[a-z]{20}").unwrap(),
            autogenerate("[a-z]{20}").unwrap()
        );
        assert_eq!(autogenerate("[").unwrap_err(), "unclosed character class");
        for huge in [
            "((a{1000}){1000}){1000}",
            &format!("[a-z]{}{{50}}", "*".repeat(90)),
        ] {
            let e = autogenerate(huge).unwrap_err();
            assert!(
                e.contains("size limit") || e.contains("longer than 10000"),
                "{huge}: {e}"
            );
        }
        assert_eq!(autogenerate("x{2000}").unwrap().len(), 2000);
    }

    #[test]
    fn text_patterns_are_re2_with_ascii_classes() {
        let m = |p: &str, s: &str| text_pattern(p).unwrap().is_match(s);
        assert!(m("^[a-z0-9]+$", "abc123"));
        assert!(!m("^[a-z0-9]+$", "abc-123"));
        assert!(m(r"^\d{3}-\d{2}$", "123-45"));
        assert!(!m(r"^\d{3}-\d{2}$", "\u{661}\u{662}\u{663}-\u{664}\u{665}"));
        assert!(m(r"\w+ \w+", "xx hello world yy"), "unanchored");
        assert!(!m(r"^\w+$", "héllo"));
        // `.` needs Unicode mode: it matches one character, not one byte.
        assert!(m("^.{5}$", "héllo"));
        let e = text_pattern("[").unwrap_err();
        assert_eq!(e, "unclosed character class");
        assert!(text_pattern("(?<").is_err());
    }
}
