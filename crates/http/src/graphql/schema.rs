//! The GraphQL schema of a collection snapshot. For a collection `posts` (names kept as they are):
//!
//! - `Query.posts(filter, sort, page, perPage, skipTotal): posts_list!` and `Query.posts_by_id(id): posts`;
//! - `type posts`: one field per visible field (hidden and password fields never appear), relations as
//!   the target object or a list of them, back-relations as `<other>_via_<field>(filter, sort,
//!   perPage)` lists;
//! - `Mutation.create_posts(input)`, `update_posts(id, input)` (with modifier inputs `<f>_add`,
//!   `<f>_subtract`, `<f>_append`, `<f>_prepend`, `<f>_remove`), `delete_posts(id)`; for auth
//!   collections the sign-in mutations `<c>_auth_with_password`, `<c>_auth_refresh`,
//!   `<c>_request_otp`, `<c>_auth_with_otp` (MFA completes with their `mfaId` argument);
//! - `Subscription.posts_events(filter, id): posts_event` (`action`, `record`).
//!
//! A collection whose name is not a GraphQL name, or whose generated names collide with another's,
//! is left out (logged); so is `_totps`, which no API serves.

use std::collections::HashSet;
use std::sync::Arc;

use async_graphql::dynamic::{
    Field, FieldFuture, FieldValue, InputObject, InputValue, Object, ResolverContext, Scalar,
    Schema, SchemaError, Subscription, SubscriptionField, SubscriptionFieldFuture, TypeRef,
};
use async_graphql::Value;
use basalt_core::schema::{Collection, CollectionType, Field as CField, FieldType};
use basalt_service::auth::flows::{self, SignIn};
use basalt_service::auth::mfa;
use basalt_service::limits::Action;
use basalt_service::state::Collections;
use basalt_service::{crud, AppCtx, GraphqlOptions, Req};
use serde_json::{Map, Value as Json};

use super::plan::{self, Link, Node, PageNode};
use super::{gql_error, Uploads};

/// What a multipart request puts where a file goes in the variables (followed by the part's name).
pub const UPLOAD_MARKER: &str = "\u{1}upload:";

