//! OAuth2 / OpenID Connect sign-in (§4): provider listing with PKCE values, the code exchange (the
//! `oauth2` crate), the provider's user (userinfo endpoint, or a verified RS256 `id_token`), linking
//! by external auth → current auth → email, else a new record under createRule; and the popup flow's
//! `/api/oauth2-redirect`, which forwards the code to the realtime client named by `state`.
//!
//! Providers: google, github, gitlab, microsoft, apple, discord, and oidc/oidc2/oidc3 configured by
//! issuer URL (`extra.issuer`, discovery) or by explicit URLs. Any provider's URLs may be overridden
//! per collection (that is how the tests point them at an in-test provider).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use basalt_core::filter::compile::RequestInfo;
use basalt_core::record::Data;
use basalt_core::schema::{Collection, FieldType};
use basalt_core::sql::Value;
use basalt_core::FieldError;
use basalt_events::egress::Egress;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use bytes::Bytes;
use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AuthType, AuthorizationCode, ClientId, ClientSecret, ExtraTokenFields, PkceCodeVerifier,
    RedirectUrl, StandardRevocableToken, StandardTokenResponse, TokenResponse, TokenUrl,
};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value as Json};
use sha2::{Digest, Sha256};

use super::flows::{
    begin_signin, body_str, check_fields, complete_signin, find_by_email, invalid, SignIn, Signin,
};
use crate::error::{bad, ServiceError, ServiceResult};
use crate::limits::SignInMethod;
use crate::records;
use crate::request::Req;
use crate::AppCtx;

const LOADING: &str = "An error occurred while loading the submitted data.";

/// A built-in provider: its endpoints and scopes.
struct Kind {
    name: &'static str,
    display: &'static str,
    auth: &'static str,
    token: &'static str,
    user: &'static str,
    jwks: &'static str,
    issuer: &'static str,
    scopes: &'static [&'static str],
    /// Extra headers of the userinfo request (`{clientId}` is the configured client id).
    headers: &'static [(&'static str, &'static str)],
    /// PKCE by default (a collection's `pkce` overrides it); off where the provider refuses it.
    pkce: bool,
    /// A GraphQL query: the userinfo call is a POST of `{"query": …}` (Linear, monday.com).
    post: &'static str,
}

const OIDC_SCOPES: &[&str] = &["openid", "profile", "email"];

const KINDS: &[Kind] = &[
    Kind {
        name: "google",
        display: "Google",
        auth: "https://accounts.google.com/o/oauth2/v2/auth",
        token: "https://oauth2.googleapis.com/token",
        user: "https://www.googleapis.com/oauth2/v3/userinfo",
        jwks: "",
        issuer: "",
        scopes: &[
            "https://www.googleapis.com/auth/userinfo.profile",
            "https://www.googleapis.com/auth/userinfo.email",
        ],
        headers: &[],
        pkce: true,
        post: "",
    },
    Kind {
        name: "github",
        display: "GitHub",
        auth: "https://github.com/login/oauth/authorize",
        token: "https://github.com/login/oauth/access_token",
        user: "https://api.github.com/user",
        jwks: "",
        issuer: "",
        scopes: &["read:user", "user:email"],
        headers: &[],
        pkce: true,
        post: "",
    },
    Kind {
        name: "gitlab",
        display: "GitLab",
        auth: "https://gitlab.com/oauth/authorize",
        token: "https://gitlab.com/oauth/token",
        user: "https://gitlab.com/api/v4/user",
        jwks: "",
        issuer: "",
        scopes: &["read_user"],
        headers: &[],
        pkce: true,
        post: "",
    },
    Kind {
        name: "microsoft",
        display: "Microsoft",
        auth: "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
        token: "https://login.microsoftonline.com/common/oauth2/v2.0/token",
        user: "https://graph.microsoft.com/v1.0/me",
        jwks: "",
        issuer: "",
        scopes: &["User.Read"],
        headers: &[],
        pkce: true,
        post: "",
    },
    Kind {
        name: "apple",
        display: "Apple",
        auth: "https://appleid.apple.com/auth/authorize",
        token: "https://appleid.apple.com/auth/token",
        user: "",
        jwks: "https://appleid.apple.com/auth/keys",
        issuer: "https://appleid.apple.com",
        scopes: &["name", "email"],
        headers: &[],
        pkce: true,
        post: "",
    },
    Kind {
        name: "discord",
        display: "Discord",
        auth: "https://discord.com/api/oauth2/authorize",
        token: "https://discord.com/api/oauth2/token",
        user: "https://discord.com/api/users/@me",
        jwks: "",
        issuer: "",
        scopes: &["identify", "email"],
        headers: &[],
        pkce: true,
        post: "",
    },
    Kind {
        name: "yandex",
        display: "Yandex",
        auth: "https://oauth.yandex.com/authorize",
        token: "https://oauth.yandex.com/token",
        user: "https://login.yandex.ru/info",
        jwks: "",
        issuer: "",
        scopes: &["login:email", "login:avatar", "login:info"],
        headers: &[],
        pkce: true,
        post: "",
    },
    Kind {
        name: "facebook",
        display: "Facebook",
        auth: "https://www.facebook.com/v3.2/dialog/oauth",
        token: "https://graph.facebook.com/v3.2/oauth/access_token",
        user: "https://graph.facebook.com/me?fields=name,email,picture.type(large)",
        jwks: "",
        issuer: "",
        scopes: &["email"],
        headers: &[],
        pkce: true,
        post: "",
    },
    Kind {
        name: "twitter",
        display: "X/Twitter",
        auth: "https://x.com/i/oauth2/authorize",
        token: "https://api.x.com/2/oauth2/token",
        user: "https://api.x.com/2/users/me?user.fields=id,name,username,profile_image_url,confirmed_email",
        jwks: "",
        issuer: "",
        scopes: &["users.read", "users.email", "tweet.read"],
        headers: &[],
        pkce: true,
        post: "",
    },
    Kind {
        name: "kakao",
        display: "Kakao",
        auth: "https://kauth.kakao.com/oauth/authorize",
        token: "https://kauth.kakao.com/oauth/token",
        user: "https://kapi.kakao.com/v2/user/me",
        jwks: "",
        issuer: "",
        scopes: &["account_email", "profile_nickname", "profile_image"],
        headers: &[],
        pkce: true,
        post: "",
    },
    Kind {
        name: "notion",
        display: "Notion",
        auth: "https://api.notion.com/v1/oauth/authorize",
        token: "https://api.notion.com/v1/oauth/token",
        user: "https://api.notion.com/v1/users/me",
        jwks: "",
        issuer: "",
        scopes: &[],
        headers: &[("Notion-Version", "2022-06-28")],
        pkce: true,
        post: "",
    },
    Kind {
        name: "box",
        display: "Box",
        auth: "https://account.box.com/api/oauth2/authorize",
        token: "https://api.box.com/oauth2/token",
        user: "https://api.box.com/2.0/users/me",
        jwks: "",
        issuer: "",
        scopes: &["root_readonly"],
        headers: &[],
        pkce: true,
        post: "",
    },
    Kind {
        name: "spotify",
        display: "Spotify",
        auth: "https://accounts.spotify.com/authorize",
        token: "https://accounts.spotify.com/api/token",
        user: "https://api.spotify.com/v1/me",
        jwks: "",
        issuer: "",
        scopes: &["user-read-private"],
        headers: &[],
        pkce: true,
        post: "",
    },
    Kind {
        name: "trakt",
        display: "Trakt",
        auth: "https://trakt.tv/oauth/authorize",
        token: "https://api.trakt.tv/oauth/token",
        user: "https://api.trakt.tv/users/settings",
        jwks: "",
        issuer: "",
        scopes: &[],
        headers: &[("Content-Type", "application/json"), ("trakt-api-key", "{clientId}"), ("trakt-api-version", "2")],
        pkce: true,
        post: "",
    },
    Kind {
        name: "twitch",
        display: "Twitch",
        auth: "https://id.twitch.tv/oauth2/authorize",
        token: "https://id.twitch.tv/oauth2/token",
        user: "https://api.twitch.tv/helix/users",
        jwks: "",
        issuer: "",
        scopes: &["user:read:email"],
        headers: &[("Client-Id", "{clientId}")],
        pkce: true,
        post: "",
    },
    Kind {
        name: "patreon",
        display: "Patreon",
        auth: "https://www.patreon.com/oauth2/authorize",
        token: "https://www.patreon.com/api/oauth2/token",
        user: "https://www.patreon.com/api/oauth2/v2/identity?fields%5Buser%5D=full_name,email,vanity,image_url,is_email_verified",
        jwks: "",
        issuer: "",
        scopes: &["identity", "identity[email]"],
        headers: &[],
        pkce: true,
        post: "",
    },
    Kind {
        name: "strava",
        display: "Strava",
        auth: "https://www.strava.com/oauth/authorize",
        token: "https://www.strava.com/api/v3/oauth/token",
        user: "https://www.strava.com/api/v3/athlete",
        jwks: "",
        issuer: "",
        scopes: &["profile:read_all"],
        headers: &[],
        pkce: true,
        post: "",
    },
    Kind {
        name: "wakatime",
        display: "WakaTime",
        auth: "https://wakatime.com/oauth/authorize",
        token: "https://wakatime.com/oauth/token",
        user: "https://wakatime.com/api/v1/users/current",
        jwks: "",
        issuer: "",
        scopes: &["email"],
        headers: &[],
        pkce: true,
        post: "",
    },
    Kind {
        name: "livechat",
        display: "LiveChat",
        auth: "https://accounts.livechat.com/",
        token: "https://accounts.livechat.com/token",
        user: "https://accounts.livechat.com/v2/accounts/me",
        jwks: "",
        issuer: "",
        scopes: &[],
        headers: &[],
        pkce: true,
        post: "",
    },
    Kind {
        name: "planningcenter",
        display: "Planning Center",
        auth: "https://api.planningcenteronline.com/oauth/authorize",
        token: "https://api.planningcenteronline.com/oauth/token",
        user: "https://api.planningcenteronline.com/people/v2/me",
        jwks: "",
        issuer: "",
        scopes: &["people"],
        headers: &[],
        pkce: true,
        post: "",
    },
    Kind {
        name: "instagram2",
        display: "Instagram",
        auth: "https://www.instagram.com/oauth/authorize",
        token: "https://api.instagram.com/oauth/access_token",
        user: "https://graph.instagram.com/me?fields=id,username,account_type,user_id,name,profile_picture_url,followers_count,follows_count,media_count",
        jwks: "",
        issuer: "",
        scopes: &["instagram_business_basic"],
        headers: &[],
        pkce: true,
        post: "",
    },
    Kind {
        name: "bitbucket",
        display: "Bitbucket",
        auth: "https://bitbucket.org/site/oauth2/authorize",
        token: "https://bitbucket.org/site/oauth2/access_token",
        user: "https://api.bitbucket.org/2.0/user",
        jwks: "",
        issuer: "",
        scopes: &["account"],
        headers: &[],
        pkce: false,
        post: "",
    },
    Kind {
        name: "gitee",
        display: "Gitee",
        auth: "https://gitee.com/oauth/authorize",
        token: "https://gitee.com/oauth/token",
        user: "https://gitee.com/api/v5/user",
        jwks: "",
        issuer: "",
        scopes: &["user_info", "emails"],
        headers: &[],
        pkce: true,
        post: "",
    },
    Kind {
        name: "gitea",
        display: "Gitea/Forgejo",
        auth: "https://gitea.com/login/oauth/authorize",
        token: "https://gitea.com/login/oauth/access_token",
        user: "https://gitea.com/api/v1/user",
        jwks: "",
        issuer: "",
        scopes: &["read:user", "user:email"],
        headers: &[],
        pkce: true,
        post: "",
    },
    Kind {
        name: "vk",
        display: "ВКонтакте",
        auth: "https://oauth.vk.com/authorize",
        token: "https://oauth.vk.com/access_token",
        user: "https://api.vk.com/method/users.get?fields=photo_max,screen_name&v=5.131",
        jwks: "",
        issuer: "",
        scopes: &["email"],
        headers: &[],
        pkce: false,
        post: "",
    },
    Kind {
        name: "linear",
        display: "Linear",
        auth: "https://linear.app/oauth/authorize",
        token: "https://api.linear.app/oauth/token",
        user: "https://api.linear.app/graphql",
        jwks: "",
        issuer: "",
        scopes: &["read"],
        headers: &[],
        pkce: false,
        post: "query Me { viewer { id displayName name email avatarUrl active } }",
    },
    Kind {
        name: "monday",
        display: "monday.com",
        auth: "https://auth.monday.com/oauth2/authorize",
        token: "https://auth.monday.com/oauth2/token",
        user: "https://api.monday.com/v2",
        jwks: "",
        issuer: "",
        scopes: &["me:read"],
        headers: &[],
        pkce: true,
        post: "query { me { id enabled name email is_verified photo_small }}",
    },
    Kind {
        name: "lark",
        display: "Lark",
        auth: "https://accounts.feishu.cn/open-apis/authen/v1/authorize",
        token: "https://open.feishu.cn/open-apis/authen/v2/oauth/token",
        user: "https://open.feishu.cn/open-apis/authen/v1/user_info",
        jwks: "",
        issuer: "",
        scopes: &[],
        headers: &[],
        pkce: true,
        post: "",
    },
    Kind {
        name: "mailcow",
        display: "mailcow",
        auth: "",
        token: "",
        user: "",
        jwks: "",
        issuer: "",
        scopes: &["profile"],
        headers: &[],
        pkce: true,
        post: "",
    },
    Kind {
        name: "oidc",
        display: "OpenID Connect",
        auth: "",
        token: "",
        user: "",
        jwks: "",
        issuer: "",
        scopes: OIDC_SCOPES,
        headers: &[],
        pkce: true,
        post: "",
    },
    Kind {
        name: "oidc2",
        display: "OpenID Connect (2)",
        auth: "",
        token: "",
        user: "",
        jwks: "",
        issuer: "",
        scopes: OIDC_SCOPES,
        headers: &[],
        pkce: true,
        post: "",
    },
    Kind {
        name: "oidc3",
        display: "OpenID Connect (3)",
        auth: "",
        token: "",
        user: "",
        jwks: "",
        issuer: "",
        scopes: OIDC_SCOPES,
        headers: &[],
        pkce: true,
        post: "",
    },
];

