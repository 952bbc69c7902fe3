//! Schema as code: the collections as one JSON document (`basalt schema export`), what applying a
//! document would change, in words, with the changes that lose data called out (`basalt schema
//! diff`), and applying it in one transaction (`basalt schema apply [--dry-run]`, through
//! [`crate::collections::import_with`], the import API's own path, collections not in the document
//! deleted).

use basalt_core::schema::Collection;
use serde_json::{Map, Value as Json};

use crate::error::ServiceResult;
use crate::AppCtx;

/// The document: every collection as the API shows it (secrets left out).
pub fn export(ctx: &AppCtx) -> Json {
    Json::Array(ctx.collections().list.iter().map(|c| c.to_json()).collect())
}

/// One change a document makes.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// `+`, `-` or `~` then the collection's name and what changes.
    pub text: String,
    /// Whether applying it drops stored values.
    pub loses_data: bool,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.text)?;
        if self.loses_data {
            write!(f, "  [DATA LOSS]")?;
        }
        Ok(())
    }
}

/// The document's collections (an array, or `{collections: [...]}` as the import API takes).
pub fn collections_of(doc: &Json) -> Vec<Json> {
    match doc {
        Json::Array(a) => a.clone(),
        Json::Object(o) => o
            .get("collections")
            .and_then(Json::as_array)
            .cloned()
            .unwrap_or_default(),
        _ => vec![],
    }
}

fn s<'a>(v: &'a Json, k: &str) -> &'a str {
    v.get(k).and_then(Json::as_str).unwrap_or("")
}

/// What applying `doc` (collections not in it deleted, system ones kept) changes.
pub async fn diff(ctx: &AppCtx, doc: &Json) -> ServiceResult<Vec<Change>> {
    let wanted = collections_of(doc);
    let cols = ctx.collections();
    let mut out = vec![];
    let mut matched: Vec<String> = vec![];
    for w in &wanted {
        let found = cols
            .list
            .iter()
            .find(|c| !s(w, "id").is_empty() && c.id == s(w, "id"))
            .or_else(|| cols.list.iter().find(|c| c.name == s(w, "name")));
        match found {
            None => {
                let n = w.get("fields").and_then(Json::as_array).map_or(0, Vec::len);
                out.push(Change {
                    text: format!(
                        "+ {}: new {} collection with {n} fields",
                        s(w, "name"),
                        if s(w, "type").is_empty() {
                            "base"
                        } else {
                            s(w, "type")
                        }
                    ),
                    loses_data: false,
                });
            }
            Some(c) => {
                matched.push(c.id.clone());
                out.extend(collection_changes(ctx, c, w).await?);
            }
        }
    }
    for c in cols
        .list
        .iter()
        .filter(|c| !c.system && !matched.contains(&c.id))
    {
        let n = count(ctx, &c.name, None).await?;
        out.push(Change {
            text: format!("- {}: delete the collection and its {n} records", c.name),
            loses_data: n > 0,
        });
    }
    Ok(out)
}

/// Records of a collection, or those with a value in `field`.
async fn count(ctx: &AppCtx, table: &str, field: Option<&str>) -> ServiceResult<i64> {
    let mut q = ctx.sql();
    q.push("SELECT COUNT(*) FROM ").ident(table);
    if let Some(f) = field {
        q.push(" WHERE ")
            .ident(f)
            .push(" IS NOT NULL AND CAST(")
            .ident(f);
        q.push(" AS TEXT) NOT IN ('', '[]', '0', 'false', 'null')");
    }
    Ok(ctx.store.query(&q).await?.scalar_int())
}

