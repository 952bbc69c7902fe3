//! Outgoing mail: SMTP through `lettre` when `settings.smtp.enabled`, otherwise the dev mailbox (one
//! `.eml` file per message under `<data dir>/mailbox`, and a log line), so a laptop needs no mail
//! server. Templates are per auth collection with the protocol's placeholders.

use std::time::Duration;

use basalt_core::record::Data;
use basalt_core::schema::Collection;
use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::Value as Json;

use crate::error::{ServiceError, ServiceResult};
use crate::AppCtx;

/// The templates of an auth collection (the option key under the collection JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Template {
    Verification,
    ResetPassword,
    ConfirmEmailChange,
    Otp,
    LoginAlert,
}

impl Template {
    fn key(self) -> &'static str {
        match self {
            Template::Verification => "verificationTemplate",
            Template::ResetPassword => "resetPasswordTemplate",
            Template::ConfirmEmailChange => "confirmEmailChangeTemplate",
            Template::Otp => "otp",
            Template::LoginAlert => "authAlert",
        }
    }
    pub fn parse(s: &str) -> Option<Template> {
        Some(match s {
            "verification" => Template::Verification,
            "password-reset" => Template::ResetPassword,
            "email-change" => Template::ConfirmEmailChange,
            "otp" => Template::Otp,
            "login-alert" => Template::LoginAlert,
            _ => return None,
        })
    }
    fn default_subject(self) -> &'static str {
        match self {
            Template::Verification => "Verify your {APP_NAME} email",
            Template::ResetPassword => "Reset your {APP_NAME} password",
            Template::ConfirmEmailChange => "Confirm your {APP_NAME} new email address",
            Template::Otp => "OTP for {APP_NAME}",
            Template::LoginAlert => "Login from a new location",
        }
    }
    fn default_body(self) -> &'static str {
        match self {
            Template::Verification => concat!(
                "<p>Hello,</p>\n<p>Thank you for joining us at {APP_NAME}.</p>\n",
                "<p>Click on the button below to verify your email address.</p>\n",
                "<p>\n  <a class=\"btn\" href=\"{APP_URL}/_/#/auth/confirm-verification/{TOKEN}\" target=\"_blank\" rel=\"noopener\">Verify</a>\n</p>\n",
                "<p>\n  Thanks,<br/>\n  {APP_NAME} team\n</p>"
            ),
            Template::ResetPassword => concat!(
                "<p>Hello,</p>\n<p>Click on the button below to reset your password.</p>\n",
                "<p>\n  <a class=\"btn\" href=\"{APP_URL}/_/#/auth/confirm-password-reset/{TOKEN}\" target=\"_blank\" rel=\"noopener\">Reset password</a>\n</p>\n",
                "<p><i>If you didn't ask to reset your password, you can ignore this email.</i></p>\n",
                "<p>\n  Thanks,<br/>\n  {APP_NAME} team\n</p>"
            ),
            Template::ConfirmEmailChange => concat!(
                "<p>Hello,</p>\n<p>Click on the button below to confirm your new email address.</p>\n",
                "<p>\n  <a class=\"btn\" href=\"{APP_URL}/_/#/auth/confirm-email-change/{TOKEN}\" target=\"_blank\" rel=\"noopener\">Confirm new email</a>\n</p>\n",
                "<p><i>If you didn't ask to change your email address, you can ignore this email.</i></p>\n",
                "<p>\n  Thanks,<br/>\n  {APP_NAME} team\n</p>"
            ),
            Template::Otp => concat!(
                "<p>Hello,</p>\n<p>Your one-time password is: <strong>{OTP}</strong></p>\n",
                "<p><i>If you didn't ask for the one-time password, you can ignore this email.</i></p>\n",
                "<p>\n  Thanks,<br/>\n  {APP_NAME} team\n</p>"
            ),
            Template::LoginAlert => concat!(
                "<p>Hello,</p>\n<p>We noticed a login to your {APP_NAME} account from a new location:</p>\n",
                "<p><em>{ALERT_INFO}</em></p>\n",
                "<p><strong>If this wasn't you, you should immediately change your {APP_NAME} account password to revoke access from all other locations.</strong></p>\n",
                "<p>If this was you, you may disregard this email.</p>\n",
                "<p>\n  Thanks,<br/>\n  {APP_NAME} team\n</p>"
            ),
        }
    }
}

