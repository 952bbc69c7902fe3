//! `spawn_app()`: the server on an ephemeral port with its own database, a superuser, and typed helpers.

use std::sync::Arc;

use serde_json::{json, Value};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestApp {
    pub url: String,
    pub client: reqwest::Client,
    pub su: String,
    pub backend: Backend,
    pub ctx: basalt_http::AppCtx,
    /// The PostgreSQL database's URL (`None` on SQLite).
    pub db_url: Option<String>,
    _dir: TempDir,
}

/// A directory removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn random_suffix() -> String {
    basalt_core::id::random_id(12)
}

pub fn pg_base() -> String {
    std::env::var("BASALT_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// A fresh PostgreSQL database; returns its URL.
pub async fn fresh_pg_db() -> String {
    let name = format!("basalt_test_{}", random_suffix());
    let admin = format!("{}/postgres", pg_base());
    let connect = tokio_postgres::connect(&admin, tokio_postgres::NoTls);
    let (client, conn) =
        match tokio::time::timeout(std::time::Duration::from_secs(5), connect).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => panic!("{}", pg_down(&e.to_string())),
            Err(_) => panic!("{}", pg_down("no answer in 5 s")),
        };
    tokio::spawn(conn);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create test database");
    format!("{}/{}", pg_base(), name)
}

/// The one message every PostgreSQL test fails with when the server is not there.
fn pg_down(detail: &str) -> String {
    format!(
        "PostgreSQL is not reachable at {} ({detail}). The suite runs every test on SQLite and on \
         PostgreSQL: start it with `scripts/services.sh` (or `pg_ctlcluster 15 main start`), or point \
         BASALT_TEST_PG at a server (user postgres, trust auth).",
        pg_base()
    )
}

static LOG: std::sync::Once = std::sync::Once::new();

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, basalt_http::Options::default()).await
}

/// [`spawn_app`] with options (event sinks, realtime timings).
pub async fn spawn_app_with(backend: Backend, mut opts: basalt_http::Options) -> TestApp {
    LOG.call_once(|| {
        if std::env::var("TEST_LOG").is_ok() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter("debug")
                .try_init();
        }
    });
    let dir = TempDir(std::env::temp_dir().join(format!("basalt-test-{}", random_suffix())));
    let url = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(fresh_pg_db().await),
    };
    if opts.data_dir.is_none() {
        opts.data_dir = Some(dir.0.clone());
    }
    // The tests' fakes (OAuth2 provider, webhook receivers) listen on loopback, which the egress
    // policy refuses by default; a test of the default policy passes its own allow-list.
    if opts.egress.allow.is_empty() {
        opts.egress.allow = vec!["127.0.0.0/8".into(), "::1".into()];
    }
    let db_url = url.clone();
    let store = basalt_store::open(&dir.0, url.as_deref())
        .await
        .expect("open store");
    let ctx = basalt_http::build_with(store, opts)
        .await
        .expect("bootstrap");
    basalt_service::bootstrap::upsert_superuser(&ctx, "admin@example.com", "password123")
        .await
        .expect("superuser");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let serve_ctx = ctx.clone();
    tokio::spawn(async move {
        let _ = basalt_http::serve(serve_ctx, listener, std::future::pending()).await;
    });
    let client = reqwest::Client::new();
    let url = format!("http://{addr}");
    let mut app = TestApp {
        url,
        client,
        su: String::new(),
        backend,
        ctx,
        db_url,
        _dir: dir,
    };
    let r = app
        .post(
            "/api/collections/_superusers/auth-with-password",
            None,
            json!({"identity": "admin@example.com", "password": "password123"}),
        )
        .await;
    assert_eq!(r.0, 200, "superuser login: {}", r.1);
    app.su = r.1["token"].as_str().expect("token").to_string();
    app
}

pub type Resp = (u16, Value);

