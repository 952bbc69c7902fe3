//! View collections (`type: "view"`): read-only collections over a `SELECT` (`viewQuery`), stored as a
//! database view, with fields inferred from the query as PocketBase does:
//!
//! - the `id` column is the standard id field (the query must return one);
//! - a column that is a source collection's field (`title`, `p.title`, `p.title AS t`) is a clone of
//!   that field (`_clone_` id, the alias as name): a relation stays a relation, so `expand` and
//!   relation filters work through the view;
//! - `COUNT(…)` is an integer number; anything else (an expression, a function) is a `json` field.
//!
//! The query runs in the database's own dialect (SQLite's or PostgreSQL's). Columns of pii fields
//! cannot be selected (a view would show their ciphertext). Rules: only `listRule` and `viewRule`.

use basalt_core::schema::{Collection, CollectionType, Field, FieldType};
use basalt_core::{Error, FieldError, FieldErrors};
use basalt_store::Tx;

use crate::error::{ServiceError, ServiceResult};
use crate::state::Collections;
use crate::AppCtx;

fn invalid(msg: String) -> ServiceError {
    let mut f = FieldErrors::new();
    f.insert(
        "viewQuery".into(),
        FieldError::new(basalt_core::codes::INVALID_VIEW_QUERY, msg),
    );
    ServiceError(Error::validation("Failed to create collection.", f))
}

/// Splits `s` at `sep` where not inside parentheses or quotes.
fn split_top(s: &str, sep: char) -> Vec<String> {
    let (mut out, mut cur, mut depth, mut quote) = (vec![], String::new(), 0i32, None::<char>);
    for c in s.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' || c == '`' => quote = Some(c),
            None if c == '(' => depth += 1,
            None if c == ')' => depth -= 1,
            None if c == sep && depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            None => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out
}

/// The position of keyword `kw` (lower case) in `s` at depth 0, outside quotes, as a whole word.
fn find_top(s: &str, kw: &str) -> Option<usize> {
    let lower = s.to_ascii_lowercase();
    let b = lower.as_bytes();
    let (mut depth, mut quote) = (0i32, None::<u8>);
    for i in 0..b.len() {
        let c = b[i];
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => continue,
            None if c == b'\'' || c == b'"' || c == b'`' => quote = Some(c),
            None if c == b'(' => depth += 1,
            None if c == b')' => depth -= 1,
            None if depth == 0 && lower[i..].starts_with(kw) => {
                let before = i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
                let end = i + kw.len();
                let after = end >= b.len() || !(b[end].is_ascii_alphanumeric() || b[end] == b'_');
                if before && after {
                    return Some(i);
                }
            }
            None => {}
        }
    }
    None
}

fn unquote(s: &str) -> String {
    s.trim()
        .trim_matches(|c| c == '"' || c == '`' || c == '[' || c == ']')
        .to_string()
}

