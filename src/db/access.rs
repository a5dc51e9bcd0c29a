//! Why the database directory cannot be written, told so the operator can fix it: which path,
//! which user the process runs as, who owns the directory, and the command that fixes it.

use std::fmt;
use std::path::{Path, PathBuf};

/// The uid the image's Dockerfile runs switchboard as.
const IMAGE_UID: u32 = 10001;

/// What switchboard could not do with the database directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Creating the directory (it did not exist).
    CreateDir,
    /// Opening or creating the database file inside an existing directory.
    Open,
}

/// A permission problem on the database directory, with everything needed to fix it.
#[derive(Debug)]
pub struct AccessDenied {
    step: Step,
    /// The database directory.
    dir: PathBuf,
    /// The operating system's or SQLite's words.
    cause: String,
    /// The uid the process runs as, when it can be read.
    uid: Option<u32>,
    /// The directory whose permissions matter (the database directory, or its nearest existing
    /// ancestor when it does not exist yet) and its owner, when it can be read.
    owner: Option<(PathBuf, u32)>,
}

impl AccessDenied {
    /// Describes a failure of `step` on `dir`, reading the process's uid and the owner of the
    /// directory now.
    pub fn new(step: Step, dir: &Path, cause: String) -> AccessDenied {
        AccessDenied {
            step,
            dir: dir.to_path_buf(),
            cause,
            uid: process_uid(),
            owner: nearest_owner(dir),
        }
    }
}

impl std::error::Error for AccessDenied {}

impl fmt::Display for AccessDenied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = self.dir.display();
        match self.step {
            Step::CreateDir => write!(f, "cannot create the database directory {dir}")?,
            Step::Open => write!(f, "cannot write the database in {dir}")?,
        }
        write!(f, " ({}). ", self.cause)?;
        let user = match self.uid {
            Some(uid) => {
                write!(f, "switchboard runs as uid {uid}")?;
                format!("uid {uid}")
            }
            None => {
                write!(f, "the uid switchboard runs as could not be read")?;
                "the user switchboard runs as".to_owned()
            }
        };
        if let Some((owner_dir, owner)) = &self.owner {
            write!(f, "; {} is owned by uid {owner}", owner_dir.display())?;
        }
        let chown = match self.uid {
            Some(uid) => format!("chown -R {uid} {dir}"),
            None => format!("chown -R <user> {dir}"),
        };
        match self.step {
            Step::CreateDir => write!(
                f,
                ". Fix: create {dir} writable by {user}: `mkdir -p {dir} && {chown}`"
            )?,
            Step::Open => write!(f, ". Fix: make {dir} writable by {user}: `{chown}`")?,
        }
        write!(
            f,
            "; in Docker, mount a named volume there (`-v switchboard-data:{dir}`) or give the \
             bind-mounted host directory to the image's user (`chown -R {IMAGE_UID} HOST_DIR`)"
        )
    }
}

/// True for I/O errors that mean "not allowed to write here" (including a read-only file system,
/// EROFS, whose `ErrorKind` is newer than the crate's minimum Rust version).
pub fn is_permission_error(err: &std::io::Error) -> bool {
    const EROFS: i32 = 30;
    err.kind() == std::io::ErrorKind::PermissionDenied
        || (cfg!(unix) && err.raw_os_error() == Some(EROFS))
}

/// True for SQLite's "unable to open database file" (SQLITE_CANTOPEN) and "attempt to write a
/// readonly database" (SQLITE_READONLY), including their extended codes.
pub fn is_sqlite_access_error(err: &sqlx::Error) -> bool {
    const SQLITE_READONLY: i64 = 8;
    const SQLITE_CANTOPEN: i64 = 14;
    let Some(db) = err.as_database_error() else {
        return false;
    };
    db.code()
        .and_then(|code| code.parse::<i64>().ok())
        .is_some_and(|code| matches!(code & 0xff, SQLITE_READONLY | SQLITE_CANTOPEN))
}

/// The uid this process runs as: the owner of `/proc/self` (no `unsafe` call to `getuid`).
fn process_uid() -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self").ok().map(|m| m.uid())
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The owner of `dir`, or of its nearest existing ancestor.
fn nearest_owner(dir: &Path) -> Option<(PathBuf, u32)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        absolute.ancestors().find_map(|candidate| {
            std::fs::metadata(candidate)
                .ok()
                .map(|m| (candidate.to_path_buf(), m.uid()))
        })
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied(step: Step, uid: Option<u32>, owner: Option<u32>) -> String {
        AccessDenied {
            step,
            dir: PathBuf::from("/data"),
            cause: "Permission denied (os error 13)".to_owned(),
            uid,
            owner: owner.map(|o| (PathBuf::from("/data"), o)),
        }
        .to_string()
    }

    #[test]
    fn the_message_names_the_directory_the_user_the_owner_and_the_fix() {
        let message = denied(Step::Open, Some(10001), Some(0));
        assert_eq!(
            message,
            "cannot write the database in /data (Permission denied (os error 13)). switchboard \
             runs as uid 10001; /data is owned by uid 0. Fix: make /data writable by uid 10001: \
             `chown -R 10001 /data`; in Docker, mount a named volume there \
             (`-v switchboard-data:/data`) or give the bind-mounted host directory to the \
             image's user (`chown -R 10001 HOST_DIR`)"
        );
        let message = denied(Step::CreateDir, Some(1000), None);
        assert!(
            message.starts_with("cannot create the database directory /data (Permission denied"),
            "{message}"
        );
        assert!(
            message.contains("`mkdir -p /data && chown -R 1000 /data`"),
            "{message}"
        );
        assert!(!message.contains("owned by"), "{message}");
    }

    #[test]
    fn an_unknown_uid_is_said_so_rather_than_guessed() {
        let message = denied(Step::Open, None, Some(0));
        assert!(
            message
                .contains("the uid switchboard runs as could not be read; /data is owned by uid 0"),
            "{message}"
        );
        assert!(
            message.contains("writable by the user switchboard runs as: `chown -R <user> /data`"),
            "{message}"
        );
    }

    #[test]
    fn permission_errors_are_told_apart_from_other_failures() {
        use std::io::{Error, ErrorKind};
        assert!(is_permission_error(&Error::from(
            ErrorKind::PermissionDenied
        )));
        #[cfg(unix)]
        assert!(is_permission_error(&Error::from_raw_os_error(30)));
        assert!(!is_permission_error(&Error::from(ErrorKind::NotFound)));
        assert!(!is_sqlite_access_error(&sqlx::Error::RowNotFound));
    }

    #[cfg(unix)]
    #[test]
    fn the_uid_and_the_owner_are_read_from_the_file_system() {
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::tempdir().unwrap();
        let uid = process_uid().unwrap();
        assert_eq!(uid, std::fs::metadata(tmp.path()).unwrap().uid());
        let missing = tmp.path().join("a/b");
        assert_eq!(
            nearest_owner(&missing),
            Some((tmp.path().to_path_buf(), uid))
        );
    }
}
