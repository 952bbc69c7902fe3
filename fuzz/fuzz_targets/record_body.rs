//! The record body decoder: a JSON body (as a client sends it, modifiers included) normalised and
//! validated against a collection with every field type, as a create and as an update of a stored
//! record, as a guest and as a superuser. Invariant beyond "never panics": what validation accepts
//! has only the collection's fields, each of its type.
#![no_main]

use std::sync::OnceLock;

use basalt_core::record::{prepare, prepare_partial, Data, WriteCtx};
use basalt_core::schema::{Collection, CollectionType, Field, FieldType};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value as Json};

fn collection() -> &'static Collection {
    static C: OnceLock<Collection> = OnceLock::new();
    C.get_or_init(|| {
        let mut c = Collection::scaffold(CollectionType::Auth, "people");
        c.id = "pbc_people".into();
        let mut title = Field::new("title", FieldType::Text);
        title.max = json!(20);
        title.pattern = "^[a-z ]*$".into();
        let mut n = Field::new("n", FieldType::Number);
        n.min = json!(-5);
        n.max = json!(1000);
        n.only_int = true;
        let mut tags = Field::new("tags", FieldType::Select);
        tags.values = vec!["a".into(), "b".into(), "c".into()];
        tags.max_select = 2;
        let mut kind = Field::new("kind", FieldType::Select);
        kind.values = vec!["x".into(), "y".into()];
        kind.max_select = 1;
        let mut rel = Field::new("friends", FieldType::Relation);
        rel.collection_id = "pbc_people".into();
        rel.max_select = 3;
        let mut files = Field::new("docs", FieldType::File);
        files.max_select = 2;
        let mut site = Field::new("site", FieldType::Url);
        site.only_domains = vec!["example.com".into()];
        let mut due = Field::new("due", FieldType::Date);
        due.min = json!("2000-01-01 00:00:00.000Z");
        let mut meta = Field::new("meta", FieldType::Json);
        meta.max_size = 200;
        c.fields.extend([
            title,
            n,
            Field::new("ok", FieldType::Bool),
            tags,
            kind,
            rel,
            files,
            site,
            Field::new("bio", FieldType::Editor),
            due,
            meta,
            Field::new("at", FieldType::GeoPoint),
        ]);
        c.fields.extend(Collection::autodate_fields());
        c
    })
}

fn stored() -> &'static Data {
    static D: OnceLock<Data> = OnceLock::new();
    D.get_or_init(|| {
        match json!({
            "id": "abcdefghijklmno", "email": "a@example.com", "emailVisibility": false,
            "verified": true, "password": "$2a$10$abcdefghijklmnopqrstuuJ3l4K3bHbV1GvV9XG0fU6m6C7uQm6",
            "tokenKey": "k".repeat(50), "title": "hello", "n": 3, "ok": true, "tags": ["a"],
            "kind": "x", "friends": [], "docs": ["a_123.txt"], "site": "", "bio": "", "due": "",
            "meta": null, "at": {"lon": 1, "lat": 2},
            "created": "2026-01-01 00:00:00.000Z", "updated": "2026-01-01 00:00:00.000Z"
        }) {
            Json::Object(m) => m,
            _ => unreachable!(),
        }
    })
}

fn check(c: &Collection, values: &Data) {
    for (k, v) in values {
        let f = c
            .field(k)
            .unwrap_or_else(|| panic!("accepted a key that is no field: {k}"));
        let ok = match f.ty() {
            FieldType::Number => v.is_number(),
            FieldType::Bool => v.is_boolean(),
            FieldType::Json => true,
            FieldType::GeoPoint => v["lon"].is_number() && v["lat"].is_number(),
            _ if f.is_multiple() => v.is_array(),
            _ => v.is_string(),
        };
        assert!(ok, "{k} accepted as {v}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(Json::Object(body)) = serde_json::from_slice::<Json>(data) else {
        return;
    };
    let c = collection();
    for (manager, su) in [(false, false), (true, true)] {
        let create = WriteCtx {
            coll: c,
            existing: None,
            is_manager: manager,
            is_superuser: su,
        };
        if let Ok(p) = prepare(&create, &body) {
            check(c, &p.data);
        }
        let update = WriteCtx {
            coll: c,
            existing: Some(stored()),
            is_manager: manager,
            is_superuser: su,
        };
        let (p, errs) = prepare_partial(&update, &body);
        if errs.is_empty() {
            check(c, &p.data);
        }
    }
});
