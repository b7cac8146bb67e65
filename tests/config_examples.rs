//! Every shipped example and every file in tests/valid_configs/ loads, and means what it says.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::*;
use ember::config::{self, DriverConfig, Format};

#[test]
fn every_shipped_and_valid_config_loads_without_broken_backends() {
    for dir in ["config", "tests/valid_configs"] {
        for entry in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)).unwrap() {
            let path = entry.unwrap().path();
            // The console's keymap, the systemd unit and the Prometheus rules live beside the
            // configs; their own tests check them (keymap's unit test, tests/systemd.rs,
            // tests/metrics.rs).
            if path.file_name().is_some_and(|n| n == "keymap.toml")
                || path.extension().is_some_and(|e| e == "service")
                || path.is_dir()
            {
                continue;
            }
            let cfg = config::load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                cfg.broken.is_empty(),
                "{}: {:?}",
                path.display(),
                cfg.broken
            );
            assert!(!cfg.backends.is_empty(), "{}", path.display());
            let out = ember(&["config", "check", path.to_str().unwrap()]);
            assert!(out.status.success(), "{}: {}", path.display(), stdout(&out));
        }
    }
}

#[test]
fn shipped_cinder_conf_is_read_as_cinder_reads_it() {
    let cfg = config::load(Path::new("config/cinder.conf")).unwrap();
    assert_eq!(cfg.format, Format::CinderConf);
    let names: Vec<_> = cfg.backends.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(
        names,
        ["rbd0", "rbd1", "local0"],
        "continuation line in enabled_backends"
    );
    assert_eq!(cfg.service_host("rbd0"), "storage-01@rbd0");
    // Not clustered (local0 is local storage): rbd0's volumes belong to this host's service.
    assert_eq!(cfg.service_cluster("rbd0"), None);
    assert_eq!(cfg.service_owner("rbd0"), "storage-01@rbd0");
    // The three-host example: rbd0's volumes belong to the cluster.
    let c = config::load(Path::new("config/cluster.toml")).unwrap();
    assert_eq!(c.service_host("rbd0"), "storage-01@rbd0");
    assert_eq!(c.service_owner("rbd0"), "ceph-a@rbd0");
    assert_eq!(c.drain_timeout.as_secs(), 30);
    let DriverConfig::Rbd(r) = &cfg.backends[0].driver else {
        panic!("rbd0 is rbd")
    };
    assert_eq!(
        (
            r.pool.as_str(),
            r.user.as_deref(),
            cfg.backends[0].max_clone_depth
        ),
        ("volumes", Some("cinder"), 5)
    );
    assert_eq!(
        r.connect_timeout.as_secs(),
        10,
        "-1 becomes ember's safe default"
    );
    assert!(cfg.backends[1].enable_deferred_deletion);
    let notes = cfg.notes.join("\n");
    for expected in [
        "transport_url",
        "[database] connection is Cinder's own database",
        "[keystone_authtoken]",
        "rados_connect_timeout = -1",
    ] {
        assert!(
            notes.contains(expected),
            "no note about {expected}: {notes}"
        );
    }
}

#[test]
fn legacy_single_backend_file_is_refused_and_backend_defaults_apply() {
    // Cinder's layout before Ocata: refused, with the lines found and the two to add.
    let err = config::load(Path::new("tests/legacy-cinder.conf"))
        .unwrap_err()
        .to_string();
    for want in [
        "legacy-cinder.conf:4: the old single-backend layout",
        "stopped supporting in Ocata",
        "volume_driver (line 4), rbd_pool (line 5), rbd_user (line 6)",
        "add `enabled_backends = rbd-1` to [DEFAULT] and a line `[rbd-1]` above those options",
    ] {
        assert!(err.contains(want), "{want:?} not in {err}");
    }
    assert_eq!(err.lines().count(), 1, "{err}");

    // `enabled_backends =` left empty beside the driver in [DEFAULT] is the same layout: it
    // got the generic "no backend configured" instead of this explanation.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string("tests/legacy-cinder.conf")
        .unwrap()
        .replace(
            "host = old-storage\n",
            "host = old-storage\nenabled_backends =\n",
        );
    let path = dir.path().join("cinder.conf");
    std::fs::write(&path, text).unwrap();
    let err = config::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("the old single-backend layout") && err.contains("rbd_pool (line 6)"),
        "{err}"
    );

    let cfg = config::load(Path::new("tests/valid_configs/backend-defaults.conf")).unwrap();
    assert_eq!(
        cfg.backends[0].driver_name(),
        "file",
        "volume_driver from [backend_defaults]"
    );
    assert_eq!(cfg.backends[0].reserved_percentage, 10);
    assert_eq!(cfg.backends[1].driver_name(), "rbd");
    assert_eq!(
        cfg.service_down_time.as_secs_f64(),
        12.5,
        "raised to 2.5 x report_interval as Cinder does"
    );
}

