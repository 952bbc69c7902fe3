//! Query planning: a root field's records are loaded, then each relation and back-relation its
//! selection set names is loaded for all of them at once, level by level (one statement per
//! relation per level, whatever the number of records), through the service (`crud::related`,
//! `crud::back_related`) so the related collection's rules apply. Resolvers below a root only read
//! what was loaded ([`Node`]).

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::Arc;

use async_graphql::dynamic::FieldValue;
use async_graphql::parser::types::SelectionSet;
use async_graphql::{Context, SelectionField};
use basalt_core::schema::{Collection, FieldType};
use basalt_service::error::{ServiceError, ServiceResult};
use basalt_service::{crud, AppCtx, Req};
use futures_util::Stream;
use serde_json::{Map, Value as Json};

/// Back-relation lists without `perPage`: at most this many per record.
pub const BACK_PER_PAGE: i64 = 30;
/// And never more than this.
pub const BACK_MAX_PER_PAGE: i64 = 1000;

/// A record as the caller sees it, with the relations its selection asked for, by response key.
#[derive(Clone, Default)]
pub struct Node {
    pub rec: Arc<Map<String, Json>>,
    pub links: Arc<HashMap<String, Link>>,
}

#[derive(Clone)]
pub enum Link {
    One(Option<Node>),
    Many(Vec<Node>),
}

/// A root list's page.
pub struct PageNode {
    pub page: i64,
    pub per_page: i64,
    pub total_items: i64,
    pub total_pages: i64,
    pub items: Vec<Node>,
}

/// A sign-in's outcome.
#[derive(Default)]
pub struct AuthNode {
    pub token: Option<String>,
    pub mfa_id: Option<String>,
    pub record: Option<Node>,
    pub meta: Option<Json>,
}

/// A subscription's event.
pub struct EventNode {
    pub action: String,
    pub record: Option<Node>,
}

type Fut<'a, T> = Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// The relation ids a record holds in field `f` (one or many).
fn ids_in(rec: &Map<String, Json>, f: &str) -> Vec<String> {
    match rec.get(f) {
        Some(Json::String(s)) if !s.is_empty() => vec![s.clone()],
        Some(Json::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().filter(|s| !s.is_empty()).map(str::to_string))
            .collect(),
        _ => vec![],
    }
}

/// What is selected below a field: an executing field's selection (async-graphql's context), or a
/// selection set of the parsed document (the query executor, `fast`).
#[derive(Clone, Copy)]
pub enum Below<'q> {
    Ctx(SelectionField<'q>),
    Ast(&'q super::fast::Doc<'q>, &'q SelectionSet),
}

/// One selected field.
pub struct Sel<'q> {
    /// Alias or name: the key in the answer.
    pub key: String,
    pub name: String,
    pub args: Vec<(String, async_graphql::Value)>,
    pub below: Below<'q>,
    /// Where the field is in the query (line, column).
    pub pos: (usize, usize),
    /// Whether it selects fields of its own.
    pub has_below: bool,
}

impl<'q> Below<'q> {
    /// The fields selected here, fragments expanded and `@skip`/`@include` applied.
    pub fn fields(&self) -> ServiceResult<Vec<Sel<'q>>> {
        match *self {
            Below::Ctx(sf) => sf
                .selection_set()
                .map(|f| {
                    let args = f
                        .arguments()
                        .map_err(bad_args)?
                        .into_iter()
                        .map(|(n, v)| (n.to_string(), v))
                        .collect();
                    Ok(Sel {
                        key: f.alias().unwrap_or(f.name()).to_string(),
                        name: f.name().to_string(),
                        args,
                        below: Below::Ctx(f),
                        pos: (0, 0),
                        has_below: f.selection_set().next().is_some(),
                    })
                })
                .collect(),
            Below::Ast(doc, set) => {
                let mut out = vec![];
                doc.fields(set, &mut out, 0)?;
                Ok(out)
            }
        }
    }
}

