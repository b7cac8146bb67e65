//! Listing commands on both engines: rows written through the db layer, read through the
//! binary as an operator would, as tables and as JSON.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use ember::db::Db;
use ember::db::volumes::NewVolume;

fn seed(url: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let db = Db::connect(url).await.unwrap();
        for (id, name, status, depth) in [
            (
                "11111111-1111-1111-1111-111111111111",
                "web-root",
                "available",
                0,
            ),
            (
                "22222222-2222-2222-2222-222222222222",
                "db-data",
                "in-use",
                1,
            ),
            ("33333333-3333-3333-3333-333333333333", "twin", "error", 0),
            (
                "44444444-4444-4444-4444-444444444444",
                "twin",
                "available",
                0,
            ),
        ] {
            db.insert_volume(&NewVolume {
                id,
                name,
                size_bytes: 10 << 30,
                status: ember::db::Status::parse(status),
                backend: "file0",
                host: "test@file0",
                source_snapshot_id: None,
                source_volume_id: None,
                clone_depth: depth,
                multiattach: false,
            })
            .await
            .unwrap();
        }
        db.close().await;
    });
}

#[test]
fn volume_list_and_show_by_id_or_unique_name() {
    each_engine(|_, dir, url| {
        let cfg = write(
            dir,
            "e.toml",
            "[backends.file0]\nvolume_driver = \"file\"\n",
        );
        let c = cfg.to_str().unwrap();
        seed(url);
        let vols = json(&ember(&[
            "--config",
            c,
            "--database-url",
            url,
            "volume",
            "list",
            "--json",
        ]));
        let vols = vols.as_array().unwrap();
        assert_eq!(vols.len(), 4);
        for key in [
            "id",
            "name",
            "status",
            "size_bytes",
            "backend",
            "parent",
            "clone_depth",
            "created_at",
            "updated_at",
        ] {
            assert!(
                vols[0].get(key).is_some(),
                "volume JSON lacks {key}: {}",
                vols[0]
            );
        }
        let none = json(&ember(&[
            "--config",
            c,
            "--database-url",
            url,
            "volume",
            "list",
            "--backend",
            "other",
            "--json",
        ]));
        assert_eq!(none.as_array().unwrap().len(), 0);

        let v = json(&ember(&[
            "--config",
            c,
            "--database-url",
            url,
            "volume",
            "show",
            "db-data",
            "--json",
        ]));
        assert_eq!(v["id"], "22222222-2222-2222-2222-222222222222");
        assert_eq!(v["status"], "in-use");
        assert_eq!(v["size_bytes"], 10i64 << 30);

        let table = stdout(&ember(&[
            "--config",
            c,
            "--database-url",
            url,
            "volume",
            "show",
            "web-root",
        ]));
        assert!(
            table.contains("10.0 GiB") && table.contains("11111111-1111-1111-1111-111111111111"),
            "{table}"
        );

        let amb = ember(&[
            "--config",
            c,
            "--database-url",
            url,
            "volume",
            "show",
            "twin",
        ]);
        assert_eq!(amb.status.code(), Some(1));
        let err = stderr(&amb);
        assert!(
            err.contains("2 volumes are named \"twin\"") && err.contains("33333333-"),
            "{err}"
        );
        // An exact id always wins.
        let v = json(&ember(&[
            "--config",
            c,
            "--database-url",
            url,
            "volume",
            "show",
            "44444444-4444-4444-4444-444444444444",
            "--json",
        ]));
        assert_eq!(v["name"], "twin");

        let jobs = json(&ember(&[
            "--config",
            c,
            "--database-url",
            url,
            "job",
            "list",
            "--json",
        ]));
        assert_eq!(jobs.as_array().unwrap().len(), 0);
    });
}

#[test]
fn database_only_access_without_a_config_file() {
    each_engine(|_, dir, url| {
        seed(url);
        let out = std::process::Command::new(EMBER)
            .args(["--database-url", url, "volume", "list", "--json"])
            .current_dir(dir)
            .env("HOME", dir)
            .env_remove("EMBER_CONFIG")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 4);
    });
}

#[test]
fn sqlite_file_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/sub/ember.db", dir.path().display());
    let out = ember(&["--database-url", &url, "events"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mode = std::fs::metadata(dir.path().join("sub/ember.db"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
}
