//! The limits a query passes before anything runs: its operation is found, its fragments expanded,
//! and its depth, breadth (fields of one selection set, aliases counted) and cost measured against
//! `[graphql]`. Cost estimates the values the answer can hold: every field counts 1 per record it is
//! read for; a root list multiplies its items by `perPage` (default 30), a back-relation by its
//! `perPage` (default 30), a multiple relation by its `maxSelect`.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::parser::types::{
    ExecutableDocument, FragmentDefinition, OperationType, Selection, SelectionSet,
};
use async_graphql::parser::Positioned;
use async_graphql::{Name, Value};
use basalt_core::schema::{Collection, FieldType};
use basalt_service::{AppCtx, GraphqlOptions};
use serde_json::Value as Json;

use super::plan::{BACK_MAX_PER_PAGE, BACK_PER_PAGE};

/// The operation types, for transports that allow only some (GET: queries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Query,
    Mutation,
    Subscription,
}

impl Operation {
    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            Operation::Query => "query",
            Operation::Mutation => "mutation",
            Operation::Subscription => "subscription",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Operation::Query => "Query",
            Operation::Mutation => "Mutation",
            Operation::Subscription => "Subscription",
        }
    }
}

/// How deep introspection may nest (the standard introspection query takes 13 levels).
const INTROSPECTION_DEPTH: usize = 16;

/// A multiple relation without `maxSelect` counts as this many.
const UNBOUNDED_RELATION: u64 = 100;

/// What a selection set selects from.
#[derive(Clone)]
enum Ty {
    Root(Operation),
    Record(Arc<Collection>),
    Page(Arc<Collection>, u64),
    Auth(Arc<Collection>),
    Event(Arc<Collection>),
    Leaf,
}

struct Walk<'a> {
    ctx: &'a AppCtx,
    cfg: &'a GraphqlOptions,
    fragments: &'a HashMap<Name, Positioned<FragmentDefinition>>,
    variables: &'a Json,
}

/// A request refused before it ran: its operation's type when known, and why.
#[derive(Debug)]
pub struct Refused {
    pub op: Option<Operation>,
    pub message: String,
}

/// A request that passed the limits.
pub struct Checked {
    pub op: Operation,
    /// The operation's root fields: their position in the query and response key, to give resolver
    /// errors their `path` (async-graphql's dynamic schema reports only the location).
    pub roots: Vec<((usize, usize), String)>,
    /// No root field calls a rate-limited service operation (only `__schema`, `__type`,
    /// `__typename`), or it is a subscription (the realtime hub admits nothing itself): the
    /// transport admits the request by its path instead, as REST limits such routes.
    pub admit_by_path: bool,
}

/// Checks `r` against the limits; answers the operation, or the message of the refusal.
pub fn check(
    ctx: &AppCtx,
    doc: &ExecutableDocument,
    operation_name: Option<&str>,
    variables: &Json,
    cfg: &GraphqlOptions,
) -> Result<Checked, Refused> {
    let op = super::fast::operation(doc, operation_name).ok_or_else(|| Refused {
        op: None,
        message: match operation_name {
            Some(n) => format!("Unknown operation named \"{n}\"."),
            None => {
                "The document holds several operations: name one with operationName.".to_string()
            }
        },
    })?;
    let kind = match op.ty {
        OperationType::Query => Operation::Query,
        OperationType::Mutation => Operation::Mutation,
        OperationType::Subscription => Operation::Subscription,
    };
    let w = Walk {
        ctx,
        cfg,
        fragments: &doc.fragments,
        variables,
    };
    let refused = |message: String| Refused {
        op: Some(kind),
        message,
    };
    let cost = w
        .set(&op.selection_set.node, &Ty::Root(kind), 1, cfg.max_depth)
        .map_err(refused)?;
    if cost > cfg.max_cost {
        return Err(refused(format!(
            "The query is too expensive: its estimated cost {cost} is over the limit of {} (lower perPage, or select fewer nested lists).",
            cfg.max_cost
        )));
    }
    let roots = op
        .selection_set
        .node
        .items
        .iter()
        .filter_map(|s| match &s.node {
            Selection::Field(f) => Some((
                (f.pos.line, f.pos.column),
                f.node.response_key().node.to_string(),
            )),
            _ => None,
        })
        .collect();
    let mut root_fields = vec![];
    w.fields(&op.selection_set.node, &mut root_fields, 0)
        .map_err(refused)?;
    let admit_by_path = kind == Operation::Subscription
        || root_fields.iter().all(|f| f.name.node.starts_with("__"));
    Ok(Checked {
        op: kind,
        roots,
        admit_by_path,
    })
}

