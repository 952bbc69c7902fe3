//! The query executor. A query (not a mutation or subscription, and without introspection) is parsed
//! and validated by async-graphql as any operation, then executed here instead of by its resolver
//! engine: the root fields call the same service functions as the resolvers (`crud::list_objects`,
//! `crud::view_object`), relations load through [`plan::load`], and the answer is written from the
//! loaded records straight to JSON bytes, with no per-field futures or intermediate value tree
//! (async-graphql's engine costs about 0.3 µs per field and value, more than the SQL of a page).
//! Mutations, subscriptions and introspection run in async-graphql with the resolvers of `schema`;
//! both produce the same answer for the same records (the tests read through both).

use std::sync::{Arc, Mutex};

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextExecute};
use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationDefinition, OperationType, Selection,
    SelectionSet,
};
use async_graphql::{Name, Response, Value};
use basalt_service::error::ServiceError;
use basalt_service::{crud, AppCtx, Req};
use serde_json::{Map, Value as Json};

use super::plan::{self, Below, Link, Node, Sel};

/// A query this executor runs: its document, variables (defaults applied) and where the answer goes.
pub struct FastQuery {
    pub doc: Arc<ExecutableDocument>,
    pub operation: Option<String>,
    pub variables: Map<String, Json>,
    pub out: Answer,
}

/// Where the executor leaves its answer: the bytes, and whether they hold errors.
pub type Answer = Arc<Mutex<Option<(Vec<u8>, bool)>>>;

/// A document with its variables, as the planner walks it.
pub struct Doc<'q> {
    pub doc: &'q ExecutableDocument,
    pub variables: &'q Map<String, Json>,
}

/// The operation a request names (validation made sure it exists).
pub fn operation<'d>(
    doc: &'d ExecutableDocument,
    name: Option<&str>,
) -> Option<&'d OperationDefinition> {
    match (&doc.operations, name) {
        (DocumentOperations::Single(op), _) => Some(&op.node),
        (DocumentOperations::Multiple(ops), Some(n)) => ops.get(n).map(|o| &o.node),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => {
            ops.values().next().map(|o| &o.node)
        }
        _ => None,
    }
}

/// Whether the executor runs this operation: a query whose root selects no introspection.
pub fn runs(doc: &ExecutableDocument, name: Option<&str>) -> bool {
    let Some(op) = operation(doc, name) else {
        return false;
    };
    if op.ty != OperationType::Query {
        return false;
    }
    fn introspects(doc: &ExecutableDocument, set: &SelectionSet, hops: usize) -> bool {
        hops > 64
            || set.items.iter().any(|s| match &s.node {
                Selection::Field(f) => matches!(f.node.name.node.as_str(), "__schema" | "__type"),
                Selection::InlineFragment(i) => {
                    introspects(doc, &i.node.selection_set.node, hops + 1)
                }
                Selection::FragmentSpread(sp) => doc
                    .fragments
                    .get(&sp.node.fragment_name.node)
                    .is_none_or(|d| introspects(doc, &d.node.selection_set.node, hops + 1)),
            })
    }
    !introspects(doc, &op.selection_set.node, 0)
}

/// The variables with the operation's defaults for those not given.
pub fn variables(op: &OperationDefinition, given: &Json) -> Map<String, Json> {
    let mut m = given.as_object().cloned().unwrap_or_default();
    for v in &op.variable_definitions {
        let name = v.node.name.node.to_string();
        if !m.contains_key(&name) {
            if let Some(d) = &v.node.default_value {
                if let Ok(j) = d.node.clone().into_json() {
                    m.insert(name, j);
                }
            }
        }
    }
    m
}

