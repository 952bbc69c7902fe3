//! Real third-party peers the auth tests talk to over TCP: a small SMTP server that keeps what it
//! receives, and an OAuth2 provider (authorize → code, token with PKCE check, userinfo).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde_json::{json, Value};
use sha2::Digest;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// An SMTP server on an ephemeral port. Messages are kept raw (headers + body, dot-unstuffed).
pub struct Smtp {
    pub port: u16,
    mails: Arc<Mutex<Vec<String>>>,
}

impl Smtp {
    pub async fn start() -> Smtp {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind smtp");
        let port = l.local_addr().expect("addr").port();
        let mails: Arc<Mutex<Vec<String>>> = Arc::default();
        let m = mails.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = l.accept().await {
                let m = m.clone();
                tokio::spawn(async move {
                    let _ = session(sock, m).await;
                });
            }
        });
        Smtp { port, mails }
    }

    pub fn all(&self) -> Vec<String> {
        self.mails.lock().expect("lock").clone()
    }

    /// The first message for `to` whose text contains `needle` (waits up to 10 s), decoded from
    /// quoted-printable.
    pub async fn wait(&self, to: &str, needle: &str) -> String {
        for _ in 0..200 {
            if let Some(m) = self
                .all()
                .into_iter()
                .map(|m| decode_qp(&m))
                .find(|m| m.contains(&format!("To: {to}")) && m.contains(needle))
            {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "no mail to {to} containing {needle:?}; got {:#?}",
            self.all()
        );
    }
}

fn decode_qp(s: &str) -> String {
    s.replace("=\r\n", "").replace("=3D", "=")
}

async fn session(
    sock: tokio::net::TcpStream,
    mails: Arc<Mutex<Vec<String>>>,
) -> std::io::Result<()> {
    let (r, mut w) = sock.into_split();
    let mut r = BufReader::new(r);
    w.write_all(b"220 test-smtp ESMTP\r\n").await?;
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_ascii_uppercase();
        if cmd.starts_with("EHLO") {
            w.write_all(b"250-test-smtp\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n")
                .await?;
        } else if cmd.starts_with("HELO") {
            w.write_all(b"250 test-smtp\r\n").await?;
        } else if cmd.starts_with("AUTH") {
            w.write_all(b"235 2.7.0 Authentication successful\r\n")
                .await?;
        } else if cmd.starts_with("DATA") {
            w.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                .await?;
            let mut msg = String::new();
            loop {
                line.clear();
                if r.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                let l = line.strip_prefix('.').unwrap_or(&line);
                msg.push_str(l);
            }
            mails.lock().expect("lock").push(msg);
            w.write_all(b"250 2.0.0 queued\r\n").await?;
        } else if cmd.starts_with("QUIT") {
            w.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else {
            w.write_all(b"250 OK\r\n").await?;
        }
    }
}

