//! The running node's state, assembled once at start: config, datasources, mappings, identity.
//! Per-node work happens here so that nothing is rebuilt per message; it must not serve HTTP itself.

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::{Config, DatasourceConfig};
use crate::datasource::{DatasourceError, Datasources};
use crate::diag::Problems;
use crate::mapping::MappingSet;
use crate::mapping::watch::LiveMappings;
use crate::samples::{self, SampleError};
use crate::soap::MessageId;
use crate::storage::{Store, StoreError, StoreOptions};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create data_dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Samples(#[from] SampleError),
    #[error(transparent)]
    Datasource(#[from] DatasourceError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Trust(#[from] crate::trust::TrustError),
    #[error("the mapping set is invalid:\n{0}")]
    Mappings(Problems),
}

/// Everything a request needs, built once.
pub struct Node {
    pub config: Config,
    pub datasources: Datasources,
    /// The mapping set in force, swapped atomically on hot reload; read it through [`Node::mappings`].
    pub live_mappings: LiveMappings,
    pub store: Store,
    pub metrics: crate::metrics::Metrics,
    /// The signing key and the trust store.
    pub trust: crate::trust::Trust,
    /// Freshness and replay check of signed GetResponse polls (`trust.poll_max_age`).
    pub poll_guard: crate::poll_guard::PollGuard,
    /// The node field of the v1 UUIDs this node generates.
    uuid_node: [u8; 6],
}

impl Node {
    /// Prepares the data directory and sample database, opens datasources and loads the mapping set.
    pub fn start(config: Config) -> Result<Node, StartError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        build_missing_sample_databases(&config)?;
        let datasources = Datasources::open(&config.datasources)?;
        let mappings = MappingSet::load_at_start(&config.mappings_dir, &datasources)
            .map_err(StartError::Mappings)?;
        let live_mappings = LiveMappings::new(&config.mappings_dir, mappings);
        let options = StoreOptions {
            durability: config.storage.durability,
            group_commit: config.storage.group_commit,
            ..StoreOptions::default()
        };
        let store = Store::open(&config.data_dir, &options)?;
        let trust = crate::trust::Trust::load(&config)?;
        let poll_guard = crate::poll_guard::PollGuard::new(config.trust.poll_max_age);
        Ok(Node {
            poll_guard,
            trust,
            config,
            datasources,
            live_mappings,
            store,
            metrics: crate::metrics::Metrics::default(),
            uuid_node: random_uuid_node(),
        })
    }

    /// Signs the element with `Id` = `id` in `xml`, putting the signature into the `holder` element
    /// (in the types namespace of `version`).
    pub fn sign(
        &self,
        xml: &[u8],
        id: &str,
        holder: &str,
        version: crate::soap::Version,
    ) -> Result<Vec<u8>, crate::dsig::DsigError> {
        let text = std::str::from_utf8(xml)
            .map_err(|_| crate::dsig::DsigError::Malformed("not UTF-8".into()))?;
        crate::dsig::sign_message(
            text,
            &self.config.limits.xml,
            id,
            (version.types_ns(), holder),
            &self.trust.key,
        )
        .map(String::into_bytes)
    }

    // ---- mappings (hot reload) -------------------------------------------------------------

    /// A snapshot of the mapping set in force: take it once per request and finish on it.
    pub fn mappings(&self) -> Arc<MappingSet> {
        self.live_mappings.current()
    }

    /// Re-reads mappings/ and swaps the new set in when all of it is valid; otherwise keeps the old
    /// one, logs and records the refusal (shown by /readyz, counted in `live_mappings.reloads_refused`).
    pub fn reload_mappings(&self) -> Result<usize, Problems> {
        self.live_mappings.reload(&self.datasources)
    }

    /// Starts watching mappings/; each settled change reloads. Stops when the handle is dropped.
    pub fn watch_mappings(
        node: &Arc<Node>,
    ) -> Result<crate::mapping::watch::WatchHandle, notify::Error> {
        let weak = Arc::downgrade(node);
        crate::mapping::watch::watch(node.live_mappings.dir(), move || {
            if let Some(node) = weak.upgrade() {
                let _ = node.reload_mappings();
            }
        })
    }

    /// A fresh MessageID for a message this node creates.
    pub fn new_message_id(&self) -> MessageId {
        MessageId::generate(&self.uuid_node)
    }

    /// Storage readiness: the data directory accepts writes.
    pub fn storage_health(&self) -> Result<(), String> {
        self.store.health().map_err(|e| e.to_string())?;
        let probe = self.config.data_dir.join(".readyz-probe");
        std::fs::write(&probe, b"ok")
            .and_then(|()| std::fs::remove_file(&probe))
            .map_err(|e| {
                format!(
                    "data_dir {} is not writable: {e}",
                    self.config.data_dir.display()
                )
            })
    }
}

/// Builds each SQLite datasource that names a sample folder and whose file is missing.
pub fn build_missing_sample_databases(config: &Config) -> Result<(), SampleError> {
    for (name, ds) in &config.datasources {
        if let DatasourceConfig::Sqlite(sqlite) = ds
            && let Some(samples_dir) = &sqlite.create_from_samples
            && samples::ensure_database(samples_dir, &sqlite.path)?
        {
            tracing::info!(datasource = %name, path = %sqlite.path.display(), "built the sample database from {}", samples_dir.display());
        }
    }
    Ok(())
}

/// A random node id with the multicast bit set, as RFC 4122 asks when no MAC address is used.
fn random_uuid_node() -> [u8; 6] {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let mut node = [0u8; 6];
    node.copy_from_slice(&bytes[10..16]);
    node[0] |= 0x01;
    node
}