/// Whether `s` is a GraphQL name (and not a reserved `__` one).
pub fn valid_name(s: &str) -> bool {
    let mut ch = s.chars();
    matches!(ch.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && ch.all(|c| c == '_' || c.is_ascii_alphanumeric())
        && !s.starts_with("__")
}

const RESERVED: [&str; 11] = [
    "Query",
    "Mutation",
    "Subscription",
    "JSON",
    "DateTime",
    "Upload",
    "String",
    "Int",
    "Float",
    "Boolean",
    "ID",
];

/// The names a collection's types and root fields take.
fn names_of(c: &Collection) -> Vec<String> {
    let n = &c.name;
    let mut v = vec![
        n.clone(),
        format!("{n}_list"),
        format!("{n}_event"),
        format!("{n}_by_id"),
        format!("{n}_events"),
        format!("{n}_create_input"),
        format!("{n}_update_input"),
        format!("create_{n}"),
        format!("update_{n}"),
        format!("delete_{n}"),
    ];
    if c.is_auth() {
        for s in [
            "_auth",
            "_otp",
            "_auth_with_password",
            "_auth_refresh",
            "_request_otp",
            "_auth_with_otp",
        ] {
            v.push(format!("{n}{s}"));
        }
    }
    v
}

/// The collections the schema exposes.
pub fn exposed(cols: &Collections) -> Vec<Arc<Collection>> {
    let mut taken: HashSet<String> = RESERVED.iter().map(|s| s.to_string()).collect();
    let mut out = vec![];
    for c in &cols.list {
        if c.name == "_totps" || !valid_name(&c.name) {
            continue;
        }
        let names = names_of(c);
        if names.iter().any(|n| taken.contains(n)) {
            tracing::warn!(collection = %c.name, "left out of the GraphQL schema: its type or field names collide with another collection's");
            continue;
        }
        taken.extend(names);
        out.push(c.clone());
    }
    out
}

/// A field the object type shows: not hidden, not a password, a GraphQL name.
fn shown(f: &CField) -> bool {
    !f.hidden && f.ty() != FieldType::Password && f.name != "tokenKey" && valid_name(&f.name)
}

/// The GraphQL output type of a non-relation field.
fn scalar_type(f: &CField) -> TypeRef {
    let pii = f.pii.is_some();
    if f.name == "id" {
        return TypeRef::named_nn(TypeRef::ID);
    }
    match f.ty() {
        FieldType::Number if pii => TypeRef::named("JSON"),
        FieldType::Number => TypeRef::named(TypeRef::FLOAT),
        FieldType::Bool => TypeRef::named(TypeRef::BOOLEAN),
        FieldType::Date | FieldType::Autodate if !pii => TypeRef::named("DateTime"),
        FieldType::Json | FieldType::GeoPoint => TypeRef::named("JSON"),
        FieldType::Select | FieldType::File if f.is_multiple() => {
            TypeRef::named_nn_list(TypeRef::STRING)
        }
        _ => TypeRef::named(TypeRef::STRING),
    }
}

/// The input type of a field in create/update inputs (`None`: not writable through the API).
fn input_type(f: &CField, cols: &[Arc<Collection>]) -> Option<TypeRef> {
    if f.name == "id" {
        return Some(TypeRef::named(TypeRef::ID));
    }
    Some(match f.ty() {
        FieldType::Autodate => return None,
        FieldType::Number => TypeRef::named(TypeRef::FLOAT),
        FieldType::Bool => TypeRef::named(TypeRef::BOOLEAN),
        FieldType::Date => TypeRef::named("DateTime"),
        FieldType::Json | FieldType::GeoPoint => TypeRef::named("JSON"),
        FieldType::Relation => {
            // Only relations to exposed collections (their ids are plain strings either way).
            if !cols.iter().any(|c| c.id == f.collection_id) {
                return None;
            }
            if f.is_multiple() {
                TypeRef::named_nn_list(TypeRef::ID)
            } else {
                TypeRef::named(TypeRef::ID)
            }
        }
        FieldType::File if f.is_multiple() => TypeRef::named_nn_list("Upload"),
        FieldType::File => TypeRef::named("Upload"),
        FieldType::Select if f.is_multiple() => TypeRef::named_nn_list(TypeRef::STRING),
        _ => TypeRef::named(TypeRef::STRING),
    })
}

/// Builds the schema of the exposed collections.
pub fn build(cols: &Collections, cfg: &GraphqlOptions) -> Result<Schema, SchemaError> {
    let list = exposed(cols);
    let mut query = Object::new("Query");
    let mut mutation = Object::new("Mutation");
    let mut subscription = Subscription::new("Subscription");
    let mut objects: Vec<Object> = vec![];
    let mut inputs: Vec<InputObject> = vec![];
    for c in &list {
        objects.push(record_type(c, &list));
        objects.push(list_type(c));
        objects.push(
            Object::new(format!("{}_event", c.name))
                .description(format!("A committed change of a `{}` record.", c.name))
                .field(Field::new(
                    "action",
                    TypeRef::named_nn(TypeRef::STRING),
                    |rc| {
                        let v = rc
                            .parent_value
                            .downcast_ref::<plan::EventNode>()
                            .map(|e| Value::from(e.action.clone()));
                        FieldFuture::from_value(v)
                    },
                ))
                .field(Field::new("record", TypeRef::named(&c.name), |rc| {
                    let v = rc
                        .parent_value
                        .downcast_ref::<plan::EventNode>()
                        .and_then(|e| e.record.clone())
                        .map(FieldValue::owned_any);
                    FieldFuture::Value(v)
                })),
        );
        query = query.field(root_list(c)).field(root_by_id(c));
        subscription = subscription.field(events_field(c));
        if c.kind != CollectionType::View {
            let (ci, ui) = write_inputs(c, &list);
            inputs.push(ci);
            mutation = mutation.field(write_field(c, false)).field(delete_field(c));
            // A collection with nothing to update (only `id` and autodates) has no update: an
            // input object needs a field.
            if let Some(ui) = ui {
                inputs.push(ui);
                mutation = mutation.field(write_field(c, true));
            }
        }
        if c.is_auth() {
            objects.push(auth_type(c));
            objects.push(Object::new(format!("{}_otp", c.name)).field(Field::new(
                "otpId",
                TypeRef::named_nn(TypeRef::STRING),
                |rc| {
                    let v = rc
                        .parent_value
                        .downcast_ref::<Json>()
                        .and_then(|j| j.get("otpId"))
                        .and_then(Json::as_str)
                        .map(|s| Value::from(s.to_string()));
                    FieldFuture::from_value(v)
                },
            )));
            for f in auth_fields(c) {
                mutation = mutation.field(f);
            }
        }
    }
    let mut b = Schema::build("Query", Some("Mutation"), Some("Subscription"))
        .register(
            Scalar::new("JSON").description("Any JSON value (json fields, masked pii values)."),
        )
        .register(Scalar::new("DateTime").description(
            "A date as the REST API writes it: `2024-01-02 03:04:05.678Z`, or \"\" when empty.",
        ))
        .register(
            Scalar::new("Upload")
                .description("A file of a multipart request (the GraphQL multipart request spec)."),
        )
        .extension(super::fast::FastQueries)
        // Depth, breadth and cost are checked before execution (`cost::check`), introspection
        // exempt; this bounds the parser's recursion only.
        .limit_recursive_depth(64);
    if !cfg.introspection {
        b = b.disable_introspection();
    }
    for o in objects {
        b = b.register(o);
    }
    for i in inputs {
        b = b.register(i);
    }
    b.register(query)
        .register(mutation)
        .register(subscription)
        .finish()
}

/// The record object type.
fn record_type(c: &Arc<Collection>, list: &[Arc<Collection>]) -> Object {
    let mut o = Object::new(c.name.clone()).description(format!("A record of `{}`.", c.name));
    for f in c.fields.iter().filter(|f| shown(f)) {
        if f.ty() == FieldType::Relation {
            let Some(target) = list.iter().find(|t| t.id == f.collection_id) else {
                continue;
            };
            let ty = if f.is_multiple() {
                TypeRef::named_nn_list_nn(target.name.clone())
            } else {
                TypeRef::named(target.name.clone())
            };
            o = o.field(Field::new(
                f.name.clone(),
                ty,
                link_resolver(f.is_multiple()),
            ));
            continue;
        }
        let name = f.name.clone();
        o = o.field(Field::new(f.name.clone(), scalar_type(f), move |rc| {
            let v = rc
                .parent_value
                .downcast_ref::<Node>()
                .and_then(|n| n.rec.get(&name))
                .and_then(|j| Value::from_json(j.clone()).ok())
                .filter(|v| *v != Value::Null);
            FieldFuture::from_value(v)
        }));
    }
    for k in ["collectionId", "collectionName"] {
        o = o.field(Field::new(
            k,
            TypeRef::named_nn(TypeRef::STRING),
            move |rc| {
                let v = rc
                    .parent_value
                    .downcast_ref::<Node>()
                    .and_then(|n| n.rec.get(k))
                    .and_then(Json::as_str)
                    .map(|s| Value::from(s.to_string()));
                FieldFuture::from_value(v)
            },
        ));
    }
    // Back-relations: relation fields of exposed collections pointing here.
    for other in list {
        for rf in other
            .fields
            .iter()
            .filter(|f| f.ty() == FieldType::Relation && f.collection_id == c.id && shown(f))
        {
            let name = format!("{}_via_{}", other.name, rf.name);
            if c.field(&name).is_some() {
                continue;
            }
            o = o.field(
                Field::new(
                    name,
                    TypeRef::named_nn_list_nn(other.name.clone()),
                    link_resolver(true),
                )
                .description(format!(
                    "`{}` records whose `{}` points at this record, under `{}`'s listRule (at most `perPage` per record, default 30).",
                    other.name, rf.name, other.name
                ))
                .argument(InputValue::new("filter", TypeRef::named(TypeRef::STRING)))
                .argument(InputValue::new("sort", TypeRef::named(TypeRef::STRING)))
                .argument(InputValue::new("perPage", TypeRef::named(TypeRef::INT))),
            );
        }
    }
    o
}

/// A relation or back-relation: what the planner loaded under this field's response key.
fn link_resolver(
    many: bool,
) -> impl for<'a> Fn(ResolverContext<'a>) -> FieldFuture<'a> + Send + Sync {
    move |rc| {
        let key = rc
            .ctx
            .field()
            .alias()
            .unwrap_or(rc.ctx.field().name())
            .to_string();
        let link = rc
            .parent_value
            .downcast_ref::<Node>()
            .and_then(|n| n.links.get(&key).cloned());
        let v = match link {
            Some(Link::Many(nodes)) => Some(FieldValue::list(
                nodes.into_iter().map(FieldValue::owned_any),
            )),
            Some(Link::One(n)) => n.map(FieldValue::owned_any),
            None if many => Some(FieldValue::list(Vec::<FieldValue>::new())),
            None => None,
        };
        FieldFuture::Value(v)
    }
}

