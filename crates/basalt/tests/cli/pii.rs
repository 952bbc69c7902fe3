//! PII protection as an operator meets it: keys from `[pii] keys_file`, and the background
//! encryption of existing values surviving `kill -9` mid-way (it resumes from what is still in clear).

use std::time::Duration;

use serde_json::{json, Value};

use super::{fresh_pg, get_json, serve_with, su_token, tmp, upsert, Proc};

const ROWS: usize = 10_000;

async fn encryption_resumes_after_kill9(db: Option<String>) {
    let d = tmp();
    upsert(&d, &db);
    let keys = d.0.join("pii-keys.toml");
    std::fs::write(
        &keys,
        "primary = \"k1\"\n[keys]\nk1 = \"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"\n",
    )
    .unwrap();
    let cfg = d.0.join("basalt.toml");
    std::fs::write(&cfg, format!("[pii]\nkeys_file = \"{}\"\n", keys.display())).unwrap();
    let extra = vec!["--config".to_string(), cfg.display().to_string()];
    let (child, url) = serve_with(&d, &db, &extra).await;
    let mut child = Proc(child);
    let tok = su_token(&url).await;
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{url}/api/collections"))
        .header("Authorization", &tok)
        .json(&json!({"name": "people", "fields": [{"name": "ssn", "type": "text"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let coll: Value = r.json().await.unwrap();
    let ssn = |i: usize| format!("SSN-{i:06}-X");
    let mut seeders = Vec::new();
    for w in 0..16 {
        let (client, url, tok) = (client.clone(), url.clone(), tok.clone());
        seeders.push(tokio::spawn(async move {
            for i in (w..ROWS).step_by(16) {
                let r = client
                    .post(format!("{url}/api/collections/people/records"))
                    .header("Authorization", &tok)
                    .json(&json!({"ssn": format!("SSN-{i:06}-X")}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
            }
        }));
    }
    for s in seeders {
        s.await.unwrap();
    }
    // Mark the field pii, and kill the server as soon as the encryption is under way.
    let mut fields = coll["fields"].clone();
    for f in fields.as_array_mut().unwrap() {
        if f["name"] == "ssn" {
            f["pii"] = json!({"mask": "last4"});
        }
    }
    let r = client
        .patch(format!("{url}/api/collections/people"))
        .header("Authorization", &tok)
        .json(&json!({"fields": fields}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let remaining = |h: &Value| h["data"]["pii"]["encrypting"][0]["remaining"].as_i64();
    let mut at_kill = None;
    for _ in 0..2000 {
        let h = health(&client, &url, &tok).await;
        if let Some(n) = remaining(&h).filter(|n| *n < ROWS as i64) {
            at_kill = Some(n);
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    kill9(&mut child.0);
    let at_kill = at_kill.expect("the encryption started");
    assert!(at_kill > 0, "killed mid-way ({at_kill} rows left)");

    // Restarted, it finishes what is left.
    let (child, url) = serve_with(&d, &db, &extra).await;
    let _child = Proc(child);
    let tok = su_token(&url).await;
    let mut left = Value::Null;
    for _ in 0..600 {
        left = health(&client, &url, &tok).await["data"]["pii"]["encrypting"].clone();
        if left.as_array().is_some_and(|a| a.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, json!([]), "every value encrypted after the restart");
    // Every value reads back (superuser), masked for guests.
    let mut seen = 0;
    for page in 1..=(ROWS / 500) {
        let r: Value = client
            .get(format!(
                "{url}/api/collections/people/records?perPage=500&page={page}&skipTotal=1"
            ))
            .header("Authorization", &tok)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for it in r["items"].as_array().unwrap() {
            let v = it["ssn"].as_str().unwrap();
            assert!(v.starts_with("SSN-") && v.ends_with("-X"), "{it}");
            seen += 1;
        }
    }
    assert_eq!(seen, ROWS);
    if db.is_none() {
        let mut bytes = std::fs::read(d.0.join("data.db")).unwrap();
        bytes.extend(std::fs::read(d.0.join("data.db-wal")).unwrap_or_default());
        for i in [0, 1, ROWS / 2, ROWS - 1] {
            let p = ssn(i);
            assert!(
                !bytes.windows(p.len()).any(|w| w == p.as_bytes()),
                "{p} left in the database file"
            );
        }
    }
}

async fn health(client: &reqwest::Client, url: &str, tok: &str) -> Value {
    get_json(client, format!("{url}/api/health"), tok).await
}

/// SIGKILL, and reap.
fn kill9(c: &mut std::process::Child) {
    let _ = c.kill();
    let _ = c.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pii_encryption_resumes_after_kill9_sqlite() {
    encryption_resumes_after_kill9(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pii_encryption_resumes_after_kill9_postgres() {
    encryption_resumes_after_kill9(Some(fresh_pg().await)).await;
}
