//! Compiles a filter AST to a parameterised SQL boolean expression for one dialect.
//!
//! The main table is aliased `_m`. Relation paths become correlated sub-queries; multi-valued sides
//! (multi select/relation/file, back-relations `x_via_y`, literal arrays) become `EXISTS` (any, `?op`)
//! or `NOT EXISTS … IS NOT TRUE` (all, plain op). `@collection.*` references share one LEFT JOIN per
//! name/alias around the whole expression, as PocketBase joins them, so conditions on the same alias
//! apply to the same row.
//!
//! **Invariant:** values are bound with [`Sql::bind`]; SQL text receives only identifiers that passed
//! [`crate::id::is_valid_name`], aliases generated here and fixed keywords.

use std::sync::Arc;

use chrono::{Datelike, Duration, Timelike, Utc};
use serde_json::{Map, Value as Json};

use super::ast::{Cmp, Expr, Op, Operand, SortItem};
use crate::error::{Error, Result};
use crate::id::is_valid_name;
use crate::schema::{Collection, ColumnKind, Field, FieldType};
use crate::sql::{ident, Dialect, Sql, Value};

pub const MAIN: &str = "_m";
const MAX_PATH_HOPS: usize = 6;
/// The cost bound of a client filter or sort (superusers and rules are not bounded): relation hops
/// joined in all, and of those, back-relations (`posts_via_author`), which fan out one row into
/// many. Past either, 400 with [`crate::codes::TOO_EXPENSIVE`] on the `filter`/`sort` field.
pub const MAX_CLIENT_JOINS: usize = 24;
pub const MAX_CLIENT_BACK_RELATIONS: usize = 6;

/// What the compiler may know about the request (`@request.*`).
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    /// The authenticated record as stored (all fields), with its collection; `None` for guests.
    pub auth: Option<(Arc<Collection>, Map<String, Json>)>,
    pub body: Map<String, Json>,
    pub query: Map<String, Json>,
    pub headers: Map<String, Json>,
    pub method: String,
    pub context: String,
    /// Stored values of the record being updated (for `:changed`).
    pub existing: Option<Map<String, Json>>,
    /// Where the request came from, for the PII reveal audit: `METHOD path`, the client IP, and the
    /// `X-Pii-Reason` header.
    pub route: String,
    pub ip: String,
    pub reason: String,
}

impl RequestInfo {
    pub fn is_superuser(&self) -> bool {
        self.auth.as_ref().is_some_and(|(c, _)| c.is_superusers())
    }
}

/// Looks collections up by name or id.
pub trait Schema: Send + Sync {
    fn collection(&self, name_or_id: &str) -> Option<Arc<Collection>>;
    /// The blind index values of `text` ([`crate::pii::canonical`]) for a searchable pii field of
    /// `coll`: one per key of the ring, the primary first, so rows indexed under a key being rotated
    /// out still match. `None` when no PII keys are configured.
    fn blind_index(&self, _coll: &Collection, _field: &Field, _text: &str) -> Option<Vec<String>> {
        None
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Text,
    Num,
    Bool,
    /// SQLite JSON values (`json_extract` keeps their type).
    Any,
    /// A Postgres `jsonb` value; [`Compiler::json_as`] turns it into the type it is compared with.
    Json,
}

fn ty_of(f: &Field) -> Ty {
    match f.column_kind() {
        ColumnKind::Text => Ty::Text,
        ColumnKind::Number => Ty::Num,
        ColumnKind::Bool => Ty::Bool,
        ColumnKind::Json => Ty::Any,
    }
}

enum Res {
    /// A literal value (from the filter, a macro or the request).
    Lit(Json),
    /// A scalar SQL expression.
    Col(Sql, Ty),
    /// A set of values: `from` is `FROM … WHERE …` (always with a WHERE), `val` the element expression.
    Multi { from: Sql, val: String, ty: Ty },
}

pub struct Compiler<'a> {
    pub dialect: Dialect,
    schema: &'a dyn Schema,
    req: &'a RequestInfo,
    /// Whether hidden fields may be referenced (rules and superusers: yes; client filters: no).
    allow_hidden: bool,
    /// Whether `@request.*` / `@collection.*` may appear (client filters of non-superusers: no).
    allow_request: bool,
    next_alias: usize,
    /// Relation hops joined so far, and how many of them are back-relations.
    joins: usize,
    back_joins: usize,
    /// Whether [`MAX_CLIENT_JOINS`] and [`MAX_CLIENT_BACK_RELATIONS`] apply (client filters).
    bounded: bool,
    collection_joins: Vec<(String, String, Arc<Collection>)>,
    /// The alias plain field names resolve against: `_m`, or a joined row while a joined collection's
    /// listRule is compiled into its join.
    base: String,
    /// Whether a sort is being compiled (errors name `sort`, not `filter`).
    sorting: bool,
}

impl<'a> Compiler<'a> {
    pub fn new(
        dialect: Dialect,
        schema: &'a dyn Schema,
        req: &'a RequestInfo,
        trusted: bool,
    ) -> Self {
        let su = req.is_superuser();
        Compiler {
            dialect,
            schema,
            req,
            allow_hidden: trusted || su,
            allow_request: trusted || su,
            next_alias: 0,
            joins: 0,
            back_joins: 0,
            bounded: !(trusted || su),
            collection_joins: vec![],
            base: MAIN.to_string(),
            sorting: false,
        }
    }

    /// Relation hops the compiled filter and sort join (0: the read touches one table).
    pub fn joins(&self) -> usize {
        self.joins
    }

    /// Counts one joined relation hop, refusing a client filter past the cost bound.
    fn join(&mut self, back: bool) -> Result<()> {
        self.joins += 1;
        self.back_joins += usize::from(back);
        if self.bounded
            && (self.joins > MAX_CLIENT_JOINS || self.back_joins > MAX_CLIENT_BACK_RELATIONS)
        {
            return Err(Error::field(
                "The filter or sort is too expensive.",
                "filter",
                crate::FieldError::new(
                    crate::codes::TOO_EXPENSIVE,
                    format!(
                        "A filter and a sort may each join at most {MAX_CLIENT_JOINS} relations, \
                         of which at most {MAX_CLIENT_BACK_RELATIONS} back-relations (x_via_y)."
                    ),
                ),
            ));
        }
        Ok(())
    }

    fn alias(&mut self, p: &str) -> String {
        self.next_alias += 1;
        format!("_{p}{}", self.next_alias)
    }

    fn bad(&self, msg: impl Into<String>) -> Error {
        Error::BadRequest(msg.into())
    }

    /// Compiles a filter or rule into a boolean SQL expression over the main alias `_m`.
    pub fn compile(&mut self, coll: &Collection, e: &Expr) -> Result<Sql> {
        let inner = self.expr(coll, e)?;
        if self.collection_joins.is_empty() {
            return Ok(inner);
        }
        let mut s = Sql::new(self.dialect);
        s.push("EXISTS (SELECT 1 FROM (SELECT 1 AS _one) AS _d");
        for (name, alias, _) in std::mem::take(&mut self.collection_joins) {
            s.push(" LEFT JOIN ")
                .ident(&name)
                .push(" AS ")
                .ident(&alias)
                .push(" ON 1=1");
        }
        s.push(" WHERE ");
        s.append(inner);
        s.push(")");
        Ok(s)
    }

    fn expr(&mut self, coll: &Collection, e: &Expr) -> Result<Sql> {
        match e {
            Expr::And(items) | Expr::Or(items) => {
                let joiner = if matches!(e, Expr::And(_)) {
                    " AND "
                } else {
                    " OR "
                };
                let mut s = Sql::new(self.dialect);
                s.push("(");
                for (i, it) in items.iter().enumerate() {
                    if i > 0 {
                        s.push(joiner);
                    }
                    let part = self.expr(coll, it)?;
                    s.append(part);
                }
                s.push(")");
                Ok(s)
            }
            Expr::Cmp(c) => self.cmp(coll, c),
        }
    }