fn is_ident(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `table [AS] alias` pairs of the FROM clause and its JOINs.
fn sources(from: &str) -> Vec<(String, String)> {
    let mut out = vec![];
    let words: Vec<String> = from
        .replace(',', " , ")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let stop = |w: &str| {
        matches!(
            w.to_ascii_lowercase().as_str(),
            "join"
                | "left"
                | "right"
                | "inner"
                | "outer"
                | "cross"
                | "full"
                | "on"
                | "where"
                | "group"
                | "order"
                | "limit"
                | "having"
                | ","
                | "using"
                | "natural"
        )
    };
    let mut i = 0;
    while i < words.len() {
        let lw = words[i].to_ascii_lowercase();
        let starts = i == 0 || lw == "join" || words[i] == ",";
        let at = if i == 0 { 0 } else { i + 1 };
        if starts && at < words.len() && !words[at].starts_with('(') {
            let table = unquote(&words[at]);
            let mut alias = table.clone();
            let mut j = at + 1;
            if j < words.len() && words[j].eq_ignore_ascii_case("as") {
                j += 1;
            }
            if j < words.len() && !stop(&words[j]) {
                alias = unquote(&words[j]);
            }
            out.push((alias, table));
        }
        i += 1;
    }
    out
}

/// The fields of view query `query`: checked by running it (no rows) in `tx`, then inferred from its
/// select list against the collections `cols`. `old`'s field ids are kept for unchanged fields.
pub async fn infer(
    ctx: &AppCtx,
    tx: &mut Box<dyn Tx>,
    cols: &Collections,
    query: &str,
    old: Option<&Collection>,
) -> ServiceResult<Vec<Field>> {
    let q = query.trim().trim_end_matches(';').trim();
    let lower = q.to_ascii_lowercase();
    if !lower.starts_with("select") || split_top(q, ';').len() > 1 {
        return Err(invalid(
            "Invalid query - only a single SELECT statement is allowed.".into(),
        ));
    }
    let mut probe = ctx.sql();
    probe
        .push("SELECT * FROM (")
        .push(q)
        .push(") AS _basalt_probe LIMIT 0");
    let columns = match tx.query(&probe).await {
        Ok(r) => r.columns,
        Err(e) => return Err(invalid(format!("Invalid query - {e}."))),
    };
    if !columns.iter().any(|c| c == "id") {
        return Err(invalid(
            "Invalid query - missing required id column (you can use `(ROW_NUMBER() OVER()) as id` if you don't have one).".into(),
        ));
    }
    // The select list and the FROM clause.
    let from_at = find_top(q, "from");
    let list = &q[6..from_at.unwrap_or(q.len())];
    let list = list.trim_start();
    let list = list
        .strip_prefix("DISTINCT ")
        .or_else(|| list.strip_prefix("distinct "))
        .unwrap_or(list);
    let items = split_top(list, ',');
    let from = from_at.map(|i| &q[i + 4..]).unwrap_or("");
    let end = [
        "where", "group", "order", "limit", "having", "union", "window",
    ]
    .iter()
    .filter_map(|k| find_top(from, k))
    .min()
    .unwrap_or(from.len());
    let srcs: Vec<(String, std::sync::Arc<Collection>)> = sources(&from[..end])
        .into_iter()
        .filter_map(|(alias, table)| cols.get(&table).map(|c| (alias, c)))
        .collect();
    let star = |i: &String| {
        let i = i.trim();
        i == "*" || i.ends_with(".*")
    };
    let by_position = items.len() == columns.len() && !items.iter().any(star);
    let mut fields = vec![];
    for (i, name) in columns.iter().enumerate() {
        let expr = if by_position {
            let item = items[i].trim();
            let expr = match find_top(item, "as") {
                Some(at) => item[..at].trim().to_string(),
                None => item.to_string(),
            };
            // As PocketBase: a column is one term (a name, a call, a literal, or an expression in
            // parentheses), so `views * 2 AS d` must be written `(views * 2) AS d`.
            if split_top(&expr.replace(char::is_whitespace, " "), ' ')
                .iter()
                .filter(|t| !t.is_empty())
                .count()
                > 1
            {
                return Err(invalid(format!(
                    "Invalid query - invalid identifier parts [{item}]."
                )));
            }
            expr
        } else {
            name.clone()
        };
        let mut f = if name == "id" {
            Collection::id_field()
        } else if let Some(src) = source_field(&expr, &srcs) {
            if src.pii.is_some() {
                return Err(invalid(format!(
                    "Invalid query - the pii field \"{}\" cannot be selected in a view.",
                    src.name
                )));
            }
            // A clone keeps the source's options (`system` and `required` too, as PocketBase).
            let mut f = src.clone();
            f.id = format!("_clone_{}", basalt_core::id::random_id(4));
            f.primary_key = false;
            f.name = name.clone();
            f
        } else if expr.to_ascii_lowercase().starts_with("count(") {
            let mut f = Field::new(name, FieldType::Number);
            f.only_int = true;
            f
        } else {
            let mut f = Field::new(name, FieldType::Json);
            f.max_size = 1;
            f
        };
        // A field that did not change keeps its id.
        if let Some(o) = old.and_then(|o| o.field(name)) {
            if o.ty() == f.ty() {
                f.id = o.id.clone();
            }
        }
        fields.push(f);
    }
    Ok(fields)
}

/// The source collection field a select-list expression names, if it is a plain column.
fn source_field(expr: &str, srcs: &[(String, std::sync::Arc<Collection>)]) -> Option<Field> {
    let parts: Vec<String> = expr.split('.').map(unquote).collect();
    if !parts.iter().all(|p| is_ident(p)) {
        return None;
    }
    match parts.as_slice() {
        [col] => srcs.iter().find_map(|(_, c)| c.field(col).cloned()),
        [alias, col] => srcs
            .iter()
            .find(|(a, _)| a == alias)
            .and_then(|(_, c)| c.field(col).cloned()),
        _ => None,
    }
}

/// A view's rules: only listing and viewing exist.
pub fn only_read_rules(c: &mut Collection) {
    if c.kind == CollectionType::View {
        c.create_rule = None;
        c.update_rule = None;
        c.delete_rule = None;
        c.indexes.clear();
    }
}

/// `POST /api/collections/meta/dry-run-view {query}` (superusers): the fields a view over `query`
/// would have, and up to 10 of its rows, from a transaction rolled back afterwards.
pub async fn dry_run(
    ctx: &AppCtx,
    req: &crate::request::Req,
    body: &serde_json::Value,
) -> ServiceResult<serde_json::Value> {
    req.require_superuser()?;
    let q = body
        .get("query")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("")
        .trim();
    if q.is_empty() {
        let mut f = FieldErrors::new();
        f.insert("query".into(), FieldError::required());
        return Err(ServiceError(Error::validation(
            "An error occurred while validating the submitted data.",
            f,
        )));
    }
    let raw = |m: String| {
        crate::error::bad(&format!(
            "Invalid view query. Raw error: \n{}",
            m.trim_start_matches("Invalid query - ")
        ))
    };
    let mut tx = ctx.store.begin().await?;
    let fields = match infer(ctx, &mut tx, &ctx.collections(), q, None).await {
        Ok(f) => f,
        Err(ServiceError(Error::Validation { fields, .. })) => {
            let m = fields
                .get("viewQuery")
                .map(|e| e.message.clone())
                .unwrap_or_default();
            return Err(raw(m));
        }
        Err(e) => return Err(e),
    };
    let mut coll = Collection::scaffold(CollectionType::View, "_dry_run_view");
    coll.fields = fields;
    let mut s = ctx.sql();
    s.push("SELECT * FROM (")
        .push(q.trim_end_matches(';'))
        .push(") AS _basalt_probe LIMIT 10");
    let rows = tx.query(&s).await.map_err(|e| raw(e.to_string()))?;
    drop(tx);
    let info = req.info(&ctx.collections(), None, "default");
    let mut sample = vec![];
    for d in crate::records::rows_to_data(&coll, rows) {
        let mut o = crate::records::output(ctx, &coll, d, &info).await;
        o.remove("collectionId");
        o.remove("collectionName");
        sample.push(serde_json::Value::Object(o));
    }
    Ok(serde_json::json!({
        "fields": coll.fields.iter().map(Field::to_json).collect::<Vec<_>>(),
        "sample": sample,
    }))
}