async fn collection_changes(ctx: &AppCtx, c: &Collection, w: &Json) -> ServiceResult<Vec<Change>> {
    let mut out = vec![];
    let name = &c.name;
    let mut say = |text: String, loses_data: bool| out.push(Change { text, loses_data });
    let now = c.to_json();
    if s(w, "name") != name.as_str() && !s(w, "name").is_empty() {
        say(
            format!("~ {name}: rename the collection to {}", s(w, "name")),
            false,
        );
    }
    // Fields, matched by id then name.
    let have: Vec<Json> = now["fields"].as_array().cloned().unwrap_or_default();
    let want: Vec<Json> = w
        .get("fields")
        .and_then(Json::as_array)
        .cloned()
        .unwrap_or_default();
    let mut seen = vec![];
    for f in &want {
        let old = have
            .iter()
            .find(|h| !s(f, "id").is_empty() && s(h, "id") == s(f, "id"))
            .or_else(|| have.iter().find(|h| s(h, "name") == s(f, "name")));
        let Some(old) = old else {
            say(
                format!("~ {name}: add field {} ({})", s(f, "name"), s(f, "type")),
                false,
            );
            continue;
        };
        seen.push(s(old, "id").to_string());
        let fname = s(old, "name");
        if s(f, "name") != fname {
            say(
                format!("~ {name}: rename field {fname} to {}", s(f, "name")),
                false,
            );
        }
        if !s(f, "type").is_empty() && s(f, "type") != s(old, "type") {
            say(
                format!(
                    "~ {name}: change field {fname} from {} to {} (refused: a field's type cannot change)",
                    s(old, "type"),
                    s(f, "type")
                ),
                false,
            );
        }
        let max = |v: &Json| v.get("maxSelect").and_then(Json::as_i64).unwrap_or(0);
        if max(old) > 1 && max(f) <= 1 && f.get("maxSelect").is_some() {
            let n = count(ctx, &c.name, Some(fname)).await?;
            say(
                format!("~ {name}: field {fname} holds one value instead of many (extra values of {n} records are dropped)"),
                n > 0,
            );
        }
        let opts = changed_keys(old, f, &["id", "name", "type", "maxSelect"]);
        if !opts.is_empty() {
            say(
                format!("~ {name}: field {fname} options: {}", opts.join(", ")),
                false,
            );
        }
    }
    // System fields stay whatever the document says (the import keeps them).
    for h in have.iter().filter(|h| {
        !seen.contains(&s(h, "id").to_string()) && h.get("system") != Some(&Json::Bool(true))
    }) {
        let fname = s(h, "name");
        let n = count(ctx, &c.name, Some(fname)).await?;
        say(
            format!(
                "~ {name}: remove field {fname} ({}) and its values in {n} records",
                s(h, "type")
            ),
            n > 0,
        );
    }
    for rule in [
        "listRule",
        "viewRule",
        "createRule",
        "updateRule",
        "deleteRule",
        "authRule",
        "manageRule",
    ] {
        if let (Some(a), Some(b)) = (now.get(rule), w.get(rule)) {
            if a != b {
                say(format!("~ {name}: {rule} {a} -> {b}"), false);
            }
        }
    }
    if let Some(idx) = w.get("indexes") {
        if Some(idx) != now.get("indexes") {
            say(
                format!("~ {name}: indexes {} -> {idx}", now["indexes"]),
                false,
            );
        }
    }
    let skip = [
        "id",
        "name",
        "type",
        "fields",
        "indexes",
        "created",
        "updated",
        "system",
        "listRule",
        "viewRule",
        "createRule",
        "updateRule",
        "deleteRule",
        "authRule",
        "manageRule",
    ];
    let opts = changed_keys(&now, w, &skip);
    if !opts.is_empty() {
        say(format!("~ {name}: options {}", opts.join(", ")), false);
    }
    Ok(out)
}

/// Keys of `want` (an object) whose values differ from `have`'s, `skip` aside.
fn changed_keys(have: &Json, want: &Json, skip: &[&str]) -> Vec<String> {
    let empty = Map::new();
    let w = want.as_object().unwrap_or(&empty);
    let mut keys: Vec<String> = w
        .iter()
        .filter(|(k, _)| !skip.contains(&k.as_str()))
        .filter(|(k, v)| have.get(k.as_str()) != Some(*v))
        .map(|(k, _)| k.clone())
        .collect();
    keys.sort();
    keys
}