    fn cmp(&mut self, coll: &Collection, c: &Cmp) -> Result<Sql> {
        if let Some(s) = self.pii_cmp(coll, c)? {
            return Ok(s);
        }
        let l = self.operand(coll, &c.left)?;
        let r = self.operand(coll, &c.right)?;
        Ok(self.combine(l, c.op, c.any, r))
    }

    /// A comparison with a pii field of this collection: only `=`/`!=` (and `?=`/`?!=`) against a
    /// value, answered by the field's blind index. `None` when neither side names a pii field; any
    /// other use of a pii field (range, like, sort, functions, modifiers, relation paths) is refused
    /// where the path resolves ([`Self::pii_refused`]).
    fn pii_cmp(&mut self, coll: &Collection, c: &Cmp) -> Result<Option<Sql>> {
        let field_of = |o: &Operand| match o {
            Operand::Ident(id) if !id.starts_with('@') && !id.contains('.') => {
                let (name, modifier) = split_modifier(id);
                coll.field(name)
                    .filter(|f| f.pii.is_some())
                    .map(|f| (f.clone(), modifier.is_some()))
            }
            _ => None,
        };
        let (f, value, modified) = match (field_of(&c.left), field_of(&c.right)) {
            (Some((f, _)), Some(_)) => return Err(self.pii_refused(&f)),
            (Some((f, m)), None) => (f, &c.right, m),
            (None, Some((f, m))) => (f, &c.left, m),
            (None, None) => return Ok(None),
        };
        if f.hidden && !self.allow_hidden {
            return Err(self.bad(format!("field {} cannot be filtered", f.name)));
        }
        let searchable = f.pii.as_ref().is_some_and(|p| p.searchable);
        if modified || !matches!(c.op, Op::Eq | Op::Neq) || !searchable {
            return Err(self.pii_refused(&f));
        }
        let v = match self.operand(coll, value)? {
            Res::Lit(v) if !v.is_array() && !v.is_object() => v,
            _ => return Err(self.pii_refused(&f)),
        };
        let a = ident(&self.base);
        let mut col = format!("{a}.{}", ident(&crate::pii::index_column(&f)));
        let mut s = Sql::new(self.dialect);
        if coll.is_auth() && f.name == "email" && !self.allow_hidden {
            // As for plain emails: a client filter sees an email only where the viewer may.
            s = self.visible_email(coll, &a, &col);
            col = String::new();
        }
        let mut out = Sql::new(self.dialect);
        if c.op == Op::Neq {
            out.push("NOT ");
        }
        out.push("(COALESCE(");
        if col.is_empty() {
            out.append(s);
        } else {
            out.push(&col);
        }
        match crate::pii::canonical(&f, &v) {
            None => {
                out.push(", '') = '')");
            }
            Some(text) => {
                let values = self.schema.blind_index(coll, &f, &text).ok_or_else(|| {
                    Error::BadRequest(format!(
                        "{} is encrypted (pii) and the server has no PII keys configured",
                        f.name
                    ))
                })?;
                out.push(", '') IN (");
                for (i, v) in values.into_iter().enumerate() {
                    if i > 0 {
                        out.push(", ");
                    }
                    out.bind(Value::Text(v));
                }
                out.push(")");
                crate::pii::or_clear_match(&mut out, &format!("{a}."), &f, &text);
                out.push(")");
            }
        }
        Ok(Some(out))
    }

    /// `col` (an auth collection's email under `alias`) where the viewer may see it: emailVisibility
    /// on, or the viewer's own record; NULL otherwise.
    fn visible_email(&self, coll: &Collection, alias: &str, col: &str) -> Sql {
        let me = self
            .req
            .auth
            .as_ref()
            .filter(|(c, _)| c.id == coll.id)
            .and_then(|(_, r)| r.get("id").and_then(Json::as_str))
            .unwrap_or("")
            .to_string();
        let mut s = Sql::new(self.dialect);
        s.push("(CASE WHEN ")
            .push(alias)
            .push(".\"emailVisibility\" OR ")
            .push(alias)
            .push(".\"id\" = ")
            .bind(Value::Text(me))
            .push(" THEN ")
            .push(col)
            .push(" END)");
        s
    }

    fn pii_refused(&self, f: &Field) -> Error {
        let how = if f.pii.as_ref().is_some_and(|p| p.searchable) {
            "only = and != with a value"
        } else {
            "not searchable (set pii.searchable for = and !=)"
        };
        let msg = format!(
            "{} is encrypted (pii): it cannot be sorted, ranged, matched with ~ or reached through a relation; {how}.",
            f.name
        );
        let key = if self.sorting { "sort" } else { "filter" };
        Error::field(
            &msg,
            key,
            crate::FieldError::new(crate::codes::PII_FILTER, msg.clone()),
        )
    }

    fn combine(&mut self, l: Res, op: Op, any: bool, r: Res) -> Res2 {
        match (l, r) {
            (Res::Multi { from, val, ty }, other) => {
                let elem = Res::Col(self.raw(&val), ty);
                self.quantify(from, elem, op, any, other, false)
            }
            (other, Res::Multi { from, val, ty }) => {
                let elem = Res::Col(self.raw(&val), ty);
                self.quantify(from, elem, op, any, other, true)
            }
            (Res::Lit(Json::Array(items)), other) if !matches!(other, Res::Lit(_)) => {
                let (from, val) = self.literal_set(items);
                let elem = Res::Col(self.raw(&val), Ty::Text);
                self.quantify(from, elem, op, any, other, false)
            }
            (l, r) => self.scalar_cmp(l, op, r),
        }
    }

    fn raw(&self, text: &str) -> Sql {
        let mut s = Sql::new(self.dialect);
        s.push(text);
        s
    }

    /// any: EXISTS(one element matches); all: every element matches (an empty set compares as NULL).
    fn quantify(
        &mut self,
        from: Sql,
        elem: Res,
        op: Op,
        any: bool,
        other: Res,
        swapped: bool,
    ) -> Sql {
        let cmp = |me: &mut Self, e: Res, o: Res| -> Sql {
            if swapped {
                me.combine(o, op, any, e)
            } else {
                me.combine(e, op, any, o)
            }
        };
        let other2 = clone_res(&other);
        let elem2 = clone_res(&elem);
        let inner = cmp(self, elem, other);
        let mut s = Sql::new(self.dialect);
        if any {
            s.push("EXISTS (SELECT 1 ");
            s.append(from);
            s.push(" AND (");
            s.append(inner);
            s.push("))");
        } else {
            let null_case = cmp(self, Res::Lit(Json::Null), other2);
            let _ = elem2;
            s.push("(CASE WHEN EXISTS (SELECT 1 ");
            s.append(from.clone());
            s.push(") THEN NOT EXISTS (SELECT 1 ");
            s.append(from);
            s.push(" AND (");
            s.append(inner);
            s.push(") IS NOT TRUE) ELSE ");
            s.append(null_case);
            s.push(" END)");
        }
        s
    }

    fn literal_set(&mut self, items: Vec<Json>) -> (Sql, String) {
        let a = self.alias("l");
        let mut s = Sql::new(self.dialect);
        let arr: Vec<Json> = items
            .into_iter()
            .map(|v| {
                if let Json::String(_) = v {
                    v
                } else {
                    Json::String(json_text(&v))
                }
            })
            .collect();
        let text = Json::Array(arr).to_string();
        match self.dialect {
            Dialect::Sqlite => {
                s.push("FROM json_each(")
                    .bind(Value::Text(text))
                    .push(") AS ")
                    .ident(&a)
                    .push(" WHERE 1=1");
                (s, format!("{}.value", ident(&a)))
            }
            Dialect::Postgres => {
                s.push("FROM jsonb_array_elements_text(")
                    .bind(Value::Json(text))
                    .push(") AS ")
                    .ident(&a);
                s.push("(value) WHERE TRUE");
                (s, format!("{}.value", ident(&a)))
            }
        }
    }

