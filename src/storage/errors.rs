//! What the peer is told for a file system error: a clear code and a message naming the wire
//! path, never the server's own path; `internal` only for what has no better name.

use std::io;

use rustix::io::Errno;

use super::WirePath;
use crate::Error;

/// Maps a file system error on `path` to what the peer is told, naming the wire path.
pub(crate) fn fs_error(path: &WirePath, e: io::Error) -> Error {
    use io::ErrorKind as K;
    if let Some(told) = by_number(path, &e) {
        return told;
    }
    match e.kind() {
        K::NotFound => Error::NotFound(format!("{path}: no such file or folder")),
        K::AlreadyExists => Error::AlreadyExists(format!("{path} already exists")),
        // cap-std reports an escape as a PermissionDenied error of its own (the OS's have no
        // inner error): a symlink or path that leads out of the home.
        K::PermissionDenied if e.get_ref().is_some() => {
            Error::PermissionDenied(format!("{path} leads outside your home"))
        }
        K::PermissionDenied => Error::PermissionDenied(format!("{path}: permission denied")),
        K::IsADirectory => Error::BadRequest(format!("{path} is a folder")),
        K::NotADirectory => Error::BadRequest(format!("{path}: a part of it is not a folder")),
        K::DirectoryNotEmpty => Error::BadRequest(format!("{path}: the folder is not empty")),
        _ => Error::Fs {
            path: path.to_string(),
            source: e,
        },
    }
}

/// The OS errors told by their number: several have no stable [`io::ErrorKind`] (`ELOOP`,
/// `EMLINK`, `EDQUOT`), and `EINVAL` and `ENAMETOOLONG` share one with unrelated errors.
fn by_number(path: &WirePath, e: &io::Error) -> Option<Error> {
    let told = match Errno::from_io_error(e)? {
        Errno::LOOP => Error::BadRequest(format!(
            "{path}: too many levels of symbolic links (a symlink loop?)"
        )),
        // From rename(2): a folder moved into a folder inside it, through a symlink.
        Errno::INVAL => Error::BadRequest(format!(
            "{path}: the file system refuses this as invalid (a folder moved into itself, say)"
        )),
        Errno::NAMETOOLONG => Error::BadRequest(format!(
            "{path}: a name or path too long for the file system"
        )),
        Errno::MLINK => Error::BadRequest(format!(
            "{path}: the file system allows no more links or subfolders there"
        )),
        Errno::NOSPC | Errno::DQUOT => {
            Error::StorageFull(format!("{path}: the server's storage is full"))
        }
        Errno::FBIG => Error::TooLarge(format!("{path}: larger than the file system allows")),
        Errno::MFILE | Errno::NFILE => Error::Busy(format!(
            "{path}: the server has too many files open; try again later"
        )),
        Errno::ROFS => Error::PermissionDenied(format!("{path}: the storage is read-only")),
        _ => return None,
    };
    Some(told)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ErrorCode;

    #[test]
    fn os_errors_get_a_clear_code_and_name_the_wire_path() {
        let path = WirePath::root().resolve("/d/f").unwrap();
        let told = |errno: Errno| {
            let err = fs_error(&path, io::Error::from(errno));
            assert!(err.to_string().contains("/d/f:"), "{err}");
            err.code()
        };
        for errno in [Errno::LOOP, Errno::INVAL, Errno::NAMETOOLONG, Errno::MLINK] {
            assert_eq!(told(errno), ErrorCode::BadRequest, "{errno:?}");
        }
        assert_eq!(told(Errno::NOSPC), ErrorCode::StorageFull);
        assert_eq!(told(Errno::DQUOT), ErrorCode::StorageFull);
        assert_eq!(told(Errno::FBIG), ErrorCode::TooLarge);
        assert_eq!(told(Errno::MFILE), ErrorCode::Busy);
        assert_eq!(told(Errno::ROFS), ErrorCode::PermissionDenied);
        assert_eq!(told(Errno::NOENT), ErrorCode::NotFound);
        assert_eq!(told(Errno::IO), ErrorCode::Internal);
    }
}