/// One message, rendered.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub html: String,
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Renders a collection template: `{APP_NAME}`, `{APP_URL}`, `{RECORD:field}` and the given extras
/// (`{TOKEN}`, `{OTP}`, `{ALERT_INFO}`).
pub fn render(
    ctx: &AppCtx,
    coll: &Collection,
    rec: &Data,
    t: Template,
    to: &str,
    vars: &[(&str, &str)],
) -> Mail {
    let settings = ctx.config();
    let tpl = coll
        .auth
        .as_ref()
        .and_then(|a| a.extra.get(t.key()))
        .map(|v| {
            if t == Template::Otp || t == Template::LoginAlert {
                v.get("emailTemplate").cloned().unwrap_or(Json::Null)
            } else {
                v.clone()
            }
        })
        .unwrap_or(Json::Null);
    let pick = |k: &str, d: &'static str| -> String {
        match tpl.get(k).and_then(Json::as_str) {
            Some(s) if !s.trim().is_empty() => s.to_string(),
            _ => d.to_string(),
        }
    };
    let subject = pick("subject", t.default_subject());
    let body = pick("body", t.default_body());
    let app_name = settings.meta.app_name.as_str();
    let app_url = settings.meta.app_url.trim_end_matches('/');
    // {RECORD:field}: any non-hidden field of the record (secrets never).
    let record_value = |name: &str| -> String {
        let hidden =
            coll.field(name).is_none_or(|f| f.hidden) || name == "password" || name == "tokenKey";
        if hidden {
            return String::new();
        }
        match rec.get(name) {
            Some(Json::String(s)) => s.clone(),
            Some(Json::Null) | None => String::new(),
            Some(v) => v.to_string(),
        }
    };
    let lookup = |name: &str| -> Option<String> {
        match name {
            "APP_NAME" => Some(app_name.to_string()),
            "APP_URL" => Some(app_url.to_string()),
            _ => match name.strip_prefix("RECORD:") {
                Some(f) => Some(record_value(f)),
                None => vars
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string()),
            },
        }
    };
    let fill = |s: &str, html: bool| -> String {
        fill_placeholders(s, |name| {
            lookup(name).map(|v| if html { escape_html(&v) } else { v })
        })
    };
    Mail {
        to: to.to_string(),
        subject: fill(&subject, false),
        html: fill(&body, true),
    }
}