    fn scalar_cmp(&mut self, l: Res, op: Op, r: Res) -> Sql {
        let is_like = matches!(op, Op::Like | Op::NotLike);
        // A Postgres jsonb side takes the type of the other side: numbers compare as numbers.
        let want = |other: &Res| -> Ty {
            match other {
                _ if is_like => Ty::Text,
                Res::Lit(Json::Number(_)) | Res::Col(_, Ty::Num) => Ty::Num,
                Res::Lit(Json::Bool(_)) | Res::Col(_, Ty::Bool) => Ty::Bool,
                _ => Ty::Text,
            }
        };
        let (lw, rw) = (want(&r), want(&l));
        let (l, r) = (self.json_as(l, lw), self.json_as(r, rw));
        let r = match r {
            Res::Lit(v) if is_like => Res::Lit(Json::String(like_pattern(&json_text(&v)))),
            Res::Col(c, _) if is_like => {
                let mut w = Sql::new(self.dialect);
                w.push("('%' || ");
                self.as_text(&mut w, c);
                w.push(" || '%')");
                Res::Col(w, Ty::Text)
            }
            other => other,
        };
        let l = match l {
            Res::Lit(v) if is_like => Res::Lit(Json::String(json_text(&v))),
            other => other,
        };
        let lt = if is_like {
            res_ty(&l).map(|_| Ty::Text)
        } else {
            res_ty(&l)
        };
        let rt = if is_like {
            res_ty(&r).map(|_| Ty::Text)
        } else {
            res_ty(&r)
        };
        // The type both sides are compared as.
        let ty = match (lt, rt) {
            (Some(a), None) | (None, Some(a)) => a,
            (Some(a), Some(b)) if a == b => a,
            (Some(_), Some(_)) => Ty::Text,
            (None, None) => match (&l, &r) {
                (Res::Lit(a), Res::Lit(b)) => literal_pair_ty(a, b),
                _ => Ty::Text,
            },
        };
        let l_null = matches!(l, Res::Lit(Json::Null));
        let r_null = matches!(r, Res::Lit(Json::Null));
        let ls = self.side_sql(l, ty, lt.is_some() && rt.is_some() && lt != rt);
        let rs = self.side_sql(r, ty, lt.is_some() && rt.is_some() && lt != rt);
        let mut s = Sql::new(self.dialect);
        let text_like = matches!(ty, Ty::Text | Ty::Any);
        match op {
            Op::Eq | Op::Neq => {
                let neg = op == Op::Neq;
                if l_null || r_null {
                    let side = if l_null { rs } else { ls };
                    if l_null && r_null {
                        s.push(if neg { "1=0" } else { "1=1" });
                        return s;
                    }
                    s.push(if neg { "NOT " } else { "" }).push("(");
                    if text_like {
                        let side2 = side.clone();
                        s.append(side).push(" IS NULL OR ");
                        self.as_text(&mut s, side2);
                        s.push(" = ''");
                    } else {
                        s.append(side).push(" IS NULL");
                    }
                    s.push(")");
                } else if text_like {
                    s.push("COALESCE(");
                    self.as_text(&mut s, ls);
                    s.push(", '') ")
                        .push(if neg { "!=" } else { "=" })
                        .push(" COALESCE(");
                    self.as_text(&mut s, rs);
                    s.push(", '')");
                } else {
                    let kw = match (self.dialect, neg) {
                        (Dialect::Sqlite, false) => " IS ",
                        (Dialect::Sqlite, true) => " IS NOT ",
                        (Dialect::Postgres, false) => " IS NOT DISTINCT FROM ",
                        (Dialect::Postgres, true) => " IS DISTINCT FROM ",
                    };
                    s.append(ls).push(kw).append(rs);
                }
            }
            Op::Gt | Op::Gte | Op::Lt | Op::Lte => {
                let o = match op {
                    Op::Gt => " > ",
                    Op::Gte => " >= ",
                    Op::Lt => " < ",
                    _ => " <= ",
                };
                s.append(ls).push(o).append(rs);
            }
            Op::Like | Op::NotLike => {
                let like = match self.dialect {
                    Dialect::Sqlite => " LIKE ",
                    Dialect::Postgres => " ILIKE ",
                };
                if op == Op::NotLike {
                    s.push("NOT ");
                }
                s.push("(COALESCE(");
                self.as_text(&mut s, ls);
                s.push(", '')").push(like);
                s.append(rs);
                s.push(" ESCAPE '\\')");
            }
        }
        s
    }

    /// Converts a Postgres `jsonb` side to a typed SQL value; a JSON value of another type is NULL.
    fn json_as(&self, r: Res, want: Ty) -> Res {
        // SQLite JSON values keep their own type; compare them like Postgres does: numbers only with
        // numbers, and as text otherwise.
        if let Res::Col(x, Ty::Any) = &r {
            let mut o = Sql::new(self.dialect);
            match want {
                Ty::Num => {
                    // Every SQLite Ty::Any value is a `json_extract(...)`; the same call as
                    // `json_type(...)` tells a JSON number from `true` (which extracts as 1).
                    let mut kind = x.clone();
                    kind.text = kind.text.replace("json_extract(", "json_type(");
                    o.push("(CASE WHEN ")
                        .append(kind)
                        .push(" IN ('integer', 'real') THEN ");
                    o.append(x.clone()).push(" END)");
                    return Res::Col(o, Ty::Num);
                }
                Ty::Text => {
                    o.push("CAST(").append(x.clone()).push(" AS TEXT)");
                    return Res::Col(o, Ty::Text);
                }
                _ => return r,
            }
        }
        let Res::Col(x, Ty::Json) = r else { return r };
        let mut o = Sql::new(self.dialect);
        match want {
            Ty::Num | Ty::Bool => {
                let (kind, cast) = if want == Ty::Num {
                    ("number", "float8")
                } else {
                    ("boolean", "bool")
                };
                o.push("(CASE WHEN jsonb_typeof(")
                    .append(x.clone())
                    .push(") = '")
                    .push(kind)
                    .push("' THEN (");
                o.append(x).push(" #>> '{}')::").push(cast).push(" END)");
                Res::Col(o, want)
            }
            _ => {
                o.push("(").append(x).push(" #>> '{}')");
                Res::Col(o, Ty::Text)
            }
        }
    }

    fn as_text(&self, s: &mut Sql, inner: Sql) {
        match self.dialect {
            Dialect::Sqlite => {
                s.append(inner);
            }
            Dialect::Postgres => {
                s.push("CAST(").append(inner).push(" AS TEXT)");
            }
        }
    }

    /// Writes one side. Literals are converted to the comparison type; columns are cast to text
    /// when the two sides' types differ.
    fn side_sql(&mut self, r: Res, ty: Ty, cast_text: bool) -> Sql {
        match r {
            Res::Lit(v) => {
                let mut s = Sql::new(self.dialect);
                s.bind(lit_value(&v, ty, self.dialect));
                s
            }
            Res::Col(sql, _) if cast_text && self.dialect == Dialect::Postgres => {
                let mut s = Sql::new(self.dialect);
                s.push("CAST(").append(sql).push(" AS TEXT)");
                s
            }
            Res::Col(sql, _) => sql,
            Res::Multi { .. } => self.raw("NULL"),
        }
    }