fn kind(name: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.name == name)
}

/// The names of the built-in providers (collection validation and `meta/oauth2-providers`).
pub fn provider_list() -> Json {
    let mut kinds: Vec<&Kind> = KINDS.iter().collect();
    kinds.sort_by_key(|k| {
        ORDER
            .iter()
            .position(|n| *n == k.name)
            .unwrap_or(usize::MAX)
    });
    Json::Array(
        kinds
            .into_iter()
            .map(|k| json!({"name": k.name, "displayName": k.display, "logo": ""}))
            .collect(),
    )
}

/// PocketBase's order of its providers (its `order` field); Basalt lists the ones it has in it.
const ORDER: &[&str] = &[
    "apple",
    "google",
    "microsoft",
    "yandex",
    "facebook",
    "instagram2",
    "github",
    "gitlab",
    "bitbucket",
    "gitee",
    "gitea",
    "discord",
    "twitter",
    "kakao",
    "vk",
    "linear",
    "notion",
    "monday",
    "lark",
    "box",
    "spotify",
    "trakt",
    "twitch",
    "patreon",
    "strava",
    "wakatime",
    "livechat",
    "mailcow",
    "planningcenter",
    "oidc",
    "oidc2",
    "oidc3",
];

pub fn is_known_provider(name: &str) -> bool {
    kind(name).is_some()
}

/// A provider as configured on a collection, with its endpoints resolved.
struct Provider {
    kind: &'static Kind,
    name: String,
    display: String,
    client_id: String,
    client_secret: String,
    pkce: bool,
    auth: String,
    token: String,
    user: String,
    jwks: String,
    issuers: Vec<String>,
}

fn oauth2_options(coll: &Collection) -> Option<&Json> {
    coll.auth.as_ref().and_then(|a| a.extra.get("oauth2"))
}

/// The most a provider's answer (token, userinfo, emails, discovery, JWKS) may hold: every one of
/// them is a few kilobytes; past this the sign-in fails instead of the server buffering it.
const MAX_PROVIDER_BODY: usize = 1 << 20;

