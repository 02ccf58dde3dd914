//! Models that change under the server: `SIGHUP`, or `POST /v1/reload` (behind the token; with
//! no token, from loopback only), rescans `--models`. A rescan builds the next catalog (a file
//! that did not change keeps its loaded model) and swaps it in. A request holds the catalog it
//! started with, so it finishes on its model; the next requests see the new set.
use super::errors::ApiError;
use super::metrics::Metrics;
use super::models::{Catalog, Changes, Loader};
use super::AppState;
use anyhow::{anyhow, Result};
use axum::extract::{ConnectInfo, State};
use axum::{Extension, Json};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

/// The models being served, and how to load them again.
pub struct Models {
    loader: Arc<Loader>,
    current: RwLock<Arc<Catalog>>,
    /// One rescan at a time; the next one waits, then sees what this one did.
    rescanning: tokio::sync::Mutex<()>,
    metrics: Arc<Metrics>,
}

impl Models {
    /// The first scan; `Err` when the folder cannot be read or nothing in it loads.
    pub fn load(loader: Loader, metrics: Arc<Metrics>) -> Result<Models> {
        let (catalog, changes) = loader.scan(&Loader::empty())?;
        metrics.load_errors.inc_by(changes.errors.len() as u64);
        if catalog.len() == 0 {
            return Err(anyhow!(
                "--models {}: no style model could be loaded (looked for *.safetensors)",
                loader.dir().display()
            ));
        }
        metrics.models.set(catalog.len() as i64);
        Ok(Models {
            loader: Arc::new(loader),
            current: RwLock::new(Arc::new(catalog)),
            rescanning: tokio::sync::Mutex::new(()),
            metrics,
        })
    }

    /// The set that new requests see.
    pub fn current(&self) -> Arc<Catalog> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Rescans the folder (off the async threads) and swaps the new set in. `Err` when the
    /// folder cannot be read; the set then stays as it was.
    pub async fn reload(&self, why: &str) -> Result<(Arc<Catalog>, Changes)> {
        let _one_at_a_time = self.rescanning.lock().await;
        let old = self.current();
        let loader = Arc::clone(&self.loader);
        let scanned = tokio::task::spawn_blocking(move || loader.scan(&old))
            .await
            .map_err(|e| anyhow!("the rescan failed: {e}"))
            .and_then(|scanned| scanned);
        let (catalog, changes) = match scanned {
            Ok(scanned) => scanned,
            Err(err) => {
                self.metrics.load_errors.inc();
                eprintln!(
                    "warning: reload ({why}): {}; the models loaded before keep serving",
                    crate::one_line(&err)
                );
                return Err(err);
            }
        };
        let catalog = Arc::new(catalog);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::clone(&catalog);
        self.metrics.reloads.inc();
        self.metrics.load_errors.inc_by(changes.errors.len() as u64);
        self.metrics.models.set(catalog.len() as i64);
        eprintln!(
            "reloaded --models {} ({why}): {}",
            self.loader.dir().display(),
            summary(catalog.len(), &changes)
        );
        Ok((catalog, changes))
    }
}

/// `3 models: added a; replaced b; removed c; 2 unchanged; 1 failed to load`.
fn summary(count: usize, changes: &Changes) -> String {
    let mut parts = vec![format!(
        "{count} model{}",
        if count == 1 { "" } else { "s" }
    )];
    for (label, names) in [
        ("added", &changes.added),
        ("replaced", &changes.replaced),
        ("removed", &changes.removed),
    ] {
        if !names.is_empty() {
            parts.push(format!("{label} {}", names.join(", ")));
        }
    }
    parts.push(format!("{} unchanged", changes.unchanged));
    if !changes.errors.is_empty() {
        parts.push(format!("{} failed to load", changes.errors.len()));
    }
    parts.join("; ")
}

/// `POST /v1/reload`: rescans `--models` and answers what changed, as JSON:
/// `{"models": [names], "added", "replaced", "removed", "unchanged", "errors": [{model, error,
/// old_version_serves}]}`. Without `--token`, only from loopback (403 otherwise).
pub async fn reload(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
) -> Result<Json<Value>, ApiError> {
    if !may_reload(
        state.token_set,
        peer.map(|Extension(ConnectInfo(addr))| addr),
    ) {
        return Err(ApiError::forbidden(
            "reload is allowed from loopback only when the server has no --token",
        ));
    }
    let (catalog, changes) = state.models.reload("POST /v1/reload").await.map_err(|e| {
        ApiError::internal(format!(
            "{}; the models loaded before keep serving",
            crate::one_line(&e)
        ))
    })?;
    let names: Vec<&str> = catalog.infos().iter().map(|i| i.name.as_str()).collect();
    Ok(Json(json!({
        "models": names,
        "added": changes.added,
        "replaced": changes.replaced,
        "removed": changes.removed,
        "unchanged": changes.unchanged,
        "errors": changes.errors,
    })))
}

/// Whether a reload may come from `peer`: with a token (already checked), from anywhere;
/// without one, from loopback only.
fn may_reload(token_set: bool, peer: Option<SocketAddr>) -> bool {
    token_set || peer.is_some_and(|addr| addr.ip().to_canonical().is_loopback())
}

/// Rescans on every `SIGHUP` (installed before the server says it is ready, so that an early
/// hangup reloads rather than kills it).
#[cfg(unix)]
pub fn on_hangup(models: Arc<Models>) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups =
        signal(SignalKind::hangup()).map_err(|e| anyhow!("cannot catch SIGHUP: {e}"))?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            let _ = models.reload("SIGHUP").await;
        }
    });
    Ok(())
}

/// No SIGHUP elsewhere: `POST /v1/reload` only.
#[cfg(not(unix))]
pub fn on_hangup(_models: Arc<Models>) -> Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn without_a_token_only_loopback_may_reload() {
        let may =
            |token, peer: Option<&str>| super::may_reload(token, peer.map(|p| p.parse().unwrap()));
        for peer in [
            "127.0.0.1:5000",
            "127.1.2.3:5000",
            "[::1]:5000",
            "[::ffff:127.0.0.1]:5000",
        ] {
            assert!(may(false, Some(peer)), "{peer}");
        }
        for peer in [
            "10.0.0.7:5000",
            "192.168.1.2:80",
            "[2001:db8::1]:5000",
            "[::ffff:10.0.0.1]:1",
        ] {
            assert!(!may(false, Some(peer)), "{peer}");
            assert!(may(true, Some(peer)), "{peer} with the token");
        }
        assert!(!may(false, None));
    }
}