    fn operand(&mut self, coll: &Collection, o: &Operand) -> Result<Res> {
        Ok(match o {
            Operand::Num(n) => Res::Lit(
                serde_json::Number::from_f64(*n)
                    .map(Json::Number)
                    .unwrap_or(Json::Null),
            ),
            Operand::Str(s) => Res::Lit(Json::String(s.clone())),
            Operand::Bool(b) => Res::Lit(Json::Bool(*b)),
            Operand::Null => Res::Lit(Json::Null),
            Operand::Func(name, args) if name == "geoDistance" => self.geo_distance(coll, args)?,
            Operand::Func(name, args) if name == "strftime" => self.strftime(coll, args)?,
            Operand::Func(name, _) => {
                return Err(self.bad(format!("unsupported function {name}()")))
            }
            Operand::Ident(id) => self.ident(coll, id)?,
        })
    }

    /// `geoDistance(lonA, latA, lonB, latB)`: the haversine distance in km. SQLite calls the
    /// `geo_distance` function the store registers on every connection; Postgres computes it inline.
    fn geo_distance(&mut self, coll: &Collection, args: &[Operand]) -> Result<Res> {
        if args.len() != 4 {
            return Err(self.bad("geoDistance takes 4 arguments: lonA, latA, lonB, latB"));
        }
        let mut nums = Vec::with_capacity(4);
        for a in args {
            let r = self.operand(coll, a)?;
            nums.push(self.number_sql(r)?);
        }
        let mut s = Sql::new(self.dialect);
        match self.dialect {
            Dialect::Sqlite => {
                s.push("geo_distance(");
                for (i, n) in nums.into_iter().enumerate() {
                    if i > 0 {
                        s.push(", ");
                    }
                    s.append(n);
                }
                s.push(")");
            }
            Dialect::Postgres => {
                let (lon_a, lat_a, lon_b, lat_b) = (&nums[0], &nums[1], &nums[2], &nums[3]);
                let d = |s: &mut Sql, x: &Sql| {
                    s.push("radians(").append(x.clone()).push(")");
                };
                s.push("(12742.0 * asin(sqrt(power(sin((");
                d(&mut s, lat_b);
                s.push(" - ");
                d(&mut s, lat_a);
                s.push(") / 2), 2) + cos(");
                d(&mut s, lat_a);
                s.push(") * cos(");
                d(&mut s, lat_b);
                s.push(") * power(sin((");
                d(&mut s, lon_b);
                s.push(" - ");
                d(&mut s, lon_a);
                s.push(") / 2), 2))))");
            }
        }
        Ok(Res::Col(s, Ty::Num))
    }

    /// `strftime(format, time, modifiers…)` as SQLite defines it. On Postgres the format must be a literal
    /// and is translated to `to_char` (%Y %m %d %H %M %S %f %j %%; modifiers are not supported there);
    /// a time that is not a valid date gives NULL on both backends.
    fn strftime(&mut self, coll: &Collection, args: &[Operand]) -> Result<Res> {
        if args.len() < 2 {
            return Err(self.bad("strftime takes a format and a time"));
        }
        let Operand::Str(fmt) = &args[0] else {
            return Err(self.bad("strftime's format must be a string literal"));
        };
        let time = match self.operand(coll, &args[1])? {
            Res::Lit(v) => {
                let mut s = Sql::new(self.dialect);
                s.bind(Value::Text(json_text(&v)));
                s
            }
            r @ Res::Col(..) => match self.json_as(r, Ty::Text) {
                Res::Col(c, _) => c,
                _ => return Err(self.bad("strftime's time must be a single value")),
            },
            Res::Multi { .. } => return Err(self.bad("strftime's time must be a single value")),
        };
        let mut s = Sql::new(self.dialect);
        match self.dialect {
            Dialect::Sqlite => {
                s.push("strftime(")
                    .bind(Value::Text(fmt.clone()))
                    .push(", ")
                    .append(time);
                for m in &args[2..] {
                    let Operand::Str(m) = m else {
                        return Err(self.bad("strftime's modifiers must be string literals"));
                    };
                    s.push(", ").bind(Value::Text(m.clone()));
                }
                s.push(")");
            }
            Dialect::Postgres => {
                if args.len() > 2 {
                    return Err(self.bad("strftime modifiers are not supported on PostgreSQL"));
                }
                let pg = strftime_to_char(fmt).map_err(|e| self.bad(e))?;
                s.push("to_char(basalt_ts(CAST(")
                    .append(time)
                    .push(" AS TEXT)), ")
                    .bind(Value::Text(pg))
                    .push(")");
            }
        }
        Ok(Res::Col(s, Ty::Text))
    }

    /// A numeric SQL expression for a function argument; non-numeric text becomes NULL, never an error.
    fn number_sql(&mut self, r: Res) -> Result<Sql> {
        let mut s = Sql::new(self.dialect);
        match r {
            Res::Lit(v) => {
                let f = match &v {
                    Json::Number(n) => n.as_f64(),
                    Json::String(t) => t.trim().parse().ok(),
                    _ => None,
                };
                match f {
                    Some(f) => s.bind(Value::Real(f)),
                    None => s.push("NULL"),
                };
            }
            Res::Col(c, Ty::Num) => {
                s.push("CAST(").append(c).push(" AS DOUBLE PRECISION)");
            }
            Res::Col(c, _) => match self.dialect {
                Dialect::Sqlite => {
                    s.push("CAST(").append(c).push(" AS REAL)");
                }
                Dialect::Postgres => {
                    let c2 = c.clone();
                    s.push("(CASE WHEN CAST(")
                        .append(c)
                        .push(" AS TEXT) ~ '^-?[0-9]+(\\.[0-9]+)?\\Z' THEN CAST(CAST(");
                    s.append(c2).push(" AS TEXT) AS DOUBLE PRECISION) END)");
                }
            },
            Res::Multi { .. } => {
                return Err(self.bad("geoDistance arguments must be single values"))
            }
        }
        Ok(s)
    }

    fn ident(&mut self, coll: &Collection, id: &str) -> Result<Res> {
        if let Some(rest) = id.strip_prefix('@') {
            if let Some(v) = macro_value(rest) {
                return Ok(Res::Lit(v));
            }
            if let Some(r) = rest.strip_prefix("request.") {
                if !self.allow_request {
                    return Err(Error::Forbidden(
                        "Only superusers can filter by @request.".into(),
                    ));
                }
                return self.request_ident(r);
            }
            if let Some(r) = rest.strip_prefix("collection.") {
                if !self.allow_request {
                    return Err(Error::Forbidden(
                        "Only superusers can filter by @collection.".into(),
                    ));
                }
                return self.collection_ident(r);
            }
            return Err(self.bad(format!("unknown identifier {id}")));
        }
        let segs: Vec<&str> = id.split('.').collect();
        let base = self.base.clone();
        self.path(coll, &base, &segs, None)
    }

