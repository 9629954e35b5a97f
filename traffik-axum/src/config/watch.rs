//! [`Rules::watch`]: reload on a change of the file and on SIGHUP.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::RulesError;
use super::rules::Rules;

impl Rules {
    /// Reloads when the file changes (watched with `notify`; editors that
    /// save by renaming are seen too, and so is a file that is a link whose
    /// target is swapped, as a Kubernetes ConfigMap's is) and when the
    /// process receives SIGHUP. Changes within 100 ms are one reload; a
    /// change that leaves the text as it was does nothing. Stops when the
    /// [`Watch`] is dropped. Needs a Tokio runtime.
    ///
    /// # Errors
    ///
    /// When there is no file, or the watch or the signal cannot be set up.
    pub fn watch(&self) -> Result<Watch, RulesError> {
        let origin = &self.inner.origin;
        let Some(path) = self.inner.path.clone() else {
            return Err(RulesError::at(
                origin,
                0,
                0,
                "these rules were not read from a file, so there is nothing to watch".into(),
            ));
        };
        // `true` when the reload is asked for (SIGHUP), `false` when the
        // file may have changed (then the same text again does nothing).
        // Bounded: under a flood of events, a full queue already holds a
        // reload to come.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<bool>(16);
        let name = path.file_name().map(ToOwned::to_owned);
        let mut dirs = vec![match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        }];
        // A link (a Kubernetes ConfigMap's file links through `..data`,
        // which an update swaps): what it points to can change with no
        // event naming it, so any change in its directory, or in its
        // target's, is looked at.
        let linked = std::fs::symlink_metadata(&path).is_ok_and(|meta| meta.is_symlink());
        if linked {
            if let Some(target) = std::fs::canonicalize(&path)
                .ok()
                .and_then(|target| target.parent().map(Path::to_path_buf))
            {
                if !dirs.contains(&target) {
                    dirs.push(target);
                }
            }
        }
        let on_change = tx.clone();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let Ok(event) = event else { return };
                let ours = linked
                    || event
                        .paths
                        .iter()
                        .any(|changed| changed.file_name() == name.as_deref());
                if ours && !event.kind.is_access() {
                    let _ = on_change.try_send(false);
                }
            })
            .map_err(|error| RulesError::io(origin, "cannot watch the rules file", error))?;
        for dir in &dirs {
            notify::Watcher::watch(&mut watcher, dir, notify::RecursiveMode::NonRecursive)
                .map_err(|error| RulesError::io(origin, "cannot watch the rules file", error))?;
        }
        let mut tasks = Vec::new();
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let mut hangups = signal(SignalKind::hangup())
                .map_err(|error| RulesError::io(origin, "cannot listen for SIGHUP", error))?;
            tasks.push(tokio::spawn(async move {
                while hangups.recv().await.is_some() {
                    if tx.send(true).await.is_err() {
                        break;
                    }
                }
            }));
        }
        let rules = self.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(mut forced) = rx.recv().await {
                // A save is often several events: one reload for them all.
                tokio::time::sleep(Duration::from_millis(100)).await;
                while let Ok(asked) = rx.try_recv() {
                    forced |= asked;
                }
                // Refusals are logged by the reload.
                let _ = rules.reload_when(forced).await;
            }
        }));
        Ok(Watch {
            _watcher: watcher,
            tasks,
        })
    }
}

/// Watches a rules file for [`Rules::watch`]; stops when dropped.
pub struct Watch {
    _watcher: notify::RecommendedWatcher,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl fmt::Debug for Watch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watch").finish_non_exhaustive()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
