//! The `graphql-transport-ws` protocol (the `graphql-ws` library's) on `GET /api/graphql`:
//! `connection_init` (its payload's `Authorization` is the caller's token, checked like the header)
//! → `connection_ack`; `subscribe` runs an operation (subscriptions stream `next` messages, queries
//! and mutations one) then `complete`; `complete` from the client stops one; `ping` → `pong`.
//! Protocol errors close the socket with the protocol's codes (4400 bad message, 4401 subscribe
//! before the ack, 4403 a bad token, 4408 no `connection_init` in time, 4409 a repeated id, 4429 a
//! second `connection_init`). Each `subscribe` uses the schema of the collections at that moment. A
//! connection is closed (1000) after `[realtime] max_lifetime_secs`, as realtime streams are.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use basalt_service::Req;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value as Json};
use tokio::sync::mpsc;

use super::{complete_errors, GqlRequest, GqlState, Uploads};

const PROTOCOL: &str = "graphql-transport-ws";
/// How long a client may take to send `connection_init`.
const INIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Operations one connection may run at once.
const MAX_OPERATIONS: usize = 100;

pub fn upgrade(gql: GqlState, req: Req, up: WebSocketUpgrade) -> Response {
    up.protocols([PROTOCOL])
        .max_message_size(1 << 20)
        .on_upgrade(move |socket| session(gql, req, socket))
}

fn close(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.to_string().into(),
    }))
}

async fn session(gql: GqlState, conn: Req, socket: WebSocket) {
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::channel::<Message>(64);
    let mut req: Option<Req> = None;
    let mut ops: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
    let init_deadline = tokio::time::sleep(INIT_TIMEOUT);
    tokio::pin!(init_deadline);
    // A connection lives as long as a realtime stream may ([realtime] max_lifetime_secs); the
    // client reconnects.
    let lifetime = tokio::time::sleep(gql.ctx.realtime.config.max_lifetime);
    tokio::pin!(lifetime);
    loop {
        tokio::select! {
            out = rx.recv() => {
                let Some(m) = out else { break };
                if sink.send(m).await.is_err() {
                    break;
                }
            }
            m = stream.next() => {
                let Some(Ok(m)) = m else { break };
                let text = match m {
                    Message::Text(t) => t.to_string(),
                    Message::Close(_) => break,
                    Message::Binary(_) => {
                        let _ = sink.send(close(4400, "Binary messages are not supported")).await;
                        break;
                    }
                    _ => continue,
                };
                let Ok(msg) = serde_json::from_str::<Json>(&text) else {
                    let _ = sink.send(close(4400, "Invalid message")).await;
                    break;
                };
                let id = msg.get("id").and_then(Json::as_str).map(str::to_string);
                match msg.get("type").and_then(Json::as_str).unwrap_or("") {
                    "connection_init" => {
                        if req.is_some() {
                            let _ = sink.send(close(4429, "Too many initialisation requests")).await;
                            break;
                        }
                        let p = msg.get("payload").cloned().unwrap_or(Json::Null);
                        let token = ["Authorization", "authorization", "token"]
                            .iter()
                            .find_map(|k| p.get(*k).and_then(Json::as_str))
                            .filter(|t| !t.is_empty())
                            .map(str::to_string);
                        let auth = match token {
                            None => conn.auth.clone(),
                            Some(t) => match basalt_service::auth::authenticate(&gql.ctx, Some(&t), conn.ip).await {
                                Ok(a) => a,
                                Err(_) => {
                                    let _ = sink.send(close(4403, "Forbidden")).await;
                                    break;
                                }
                            },
                        };
                        req = Some(Req { auth, method: "POST".into(), ..conn.clone() });
                        if sink.send(Message::Text(json!({"type": "connection_ack"}).to_string().into())).await.is_err() {
                            break;
                        }
                    }
                    "ping" => {
                        if sink.send(Message::Text(json!({"type": "pong"}).to_string().into())).await.is_err() {
                            break;
                        }
                    }
                    "pong" => {}
                    "subscribe" => {
                        let Some(r) = req.clone() else {
                            let _ = sink.send(close(4401, "Unauthorized")).await;
                            break;
                        };
                        let Some(id) = id else {
                            let _ = sink.send(close(4400, "A subscribe message needs an id")).await;
                            break;
                        };
                        ops.retain(|_, h| !h.is_finished());
                        if ops.contains_key(&id) {
                            let _ = sink.send(close(4409, &format!("Subscriber for {id} already exists"))).await;
                            break;
                        }
                        if ops.len() >= MAX_OPERATIONS {
                            let e = json!({"type": "error", "id": id, "payload": [{
                                "message": format!("At most {MAX_OPERATIONS} operations may run on one connection."),
                                "extensions": {"code": "too_many_requests", "status": 429}}]});
                            let _ = tx.send(Message::Text(e.to_string().into())).await;
                            continue;
                        }
                        let payload = msg.get("payload").cloned().unwrap_or(Json::Null);
                        let h = tokio::spawn(run(gql.clone(), r, id.clone(), payload, tx.clone()));
                        ops.insert(id, h);
                    }
                    "complete" => {
                        if let Some(h) = id.and_then(|i| ops.remove(&i)) {
                            h.abort();
                        }
                    }
                    _ => {
                        let _ = sink.send(close(4400, "Invalid message type")).await;
                        break;
                    }
                }
            }
            _ = &mut lifetime => {
                let _ = sink.send(close(1000, "Connection lifetime reached")).await;
                break;
            }
            _ = &mut init_deadline, if req.is_none() => {
                let _ = sink.send(close(4408, "Connection initialisation timeout")).await;
                break;
            }
        }
    }
    for (_, h) in ops {
        h.abort();
    }
}

