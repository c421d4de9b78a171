//! The offline cluster authority: a directory the operator keeps (mode 0700, never inside a
//! bundle) with the CAs, the token key and the enrollment record. `molten authority init`
//! creates it, `molten compose` reads its public certificates and records the nodes' tokens,
//! `molten serve --authority` answers enrollments and renewals from it.
//!
//! | file | what | who reads it |
//! |---|---|---|
//! | `authority-ca.pem/.key` | signs `molten serve`'s HTTPS certificate (nodes pin the .pem) | serve |
//! | `etcd-ca.pem/.key` | issues etcd peer, server, client and admin certificates | serve, issue-client |
//! | `docker-ca.pem/.key` | issues dockerd server and Docker client certificates | serve, issue-client |
//! | `token-key` | 32 random bytes; tokens are derived from it | compose |
//! | `enrollment.json` | per node: token hash, expiry, use, the names it may get | compose, serve |
//! | `enrollment.lock` | `flock`ed around every change of `enrollment.json` | compose, serve |

pub mod ca;
pub mod cli;
pub mod enrollment;
pub mod https;
pub mod register;
pub mod secure_fs;
pub mod serve_cmd;
pub mod service;
pub mod tokens;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ring::rand::{SecureRandom, SystemRandom};
use time::OffsetDateTime;

use ca::Ca;
use enrollment::EnrollmentState;
use secure_fs::{check_private_dir, write_private_atomic, DirLock};
use tokens::{TokenKey, TOKEN_KEY_BYTES};

pub const AUTHORITY_CA: &str = "authority-ca";
pub const ETCD_CA: &str = "etcd-ca";
pub const DOCKER_CA: &str = "docker-ca";
pub const TOKEN_KEY_FILE: &str = "token-key";
pub const STATE_FILE: &str = "enrollment.json";
const LOCK_FILE: &str = "enrollment.lock";

/// `<profile dir>/<cluster>.authority`: beside the profile, never in a bundle.
pub fn default_dir(profile: &Path, cluster: &str) -> PathBuf {
    let parent = match profile.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    parent.join(format!("{cluster}.authority"))
}

/// An authority directory that passed the permission checks.
#[derive(Debug, Clone)]
pub struct Authority {
    dir: PathBuf,
}

/// The public half of the authority: what compose may put on nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicRoots {
    pub authority_ca: String,
    pub etcd_ca: String,
    pub docker_ca: String,
}

impl Authority {
    /// Opens an existing authority, refusing a directory group or others can access.
    pub fn open(dir: &Path) -> Result<Authority> {
        check_private_dir(dir)?;
        for name in [
            format!("{AUTHORITY_CA}.key"),
            format!("{ETCD_CA}.key"),
            format!("{DOCKER_CA}.key"),
            TOKEN_KEY_FILE.to_string(),
            STATE_FILE.to_string(),
        ] {
            if !dir.join(&name).is_file() {
                bail!(
                    "{} is not a molten authority: {name} is missing (create one with \
                     `molten authority init`)",
                    dir.display()
                );
            }
        }
        Ok(Authority {
            dir: dir.to_path_buf(),
        })
    }

    /// Creates a new authority for `cluster` in `dir` (which must not exist or be empty). It is
    /// built in a sibling temporary directory and renamed into place, so a failure leaves none.
    pub fn init(dir: &Path, cluster: &str, now: OffsetDateTime) -> Result<Authority> {
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if dir.exists() {
            secure_fs::create_private_dir(dir)?; // refuses a non-empty one
        }
        std::fs::create_dir_all(&parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
        let staging = tempfile::Builder::new()
            .prefix(".authority.new-")
            .tempdir_in(&parent)
            .with_context(|| format!("cannot create a directory in {}", parent.display()))?;
        secure_fs::create_private_dir(staging.path())?;
        let root = staging.path();
        for (stem, common_name) in [
            (AUTHORITY_CA, format!("molten {cluster} authority CA")),
            (ETCD_CA, format!("molten {cluster} etcd CA")),
            (DOCKER_CA, format!("molten {cluster} Docker CA")),
        ] {
            let new = ca::create_ca(&common_name, now)?;
            secure_fs::create_private_file(
                &root.join(format!("{stem}.pem")),
                new.cert_pem.as_bytes(),
            )?;
            secure_fs::create_private_file(
                &root.join(format!("{stem}.key")),
                new.key_pem.as_bytes(),
            )?;
        }
        let mut key = [0u8; TOKEN_KEY_BYTES];
        SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| anyhow::anyhow!("the system random source failed"))?;
        secure_fs::create_private_file(&root.join(TOKEN_KEY_FILE), &key)?;
        secure_fs::create_private_file(
            &root.join(STATE_FILE),
            EnrollmentState::new(cluster).to_json().as_bytes(),
        )?;
        std::fs::rename(root, dir)
            .with_context(|| format!("cannot move the new authority into {}", dir.display()))?;
        let _ = staging.keep();
        std::fs::File::open(&parent)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("cannot sync {}", parent.display()))?;
        Authority::open(dir)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn read(&self, name: &str) -> Result<String> {
        let path = self.dir.join(name);
        std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
    }