impl TestApp {
    async fn send(&self, rb: reqwest::RequestBuilder, token: Option<&str>) -> Resp {
        let rb = match token {
            Some(t) => rb.header("Authorization", t),
            None => rb,
        };
        let res = rb.send().await.expect("request");
        let status = res.status().as_u16();
        let text = res.text().await.expect("body");
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, v)
    }
    pub async fn send_with(&self, rb: reqwest::RequestBuilder) -> Resp {
        self.send(rb, None).await
    }
    pub async fn get(&self, path: &str, token: Option<&str>) -> Resp {
        self.send(self.client.get(format!("{}{path}", self.url)), token)
            .await
    }
    pub async fn get_q(&self, path: &str, token: Option<&str>, q: &[(&str, &str)]) -> Resp {
        self.send(
            self.client.get(format!("{}{path}", self.url)).query(q),
            token,
        )
        .await
    }
    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Resp {
        self.send(
            self.client.post(format!("{}{path}", self.url)).json(&body),
            token,
        )
        .await
    }
    pub async fn patch(&self, path: &str, token: Option<&str>, body: Value) -> Resp {
        self.send(
            self.client.patch(format!("{}{path}", self.url)).json(&body),
            token,
        )
        .await
    }
    pub async fn delete(&self, path: &str, token: Option<&str>) -> Resp {
        self.send(self.client.delete(format!("{}{path}", self.url)), token)
            .await
    }
    pub async fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: Vec<u8>,
    ) -> Resp {
        let rb = self
            .client
            .request(method, format!("{}{path}", self.url))
            .header("content-type", content_type)
            .body(body);
        self.send(rb, token).await
    }
    pub fn su(&self) -> Option<&str> {
        Some(self.su.as_str())
    }

    /// Creates a collection as superuser and returns its JSON (panics on failure).
    pub async fn collection(&self, body: Value) -> Value {
        let r = self.post("/api/collections", self.su(), body).await;
        assert_eq!(r.0, 200, "create collection: {}", r.1);
        r.1
    }
    /// Creates a record as superuser.
    pub async fn record(&self, coll: &str, body: Value) -> Value {
        let r = self
            .post(&format!("/api/collections/{coll}/records"), self.su(), body)
            .await;
        assert_eq!(r.0, 200, "create record: {}", r.1);
        r.1
    }
    /// Signs a user up in `users` and returns (id, token).
    pub async fn user(&self, email: &str) -> (String, String) {
        let r = self
            .post("/api/collections/users/records", None, json!({"email": email, "password": "password123", "passwordConfirm": "password123"}))
            .await;
        assert_eq!(r.0, 200, "sign up: {}", r.1);
        let id = r.1["id"].as_str().expect("id").to_string();
        let a = self
            .post(
                "/api/collections/users/auth-with-password",
                None,
                json!({"identity": email, "password": "password123"}),
            )
            .await;
        assert_eq!(a.0, 200, "login: {}", a.1);
        (id, a.1["token"].as_str().expect("token").to_string())
    }
    /// Ids of a list response, in order.
    pub async fn ids(&self, coll: &str, token: Option<&str>, q: &[(&str, &str)]) -> Vec<String> {
        let r = self
            .get_q(&format!("/api/collections/{coll}/records"), token, q)
            .await;
        assert_eq!(r.0, 200, "list {coll} {q:?}: {}", r.1);
        r.1["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|i| i["id"].as_str().unwrap_or("").to_string())
            .collect()
    }
    pub fn store(&self) -> Arc<dyn basalt_store::Store> {
        self.ctx.store.clone()
    }
}

/// Asserts the protocol's error shape and returns `data`.
pub fn assert_error(r: &Resp, status: u16) -> Value {
    assert_eq!(r.0, status, "expected {status}, got {}: {}", r.0, r.1);
    assert_eq!(r.1["status"], json!(status), "error body: {}", r.1);
    assert!(
        r.1["message"].as_str().is_some_and(|m| m.ends_with('.')),
        "message: {}",
        r.1
    );
    assert!(r.1["data"].is_object(), "data: {}", r.1);
    r.1["data"].clone()
}

/// Generates `mod sqlite` and `mod postgres` with one `#[tokio::test]` per listed async fn
/// taking a `TestApp`.
#[macro_export]
macro_rules! both {
    ($($f:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $f() {
                    super::$f($crate::helpers::spawn_app($crate::helpers::Backend::Sqlite).await).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $f() {
                    super::$f($crate::helpers::spawn_app($crate::helpers::Backend::Postgres).await).await
                }
            )*
        }
    };
}

/// Like [`both!`], for tests that start the app themselves (with options): each function takes the
/// [`Backend`].
#[macro_export]
macro_rules! both_backends {
    ($($f:ident),* $(,)?) => {
        mod sqlite { $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $f() { super::$f($crate::helpers::Backend::Sqlite).await }
        )* }
        mod postgres { $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $f() { super::$f($crate::helpers::Backend::Postgres).await }
        )* }
    };
}