/// `<c>_list`: the protocol's list envelope.
fn list_type(c: &Arc<Collection>) -> Object {
    let int = |k: &'static str| {
        Field::new(k, TypeRef::named_nn(TypeRef::INT), move |rc| {
            let v = rc.parent_value.downcast_ref::<PageNode>().map(|p| {
                Value::from(match k {
                    "page" => p.page,
                    "perPage" => p.per_page,
                    "totalItems" => p.total_items,
                    _ => p.total_pages,
                })
            });
            FieldFuture::from_value(v)
        })
    };
    Object::new(format!("{}_list", c.name))
        .description("One page of records; `totalItems`/`totalPages` are -1 with `skipTotal`.")
        .field(int("page"))
        .field(int("perPage"))
        .field(int("totalItems"))
        .field(int("totalPages"))
        .field(Field::new(
            "items",
            TypeRef::named_nn_list_nn(c.name.clone()),
            |rc| {
                let v = rc
                    .parent_value
                    .downcast_ref::<PageNode>()
                    .map(|p| FieldValue::list(p.items.iter().cloned().map(FieldValue::owned_any)));
                FieldFuture::Value(v)
            },
        ))
}

/// The application and the caller of this request, with the method REST would use for the same
/// operation (what `@request.method` shows rules): GET for reads and subscriptions, POST for creates
/// and sign-ins, PATCH for updates, DELETE for deletes.
fn env<'a>(rc: &ResolverContext<'a>, method: &str) -> async_graphql::Result<(&'a AppCtx, Req)> {
    let mut req = rc.ctx.data::<Req>()?.clone();
    req.method = method.to_string();
    Ok((rc.ctx.data::<AppCtx>()?, req))
}