/// Runs one operation, sending its results as `next` messages and then `complete`; a request that
/// fails before execution (parse, validation, limits) is one `error` message.
async fn run(gql: GqlState, req: Req, id: String, payload: Json, tx: mpsc::Sender<Message>) {
    let began = std::time::Instant::now();
    let done = |op: &'static str, outcome: &'static str| {
        gql.ctx
            .metrics
            .graphql_op(op, outcome, began.elapsed().as_secs_f64());
    };
    let send = |v: Json| {
        let tx = tx.clone();
        async move { tx.send(Message::Text(v.to_string().into())).await.is_ok() }
    };
    let errors = |errs: Json| json!({"type": "error", "id": id, "payload": errs});
    let r = match GqlRequest::from_json(&payload) {
        Ok(r) => r,
        Err(m) => {
            send(errors(
                json!([{"message": format!("Invalid GraphQL request: {m}."),
                "extensions": {"code": "bad_request", "status": 400}}]),
            ))
            .await;
            return;
        }
    };
    let schema = match gql.schema() {
        Ok(s) => s,
        Err(e) => {
            send(errors(json!([super::error_json(e)]))).await;
            return;
        }
    };
    let conn_req = req.clone();
    let super::Prepared {
        request, checked, ..
    } = match gql.prepare(req, r, Uploads::default(), false) {
        Ok(x) => x,
        Err(super::cost::Refused { op, message }) => {
            done(op.map_or("unknown", super::Operation::label), "refused");
            send(errors(
                json!([{"message": message, "extensions": {"code": "bad_request", "status": 400}}]),
            ))
            .await;
            return;
        }
    };
    if let Err(e) = super::admit_by_path(&gql, &checked, &conn_req).await {
        done(checked.op.label(), "refused");
        send(errors(json!([super::error_json(e)]))).await;
        return;
    }
    let mut results = schema.execute_stream(request);
    let mut first = true;
    let mut had_errors = false;
    while let Some(mut resp) = results.next().await {
        complete_errors(&mut resp, &checked.roots);
        let v = serde_json::to_value(&resp).unwrap_or(Json::Null);
        // Refused before execution (parse or validation): the protocol's `error`, no `complete`.
        if first && v.get("data").is_none_or(Json::is_null) && v.get("errors").is_some() {
            let errs = v.get("errors").cloned().unwrap_or(Json::Null);
            if is_request_error(&errs) {
                done(checked.op.label(), "refused");
                send(errors(errs)).await;
                return;
            }
        }
        first = false;
        had_errors |= v.get("errors").is_some();
        if !send(json!({"type": "next", "id": id, "payload": v})).await {
            break;
        }
    }
    done(checked.op.label(), if had_errors { "errors" } else { "ok" });
    send(json!({"type": "complete", "id": id})).await;
}

/// Errors without a path were raised before any field ran.
fn is_request_error(errs: &Json) -> bool {
    errs.as_array()
        .is_some_and(|a| a.iter().all(|e| e.get("path").is_none()))
}