/// A provider's answer body, read up to [`MAX_PROVIDER_BODY`].
async fn capped_body(mut res: reqwest::Response) -> Result<Vec<u8>, String> {
    if res
        .content_length()
        .is_some_and(|n| n > MAX_PROVIDER_BODY as u64)
    {
        return Err(format!(
            "the provider's answer is over {MAX_PROVIDER_BODY} bytes"
        ));
    }
    let mut out = Vec::new();
    while let Some(chunk) = res.chunk().await.map_err(|e| e.to_string())? {
        if out.len() + chunk.len() > MAX_PROVIDER_BODY {
            return Err(format!(
                "the provider's answer is over {MAX_PROVIDER_BODY} bytes"
            ));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// A successful provider answer as JSON (bounded by [`capped_body`]).
async fn provider_json(res: Result<reqwest::Response, reqwest::Error>) -> Result<Json, String> {
    let res = res
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| e.to_string())?;
    serde_json::from_slice(&capped_body(res).await?).map_err(|e| e.to_string())
}

/// The token exchange's HTTP client: the egress client, with the answer read by [`capped_body`]
/// (the oauth2 crate's own reqwest glue reads any size).
async fn token_request(
    http: &Egress,
    req: oauth2::HttpRequest,
) -> Result<oauth2::HttpResponse, std::io::Error> {
    let io = |e: String| std::io::Error::other(e);
    let (parts, body) = req.into_parts();
    let res = http
        .client()
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await
        .map_err(|e| io(e.to_string()))?;
    let (status, headers) = (res.status(), res.headers().clone());
    let mut out = oauth2::HttpResponse::new(capped_body(res).await.map_err(io)?);
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    Ok(out)
}

/// [`token_request`] as the oauth2 crate's client.
struct TokenClient<'a>(&'a Egress);

impl<'c> oauth2::AsyncHttpClient<'c> for TokenClient<'_> {
    type Error = std::io::Error;
    type Future = std::pin::Pin<
        Box<
            dyn std::future::Future<Output = Result<oauth2::HttpResponse, std::io::Error>>
                + Send
                + 'c,
        >,
    >;
    fn call(&'c self, request: oauth2::HttpRequest) -> Self::Future {
        Box::pin(token_request(self.0, request))
    }
}

/// Fetched JSON documents (OIDC discovery, JWKS), kept ten minutes.
fn cache() -> &'static Mutex<HashMap<String, (Instant, Json)>> {
    static C: OnceLock<Mutex<HashMap<String, (Instant, Json)>>> = OnceLock::new();
    C.get_or_init(Default::default)
}

async fn fetch_json_cached(http: &Egress, url: &str) -> Result<Json, String> {
    http.check_url(url)?;
    if let Some((at, v)) = cache()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(url)
        .cloned()
    {
        if at.elapsed() < Duration::from_secs(600) {
            return Ok(v);
        }
    }
    let v = provider_json(
        http.client()
            .get(url)
            .header("Accept", "application/json")
            .send()
            .await,
    )
    .await?;
    cache()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(url.to_string(), (Instant::now(), v.clone()));
    Ok(v)
}

async fn resolve(http: &Egress, cfg: &Json) -> Result<Provider, String> {
    let name = cfg["name"].as_str().unwrap_or("").to_string();
    let k = kind(&name).ok_or_else(|| format!("unknown provider {name}"))?;
    let get = |key: &str, default: &str| -> String {
        match cfg[key].as_str() {
            Some(s) if !s.is_empty() => s.to_string(),
            _ => default.to_string(),
        }
    };
    let mut p = Provider {
        kind: k,
        display: get("displayName", k.display),
        client_id: get("clientId", ""),
        client_secret: get("clientSecret", ""),
        pkce: cfg["pkce"].as_bool().unwrap_or(k.pkce),
        auth: get("authURL", k.auth),
        token: get("tokenURL", k.token),
        user: get("userInfoURL", k.user),
        jwks: cfg["extra"]["jwksURL"]
            .as_str()
            .unwrap_or(k.jwks)
            .to_string(),
        issuers: if k.issuer.is_empty() {
            vec![]
        } else {
            vec![k.issuer.to_string()]
        },
        name,
    };
    if let Some(list) = cfg["extra"]["issuers"].as_array() {
        p.issuers
            .extend(list.iter().filter_map(|v| v.as_str().map(str::to_string)));
    }
    let issuer = cfg["extra"]["issuer"]
        .as_str()
        .unwrap_or("")
        .trim_end_matches('/');
    if !issuer.is_empty() {
        let d =
            fetch_json_cached(http, &format!("{issuer}/.well-known/openid-configuration")).await?;
        let from = |slot: &mut String, key: &str| {
            if slot.is_empty() {
                *slot = d[key].as_str().unwrap_or("").to_string();
            }
        };
        from(&mut p.auth, "authorization_endpoint");
        from(&mut p.token, "token_endpoint");
        from(&mut p.user, "userinfo_endpoint");
        from(&mut p.jwks, "jwks_uri");
        p.issuers
            .push(d["issuer"].as_str().unwrap_or(issuer).to_string());
    }
    if p.auth.is_empty() || p.token.is_empty() {
        return Err(format!(
            "provider {} has no authorization/token endpoint (set authURL and tokenURL, or extra.issuer)",
            p.name
        ));
    }
    Ok(p)
}

fn enabled_providers(coll: &Collection) -> Vec<Json> {
    let Some(o) = oauth2_options(coll) else {
        return vec![];
    };
    if !o["enabled"].as_bool().unwrap_or(false) {
        return vec![];
    }
    o["providers"].as_array().cloned().unwrap_or_default()
}

fn random_string(n: usize) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut r = rand::thread_rng();
    (0..n)
        .map(|_| char::from(A[r.gen_range(0..A.len())]))
        .collect()
}

/// The `oauth2.providers` of auth-methods: each with a fresh state and PKCE pair, and an authURL
/// ending in `&redirect_uri=` for the client to complete.
pub async fn providers_for_methods(http: &Egress, coll: &Collection) -> Vec<Json> {
    let mut out = Vec::new();
    for cfg in enabled_providers(coll) {
        let p = match resolve(http, &cfg).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(collection = %coll.name, error = %e, "oauth2 provider skipped");
                continue;
            }
        };
        let state = random_string(30);
        let verifier = random_string(43);
        let challenge = B64.encode(Sha256::digest(verifier.as_bytes()));
        let Ok(mut url) = url::Url::parse(&p.auth) else {
            continue;
        };
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("client_id", &p.client_id);
            if p.pkce {
                q.append_pair("code_challenge", &challenge);
                q.append_pair("code_challenge_method", "S256");
            }
            if p.kind.name == "apple" {
                q.append_pair("response_mode", "form_post");
            }
            q.append_pair("response_type", "code");
            // As golang's oauth2 (PocketBase): no `scope` when the provider has none.
            if !p.kind.scopes.is_empty() {
                q.append_pair("scope", &p.kind.scopes.join(" "));
            }
            q.append_pair("state", &state);
        }
        let auth_url = format!("{url}&redirect_uri=");
        let (verifier, challenge, method) = if p.pkce {
            (verifier, challenge, "S256")
        } else {
            (String::new(), String::new(), "")
        };
        out.push(json!({
            "authURL": auth_url,
            "authUrl": auth_url,
            "logo": "",
            "codeChallenge": challenge,
            "codeChallengeMethod": method,
            "codeVerifier": verifier,
            "displayName": p.display,
            "name": p.name,
            "pkce": p.pkce,
            "state": state,
        }));
    }
    out
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
struct IdTokenFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
    /// VK sends the user's email with the token, not in the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    email: Option<Json>,
    /// Instagram's granted permissions, copied into the raw user as PocketBase does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    permissions: Option<Json>,
}
impl ExtraTokenFields for IdTokenFields {}

type TokenResp = StandardTokenResponse<IdTokenFields, BasicTokenType>;

/// What the provider says about the user.
#[derive(Default, Debug)]
struct AuthUser {
    id: String,
    name: String,
    username: String,
    email: String,
    avatar: String,
    raw: Json,
    /// Whether the provider vouches for the email (only then may it link to an existing account or
    /// mark a new one verified).
    email_trusted: bool,
}

