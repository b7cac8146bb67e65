//! Connection info: what a consumer needs to open an attached volume, in the forms real
//! clients take. For rbd, Cinder's `initialize_connection` answer (what Nova and os-brick read),
//! a libvirt `<disk>` element, and a qemu `rbd:` URI; for the file backend, Cinder's `local`
//! connector answer (the path), a libvirt file disk, and the path for qemu.

use std::io::Cursor;
use std::path::PathBuf;

use quick_xml::Writer;
use quick_xml::events::BytesText;
use serde_json::json;

use crate::config::{BackendConfig, DriverConfig, RbdConfig};
use crate::db::{AttachmentRow, VolumeRow};
use crate::driver::rbd::cephconf::{self, CephConf};
use crate::driver::volume_image;

/// The forms `volume attach --format` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Cinder's connection info (driver_volume_type + data), as JSON
    Json,
    /// A libvirt `<disk>` element, ready to paste into a domain
    Libvirt,
    /// A qemu block URI (`rbd:pool/image:id=user:conf=...`) or the file's path
    Qemu,
}

/// Connection info of one attachment, in every form, and what the operator should know about
/// it (a missing libvirt secret).
#[derive(Debug, Clone)]
pub struct Connection {
    pub json: serde_json::Value,
    pub libvirt: String,
    pub qemu: String,
    pub warnings: Vec<String>,
}

impl Connection {
    pub fn render(&self, f: Format) -> String {
        match f {
            Format::Json => serde_json::to_string_pretty(&self.json).unwrap_or_default(),
            Format::Libvirt => self.libvirt.clone(),
            Format::Qemu => self.qemu.clone(),
        }
    }
}

/// Why no connection info can be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("backend {backend}: {why}")]
    Backend { backend: String, why: String },
}

/// Connection info for an attachment of `v` on backend `b` (this host's section of it).
pub fn connection_info(
    b: &BackendConfig,
    v: &VolumeRow,
    a: &AttachmentRow,
) -> Result<Connection, ConnectionError> {
    let image = volume_image(&v.id);
    let ro = a.mode == "ro";
    match &b.driver {
        DriverConfig::Rbd(r) => rbd(b, r, &image, v, a, ro),
        DriverConfig::File { dir } => Ok(file(dir.join(&image), v, a, ro)),
        DriverConfig::Fake(_) => Err(ConnectionError::Backend {
            backend: b.name.clone(),
            why: "the fake driver holds no data a consumer could open".into(),
        }),
    }
}