    fn request_ident(&mut self, r: &str) -> Result<Res> {
        let (path, modifier) = split_modifier(r);
        let segs: Vec<&str> = path.split('.').collect();
        let req = self.req;
        let v = match segs[0] {
            "method" => Json::String(req.method.clone()),
            "context" => Json::String(req.context.clone()),
            "auth" => {
                let key = segs.get(1).copied().unwrap_or("id");
                match &req.auth {
                    None => Json::Null,
                    Some((c, rec)) => {
                        if segs.len() > 2 {
                            // @request.auth.rel.field: walk from the auth record's own row.
                            let id = rec
                                .get("id")
                                .and_then(Json::as_str)
                                .unwrap_or("")
                                .to_string();
                            return self.auth_path(c.clone(), &id, &segs[1..], modifier);
                        }
                        // A field the caller's collection lacks is null, as for guests.
                        match key {
                            "collectionId" => Json::String(c.id.clone()),
                            "collectionName" => Json::String(c.name.clone()),
                            _ => rec.get(key).cloned().unwrap_or(Json::Null),
                        }
                    }
                }
            }
            "body" | "query" | "headers" => {
                let map = match segs[0] {
                    "body" => &req.body,
                    "query" => &req.query,
                    _ => &req.headers,
                };
                let key = segs
                    .get(1)
                    .copied()
                    .ok_or_else(|| self.bad("missing @request key"))?;
                if modifier == Some("isset") {
                    return Ok(Res::Lit(Json::Bool(map.contains_key(key))));
                }
                if modifier == Some("changed") {
                    // Sent and different from the stored value (compared as text, so "5" and 5 match).
                    let new = map.get(key);
                    let old = req.existing.as_ref().and_then(|e| e.get(key));
                    let changed = match (new, old) {
                        (None, _) => false,
                        (Some(n), Some(o)) => json_text(n) != json_text(o),
                        (Some(_), None) => true,
                    };
                    return Ok(Res::Lit(Json::Bool(changed)));
                }
                let mut v = map.get(key).cloned().unwrap_or(Json::Null);
                for s in &segs[2..] {
                    v = v.get(*s).cloned().unwrap_or(Json::Null);
                }
                v
            }
            other => return Err(self.bad(format!("unknown identifier @request.{other}"))),
        };
        Ok(match modifier {
            Some("length") => Res::Lit(Json::from(v.as_array().map(Vec::len).unwrap_or(0) as i64)),
            Some("lower") => Res::Lit(Json::String(json_text(&v).to_lowercase())),
            Some("each") | None => Res::Lit(v),
            Some(m) => return Err(self.bad(format!("unsupported modifier :{m}"))),
        })
    }

    fn auth_path(
        &mut self,
        c: Arc<Collection>,
        id: &str,
        segs: &[&str],
        modifier: Option<&str>,
    ) -> Result<Res> {
        let a = self.alias("a");
        let mut from = Sql::new(self.dialect);
        join_on(&mut from, &c.name, &a);
        from.ident(&a)
            .push(".\"id\" = ")
            .bind(Value::Text(id.to_string()));
        let mut segs: Vec<String> = segs.iter().map(|s| s.to_string()).collect();
        if let (Some(m), Some(last)) = (modifier, segs.last_mut()) {
            last.push(':');
            last.push_str(m);
        }
        let seg_refs: Vec<&str> = segs.iter().map(String::as_str).collect();
        let inner = self.path(&c, &a, &seg_refs, None)?;
        Ok(self.wrap_chain(Chain { from, multi: false }, inner))
    }