fn arg_str(rc: &ResolverContext<'_>, k: &str) -> Option<String> {
    rc.args
        .get(k)
        .filter(|v| !v.is_null())
        .and_then(|v| v.string().ok().map(str::to_string))
}

fn root_list(c: &Arc<Collection>) -> Field {
    let name = c.name.clone();
    Field::new(
        c.name.clone(),
        TypeRef::named(format!("{}_list", c.name)),
        move |rc| {
            let name = name.clone();
            FieldFuture::new(async move {
                let (ctx, mut r) = env(&rc, "GET")?;
                for k in ["filter", "sort"] {
                    if let Some(v) = arg_str(&rc, k) {
                        r.query.insert(k.into(), Json::String(v));
                    }
                }
                for k in ["page", "perPage"] {
                    if let Some(v) = rc.args.get(k).and_then(|v| v.i64().ok()) {
                        r.query.insert(k.into(), Json::String(v.to_string()));
                    }
                }
                // The count runs only when the answer holds it.
                let counted = rc
                    .ctx
                    .field()
                    .selection_set()
                    .any(|f| matches!(f.name(), "totalItems" | "totalPages"));
                let skip = rc.args.get("skipTotal").and_then(|v| v.boolean().ok());
                if skip == Some(true) || !counted {
                    r.query
                        .insert("skipTotal".into(), Json::String("true".into()));
                }
                let page = crud::list_objects(ctx, &r, &name)
                    .await
                    .map_err(gql_error)?;
                let coll = ctx.collection(&name);
                let field = rc.ctx.field();
                let sels: Vec<_> = field
                    .selection_set()
                    .filter(|f| f.name() == "items")
                    .map(plan::Below::Ctx)
                    .collect();
                let items = match coll {
                    Some(coll) => plan::load(ctx, &r, &coll, page.items, &sels)
                        .await
                        .map_err(gql_error)?,
                    None => vec![],
                };
                Ok(Some(FieldValue::owned_any(PageNode {
                    page: page.page,
                    per_page: page.per_page,
                    total_items: page.total_items,
                    total_pages: page.total_pages,
                    items,
                })))
            })
        },
    )
    .description(format!(
        "`{}` records under its listRule, filtered and sorted with the filter language.",
        c.name
    ))
    .argument(InputValue::new("filter", TypeRef::named(TypeRef::STRING)))
    .argument(InputValue::new("sort", TypeRef::named(TypeRef::STRING)))
    .argument(InputValue::new("page", TypeRef::named(TypeRef::INT)))
    .argument(InputValue::new("perPage", TypeRef::named(TypeRef::INT)))
    .argument(InputValue::new(
        "skipTotal",
        TypeRef::named(TypeRef::BOOLEAN),
    ))
}