fn arg_of<'a>(
    args: &'a [(String, async_graphql::Value)],
    k: &str,
) -> Option<&'a async_graphql::Value> {
    args.iter().find(|(n, _)| n == k).map(|(_, v)| v)
}

fn bad_args(e: async_graphql::ServerError) -> ServiceError {
    basalt_service::error::bad(&e.message)
}

/// Fields of merged selections grouped by response key, in the order keys first appear (a key
/// selected twice, e.g. in two fragments, merges its selections).
pub fn grouped<'q>(sels: &[Below<'q>]) -> ServiceResult<Vec<(String, Vec<Sel<'q>>)>> {
    let mut groups: Vec<(String, Vec<Sel<'q>>)> = vec![];
    for s in sels {
        for f in s.fields()? {
            match groups.iter_mut().find(|(k, _)| *k == f.key) {
                Some((_, v)) => v.push(f),
                None => groups.push((f.key.clone(), vec![f])),
            }
        }
    }
    Ok(groups)
}

/// Loads the relations `sels` (selections of this collection's object type, merged) name for
/// `recs`, recursively. Answers one node per record, in order.
pub fn load<'s, 'q: 's>(
    ctx: &'s AppCtx,
    req: &'s Req,
    coll: &'s Arc<Collection>,
    recs: Vec<Map<String, Json>>,
    sels: &'s [Below<'q>],
) -> Fut<'s, ServiceResult<Vec<Node>>> {
    Box::pin(async move {
        let groups = grouped(sels)?;
        let mut links: Vec<HashMap<String, Link>> = vec![HashMap::new(); recs.len()];
        let su = req.is_superuser();
        for (key, fields) in &groups {
            // Relations are loaded even when every field below them is skipped (`{}` objects).
            let name = fields[0].name.as_str();
            let below: Vec<Below<'q>> = fields.iter().map(|f| f.below).collect();
            if let Some(rf) = coll
                .field(name)
                .filter(|f| f.ty() == FieldType::Relation && (su || !f.hidden))
            {
                let Some(target) = ctx.collection(&rf.collection_id) else {
                    continue;
                };
                let per: Vec<Vec<String>> = recs.iter().map(|r| ids_in(r, name)).collect();
                let mut seen = HashSet::new();
                let all: Vec<String> = per
                    .iter()
                    .flatten()
                    .filter(|id| seen.insert(id.as_str()))
                    .cloned()
                    .collect();
                let fetched = if all.is_empty() {
                    vec![]
                } else {
                    crud::related(ctx, req, &target, &all).await?
                };
                let nodes = load(ctx, req, &target, fetched, &below).await?;
                let by_id: HashMap<&str, &Node> = nodes
                    .iter()
                    .map(|n| (n.rec.get("id").and_then(Json::as_str).unwrap_or(""), n))
                    .collect();
                for (i, ids) in per.iter().enumerate() {
                    let found = ids
                        .iter()
                        .filter_map(|id| by_id.get(id.as_str()).map(|n| (*n).clone()));
                    let link = if rf.is_multiple() {
                        Link::Many(found.collect())
                    } else {
                        Link::One(found.into_iter().next())
                    };
                    links[i].insert(key.clone(), link);
                }
            } else if let Some((other, via)) = name.split_once("_via_") {
                let Some(target) = ctx.collection(other).filter(|t| t.name == other) else {
                    continue;
                };
                let args = &fields[0].args;
                let text = |k: &str| match arg_of(args, k) {
                    Some(async_graphql::Value::String(s)) => s.clone(),
                    _ => String::new(),
                };
                let per_page = match arg_of(args, "perPage") {
                    Some(async_graphql::Value::Number(n)) => n.as_i64().unwrap_or(BACK_PER_PAGE),
                    _ => BACK_PER_PAGE,
                };
                let per_page = per_page.clamp(1, BACK_MAX_PER_PAGE);
                let parents: Vec<String> = recs
                    .iter()
                    .filter_map(|r| r.get("id").and_then(Json::as_str).map(str::to_string))
                    .collect();
                let (filter, sort) = (text("filter"), text("sort"));
                let q = crud::BackQuery {
                    filter: &filter,
                    sort: &sort,
                    per_parent: per_page,
                };
                let rows = crud::back_related(ctx, req, &target, via, &parents, &q).await?;
                let (owners, maps): (Vec<String>, Vec<Map<String, Json>>) =
                    rows.into_iter().unzip();
                let nodes = load(ctx, req, &target, maps, &below).await?;
                let mut by_parent: HashMap<&str, Vec<Node>> = HashMap::new();
                for (o, n) in owners.iter().zip(nodes) {
                    by_parent.entry(o.as_str()).or_default().push(n);
                }
                for (i, r) in recs.iter().enumerate() {
                    let id = r.get("id").and_then(Json::as_str).unwrap_or("");
                    let list = by_parent.get(id).cloned().unwrap_or_default();
                    links[i].insert(key.clone(), Link::Many(list));
                }
            }
        }
        Ok(recs
            .into_iter()
            .zip(links)
            .map(|(rec, l)| Node {
                rec: Arc::new(rec),
                links: Arc::new(l),
            })
            .collect())
    })
}

