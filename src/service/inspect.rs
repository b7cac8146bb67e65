//! What the storage says of one volume: who has it open (the driver's watchers, lockers or
//! processes, each named by the host whose ember services use its address, ember's own clients
//! marked) and what it really uses. One place serves the jobs (delete and extend refuse an open
//! volume), the CLI (`volume show`, `volume locks`, the delete pre-check) and the console's
//! detail pane.

use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::db::{Db, VolumeRow};
use crate::driver::{self, DriverError, Holder, VolumeDriver, address_ip, address_key};

use super::BackendService;

/// Whether an inspection also measures what the image uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    Measure,
    Skip,
}

/// A storage call made for an operator's question gives up after this long.
const ASK_LIMIT: Duration = Duration::from_secs(20);

/// Who has it open, the command that shows the same from the storage's own tools, and what
/// the image really uses.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Inspection {
    pub holders: Vec<Holder>,
    pub check: String,
    /// Allocated bytes of the image itself (None when the storage could not tell).
    pub used_bytes: Option<u64>,
}

impl Inspection {
    /// Those that are not an ember service's own client: the ones a delete must not surprise.
    pub fn others(&self) -> Vec<&Holder> {
        self.holders.iter().filter(|h| !h.ember).collect()
    }

    /// The refusal for an open volume, naming each holder.
    pub fn in_use(&self, backend: &str, volume_id: &str) -> Option<DriverError> {
        let others = self.others();
        if others.is_empty() {
            return None;
        }
        Some(DriverError::InUse {
            backend: backend.to_string(),
            image: driver::volume_image(volume_id),
            holders: others
                .iter()
                .map(|h| h.describe())
                .collect::<Vec<_>>()
                .join("; "),
            check: self.check.clone(),
        })
    }
}

/// Names the host of each holder whose address an ember service recorded, and marks the
/// services' own clients (exact address) as ember's.
pub async fn annotate(db: &Db, holders: &mut [Holder]) {
    if holders.is_empty() {
        return;
    }
    let Ok(services) = db.list_services().await else {
        return; // names are a courtesy: the holders stand without them
    };
    for h in holders.iter_mut() {
        let key = address_key(&h.address);
        let ip = address_ip(&h.address);
        for s in &services {
            let Some(a) = &s.client_address else { continue };
            let host = s.host.split('@').next().unwrap_or(&s.host).to_string();
            if address_key(a) == key {
                h.ember = true;
                h.host = Some(host);
                break;
            }
            if h.host.is_none() && !ip.is_empty() && address_ip(a) == ip {
                h.host = Some(host);
            }
        }
    }
}

/// Asks a driver on its own thread, bounded. `usage`: also what the image uses (`rbd du`,
/// which reads every object without fast-diff): for an operator's look, not for the checks
/// before a delete or extend.
async fn ask(
    drv: Arc<dyn VolumeDriver>,
    volume_id: &str,
    usage: Usage,
) -> Result<Inspection, DriverError> {
    let id = volume_id.to_string();
    bounded(drv, "status", ASK_LIMIT, move |drv| {
        let image = driver::volume_image(&id);
        let holders = drv.holders(&image)?;
        Ok(Inspection {
            holders,
            check: drv.holders_command(&image),
            used_bytes: match usage {
                Usage::Measure => drv.used_bytes(&id).ok(),
                Usage::Skip => None,
            },
        })
    })
    .await
}

/// One blocking driver call for an operator's command, on the process's bounded operator
/// pool, given up after `limit`: storage that does not answer is an error naming the backend,
/// never a hang, and never a pile of threads.
pub async fn bounded<T: Send + 'static>(
    drv: Arc<dyn VolumeDriver>,
    op: &'static str,
    limit: Duration,
    f: impl FnOnce(&dyn VolumeDriver) -> Result<T, DriverError> + Send + 'static,
) -> Result<T, DriverError> {
    let backend = drv.backend().to_string();
    match super::pool::operator_call(limit, move || f(drv.as_ref())).await {
        Ok(r) => r,
        Err(e) => Err(e.into_driver(backend, op)),
    }
}

impl BackendService {
    /// Who has one of this backend's volumes open (for a job, on this service's driver).
    pub async fn holders(&self, db: &Db, volume_id: &str) -> Result<Inspection, DriverError> {
        let mut h = ask(self.driver.clone(), volume_id, Usage::Skip).await?;
        annotate(db, &mut h.holders).await;
        Ok(h)
    }
}