/// One record planned from this field's selection (`None` stays `null`).
async fn one_node(
    rc: &ResolverContext<'_>,
    ctx: &AppCtx,
    req: &Req,
    name: &str,
    rec: Option<Map<String, Json>>,
) -> async_graphql::Result<Option<Node>> {
    let (Some(rec), Some(coll)) = (rec, ctx.collection(name)) else {
        return Ok(None);
    };
    let field = rc.ctx.field();
    let nodes = plan::load(ctx, req, &coll, vec![rec], &[plan::Below::Ctx(field)])
        .await
        .map_err(gql_error)?;
    Ok(nodes.into_iter().next())
}

fn root_by_id(c: &Arc<Collection>) -> Field {
    let name = c.name.clone();
    Field::new(
        format!("{}_by_id", c.name),
        TypeRef::named(c.name.clone()),
        move |rc| {
            let name = name.clone();
            FieldFuture::new(async move {
                let (ctx, req) = env(&rc, "GET")?;
                let req = &req;
                let id = rc.args.try_get("id")?.string()?.to_string();
                let rec = crud::view_object(ctx, req, &name, &id)
                    .await
                    .map_err(gql_error)?;
                Ok(one_node(&rc, ctx, req, &name, rec)
                    .await?
                    .map(FieldValue::owned_any))
            })
        },
    )
    .description(format!(
        "One `{}` record under its viewRule; null when not visible.",
        c.name
    ))
    .argument(InputValue::new("id", TypeRef::named_nn(TypeRef::ID)))
}

/// Create and update inputs. Modifier inputs map to the protocol's keys: `<f>_add` → `f+` and
/// `<f>_subtract` → `f-` (numbers); `<f>_append` → `f+`, `<f>_prepend` → `+f`, `<f>_remove` → `f-`
/// (multiple relations, selects and files).
fn write_inputs(
    c: &Arc<Collection>,
    list: &[Arc<Collection>],
) -> (InputObject, Option<InputObject>) {
    let mut ci = InputObject::new(format!("{}_create_input", c.name));
    let mut ui = InputObject::new(format!("{}_update_input", c.name));
    let mut updatable = 0;
    for f in c
        .fields
        .iter()
        .filter(|f| valid_name(&f.name) && f.name != "tokenKey")
    {
        if f.ty() == FieldType::Password {
            // Auth collections: `password` and `passwordConfirm` (and `oldPassword` on update).
            ci = ci
                .field(InputValue::new(
                    f.name.clone(),
                    TypeRef::named(TypeRef::STRING),
                ))
                .field(InputValue::new(
                    format!("{}Confirm", f.name),
                    TypeRef::named(TypeRef::STRING),
                ));
            ui = ui
                .field(InputValue::new(
                    f.name.clone(),
                    TypeRef::named(TypeRef::STRING),
                ))
                .field(InputValue::new(
                    format!("{}Confirm", f.name),
                    TypeRef::named(TypeRef::STRING),
                ))
                .field(InputValue::new(
                    "oldPassword",
                    TypeRef::named(TypeRef::STRING),
                ));
            updatable += 1;
            continue;
        }
        let Some(ty) = input_type(f, list) else {
            continue;
        };
        ci = ci.field(InputValue::new(f.name.clone(), ty.clone()));
        if f.name != "id" {
            ui = ui.field(InputValue::new(f.name.clone(), ty.clone()));
            updatable += 1;
        }
        for (suffix, _) in modifiers(f) {
            let n = format!("{}{suffix}", f.name);
            if c.field(&n).is_some() {
                continue;
            }
            let mty = if f.ty() == FieldType::Number {
                TypeRef::named(TypeRef::FLOAT)
            } else {
                ty.clone()
            };
            ui = ui.field(InputValue::new(n, mty));
            updatable += 1;
        }
    }
    (ci, (updatable > 0).then_some(ui))
}

