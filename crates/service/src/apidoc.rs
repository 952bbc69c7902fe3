//! The API described from the live collections: an OpenAPI 3.1 document (`GET /api/openapi.json`)
//! and TypeScript types for the official `pocketbase` SDK (`basalt typegen ts`, `GET
//! /api/typegen/ts`). Both are pure functions of the collection snapshot, so every node answers the
//! same document for the same schema, and the CLI needs no server.
//!
//! What the document promises is what the record paths do: it is checked by schemathesis against a
//! running server (`scripts/schemathesis.sh`), so a shape written here that the server does not
//! keep is a failing test, not a doc bug.

use basalt_core::schema::{Collection, CollectionType, Field, FieldType};
use serde_json::{json, Map, Value as Json};
use std::sync::Arc;

use crate::error::ServiceResult;
use crate::request::Req;
use crate::AppCtx;

/// `GET /api/openapi.json` (superusers: the document names every collection and field, as
/// `GET /api/collections` does).
pub fn api_openapi(ctx: &AppCtx, req: &Req) -> ServiceResult<Json> {
    req.require_superuser()?;
    Ok(openapi(&ctx.collections().list))
}

/// `GET /api/typegen/ts` (superusers).
pub fn api_typescript(ctx: &AppCtx, req: &Req) -> ServiceResult<String> {
    req.require_superuser()?;
    Ok(typescript(&ctx.collections().list))
}

fn schema_ref(name: &str) -> Json {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// A collection's name as a TypeScript/OpenAPI identifier stem: `blog_posts` → `BlogPosts`,
/// `_superusers` → `Superusers`.
pub fn type_name(collection: &str) -> String {
    let mut out = String::new();
    let mut upper = true;
    for ch in collection.chars() {
        if ch.is_ascii_alphanumeric() {
            if upper {
                out.extend(ch.to_uppercase());
            } else {
                out.push(ch);
            }
            upper = false;
        } else {
            upper = true;
        }
    }
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, 'C');
    }
    out
}

/// Unique stems for a set of collections (two names that differ only by `_` get a numeric suffix).
fn stems(colls: &[Arc<Collection>]) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    colls
        .iter()
        .map(|c| {
            let base = type_name(&c.name);
            let mut name = base.clone();
            let mut n = 2;
            while seen.contains(&name) {
                name = format!("{base}{n}");
                n += 1;
            }
            seen.push(name.clone());
            name
        })
        .collect()
}

fn is_writable(c: &Collection, f: &Field) -> bool {
    !(f.ty() == FieldType::Autodate || (c.is_auth() && f.name == "tokenKey"))
}

/// The JSON Schema of a field's value as records carry it (`fields` may leave it out, so never
/// required). PII fields answer a value or its mask (`null`, a masked string or a hash), so they
/// are described as any value.
fn value_schema(f: &Field) -> Json {
    let mut s = if f.pii.is_some() {
        json!({})
    } else {
        match f.ty() {
            FieldType::Number => json!({"type": "number"}),
            FieldType::Bool => json!({"type": "boolean"}),
            FieldType::Json => json!({}),
            FieldType::GeoPoint => json!({
                "type": "object",
                "properties": {"lon": {"type": "number"}, "lat": {"type": "number"}},
                "required": ["lon", "lat"]
            }),
            FieldType::Select | FieldType::Relation | FieldType::File if f.is_multiple() => {
                json!({"type": "array", "items": {"type": "string"}})
            }
            _ => json!({"type": "string"}),
        }
    };
    if !f.help.is_empty() {
        s["description"] = json!(f.help);
    }
    s
}

