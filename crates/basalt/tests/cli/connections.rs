//! Slow and greedy clients against the real binary (issue 14, finding 4): a head sent a line at a
//! time, an idle connection, a body at a byte a second, a flood of connections from one address and
//! sixteen concurrent 40 MB bodies held in memory. Each ends as the `[connections]` bounds say.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{fresh_pg, peak_rss, serve_with, su_token, tmp, upsert};

const CONFIG: &str = "[connections]\nheader_timeout_secs = 2\nbody_grace_secs = 2\nbody_min_rate = 1024\nmax_per_ip = 16\nunlimited = []\nbody_memory_mb = 16\n";

/// Reads until the server closes the connection or `limit` passes; answers what was read and when
/// the connection ended (`None`: still open at `limit`).
async fn read_until_closed(s: &mut TcpStream, limit: Duration) -> (String, Option<Duration>) {
    let start = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.saturating_sub(start.elapsed());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return (String::from_utf8_lossy(&out).into(), None),
            Ok(Ok(0)) | Ok(Err(_)) => {
                return (String::from_utf8_lossy(&out).into(), Some(start.elapsed()))
            }
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

async fn slow_and_greedy_clients_are_bounded(db: Option<String>) {
    let d = tmp();
    upsert(&d, &db);
    let cfg = d.0.join("basalt.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let (mut child, url) =
        serve_with(&d, &db, &["--config".into(), cfg.display().to_string()]).await;
    let addr = url.trim_start_matches("http://").to_string();
    let tok = su_token(&url).await;
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{url}/api/collections"))
        .header("Authorization", &tok)
        .json(
            &json!({"name": "notes", "createRule": "", "fields": [{"name": "t", "type": "text"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    drop(http);

    // 1. A head sent a line every 700 ms never completes: closed at the header timeout (2 s).
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let drip = async {
        for i in 0..20 {
            tokio::time::sleep(Duration::from_millis(700)).await;
            if s.write_all(format!("X-Drip-{i}: y\r\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
        }
    };
    let t = Instant::now();
    tokio::time::timeout(Duration::from_secs(6), drip)
        .await
        .ok();
    let (_, closed) = read_until_closed(&mut s, Duration::from_secs(1)).await;
    assert!(
        closed.is_some() && t.elapsed() < Duration::from_secs(7),
        "a head dripped a line at a time is cut off"
    );

    // 2. An idle connection is closed after the header timeout.
    let mut s = TcpStream::connect(&addr).await.unwrap();
    let (_, closed) = read_until_closed(&mut s, Duration::from_secs(6)).await;
    let closed = closed.expect("an idle connection is closed");
    assert!(
        closed >= Duration::from_millis(1500),
        "not before the timeout: {closed:?}"
    );

    // 3. A body at one byte a second is answered 408 after the grace period.
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(
        b"POST /api/collections/notes/records HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{",
    )
    .await
    .unwrap();
    let (mut rd, mut wr) = s.into_split();
    let drip = tokio::spawn(async move {
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if wr.write_all(b" ").await.is_err() {
                break;
            }
        }
    });
    let t = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while t.elapsed() < Duration::from_secs(8) {
        match tokio::time::timeout(Duration::from_secs(8), rd.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {
                got.extend_from_slice(&buf[..n]);
                if got.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            _ => break,
        }
    }
    drip.abort();
    let head = String::from_utf8_lossy(&got);
    assert!(
        head.starts_with("HTTP/1.1 408"),
        "a body too slow gets 408: {head:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());

    // 4. At most 16 connections from one address: the 17th is closed at once.
    let mut held = Vec::new();
    for _ in 0..16 {
        held.push(TcpStream::connect(&addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut extra = TcpStream::connect(&addr).await.unwrap();
    let _ = extra
        .write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let (answer, closed) = read_until_closed(&mut extra, Duration::from_secs(1)).await;
    assert!(
        closed.is_some() && !answer.contains("200 OK"),
        "the connection past the cap is refused: {answer:?}"
    );
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ok = reqwest::get(format!("{url}/api/health")).await.unwrap();
    assert_eq!(
        ok.status(),
        200,
        "connections are accepted again once others close"
    );

    // 5. Sixteen concurrent anonymous 40 MB text parts: the 16 MiB budget of buffered bodies holds,
    //    those past it get 503 (or are cut off), and the server's peak memory grows by far less
    //    than 16 × 40 MB.
    let before = peak_rss(child.id());
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let b = "greedyBoundary";
            let mut body =
                format!("--{b}\r\nContent-Disposition: form-data; name=\"t\"\r\n\r\n").into_bytes();
            body.resize(body.len() + (40 << 20), b'a');
            body.extend_from_slice(format!("\r\n--{b}--\r\n").as_bytes());
            let r = reqwest::Client::new()
                .post(format!("{url}/api/collections/notes/records"))
                .header("content-type", format!("multipart/form-data; boundary={b}"))
                .body(body)
                .send()
                .await;
            r.map(|r| r.status().as_u16()).unwrap_or(0)
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    let grown = peak_rss(child.id()).saturating_sub(before);
    eprintln!(
        "16 × 40 MB text parts: statuses {statuses:?}, peak RSS grew {} MiB",
        grown >> 20
    );
    assert!(
        statuses.iter().all(|s| [0, 413, 503].contains(s)),
        "each is refused, none stored: {statuses:?}"
    );
    assert!(
        statuses.contains(&503),
        "the budget turned some away: {statuses:?}"
    );
    assert!(grown < 200 << 20, "peak RSS grew {} MiB", grown >> 20);
    let ok = reqwest::get(format!("{url}/api/health")).await.unwrap();
    assert_eq!(ok.status(), 200);
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_greedy_clients_sqlite() {
    slow_and_greedy_clients_are_bounded(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_greedy_clients_postgres() {
    slow_and_greedy_clients_are_bounded(Some(fresh_pg().await)).await;
}