/// The modifier inputs of a field: (suffix, how the protocol's key is spelled from the name).
fn modifiers(f: &CField) -> &'static [(&'static str, &'static str)] {
    match f.ty() {
        FieldType::Number => &[("_add", "{}+"), ("_subtract", "{}-")],
        FieldType::Relation | FieldType::Select | FieldType::File if f.is_multiple() => {
            &[("_append", "{}+"), ("_prepend", "+{}"), ("_remove", "{}-")]
        }
        _ => &[],
    }
}

/// The input object as a REST body (modifier inputs renamed to the protocol's keys) and its files,
/// each upload named as the multipart part REST would receive (`avatar`, `docs+`, `+docs`).
fn input_body(
    rc: &ResolverContext<'_>,
    coll: &Collection,
) -> async_graphql::Result<(Json, Vec<basalt_service::files::upload::Upload>)> {
    let input = rc.args.try_get("input")?.object()?;
    let uploads = rc.ctx.data::<Uploads>()?;
    let mut body = Map::new();
    let mut files = vec![];
    for (k, v) in input.iter() {
        let k = k.as_str();
        let mut key = k.to_string();
        let mut field = coll.field(k);
        if field.is_none() {
            for f in &coll.fields {
                for (suffix, spell) in modifiers(f) {
                    if k.strip_suffix(suffix) == Some(f.name.as_str()) {
                        key = spell.replace("{}", &f.name);
                        field = Some(f);
                    }
                }
            }
        }
        let j = v.as_value().clone().into_json()?;
        if field.is_some_and(|f| f.ty() == FieldType::File) {
            let mut keep = vec![];
            let vals = match j {
                Json::Array(a) => a,
                Json::Null => vec![],
                other => vec![other],
            };
            for x in vals {
                match x.as_str() {
                    Some(s) if s.starts_with(UPLOAD_MARKER) => {
                        let mut g = uploads.0.lock().unwrap_or_else(|p| p.into_inner());
                        let Some(mut up) = g.remove(s) else {
                            return Err(async_graphql::Error::new(
                                "A file is used twice, or its part is missing.",
                            ));
                        };
                        up.part = key.clone();
                        files.push(up);
                    }
                    _ => keep.push(x),
                }
            }
            // Names kept (update) stay in the body; uploads join them, as with REST multipart.
            if !keep.is_empty() || key.ends_with('-') {
                body.insert(key, Json::Array(keep));
            } else if files.iter().all(|u| u.part != key) {
                body.insert(key, Json::Null);
            }
            continue;
        }
        body.insert(key, j);
    }
    Ok((Json::Object(body), files))
}

/// `create_<c>(input)` (`update == false`) or `update_<c>(id, input)`: admitted, then written
/// through `crud` as REST writes.
fn write_field(c: &Arc<Collection>, update: bool) -> Field {
    let name = c.name.clone();
    let (verb, does, method, rule) = if update {
        ("update", "Updates", "PATCH", "updateRule")
    } else {
        ("create", "Creates", "POST", "createRule")
    };
    let f = Field::new(
        format!("{verb}_{}", c.name),
        TypeRef::named(c.name.clone()),
        move |rc| {
            let name = name.clone();
            FieldFuture::new(async move {
                let (ctx, req) = env(&rc, method)?;
                let req = &req;
                let action = if update {
                    Action::Update
                } else {
                    Action::Create
                };
                let w = crud::admit_write(ctx, req, &name, action)
                    .await
                    .map_err(gql_error)?;
                let (body, files) = input_body(&rc, w.collection())?;
                let rec = if update {
                    let id = rc.args.try_get("id")?.string()?.to_string();
                    crud::update(ctx, req, w, &id, body, files).await
                } else {
                    crud::create(ctx, req, w, body, files).await
                }
                .map_err(gql_error)?;
                Ok(one_node(&rc, ctx, req, &name, rec.as_object().cloned())
                    .await?
                    .map(FieldValue::owned_any))
            })
        },
    )
    .description(format!("{does} a `{}` record under its {rule}.", c.name));
    let f = if update {
        f.argument(InputValue::new("id", TypeRef::named_nn(TypeRef::ID)))
    } else {
        f
    };
    f.argument(InputValue::new(
        "input",
        TypeRef::named_nn(format!("{}_{verb}_input", c.name)),
    ))
}

