//! Realtime beyond what the SDK suite covers: the WebSocket endpoint, SSE keepalive comments and the
//! idle close, each against the real server.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{spawn_app_with, Backend, TestApp};

pub(crate) type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub(crate) async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a message within 5 s")
            .expect("socket open")
            .expect("frame");
        if let Message::Text(t) = m {
            return serde_json::from_str(t.as_str()).unwrap();
        }
    }
}

async fn websocket(backend: Backend) {
    let app: TestApp = spawn_app_with(backend, basalt_http::Options::default()).await;
    app.collection(json!({"name": "notes", "listRule": "owner = @request.auth.id", "viewRule": "owner = @request.auth.id", "createRule": "", "fields": [
        {"name": "title", "type": "text"}, {"name": "n", "type": "number"}, {"name": "owner", "type": "text"}
    ]}))
    .await;
    let (uid, utok) = app.user("ws@example.com").await;
    let url = app.url.replace("http://", "ws://") + "/api/realtime/ws";
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let hello = next_json(&mut ws).await;
    assert_eq!(hello["event"], "PB_CONNECT");
    let cid = hello["data"]["clientId"].as_str().unwrap().to_string();
    assert_eq!(cid.len(), 40);

    // Bad input answers PB_ERROR in the protocol's error shape; the socket stays open.
    ws.send(Message::Text("{not json".into())).await.unwrap();
    let e = next_json(&mut ws).await;
    assert_eq!(e["event"], "PB_ERROR");
    assert_eq!(e["data"]["status"], 400);
    let too_many: Vec<String> = (0..1001).map(|i| format!("notes/{i}")).collect();
    ws.send(Message::Text(
        json!({"subscriptions": too_many}).to_string().into(),
    ))
    .await
    .unwrap();
    let e = next_json(&mut ws).await;
    assert_eq!(
        e["data"]["data"]["subscriptions"]["code"],
        "validation_length_too_long"
    );

    // Subscribe as the user with a filter option; the event name is the exact subscription string.
    let topic = format!(
        "notes/*?options={}",
        urlencode(&json!({"query": {"filter": "n > 5"}}).to_string())
    );
    ws.send(Message::Text(
        json!({"subscriptions": [topic], "authorization": utok})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let ok = next_json(&mut ws).await;
    assert_eq!(ok["event"], "PB_SUBSCRIPTIONS", "{ok}");
    app.record(
        "notes",
        json!({"title": "other's", "n": 9, "owner": "someoneelse"}),
    )
    .await;
    app.record("notes", json!({"title": "small", "n": 1, "owner": uid}))
        .await;
    let mine = app
        .record("notes", json!({"title": "mine", "n": 7, "owner": uid}))
        .await;
    let ev = next_json(&mut ws).await;
    assert_eq!(ev["event"], topic);
    assert_eq!(ev["data"]["action"], "create");
    assert_eq!(
        ev["data"]["record"]["id"], mine["id"],
        "only the owner's matching record arrives"
    );

    // The same client id works with POST /api/realtime (auth pinned: another user is refused).
    let (_, other) = app.user("ws2@example.com").await;
    let r = app
        .post(
            "/api/realtime",
            Some(&other),
            json!({"clientId": cid, "subscriptions": ["notes/*"]}),
        )
        .await;
    assert_eq!(r.0, 403, "{}", r.1);
    ws.close(None).await.unwrap();
}

fn urlencode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// An idle SSE stream gets keepalive comments, then closes after the idle limit (the SDK reconnects).
async fn sse_keepalive_and_idle_close(backend: Backend) {
    let mut o = basalt_http::Options::default();
    o.realtime.keepalive = Duration::from_millis(200);
    o.realtime.idle = Duration::from_millis(1200);
    let app = spawn_app_with(backend, o).await;
    let started = std::time::Instant::now();
    let mut res = app
        .client
        .get(format!("{}/api/realtime", app.url))
        .send()
        .await
        .unwrap();
    let mut text = String::new();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(5), res.chunk())
        .await
        .expect("the stream ends by itself")
        .unwrap()
    {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let took = started.elapsed();
    assert!(text.starts_with("id:"), "{text}");
    assert!(text.contains("event:PB_CONNECT"));
    assert!(text.matches(": keepalive\n\n").count() >= 3, "{text}");
    assert!(
        took >= Duration::from_millis(1100) && took < Duration::from_secs(4),
        "{took:?}"
    );
    for _ in 0..100 {
        if app.ctx.realtime.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        app.ctx.realtime.len(),
        0,
        "the closed client is gone from the hub"
    );
}

crate::both_backends!(websocket, sse_keepalive_and_idle_close);
