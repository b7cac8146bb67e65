//! Who may change what, enforced by PostgreSQL: `ember db roles --apply`, then a login per
//! role. A viewer reads and is told at once it is read-only; an operator enqueues but may not
//! touch services or run them; a service login runs `ember serve`; audit events are
//! append-only for all of them. Every refusal is one line naming the login, the action and the
//! grant.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;

fn as_login(url: &str, login: &str) -> String {
    url.replacen("://ember@", &format!("://{login}@"), 1)
}

fn one_line_refusal(o: &std::process::Output) -> String {
    let err = stderr(o);
    assert!(!o.status.success(), "succeeded: {}", stdout(o));
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    err
}

#[test]
fn each_role_may_do_what_it_needs_and_no_more() {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = fresh_db(Engine::Postgres, dir.path()) else {
        return;
    };
    let file0 = "[backends.file0]\nvolume_driver = \"file\"\n";
    let owner = Env::new(dir.path(), &url, file0);
    let o = owner.run(&["db", "roles"]);
    assert!(
        stdout(&o).contains("CREATE ROLE ember_viewer"),
        "{}",
        stdout(&o)
    );
    let o = owner.run(&["db", "roles", "--apply"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let (viewer, operator, service) = (
        format!("alice_{tag}"),
        format!("bob_{tag}"),
        format!("carol_{tag}"),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let db = ember::db::Db::connect(&url).await.unwrap();
        for (login, role) in [
            (&viewer, "ember_viewer"),
            (&operator, "ember_operator"),
            (&service, "ember_service"),
        ] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "CREATE ROLE {login} LOGIN; GRANT {role} TO {login};"
            )))
            .execute(&db.pool)
            .await
            .unwrap();
        }
    });
    let _serve = owner.serve();
    owner.json(&["volume", "create", "v", "--size", "8M", "--wait"]);
    let host = services(&owner.config, &owner.url)[0]["host"]
        .as_str()
        .unwrap()
        .to_string();

    // The viewer reads, and is read-only from the start, saying why.
    let sub = |name: &str, login: &str, extra: &str| {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        Env::new(&d, &as_login(&url, login), &format!("{extra}{file0}"))
    };
    let alice = sub("alice", &viewer, "");
    assert_eq!(alice.json(&["volume", "list"]).as_array().unwrap().len(), 1);
    let err = one_line_refusal(&alice.run(&["volume", "create", "n", "--size", "1M"]));
    assert!(
        err.contains(&format!(
            "connected as {viewer} (ember_viewer), which may only read"
        )) && err.contains("nothing was changed"),
        "{err}"
    );
    let err = one_line_refusal(&alice.run(&["serve"]));
    assert!(
        err.contains(&format!("GRANT ember_service TO {viewer}")),
        "{err}"
    );
    let doctor = json(&alice.run(&["doctor", "--json"]));
    let role = doctor["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "ember.role")
        .unwrap()
        .clone();
    assert_eq!(role["status"], "warn", "{role}");
    assert!(
        role["summary"].as_str().unwrap().contains("may only read"),
        "{role}"
    );

    // The operator enqueues (the owner's service runs it) but may not touch services.
    let bob = sub("bob", &operator, "");
    let queued = bob.json(&["volume", "create", "b1", "--size", "1M"]);
    let job = queued["job_id"].as_str().unwrap().to_string();
    assert_eq!(owner.wait_job(&job, 30)["state"], "succeeded");
    let err = one_line_refusal(&bob.run(&["service", "disable", &host, "--reason", "x"]));
    assert!(
        err.contains(&format!(
            "{operator} (ember_operator) may not disable service"
        )) && err.contains(&format!("GRANT ember_service TO {operator}")),
        "{err}"
    );
    let err = one_line_refusal(&bob.run(&["serve"]));
    assert!(
        err.contains(&format!("GRANT ember_service TO {operator}")),
        "{err}"
    );

    // The service login runs a service (under another host name than the owner's).
    let carol = sub("carol", &service, "host = \"carolhost\"\n");
    let _carol_serve = Serve::start(&carol.config, &carol.url, &carol.dir);
    owner.wait_up("carolhost@file0", 30);

    // Audit events are append-only for every role.
    rt.block_on(async {
        for login in [&viewer, &operator, &service] {
            let db = ember::db::Db::connect(&as_login(&url, login))
                .await
                .unwrap();
            for sql in ["DELETE FROM events", "UPDATE events SET message = 'x'"] {
                let e = sqlx::query(sql).execute(&db.pool).await.unwrap_err();
                assert!(
                    e.to_string().contains("permission denied"),
                    "{login}: {sql}: {e}"
                );
            }
        }
    });
    std::thread::sleep(Duration::from_millis(10));
}