/// One forward pass over `template`: each `{NAME}` the lookup knows is replaced by its value, which is
/// never scanned again (a value containing `{RECORD:x}` stays text); unknown braces are kept.
fn fill_placeholders(template: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        match after
            .find('}')
            .and_then(|j| lookup(&after[..j]).map(|v| (j, v)))
        {
            Some((j, v)) => {
                out.push_str(&v);
                rest = &after[j + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// A plain-text alternative of the HTML body: tags dropped, links kept as their URLs.
fn plain_text(html: &str) -> String {
    let mut out = String::new();
    let mut rest = html;
    while let Some(i) = rest.find('<') {
        out.push_str(&rest[..i]);
        let Some(j) = rest[i..].find('>') else {
            rest = "";
            break;
        };
        let tag = &rest[i..i + j + 1];
        if let Some(h) = tag.find("href=\"") {
            let url = &tag[h + 6..];
            if let Some(e) = url.find('"') {
                out.push_str(&url[..e]);
                out.push(' ');
            }
        }
        if tag.starts_with("<br") || tag.starts_with("</p") {
            out.push('\n');
        }
        rest = &rest[i + j + 1..];
    }
    out.push_str(rest);
    out.replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
}

fn internal(e: impl std::fmt::Display) -> ServiceError {
    ServiceError(basalt_core::Error::internal(e))
}

fn build_message(settings: &crate::config::Typed, mail: &Mail) -> ServiceResult<Message> {
    let sender = match settings.meta.sender_address.as_str() {
        "" => "no-reply@example.com",
        s => s,
    };
    let name = settings.meta.sender_name.as_str();
    let from = Mailbox::new(
        (!name.is_empty()).then(|| name.to_string()),
        sender.parse().map_err(internal)?,
    );
    let to: Mailbox = mail.to.parse().map_err(internal)?;
    Message::builder()
        .from(from)
        .to(to)
        .subject(mail.subject.clone())
        .multipart(
            MultiPart::alternative()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(plain_text(&mail.html)),
                )
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(mail.html.clone()),
                ),
        )
        .map_err(internal)
}

/// Sends now: SMTP when configured, else the dev mailbox.
pub async fn send(ctx: &AppCtx, mail: &Mail) -> ServiceResult<()> {
    let settings = ctx.config();
    let msg = build_message(&settings, mail)?;
    let smtp = &settings.smtp;
    if !smtp.enabled {
        return write_mailbox(ctx, mail, &msg).await;
    }
    let host = smtp.host.clone();
    let port = u16::try_from(smtp.port).unwrap_or(587);
    let params = TlsParameters::new(host.clone()).map_err(internal)?;
    // `tls: true` is implicit TLS (465); otherwise STARTTLS is used when the server offers it.
    let user = smtp.username.as_str();
    // Credentials never go out in clear: with a username, STARTTLS is required.
    let tls = if smtp.tls {
        Tls::Wrapper(params)
    } else if !user.is_empty() {
        Tls::Required(params)
    } else {
        Tls::Opportunistic(params)
    };
    let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        .port(port)
        .tls(tls)
        .timeout(Some(Duration::from_secs(15)));
    if !user.is_empty() {
        let pass = smtp.password.as_str();
        b = b.credentials(Credentials::new(user.to_string(), pass.to_string()));
        match smtp.auth_method.as_str() {
            "LOGIN" => b = b.authentication(vec![Mechanism::Login]),
            "PLAIN" => b = b.authentication(vec![Mechanism::Plain]),
            _ => {}
        }
    }
    let local = smtp.local_name.as_str();
    if !local.is_empty() {
        b = b.hello_name(ClientId::Domain(local.to_string()));
    }
    b.build().send(msg).await.map_err(internal)?;
    tracing::info!(to = %mail.to, subject = %mail.subject, "mail sent");
    Ok(())
}

async fn write_mailbox(ctx: &AppCtx, mail: &Mail, msg: &Message) -> ServiceResult<()> {
    let Some(dir) = ctx.mailbox.clone() else {
        tracing::info!(to = %mail.to, subject = %mail.subject, body = %plain_text(&mail.html),
            "mail (no SMTP configured, no mailbox folder)");
        return Ok(());
    };
    let name = format!(
        "{}-{}.eml",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"),
        basalt_core::id::random_id(6)
    );
    let path = dir.join(name);
    let bytes = msg.formatted();
    let p = path.clone();
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(p.parent().unwrap_or(std::path::Path::new(".")))?;
        // Written aside and renamed: whoever watches the folder sees whole messages only.
        let part = p.with_extension("eml.part");
        std::fs::write(&part, bytes)?;
        std::fs::rename(&part, &p)
    })
    .await
    .map_err(internal)?
    .map_err(internal)?;
    tracing::info!(to = %mail.to, subject = %mail.subject, file = %path.display(),
        "mail written to the dev mailbox (no SMTP configured)");
    Ok(())
}

/// Sends in the background (the answer must not wait for, or reveal, delivery); failures are logged.
pub fn send_later(ctx: &AppCtx, mail: Mail) {
    let ctx = ctx.clone();
    tokio::spawn(async move {
        if let Err(e) = send(&ctx, &mail).await {
            tracing::warn!(to = %mail.to, subject = %mail.subject, error = ?e.0, "mail delivery failed");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_once_and_never_rescanned() {
        let look = |n: &str| match n {
            "A" => Some("{A}{B}".to_string()),
            "B" => Some("b".to_string()),
            _ => None,
        };
        assert_eq!(fill_placeholders("x{A}y{B}{C}{", look), "x{A}{B}yb{C}{");
    }

    #[test]
    fn plain_text_keeps_links() {
        let t = plain_text("<p>Hi &amp; bye</p><a href=\"http://x/y?t=1\">Go</a><br/>end");
        assert!(t.contains("Hi & bye"));
        assert!(t.contains("http://x/y?t=1"));
        assert!(t.contains("end"));
    }
}
