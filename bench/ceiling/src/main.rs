//! Bare hyper HTTP/1 server: answers every GET with a fixed JSON body.
//!
//! Usage: basalt-bench-ceiling PORT BODY_FILE
//!
//! Single-threaded tokio runtime on purpose: bench/run.sh pins the server to one
//! core, exactly like the servers under test, so this measures what one core can
//! do with hyper alone and no application work. It is the ceiling for Basalt's
//! read-by-id benchmark.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

fn main() {
    let mut args = std::env::args().skip(1);
    let (port, path) = match (args.next(), args.next()) {
        (Some(p), Some(f)) => (p, f),
        _ => {
            eprintln!("usage: basalt-bench-ceiling PORT BODY_FILE");
            std::process::exit(2);
        }
    };
    let port: u16 = port.parse().unwrap_or_else(|_| {
        eprintln!("bad port: {port}");
        std::process::exit(2);
    });
    let body = Bytes::from(std::fs::read(&path).unwrap_or_else(|e| {
        eprintln!("cannot read {path}: {e}");
        std::process::exit(2);
    }));

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("tokio runtime");
    rt.block_on(serve(port, body));
}

async fn serve(port: u16, body: Bytes) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = TcpListener::bind(addr).await.unwrap_or_else(|e| {
        eprintln!("cannot bind {addr}: {e}");
        std::process::exit(1);
    });
    eprintln!("ceiling: listening on http://{addr} ({} byte body)", body.len());
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(_) => continue,
        };
        let _ = stream.set_nodelay(true);
        let body = body.clone();
        tokio::task::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let body = body.clone();
                async move { Ok::<_, Infallible>(respond(&req, body)) }
            });
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn respond(req: &Request<Incoming>, body: Bytes) -> Response<Full<Bytes>> {
    let mut resp = if req.method() == Method::GET {
        Response::new(Full::new(body))
    } else {
        let mut r = Response::new(Full::new(Bytes::from_static(
            br#"{"data":{},"message":"Method not allowed.","status":405}"#,
        )));
        *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        r
    };
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}
