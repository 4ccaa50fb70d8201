//! `paybridge-admin export`: tenant documents back out as TOML files, masked by default.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::Failure;
use crate::document::mask;
use crate::format::render_toml;
use crate::store::{self, StoreError, TenantStore};

/// Export one tenant (to stdout without `dir`) or all (into `dir`).
pub(super) async fn export(
    store: &TenantStore,
    id: Option<String>,
    dir: Option<PathBuf>,
    with_secrets: bool,
) -> Result<(), Failure> {
    let tenants = match &id {
        Some(id) => vec![
            store
                .get(id)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("tenant {id:?} not found")))?,
        ],
        None => store.load_all().await?,
    };
    let render = |t: &store::StoredTenant| {
        let doc = if with_secrets {
            t.document.clone()
        } else {
            mask(&t.document)
        };
        let note = if with_secrets {
            "secrets in plaintext: keep this file private"
        } else {
            "secrets shown as { set = true }: importing keeps the stored values"
        };
        format!(
            "# tenant {} version {}; {note}\n{}",
            t.id,
            t.version,
            render_toml(&doc)
        )
    };
    let Some(dir) = dir else {
        if id.is_none() {
            return Err(Failure::usage("exporting every tenant needs --dir DIR"));
        }
        for t in &tenants {
            print!("{}", render(t));
        }
        return Ok(());
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| Failure::usage(format!("cannot create {}: {e}", dir.display())))?;
    for t in &tenants {
        let path = dir.join(format!("{}.toml", t.id));
        write_private(&path, &render(t), with_secrets)
            .map_err(|e| Failure::usage(format!("cannot write {}: {e}", path.display())))?;
        println!("{}", path.display());
    }
    Ok(())
}

fn write_private(path: &Path, text: &str, private: bool) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    #[cfg(not(unix))]
    let _ = private;
    file.write_all(text.as_bytes())
}
