//! Sessions per user (`serve --max-sessions-per-user`), across every door: a count per
//! logged-in user, kept only while they have a session, and the bandwidth buckets their
//! sessions share (`sockit user limit`), which live exactly as long.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::shape::Bucket;
use crate::Error;
use crate::users::UserRates;

/// The sessions each user holds now.
#[derive(Debug)]
pub(crate) struct UserSessions {
    cap: usize,
    held: Mutex<HashMap<String, Held>>,
}

/// One user's sessions.
#[derive(Debug)]
struct Held {
    count: usize,
    up: Option<Arc<Bucket>>,
    down: Option<Arc<Bucket>>,
}

/// One session's place in its user's count, and the user's shared buckets; gives the place
/// back on drop.
#[derive(Debug)]
pub(crate) struct SessionSlot {
    table: Arc<UserSessions>,
    name: String,
    /// The user's bucket of what their sessions send, if they have a limit.
    pub(crate) up: Option<Arc<Bucket>>,
    /// The user's bucket of what their sessions receive, if they have a limit.
    pub(crate) down: Option<Arc<Bucket>>,
}

impl UserSessions {
    /// A table that lets each user hold `cap` sessions (at least 1).
    pub(crate) fn new(cap: usize) -> Arc<UserSessions> {
        Arc::new(UserSessions {
            cap: cap.max(1),
            held: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for one more session of `name`, whose limits are `rates` (a changed limit
    /// gives new buckets to the sessions that start from then on).
    ///
    /// # Errors
    /// [`Error::Busy`] when `name` holds the cap already.
    pub(crate) fn take(
        self: &Arc<Self>,
        name: &str,
        rates: UserRates,
    ) -> Result<SessionSlot, Error> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = held.entry(name.to_owned()).or_insert(Held {
            count: 0,
            up: None,
            down: None,
        });
        if entry.count >= self.cap {
            return Err(Error::Busy(format!(
                "{name} has {} sessions open already, the most one user may (serve \
                 --max-sessions-per-user); log out of one first",
                self.cap
            )));
        }
        entry.count += 1;
        let current = |bucket: &mut Option<Arc<Bucket>>, rate: Option<u64>| {
            if bucket.as_ref().map(|b| b.rate()) != rate {
                *bucket = rate.map(Bucket::new);
            }
            bucket.clone()
        };
        Ok(SessionSlot {
            table: self.clone(),
            name: name.to_owned(),
            up: current(&mut entry.up, rates.up),
            down: current(&mut entry.down, rates.down),
        })
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let mut held = self
            .table
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = held.get_mut(&self.name) {
            entry.count -= 1;
            if entry.count == 0 {
                held.remove(&self.name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_holds_their_cap_and_shares_one_bucket() {
        let table = UserSessions::new(2);
        let rates = UserRates {
            up: Some(1000),
            down: None,
        };
        let a = table.take("ann", rates).unwrap();
        let b = table.take("ann", rates).unwrap();
        assert!(matches!(table.take("ann", rates), Err(Error::Busy(_))));
        assert!(Arc::ptr_eq(a.up.as_ref().unwrap(), b.up.as_ref().unwrap()));
        assert!(a.down.is_none());
        table.take("bob", rates).unwrap();
        drop(a);
        let _c = table.take("ann", rates).unwrap();
        drop((b, _c));
        assert!(
            table.held.lock().unwrap().is_empty(),
            "forgotten when none is left"
        );
    }
}