/// The schema of a value a client sends for a field (create and update bodies).
fn input_schema(f: &Field, multipart: bool) -> Json {
    let num = |v: &Json| v.as_f64().filter(|x| *x > 0.0);
    match f.ty() {
        FieldType::Text | FieldType::Editor | FieldType::Password => {
            let mut s = json!({"type": "string"});
            if f.ty() != FieldType::Editor {
                if let Some(m) = num(&f.max) {
                    s["maxLength"] = json!(m as i64);
                }
                if let Some(m) = num(&f.min) {
                    s["minLength"] = json!(m as i64);
                }
                if !f.pattern.is_empty() {
                    s["pattern"] = json!(f.pattern);
                }
            }
            s
        }
        FieldType::Email => json!({"type": "string", "format": "email"}),
        FieldType::Url => json!({"type": "string", "format": "uri"}),
        FieldType::Number => {
            let mut s = json!({"type": if f.only_int { "integer" } else { "number" }});
            if let Some(m) = f.min_num() {
                s["minimum"] = json!(m);
            }
            if let Some(m) = f.max_num() {
                s["maximum"] = json!(m);
            }
            s
        }
        FieldType::Bool => json!({"type": "boolean"}),
        FieldType::Date => json!({
            "type": "string",
            "description": "A date: `2006-01-02 15:04:05.000Z`, RFC 3339, or \"\" for none."
        }),
        FieldType::Select => {
            let one = json!({"type": "string", "enum": f.values});
            if f.is_multiple() {
                json!({"type": "array", "items": one, "maxItems": f.max_select, "uniqueItems": true})
            } else {
                one
            }
        }
        FieldType::Relation => {
            let one = json!({"type": "string", "description": "A record id."});
            if f.is_multiple() {
                json!({"type": "array", "items": one, "maxItems": f.max_select})
            } else {
                one
            }
        }
        FieldType::File => {
            let one = if multipart {
                json!({"type": "string", "format": "binary"})
            } else {
                json!({"type": "string", "description": "A stored file name (to keep or remove)."})
            };
            if f.is_multiple() {
                json!({"type": "array", "items": one, "maxItems": f.max_select})
            } else {
                one
            }
        }
        FieldType::Json => json!({}),
        FieldType::GeoPoint => json!({
            "type": "object",
            "properties": {"lon": {"type": "number"}, "lat": {"type": "number"}}
        }),
        FieldType::Autodate => json!({"type": "string"}),
    }
}

fn record_schema(c: &Collection, stems: &[(String, String)]) -> Json {
    let mut props = Map::new();
    props.insert(
        "collectionId".into(),
        json!({"type": "string", "const": c.id}),
    );
    props.insert(
        "collectionName".into(),
        json!({"type": "string", "const": c.name}),
    );
    for f in &c.fields {
        if f.ty() == FieldType::Password || (c.is_auth() && f.name == "tokenKey") {
            continue;
        }
        props.insert(f.name.clone(), value_schema(f));
    }
    // Expanded relations: each key a related record (or a list of them).
    let mut expand = Map::new();
    for f in c.fields.iter().filter(|f| f.ty() == FieldType::Relation) {
        let target = stems
            .iter()
            .find(|(id, _)| *id == f.collection_id)
            .map(|(_, s)| schema_ref(&format!("{s}Record")))
            .unwrap_or_else(|| json!({"type": "object"}));
        let v = if f.is_multiple() {
            json!({"type": "array", "items": target})
        } else {
            target
        };
        expand.insert(f.name.clone(), v);
    }
    props.insert(
        "expand".into(),
        json!({
            "type": "object",
            "description": "Related records asked for with `expand` (back-relations as `<collection>_via_<field>`).",
            "properties": expand,
        }),
    );
    json!({
        "type": "object",
        "description": format!("A record of `{}` as the API returns it. `fields` picks which properties appear, so none is required.", c.name),
        "properties": props,
    })
}

fn body_schema(c: &Collection, create: bool, multipart: bool) -> Json {
    let mut props = Map::new();
    let mut required = vec![];
    for f in c.fields.iter().filter(|f| is_writable(c, f)) {
        if f.ty() == FieldType::File && !multipart && create {
            continue;
        }
        props.insert(f.name.clone(), input_schema(f, multipart));
        let generated = f.name == "id" || !f.autogenerate_pattern.is_empty();
        if create && f.required && !generated && f.ty() != FieldType::File {
            required.push(f.name.clone());
        }
        if !create {
            // Modifiers (`n+`, `tags-`, `+tags`) of numbers and of multi-valued fields.
            let many = f.is_multiple();
            if f.ty() == FieldType::Number {
                props.insert(format!("{}+", f.name), json!({"type": "number"}));
                props.insert(format!("{}-", f.name), json!({"type": "number"}));
            } else if many {
                let item = input_schema(f, multipart)["items"].clone();
                let v = json!({"oneOf": [item.clone(), {"type": "array", "items": item}]});
                props.insert(format!("{}+", f.name), v.clone());
                props.insert(format!("+{}", f.name), v.clone());
                props.insert(format!("{}-", f.name), v);
            }
        }
    }
    if c.is_auth() {
        let pw = props
            .get("password")
            .cloned()
            .unwrap_or(json!({"type": "string"}));
        props.insert("passwordConfirm".into(), pw);
        if create {
            required.push("passwordConfirm".into());
        } else {
            props.insert("oldPassword".into(), json!({"type": "string"}));
        }
    }
    let mut s = json!({"type": "object", "properties": props});
    if !required.is_empty() {
        s["required"] = json!(required);
    }
    s
}

