//! Dialect-neutral SQL building. Every value travels as a bound [`Value`]; only validated identifiers
//! (see [`crate::id::is_valid_name`]) and fixed keywords are written into SQL text.

use std::fmt::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A value bound as a query parameter or read back from a row.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Bool(bool),
    /// JSON, stored as TEXT on SQLite and JSONB on Postgres.
    Json(String),
    /// Bytes: a BLOB on SQLite (the request logs' JSONB batches), BYTEA on Postgres.
    Blob(Vec<u8>),
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(s) | Value::Json(s) => Some(s),
            _ => None,
        }
    }
    pub fn into_string(self) -> String {
        match self {
            Value::Text(s) | Value::Json(s) => s,
            Value::Int(i) => i.to_string(),
            Value::Real(f) => f.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Blob(b) => String::from_utf8_lossy(&b).into_owned(),
            Value::Null => String::new(),
        }
    }
    /// The value as an integer: integers as they are, other numbers truncated, anything else 0.
    pub fn as_i64(&self) -> i64 {
        match self {
            Value::Int(i) => *i,
            other => other.as_f64().unwrap_or(0.0) as i64,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Real(f) => Some(*f),
            Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            Value::Text(s) => s.parse().ok(),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> bool {
        match self {
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Real(f) => *f != 0.0,
            Value::Text(s) => s == "true" || s == "1",
            _ => false,
        }
    }
}

/// Quotes an identifier. Callers pass only names that passed [`crate::id::is_valid_name`] or fixed
/// internal names; the assertion below keeps that promise checkable.
pub fn ident(name: &str) -> String {
    debug_assert!(
        name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
        "bad identifier {name}"
    );
    let clean: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    format!("\"{clean}\"")
}

/// A SQL statement under construction: text plus bound parameters in order.
#[derive(Debug, Clone)]
pub struct Sql {
    pub dialect: Dialect,
    pub text: String,
    pub params: Vec<Value>,
}

impl Sql {
    pub fn new(dialect: Dialect) -> Self {
        Self {
            dialect,
            text: String::with_capacity(128),
            params: Vec::new(),
        }
    }
    pub fn push(&mut self, s: &str) -> &mut Self {
        self.text.push_str(s);
        self
    }
    pub fn ident(&mut self, name: &str) -> &mut Self {
        debug_assert!(
            name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "bad identifier {name}"
        );
        self.text.push('"');
        self.text.extend(
            name.chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_'),
        );
        self.text.push('"');
        self
    }
    /// Binds a value and writes its placeholder. On Postgres the placeholder carries a cast so the
    /// server knows its type; NULL is written as the keyword (it is not a user value).
    pub fn bind(&mut self, v: Value) -> &mut Self {
        match self.dialect {
            Dialect::Sqlite => {
                if v == Value::Null {
                    self.text.push_str("NULL");
                    return self;
                }
                self.params.push(v);
                self.text.push('?');
            }
            Dialect::Postgres => {
                let cast = match &v {
                    Value::Null => {
                        self.text.push_str("NULL");
                        return self;
                    }
                    Value::Int(_) => "int8",
                    Value::Real(_) => "float8",
                    Value::Text(_) => "text",
                    Value::Bool(_) => "bool",
                    Value::Json(_) => "text::jsonb",
                    Value::Blob(_) => "bytea",
                };
                self.params.push(v);
                let n = self.params.len();
                let _ = write!(self.text, "${n}::{cast}");
            }
        }
        self
    }
    pub fn append(&mut self, other: Sql) -> &mut Self {
        // Re-number Postgres placeholders of `other` after ours.
        match self.dialect {
            Dialect::Sqlite => {
                self.text.push_str(&other.text);
            }
            Dialect::Postgres => {
                let offset = self.params.len();
                self.text.push_str(&renumber(&other.text, offset));
            }
        }
        self.params.extend(other.params);
        self
    }
    pub fn true_lit(&self) -> &'static str {
        match self.dialect {
            Dialect::Sqlite => "1",
            Dialect::Postgres => "TRUE",
        }
    }
}

/// Shifts `$n` placeholders by `offset`. Placeholders only ever appear as `$<digits>::`, written by
/// [`Sql::bind`]; values never appear in text, so no string literal can contain a `$`.
fn renumber(text: &str, offset: usize) -> String {
    if offset == 0 {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 8);
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && i + 1 < b.len() && b[i + 1].is_ascii_digit() {
            let mut j = i + 1;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            let n: usize = text[i + 1..j].parse().unwrap_or(0);
            let _ = write!(out, "${}", n + offset);
            i = j;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_placeholders_are_numbered_across_appends() {
        let mut a = Sql::new(Dialect::Postgres);
        a.push("a = ").bind(Value::Int(1));
        let mut b = Sql::new(Dialect::Postgres);
        b.push(" AND b = ").bind(Value::Text("x".into()));
        a.append(b);
        assert_eq!(a.text, "a = $1::int8 AND b = $2::text");
        assert_eq!(a.params.len(), 2);
    }
}