/// Points the server's SMTP settings at `smtp` (as superuser).
pub async fn use_smtp(app: &crate::helpers::TestApp, smtp: &Smtp) {
    let r = app
        .patch(
            "/api/settings",
            app.su(),
            json!({"smtp": {"enabled": true, "host": "127.0.0.1", "port": smtp.port, "tls": false},
                   "meta": {"appName": "Acme", "appURL": "http://app.test"}}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
}

/// The JWT after `marker` in a mail (e.g. `confirm-verification/`).
pub fn token_after(mail: &str, marker: &str) -> String {
    let i = mail
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} in {mail}"))
        + marker.len();
    mail[i..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
        .collect()
}

/// A provider user (what userinfo returns).
#[derive(Clone)]
pub struct ProviderUser {
    pub sub: String,
    pub email: String,
    pub name: String,
}

#[derive(Default)]
struct ProviderState {
    /// code → (challenge, redirect_uri, sub)
    codes: HashMap<String, (String, String, String)>,
    /// access token → sub
    tokens: HashMap<String, String>,
    users: HashMap<String, ProviderUser>,
    /// sub that the next /authorize signs in as
    next: String,
    /// the client credentials the token endpoint accepts
    client: (String, String),
}

/// An OAuth2 provider (Google-style userinfo) on an ephemeral port.
#[derive(Clone)]
pub struct Provider {
    pub url: String,
    state: Arc<Mutex<ProviderState>>,
}

impl Provider {
    pub async fn start(client_id: &str, client_secret: &str) -> Provider {
        let state = Arc::new(Mutex::new(ProviderState {
            client: (client_id.into(), client_secret.into()),
            ..Default::default()
        }));
        let app = axum::Router::new()
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .route("/userinfo", get(userinfo))
            .route("/huge", get(huge))
            .route("/avatar.png", get(avatar))
            .route("/notion/users/me", get(notion_me))
            .route("/graphql", post(linear_graphql))
            .route("/gitea/user", get(gitea_user))
            .route("/gitea/user/emails", get(gitea_emails))
            .with_state(state.clone());
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind provider");
        let url = format!("http://{}", l.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        Provider { url, state }
    }

    /// Registers the user and makes the next authorization sign in as them.
    pub fn sign_in_as(&self, u: ProviderUser) {
        let mut g = self.state.lock().expect("lock");
        g.next = u.sub.clone();
        g.users.insert(u.sub.clone(), u);
    }

    /// The provider config for a collection's `oauth2.providers`.
    pub fn config(&self, name: &str, client_id: &str, secret: &str) -> Value {
        json!({"name": name, "clientId": client_id, "clientSecret": secret,
               "authURL": format!("{}/authorize", self.url),
               "tokenURL": format!("{}/token", self.url),
               "userInfoURL": format!("{}/userinfo", self.url)})
    }

    /// Follows an authURL (completed with the redirect) like a browser whose user consents: returns
    /// the `code` and `state` the provider redirects with.
    pub async fn authorize(&self, auth_url: &str) -> (String, String) {
        let c = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let r = c.get(auth_url).send().await.expect("authorize");
        assert!(r.status().is_redirection(), "authorize: {}", r.status());
        let loc = r.headers()["location"].to_str().expect("loc").to_string();
        let u = url::Url::parse(&loc).expect("location url");
        let get = |k: &str| {
            u.query_pairs()
                .find(|(kk, _)| kk == k)
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        (get("code"), get("state"))
    }
}

async fn authorize(
    State(st): State<Arc<Mutex<ProviderState>>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut g = st.lock().expect("lock");
    if q.get("client_id") != Some(&g.client.0)
        || q.get("response_type").map(String::as_str) != Some("code")
    {
        return (StatusCode::BAD_REQUEST, "bad client or response_type").into_response();
    }
    let code = basalt_core::id::random_id(20);
    let redirect = q.get("redirect_uri").cloned().unwrap_or_default();
    let challenge = q.get("code_challenge").cloned().unwrap_or_default();
    let sub = g.next.clone();
    g.codes
        .insert(code.clone(), (challenge, redirect.clone(), sub));
    let state = q.get("state").cloned().unwrap_or_default();
    let sep = if redirect.contains('?') { '&' } else { '?' };
    Redirect::to(&format!("{redirect}{sep}code={code}&state={state}")).into_response()
}

async fn token(
    State(st): State<Arc<Mutex<ProviderState>>>,
    headers: HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let mut g = st.lock().expect("lock");
    // client_secret_basic or client_secret_post
    let (id, secret) = match headers.get("authorization").and_then(|v| v.to_str().ok()) {
        Some(h) if h.starts_with("Basic ") => {
            let d = base64::engine::general_purpose::STANDARD
                .decode(&h[6..])
                .unwrap_or_default();
            let s = String::from_utf8(d).unwrap_or_default();
            let (a, b) = s.split_once(':').unwrap_or(("", ""));
            (a.to_string(), b.to_string())
        }
        _ => (
            f.get("client_id").cloned().unwrap_or_default(),
            f.get("client_secret").cloned().unwrap_or_default(),
        ),
    };
    let err = |e: &str| (StatusCode::BAD_REQUEST, axum::Json(json!({"error": e}))).into_response();
    if (id, secret) != g.client {
        return err("invalid_client");
    }
    let Some((challenge, redirect, sub)) = f.get("code").and_then(|c| g.codes.remove(c)) else {
        return err("invalid_grant");
    };
    if f.get("redirect_uri") != Some(&redirect) {
        return err("invalid_grant");
    }
    if !challenge.is_empty() {
        let v = f.get("code_verifier").cloned().unwrap_or_default();
        let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(v.as_bytes()));
        if computed != challenge {
            return err("invalid_grant");
        }
    }
    let access = basalt_core::id::random_id(24);
    g.tokens.insert(access.clone(), sub);
    axum::Json(
        json!({"access_token": access, "token_type": "Bearer", "expires_in": 3600,
                      "refresh_token": "refresh-xyz"}),
    )
    .into_response()
}

/// Notion's userinfo shape; refused without the `Notion-Version` header Notion requires.
async fn notion_me(State(st): State<Arc<Mutex<ProviderState>>>, headers: HeaderMap) -> Response {
    if headers.get("notion-version").and_then(|v| v.to_str().ok()) != Some("2022-06-28") {
        return (StatusCode::BAD_REQUEST, "missing Notion-Version").into_response();
    }
    let Some(u) = bearer_user(&st, &headers) else {
        return (StatusCode::UNAUTHORIZED, "bad token").into_response();
    };
    axum::Json(
        json!({"object": "user", "bot": {"owner": {"type": "user", "user": {
        "id": u.sub, "name": u.name, "avatar_url": null, "person": {"email": u.email}}}}}),
    )
    .into_response()
}

fn bearer_user(st: &Mutex<ProviderState>, headers: &HeaderMap) -> Option<ProviderUser> {
    let g = st.lock().expect("lock");
    let tok = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or("");
    g.tokens.get(tok).and_then(|s| g.users.get(s)).cloned()
}

/// Linear's userinfo: a GraphQL POST asking for the viewer.
async fn linear_graphql(
    State(st): State<Arc<Mutex<ProviderState>>>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let Some(u) = bearer_user(&st, &headers) else {
        return (StatusCode::UNAUTHORIZED, "bad token").into_response();
    };
    if !body["query"].as_str().unwrap_or("").contains("viewer") {
        return (StatusCode::BAD_REQUEST, "no viewer query").into_response();
    }
    axum::Json(
        json!({"data": {"viewer": {"id": u.sub, "displayName": "lin", "name": u.name,
        "email": u.email, "avatarUrl": null, "active": true}}}),
    )
    .into_response()
}

/// Gitea's user (its `email` is not used) and its emails list beside it.
async fn gitea_user(State(st): State<Arc<Mutex<ProviderState>>>, headers: HeaderMap) -> Response {
    let Some(u) = bearer_user(&st, &headers) else {
        return (StatusCode::UNAUTHORIZED, "bad token").into_response();
    };
    axum::Json(
        json!({"id": 7, "login": u.sub, "full_name": u.name, "active": true,
        "email": "not-this@example.com", "avatar_url": ""}),
    )
    .into_response()
}

async fn gitea_emails(State(st): State<Arc<Mutex<ProviderState>>>, headers: HeaderMap) -> Response {
    let Some(u) = bearer_user(&st, &headers) else {
        return (StatusCode::UNAUTHORIZED, "bad token").into_response();
    };
    axum::Json(
        json!([{"email": "old@example.com", "verified": true, "primary": false},
                      {"email": u.email, "verified": true, "primary": true}]),
    )
    .into_response()
}

/// The users' picture: a 3×2 PNG.
pub fn avatar_png() -> Vec<u8> {
    let img = image::RgbImage::from_pixel(3, 2, image::Rgb([200, 40, 40]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("png");
    out.into_inner()
}

async fn avatar() -> Response {
    ([("content-type", "image/png")], avatar_png()).into_response()
}

/// A userinfo answer of 2 MiB (a valid user, padded): over what Basalt reads from a provider.
async fn huge() -> Response {
    axum::Json(json!({"sub": "h", "email": "h@example.com", "pad": "x".repeat(2 << 20)}))
        .into_response()
}

async fn userinfo(State(st): State<Arc<Mutex<ProviderState>>>, headers: HeaderMap) -> Response {
    let Some(u) = bearer_user(&st, &headers) else {
        return (StatusCode::UNAUTHORIZED, "bad token").into_response();
    };
    let host = headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    axum::Json(
        json!({"sub": u.sub, "email": u.email, "email_verified": true, "name": u.name,
                      "picture": format!("http://{host}/avatar.png")}),
    )
    .into_response()
}