fn rbd(
    b: &BackendConfig,
    r: &RbdConfig,
    image: &str,
    v: &VolumeRow,
    a: &AttachmentRow,
    ro: bool,
) -> Result<Connection, ConnectionError> {
    let conf_path =
        cephconf::resolve_conf(&r.cluster_name, r.ceph_conf.as_deref()).map_err(|tried| {
            ConnectionError::Backend {
                backend: b.name.clone(),
                why: format!(
                    "no ceph.conf to read the monitors from (tried {}); set rbd_ceph_conf",
                    tried
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        })?;
    let conf = CephConf::load(&conf_path).map_err(|e| ConnectionError::Backend {
        backend: b.name.clone(),
        why: format!("{}: {e}", conf_path.display()),
    })?;
    let mut mons: Vec<(String, u16)> = vec![];
    for m in conf.monitors() {
        if !mons.contains(&(m.host.clone(), m.port)) {
            mons.push((m.host.clone(), m.port));
        }
    }
    if mons.is_empty() {
        return Err(ConnectionError::Backend {
            backend: b.name.clone(),
            why: format!(
                "{} names no monitors (mon_host): a consumer could not reach the cluster",
                conf_path.display()
            ),
        });
    }
    let name = format!("{}/{image}", r.pool);
    let user = r.user.clone().unwrap_or_else(|| "admin".into());
    let mut warnings = vec![];
    if r.secret_uuid.is_none() {
        warnings.push(format!(
            "backend {}: rbd_secret_uuid is not set, so the connection info names no libvirt secret; set it to the uuid of the secret holding client.{user}'s key on the hypervisors (virsh secret-list)",
            b.name
        ));
    }
    let json = json!({
        "driver_volume_type": "rbd",
        "data": {
            "name": name,
            "hosts": mons.iter().map(|m| m.0.clone()).collect::<Vec<_>>(),
            "ports": mons.iter().map(|m| m.1.to_string()).collect::<Vec<_>>(),
            "cluster_name": r.cluster_name,
            "auth_enabled": r.user.is_some(),
            "auth_username": r.user,
            "secret_type": "ceph",
            "secret_uuid": r.secret_uuid,
            "volume_id": v.id,
            "discard": true,
            "access_mode": a.mode,
            "attachment_id": a.id,
        }
    });
    let mut qemu = format!("rbd:{name}:id={user}:conf={}", conf_path.display());
    if let Some(k) = &r.keyring_conf {
        qemu += &format!(":keyring={}", k.display());
    }
    let libvirt = disk_xml(
        |w| {
            w.create_element("source")
                .with_attributes([("protocol", "rbd"), ("name", name.as_str())])
                .write_inner_content(|w| {
                    for (host, port) in &mons {
                        w.create_element("host")
                            .with_attributes([("name", host.as_str()), ("port", &port.to_string())])
                            .write_empty()?;
                    }
                    Ok(())
                })?;
            let usage = format!("client.{user} secret");
            w.create_element("auth")
                .with_attribute(("username", user.as_str()))
                .write_inner_content(|w| {
                    let secret = w.create_element("secret").with_attribute(("type", "ceph"));
                    match &r.secret_uuid {
                        Some(u) => secret.with_attribute(("uuid", u.as_str())).write_empty()?,
                        None => secret
                            .with_attribute(("usage", usage.as_str()))
                            .write_empty()?,
                    };
                    Ok(())
                })?;
            Ok(())
        },
        "network",
        v,
        ro,
    );
    Ok(Connection {
        json,
        libvirt,
        qemu,
        warnings,
    })
}

fn file(path: PathBuf, v: &VolumeRow, a: &AttachmentRow, ro: bool) -> Connection {
    let p = path.display().to_string();
    let json = json!({
        "driver_volume_type": "local",
        "data": {
            "device_path": p,
            "volume_id": v.id,
            "access_mode": a.mode,
            "attachment_id": a.id,
        }
    });
    let libvirt = disk_xml(
        |w| {
            w.create_element("source")
                .with_attribute(("file", p.as_str()))
                .write_empty()?;
            Ok(())
        },
        "file",
        v,
        ro,
    );
    Connection {
        json,
        libvirt,
        qemu: p,
        warnings: vec![],
    }
}

/// The `<disk>` element around a source: raw, no host cache, discard passed down, serial =
/// the volume id (as Nova sets it, so the guest finds it under /dev/disk/by-id).
fn disk_xml(
    source: impl FnOnce(&mut Writer<Cursor<Vec<u8>>>) -> std::io::Result<()>,
    kind: &str,
    v: &VolumeRow,
    ro: bool,
) -> String {
    let mut w = Writer::new_with_indent(Cursor::new(Vec::new()), b' ', 2);
    let r = w
        .create_element("disk")
        .with_attributes([("type", kind), ("device", "disk")])
        .write_inner_content(|w| {
            w.create_element("driver")
                .with_attributes([
                    ("name", "qemu"),
                    ("type", "raw"),
                    ("cache", "none"),
                    ("discard", "unmap"),
                ])
                .write_empty()?;
            source(w)?;
            w.create_element("target")
                .with_attributes([("dev", "vdb"), ("bus", "virtio")])
                .write_empty()?;
            w.create_element("serial")
                .write_text_content(BytesText::new(&v.id))?;
            if ro {
                w.create_element("readonly").write_empty()?;
            }
            Ok(())
        });
    match r {
        Ok(_) => String::from_utf8_lossy(&w.into_inner().into_inner()).into_owned(),
        Err(e) => format!("<!-- could not write the disk element: {e} -->"),
    }
}
