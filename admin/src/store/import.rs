//! `tenants/*.toml` as an import path: at start-up only tenants missing from the database are
//! created (the database wins); `paybridge-admin import --overwrite` replaces on purpose.

use std::path::{Path, PathBuf};

use paybridge_core::tenant::ConfigErrors;

use super::{StoreError, TenantStore};
use crate::format::parse_toml;

/// What importing one file did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportOutcome {
    /// The tenant was new.
    Created,
    /// The tenant existed and was replaced (`overwrite`).
    Replaced,
    /// The tenant existed with this exact document.
    Unchanged,
    /// The tenant existed and `overwrite` was off: the database copy wins.
    Skipped,
}

impl ImportOutcome {
    /// `created`, `replaced`, `unchanged`, `skipped`.
    pub fn as_str(self) -> &'static str {
        match self {
            ImportOutcome::Created => "created",
            ImportOutcome::Replaced => "replaced",
            ImportOutcome::Unchanged => "unchanged",
            ImportOutcome::Skipped => "skipped",
        }
    }
}

/// Every file imported, with its tenant id and outcome.
#[derive(Debug, Clone, Default)]
pub struct ImportReport {
    /// `(file, tenant id, outcome)` in file-name order.
    pub files: Vec<(PathBuf, String, ImportOutcome)>,
}

impl ImportReport {
    /// How many files had this outcome.
    pub fn count(&self, outcome: ImportOutcome) -> usize {
        self.files.iter().filter(|(_, _, o)| *o == outcome).count()
    }
}

/// A file that cannot be imported, with every problem.
#[derive(Debug, Clone)]
pub struct FileProblem {
    /// The file.
    pub path: PathBuf,
    /// Its problems.
    pub errors: ConfigErrors,
}

impl TenantStore {
    /// Import every `*.toml` of `dir`. Every file that would be written is validated first; if
    /// any is invalid nothing is written and [`StoreError::InvalidFiles`] lists every problem.
    /// A missing folder imports nothing.
    pub async fn import_dir(
        &self,
        dir: &Path,
        overwrite: bool,
        actor: &str,
    ) -> Result<ImportReport, StoreError> {
        let paths = toml_files(dir)?;
        self.import_files(&paths, overwrite, actor).await
    }

    /// Import these tenant files (see [`TenantStore::import_dir`]).
    pub async fn import_files(
        &self,
        paths: &[PathBuf],
        overwrite: bool,
        actor: &str,
    ) -> Result<ImportReport, StoreError> {
        let platforms = self.platform_book().await?.0;
        let mut planned = Vec::new();
        let mut problems = Vec::new();
        let mut report = ImportReport::default();
        for path in paths {
            let text = std::fs::read_to_string(path)
                .map_err(|e| StoreError::Io(format!("cannot read {}: {e}", path.display())))?;
            let doc = match parse_toml(&text) {
                Ok(d) => d,
                Err(errors) => {
                    problems.push(FileProblem {
                        path: path.clone(),
                        errors,
                    });
                    continue;
                }
            };
            let base_dir = folder_of(path)?;
            let id = doc
                .get("id")
                .and_then(toml::Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let current = if id.is_empty() {
                None
            } else {
                self.get(&id).await?
            };
            let outcome = match &current {
                None => ImportOutcome::Created,
                Some(_) if !overwrite => ImportOutcome::Skipped,
                Some(c) if c.document == doc && c.base_dir == base_dir => ImportOutcome::Unchanged,
                Some(_) => ImportOutcome::Replaced,
            };
            if matches!(outcome, ImportOutcome::Skipped | ImportOutcome::Unchanged) {
                report.files.push((path.clone(), id, outcome));
                continue;
            }
            if planned.iter().any(|(_, other, _, _)| other == &id) {
                problems.push(FileProblem {
                    path: path.clone(),
                    errors: ConfigErrors(vec![paybridge_core::provider::FieldError::new(
                        "id",
                        format!("{id:?} is also the id of another file in this import"),
                    )]),
                });
                continue;
            }
            match self.plan_document(
                "import",
                &doc,
                current.as_ref(),
                base_dir.clone(),
                &platforms,
            ) {
                Ok(_) => planned.push((path.clone(), id, doc, (base_dir, outcome))),
                Err(StoreError::Invalid(errors)) => {
                    problems.push(FileProblem {
                        path: path.clone(),
                        errors,
                    });
                }
                Err(e) => return Err(e),
            }
        }
        if !problems.is_empty() {
            return Err(StoreError::InvalidFiles(problems));
        }
        for (path, id, doc, (base_dir, outcome)) in planned {
            let outcome = match outcome {
                // Another instance (or an admin) may have created it since it was read: the
                // database copy wins, so a create never replaces.
                ImportOutcome::Created => match self.create(&doc, Some(base_dir), actor).await {
                    Ok(_) => ImportOutcome::Created,
                    Err(StoreError::Conflict(_)) => ImportOutcome::Skipped,
                    Err(e) => return Err(e),
                },
                _ => {
                    self.put(&id, &doc, Some(base_dir), actor, None).await?;
                    outcome
                }
            };
            report.files.push((path, id, outcome));
        }
        report.files.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(report)
    }
}

/// The `*.toml` files of `dir`, sorted by name; none when the folder does not exist.
pub(super) fn toml_files(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(StoreError::Io(format!(
                "cannot read {}: {e}",
                dir.display()
            )));
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    Ok(paths)
}

/// The absolute folder of a file, so relative paths keep resolving whatever the working folder.
pub fn folder_of(path: &Path) -> Result<PathBuf, StoreError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    dir.canonicalize()
        .map_err(|e| StoreError::Io(format!("cannot resolve {}: {e}", dir.display())))
}