fn error_response(desc: &str) -> Json {
    json!({"description": desc, "content": {"application/json": {"schema": schema_ref("Error")}}})
}

fn json_response(desc: &str, schema: Json) -> Json {
    json!({"description": desc, "content": {"application/json": {"schema": schema}}})
}

/// The error answers every operation can give, besides its own: a bad request, a refused caller
/// and the rate limiter.
fn with_errors(mut responses: Map<String, Json>, codes: &[&str]) -> Json {
    for code in codes {
        let desc = match *code {
            "400" => "The request is invalid (the `data` object names each field's error).",
            "401" => "The request requires a valid auth token.",
            "403" => "The caller is not allowed (a rule or a superuser-only action).",
            "404" => "Not found (or not visible to the caller).",
            "429" => "Too many requests (a rate limit rule).",
            _ => "Error.",
        };
        responses.insert((*code).to_string(), error_response(desc));
    }
    Json::Object(responses)
}

fn query_param(name: &str, desc: &str, schema: Json) -> Json {
    json!({"name": name, "in": "query", "required": false, "description": desc, "schema": schema})
}

fn read_params() -> Vec<Json> {
    vec![
        query_param(
            "expand",
            "Relations to expand, comma-separated, dotted for nesting (`author,comments_via_post.user`).",
            json!({"type": "string"}),
        ),
        query_param(
            "fields",
            "Properties to return, comma-separated (`*`, `expand.author.name`, `body:excerpt(200,true)`).",
            json!({"type": "string"}),
        ),
    ]
}

fn list_params() -> Vec<Json> {
    let mut p = vec![
        query_param(
            "page",
            "Page number (from 1).",
            json!({"type": "integer", "minimum": 1}),
        ),
        query_param(
            "perPage",
            "Records per page (1 to 1000, default 30).",
            json!({"type": "integer", "minimum": 1, "maximum": 1000}),
        ),
        query_param(
            "sort",
            "Sort fields, comma-separated; `-` for descending, `@random`, `@rowid`.",
            json!({"type": "string"}),
        ),
        query_param(
            "filter",
            "A filter expression (`title ~ 'abc' && created > '2022-01-01'`).",
            json!({"type": "string"}),
        ),
        query_param(
            "skipTotal",
            "Skip counting: totalItems and totalPages answer -1.",
            json!({"type": "boolean"}),
        ),
    ];
    p.extend(read_params());
    p
}

fn id_param() -> Json {
    json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string", "minLength": 1}})
}

fn item_params() -> Vec<Json> {
    let mut p = vec![id_param()];
    p.extend(read_params());
    p
}

fn body(c: &Collection, stem: &str, create: bool) -> Json {
    let kind = if create { "Create" } else { "Update" };
    let mut content = json!({"application/json": {"schema": schema_ref(&format!("{stem}{kind}"))}});
    if c.has_files() {
        content["multipart/form-data"] =
            json!({"schema": schema_ref(&format!("{stem}{kind}Multipart"))});
    }
    json!({"required": create, "content": content})
}