    fn collection_ident(&mut self, r: &str) -> Result<Res> {
        let segs: Vec<&str> = r.split('.').collect();
        if segs.len() < 2 {
            return Err(self.bad("@collection needs a field"));
        }
        let (name, alias_name) = match segs[0].split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (segs[0], None),
        };
        let c = self
            .schema
            .collection(name)
            .ok_or_else(|| self.bad(format!("unknown collection {name}")))?;
        let key = format!("{}_{}", c.name, alias_name.unwrap_or(""));
        let alias = match self
            .collection_joins
            .iter()
            .find(|(_, k, _)| k.ends_with(&format!("__{key}")))
        {
            Some((_, a, _)) => a.clone(),
            None => {
                if !alias_name.map(is_valid_name).unwrap_or(true) {
                    return Err(self.bad("invalid @collection alias"));
                }
                self.next_alias += 1;
                let a = format!("_c{}__{}", self.next_alias, key);
                self.collection_joins
                    .push((c.name.clone(), a.clone(), c.clone()));
                a
            }
        };
        // Joined rows are scalar within the shared join: plain operators act per joined row.
        self.path(&c, &alias, &segs[1..], None)
    }

    /// Resolves a field path starting at `alias` (a row of `coll`).
    fn path(
        &mut self,
        coll: &Collection,
        alias: &str,
        segs: &[&str],
        chain: Option<Chain>,
    ) -> Result<Res> {
        if segs.len() > MAX_PATH_HOPS + 1 {
            return Err(self.bad("relation path too deep"));
        }
        let (name, modifier) = split_modifier(segs[0]);
        let rest = &segs[1..];
        if let Some(f) = coll.field(name) {
            if f.hidden && !self.allow_hidden {
                return Err(self.bad(format!("field {name} cannot be filtered")));
            }
            if f.pii.is_some() {
                return Err(self.pii_refused(f));
            }
            let col = format!("{}.{}", ident(alias), ident(&f.name));
            if rest.is_empty() {
                if coll.is_auth() && f.name == "email" && !self.allow_hidden {
                    // A client filter or sort sees an email only where the viewer may: emailVisibility on,
                    // or the viewer's own record. Otherwise it compares as NULL.
                    let s = self.visible_email(coll, &ident(alias), &col);
                    let res = match modifier {
                        Some("lower") => {
                            let mut l = Sql::new(self.dialect);
                            l.push("LOWER(").append(s).push(")");
                            Res::Col(l, Ty::Text)
                        }
                        None => Res::Col(s, Ty::Text),
                        Some(m) => return Err(self.bad(format!("unsupported modifier :{m}"))),
                    };
                    return Ok(match chain {
                        Some(ch) => self.wrap_chain(ch, res),
                        None => res,
                    });
                }
                let res = self.terminal(f, col, modifier)?;
                return Ok(match chain {
                    Some(ch) => self.wrap_chain(ch, res),
                    None => res,
                });
            }
            match f.ty() {
                FieldType::Relation => {
                    let target = self
                        .schema
                        .collection(&f.collection_id)
                        .ok_or_else(|| self.bad(format!("missing relation target of {name}")))?;
                    // Client filters may only look through relations into collections they may list.
                    if !self.allow_hidden && target.list_rule.is_none() {
                        return Err(self.bad(format!("relation {name} cannot be filtered")));
                    }
                    self.join(false)?;
                    let ja = self.alias("j");
                    let mut ch = chain.unwrap_or_else(|| Chain {
                        from: Sql::new(self.dialect),
                        multi: false,
                    });
                    if f.is_multiple() {
                        let ea = self.alias("e");
                        ch.from.push(if ch.from.text.is_empty() {
                            "FROM "
                        } else {
                            " CROSS JOIN "
                        });
                        self.json_each_from(&mut ch.from, &col, &ea);
                        join_on(&mut ch.from, &target.name, &ja);
                        ch.from
                            .ident(&ja)
                            .push(".\"id\" = ")
                            .ident(&ea)
                            .push(".value");
                        ch.multi = true;
                    } else {
                        join_on(&mut ch.from, &target.name, &ja);
                        ch.from.ident(&ja).push(".\"id\" = ").push(&col);
                    }
                    if let Some(cond) = self.joined_list_rule(&target, &ja)? {
                        ch.from.push(" AND (").append(cond).push(")");
                    }
                    self.path(&target, &ja, rest, Some(ch))
                }
                FieldType::Json | FieldType::GeoPoint => {
                    let res = self.json_path(&col, rest)?;
                    Ok(match chain {
                        Some(ch) => self.wrap_chain(ch, res),
                        None => res,
                    })
                }
                _ => Err(self.bad(format!("{name} has no sub-fields"))),
            }
        } else if let Some((other, via)) = name.split_once("_via_") {
            let oc = self
                .schema
                .collection(other)
                .ok_or_else(|| self.bad(format!("unknown collection {other}")))?;
            let rf = oc
                .field(via)
                .filter(|f| {
                    f.ty() == FieldType::Relation
                        && (f.collection_id == coll.id || f.collection_id == coll.name)
                })
                .ok_or_else(|| self.bad(format!("invalid back-relation {name}")))?
                .clone();
            if !self.allow_hidden && (oc.list_rule.is_none() || rf.hidden) {
                return Err(self.bad(format!("back-relation {name} cannot be filtered")));
            }
            self.join(true)?;
            let ja = self.alias("j");
            let mut ch = chain.unwrap_or_else(|| Chain {
                from: Sql::new(self.dialect),
                multi: true,
            });
            ch.multi = true;
            let rcol = format!("{}.{}", ident(&ja), ident(&rf.name));
            let me = format!("{}.\"id\"", ident(alias));
            join_on(&mut ch.from, &oc.name, &ja);
            if rf.is_multiple() {
                match self.dialect {
                    Dialect::Sqlite => {
                        ch.from
                            .push("EXISTS (SELECT 1 FROM json_each(")
                            .push(&rcol)
                            .push(") WHERE value = ")
                            .push(&me)
                            .push(")");
                    }
                    Dialect::Postgres => {
                        ch.from
                            .push(&rcol)
                            .push(" @> jsonb_build_array(")
                            .push(&me)
                            .push(")");
                    }
                }
            } else {
                ch.from.push(&rcol).push(" = ").push(&me);
            }
            if let Some(cond) = self.joined_list_rule(&oc, &ja)? {
                ch.from.push(" AND (").append(cond).push(")");
            }
            if rest.is_empty() {
                if modifier == Some("length") {
                    let mut s = Sql::new(self.dialect);
                    s.push("(SELECT COUNT(*) ");
                    s.append(ch.from);
                    s.push(" WHERE 1=1)");
                    return Ok(Res::Col(s, Ty::Num));
                }
                let res = Res::Col(self.raw(&format!("{}.\"id\"", ident(&ja))), Ty::Text);
                return Ok(self.wrap_chain(ch, res));
            }
            self.path(&oc, &ja, rest, Some(ch))
        } else {
            Err(self.bad(format!("unknown field {name:?}")))
        }
    }

    /// For client filters: the joined collection's listRule, compiled against the joined row `alias`,
    /// to AND into the join, so a filter cannot see through a relation what a list of that collection
    /// would not show (protocol v0.31+). `None` when the rule is public or the filter is trusted.
    fn joined_list_rule(&mut self, target: &Collection, alias: &str) -> Result<Option<Sql>> {
        if self.allow_hidden {
            return Ok(None);
        }
        let Some(rule) = target.list_rule.as_deref().filter(|r| !r.trim().is_empty()) else {
            return Ok(None);
        };
        let e = super::parse(rule).map_err(|e| self.bad(format!("stored rule: {e}")))?;
        let saved = (
            std::mem::replace(&mut self.base, alias.to_string()),
            self.allow_hidden,
            self.allow_request,
        );
        self.allow_hidden = true;
        self.allow_request = true;
        let res = self.expr(target, &e);
        (self.base, self.allow_hidden, self.allow_request) = saved;
        res.map(Some)
    }

    fn json_each_from(&self, s: &mut Sql, col: &str, alias: &str) {
        match self.dialect {
            Dialect::Sqlite => {
                s.push("json_each(").push(col).push(") AS ").ident(alias);
            }
            Dialect::Postgres => {
                s.push("jsonb_array_elements_text(")
                    .push(col)
                    .push(") AS ")
                    .ident(alias)
                    .push("(value)");
            }
        }
    }

    fn terminal(&mut self, f: &Field, col: String, modifier: Option<&str>) -> Result<Res> {
        if f.is_multiple() {
            return match modifier {
                Some("length") => {
                    let fun = match self.dialect {
                        Dialect::Sqlite => "json_array_length",
                        Dialect::Postgres => "jsonb_array_length",
                    };
                    Ok(Res::Col(
                        self.raw(&format!("COALESCE({fun}({col}), 0)")),
                        Ty::Num,
                    ))
                }
                // A bare multi-valued field compares as its serialized JSON array, as the protocol
                // does; `:each` compares its items.
                None => Ok(Res::Col(
                    self.raw(&format!("CAST({col} AS TEXT)")),
                    Ty::Text,
                )),
                Some("each") => {
                    let ea = self.alias("e");
                    let mut from = Sql::new(self.dialect);
                    from.push("FROM ");
                    self.json_each_from(&mut from, &col, &ea);
                    from.push(" WHERE 1=1");
                    Ok(Res::Multi {
                        from,
                        val: format!("{}.value", ident(&ea)),
                        ty: Ty::Text,
                    })
                }
                Some("lower") => Ok(Res::Col(
                    self.raw(&format!("LOWER(CAST({col} AS TEXT))")),
                    Ty::Text,
                )),
                Some(m) => Err(self.bad(format!("unsupported modifier :{m}"))),
            };
        }
        let ty = ty_of(f);
        match modifier {
            None => {
                if ty == Ty::Any && self.dialect == Dialect::Postgres {
                    return Ok(Res::Col(self.raw(&col), Ty::Json));
                }
                if ty == Ty::Any {
                    // The stored JSON text, read as its value (as PocketBase does).
                    return Ok(Res::Col(
                        self.raw(&format!(
                            "(CASE WHEN json_valid({col}) THEN json_extract({col}, '$') END)"
                        )),
                        Ty::Any,
                    ));
                }
                Ok(Res::Col(self.raw(&col), ty))
            }
            Some("lower") => Ok(Res::Col(
                self.raw(&format!("LOWER(CAST({col} AS TEXT))")),
                Ty::Text,
            )),
            Some("length") => {
                let fun = match self.dialect {
                    Dialect::Sqlite => "json_array_length",
                    Dialect::Postgres => "jsonb_array_length",
                };
                if ty == Ty::Any {
                    if self.dialect == Dialect::Postgres {
                        return Ok(Res::Col(
                            self.raw(&format!("(CASE WHEN jsonb_typeof({col}) = 'array' THEN jsonb_array_length({col}) ELSE 0 END)")),
                            Ty::Num,
                        ));
                    }
                    return Ok(Res::Col(
                        self.raw(&format!("COALESCE({fun}({col}), 0)")),
                        Ty::Num,
                    ));
                }
                // A single value counts as one item when set.
                Ok(Res::Col(
                    self.raw(&format!(
                        "(CASE WHEN COALESCE(CAST({col} AS TEXT), '') = '' THEN 0 ELSE 1 END)"
                    )),
                    Ty::Num,
                ))
            }
            Some("each") if ty == Ty::Any && self.dialect == Dialect::Postgres => {
                Ok(Res::Col(self.raw(&col), Ty::Json))
            }
            Some("each") => Ok(Res::Col(self.raw(&col), ty)),
            Some(m) => Err(self.bad(format!("unsupported modifier :{m}"))),
        }
    }

    fn json_path(&mut self, col: &str, segs: &[&str]) -> Result<Res> {
        let mut keys = vec![];
        for s in segs {
            let (k, m) = split_modifier(s);
            if m.is_some()
                || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                || k.is_empty()
            {
                return Err(self.bad("invalid json path"));
            }
            keys.push(k.to_string());
        }
        let mut s = Sql::new(self.dialect);
        match self.dialect {
            Dialect::Sqlite => {
                let mut p = String::from("$");
                for k in &keys {
                    if k.bytes().all(|b| b.is_ascii_digit()) {
                        p.push_str(&format!("[{k}]"));
                    } else {
                        p.push('.');
                        p.push_str(k);
                    }
                }
                s.push("json_extract(")
                    .push(col)
                    .push(", ")
                    .bind(Value::Text(p))
                    .push(")");
                Ok(Res::Col(s, Ty::Any))
            }
            Dialect::Postgres => {
                let p = format!("{{{}}}", keys.join(","));
                s.push("(")
                    .push(col)
                    .push(" #> (")
                    .bind(Value::Text(p))
                    .push(")::text[])");
                Ok(Res::Col(s, Ty::Json))
            }
        }
    }

    /// Turns a resolved value at the end of a relation chain into a scalar sub-query or a set.
    fn wrap_chain(&mut self, ch: Chain, res: Res) -> Res {
        match res {
            Res::Lit(v) => Res::Lit(v),
            Res::Col(val, ty) => {
                if ch.multi {
                    let mut from = ch.from;
                    from.push(" WHERE 1=1");
                    // `val` may carry bound parameters (json paths): fold them into the FROM side.
                    if val.params.is_empty() {
                        Res::Multi {
                            from,
                            val: val.text,
                            ty,
                        }
                    } else {
                        let mut sub = Sql::new(self.dialect);
                        sub.push("(SELECT ");
                        sub.append(val);
                        sub.push(" ");
                        sub.append(from);
                        sub.push(" LIMIT 1)");
                        Res::Col(sub, ty)
                    }
                } else {
                    let mut s = Sql::new(self.dialect);
                    s.push("(SELECT ");
                    s.append(val);
                    s.push(" ");
                    s.append(ch.from);
                    s.push(" LIMIT 1)");
                    Res::Col(s, ty)
                }
            }
            Res::Multi {
                from: inner,
                val,
                ty,
            } => {
                // A multi field at the end of a chain: join its elements onto the chain.
                let mut from = ch.from;
                let inner_text = inner
                    .text
                    .trim_start_matches("FROM ")
                    .trim_end_matches(" WHERE 1=1")
                    .to_string();
                from.push(" CROSS JOIN ")
                    .push(&inner_text)
                    .push(" WHERE 1=1");
                Res::Multi { from, val, ty }
            }
        }
    }

    /// Compiles a sort list into an ORDER BY body (without the keyword). Empty input → empty output.
    pub fn order_by(&mut self, coll: &Collection, items: &[SortItem]) -> Result<Sql> {
        self.sorting = true;
        let mut s = Sql::new(self.dialect);
        for (i, it) in items.iter().enumerate() {
            if i > 0 {
                s.push(", ");
            }
            match it.field.as_str() {
                "@random" => {
                    s.push("RANDOM()");
                    continue;
                }
                "@rowid" => {
                    s.push(match self.dialect {
                        Dialect::Sqlite => "_m.rowid",
                        Dialect::Postgres => "_m.ctid",
                    });
                }
                f => {
                    if f.starts_with('@') {
                        return Err(self.bad(format!("invalid sort field {f}")));
                    }
                    let segs: Vec<&str> = f.split('.').collect();
                    match self.path(coll, MAIN, &segs, None)? {
                        Res::Col(sql, _) => {
                            s.append(sql);
                        }
                        _ => return Err(self.bad(format!("cannot sort by multi-valued {f}"))),
                    }
                }
            }
            if !self.collection_joins.is_empty() {
                return Err(self.bad(format!(
                    "cannot sort by {}: a rule on its path uses @collection",
                    it.field
                )));
            }
            s.push(if it.desc { " DESC" } else { " ASC" });
            if self.dialect == Dialect::Postgres {
                s.push(if it.desc {
                    " NULLS LAST"
                } else {
                    " NULLS FIRST"
                });
            }
        }
        Ok(s)
    }
}