impl Doc<'_> {
    fn var(&self, n: &Name) -> Value {
        self.variables
            .get(n.as_str())
            .and_then(|j| Value::from_json(j.clone()).ok())
            .unwrap_or(Value::Null)
    }

    /// `@skip(if:)` / `@include(if:)`.
    fn included(
        &self,
        dirs: &[async_graphql::Positioned<async_graphql::parser::types::Directive>],
    ) -> bool {
        for d in dirs {
            let cond = d
                .node
                .get_argument("if")
                .map(|v| {
                    v.node
                        .clone()
                        .into_const_with(|n: Name| -> Result<Value, ()> { Ok(self.var(&n)) })
                        .unwrap_or(Value::Null)
                })
                .map(|v| v == Value::Boolean(true))
                .unwrap_or(false);
            match d.node.name.node.as_str() {
                "skip" if cond => return false,
                "include" if !cond => return false,
                _ => {}
            }
        }
        true
    }

    /// The fields of a selection set, fragments expanded (their type conditions hold: each level has
    /// one object type) and `@skip`/`@include` applied.
    pub fn fields<'q>(
        &'q self,
        set: &'q SelectionSet,
        out: &mut Vec<Sel<'q>>,
        hops: usize,
    ) -> basalt_service::error::ServiceResult<()> {
        if hops > 64 {
            return Err(basalt_service::error::bad("Fragments nest too deep."));
        }
        for s in &set.items {
            match &s.node {
                Selection::Field(f) => {
                    if !self.included(&f.node.directives) {
                        continue;
                    }
                    let args = f
                        .node
                        .arguments
                        .iter()
                        .map(|(n, v)| {
                            let c = v
                                .node
                                .clone()
                                .into_const_with(|n: Name| -> Result<Value, ()> {
                                    Ok(self.var(&n))
                                })
                                .unwrap_or(Value::Null);
                            (n.node.to_string(), c)
                        })
                        .collect();
                    out.push(Sel {
                        key: f.node.response_key().node.to_string(),
                        name: f.node.name.node.to_string(),
                        args,
                        below: Below::Ast(self, &f.node.selection_set.node),
                        pos: (f.pos.line, f.pos.column),
                        has_below: !f.node.selection_set.node.items.is_empty(),
                    });
                }
                Selection::InlineFragment(i) => {
                    if self.included(&i.node.directives) {
                        self.fields(&i.node.selection_set.node, out, hops + 1)?;
                    }
                }
                Selection::FragmentSpread(sp) => {
                    if !self.included(&sp.node.directives) {
                        continue;
                    }
                    if let Some(d) = self.doc.fragments.get(&sp.node.fragment_name.node) {
                        self.fields(&d.node.selection_set.node, out, hops + 1)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Runs the query in the executor when the request carries a [`FastQuery`]; anything else goes on
/// to async-graphql's engine.
pub struct FastQueries;

impl ExtensionFactory for FastQueries {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(FastQueries)
    }
}

#[async_trait::async_trait]
impl Extension for FastQueries {
    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        if let (Some(fq), Some(app), Some(req)) = (
            ctx.data_opt::<FastQuery>(),
            ctx.data_opt::<AppCtx>(),
            ctx.data_opt::<Req>(),
        ) {
            let answer = run(app, req, fq).await;
            *fq.out.lock().unwrap_or_else(|p| p.into_inner()) = Some(answer);
            return Response::new(Value::Null);
        }
        next.run(ctx, operation_name).await
    }
}

/// The answer's bytes and its errors as the executor writes them.
struct Out {
    b: Vec<u8>,
    errors: Vec<Json>,
}

impl Out {
    fn key(&mut self, k: &str) {
        serde_json::to_writer(&mut self.b, k).ok();
        self.b.push(b':');
    }
    fn json(&mut self, v: &Json) {
        serde_json::to_writer(&mut self.b, v).ok();
    }
    fn error(&mut self, e: ServiceError, f: &Sel<'_>) {
        let mut j = super::error_json(e);
        if let Some(o) = j.as_object_mut() {
            o.insert(
                "locations".into(),
                serde_json::json!([{"line": f.pos.0, "column": f.pos.1}]),
            );
            o.insert("path".into(), serde_json::json!([f.key]));
        }
        self.errors.push(j);
    }
}

async fn run(ctx: &AppCtx, req: &Req, fq: &FastQuery) -> (Vec<u8>, bool) {
    let doc = Doc {
        doc: &fq.doc,
        variables: &fq.variables,
    };
    let mut out = Out {
        b: Vec::with_capacity(4096),
        errors: vec![],
    };
    out.b.extend_from_slice(b"{\"data\":");
    let Some(op) = operation(&fq.doc, fq.operation.as_deref()) else {
        out.b.extend_from_slice(b"null}");
        return (out.b, false);
    };
    let mut req = req.clone();
    req.method = "GET".into();
    match plan::grouped(&[Below::Ast(&doc, &op.selection_set.node)]) {
        Ok(groups) => {
            out.b.push(b'{');
            for (i, (key, fields)) in groups.iter().enumerate() {
                if i > 0 {
                    out.b.push(b',');
                }
                out.key(key);
                root(ctx, &req, fields, &mut out).await;
            }
            out.b.push(b'}');
        }
        Err(e) => {
            out.b.extend_from_slice(b"null");
            out.errors.push(super::error_json(e));
        }
    }
    let errors = !out.errors.is_empty();
    if errors {
        out.b.extend_from_slice(b",\"errors\":");
        let errs = Json::Array(std::mem::take(&mut out.errors));
        out.json(&errs);
    }
    out.b.push(b'}');
    (out.b, errors)
}

/// The value of one root field (its selections merged).
async fn root(ctx: &AppCtx, req: &Req, fields: &[Sel<'_>], out: &mut Out) {
    let start = out.b.len();
    let fail = |out: &mut Out, e: ServiceError, f: &Sel<'_>| fail(out, e, f, start);
    let f = &fields[0];
    let name = f.name.as_str();
    if name == "__typename" {
        out.b.extend_from_slice(b"\"Query\"");
        return;
    }
    let below: Vec<Below<'_>> = fields.iter().map(|f| f.below).collect();
    if let Some(coll) = ctx.collection(name).filter(|c| c.name == name) {
        let subs = match plan::grouped(&below) {
            Ok(s) => s,
            Err(e) => return fail(out, e, f),
        };
        let mut r = req.clone();
        for (k, v) in &f.args {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Boolean(b) => b.to_string(),
                _ => continue,
            };
            r.query.insert(k.clone(), Json::String(text));
        }
        let counted = subs
            .iter()
            .any(|(_, fs)| matches!(fs[0].name.as_str(), "totalItems" | "totalPages"));
        if !counted {
            r.query
                .insert("skipTotal".into(), Json::String("true".into()));
        }
        let page = match crud::list_objects(ctx, &r, name).await {
            Ok(p) => p,
            Err(e) => return fail(out, e, f),
        };
        let items: Vec<Below<'_>> = subs
            .iter()
            .filter(|(_, fs)| fs[0].name == "items")
            .flat_map(|(_, fs)| fs.iter().map(|f| f.below))
            .collect();
        let nodes = match plan::load(ctx, &r, &coll, page.items, &items).await {
            Ok(n) => n,
            Err(e) => return fail(out, e, f),
        };
        out.b.push(b'{');
        for (i, (k, fs)) in subs.iter().enumerate() {
            if i > 0 {
                out.b.push(b',');
            }
            out.key(k);
            let n = match fs[0].name.as_str() {
                "page" => page.page,
                "perPage" => page.per_page,
                "totalItems" => page.total_items,
                "totalPages" => page.total_pages,
                "__typename" => {
                    out.json(&Json::String(format!("{name}_list")));
                    continue;
                }
                _ => {
                    let b: Vec<Below<'_>> = fs.iter().map(|f| f.below).collect();
                    out.b.push(b'[');
                    for (j, node) in nodes.iter().enumerate() {
                        if j > 0 {
                            out.b.push(b',');
                        }
                        if let Err(e) = write_node(out, node, &b) {
                            return fail(out, e, f);
                        }
                    }
                    out.b.push(b']');
                    continue;
                }
            };
            out.b.extend_from_slice(n.to_string().as_bytes());
        }
        out.b.push(b'}');
        return;
    }
    if let Some(c) = name.strip_suffix("_by_id") {
        let id = match f.args.iter().find(|(k, _)| k == "id").map(|(_, v)| v) {
            Some(Value::String(s)) => s.clone(),
            _ => String::new(),
        };
        let rec = match crud::view_object(ctx, req, c, &id).await {
            Ok(r) => r,
            Err(e) => return fail(out, e, f),
        };
        let (Some(rec), Some(coll)) = (rec, ctx.collection(c)) else {
            out.b.extend_from_slice(b"null");
            return;
        };
        match plan::load(ctx, req, &coll, vec![rec], &below).await {
            Ok(nodes) => match nodes.first() {
                Some(n) => {
                    if let Err(e) = write_node(out, n, &below) {
                        fail(out, e, f);
                    }
                }
                None => out.b.extend_from_slice(b"null"),
            },
            Err(e) => fail(out, e, f),
        }
        return;
    }
    out.b.extend_from_slice(b"null");
}

/// A root field that failed: `null` (what was written of its value dropped) and its error.
fn fail(out: &mut Out, e: ServiceError, f: &Sel<'_>, start: usize) {
    out.b.truncate(start);
    out.b.extend_from_slice(b"null");
    out.error(e, f);
}

/// One record object with the selected fields.
fn write_node(
    out: &mut Out,
    n: &Node,
    sels: &[Below<'_>],
) -> basalt_service::error::ServiceResult<()> {
    out.b.push(b'{');
    for (i, (k, fs)) in plan::grouped(sels)?.iter().enumerate() {
        if i > 0 {
            out.b.push(b',');
        }
        out.key(k);
        let f = &fs[0];
        if f.name == "__typename" {
            let t = n.rec.get("collectionName").cloned().unwrap_or(Json::Null);
            out.json(&t);
            continue;
        }
        if f.has_below {
            let b: Vec<Below<'_>> = fs.iter().map(|f| f.below).collect();
            match n.links.get(k) {
                Some(Link::One(Some(m))) => write_node(out, m, &b)?,
                Some(Link::Many(list)) => {
                    out.b.push(b'[');
                    for (j, m) in list.iter().enumerate() {
                        if j > 0 {
                            out.b.push(b',');
                        }
                        write_node(out, m, &b)?;
                    }
                    out.b.push(b']');
                }
                // A relation whose collection went away since: an empty list or null, as the
                // resolvers answer.
                _ if f.name.contains("_via_") => out.b.extend_from_slice(b"[]"),
                _ => out.b.extend_from_slice(b"null"),
            }
            continue;
        }
        match n.rec.get(&f.name) {
            Some(v) => out.json(v),
            None => out.b.extend_from_slice(b"null"),
        }
    }
    out.b.push(b'}');
    Ok(())
}
