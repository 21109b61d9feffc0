//! Per-route state that must outlive a route table: rate-limit buckets, the basic-auth
//! verification cache and round-robin positions.
//!
//! A table is rebuilt whenever anything changes (every task change anywhere, every second
//! during a rolling update). State held inside the table would reset with it: a rate limit
//! could be bypassed by waiting for a deploy, every credential would pay bcrypt again, and
//! round robin would restart from a random endpoint. So the table build asks this registry,
//! keyed by route id, and gets the same state back for as long as the route's definition of
//! that state is unchanged (same limits, same users); a changed definition starts afresh (a
//! removed user must not stay accepted). Entries of routes that left the table are dropped by
//! [`RouteStates::retain`]. Only the table build touches the map; requests use the `Arc`s the
//! compiled route holds, so the request path takes no lock here.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;

use crate::model::table::{AuthCache, RateLimiter};

/// Basic-auth users as (name, bcrypt hash).
type Users = Vec<(String, String)>;

/// See the module documentation.
#[derive(Default)]
pub struct RouteStates {
    routes: DashMap<Box<str>, Slots>,
}

#[derive(Default)]
struct Slots {
    /// `(average, period, burst)` the bucket was made for.
    rate: Option<((u64, Duration, u64), Arc<RateLimiter>)>,
    /// The users (name, hash) the cache was filled against.
    auth: Option<(Users, Arc<AuthCache>)>,
    rr: Option<Arc<AtomicUsize>>,
    /// Requests of the route in flight (`InFlightLimit`): the count must outlive a table swap,
    /// or a deploy would reset it while those requests still run.
    in_flight: Option<Arc<AtomicUsize>>,
}

impl RouteStates {
    pub fn new() -> Self {
        Self::default()
    }

    /// The route's bucket, kept while the limit is unchanged.
    pub fn rate_limiter(&self, route: &str, average: u64, period: Duration, burst: u64) -> Arc<RateLimiter> {
        let def = (average, period, burst);
        let mut slots = self.routes.entry(route.into()).or_default();
        match &slots.rate {
            Some((d, rl)) if *d == def => rl.clone(),
            _ => {
                let rl = Arc::new(RateLimiter::new(average, period, burst));
                slots.rate = Some((def, rl.clone()));
                rl
            }
        }
    }

    /// The route's in-flight counter.
    pub fn in_flight(&self, route: &str) -> Arc<AtomicUsize> {
        self.routes.entry(route.into()).or_default().in_flight.get_or_insert_with(Arc::default).clone()
    }

    /// The route's cache of verified credentials, kept while the users are unchanged.
    pub fn auth_cache(&self, route: &str, users: &[(String, String)]) -> Arc<AuthCache> {
        let mut slots = self.routes.entry(route.into()).or_default();
        match &slots.auth {
            Some((u, cache)) if u.as_slice() == users => cache.clone(),
            _ => {
                let cache = Arc::new(AuthCache::default());
                slots.auth = Some((users.to_vec(), cache.clone()));
                cache
            }
        }
    }

    /// The route's round-robin position (any starting point will do; it only has to carry on).
    pub fn rr_cursor(&self, route: &str) -> Arc<AtomicUsize> {
        let mut slots = self.routes.entry(route.into()).or_default();
        slots.rr.get_or_insert_with(|| Arc::new(AtomicUsize::new(fastrand::usize(..usize::MAX / 2)))).clone()
    }

    /// Drops the state of routes for which `live` is false.
    pub fn retain(&self, live: impl Fn(&str) -> bool) {
        self.routes.retain(|id, _| live(id));
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_is_shared_while_the_definition_holds_and_renewed_when_it_changes() {
        let s = RouteStates::new();
        let a = s.rate_limiter("r", 1, Duration::from_secs(60), 2);
        assert!(Arc::ptr_eq(&a, &s.rate_limiter("r", 1, Duration::from_secs(60), 2)));
        assert!(!Arc::ptr_eq(&a, &s.rate_limiter("r", 2, Duration::from_secs(60), 2)));
        let users = vec![("alice".to_owned(), "h1".to_owned())];
        let c = s.auth_cache("r", &users);
        assert!(Arc::ptr_eq(&c, &s.auth_cache("r", &users)));
        assert!(!Arc::ptr_eq(&c, &s.auth_cache("r", &[("alice".to_owned(), "h2".to_owned())])));
        assert!(Arc::ptr_eq(&s.rr_cursor("r"), &s.rr_cursor("r")));
        assert!(!Arc::ptr_eq(&s.rr_cursor("r"), &s.rr_cursor("other")));
        s.retain(|id| id == "other");
        assert_eq!(s.len(), 1);
    }
}