fn delete_field(c: &Arc<Collection>) -> Field {
    let name = c.name.clone();
    Field::new(
        format!("delete_{}", c.name),
        TypeRef::named(TypeRef::BOOLEAN),
        move |rc| {
            let name = name.clone();
            FieldFuture::new(async move {
                let (ctx, req) = env(&rc, "DELETE")?;
                let req = &req;
                let id = rc.args.try_get("id")?.string()?.to_string();
                crud::delete(ctx, req, &name, &id)
                    .await
                    .map_err(gql_error)?;
                Ok(Some(Value::from(true)))
            })
        },
    )
    .description(format!(
        "Deletes a `{}` record under its deleteRule.",
        c.name
    ))
    .argument(InputValue::new("id", TypeRef::named_nn(TypeRef::ID)))
}

/// `<c>_auth`: a sign-in's outcome: `token` and `record` (and `meta` for OAuth2), or `mfaId` when a
/// second factor must follow.
fn auth_type(c: &Arc<Collection>) -> Object {
    let text = |k: &'static str| {
        Field::new(k, TypeRef::named(TypeRef::STRING), move |rc| {
            let v = rc
                .parent_value
                .downcast_ref::<plan::AuthNode>()
                .and_then(|a| match k {
                    "token" => a.token.clone(),
                    _ => a.mfa_id.clone(),
                });
            FieldFuture::from_value(v.map(Value::from))
        })
    };
    Object::new(format!("{}_auth", c.name))
        .description(
            "A sign-in: `token` and `record`, or `mfaId` when another method must complete MFA.",
        )
        .field(text("token"))
        .field(text("mfaId"))
        .field(Field::new("record", TypeRef::named(c.name.clone()), |rc| {
            let v = rc
                .parent_value
                .downcast_ref::<plan::AuthNode>()
                .and_then(|a| a.record.clone())
                .map(FieldValue::owned_any);
            FieldFuture::Value(v)
        }))
        .field(Field::new("meta", TypeRef::named("JSON"), |rc| {
            let v = rc
                .parent_value
                .downcast_ref::<plan::AuthNode>()
                .and_then(|a| a.meta.clone())
                .and_then(|m| Value::from_json(m).ok());
            FieldFuture::from_value(v)
        }))
}

/// A sign-in outcome with its record planned from the `record` selection.
async fn signin_node(
    rc: &ResolverContext<'_>,
    ctx: &AppCtx,
    req: &Req,
    name: &str,
    r: SignIn,
) -> async_graphql::Result<plan::AuthNode> {
    match r {
        SignIn::MfaRequired { mfa_id } => Ok(plan::AuthNode {
            mfa_id: Some(mfa_id),
            ..Default::default()
        }),
        SignIn::Token(body) => token_node(rc, ctx, req, name, body).await,
    }
}

async fn token_node(
    rc: &ResolverContext<'_>,
    ctx: &AppCtx,
    req: &Req,
    name: &str,
    body: Json,
) -> async_graphql::Result<plan::AuthNode> {
    let token = body.get("token").and_then(Json::as_str).map(str::to_string);
    let rec = body.get("record").and_then(Json::as_object).cloned();
    let mut record = None;
    if let (Some(rec), Some(coll)) = (rec, ctx.collection(name)) {
        // The signed-in caller reads its own record's relations.
        let mut who = req.clone();
        if let Some(t) = &token {
            if let Ok(a) = basalt_service::auth::authenticate(ctx, Some(t), req.ip).await {
                who.auth = a;
            }
        }
        let sels: Vec<_> = rc
            .ctx
            .field()
            .selection_set()
            .filter(|f| f.name() == "record")
            .map(plan::Below::Ctx)
            .collect();
        record = plan::load(ctx, &who, &coll, vec![rec], &sels)
            .await
            .map_err(gql_error)?
            .into_iter()
            .next();
    }
    Ok(plan::AuthNode {
        token,
        record,
        meta: body.get("meta").cloned(),
        mfa_id: None,
    })
}

