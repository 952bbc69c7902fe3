//! Collections as real tables: CREATE/ALTER/DROP statements per dialect, and the system tables.
//!
//! **Architecture Invariant:** every identifier written here passed `is_valid_name` (collection and
//! field names are validated before any DDL is built); no value is ever formatted into the text.

use basalt_core::schema::{Collection, ColumnKind, Field, FieldType, Index};
use basalt_core::sql::{ident, Dialect, Sql};

pub fn column_type(d: Dialect, f: &Field) -> String {
    if f.name == "id" {
        return match d {
            Dialect::Sqlite => "TEXT PRIMARY KEY NOT NULL".into(),
            Dialect::Postgres => "TEXT COLLATE \"C\" PRIMARY KEY NOT NULL".into(),
        };
    }
    if f.pii.is_some() {
        // Ciphertext (`pii1:…`), or '' for an empty value, whatever the field's type.
        return column_type(
            d,
            &Field::new(&f.name, basalt_core::schema::FieldType::Text),
        );
    }
    match (d, f.column_kind()) {
        // Binary collation on Postgres, so sorting and comparisons match SQLite's byte order.
        (Dialect::Sqlite, ColumnKind::Text) => "TEXT DEFAULT '' NOT NULL".into(),
        (Dialect::Postgres, ColumnKind::Text) => "TEXT COLLATE \"C\" DEFAULT '' NOT NULL".into(),
        (Dialect::Sqlite, ColumnKind::Number) => "NUMERIC DEFAULT 0 NOT NULL".into(),
        (Dialect::Postgres, ColumnKind::Number) => "DOUBLE PRECISION DEFAULT 0 NOT NULL".into(),
        (_, ColumnKind::Bool) => "BOOLEAN DEFAULT FALSE NOT NULL".into(),
        // TEXT affinity: a declared type of `JSON` would get NUMERIC affinity and turn "5" into 5.
        (Dialect::Sqlite, ColumnKind::Json) if f.is_multiple() => {
            "TEXT DEFAULT '[]' NOT NULL".into()
        }
        (Dialect::Sqlite, ColumnKind::Json) => "TEXT DEFAULT NULL".into(),
        (Dialect::Postgres, ColumnKind::Json) if f.is_multiple() => {
            "JSONB DEFAULT '[]'::jsonb NOT NULL".into()
        }
        (Dialect::Postgres, ColumnKind::Json) => "JSONB DEFAULT NULL".into(),
    }
}

fn base_tables(d: Dialect) -> Vec<Sql> {
    let json = match d {
        Dialect::Sqlite => "TEXT",
        Dialect::Postgres => "TEXT",
    };
    let mk = |t: String| {
        let mut s = Sql::new(d);
        s.push(&t);
        s
    };
    vec![
        mk(format!(
            "CREATE TABLE IF NOT EXISTS _collections (id TEXT PRIMARY KEY NOT NULL, name TEXT NOT NULL UNIQUE, type TEXT NOT NULL, system BOOLEAN DEFAULT FALSE NOT NULL, data {json} NOT NULL, created TEXT NOT NULL, updated TEXT NOT NULL)"
        )),
        mk("CREATE TABLE IF NOT EXISTS _params (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL)".into()),
        // Subjects whose PII was erased (crypto-shredded): re-applied after a backup restore.
        mk("CREATE TABLE IF NOT EXISTS \"_piiErasures\" (collection_id TEXT NOT NULL, record_id TEXT NOT NULL, erased TEXT NOT NULL, PRIMARY KEY (collection_id, record_id))".into()),
    ]
}

/// System tables, and on Postgres the SQL helpers the filter compiler may call.
pub fn system_tables(d: Dialect) -> Vec<Sql> {
    let mut v = base_tables(d);
    v.extend(basalt_events::outbox::tables(d));
    v.extend(basalt_cluster::registry::tables(d));
    if d == Dialect::Postgres {
        // `basalt_ts(text)`: a protocol date string as a timestamp, NULL when it is not one (used by
        // `strftime()` filters; a plain cast would fail the whole query on one bad value).
        let mut f = Sql::new(d);
        f.push(
            // Created only when missing, so nodes starting together do not race on CREATE OR REPLACE.
            "DO $do$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_proc WHERE proname = 'basalt_ts') THEN \
             CREATE FUNCTION basalt_ts(t text) RETURNS timestamp LANGUAGE plpgsql IMMUTABLE AS $f$ \
             BEGIN IF t IS NULL OR t = '' THEN RETURN NULL; END IF; RETURN rtrim(t, 'Z')::timestamp; \
             EXCEPTION WHEN others THEN RETURN NULL; END $f$; END IF; END $do$",
        );
        v.push(f);
    }
    v
}

