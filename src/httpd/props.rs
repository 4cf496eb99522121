//! WebDAV dead properties (PROPPATCH): kept in memory for the server's run, per user and
//! path, following their file through MOVE and COPY and gone with it on DELETE.
//!
//! Bounded: a user's properties hold at most [`MAX_BYTES_PER_USER`] bytes of XML; a set
//! over that is refused with 507, so no client can grow the server's memory without end.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};

use dav_server::fs::DavProp;
use http::StatusCode;

use crate::storage::WirePath;

/// XML bytes of dead properties one user may keep.
pub(crate) const MAX_BYTES_PER_USER: usize = 1 << 20;

/// Every user's dead properties.
#[derive(Debug, Default)]
pub(crate) struct DeadProps {
    users: Mutex<HashMap<String, UserProps>>,
}

/// One user's: per path (as the user sees it), per `{namespace}name`.
#[derive(Debug, Default)]
struct UserProps {
    bytes: usize,
    paths: HashMap<String, BTreeMap<String, DavProp>>,
}

fn key(prop: &DavProp) -> String {
    format!(
        "{{{}}}{}",
        prop.namespace.as_deref().unwrap_or(""),
        prop.name
    )
}

fn cost(prop: &DavProp) -> usize {
    prop.name.len() + prop.xml.as_ref().map_or(0, Vec::len) + 64
}

/// Whether `path` is `top` or lies below it (both as displayed: `/a`, `/a/b`).
fn under(path: &str, top: &str) -> bool {
    top == "/" || path == top || path.strip_prefix(top).is_some_and(|r| r.starts_with('/'))
}

/// `prop` without its value (for a PROPFIND of names).
fn name_only(prop: &DavProp) -> DavProp {
    DavProp {
        xml: None,
        ..prop.clone()
    }
}

impl DeadProps {
    fn with<T>(&self, user: &str, f: impl FnOnce(&mut UserProps) -> T) -> T {
        let mut users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        f(users.entry(user.to_owned()).or_default())
    }

    /// Sets (`true`) or removes (`false`) each property of `patch` on `path`; the status of
    /// each.
    pub(crate) fn patch(
        &self,
        user: &str,
        path: &WirePath,
        patch: Vec<(bool, DavProp)>,
    ) -> Vec<(StatusCode, DavProp)> {
        let path = path.to_string();
        self.with(user, |props| {
            let mut done = Vec::with_capacity(patch.len());
            for (set, prop) in patch {
                let k = key(&prop);
                let named = name_only(&prop);
                let map = props.paths.entry(path.clone()).or_default();
                let old = map.get(&k).map_or(0, cost);
                if set {
                    let new = cost(&prop);
                    if props.bytes - old + new > MAX_BYTES_PER_USER {
                        done.push((StatusCode::INSUFFICIENT_STORAGE, named));
                        continue;
                    }
                    map.insert(k, prop);
                    props.bytes = props.bytes - old + new;
                } else {
                    map.remove(&k);
                    props.bytes -= old;
                }
                done.push((StatusCode::OK, named));
            }
            if props.paths.get(&path).is_some_and(BTreeMap::is_empty) {
                props.paths.remove(&path);
            }
            done
        })
    }

    /// Every property of `path`, with values when `values`.
    pub(crate) fn all(&self, user: &str, path: &WirePath, values: bool) -> Vec<DavProp> {
        let path = path.to_string();
        self.with(user, |props| {
            props.paths.get(&path).map_or_else(Vec::new, |map| {
                map.values()
                    .map(|p| if values { p.clone() } else { name_only(p) })
                    .collect()
            })
        })
    }

    /// The value (XML) of one property of `path`.
    pub(crate) fn one(&self, user: &str, path: &WirePath, prop: &DavProp) -> Option<Vec<u8>> {
        let path = path.to_string();
        self.with(user, |props| {
            props.paths.get(&path)?.get(&key(prop))?.xml.clone()
        })
    }

    /// Forgets the properties of `path` and of all below it.
    pub(crate) fn remove(&self, user: &str, path: &WirePath) {
        let top = path.to_string();
        self.with(user, |props| {
            let mut freed = 0;
            props.paths.retain(|p, map| {
                let gone = under(p, &top);
                if gone {
                    freed += map.values().map(cost).sum::<usize>();
                }
                !gone
            });
            props.bytes -= freed;
        });
    }

    /// Moves the properties of `from` and all below it to `to`.
    pub(crate) fn rename(&self, user: &str, from: &WirePath, to: &WirePath) {
        self.remove(user, to);
        let (from, to) = (from.to_string(), to.to_string());
        self.with(user, |props| {
            let moved: Vec<String> = props
                .paths
                .keys()
                .filter(|p| under(p, &from))
                .cloned()
                .collect();
            for old in moved {
                if let Some(map) = props.paths.remove(&old) {
                    let new = format!("{to}{}", &old[from.len()..]);
                    props.paths.insert(new, map);
                }
            }
        });
    }

    /// Copies the properties of the file `from` to `to` (within the user's bound).
    pub(crate) fn copy(&self, user: &str, from: &WirePath, to: &WirePath) {
        self.remove(user, to);
        let (from, to) = (from.to_string(), to.to_string());
        self.with(user, |props| {
            let Some(map) = props.paths.get(&from).cloned() else {
                return;
            };
            let size: usize = map.values().map(cost).sum();
            if props.bytes + size <= MAX_BYTES_PER_USER {
                props.bytes += size;
                props.paths.insert(to, map);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prop(name: &str, value: &str) -> DavProp {
        DavProp::new(name.into(), "Z".into(), "urn:z".into(), value.into())
    }

    fn path(p: &str) -> WirePath {
        WirePath::root().resolve(p).unwrap()
    }

    #[test]
    fn properties_follow_a_move_and_go_with_a_delete() {
        let props = DeadProps::default();
        props.patch("ann", &path("/a/f"), vec![(true, prop("x", "1"))]);
        assert_eq!(props.all("ann", &path("/a/f"), true).len(), 1);
        assert!(props.all("bob", &path("/a/f"), true).is_empty());
        props.rename("ann", &path("/a"), &path("/b"));
        assert!(props.all("ann", &path("/a/f"), true).is_empty());
        assert!(props.one("ann", &path("/b/f"), &prop("x", "")).is_some());
        props.remove("ann", &path("/b"));
        assert!(props.all("ann", &path("/b/f"), true).is_empty());
        assert_eq!(props.with("ann", |p| p.bytes), 0);
    }

    #[test]
    fn a_user_cannot_store_more_than_the_bound() {
        let props = DeadProps::default();
        let big = "x".repeat(MAX_BYTES_PER_USER / 2);
        let set = |name: &str| props.patch("ann", &path("/f"), vec![(true, prop(name, &big))]);
        assert_eq!(set("a")[0].0, StatusCode::OK);
        assert_eq!(set("b")[0].0, StatusCode::INSUFFICIENT_STORAGE);
        // Replacing one counts its old size out.
        assert_eq!(set("a")[0].0, StatusCode::OK);
    }
}