#[test]
fn config_lookup_order_and_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(
        dir.path(),
        "a.toml",
        "[backends.from_env]\nvolume_driver = \"file\"\n",
    );
    // $EMBER_CONFIG is used when --config is absent.
    let out = ember_env(
        &["config", "check"],
        &[("EMBER_CONFIG", a.to_str().unwrap())],
    );
    assert!(
        stdout(&out).contains("backend from_env"),
        "{}",
        stdout(&out)
    );
    // ./config/ember.toml is found from the working directory.
    std::fs::create_dir(dir.path().join("config")).unwrap();
    write(
        &dir.path().join("config"),
        "ember.toml",
        "[backends.from_cwd]\nvolume_driver = \"file\"\n",
    );
    let out = std::process::Command::new(EMBER)
        .args(["config", "check", "--json"])
        .current_dir(dir.path())
        .env_remove("EMBER_CONFIG")
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["backends"][0]["name"], "from_cwd");
    assert_eq!(v["ok"], true);
    // --database-url wins over the file, and the password never prints.
    let out = ember(&[
        "--config",
        a.to_str().unwrap(),
        "--database-url",
        "postgres://u:pw@127.0.0.1:1/db",
        "config",
        "check",
    ]);
    assert!(!stdout(&out).contains("pw@"), "{}", stdout(&out));
}

#[test]
fn every_cinder_rbd_option_is_known_and_the_honoured_ones_apply() {
    let cfg = config::load(Path::new("tests/valid_configs/every-rbd-option.conf")).unwrap();
    assert_eq!(cfg.backends.len(), 1, "{:?}", cfg.broken);
    let b = &cfg.backends[0];
    let config::DriverConfig::Rbd(r) = &b.driver else {
        panic!("not rbd: {b:?}");
    };
    assert_eq!(r.chunk_mib, 8);
    assert_eq!(r.connection_retries, 5);
    assert_eq!(r.connection_interval.as_secs(), 2);
    assert!(!r.dynamic_total_capacity && !r.exclusive_pool);
    assert_eq!(r.deferred_deletion_delay.as_secs(), 3600);
    assert_eq!(b.deferred_deletion_purge_interval.as_secs(), 120);
    assert_eq!(b.concurrent_flattens, 2);
    assert_eq!(b.max_clone_depth, 3);
    // Handed out in `volume attach`'s connection info.
    assert_eq!(
        r.secret_uuid.as_deref(),
        Some("457eb676-33da-42ec-9a8c-9293d545c337")
    );
    // The one it does not use is named as Cinder's, with why; nothing is "unknown".
    let notes = cfg.notes.join("\n");
    assert!(!notes.contains("unknown key"), "{notes}");
    assert!(!notes.contains("rbd_secret_uuid"), "{notes}");
    let key = "replication_connect_timeout";
    assert!(
        notes.contains(&format!(
            "{key} in [ceph-1]: a Cinder option ember does not use ("
        )),
        "{key}: {notes}"
    );
    // Through the binary too.
    let o = common::ember(&[
        "config",
        "check",
        "tests/valid_configs/every-rbd-option.conf",
    ]);
    let out = format!("{}{}", common::stdout(&o), common::stderr(&o));
    assert!(
        !out.contains("unknown key") && !out.contains("did you mean"),
        "{out}"
    );
}

/// Options Cinder registers for every backend section beyond the RBD driver's and the common
/// volume options (its [backend_defaults] group) are Cinder's, not unknown keys: they were
/// "unknown key, did you mean ...?" (issue 23).
#[test]
fn backend_defaults_options_are_cinders_not_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cinder.conf");
    std::fs::write(
        &path,
        "[DEFAULT]\nenabled_backends = ceph-1\n[backend_defaults]\nimage_volume_cache_enabled = True\n\
         [ceph-1]\nvolume_driver = cinder.volume.drivers.rbd.RBDDriver\nrbd_pool = volumes\n\
         image_volume_cache_max_size_gb = 200\niser_port = 3261\nnvmet_port_id = 2\n",
    )
    .unwrap();
    let o = common::ember(&["config", "check", path.to_str().unwrap()]);
    let out = format!("{}{}", common::stdout(&o), common::stderr(&o));
    assert!(o.status.success(), "{out}");
    assert!(
        !out.contains("unknown key") && !out.contains("did you mean"),
        "{out}"
    );
    for key in [
        "image_volume_cache_max_size_gb",
        "iser_port",
        "nvmet_port_id",
    ] {
        assert!(
            out.contains(&format!(
                "{key} in [ceph-1]: a Cinder option ember does not use ("
            )),
            "{key}: {out}"
        );
    }
}