/// The string (or number, as decimal) at a dotted path: `data.0.id`, `bot.owner.user.name`.
fn jpath(v: &Json, path: &str) -> String {
    let mut cur = v;
    for part in path.split('.') {
        cur = match part.parse::<usize>() {
            Ok(i) if cur.is_array() => &cur[i],
            _ => &cur[part],
        };
    }
    match cur {
        Json::String(s) => s.clone(),
        Json::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

fn jstr(v: &Json, k: &str) -> String {
    match &v[k] {
        Json::String(s) => s.clone(),
        Json::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

/// Verifies an RS256 JWT against a JWKS (ring) and returns its claims: signature, `exp`, `aud`
/// (contains the client id) and `iss` (one of `issuers`, when any is known).
fn verify_id_token(token: &str, jwks: &Json, client_id: &str, issuers: &[String]) -> Option<Json> {
    let mut parts = token.split('.');
    let (h, p, sig) = (parts.next()?, parts.next()?, parts.next()?);
    let header: Json = serde_json::from_slice(&B64.decode(h).ok()?).ok()?;
    if header["alg"].as_str() != Some("RS256") {
        return None;
    }
    let kid = header["kid"].as_str();
    let keys = jwks["keys"].as_array()?;
    let key = keys
        .iter()
        .filter(|k| k["kty"].as_str() == Some("RSA"))
        .find(|k| kid.is_none_or(|kid| k["kid"].as_str() == Some(kid)))?;
    let n = B64.decode(key["n"].as_str()?).ok()?;
    let e = B64.decode(key["e"].as_str()?).ok()?;
    let sig = B64.decode(sig).ok()?;
    ring::signature::RsaPublicKeyComponents { n: &n, e: &e }
        .verify(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            format!("{h}.{p}").as_bytes(),
            &sig,
        )
        .ok()?;
    let claims: Json = serde_json::from_slice(&B64.decode(p).ok()?).ok()?;
    if claims["exp"].as_i64()? <= chrono::Utc::now().timestamp() {
        return None;
    }
    let aud_ok = match &claims["aud"] {
        Json::String(a) => a == client_id,
        Json::Array(a) => a.iter().any(|x| x.as_str() == Some(client_id)),
        _ => false,
    };
    if !aud_ok {
        return None;
    }
    if !issuers.is_empty() {
        let iss = claims["iss"].as_str().unwrap_or("");
        if !issuers
            .iter()
            .any(|i| i.trim_end_matches('/') == iss.trim_end_matches('/'))
        {
            return None;
        }
    }
    Some(claims)
}

async fn fetch_user(
    http: &Egress,
    p: &Provider,
    access: &str,
    id_token: Option<&str>,
) -> Result<AuthUser, String> {
    let raw: Json = if !p.user.is_empty() {
        http.check_url(&p.user)?;
        let mut req = if p.kind.post.is_empty() {
            http.client().get(&p.user)
        } else {
            http.client()
                .post(&p.user)
                .json(&json!({"query": p.kind.post}))
        }
        .bearer_auth(access)
        .header("Accept", "application/json");
        for (k, v) in p.kind.headers {
            req = req.header(
                *k,
                if *v == "{clientId}" {
                    p.client_id.as_str()
                } else {
                    v
                },
            );
        }
        provider_json(req.send().await).await?
    } else {
        let t = id_token.ok_or("the provider returned no id_token")?;
        if p.jwks.is_empty() {
            return Err("no userinfo endpoint and no JWKS to verify the id_token".into());
        }
        let jwks = fetch_json_cached(http, &p.jwks).await?;
        verify_id_token(t, &jwks, &p.client_id, &p.issuers).ok_or("invalid id_token")?
    };
    let mut u = map_user(p.kind.name, raw);
    let emails = |url: String| async move {
        provider_json(
            http.client()
                .get(&url)
                .bearer_auth(access)
                .header("Accept", "application/json")
                .send()
                .await,
        )
        .await
        .ok()
    };
    let beside = format!("{}/emails", p.user.trim_end_matches('/'));
    match p.kind.name {
        // The first primary, confirmed address (an error or a private list: none).
        "bitbucket" => {
            if let Some(list) = emails(beside).await {
                u.email = first_email(&list["values"], |e| {
                    e["is_primary"] == json!(true) && e["is_confirmed"] == json!(true)
                });
            }
        }
        // The verified primary address (GitHub: never the profile's).
        "github" | "gitea" => {
            if let Some(list) = emails(beside).await {
                u.email = first_email(&list, verified_primary);
            }
        }
        "gitee" if u.email.is_empty() => {
            if let Some(list) = emails("https://gitee.com/api/v5/emails".into()).await {
                u.email = first_email(&list, |e| {
                    e["state"] == json!("confirmed")
                        && e["scope"]
                            .as_array()
                            .is_some_and(|s| s.contains(&json!("primary")))
                });
            }
        }
        _ => {}
    }
    u.email_trusted = !u.email.is_empty() && p.kind.name != "microsoft";
    if u.id.is_empty() {
        return Err("the provider's user has no id".into());
    }
    Ok(u)
}

/// The `email` of the first entry of a list that `ok` accepts and that looks like an address.
fn first_email(list: &Json, ok: impl Fn(&Json) -> bool) -> String {
    list.as_array()
        .and_then(|l| l.iter().find(|e| ok(e) && jstr(e, "email").contains('@')))
        .map(|e| jstr(e, "email"))
        .unwrap_or_default()
}

/// What a provider sends with the token rather than with the user: VK's email, Instagram's
/// permissions.
fn token_extras(u: &mut AuthUser, kind: &str, extra: &IdTokenFields) {
    if kind == "vk" {
        if let Some(e) = &extra.email {
            u.email = match e {
                Json::String(s) => s.clone(),
                other => other.to_string(),
            };
            u.email_trusted = !u.email.is_empty();
        }
    }
    if kind == "instagram2" && u.raw.get("permissions").is_none() {
        if let (Some(p), Some(o)) = (&extra.permissions, u.raw.as_object_mut()) {
            o.insert("permissions".into(), p.clone());
        }
    }
}

/// The provider's user JSON → the protocol's user fields, per provider.
fn map_user(kind: &str, raw: Json) -> AuthUser {
    let mut u = AuthUser::default();
    match kind {
        "github" | "gitlab" => {
            u.id = jstr(&raw, "id");
            u.name = jstr(&raw, "name");
            u.username = jstr(
                &raw,
                if kind == "github" {
                    "login"
                } else {
                    "username"
                },
            );
            // GitHub: the verified primary address from `/user/emails` (fetch_user), never the
            // profile's; GitLab: only a confirmed address (as PocketBase 0.37.4+).
            let confirmed = chrono::DateTime::parse_from_rfc3339(&jstr(&raw, "confirmed_at"))
                .is_ok_and(|t| t.timestamp() > 0);
            if kind == "gitlab" && confirmed {
                u.email = jstr(&raw, "email");
            }
            u.avatar = jstr(&raw, "avatar_url");
        }
        "microsoft" => {
            u.id = jstr(&raw, "id");
            u.name = jstr(&raw, "displayName");
            u.email = jstr(&raw, "mail");
            if u.email.is_empty() {
                u.email = jstr(&raw, "userPrincipalName");
            }
            // Any tenant admin can set `mail`/UPN to any address ("nOAuth"): never trusted.
            u.email_trusted = false;
            u.raw = raw;
            return u;
        }
        "discord" => {
            u.id = jstr(&raw, "id");
            u.username = jstr(&raw, "username");
            u.name = jstr(&raw, "global_name");
            if u.name.is_empty() {
                u.name = u.username.clone();
            }
            if raw["verified"].as_bool() == Some(true) {
                u.email = jstr(&raw, "email");
            }
            let avatar = jstr(&raw, "avatar");
            if !avatar.is_empty() {
                u.avatar = format!("https://cdn.discordapp.com/avatars/{}/{avatar}.png", u.id);
            }
        }
        // The rest as PocketBase's `tools/auth` maps them (docs/oauth2-providers-research.md):
        // (id, name, username, email, avatar) paths, and when the email counts.
        "yandex" => {
            (u.id, u.name, u.username) = (
                jstr(&raw, "id"),
                jstr(&raw, "real_name"),
                jstr(&raw, "login"),
            );
            u.email = jstr(&raw, "default_email");
            if raw["is_avatar_empty"] == json!(false) {
                u.avatar = format!(
                    "https://avatars.yandex.net/get-yapic/{}/islands-200",
                    jstr(&raw, "default_avatar_id")
                );
            }
        }
        "facebook" => {
            (u.id, u.name, u.email) = (jstr(&raw, "id"), jstr(&raw, "name"), jstr(&raw, "email"));
            u.avatar = jpath(&raw, "picture.data.url");
        }
        "twitter" => {
            (u.id, u.name, u.username) = (
                jpath(&raw, "data.id"),
                jpath(&raw, "data.name"),
                jpath(&raw, "data.username"),
            );
            u.email = jpath(&raw, "data.confirmed_email");
            u.avatar = jpath(&raw, "data.profile_image_url");
        }
        "kakao" => {
            u.id = jstr(&raw, "id");
            u.username = jpath(&raw, "properties.nickname");
            u.avatar = jpath(&raw, "properties.profile_image");
            let a = &raw["kakao_account"];
            if a["is_email_valid"] == json!(true) && a["is_email_verified"] == json!(true) {
                u.email = jstr(a, "email");
            }
        }
        "notion" => {
            let o = &raw["bot"]["owner"]["user"];
            (u.id, u.name, u.email) = (jstr(o, "id"), jstr(o, "name"), jpath(o, "person.email"));
            u.avatar = jstr(o, "avatar_url");
        }
        "box" if raw["status"] == json!("active") => {
            (u.id, u.name, u.avatar) = (
                jstr(&raw, "id"),
                jstr(&raw, "name"),
                jstr(&raw, "avatar_url"),
            );
            u.email = jstr(&raw, "login");
        }
        "spotify" => {
            (u.id, u.name) = (jstr(&raw, "id"), jstr(&raw, "display_name"));
            u.avatar = jpath(&raw, "images.0.url");
        }
        "trakt" => {
            (u.id, u.name, u.username) = (
                jpath(&raw, "user.ids.uuid"),
                jpath(&raw, "user.name"),
                jpath(&raw, "user.username"),
            );
            u.avatar = jpath(&raw, "user.images.avatar.full");
        }
        "twitch" => {
            let d = &raw["data"][0];
            (u.id, u.name, u.username) = (jstr(d, "id"), jstr(d, "display_name"), jstr(d, "login"));
            (u.email, u.avatar) = (jstr(d, "email"), jstr(d, "profile_image_url"));
        }
        "patreon" => {
            let a = &raw["data"]["attributes"];
            (u.id, u.name, u.username) = (
                jpath(&raw, "data.id"),
                jstr(a, "full_name"),
                jstr(a, "vanity"),
            );
            u.avatar = jstr(a, "image_url");
            if a["is_email_verified"] == json!(true) {
                u.email = jstr(a, "email");
            }
        }
        "strava" => {
            if raw["id"].as_i64().unwrap_or(0) != 0 {
                u.id = jstr(&raw, "id");
            }
            u.name = format!("{} {}", jstr(&raw, "firstname"), jstr(&raw, "lastname"));
            (u.username, u.avatar) = (jstr(&raw, "username"), jstr(&raw, "profile"));
        }
        "wakatime" => {
            let d = &raw["data"];
            (u.id, u.name, u.username) =
                (jstr(d, "id"), jstr(d, "display_name"), jstr(d, "username"));
            if d["is_email_confirmed"] == json!(true) {
                u.email = jstr(d, "email");
            }
            if d["photo_public"] == json!(true) {
                u.avatar = jstr(d, "photo");
            }
        }
        "livechat" => {
            (u.id, u.name, u.avatar) = (
                jstr(&raw, "account_id"),
                jstr(&raw, "name"),
                jstr(&raw, "avatar_url"),
            );
            if raw["email_verified"] == json!(true) {
                u.email = jstr(&raw, "email");
            }
        }
        "planningcenter" if jpath(&raw, "data.attributes.status") == "active" => {
            let a = &raw["data"]["attributes"];
            (u.id, u.name, u.avatar) = (jpath(&raw, "data.id"), jstr(a, "name"), jstr(a, "avatar"));
        }
        "instagram2" => {
            (u.id, u.name, u.username) = (
                jstr(&raw, "user_id"),
                jstr(&raw, "name"),
                jstr(&raw, "username"),
            );
            u.avatar = jstr(&raw, "profile_picture_url");
        }
        "bitbucket" if raw["account_status"] == json!("active") => {
            (u.id, u.name, u.username) = (
                jstr(&raw, "uuid"),
                jstr(&raw, "display_name"),
                jstr(&raw, "username"),
            );
            u.avatar = jpath(&raw, "links.avatar.href");
        }
        "gitee" => {
            (u.id, u.name, u.username) =
                (jstr(&raw, "id"), jstr(&raw, "name"), jstr(&raw, "login"));
            u.avatar = jstr(&raw, "avatar_url");
            let e = jstr(&raw, "email");
            if e.contains('@') {
                u.email = e;
            }
        }
        "gitea" if raw["active"] == json!(true) => {
            (u.id, u.name, u.username) = (
                jstr(&raw, "id"),
                jstr(&raw, "full_name"),
                jstr(&raw, "login"),
            );
            u.avatar = jstr(&raw, "avatar_url");
        }
        "vk" => {
            let r = &raw["response"][0];
            u.id = jstr(r, "id");
            u.name = format!("{} {}", jstr(r, "first_name"), jstr(r, "last_name"))
                .trim()
                .to_string();
            (u.username, u.avatar) = (jstr(r, "screen_name"), jstr(r, "photo_max"));
        }
        "linear" if raw["data"]["viewer"]["active"] == json!(true) => {
            let v = &raw["data"]["viewer"];
            (u.id, u.name, u.username) = (jstr(v, "id"), jstr(v, "name"), jstr(v, "displayName"));
            (u.email, u.avatar) = (jstr(v, "email"), jstr(v, "avatarUrl"));
        }
        "monday" if raw["data"]["me"]["enabled"] == json!(true) => {
            let m = &raw["data"]["me"];
            (u.id, u.name, u.avatar) = (jstr(m, "id"), jstr(m, "name"), jstr(m, "photo_small"));
            if m["is_verified"] == json!(true) {
                u.email = jstr(m, "email");
            }
        }
        "lark" => {
            let d = &raw["data"];
            (u.id, u.name, u.avatar) =
                (jstr(d, "union_id"), jstr(d, "name"), jstr(d, "avatar_url"));
        }
        "mailcow" if raw["active"] == json!(1) => {
            (u.id, u.name, u.email) = (
                jstr(&raw, "id"),
                jstr(&raw, "full_name"),
                jstr(&raw, "email"),
            );
            let name = jstr(&raw, "username");
            u.username = name.split('@').next().unwrap_or("").to_string();
        }
        // An inactive account: no user (the sign-in fails: no id).
        "box" | "planningcenter" | "bitbucket" | "gitea" | "linear" | "monday" | "mailcow" => {}
        _ => {
            // google, apple, oidc*: OpenID claims; an email the provider marks unverified is dropped.
            u.id = jstr(&raw, "sub");
            u.name = jstr(&raw, "name");
            u.username = jstr(&raw, "preferred_username");
            let verified =
                raw["email_verified"] == json!(true) || raw["email_verified"] == json!("true");
            if verified {
                u.email = jstr(&raw, "email");
            }
            u.avatar = jstr(&raw, "picture");
        }
    }
    u.email_trusted = !u.email.is_empty();
    u.raw = raw;
    u
}

/// GitHub's `/user/emails`: the primary address, if verified.
/// An emails-list entry that is the account's primary address and verified (GitHub, Gitea).
fn verified_primary(e: &Json) -> bool {
    e["primary"] == json!(true) && e["verified"] == json!(true)
}

fn oauth_fail(msg: &str, detail: impl std::fmt::Display) -> ServiceError {
    tracing::info!(error = %detail, "{msg}");
    bad(msg)
}

/// `POST /api/collections/{c}/auth-with-oauth2`
/// `{provider, code, codeVerifier, redirectURL, createData?, mfaId?}`.
pub async fn auth_with_oauth2(
    ctx: &AppCtx,
    req: &Req,
    c: &str,
    body: &Json,
) -> ServiceResult<SignIn> {
    let res = auth_with_oauth2_inner(ctx, req, c, body).await;
    ctx.metrics.signin("oauth2", super::signin_outcome(&res));
    res
}

async fn auth_with_oauth2_inner(
    ctx: &AppCtx,
    req: &Req,
    c: &str,
    body: &Json,
) -> ServiceResult<SignIn> {
    let coll = begin_signin(ctx, req, c, SignInMethod::OAuth2).await?;
    if oauth2_options(&coll).is_none_or(|o| o["enabled"].as_bool() != Some(true)) {
        return Err(crate::error::forbidden(
            "The collection is not configured to allow OAuth2 authentication.",
        ));
    }
    let provider = body_str(body, "provider");
    let code = body_str(body, "code");
    let mut redirect = body_str(body, "redirectURL");
    if redirect.is_empty() {
        redirect = body_str(body, "redirectUrl");
    }
    let mut errs = basalt_core::FieldErrors::new();
    for (k, v) in [
        ("provider", &provider),
        ("code", &code),
        ("redirectURL", &redirect),
    ] {
        if v.is_empty() {
            errs.insert(k.into(), FieldError::required());
        }
    }
    if !errs.is_empty() {
        return Err(ServiceError(basalt_core::Error::validation(LOADING, errs)));
    }
    let cfg = enabled_providers(&coll)
        .into_iter()
        .find(|p| p["name"].as_str() == Some(provider.as_str()))
        .ok_or_else(|| {
            let mut f = basalt_core::FieldErrors::new();
            f.insert(
                "provider".into(),
                FieldError::new(
                    basalt_core::codes::INVALID_PROVIDER,
                    format!("Provider with name {provider} is missing or is not enabled."),
                )
                .with_params(json!({"name": provider})),
            );
            ServiceError(basalt_core::Error::validation(LOADING, f))
        })?;
    let p = resolve(&ctx.egress, &cfg)
        .await
        .map_err(|e| oauth_fail("Failed to fetch OAuth2 token.", e))?;
    ctx.egress
        .check_url(&p.token)
        .map_err(|e| oauth_fail("Failed to fetch OAuth2 token.", e))?;
    // The code exchange.
    let token_url = TokenUrl::new(p.token.clone())
        .map_err(|e| oauth_fail("Failed to fetch OAuth2 token.", e))?;
    let redirect_url = RedirectUrl::new(redirect.clone()).map_err(|_| {
        invalid(
            "redirectURL",
            FieldError::new(basalt_core::codes::IS_URL, "Must be a valid url."),
        )
    })?;
    let oc = oauth2::Client::<
        BasicErrorResponse,
        TokenResp,
        BasicTokenIntrospectionResponse,
        StandardRevocableToken,
        BasicRevocationErrorResponse,
    >::new(ClientId::new(p.client_id.clone()))
    .set_client_secret(ClientSecret::new(p.client_secret.clone()))
    .set_token_uri(token_url)
    .set_redirect_uri(redirect_url)
    .set_auth_type(AuthType::RequestBody);
    let mut exchange = oc.exchange_code(AuthorizationCode::new(code));
    let verifier = body_str(body, "codeVerifier");
    if p.pkce && !verifier.is_empty() {
        exchange = exchange.set_pkce_verifier(PkceCodeVerifier::new(verifier));
    }
    let tok = exchange
        .request_async(&TokenClient(&ctx.egress))
        .await
        .map_err(|e| oauth_fail("Failed to fetch OAuth2 token.", format!("{e:?}")))?;
    let access = tok.access_token().secret().clone();
    let id_token = tok.extra_fields().id_token.clone();
    let user = fetch_user(&ctx.egress, &p, &access, id_token.as_deref())
        .await
        .map(|mut u| {
            token_extras(&mut u, p.kind.name, tok.extra_fields());
            u
        })
        .map_err(|e| oauth_fail("Failed to fetch OAuth2 user.", e))?;
    let expiry = tok
        .expires_in()
        .and_then(|d| chrono::Duration::from_std(d).ok())
        .map(|d| basalt_core::time::format(chrono::Utc::now() + d))
        .unwrap_or_default();
    let create_data: Data = match body.get("createData") {
        Some(Json::Object(m)) => m.clone(),
        _ => Data::new(),
    };
    let (rec, is_new) = link_or_create(ctx, &coll, &p.name, &user, req, create_data).await?;
    let meta = json!({
        "accessToken": access,
        "avatarURL": user.avatar,
        "avatarUrl": user.avatar,
        "email": user.email,
        "expiry": expiry,
        "id": user.id,
        "isNew": is_new,
        "name": user.name,
        "rawUser": user.raw,
        "refreshToken": tok.refresh_token().map(|r| r.secret().clone()).unwrap_or_default(),
        "username": user.username,
    });
    complete_signin(
        ctx,
        req,
        Signin {
            coll: &coll,
            rec,
            method: SignInMethod::OAuth2,
            mfa_id: super::mfa::mfa_id_of(body, &req.query),
            meta: Some(meta),
        },
    )
    .await
}

async fn external_auth_owner(
    ctx: &AppCtx,
    coll: &Collection,
    provider: &str,
    provider_id: &str,
) -> ServiceResult<Option<String>> {
    let mut s = ctx.sql();
    s.push("SELECT \"recordRef\" FROM \"_externalAuths\" WHERE \"collectionRef\" = ")
        .bind(Value::Text(coll.id.clone()))
        .push(" AND \"provider\" = ")
        .bind(Value::Text(provider.to_string()))
        .push(" AND \"providerId\" = ")
        .bind(Value::Text(provider_id.to_string()));
    Ok(ctx.store.query(&s).await?.scalar().map(Value::into_string))
}

/// Links by external auth, then the current auth (same collection), then email; otherwise creates a
/// record under createRule with `createData` and the mapped fields. Returns the record and whether
/// it is new.
async fn link_or_create(
    ctx: &AppCtx,
    coll: &Arc<Collection>,
    provider: &str,
    user: &AuthUser,
    req: &Req,
    create_data: Data,
) -> ServiceResult<(Data, bool)> {
    if let Some(owner) = external_auth_owner(ctx, coll, provider, &user.id).await? {
        if let Some(rec) = records::load_record(ctx, coll, &owner).await? {
            return Ok((rec, false));
        }
    }
    let current = req
        .auth
        .as_ref()
        .filter(|c| c.collection.id == coll.id)
        .map(|c| c.record.clone());
    let (rec, is_new) = match current {
        Some(r) => (r, false),
        None => match (user.email_trusted && !user.email.is_empty())
            .then(|| find_by_email(ctx, coll, &user.email))
        {
            Some(f) => match f.await? {
                Some(r) => (claim_by_email(ctx, coll, r).await?, false),
                None => (create_record(ctx, coll, user, create_data).await?, true),
            },
            None => (create_record(ctx, coll, user, create_data).await?, true),
        },
    };
    let rec_id = rec.get("id").and_then(Json::as_str).unwrap_or("");
    if let Err(e) = super::mfa::insert_row(
        ctx,
        "_externalAuths",
        vec![
            ("collectionRef", json!(coll.id)),
            ("recordRef", json!(rec_id)),
            ("provider", json!(provider)),
            ("providerId", json!(user.id)),
        ],
    )
    .await
    {
        // A concurrent sign-in linked it first; anything else is a real failure.
        if external_auth_owner(ctx, coll, provider, &user.id)
            .await?
            .is_none()
        {
            return Err(e);
        }
    }
    Ok((rec, is_new))
}

/// An existing account found by the provider's (verified) email: marked verified. If it was not
/// verified, its password is replaced by a random one (and tokens revoked), so whoever registered
/// the address without owning it loses the account rather than sharing it.
async fn claim_by_email(ctx: &AppCtx, coll: &Arc<Collection>, rec: Data) -> ServiceResult<Data> {
    if rec.get("verified").and_then(Json::as_bool) == Some(true) {
        return Ok(rec);
    }
    let mut ch = Data::new();
    ch.insert("verified".into(), Json::Bool(true));
    ch.insert(
        "password".into(),
        Json::String(super::hash_password_blocking(random_string(40)).await?),
    );
    ch.insert(
        "tokenKey".into(),
        Json::String(basalt_core::id::random_id(50)),
    );
    let id = rec
        .get("id")
        .and_then(Json::as_str)
        .unwrap_or("")
        .to_string();
    records::system_update(ctx, coll, &id, ch).await
}

async fn create_record(
    ctx: &AppCtx,
    coll: &Arc<Collection>,
    user: &AuthUser,
    mut data: Data,
) -> ServiceResult<Data> {
    let mapped = oauth2_options(coll)
        .map(|o| o["mappedFields"].clone())
        .unwrap_or(Json::Null);
    let mut uploads = Vec::new();
    for (key, val) in [
        ("id", &user.id),
        ("name", &user.name),
        ("username", &user.username),
        ("avatarURL", &user.avatar),
    ] {
        let Some(field) = mapped[key].as_str().filter(|f| !f.is_empty()) else {
            continue;
        };
        let Some(f) = coll.field(field) else {
            continue;
        };
        if val.is_empty() || data.contains_key(field) {
            continue;
        }
        if f.ty() != FieldType::File {
            data.insert(field.to_string(), json!(val));
        } else if key == "avatarURL" {
            // A file field gets the avatar itself, downloaded as PocketBase does; on failure the
            // account is still made, without the picture.
            match download_avatar(ctx, val, f).await {
                Ok(up) => uploads.push(up),
                Err(e) => tracing::warn!(url = %val, error = %e, "OAuth2 avatar download failed"),
            }
        }
    }
    if !user.email.is_empty() {
        data.insert("email".into(), json!(user.email));
    }
    let pw = random_string(30);
    data.insert("password".into(), json!(pw));
    data.insert("passwordConfirm".into(), json!(pw));
    let info = RequestInfo {
        body: data.clone(),
        method: "POST".into(),
        context: "oauth2".into(),
        ..Default::default()
    };
    let rec = records::create_with(ctx, coll, &data, uploads, &info).await?;
    if user.email.is_empty() || !user.email_trusted {
        return Ok(rec);
    }
    let mut ch = Data::new();
    ch.insert("verified".into(), Json::Bool(true));
    let id = rec
        .get("id")
        .and_then(Json::as_str)
        .unwrap_or("")
        .to_string();
    records::system_update(ctx, coll, &id, ch).await
}

/// Downloads the provider's avatar for the file field `f`, through the egress policy, into a
/// temporary file: an upload as if the client had sent it. A picture over the field's size or of a
/// type it refuses (sniffed from the content) is an error, so the sign-up goes on without it.
async fn download_avatar(
    ctx: &AppCtx,
    url: &str,
    f: &basalt_core::schema::Field,
) -> Result<crate::files::upload::Upload, String> {
    let (field, limit) = (f.name.as_str(), crate::files::upload::max_size(f));
    use tokio::io::AsyncWriteExt;
    ctx.egress.check_url(url)?;
    let mut res = ctx
        .egress
        .client()
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| e.to_string())?;
    let dir = ctx.files.tmp_dir();
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| e.to_string())?;
    let path = dir.join(format!("avatar-{}", basalt_core::id::random_id(16)));
    // From here the upload owns the file: dropped on any error, it removes it.
    let mut up = crate::files::upload::Upload {
        part: field.to_string(),
        original: String::new(),
        path,
        size: 0,
        mime: String::new(),
        truncated: false,
    };
    let mut out = tokio::fs::File::create(&up.path)
        .await
        .map_err(|e| e.to_string())?;
    let mut head = Vec::new();
    while let Some(chunk) = res.chunk().await.map_err(|e| e.to_string())? {
        up.size += chunk.len() as u64;
        if up.size > limit {
            return Err(format!("larger than the field's {limit} bytes"));
        }
        if head.len() < 512 {
            head.extend_from_slice(&chunk[..chunk.len().min(512 - head.len())]);
        }
        out.write_all(&chunk).await.map_err(|e| e.to_string())?;
    }
    out.flush().await.map_err(|e| e.to_string())?;
    up.mime = crate::files::sniff(&head, "");
    if !crate::files::mime_allowed(&up.mime, &f.mime_types) {
        return Err(format!("{} is not one of the field's types", up.mime));
    }
    let ext = up
        .mime
        .rsplit('/')
        .next()
        .unwrap_or("png")
        .replace("jpeg", "jpg");
    up.original = format!("avatar.{}", if ext.is_empty() { "png" } else { &ext });
    Ok(up)
}

/// `/api/oauth2-redirect?state&code[&error]`, the provider's redirect in the popup flow: the code goes
/// to the realtime client whose id is `state` (subscribed to `@oauth2`). `query` and `form` are the
/// URL-encoded query string and body. True when a code was handed over.
pub fn forward_code(ctx: &AppCtx, query: &str, form: &[u8]) -> bool {
    let mut m: Map<String, Json> = Map::new();
    for (k, v) in
        url::form_urlencoded::parse(query.as_bytes()).chain(url::form_urlencoded::parse(form))
    {
        m.insert(k.into_owned(), Json::String(v.into_owned()));
    }
    let get = |k: &str| m.get(k).and_then(Json::as_str).unwrap_or("").to_string();
    let (state, code, error) = (get("state"), get("code"), get("error"));
    if state.is_empty() {
        return false;
    }
    let mut data = json!({"state": state, "code": code});
    if !error.is_empty() {
        data["error"] = json!(error);
    }
    ctx.realtime
        .send_oauth2(&state, Bytes::from(data.to_string()))
        && error.is_empty()
        && !code.is_empty()
}

/// Apple's client secret: an ES256 JWT signed with the team's `.p8` key (PKCS#8 PEM).
fn apple_client_secret(
    client_id: &str,
    team_id: &str,
    key_id: &str,
    pem: &str,
    duration: i64,
) -> Result<String, String> {
    use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    let b64: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .join("");
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| "the private key is not PEM".to_string())?;
    let rng = ring::rand::SystemRandom::new();
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng)
        .map_err(|_| "the private key is not a PKCS#8 P-256 key".to_string())?;
    let now = chrono::Utc::now().timestamp();
    let header = B64.encode(json!({"alg": "ES256", "kid": key_id, "typ": "JWT"}).to_string());
    let claims = B64.encode(
        json!({"aud": "https://appleid.apple.com", "exp": now + duration, "iat": now,
               "iss": team_id, "sub": client_id})
        .to_string(),
    );
    let input = format!("{header}.{claims}");
    let sig = key
        .sign(&rng, input.as_bytes())
        .map_err(|_| "signing failed".to_string())?;
    Ok(format!("{input}.{}", B64.encode(sig.as_ref())))
}