/// The stream of a `<c>_events` subscription: a realtime hub client subscribed to `c/*` (or `c/<id>`)
/// with the filter, so the fan-out checks rules and filter for it as for any realtime client; each
/// event's record is then planned from the `record` selection.
pub fn events<'a>(
    gctx: &'a Context<'a>,
    ctx: &'a AppCtx,
    req: Req,
    name: String,
    filter: Option<String>,
    id: Option<String>,
) -> ServiceResult<impl Stream<Item = async_graphql::Result<FieldValue<'a>>> + Send + 'a> {
    let coll = ctx.collection(&name).ok_or_else(|| {
        ServiceError(basalt_core::Error::NotFound(
            "Missing collection context.".into(),
        ))
    })?;
    let (reg, rx) = ctx
        .realtime
        .connect(basalt_service::hub::Transport::WebSocket);
    let mut topic = format!("{}/{}", coll.name, id.as_deref().unwrap_or("*"));
    if let Some(f) = filter.filter(|f| !f.trim().is_empty()) {
        let opts = serde_json::json!({"query": {"filter": f}}).to_string();
        topic.push_str("?options=");
        topic.push_str(
            &percent_encoding::utf8_percent_encode(&opts, percent_encoding::NON_ALPHANUMERIC)
                .to_string(),
        );
    }
    basalt_service::realtime::subscribe(ctx, &req, &reg.id, vec![topic])?;
    let field = gctx.field();
    let state = (reg, rx, coll, field, req);
    Ok(futures_util::stream::unfold(
        state,
        move |(reg, mut rx, coll, field, req)| async move {
            let frame = rx.recv().await?;
            let payload: Json = serde_json::from_slice(&frame.data).unwrap_or(Json::Null);
            let action = payload
                .get("action")
                .and_then(Json::as_str)
                .unwrap_or("")
                .to_string();
            let rec = payload.get("record").and_then(Json::as_object).cloned();
            let sels: Vec<Below<'a>> = field
                .selection_set()
                .filter(|f| f.name() == "record")
                .map(Below::Ctx)
                .collect();
            let item = match rec {
                Some(rec) => match load(ctx, &req, &coll, vec![rec], &sels).await {
                    Ok(n) => Ok(FieldValue::owned_any(EventNode {
                        action,
                        record: n.into_iter().next(),
                    })),
                    Err(e) => Err(super::gql_error(e)),
                },
                None => Ok(FieldValue::owned_any(EventNode {
                    action,
                    record: None,
                })),
            };
            Some((item, (reg, rx, coll, field, req)))
        },
    ))
}
