//! Realtime subscriptions, the PocketBase protocol (§6 of pocketbase-api.md): an SSE stream per client
//! (`GET /api/realtime`), subscriptions set by `POST /api/realtime`, and a fan-out task that takes the
//! event bus's committed events in order and sends each subscriber what its rules, filter, expand and
//! fields allow. A WebSocket endpoint (`/api/realtime/ws`) carries the same topics and payloads.
//!
//! Rules are checked against the event's record snapshot (the record after the change, or before a
//! delete), not the live row, so a delete can be checked and every subscriber sees a consistent state.
//! A subscriber that cannot keep up (its queue of `QUEUE` frames is full) is disconnected; the SDK
//! reconnects and re-subscribes.

use std::collections::HashMap;
use std::sync::Arc;

use basalt_core::filter::compile::RequestInfo;
use basalt_core::record::Data;
use basalt_core::schema::Collection;
use basalt_events::Event;
use bytes::Bytes;
use serde_json::{json, Map, Value as Json};

use crate::caller::Caller;
use crate::error::ServiceResult;
use crate::hub::Subscription;
pub use crate::hub::{parse_body, Frame, Hub, RealtimeConfig, Registration};
use crate::records;
use crate::request::Req;
use crate::AppCtx;

/// Sends one committed event to every subscriber whose rules, filter, expand and fields allow it.
pub async fn dispatch(ctx: &AppCtx, ev: &Event) {
    let Some(coll) = ctx.collection(&ev.collection_id) else {
        return;
    };
    let Some(record) = ev.visible_record() else {
        return;
    };
    // Same auth + same subscription string ⇒ same payload: computed once per event.
    let mut memo: HashMap<(String, Arc<str>), Option<Bytes>> = HashMap::new();
    let mut slow: Vec<String> = Vec::new();
    for (c, caller, subs) in ctx.realtime.interested(&coll, &ev.record_id, ev.seq) {
        let who = caller
            .as_ref()
            .map(|c| format!("{}/{}", c.collection.id, c.id()))
            .unwrap_or_default();
        for s in subs {
            let key = (who.clone(), s.raw.clone());
            let payload = match memo.get(&key) {
                Some(p) => p.clone(),
                None => {
                    let p = payload_for(ctx, &coll, ev, record, caller.as_ref(), &s)
                        .await
                        .unwrap_or_else(|e| {
                            tracing::debug!(error = ?e, "realtime: subscriber check failed");
                            None
                        });
                    memo.insert(key, p.clone());
                    p
                }
            };
            let Some(data) = payload else { continue };
            let frame = Frame {
                event: s.raw.clone(),
                data,
            };
            if !c.offer(frame) {
                slow.push(c.id.clone());
                break;
            }
        }
    }
    ctx.realtime.drop_slow(slow);
}

/// The JSON payload one subscriber receives, or `None` when its rule or filter excludes the record.
async fn payload_for(
    ctx: &AppCtx,
    coll: &Arc<Collection>,
    ev: &Event,
    record: &Map<String, Json>,
    caller: Option<&Caller>,
    s: &Subscription,
) -> ServiceResult<Option<Bytes>> {
    let info = RequestInfo {
        auth: caller.map(|c| (c.collection.clone(), c.record.clone())),
        body: Data::new(),
        query: s.query.clone(),
        headers: s.headers.clone(),
        method: "GET".into(),
        context: "realtime".into(),
        route: format!("realtime {}", s.raw),
        ..Default::default()
    };
    let rule = if s.record.is_some() {
        &coll.view_rule
    } else {
        &coll.list_rule
    };
    let cond = match records::rule_condition(ctx, coll, rule, &info) {
        Ok(c) => c,
        Err(_) => return Ok(None),
    };
    let filter = s.query.get("filter").and_then(Json::as_str).unwrap_or("");
    let filt = match records::client_filter(ctx, coll, filter, &info).map(|(f, _)| f) {
        Ok(f) => f,
        Err(_) => return Ok(None),
    };
    let conds: Vec<_> = [cond, filt].into_iter().flatten().collect();
    // The event holds masks: pii values come from the live row when it is still in the event's
    // state (else null), before rules and filters on them are checked against the snapshot.
    let mut data: Data = record.clone();
    if crate::pii::has_pii(coll) {
        crate::privacy::unmask_event_record(ctx, coll, &mut data).await?;
    }
    if !conds.is_empty() && !records::snapshot_matches(ctx, coll, &data, conds).await? {
        return Ok(None);
    }
    let mut out = vec![records::output(ctx, coll, data.clone(), &info).await];
    let expand = s.query.get("expand").and_then(Json::as_str).unwrap_or("");
    if !expand.is_empty() {
        records::expand(ctx, coll, &mut out, &[data], expand, &info).await?;
    }
    let mut rec = Json::Object(out.pop().unwrap_or_default());
    if let Some(f) = s.query.get("fields").and_then(Json::as_str) {
        if !f.is_empty() {
            records::pick_fields(&mut rec, f);
        }
    }
    let body = json!({"action": ev.action.as_str(), "record": rec});
    Ok(Some(Bytes::from(body.to_string())))
}

/// The bus listener: the tail hands it each batch of committed events, in order.
pub struct Fanout(pub AppCtx);

#[async_trait::async_trait]
impl basalt_events::bus::Listener for Fanout {
    fn wants(&self) -> bool {
        !self.0.realtime.is_empty() || self.0.cache_follows_events()
    }
    async fn on_events(&self, events: &[Arc<Event>]) {
        // Other nodes' writes: drop their rows from this node's cache (this node's own writes were
        // dropped by the writer already; doing it again is harmless).
        if self.0.cache_follows_events() {
            for ev in events {
                self.0
                    .cache
                    .invalidate_local(&ev.collection_id, &ev.record_id);
            }
        }
        if self.0.realtime.is_empty() {
            return;
        }
        for ev in events {
            let began = std::time::Instant::now();
            dispatch(&self.0, ev).await;
            self.0.metrics.fanout.observe(began.elapsed().as_secs_f64());
        }
    }
}

/// Replaces the subscriptions of realtime client `client` (`POST /api/realtime`, a WebSocket
/// subscription message, or any later transport): the caller's auth is pinned to the client.
pub fn subscribe(ctx: &AppCtx, req: &Req, client: &str, topics: Vec<String>) -> ServiceResult<()> {
    let key = req
        .auth
        .as_ref()
        .map(|c| format!("{}/{}", c.collection.id, c.id()));
    let since = ctx.events.get().map_or(0, |b| b.last_committed());
    ctx.realtime
        .set_subscriptions(client, topics, key, req.auth.clone(), since)
}