pub fn create_table(d: Dialect, c: &Collection) -> Vec<Sql> {
    if c.kind == basalt_core::schema::CollectionType::View {
        // The view's columns as its fields name them (see `views::infer`); on PostgreSQL a json
        // field's column becomes jsonb whatever the expression's type, as filters expect.
        let mut s = Sql::new(d);
        s.push("CREATE VIEW ").ident(&c.name).push(" AS SELECT ");
        for (i, f) in c.fields.iter().enumerate() {
            if i > 0 {
                s.push(", ");
            }
            let json = matches!(f.ty(), FieldType::Json | FieldType::GeoPoint);
            if json && d == Dialect::Postgres {
                s.push("to_jsonb(_basalt_view.")
                    .ident(&f.name)
                    .push(") AS ")
                    .ident(&f.name);
            } else {
                s.push("_basalt_view.").ident(&f.name);
            }
        }
        s.push(" FROM (")
            .push(c.view_query.trim().trim_end_matches(';'))
            .push(") AS _basalt_view");
        return vec![s];
    }
    let mut s = Sql::new(d);
    s.push("CREATE TABLE ").ident(&c.name).push(" (");
    for (i, f) in c.fields.iter().enumerate() {
        if i > 0 {
            s.push(", ");
        }
        s.ident(&f.name).push(" ").push(&column_type(d, f));
    }
    for (col, ty) in pii_columns(d, c) {
        s.push(", ").ident(&col).push(" ").push(&ty);
    }
    s.push(")");
    let mut out = vec![s];
    out.extend(create_indexes(d, c));
    out
}

pub fn create_indexes(d: Dialect, c: &Collection) -> Vec<Sql> {
    c.indexes
        .iter()
        .filter_map(|ix| Index::parse(ix).ok())
        .map(|ix| {
            let mut s = Sql::new(d);
            s.push(if ix.unique {
                "CREATE UNIQUE INDEX "
            } else {
                "CREATE INDEX "
            });
            s.ident(&ix.name).push(" ON ").ident(&c.name).push(" (");
            for (i, col) in ix.columns.iter().enumerate() {
                if i > 0 {
                    s.push(", ");
                }
                // An index on a searchable pii field is an index on its blind index.
                match c.field(col).filter(|f| f.pii.is_some()) {
                    Some(f) => s.ident(&basalt_core::pii::index_column(f)),
                    None => s.ident(col),
                };
                if ix.desc.get(i).copied().unwrap_or(false) {
                    s.push(" DESC");
                }
            }
            s.push(")");
            // An index on a blind index leaves empty values out (a row whose value is being
            // encrypted has none yet; two empty values are not a duplicate).
            let pii = ix
                .columns
                .iter()
                .find_map(|col| c.field(col).filter(|f| f.pii.is_some()));
            let w = match (&ix.where_not_empty, pii) {
                (_, Some(f)) => Some(basalt_core::pii::index_column(f)),
                (Some(w), None) => Some(w.clone()),
                (None, None) => None,
            };
            if let Some(w) = w {
                s.push(" WHERE ").ident(&w).push(" != ''");
            }
            s
        })
        .collect()
}

pub fn drop_indexes(d: Dialect, c: &Collection) -> Vec<Sql> {
    c.indexes
        .iter()
        .filter_map(|ix| Index::parse(ix).ok())
        .map(|ix| {
            let mut s = Sql::new(d);
            s.push("DROP INDEX IF EXISTS ").ident(&ix.name);
            s
        })
        .collect()
}

/// The statements that turn `old`'s table into `new`'s, keeping the data of fields that stay.
/// Fields are matched by id, so a rename keeps its column's data.
pub fn alter_table(d: Dialect, old: &Collection, new: &Collection) -> Vec<Sql> {
    let (mut out, indexes) = alter_table_steps(d, old, new);
    out.extend(indexes);
    out
}

