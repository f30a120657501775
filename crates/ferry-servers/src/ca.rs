//! The demo CA that signs the hub stand-ins' certificates and that the TLS check trusts.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{ServerError, create_folder, need, run};

/// A CA for the demo's hub certificates: `ca.pem` (what the TLS check trusts) and `ca.key`
/// (what the hub stand-in signs with).
#[derive(Debug, Clone)]
pub struct DemoCa {
    pub folder: PathBuf,
    pub ca_file: PathBuf,
}

impl DemoCa {
    pub fn generate(folder: &Path) -> Result<DemoCa, ServerError> {
        let openssl = need("openssl", "openssl")?;
        create_folder("openssl", folder)?;
        let ca_file = folder.join("ca.pem");
        run(
            "openssl",
            Command::new(openssl)
                .args([
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:prime256v1",
                    "-nodes",
                    "-days",
                    "30",
                    "-subj",
                    // Unique per run, so that a certificate from an earlier run reads as
                    // signed by an unknown issuer rather than by a look-alike.
                    &format!("/CN=ferry demo CA {}", std::process::id()),
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                    "-keyout",
                ])
                .arg(folder.join("ca.key"))
                .arg("-out")
                .arg(&ca_file),
        )?;
        Ok(DemoCa {
            folder: folder.to_path_buf(),
            ca_file,
        })
    }
}
