//! The filter and sort languages: `<filter>\n<sort>` from the input, parsed and compiled for both
//! SQL dialects, as a guest (bounded joins, no `@request`) and as a trusted rule. Invariant beyond
//! "never panics": every value the input carries is a bound parameter, so the SQL text holds
//! exactly one placeholder per parameter.
#![no_main]

use std::sync::{Arc, OnceLock};

use basalt_core::filter::compile::{Compiler, RequestInfo, Schema};
use basalt_core::schema::{Collection, CollectionType, Field, FieldType};
use basalt_core::sql::{Dialect, Sql};
use libfuzzer_sys::fuzz_target;

struct Colls(Vec<Arc<Collection>>);
impl Schema for Colls {
    fn collection(&self, k: &str) -> Option<Arc<Collection>> {
        self.0.iter().find(|c| c.id == k || c.name == k).cloned()
    }
}

fn schema() -> &'static Colls {
    static S: OnceLock<Colls> = OnceLock::new();
    S.get_or_init(|| {
        let mut users = Collection::scaffold(CollectionType::Auth, "users");
        users.id = "_pb_users_auth_".into();
        users.list_rule = Some(String::new());
        users.fields.push(Field::new("role", FieldType::Text));
        let mut cats = Collection::scaffold(CollectionType::Base, "cats");
        cats.id = "pbc_cats".into();
        cats.list_rule = Some("label != ''".into());
        cats.fields.push(Field::new("label", FieldType::Text));
        let mut items = Collection::scaffold(CollectionType::Base, "items");
        items.id = "pbc_items".into();
        items.list_rule = Some(String::new());
        let mut tags = Field::new("tags", FieldType::Select);
        tags.values = vec!["a".into(), "b".into()];
        tags.max_select = 3;
        let mut cat = Field::new("cat", FieldType::Relation);
        cat.collection_id = "pbc_cats".into();
        let mut many = Field::new("cats", FieldType::Relation);
        many.collection_id = "pbc_cats".into();
        many.max_select = 5;
        let mut owner = Field::new("owner", FieldType::Relation);
        owner.collection_id = "_pb_users_auth_".into();
        let mut secret = Field::new("secret", FieldType::Text);
        secret.hidden = true;
        items.fields.extend([
            Field::new("title", FieldType::Text),
            Field::new("n", FieldType::Number),
            Field::new("ok", FieldType::Bool),
            Field::new("meta", FieldType::Json),
            Field::new("when", FieldType::Date),
            Field::new("at", FieldType::GeoPoint),
            tags,
            cat,
            many,
            owner,
            secret,
        ]);
        items.fields.extend(Collection::autodate_fields());
        Colls(vec![Arc::new(users), Arc::new(cats), Arc::new(items)])
    })
}

fn placeholders_match(d: Dialect, sql: &Sql) {
    let n = match d {
        Dialect::Sqlite => sql.text.matches('?').count(),
        Dialect::Postgres => sql.text.matches('$').count(),
    };
    assert_eq!(
        n,
        sql.params.len(),
        "a value outside the parameters: {}",
        sql.text
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (filter, sort) = text.split_once('\n').unwrap_or((text, ""));
    let s = schema();
    let items = s.collection("items").unwrap();
    let users = s.collection("users").unwrap();
    let mut me = serde_json::Map::new();
    me.insert("id".into(), "u1".into());
    me.insert("role".into(), "staff".into());
    let signed_in = RequestInfo {
        auth: Some((users, me)),
        method: "GET".into(),
        ..Default::default()
    };
    let guest = RequestInfo::default();
    let expr = basalt_core::filter::parse(filter).ok();
    let order = basalt_core::filter::parse_sort(sort).ok();
    for (req, trusted) in [(&guest, false), (&signed_in, false), (&signed_in, true)] {
        for d in [Dialect::Sqlite, Dialect::Postgres] {
            if let Some(e) = &expr {
                let mut c = Compiler::new(d, s, req, trusted);
                if let Ok(sql) = c.compile(&items, e) {
                    placeholders_match(d, &sql);
                }
            }
            if let Some(o) = &order {
                let mut c = Compiler::new(d, s, req, trusted);
                if let Ok(sql) = c.order_by(&items, o) {
                    placeholders_match(d, &sql);
                }
            }
        }
    }
});