fn collection_paths(c: &Collection, stem: &str, paths: &mut Map<String, Json>) {
    let name = &c.name;
    let rec = schema_ref(&format!("{stem}Record"));
    let list_schema = json!({
        "allOf": [schema_ref("ListEnvelope"), {
            "type": "object",
            "properties": {"items": {"type": "array", "items": rec.clone()}}
        }]
    });
    let tag = json!([name]);
    let base = format!("/api/collections/{name}/records");
    let one = format!("{base}/{{id}}");
    let mut coll = Map::new();
    coll.insert(
        "get".into(),
        json!({
            "operationId": format!("list_{name}"),
            "summary": format!("List {name} records the list rule lets the caller see."),
            "tags": tag,
            "parameters": list_params(),
            "responses": with_errors(
                Map::from_iter([("200".to_string(), json_response("A page of records.", list_schema))]),
                &["400", "403", "429"]
            ),
        }),
    );
    let mut item = Map::new();
    item.insert(
        "get".into(),
        json!({
            "operationId": format!("view_{name}"),
            "summary": format!("One {name} record."),
            "tags": tag,
            "parameters": item_params(),
            "responses": with_errors(
                Map::from_iter([("200".to_string(), json_response("The record.", rec.clone()))]),
                &["400", "403", "404", "429"]
            ),
        }),
    );
    if c.kind != CollectionType::View {
        let links = json!({
            "view": {"operationId": format!("view_{name}"), "parameters": {"id": "$response.body#/id"}},
            "update": {"operationId": format!("update_{name}"), "parameters": {"id": "$response.body#/id"}},
            "delete": {"operationId": format!("delete_{name}"), "parameters": {"id": "$response.body#/id"}},
        });
        let mut created = json_response("The created record.", rec.clone());
        created["links"] = links;
        coll.insert(
            "post".into(),
            json!({
                "operationId": format!("create_{name}"),
                "summary": format!("Create a {name} record (create rule, validation, unique indexes)."),
                "tags": tag,
                "parameters": read_params(),
                "requestBody": body(c, stem, true),
                "responses": with_errors(
                    Map::from_iter([("200".to_string(), created)]),
                    &["400", "403", "404", "429"]
                ),
            }),
        );
        item.insert(
            "patch".into(),
            json!({
                "operationId": format!("update_{name}"),
                "summary": format!("Update a {name} record (only the fields sent change)."),
                "tags": tag,
                "parameters": item_params(),
                "requestBody": body(c, stem, false),
                "responses": with_errors(
                    Map::from_iter([("200".to_string(), json_response("The updated record.", rec.clone()))]),
                    &["400", "403", "404", "429"]
                ),
            }),
        );
        item.insert(
            "delete".into(),
            json!({
                "operationId": format!("delete_{name}"),
                "summary": format!("Delete a {name} record (cascades and file removal included)."),
                "tags": tag,
                "parameters": [id_param()],
                "responses": with_errors(
                    Map::from_iter([("204".to_string(), json!({"description": "Deleted."}))]),
                    &["400", "403", "404", "429"]
                ),
            }),
        );
    }
    paths.insert(base, Json::Object(coll));
    paths.insert(one, Json::Object(item));
    if c.is_auth() {
        auth_paths(c, stem, paths);
    }
}

fn post_op(id: String, summary: String, tag: &Json, body: Json, responses: Json) -> Json {
    let mut op = json!({
        "operationId": id,
        "summary": summary,
        "tags": tag,
        "responses": responses,
    });
    if !body.is_null() {
        op["requestBody"] =
            json!({"required": true, "content": {"application/json": {"schema": body}}});
    }
    json!({"post": op})
}

fn obj(props: &[(&str, Json)], required: &[&str]) -> Json {
    let p: Map<String, Json> = props
        .iter()
        .map(|(k, v)| ((*k).to_string(), v.clone()))
        .collect();
    json!({"type": "object", "properties": p, "required": required})
}