fn body_of(rc: &ResolverContext<'_>, keys: &[&str]) -> Json {
    let mut m = Map::new();
    for k in keys {
        if let Some(v) = arg_str(rc, k) {
            m.insert((*k).to_string(), Json::String(v));
        }
    }
    Json::Object(m)
}

/// The sign-in mutations of an auth collection, each through the service's flow (rate limits,
/// lockout, superuser IPs, MFA) as the REST route.
fn auth_fields(c: &Arc<Collection>) -> Vec<Field> {
    let auth = TypeRef::named_nn(format!("{}_auth", c.name));
    let s = |k: &str| InputValue::new(k, TypeRef::named_nn(TypeRef::STRING));
    let o = |k: &str| InputValue::new(k, TypeRef::named(TypeRef::STRING));
    let name = c.name.clone();
    let password = Field::new(
        format!("{}_auth_with_password", c.name),
        auth.clone(),
        move |rc| {
            let name = name.clone();
            FieldFuture::new(async move {
                let (ctx, req) = env(&rc, "POST")?;
                let req = &req;
                let body = body_of(&rc, &["identity", "password", "identityField", "mfaId"]);
                let r = flows::auth_with_password(ctx, req, &name, &body)
                    .await
                    .map_err(gql_error)?;
                Ok(Some(FieldValue::owned_any(
                    signin_node(&rc, ctx, req, &name, r).await?,
                )))
            })
        },
    )
    .argument(s("identity"))
    .argument(s("password"))
    .argument(o("identityField"))
    .argument(o("mfaId"));
    let name = c.name.clone();
    let refresh = Field::new(
        format!("{}_auth_refresh", c.name),
        auth.clone(),
        move |rc| {
            let name = name.clone();
            FieldFuture::new(async move {
                let (ctx, req) = env(&rc, "POST")?;
                let req = &req;
                let body = flows::auth_refresh(ctx, req, &name)
                    .await
                    .map_err(gql_error)?;
                Ok(Some(FieldValue::owned_any(
                    token_node(&rc, ctx, req, &name, body).await?,
                )))
            })
        },
    );
    let name = c.name.clone();
    let request_otp = Field::new(
        format!("{}_request_otp", c.name),
        TypeRef::named_nn(format!("{}_otp", c.name)),
        move |rc| {
            let name = name.clone();
            FieldFuture::new(async move {
                let (ctx, req) = env(&rc, "POST")?;
                let req = &req;
                let body = body_of(&rc, &["email"]);
                let r = mfa::request_otp(ctx, req, &name, &body)
                    .await
                    .map_err(gql_error)?;
                Ok(Some(FieldValue::owned_any(r)))
            })
        },
    )
    .argument(s("email"));
    let name = c.name.clone();
    let otp = Field::new(format!("{}_auth_with_otp", c.name), auth, move |rc| {
        let name = name.clone();
        FieldFuture::new(async move {
            let (ctx, req) = env(&rc, "POST")?;
            let req = &req;
            let body = body_of(&rc, &["otpId", "password", "mfaId"]);
            let r = mfa::auth_with_otp(ctx, req, &name, &body)
                .await
                .map_err(gql_error)?;
            Ok(Some(FieldValue::owned_any(
                signin_node(&rc, ctx, req, &name, r).await?,
            )))
        })
    })
    .argument(s("otpId"))
    .argument(s("password"))
    .argument(o("mfaId"));
    vec![password, refresh, request_otp, otp]
}

/// `<c>_events(filter, id)`: committed changes, through the realtime hub (the same listRule/viewRule
/// and filter checks against each event's record as a realtime subscription `c/*` or `c/<id>`).
fn events_field(c: &Arc<Collection>) -> SubscriptionField {
    let name = c.name.clone();
    SubscriptionField::new(
        format!("{}_events", c.name),
        TypeRef::named_nn(format!("{}_event", c.name)),
        move |rc| {
            let name = name.clone();
            SubscriptionFieldFuture::new(async move {
                let (ctx, req) = env(&rc, "GET")?;
                let filter = arg_str(&rc, "filter");
                let id = arg_str(&rc, "id");
                let stream = plan::events(rc.ctx, ctx, req, name, filter, id).map_err(gql_error)?;
                Ok(stream)
            })
        },
    )
    .argument(InputValue::new("filter", TypeRef::named(TypeRef::STRING)))
    .argument(InputValue::new("id", TypeRef::named(TypeRef::ID)))
}