impl Walk<'_> {
    /// Fields of a selection set with fragments expanded (name, alias-or-name, arguments, children).
    fn fields<'s>(
        &'s self,
        set: &'s SelectionSet,
        out: &mut Vec<&'s async_graphql::parser::types::Field>,
        hops: usize,
    ) -> Result<(), String> {
        if hops > 64 {
            return Err("Fragments nest too deep.".into());
        }
        for s in &set.items {
            // Checked as fields are collected, so fragments spread within fragments cannot make the
            // expansion itself large (each leaf yields a field).
            if out.len() > self.cfg.max_breadth {
                return Err(self.too_broad());
            }
            match &s.node {
                Selection::Field(f) => out.push(&f.node),
                Selection::InlineFragment(i) => {
                    self.fields(&i.node.selection_set.node, out, hops + 1)?
                }
                Selection::FragmentSpread(sp) => {
                    let Some(def) = self.fragments.get(&sp.node.fragment_name.node) else {
                        return Err(format!(
                            "Unknown fragment \"{}\".",
                            sp.node.fragment_name.node
                        ));
                    };
                    self.fields(&def.node.selection_set.node, out, hops + 1)?
                }
            }
        }
        Ok(())
    }

    fn too_broad(&self) -> String {
        format!(
            "The query selects too many fields at once: at most {} in one selection set.",
            self.cfg.max_breadth
        )
    }

    /// The cost of a selection set read from `ty`, at nesting `depth`.
    fn set(&self, set: &SelectionSet, ty: &Ty, depth: usize, limit: usize) -> Result<u64, String> {
        if depth > limit {
            return Err(format!(
                "The query is nested too deep: at most {limit} levels."
            ));
        }
        let mut fields = vec![];
        self.fields(set, &mut fields, 0)?;
        if fields.len() > self.cfg.max_breadth {
            return Err(self.too_broad());
        }
        let mut cost: u64 = 0;
        for f in fields {
            // Introspection reads the schema, not records; its standard query nests 13 levels.
            if f.name.node.starts_with("__") {
                let below = if f.selection_set.node.items.is_empty() {
                    0
                } else {
                    self.set(
                        &f.selection_set.node,
                        &Ty::Leaf,
                        depth + 1,
                        limit.max(INTROSPECTION_DEPTH),
                    )?
                };
                cost = cost.saturating_add(1 + below);
                continue;
            }
            let args: Vec<(&str, Value)> = f
                .arguments
                .iter()
                .map(|(n, v)| {
                    let c = v
                        .node
                        .clone()
                        .into_const_with(|name: Name| -> Result<Value, ()> { Ok(self.var(&name)) })
                        .unwrap_or(Value::Null);
                    (n.node.as_str(), c)
                })
                .collect();
            let (child, mult) = self.child(ty, f.name.node.as_str(), &args);
            let below = if f.selection_set.node.items.is_empty() {
                0
            } else {
                self.set(&f.selection_set.node, &child, depth + 1, limit)?
            };
            cost = cost.saturating_add(1u64.saturating_add(mult.saturating_mul(below)));
        }
        Ok(cost)
    }

    /// A variable's value (`null` when not given).
    fn var(&self, n: &Name) -> Value {
        self.variables
            .get(n.as_str())
            .and_then(|j| Value::from_json(j.clone()).ok())
            .unwrap_or(Value::Null)
    }

    fn coll(&self, name: &str) -> Option<Arc<Collection>> {
        self.ctx.collection(name).filter(|c| c.name == name)
    }

    /// What field `name` of `ty` selects from, and how many times per parent.
    fn child(&self, ty: &Ty, name: &str, args: &[(&str, Value)]) -> (Ty, u64) {
        let int = |k: &str| {
            args.iter()
                .find(|(n, _)| *n == k)
                .and_then(|(_, v)| match v {
                    Value::Number(n) => n.as_i64(),
                    _ => None,
                })
        };
        let rec = |c: Option<Arc<Collection>>| c.map_or(Ty::Leaf, Ty::Record);
        match ty {
            Ty::Root(Operation::Query) => {
                if let Some(c) = self.coll(name) {
                    let per = int("perPage").filter(|n| *n >= 1).unwrap_or(30).min(1000);
                    return (Ty::Page(c, per as u64), 1);
                }
                (
                    rec(name.strip_suffix("_by_id").and_then(|n| self.coll(n))),
                    1,
                )
            }
            Ty::Root(Operation::Mutation) => {
                for p in ["create_", "update_"] {
                    if let Some(c) = name.strip_prefix(p).and_then(|n| self.coll(n)) {
                        return (Ty::Record(c), 1);
                    }
                }
                for s in ["_auth_with_password", "_auth_refresh", "_auth_with_otp"] {
                    if let Some(c) = name.strip_suffix(s).and_then(|n| self.coll(n)) {
                        return (Ty::Auth(c), 1);
                    }
                }
                (Ty::Leaf, 1)
            }
            Ty::Root(Operation::Subscription) => (
                name.strip_suffix("_events")
                    .and_then(|n| self.coll(n))
                    .map_or(Ty::Leaf, Ty::Event),
                1,
            ),
            Ty::Page(c, per) if name == "items" => (Ty::Record(c.clone()), *per),
            Ty::Auth(c) | Ty::Event(c) if name == "record" => (Ty::Record(c.clone()), 1),
            Ty::Record(c) => {
                if let Some(f) = c.field(name).filter(|f| f.ty() == FieldType::Relation) {
                    let target = self.ctx.collection(&f.collection_id);
                    let mult = if !f.is_multiple() {
                        1
                    } else if f.max_select > 0 {
                        f.max_select as u64
                    } else {
                        UNBOUNDED_RELATION
                    };
                    return (rec(target), mult);
                }
                if let Some((other, _)) = name.split_once("_via_") {
                    let per = int("perPage")
                        .unwrap_or(BACK_PER_PAGE)
                        .clamp(1, BACK_MAX_PER_PAGE);
                    return (rec(self.coll(other)), per as u64);
                }
                (Ty::Leaf, 1)
            }
            _ => (Ty::Leaf, 1),
        }
    }
}
