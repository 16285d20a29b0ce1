//! Hot reload: the mapping set in force (swapped atomically only after a complete check), reload counts
//! and the debounced watcher of mappings/; it must not serve requests or swap in an unchecked set.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use notify::{RecursiveMode, Watcher};

use super::MappingSet;
use crate::datasource::Datasources;
use crate::diag::Problems;

/// How long the folder must be quiet before a reload (editors write files in several steps).
pub const DEBOUNCE: Duration = Duration::from_millis(300);

/// The last refused reload, for /readyz and logs.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub at: SystemTime,
    pub problems: Problems,
}

/// The mapping set in force and what happened to reloads. Requests take one snapshot
/// ([`LiveMappings::current`]) and finish on it even if a reload swaps in a new set meanwhile.
pub struct LiveMappings {
    dir: PathBuf,
    current: ArcSwap<MappingSet>,
    /// Reloads that replaced the set (a counter for the metrics endpoint to export).
    pub reloads_applied: AtomicU64,
    /// Reloads refused because the new files were invalid (a counter for the metrics endpoint).
    pub reloads_refused: AtomicU64,
    last_refusal: Mutex<Option<Refusal>>,
    /// Serializes reloads (the watcher and an admin's manual trigger).
    reloading: Mutex<()>,
}

impl LiveMappings {
    pub fn new(dir: &Path, initial: MappingSet) -> LiveMappings {
        LiveMappings {
            dir: dir.to_path_buf(),
            current: ArcSwap::from_pointee(initial),
            reloads_applied: AtomicU64::new(0),
            reloads_refused: AtomicU64::new(0),
            last_refusal: Mutex::new(None),
            reloading: Mutex::new(()),
        }
    }

    /// The set in force now.
    pub fn current(&self) -> Arc<MappingSet> {
        self.current.load_full()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Loads and checks the folder again; swaps the new set in only when all of it is valid.
    pub fn reload(&self, datasources: &Datasources) -> Result<usize, Problems> {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        match MappingSet::load(&self.dir, datasources) {
            Ok(set) => {
                let n = set.len();
                self.current.store(Arc::new(set));
                self.reloads_applied.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut last) = self.last_refusal.lock() {
                    *last = None;
                }
                tracing::info!(dir = %self.dir.display(), "mappings reloaded: {n} in force");
                Ok(n)
            }
            Err(problems) => {
                self.reloads_refused.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    dir = %self.dir.display(),
                    "mapping change refused; the previous set keeps serving:\n{problems}"
                );
                if let Ok(mut last) = self.last_refusal.lock() {
                    *last = Some(Refusal {
                        at: SystemTime::now(),
                        problems: problems.clone(),
                    });
                }
                Err(problems)
            }
        }
    }

    /// The last refused reload, when the files on disk are still not what is serving.
    pub fn last_refusal(&self) -> Option<Refusal> {
        self.last_refusal.lock().ok().and_then(|l| l.clone())
    }

    /// One line for /readyz: what is in force and whether the last change was refused.
    pub fn status_line(&self) -> String {
        let set = self.current();
        let mut line = format!(
            "ok ({} in force: {}; reloads applied {}, refused {})",
            set.len(),
            set.names().join(", "),
            self.reloads_applied.load(Ordering::Relaxed),
            self.reloads_refused.load(Ordering::Relaxed)
        );
        if let Some(r) = self.last_refusal() {
            let age = r.at.elapsed().map(|d| d.as_secs()).unwrap_or(0);
            let problems = r.problems.to_string().replace('\n', " | ");
            line.push_str(&format!(
                "; LAST CHANGE REFUSED {age}s ago, the previous set keeps serving: {problems}"
            ));
        }
        line
    }
}

/// Stops watching when dropped.
pub struct WatchHandle {
    _watcher: notify::RecommendedWatcher,
}

/// Whether an event changes what a reload would read: files created, written, renamed or removed.
fn is_change(event: &notify::Event) -> bool {
    use notify::EventKind;
    use notify::event::{AccessKind, AccessMode, ModifyKind};
    match event.kind {
        EventKind::Create(_) | EventKind::Remove(_) => true,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Modify(_) => true,
        // A file closed after writing: the surest sign an editor or a copy finished.
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) | EventKind::Other => false,
        // Backends that cannot tell what happened: assume a change.
        EventKind::Any => true,
    }
}

/// Watches `dir` (recursively) and calls `on_change` once the folder has been quiet for [`DEBOUNCE`].
pub fn watch(
    dir: &Path,
    on_change: impl Fn() + Send + 'static,
) -> Result<WatchHandle, notify::Error> {
    let (tx, rx) = channel::<notify::Result<notify::Event>>();
    let mut watcher = notify::recommended_watcher(move |event| {
        let _ = tx.send(event);
    })?;
    watcher.watch(dir, RecursiveMode::Recursive)?;
    let shown = dir.display().to_string();
    std::thread::Builder::new()
        .name("mapping-watch".into())
        .spawn(move || {
            // Ends when the watcher (and with it the sender) is dropped.
            while let Ok(first) = rx.recv() {
                match first {
                    Err(e) => {
                        tracing::warn!(dir = %shown, "watching mappings: {e}");
                        continue;
                    }
                    // Reading the files (a reload does) raises access events: they are no change,
                    // and reacting to them would reload forever.
                    Ok(event) if !is_change(&event) => continue,
                    Ok(_) => {}
                }
                loop {
                    match rx.recv_timeout(DEBOUNCE) {
                        Ok(_) => continue,
                        Err(RecvTimeoutError::Timeout) => break,
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
                on_change();
            }
        })
        .map_err(|e| notify::Error::generic(&format!("cannot start the watcher thread: {e}")))?;
    Ok(WatchHandle { _watcher: watcher })
}