    /// Loads one of the CAs (`AUTHORITY_CA`, `ETCD_CA`, `DOCKER_CA`) with its key.
    pub fn ca(&self, stem: &str) -> Result<Ca> {
        let cert = self.read(&format!("{stem}.pem"))?;
        let key = self.read(&format!("{stem}.key"))?;
        Ca::from_pem(stem, &cert, &key)
    }

    pub fn public_roots(&self) -> Result<PublicRoots> {
        Ok(PublicRoots {
            authority_ca: self.read(&format!("{AUTHORITY_CA}.pem"))?,
            etcd_ca: self.read(&format!("{ETCD_CA}.pem"))?,
            docker_ca: self.read(&format!("{DOCKER_CA}.pem"))?,
        })
    }

    pub fn token_key(&self) -> Result<TokenKey> {
        let path = self.dir.join(TOKEN_KEY_FILE);
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        TokenKey::from_bytes(&bytes).with_context(|| format!("{}", path.display()))
    }

    /// Takes the enrollment lock; hold it from reading the state to writing it back.
    pub fn lock(&self) -> Result<DirLock> {
        DirLock::acquire(&self.dir.join(LOCK_FILE))
    }

    pub fn read_state(&self) -> Result<EnrollmentState> {
        let text = self.read(STATE_FILE)?;
        EnrollmentState::from_json(&text).with_context(|| {
            format!(
                "{} is not a valid enrollment record",
                self.dir.join(STATE_FILE).display()
            )
        })
    }

    /// Writes the state durably (temp file, fsync, rename). Call with the lock held.
    pub fn write_state(&self, state: &EnrollmentState) -> Result<()> {
        write_private_atomic(&self.dir.join(STATE_FILE), state.to_json().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn init_creates_a_private_complete_authority() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("dev.authority");
        let authority = Authority::init(&dir, "dev", OffsetDateTime::now_utc()).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        for entry in std::fs::read_dir(&dir).unwrap() {
            let meta = entry.unwrap().metadata().unwrap();
            assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        }
        let roots = authority.public_roots().unwrap();
        assert_ne!(roots.etcd_ca, roots.docker_ca);
        assert!(roots
            .authority_ca
            .starts_with("-----BEGIN CERTIFICATE-----"));
        authority.ca(ETCD_CA).unwrap();
        authority.token_key().unwrap();
        assert_eq!(authority.read_state().unwrap().cluster, "dev");

        let err = Authority::init(&dir, "dev", OffsetDateTime::now_utc()).unwrap_err();
        assert!(err.to_string().contains("refusing to overwrite"), "{err}");
        let leftovers = std::fs::read_dir(tmp.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no staging directory left");
    }

    #[test]
    fn open_refuses_loose_permissions_and_strangers() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("dev.authority");
        Authority::init(&dir, "dev", OffsetDateTime::now_utc()).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).unwrap();
        let err = Authority::open(&dir).unwrap_err().to_string();
        assert!(err.contains("mode 0750"), "{err}");

        let other = tmp.path().join("empty");
        secure_fs::create_private_dir(&other).unwrap();
        let err = Authority::open(&other).unwrap_err().to_string();
        assert!(err.contains("is not a molten authority"), "{err}");
    }

    #[test]
    fn the_default_dir_sits_beside_the_profile() {
        assert_eq!(
            default_dir(Path::new("profiles/dev.yaml"), "dev"),
            Path::new("profiles/dev.authority")
        );
        assert_eq!(
            default_dir(Path::new("dev.yaml"), "x"),
            Path::new("./x.authority")
        );
    }
}