fn auth_paths(c: &Collection, stem: &str, paths: &mut Map<String, Json>) {
    let name = &c.name;
    let tag = json!([name]);
    let s = || json!({"type": "string"});
    let auth = json_response(
        "Signed in: a token and the auth record.",
        json!({
            "type": "object",
            "properties": {
                "token": {"type": "string"},
                "record": schema_ref(&format!("{stem}Record")),
                "meta": {"type": "object"}
            },
            "required": ["token", "record"]
        }),
    );
    let none = json!({"description": "Done (nothing to return)."});
    let p = |action: &str| format!("/api/collections/{name}/{action}");
    let op = |action: &str| format!("{}_{name}", action.replace('-', "_"));
    let mut add = |action: &str, summary: &str, body: Json, ok: (&str, Json), errs: &[&str]| {
        let r = with_errors(Map::from_iter([(ok.0.to_string(), ok.1)]), errs);
        paths.insert(
            p(action),
            post_op(op(action), summary.to_string(), &tag, body, r),
        );
    };
    add(
        "auth-with-password",
        "Sign in with an identity (email or another identity field) and a password. A 401 with `data.mfaId` asks for a second factor.",
        obj(&[("identity", s()), ("password", s()), ("identityField", s())], &["identity", "password"]),
        ("200", auth.clone()),
        &["400", "401", "403", "429"],
    );
    add(
        "auth-with-oauth2",
        "Sign in with an OAuth2 provider's authorization code (the SDK's `authWithOAuth2`); `meta` carries the provider's profile.",
        obj(
            &[
                ("provider", s()),
                ("code", s()),
                ("codeVerifier", s()),
                ("redirectURL", s()),
                ("createData", json!({"type": "object"})),
            ],
            &["provider", "code", "redirectURL"],
        ),
        ("200", auth.clone()),
        &["400", "401", "403", "429"],
    );
    add(
        "auth-refresh",
        "A new token for the signed-in record of this collection.",
        Json::Null,
        ("200", auth.clone()),
        &["401", "403", "404", "429"],
    );
    add(
        "request-otp",
        "Email a one-time password (the answer is the same whether or not the email exists).",
        obj(
            &[("email", json!({"type": "string", "format": "email"}))],
            &["email"],
        ),
        (
            "200",
            json_response("The OTP request id.", obj(&[("otpId", s())], &["otpId"])),
        ),
        &["400", "403", "429"],
    );
    add(
        "auth-with-otp",
        "Sign in with the emailed one-time password.",
        obj(
            &[("otpId", s()), ("password", s()), ("mfaId", s())],
            &["otpId", "password"],
        ),
        ("200", auth.clone()),
        &["400", "401", "403", "429"],
    );
    for (action, field, summary) in [
        (
            "request-verification",
            "email",
            "Email a verification link.",
        ),
        (
            "confirm-verification",
            "token",
            "Mark the email verified with the token from the link.",
        ),
        (
            "request-password-reset",
            "email",
            "Email a password reset link.",
        ),
    ] {
        let schema = if field == "email" {
            json!({"type": "string", "format": "email"})
        } else {
            s()
        };
        add(
            action,
            summary,
            obj(&[(field, schema)], &[field]),
            ("204", none.clone()),
            &["400", "429"],
        );
    }
    add(
        "confirm-password-reset",
        "Set a new password with the token from the reset link.",
        obj(
            &[("token", s()), ("password", s()), ("passwordConfirm", s())],
            &["token", "password", "passwordConfirm"],
        ),
        ("204", none.clone()),
        &["400", "429"],
    );
    add(
        "request-email-change",
        "Email a confirmation link to a new address (signed-in record).",
        obj(
            &[("newEmail", json!({"type": "string", "format": "email"}))],
            &["newEmail"],
        ),
        ("204", none.clone()),
        &["400", "401", "403", "429"],
    );
    add(
        "confirm-email-change",
        "Change the email with the token from the link and the current password.",
        obj(&[("token", s()), ("password", s())], &["token", "password"]),
        ("204", none),
        &["400", "429"],
    );
    paths.insert(
        format!("/api/collections/{name}/impersonate/{{id}}"),
        json!({"post": {
            "operationId": op("impersonate"),
            "summary": "Superusers: a non-refreshable token of the record `id` (for `duration` seconds, or the collection's auth token duration).",
            "tags": tag,
            "parameters": [id_param()],
            "requestBody": {"required": false, "content": {"application/json": {"schema": obj(&[("duration", json!({"type": "integer", "minimum": 0}))], &[])}}},
            "responses": with_errors(Map::from_iter([("200".to_string(), auth.clone())]), &["400", "401", "403", "404", "429"]),
        }}),
    );
    paths.insert(
        p("auth-methods"),
        json!({"get": {
            "operationId": op("auth-methods"),
            "summary": "Which sign-in methods this collection offers.",
            "tags": tag,
            "responses": with_errors(Map::from_iter([("200".to_string(), json_response(
                "The methods.",
                obj(&[
                    ("password", json!({"type": "object"})),
                    ("oauth2", json!({"type": "object"})),
                    ("mfa", json!({"type": "object"})),
                    ("otp", json!({"type": "object"})),
                ], &["password", "oauth2", "mfa", "otp"]),
            ))]), &["400", "404", "429"]),
        }}),
    );
}

