//! Config drive: an ISO 9660 image (Rock Ridge + Joliet, volume label `config-2`, as Nova and
//! cloud-init expect) with the metadata service's documents, built with genisoimage.

use std::path::Path;
use std::process::Command;

use crate::metadata::{ec2_meta_data_json, openstack_files, InstanceMetadata, OPENSTACK_VERSIONS};
use crate::Error;

/// The volume label cloud-init looks for.
pub const LABEL: &str = "config-2";

/// The files of the drive: (path inside the image, bytes).
pub fn files(md: &InstanceMetadata) -> Vec<(String, Vec<u8>)> {
    let mut v = Vec::new();
    let docs = openstack_files(md);
    for ver in OPENSTACK_VERSIONS.iter().copied().chain(["latest"]) {
        for (name, body) in &docs {
            v.push((format!("openstack/{ver}/{name}"), body.clone()));
        }
    }
    v.push((
        "ec2/latest/meta-data.json".into(),
        ec2_meta_data_json(md).to_string().into_bytes(),
    ));
    if let Some(u) = &md.user_data {
        v.push(("ec2/latest/user-data".into(), u.clone()));
    }
    v
}

/// Write the config drive ISO for `md` to `out`.
pub fn build(md: &InstanceMetadata, out: &Path) -> Result<(), Error> {
    let tmp = tempdir(out)?;
    let res = (|| {
        for (p, body) in files(md) {
            let path = tmp.join(&p);
            std::fs::create_dir_all(path.parent().expect("has parent"))
                .map_err(|e| Error::Os(format!("mkdir for {p}: {e}")))?;
            std::fs::write(&path, body).map_err(|e| Error::Os(format!("write {p}: {e}")))?;
        }
        let o = Command::new("genisoimage")
            .arg("-o")
            .arg(out)
            .args(["-V", LABEL, "-R", "-J", "-input-charset", "utf-8", "-quiet"])
            .arg(&tmp)
            .output()
            .map_err(|e| Error::Command(format!("run genisoimage (is it installed?): {e}")))?;
        if !o.status.success() {
            return Err(Error::Command(format!(
                "genisoimage: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            )));
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    res
}

fn tempdir(out: &Path) -> Result<std::path::PathBuf, Error> {
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = format!(
        ".config-drive-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let d = parent.join(name);
    std::fs::create_dir_all(&d).map_err(|e| Error::Os(format!("mkdir {}: {e}", d.display())))?;
    Ok(d)
}