/// Who has a volume open, asked through this process's service of its backend when it runs
/// one, else through a client of its own (the CLI, an attached console). A backend this host
/// has no section for cannot be asked from here.
pub async fn of_volume(
    cfg: &Config,
    db: &Db,
    local: &[Arc<BackendService>],
    v: &VolumeRow,
    usage: Usage,
) -> Result<Inspection, DriverError> {
    if let Some(svc) = local.iter().find(|s| s.name == v.backend) {
        let mut h = ask(svc.driver.clone(), &v.id, usage).await?;
        annotate(db, &mut h.holders).await;
        return Ok(h);
    }
    let Some(bc) = cfg.backend(&v.backend) else {
        return Err(DriverError::Invalid {
            backend: v.backend.clone(),
            op: "status",
            message: "this host's config has no section for it: ask from a host that serves it"
                .into(),
        });
    };
    let drv = driver::open_once(bc)?;
    let mut h = ask(drv, &v.id, usage).await?;
    annotate(db, &mut h.holders).await;
    Ok(h)
}

/// Who has each of several volumes of one backend open, through one client of this host's,
/// in one bounded call (the doctor's comparison with the attachments). A volume the storage
/// could not answer for is left out.
pub async fn holders_of_many(
    cfg: &Config,
    db: &Db,
    backend: &str,
    ids: Vec<String>,
) -> Result<Vec<(String, Vec<Holder>)>, DriverError> {
    let Some(bc) = cfg.backend(backend) else {
        return Err(DriverError::Invalid {
            backend: backend.to_string(),
            op: "status",
            message: "this host's config has no section for it: ask from a host that serves it"
                .into(),
        });
    };
    let drv = driver::open_once(bc)?;
    let limit = ASK_LIMIT * 3;
    let mut all = bounded(drv, "status", limit, move |d| {
        Ok(ids
            .into_iter()
            .filter_map(|id| {
                let h = d.holders(&driver::volume_image(&id)).ok()?;
                Some((id, h))
            })
            .collect::<Vec<_>>())
    })
    .await?;
    for (_, h) in all.iter_mut() {
        annotate(db, h).await;
    }
    Ok(all)
}

/// Used bytes of every volume on the backends this host's config has (`volume list --wide`):
/// one listing per backend, bounded in time. A backend that cannot tell is named in the
/// second list with why.
pub async fn used_by_volume(
    cfg: &Config,
    only: Option<&str>,
) -> (std::collections::HashMap<String, u64>, Vec<String>) {
    let mut used = std::collections::HashMap::new();
    let mut unknown = vec![];
    for b in cfg
        .backends
        .iter()
        .filter(|b| only.is_none_or(|o| o == b.name))
    {
        let listing = match driver::open_once(b) {
            Ok(drv) => bounded(drv, "list", ASK_LIMIT, |d| d.list())
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match listing {
            Ok(images) => {
                for i in images {
                    if let Some(id) = i.name.strip_prefix("volume-") {
                        used.insert(id.to_string(), i.used_bytes);
                    }
                }
            }
            Err(e) => unknown.push(format!("backend {}: {e}", b.name)),
        }
    }
    (used, unknown)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FakeConfig;
    use crate::driver::fake::FakeDriver;
    use crate::service::pool::OPERATOR_SLOTS;

    /// Operator calls that hang in the storage keep their slots: past the bound the next one
    /// is refused as saturated instead of starting yet another thread (issue 23: they ran on
    /// plain `spawn_blocking`, without a bound).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hung_operator_calls_do_not_pile_up_threads() {
        let drv: Arc<dyn VolumeDriver> = Arc::new(FakeDriver::new("f", FakeConfig::default()));
        let (release, hung) = std::sync::mpsc::channel::<()>();
        let hung = Arc::new(std::sync::Mutex::new(hung));
        for _ in 0..OPERATOR_SLOTS {
            let hung = hung.clone();
            let r = bounded(
                drv.clone(),
                "status",
                Duration::from_millis(50),
                move |_| {
                    let _ = hung.lock().map(|h| h.recv());
                    Ok(())
                },
            )
            .await;
            assert!(matches!(r, Err(DriverError::Timeout { .. })), "{r:?}");
        }
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = ran.clone();
        let r = bounded(
            drv.clone(),
            "status",
            Duration::from_millis(200),
            move |_| {
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
                Ok(())
            },
        )
        .await;
        let text = r.map(|_| ()).expect_err("past the bound").to_string();
        assert!(text.contains("saturated"), "{text}");
        assert!(
            !ran.load(std::sync::atomic::Ordering::SeqCst),
            "it must not have run"
        );
        for _ in 0..OPERATOR_SLOTS {
            let _ = release.send(());
        }
        let r = bounded(drv, "status", Duration::from_secs(10), |_| Ok(7)).await;
        assert_eq!(r, Ok(7));
    }
}