/// [`alter_table`] in two steps: the columns (old indexes dropped first), then `new`'s indexes, so
/// a caller can fill new columns in between (a blind index turned on).
pub fn alter_table_steps(d: Dialect, old: &Collection, new: &Collection) -> (Vec<Sql>, Vec<Sql>) {
    let mut out = drop_indexes(d, old);
    let mk = |t: String| {
        let mut s = Sql::new(d);
        s.push(&t);
        s
    };
    let table = ident(&new.name);
    if old.name != new.name {
        out.push(mk(format!(
            "ALTER TABLE {} RENAME TO {}",
            ident(&old.name),
            table
        )));
    }
    for of in &old.fields {
        if !new.fields.iter().any(|f| f.id == of.id) {
            out.push(mk(format!(
                "ALTER TABLE {table} DROP COLUMN {}",
                ident(&of.name)
            )));
        }
    }
    for nf in &new.fields {
        match old.fields.iter().find(|f| f.id == nf.id) {
            None => {
                out.push(mk(format!(
                    "ALTER TABLE {table} ADD COLUMN {} {}",
                    ident(&nf.name),
                    column_type(d, nf)
                )));
            }
            Some(of) => {
                if of.name != nf.name {
                    out.push(mk(format!(
                        "ALTER TABLE {table} RENAME COLUMN {} TO {}",
                        ident(&of.name),
                        ident(&nf.name)
                    )));
                }
                let col = ident(&nf.name);
                if of.pii.is_some() != nf.pii.is_some() && nf.column_kind() != ColumnKind::Text {
                    out.extend(retype_for_pii(d, &table, &col, nf));
                    continue;
                }
                match (of.is_multiple(), nf.is_multiple(), d) {
                    (false, true, Dialect::Sqlite) => out.push(mk(format!(
                        "UPDATE {table} SET {col} = CASE WHEN COALESCE({col}, '') = '' THEN '[]' ELSE json_array({col}) END"
                    ))),
                    (true, false, Dialect::Sqlite) => out.push(mk(format!(
                        "UPDATE {table} SET {col} = COALESCE(json_extract({col}, '$[#-1]'), '')"
                    ))),
                    (false, true, Dialect::Postgres) => {
                        out.push(mk(format!("ALTER TABLE {table} ALTER COLUMN {col} DROP DEFAULT")));
                        out.push(mk(format!(
                            "ALTER TABLE {table} ALTER COLUMN {col} TYPE JSONB USING (CASE WHEN {col} = '' THEN '[]'::jsonb ELSE jsonb_build_array({col}) END)"
                        )));
                        out.push(mk(format!("ALTER TABLE {table} ALTER COLUMN {col} SET DEFAULT '[]'::jsonb")));
                    }
                    (true, false, Dialect::Postgres) => {
                        out.push(mk(format!("ALTER TABLE {table} ALTER COLUMN {col} DROP DEFAULT")));
                        out.push(mk(format!(
                            "ALTER TABLE {table} ALTER COLUMN {col} TYPE TEXT COLLATE \"C\" USING COALESCE({col} ->> -1, '')"
                        )));
                        out.push(mk(format!("ALTER TABLE {table} ALTER COLUMN {col} SET DEFAULT ''")));
                    }
                    _ => {}
                }
            }
        }
    }
    let (had, has) = (pii_columns(d, old), pii_columns(d, new));
    for (col, _) in had.iter().filter(|(c, _)| !has.iter().any(|(n, _)| n == c)) {
        out.push(mk(format!(
            "ALTER TABLE {table} DROP COLUMN {}",
            ident(col)
        )));
    }
    for (col, ty) in has.iter().filter(|(c, _)| !had.iter().any(|(o, _)| o == c)) {
        out.push(mk(format!(
            "ALTER TABLE {table} ADD COLUMN {} {ty}",
            ident(col)
        )));
    }
    (out, create_indexes(d, new))
}