/// `POST /api/settings/apple/generate-client-secret {clientId, teamId, keyId, privateKey, duration}`
/// (superusers) → `{secret}`; duration in seconds, at most ~6 months as Apple allows.
pub async fn generate_apple_secret(req: &Req, body: &Json) -> ServiceResult<Json> {
    req.require_superuser()?;
    let mut errs = basalt_core::FieldErrors::new();
    let get = |k: &str| body_str(body, k);
    for k in ["clientId", "teamId", "keyId", "privateKey"] {
        if get(k).is_empty() {
            errs.insert(k.into(), FieldError::required());
        }
    }
    let duration = body.get("duration").and_then(Json::as_i64).unwrap_or(0);
    if !(1..=15_777_000).contains(&duration) {
        errs.insert(
            "duration".into(),
            FieldError::new(
                basalt_core::codes::OUT_OF_RANGE,
                "Must be between 1 and 15777000 seconds.",
            ),
        );
    }
    check_fields(errs)?;
    let secret = apple_client_secret(
        &get("clientId"),
        &get("teamId"),
        &get("keyId"),
        &get("privateKey"),
        duration,
    )
    .map_err(|e| {
        invalid(
            "privateKey",
            FieldError::new(basalt_core::codes::INVALID_PRIVATE_KEY, e),
        )
    })?;
    Ok(json!({"secret": secret}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_provider_maps_its_user_shape() {
        let g = map_user(
            "google",
            json!({"sub": "1", "name": "Ana", "email": "a@x.io", "email_verified": true, "picture": "p"}),
        );
        assert_eq!(
            (g.id.as_str(), g.email.as_str(), g.avatar.as_str()),
            ("1", "a@x.io", "p")
        );
        let g = map_user(
            "oidc",
            json!({"sub": "1", "email": "a@x.io", "email_verified": false}),
        );
        assert_eq!(g.email, "", "unverified emails are not used");
        let g = map_user("oidc", json!({"sub": "1", "email": "a@x.io"}));
        assert_eq!(g.email, "", "nor emails the provider does not vouch for");
        let gh = map_user(
            "github",
            json!({"id": 42, "login": "ana", "name": null, "email": null, "avatar_url": "u"}),
        );
        assert_eq!(
            (gh.id.as_str(), gh.username.as_str(), gh.email.as_str()),
            ("42", "ana", "")
        );
        assert_eq!(
            first_email(
                &json!([
                    {"email": "old@x.io", "primary": false, "verified": true},
                    {"email": "main@x.io", "primary": true, "verified": true}
                ]),
                verified_primary
            ),
            "main@x.io"
        );
        assert_eq!(
            first_email(
                &json!([{"email": "m@x.io", "primary": true, "verified": false}]),
                verified_primary
            ),
            ""
        );
        let gl = map_user(
            "gitlab",
            json!({"id": 7, "username": "ana", "email": "a@x.io"}),
        );
        assert_eq!((gl.id.as_str(), gl.username.as_str()), ("7", "ana"));
        let ms = map_user(
            "microsoft",
            json!({"id": "m1", "displayName": "Ana", "mail": null, "userPrincipalName": "ana@corp.io"}),
        );
        assert_eq!(
            (ms.name.as_str(), ms.email.as_str()),
            ("Ana", "ana@corp.io")
        );
        assert!(!ms.email_trusted, "Microsoft mail/UPN never links accounts");
        let d = map_user(
            "discord",
            json!({"id": "9", "username": "ana", "global_name": null, "email": "a@x.io", "verified": false, "avatar": "h"}),
        );
        assert_eq!((d.name.as_str(), d.email.as_str()), ("ana", ""));
        assert_eq!(d.avatar, "https://cdn.discordapp.com/avatars/9/h.png");
        let a = map_user(
            "apple",
            json!({"sub": "ap", "email": "r@privaterelay.appleid.com", "email_verified": "true"}),
        );
        assert_eq!(
            (a.id.as_str(), a.email.as_str()),
            ("ap", "r@privaterelay.appleid.com")
        );
    }

    #[test]
    fn apple_secret_is_an_es256_jwt_that_verifies() {
        use ring::signature::{
            EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING,
        };
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref())
        );
        let jwt = apple_client_secret("com.app", "TEAM1", "KEY1", &pem, 3600).unwrap();
        let (input, sig) = jwt.rsplit_once('.').unwrap();
        ring::signature::UnparsedPublicKey::new(
            &ECDSA_P256_SHA256_FIXED,
            pair.public_key().as_ref(),
        )
        .verify(input.as_bytes(), &B64.decode(sig).unwrap())
        .unwrap();
        let claims = super::super::peek_claims(&jwt).unwrap();
        assert_eq!(claims["iss"], "TEAM1");
        assert_eq!(claims["sub"], "com.app");
        assert_eq!(claims["aud"], "https://appleid.apple.com");
        assert!(apple_client_secret("a", "b", "c", "not a key", 60).is_err());
    }

    /// Each provider added from PocketBase's table maps its userinfo as PocketBase does (sample
    /// answers shaped as in `tools/auth`), including when the email does not count.
    #[test]
    fn pocketbase_providers_map_their_users() {
        let cases = [
            (
                "yandex",
                json!({"id": "1", "real_name": "Ann", "login": "ann", "default_email": "a@y.ru", "is_avatar_empty": false, "default_avatar_id": "av"}),
                [
                    "1",
                    "Ann",
                    "ann",
                    "a@y.ru",
                    "https://avatars.yandex.net/get-yapic/av/islands-200",
                ],
            ),
            (
                "facebook",
                json!({"id": "2", "name": "Bo", "email": "b@f.com", "picture": {"data": {"url": "https://p/b"}}}),
                ["2", "Bo", "", "b@f.com", "https://p/b"],
            ),
            (
                "twitter",
                json!({"data": {"id": "3", "name": "Cy", "username": "cy", "confirmed_email": "c@x.com", "profile_image_url": "https://p/c"}}),
                ["3", "Cy", "cy", "c@x.com", "https://p/c"],
            ),
            (
                "kakao",
                json!({"id": 4, "properties": {"nickname": "di", "profile_image": "https://p/d"}, "kakao_account": {"email": "d@k.com", "is_email_valid": true, "is_email_verified": false}}),
                ["4", "", "di", "", "https://p/d"],
            ),
            (
                "notion",
                json!({"bot": {"owner": {"user": {"id": "5", "name": "Ed", "avatar_url": "https://p/e", "person": {"email": "e@n.so"}}}}}),
                ["5", "Ed", "", "e@n.so", "https://p/e"],
            ),
            (
                "box",
                json!({"id": "6", "name": "Fi", "login": "f@b.com", "avatar_url": "https://p/f", "status": "active"}),
                ["6", "Fi", "", "f@b.com", "https://p/f"],
            ),
            (
                "box",
                json!({"id": "6", "name": "Fi", "login": "f@b.com", "status": "inactive"}),
                ["", "", "", "", ""],
            ),
            (
                "spotify",
                json!({"id": "7", "display_name": "Gu", "email": "g@s.com", "images": [{"url": "https://p/g"}]}),
                ["7", "Gu", "", "", "https://p/g"],
            ),
            (
                "trakt",
                json!({"user": {"username": "hu", "name": "Hu", "ids": {"uuid": "8"}, "images": {"avatar": {"full": "https://p/h"}}}}),
                ["8", "Hu", "hu", "", "https://p/h"],
            ),
            (
                "twitch",
                json!({"data": [{"id": "9", "login": "io", "display_name": "Io", "email": "i@t.tv", "profile_image_url": "https://p/i"}]}),
                ["9", "Io", "io", "i@t.tv", "https://p/i"],
            ),
            (
                "patreon",
                json!({"data": {"id": "10", "attributes": {"full_name": "Jo", "vanity": "jo", "email": "j@p.com", "is_email_verified": true, "image_url": "https://p/j"}}}),
                ["10", "Jo", "jo", "j@p.com", "https://p/j"],
            ),
            (
                "strava",
                json!({"id": 11, "firstname": "Ka", "lastname": "Le", "username": "kale", "profile": "https://p/k"}),
                ["11", "Ka Le", "kale", "", "https://p/k"],
            ),
            (
                "wakatime",
                json!({"data": {"id": "12", "display_name": "Li", "username": "li", "email": "l@w.com", "is_email_confirmed": true, "photo": "https://p/l", "photo_public": false}}),
                ["12", "Li", "li", "l@w.com", ""],
            ),
            (
                "livechat",
                json!({"account_id": "13", "name": "Mo", "email": "m@l.com", "email_verified": false, "avatar_url": "https://p/m"}),
                ["13", "Mo", "", "", "https://p/m"],
            ),
            (
                "planningcenter",
                json!({"data": {"id": "14", "attributes": {"name": "Ny", "avatar": "https://p/n", "status": "active"}}}),
                ["14", "Ny", "", "", "https://p/n"],
            ),
        ];
        let more = [
            (
                "instagram2",
                json!({"id": "x", "user_id": "15", "username": "ol", "name": "Ol", "profile_picture_url": "https://p/o"}),
                ["15", "Ol", "ol", "", "https://p/o"],
            ),
            (
                "bitbucket",
                json!({"uuid": "{16}", "display_name": "Pa", "username": "pa", "account_status": "active", "links": {"avatar": {"href": "https://p/p"}}}),
                ["{16}", "Pa", "pa", "", "https://p/p"],
            ),
            (
                "bitbucket",
                json!({"uuid": "{16}", "account_status": "closed"}),
                ["", "", "", "", ""],
            ),
            (
                "gitee",
                json!({"id": 17, "name": "Qi", "login": "qi", "email": "q@g.com", "avatar_url": "https://p/q"}),
                ["17", "Qi", "qi", "q@g.com", "https://p/q"],
            ),
            (
                "gitea",
                json!({"id": 18, "full_name": "Ra", "login": "ra", "email": "ignored@g.io", "active": true, "avatar_url": "https://p/r"}),
                ["18", "Ra", "ra", "", "https://p/r"],
            ),
            (
                "vk",
                json!({"response": [{"id": 19, "first_name": "Sa", "last_name": "", "screen_name": "sa", "photo_max": "https://p/s"}]}),
                ["19", "Sa", "sa", "", "https://p/s"],
            ),
            (
                "linear",
                json!({"data": {"viewer": {"id": "20", "displayName": "tu", "name": "Tu", "email": "t@l.app", "avatarUrl": "https://p/t", "active": true}}}),
                ["20", "Tu", "tu", "t@l.app", "https://p/t"],
            ),
            (
                "monday",
                json!({"data": {"me": {"id": "21", "enabled": true, "name": "Uma", "email": "u@m.com", "is_verified": false, "photo_small": "https://p/u"}}}),
                ["21", "Uma", "", "", "https://p/u"],
            ),
            (
                "lark",
                json!({"data": {"union_id": "22", "name": "Vi", "avatar_url": "https://p/v"}}),
                ["22", "Vi", "", "", "https://p/v"],
            ),
            (
                "mailcow",
                json!({"id": "23", "full_name": "Wu", "username": "wu@mail.example", "email": "wu@mail.example", "active": 1}),
                ["23", "Wu", "wu", "wu@mail.example", ""],
            ),
        ];
        let gitlab = [
            (
                "gitlab",
                json!({"id": 24, "name": "Xi", "username": "xi", "email": "x@gl.com", "confirmed_at": "2024-01-02T03:04:05Z", "avatar_url": "https://p/x"}),
                ["24", "Xi", "xi", "x@gl.com", "https://p/x"],
            ),
            (
                "gitlab",
                json!({"id": 24, "name": "Xi", "username": "xi", "email": "x@gl.com", "confirmed_at": null}),
                ["24", "Xi", "xi", "", ""],
            ),
        ];
        for (kind, raw, want) in cases.into_iter().chain(more).chain(gitlab) {
            let u = map_user(kind, raw);
            assert_eq!(
                [u.id.as_str(), &u.name, &u.username, &u.email, &u.avatar],
                want,
                "{kind}"
            );
        }
    }

    #[test]
    fn emails_from_a_second_call_and_from_the_token() {
        let bb = json!({"values": [
            {"email": "old@b.org", "is_primary": true, "is_confirmed": false},
            {"email": "x@b.org", "is_primary": false, "is_confirmed": true},
            {"email": "me@b.org", "is_primary": true, "is_confirmed": true}]});
        assert_eq!(
            first_email(&bb["values"], |e| e["is_primary"] == json!(true)
                && e["is_confirmed"] == json!(true)),
            "me@b.org"
        );
        assert_eq!(first_email(&json!({"message": "private"}), |_| true), "");
        let mut u = map_user("vk", json!({"response": [{"id": 1}]}));
        token_extras(
            &mut u,
            "vk",
            &IdTokenFields {
                email: Some(json!("v@vk.com")),
                ..Default::default()
            },
        );
        assert_eq!((u.email.as_str(), u.email_trusted), ("v@vk.com", true));
        let mut u = map_user("instagram2", json!({"user_id": "1"}));
        token_extras(
            &mut u,
            "instagram2",
            &IdTokenFields {
                permissions: Some(json!(["instagram_business_basic"])),
                ..Default::default()
            },
        );
        assert_eq!(u.raw["permissions"], json!(["instagram_business_basic"]));
    }

    #[test]
    fn providers_are_listed_in_pocketbase_order() {
        let names: Vec<String> = provider_list()
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(names.len(), KINDS.len());
        assert_eq!(names.len(), ORDER.len(), "every provider PocketBase ships");
        let pos: Vec<usize> = names
            .iter()
            .map(|n| {
                ORDER
                    .iter()
                    .position(|o| o == n)
                    .expect("in PocketBase's list")
            })
            .collect();
        assert!(pos.windows(2).all(|w| w[0] < w[1]), "{names:?}");
    }

    #[test]
    fn every_builtin_provider_is_listed() {
        let names: Vec<String> = provider_list()
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect();
        for n in [
            "google",
            "github",
            "gitlab",
            "microsoft",
            "apple",
            "discord",
            "oidc",
        ] {
            assert!(names.contains(&n.to_string()), "{n}");
        }
    }
}