/// The OpenAPI 3.1 document of the record and sign-in API of `colls`.
pub fn openapi(colls: &[Arc<Collection>]) -> Json {
    let names = stems(colls);
    let by_id: Vec<(String, String)> = colls
        .iter()
        .zip(&names)
        .map(|(c, s)| (c.id.clone(), s.clone()))
        .collect();
    let mut schemas = Map::new();
    schemas.insert(
        "Error".into(),
        json!({
            "type": "object",
            "description": "Every error: the HTTP status, a message, and per-field errors for validation (`{field: {code, message}}`).",
            "properties": {
                "status": {"type": "integer"},
                "message": {"type": "string"},
                "data": {"type": "object"}
            },
            "required": ["status", "message", "data"]
        }),
    );
    schemas.insert(
        "ListEnvelope".into(),
        json!({
            "type": "object",
            "properties": {
                "page": {"type": "integer"},
                "perPage": {"type": "integer"},
                "totalItems": {"type": "integer"},
                "totalPages": {"type": "integer"},
                "items": {"type": "array"}
            },
            "required": ["page", "perPage", "totalItems", "totalPages", "items"]
        }),
    );
    let mut paths = Map::new();
    for (c, stem) in colls.iter().zip(&names) {
        schemas.insert(format!("{stem}Record"), record_schema(c, &by_id));
        if c.kind != CollectionType::View {
            schemas.insert(format!("{stem}Create"), body_schema(c, true, false));
            schemas.insert(format!("{stem}Update"), body_schema(c, false, false));
            if c.has_files() {
                schemas.insert(format!("{stem}CreateMultipart"), body_schema(c, true, true));
                schemas.insert(
                    format!("{stem}UpdateMultipart"),
                    body_schema(c, false, true),
                );
            }
        }
        collection_paths(c, stem, &mut paths);
    }
    paths.insert(
        "/api/health".into(),
        json!({"get": {
            "operationId": "health",
            "summary": "Whether the server is up.",
            "tags": ["system"],
            "responses": {"200": json_response("Healthy.", obj(&[
                ("code", json!({"type": "integer"})),
                ("message", json!({"type": "string"})),
                ("data", json!({"type": "object"})),
            ], &["code", "message", "data"]))},
        }}),
    );
    paths.insert(
        "/api/batch".into(),
        json!({"post": {
            "operationId": "batch",
            "summary": "Several record writes in one transaction (when batch is enabled in settings).",
            "tags": ["system"],
            "requestBody": {"required": true, "content": {"application/json": {"schema": obj(&[(
                "requests",
                json!({"type": "array", "items": obj(&[
                    ("method", json!({"type": "string", "enum": ["POST", "PUT", "PATCH", "DELETE"]})),
                    ("url", json!({"type": "string"})),
                    ("body", json!({"type": "object"})),
                    ("headers", json!({"type": "object", "additionalProperties": {"type": "string"}})),
                ], &["method", "url"])}),
            )], &["requests"])}}},
            "responses": with_errors(Map::from_iter([("200".to_string(), json_response(
                "Each request's answer, in order.",
                json!({"type": "array", "items": obj(&[("status", json!({"type": "integer"})), ("body", json!({}))], &["status"])}),
            ))]), &["400", "403", "429"]),
        }}),
    );
    paths.insert(
        "/api/files/token".into(),
        json!({"post": {
            "operationId": "file_token",
            "summary": "A short-lived token for protected files (signed-in callers).",
            "tags": ["system"],
            "responses": with_errors(Map::from_iter([("200".to_string(), json_response(
                "The token.", obj(&[("token", json!({"type": "string"}))], &["token"]),
            ))]), &["400", "401", "403", "429"]),
        }}),
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Basalt API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The record and sign-in API of this server's collections, generated from the live schema. \
                Realtime (`/api/realtime`, SSE and WebSocket), GraphQL (`/api/graphql`) and the superuser \
                administration API (collections, settings, logs, backups, crons) follow PocketBase's protocol and are not described here."
        },
        "security": [{"token": []}, {}],
        "tags": [{"name": "system"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"token": {
                "type": "apiKey", "in": "header", "name": "Authorization",
                "description": "An auth token from a sign-in (with or without `Bearer `)."
            }}
        }
    })
}

// ---------- TypeScript ----------

fn ts_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// A property key: bare when it is an identifier, quoted otherwise.
fn ts_key(k: &str) -> String {
    let ident = k
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
    if ident {
        k.to_string()
    } else {
        ts_string(k)
    }
}

fn ts_value(f: &Field, input: bool) -> String {
    let base = match f.ty() {
        FieldType::Number => "number".to_string(),
        FieldType::Bool => "boolean".to_string(),
        FieldType::Json => "unknown".to_string(),
        FieldType::GeoPoint => "{ lon: number; lat: number }".to_string(),
        FieldType::Select if !f.values.is_empty() => {
            let mut u: Vec<String> = f.values.iter().map(|v| ts_string(v)).collect();
            if !f.is_multiple() && !input {
                u.push("\"\"".into());
            }
            u.join(" | ")
        }
        FieldType::File if input => "File | Blob | string".to_string(),
        _ => "string".to_string(),
    };
    let one = if base.contains('|') && f.is_multiple() {
        format!("({base})")
    } else {
        base
    };
    let v = if f.is_multiple() {
        format!("{one}[]")
    } else {
        one
    };
    // A masked PII value is a string or null.
    if f.pii.is_some() && !input {
        format!("{v} | string | null")
    } else {
        v
    }
}