/// A number or json field marked pii (`nf.pii` set) or no longer pii (its values decrypted): its
/// column turns into TEXT holding the value's JSON text (which `pii::open` reads in clear until the
/// values are encrypted), or back into its own type. SQLite cannot change a column's type: a new
/// column takes the values, the old one is dropped and the new one renamed (its indexes were
/// dropped before and are built after).
fn retype_for_pii(d: Dialect, table: &str, col: &str, nf: &Field) -> Vec<Sql> {
    let mk = |t: String| {
        let mut s = Sql::new(d);
        s.push(&t);
        s
    };
    let json = nf.column_kind() == ColumnKind::Json;
    // Back from TEXT: an empty value (or a ciphertext of an erased subject, which no key opens
    // any more) becomes the field's zero value.
    let empty = format!("({col} = '' OR substr({col}, 1, 5) = 'pii1:')");
    match d {
        Dialect::Postgres => {
            let (ty, using, default, null) = match (nf.pii.is_some(), json) {
                (true, false) => ("TEXT COLLATE \"C\"", format!("{col}::text"), "''", "SET"),
                (true, true) => (
                    "TEXT COLLATE \"C\"",
                    format!("COALESCE({col}::text, '')"),
                    "''",
                    "SET",
                ),
                (false, false) => (
                    "DOUBLE PRECISION",
                    format!("CASE WHEN {empty} THEN 0 ELSE {col}::double precision END"),
                    "0",
                    "SET",
                ),
                (false, true) => (
                    "JSONB",
                    format!("CASE WHEN {empty} THEN NULL ELSE {col}::jsonb END"),
                    "NULL",
                    "DROP",
                ),
            };
            vec![
                mk(format!(
                    "ALTER TABLE {table} ALTER COLUMN {col} DROP DEFAULT"
                )),
                mk(format!(
                    "ALTER TABLE {table} ALTER COLUMN {col} DROP NOT NULL"
                )),
                mk(format!(
                    "ALTER TABLE {table} ALTER COLUMN {col} TYPE {ty} USING ({using})"
                )),
                mk(format!(
                    "ALTER TABLE {table} ALTER COLUMN {col} SET DEFAULT {default}"
                )),
                mk(format!(
                    "ALTER TABLE {table} ALTER COLUMN {col} {null} NOT NULL"
                )),
            ]
        }
        Dialect::Sqlite => {
            let value = match (nf.pii.is_some(), json) {
                (true, false) => format!("CAST({col} AS TEXT)"),
                (true, true) => format!("COALESCE({col}, '')"),
                // NUMERIC affinity turns '42' into 42 and '1.5' into 1.5.
                (false, false) => format!("CASE WHEN {empty} THEN 0 ELSE {col} END"),
                (false, true) => format!("CASE WHEN {empty} THEN NULL ELSE {col} END"),
            };
            let tmp = ident("_basalt_retype");
            vec![
                mk(format!(
                    "ALTER TABLE {table} ADD COLUMN {tmp} {}",
                    column_type(d, nf)
                )),
                mk(format!("UPDATE {table} SET {tmp} = {value}")),
                mk(format!("ALTER TABLE {table} DROP COLUMN {col}")),
                mk(format!("ALTER TABLE {table} RENAME COLUMN {tmp} TO {col}")),
            ]
        }
    }
}

/// The hidden columns of PII protection: the record's wrapped data key, and a blind index per
/// searchable pii field (`_bi_<field id>`, so a rename keeps it).
pub fn pii_columns(d: Dialect, c: &Collection) -> Vec<(String, String)> {
    let text = match d {
        Dialect::Sqlite => "TEXT DEFAULT '' NOT NULL",
        Dialect::Postgres => "TEXT COLLATE \"C\" DEFAULT '' NOT NULL",
    };
    let mut out = Vec::new();
    if basalt_core::pii::fields(&c.fields).next().is_none() {
        return out;
    }
    out.push((basalt_core::pii::DEK_COLUMN.to_string(), text.to_string()));
    for f in basalt_core::pii::fields(&c.fields) {
        if f.pii.as_ref().is_some_and(|p| p.searchable) {
            out.push((basalt_core::pii::index_column(f), text.to_string()));
        }
    }
    out
}

pub fn drop_table(d: Dialect, c: &Collection) -> Sql {
    let mut s = Sql::new(d);
    if c.kind == basalt_core::schema::CollectionType::View {
        s.push("DROP VIEW IF EXISTS ").ident(&c.name);
    } else {
        s.push("DROP TABLE IF EXISTS ").ident(&c.name);
    }
    s
}