type Res2 = Sql;

struct Chain {
    from: Sql,
    multi: bool,
}

/// Adds `table AS alias` to a relation chain and leaves it open at `ON `, for the caller's join
/// condition. The first table of a chain gets a one-row partner so its condition, too, sits in an ON
/// clause, and the chain can always be closed with ` WHERE …`.
fn join_on(from: &mut Sql, table: &str, alias: &str) {
    if from.text.is_empty() {
        from.push("FROM ").ident(table).push(" AS ").ident(alias);
        from.push(" JOIN (SELECT 1 AS _x) AS ")
            .ident(&format!("{alias}x"))
            .push(" ON ");
    } else {
        from.push(" JOIN ")
            .ident(table)
            .push(" AS ")
            .ident(alias)
            .push(" ON ");
    }
}

fn clone_res(r: &Res) -> Res {
    match r {
        Res::Lit(v) => Res::Lit(v.clone()),
        Res::Col(s, t) => Res::Col(s.clone(), *t),
        Res::Multi { from, val, ty } => Res::Multi {
            from: from.clone(),
            val: val.clone(),
            ty: *ty,
        },
    }
}

fn res_ty(r: &Res) -> Option<Ty> {
    match r {
        Res::Col(_, t) => Some(*t),
        Res::Multi { ty, .. } => Some(*ty),
        Res::Lit(_) => None,
    }
}

fn literal_pair_ty(a: &Json, b: &Json) -> Ty {
    match (a, b) {
        (Json::Number(_), Json::Number(_)) => Ty::Num,
        (Json::Bool(_), Json::Bool(_)) => Ty::Bool,
        _ => Ty::Text,
    }
}

fn json_text(v: &Json) -> String {
    match v {
        Json::Null => String::new(),
        Json::String(s) => s.clone(),
        Json::Number(n) => {
            let f = n.as_f64().unwrap_or(0.0);
            if f.fract() == 0.0 && f.abs() < 1e15 {
                format!("{}", f as i64)
            } else {
                n.to_string()
            }
        }
        Json::Bool(b) => b.to_string(),
        other => other.to_string(),
    }
}

/// Converts a literal into a bound value of the comparison type.
fn lit_value(v: &Json, ty: Ty, d: Dialect) -> Value {
    match (v, ty) {
        (Json::Null, _) => Value::Null,
        (Json::Number(n), Ty::Num) => Value::Real(n.as_f64().unwrap_or(0.0)),
        (Json::Bool(b), Ty::Num) => Value::Real(if *b { 1.0 } else { 0.0 }),
        (Json::String(s), Ty::Num) => match s.trim().parse::<f64>() {
            Ok(f) => Value::Real(f),
            Err(_) => Value::Real(0.0),
        },
        (Json::Bool(b), Ty::Bool) => bool_value(*b, d),
        (Json::Number(n), Ty::Bool) => bool_value(n.as_f64().unwrap_or(0.0) != 0.0, d),
        (Json::String(s), Ty::Bool) => bool_value(s == "true" || s == "1", d),
        (Json::Number(n), Ty::Any) if d == Dialect::Sqlite => {
            Value::Real(n.as_f64().unwrap_or(0.0))
        }
        (Json::Bool(b), Ty::Any) if d == Dialect::Sqlite => Value::Int(*b as i64),
        (other, _) => Value::Text(json_text(other)),
    }
}

fn bool_value(b: bool, d: Dialect) -> Value {
    match d {
        Dialect::Sqlite => Value::Int(b as i64),
        Dialect::Postgres => Value::Bool(b),
    }
}

/// Translates a SQLite strftime format to a Postgres `to_char` pattern, literal text double-quoted.
fn strftime_to_char(fmt: &str) -> std::result::Result<String, String> {
    let mut out = String::new();
    let mut lit = String::new();
    let flush = |out: &mut String, lit: &mut String| {
        if !lit.is_empty() {
            out.push('"');
            out.push_str(&lit.replace('\\', "\\\\").replace('"', "\\\""));
            out.push('"');
            lit.clear();
        }
    };
    let mut it = fmt.chars();
    while let Some(c) = it.next() {
        if c != '%' {
            lit.push(c);
            continue;
        }
        let spec = match it.next() {
            Some('Y') => "YYYY",
            Some('m') => "MM",
            Some('d') => "DD",
            Some('H') => "HH24",
            Some('M') => "MI",
            Some('S') => "SS",
            Some('f') => "SS.MS",
            Some('j') => "DDD",
            Some('%') => {
                lit.push('%');
                continue;
            }
            Some(other) => return Err(format!("strftime %{other} is not supported on PostgreSQL")),
            None => return Err("strftime format ends with %".into()),
        };
        if lit.is_empty() && !out.is_empty() {
            // Keep adjacent specifiers apart (`SSSS` would be seconds since midnight).
            out.push_str("\"\"");
        }
        flush(&mut out, &mut lit);
        out.push_str(spec);
    }
    flush(&mut out, &mut lit);
    Ok(out)
}