/// TypeScript types for the official SDK: a `<Name>Record` per collection (with its expand), create
/// and update bodies, and `TypedPocketBase`, so `pb.collection('posts')` returns
/// `RecordService<PostsRecord>`.
pub fn typescript(colls: &[Arc<Collection>]) -> String {
    use std::fmt::Write;
    let names = stems(colls);
    let stem_of = |id: &str| {
        colls
            .iter()
            .zip(&names)
            .find(|(c, _)| c.id == id)
            .map(|(_, s)| s.clone())
    };
    let mut out = String::new();
    out.push_str(
        "// Generated by `basalt typegen ts` from the server's collections. Do not edit: run it again after a schema change.\n\
         import type PocketBase from 'pocketbase'\n\
         import type { RecordService } from 'pocketbase'\n\n",
    );
    out.push_str("export enum Collections {\n");
    for (c, s) in colls.iter().zip(&names) {
        let _ = writeln!(out, "  {s} = {},", ts_string(&c.name));
    }
    out.push_str("}\n\n");
    for (c, stem) in colls.iter().zip(&names) {
        let _ = writeln!(
            out,
            "/** A record of `{}` ({}). */",
            c.name,
            c.kind.as_str()
        );
        let _ = writeln!(out, "export interface {stem}Record {{");
        let _ = writeln!(out, "  collectionId: {}", ts_string(&c.id));
        let _ = writeln!(out, "  collectionName: {}", ts_string(&c.name));
        for f in &c.fields {
            if f.ty() == FieldType::Password || (c.is_auth() && f.name == "tokenKey") {
                continue;
            }
            // Hidden fields reach superusers only; an auth email only the owner, superusers or
            // when visible.
            let optional = f.hidden || (c.is_auth() && f.name == "email");
            let _ = writeln!(
                out,
                "  {}{}: {}",
                ts_key(&f.name),
                if optional { "?" } else { "" },
                ts_value(f, false)
            );
        }
        let rels: Vec<&Field> = c
            .fields
            .iter()
            .filter(|f| f.ty() == FieldType::Relation)
            .collect();
        if rels.is_empty() {
            out.push_str("  expand?: Record<string, unknown>\n");
        } else {
            out.push_str("  expand?: {\n");
            for f in rels {
                let t = stem_of(&f.collection_id)
                    .map(|s| format!("{s}Record"))
                    .unwrap_or_else(|| "Record<string, unknown>".into());
                let _ = writeln!(
                    out,
                    "    {}?: {t}{}",
                    ts_key(&f.name),
                    if f.is_multiple() { "[]" } else { "" }
                );
            }
            out.push_str("    [backRelation: string]: unknown\n  }\n");
        }
        out.push_str("}\n\n");
        if c.kind == CollectionType::View {
            continue;
        }
        let _ = writeln!(out, "export interface {stem}Create {{");
        for f in c.fields.iter().filter(|f| is_writable(c, f)) {
            let generated = f.name == "id" || !f.autogenerate_pattern.is_empty();
            let optional = !f.required || generated || f.ty() == FieldType::File;
            let _ = writeln!(
                out,
                "  {}{}: {}",
                ts_key(&f.name),
                if optional { "?" } else { "" },
                ts_value(f, true)
            );
        }
        if c.is_auth() {
            out.push_str("  passwordConfirm: string\n");
        }
        out.push_str("}\n\n");
        let _ = writeln!(
            out,
            "export type {stem}Update = Partial<{stem}Create>{}\n",
            if c.is_auth() {
                " & { oldPassword?: string }"
            } else {
                ""
            }
        );
    }
    out.push_str("export interface CollectionRecords {\n");
    for (c, s) in colls.iter().zip(&names) {
        let _ = writeln!(out, "  {}: {s}Record", ts_key(&c.name));
    }
    out.push_str("}\n\n");
    out.push_str(
        "/** `new PocketBase(url) as TypedPocketBase`: `collection(name)` knows each collection's records. */\n\
         export type TypedPocketBase = PocketBase & {\n",
    );
    for c in colls {
        let _ = writeln!(
            out,
            "  collection(idOrName: {}): RecordService<CollectionRecords[{}]>",
            ts_string(&c.name),
            ts_string(&c.name)
        );
    }
    out.push_str("  collection(idOrName: string): RecordService\n}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn colls() -> Vec<Arc<Collection>> {
        let mut users = Collection::scaffold(CollectionType::Auth, "users");
        users.id = "_pb_users_auth_".into();
        let mut posts = Collection::scaffold(CollectionType::Base, "blog_posts");
        posts.id = "pbc_posts".into();
        let mut title = Field::new("title", FieldType::Text);
        title.required = true;
        title.max = json!(100);
        let mut author = Field::new("author", FieldType::Relation);
        author.collection_id = "_pb_users_auth_".into();
        author.max_select = 1;
        let mut tags = Field::new("tags", FieldType::Select);
        tags.values = vec!["a".into(), "b c".into()];
        tags.max_select = 2;
        let mut views = Field::new("views", FieldType::Number);
        views.only_int = true;
        let mut file = Field::new("cover", FieldType::File);
        file.max_select = 1;
        let mut secret = Field::new("secret-note", FieldType::Text);
        secret.hidden = true;
        posts
            .fields
            .extend([title, author, tags, views, file, secret]);
        posts.fields.extend(Collection::autodate_fields());
        vec![Arc::new(users), Arc::new(posts)]
    }

    #[test]
    fn stems_are_identifiers_and_unique() {
        assert_eq!(type_name("blog_posts"), "BlogPosts");
        assert_eq!(type_name("_superusers"), "Superusers");
        assert_eq!(type_name("9lives"), "C9lives");
        let mut a = Collection::scaffold(CollectionType::Base, "a_b");
        a.id = "1".into();
        let mut b = Collection::scaffold(CollectionType::Base, "ab");
        b.id = "2".into();
        let mut c = Collection::scaffold(CollectionType::Base, "a__b");
        c.id = "3".into();
        assert_eq!(
            stems(&[Arc::new(a), Arc::new(b), Arc::new(c)]),
            vec!["AB", "Ab", "AB2"]
        );
    }

    #[test]
    fn openapi_describes_each_collection() {
        let doc = openapi(&colls());
        assert_eq!(doc["openapi"], "3.1.0");
        let p = &doc["paths"]["/api/collections/blog_posts/records"];
        assert_eq!(p["get"]["operationId"], "list_blog_posts");
        assert_eq!(
            p["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"],
            "#/components/schemas/BlogPostsCreateMultipart"
        );
        let s = &doc["components"]["schemas"];
        assert_eq!(s["BlogPostsCreate"]["required"], json!(["title"]));
        assert_eq!(
            s["BlogPostsCreate"]["properties"]["title"]["maxLength"],
            100
        );
        assert_eq!(
            s["BlogPostsCreate"]["properties"]["views"]["type"],
            "integer"
        );
        assert!(s["BlogPostsCreate"]["properties"].get("cover").is_none());
        assert_eq!(
            s["BlogPostsCreateMultipart"]["properties"]["cover"]["format"],
            "binary"
        );
        assert_eq!(
            s["BlogPostsUpdate"]["properties"]["views+"]["type"],
            "number"
        );
        assert_eq!(
            s["BlogPostsRecord"]["properties"]["expand"]["properties"]["author"]["$ref"],
            "#/components/schemas/UsersRecord"
        );
        assert!(s["UsersRecord"]["properties"].get("password").is_none());
        assert!(s["UsersRecord"]["properties"].get("tokenKey").is_none());
        assert_eq!(
            s["UsersCreate"]["required"],
            json!(["password", "email", "passwordConfirm"])
        );
        assert!(doc["paths"]["/api/collections/users/auth-with-password"]["post"].is_object());
        assert!(doc["paths"]["/api/collections/blog_posts/auth-with-password"].is_null());
    }

    #[test]
    fn typescript_types_each_collection() {
        let ts = typescript(&colls());
        assert!(ts.contains("export interface BlogPostsRecord {"), "{ts}");
        assert!(ts.contains("  tags: (\"a\" | \"b c\")[]\n"), "{ts}");
        assert!(ts.contains("  author?: UsersRecord\n"), "{ts}");
        assert!(ts.contains("  \"secret-note\"?: string\n"), "{ts}");
        assert!(ts.contains("  title: string\n"), "{ts}");
        assert!(ts.contains("  email?: string\n"), "{ts}");
        assert!(ts.contains(
            "  collection(idOrName: \"blog_posts\"): RecordService<CollectionRecords[\"blog_posts\"]>"
        ));
        assert!(ts.contains("export interface BlogPostsCreate {\n  id?: string\n  title: string\n"));
    }
}