fn split_modifier(s: &str) -> (&str, Option<&str>) {
    match s.split_once(':') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    }
}

fn macro_value(name: &str) -> Option<Json> {
    let now = Utc::now();
    let day_start = now.date_naive().and_hms_opt(0, 0, 0)?.and_utc();
    let fmt = |t: chrono::DateTime<Utc>| Json::String(crate::time::format(t));
    Some(match name {
        "now" => fmt(now),
        "yesterday" => fmt(now - Duration::days(1)),
        "tomorrow" => fmt(now + Duration::days(1)),
        "todayStart" => fmt(day_start),
        "todayEnd" => fmt(day_start + Duration::days(1) - Duration::milliseconds(1)),
        "monthStart" => fmt(day_start.with_day(1)?),
        "monthEnd" => {
            let first = day_start.with_day(1)?;
            let next = if first.month() == 12 {
                first.with_year(first.year() + 1)?.with_month(1)?
            } else {
                first.with_month(first.month() + 1)?
            };
            fmt(next - Duration::milliseconds(1))
        }
        "yearStart" => fmt(day_start.with_day(1)?.with_month(1)?),
        "yearEnd" => fmt(day_start
            .with_day(1)?
            .with_month(1)?
            .with_year(now.year() + 1)?
            - Duration::milliseconds(1)),
        "second" => Json::from(now.second()),
        "minute" => Json::from(now.minute()),
        "hour" => Json::from(now.hour()),
        "day" => Json::from(now.day()),
        "month" => Json::from(now.month()),
        "weekday" => Json::from(now.weekday().num_days_from_sunday()),
        "year" => Json::from(now.year()),
        _ => return None,
    })
}

/// Wraps a LIKE operand: `%v%` unless the value already has `%`. Exposed for the compiler's callers
/// that build literals.
pub fn like_pattern(v: &str) -> String {
    if v.contains('%') {
        // Used as given, but never ending in a lone escape character (Postgres rejects that).
        let trailing = v.chars().rev().take_while(|c| *c == '\\').count();
        if trailing % 2 == 1 {
            format!("{v}\\")
        } else {
            v.to_string()
        }
    } else {
        format!("%{}%", v.replace('\\', "\\\\").replace('_', "\\_"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::CollectionType;
    use proptest::prelude::*;

    struct TestSchema(Vec<Arc<Collection>>);
    impl Schema for TestSchema {
        fn collection(&self, k: &str) -> Option<Arc<Collection>> {
            self.0.iter().find(|c| c.id == k || c.name == k).cloned()
        }
    }

    fn schema() -> TestSchema {
        let mut cats = Collection::scaffold(CollectionType::Base, "cats");
        cats.id = "pbc_cats".into();
        cats.list_rule = Some(String::new());
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
        items.fields.extend([
            Field::new("title", FieldType::Text),
            Field::new("n", FieldType::Number),
            Field::new("ok", FieldType::Bool),
            Field::new("meta", FieldType::Json),
            tags,
            cat,
            many,
        ]);
        TestSchema(vec![Arc::new(cats), Arc::new(items)])
    }

    const IDENTS: &[&str] = &[
        "id",
        "title",
        "title:lower",
        "n",
        "ok",
        "meta.k",
        "meta.a.b",
        "tags",
        "tags:each",
        "tags:length",
        "cat",
        "cat.label",
        "cats.label",
        "cats:length",
        "items_via_cat.title",
        "@request.auth.id",
        "@request.body.x",
        "@request.body.x:isset",
        "@request.query.q",
        "@collection.cats.label",
        "@collection.cats:c2.id",
        "@now",
        "@todayStart",
        "@year",
        "unknown",
        "cat.nope",
        "geoDistance(meta.k, n, 1, 2)",
        "strftime('%Y-%m \\\"%H', title)",
        "geoDistance(tags, n, 1, 2)",
    ];
    const OPS: &[&str] = &[
        "=", "!=", ">", ">=", "<", "<=", "~", "!~", "?=", "?!=", "?>", "?>=", "?<", "?<=", "?~",
        "?!~",
    ];

    fn operand() -> impl Strategy<Value = String> {
        prop_oneof![
            proptest::sample::select(IDENTS).prop_map(str::to_string),
            "[a-z0-9 %_'\\\\]{0,8}"
                .prop_map(|s| format!("\"Zq{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))),
            (-1000i64..1000).prop_map(|n| n.to_string()),
            proptest::sample::select(&["true", "false", "null"][..]).prop_map(str::to_string),
        ]
    }

    fn expr() -> impl Strategy<Value = String> {
        let leaf = (operand(), proptest::sample::select(OPS), operand())
            .prop_map(|(a, o, b)| format!("{a} {o} {b}"));
        leaf.prop_recursive(3, 16, 3, |inner| {
            (
                inner.clone(),
                proptest::sample::select(&["&&", "||"][..]),
                inner,
            )
                .prop_map(|(a, j, b)| format!("({a}) {j} {b}"))
        })
    }

    fn placeholders(sql: &Sql) -> usize {
        sql.text.matches('?').count()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        /// For any well-formed filter over a real schema: compiling never panics, no literal value
        /// reaches the SQL text, and every value is a bound parameter.
        #[test]
        fn values_never_reach_sql_text(f in expr()) {
            let s = schema();
            let items = s.collection("items").unwrap();
            let auth = Some((items.clone(), serde_json::Map::new()));
            for trusted in [true, false] {
                for d in [Dialect::Sqlite, Dialect::Postgres] {
                    let req = RequestInfo { auth: if trusted { auth.clone() } else { None }, ..Default::default() };
                    let Ok(e) = super::super::parse(&f) else { continue };
                    let mut c = Compiler::new(d, &s, &req, trusted);
                    if let Ok(sql) = c.compile(&items, &e) {
                        prop_assert!(!sql.text.contains("Zq"), "literal in SQL text: {}", sql.text);
                        if d == Dialect::Sqlite {
                            prop_assert_eq!(placeholders(&sql), sql.params.len(), "{}", sql.text);
                        } else {
                            let n = sql.text.matches('$').count();
                            prop_assert_eq!(n, sql.params.len(), "{}", sql.text);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn strftime_formats_translate_for_postgres() {
        assert_eq!(
            strftime_to_char("%Y-%m-%d %H:%M:%f").unwrap(),
            "YYYY\"-\"MM\"-\"DD\" \"HH24\":\"MI\":\"SS.MS"
        );
        assert_eq!(strftime_to_char("at %H%%").unwrap(), "\"at \"HH24\"%\"");
        assert_eq!(strftime_to_char("%S%S").unwrap(), "SS\"\"SS");
        assert!(strftime_to_char("%s").is_err());
        assert!(strftime_to_char("%").is_err());
    }

    #[test]
    fn compiles_known_shapes() {
        let s = schema();
        let items = s.collection("items").unwrap();
        let req = RequestInfo::default();
        let mut c = Compiler::new(Dialect::Postgres, &s, &req, true);
        let e = super::super::parse("cat.label = 'x' && tags:each ?= 'a' && n > '3'").unwrap();
        let sql = c.compile(&items, &e).unwrap();
        assert!(
            sql.text.contains("jsonb_array_elements_text"),
            "{}",
            sql.text
        );
        assert_eq!(sql.params.len(), 3);
        assert!(
            matches!(sql.params[2], Value::Real(f) if f == 3.0),
            "numeric literal coerced for the number column"
        );
        let mut c = Compiler::new(Dialect::Sqlite, &s, &req, false);
        let e = super::super::parse("@request.auth.id != ''").unwrap();
        assert!(
            matches!(c.compile(&items, &e), Err(Error::Forbidden(_))),
            "guests may not filter by @request"
        );
    }
}
