//! DNS names of upstreams (file config `app.internal:8080`, `tasks.app:80`; labels naming an
//! address that is not a Swarm service), resolved off the async runtime and again periodically.
//!
//! Config validation only checks the syntax: a blocking lookup while loading (or in an async
//! task) stalls every connection on that thread, and a name that does not resolve *yet* is not
//! a reason to refuse a file. Lookups go through `tokio::net::lookup_host` (the system resolver
//! on tokio's blocking pool, so `/etc/hosts`, search domains and Docker's embedded DNS apply),
//! each bounded by a timeout. A name whose lookup fails keeps the addresses it last resolved to,
//! and the failure is a problem naming the route, so a flapping resolver cannot empty a route
//! and a name that never resolved is never silent.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use crate::model::{Endpoint, Problem, RouteSpec, UpstreamTarget};

/// A `host:port` upstream to resolve.
pub type Name = (String, u16);

/// What the last lookups of each name gave.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsCache {
    entries: BTreeMap<Name, Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// The last successful answer (sorted); empty if none yet.
    addrs: Vec<SocketAddr>,
    /// The error of the last lookup, if it failed.
    error: Option<String>,
}

/// Every name the specs' upstreams need.
pub fn names_in(specs: &[RouteSpec]) -> BTreeSet<Name> {
    specs
        .iter()
        .filter_map(|s| s.upstream())
        .filter_map(|u| match &u.target {
            UpstreamTarget::Names(names) => Some(names.iter().cloned()),
            _ => None,
        })
        .flatten()
        .collect()
}

/// Looks one name up; the addresses are sorted and deduplicated.
pub async fn lookup((host, port): &Name, timeout: Duration) -> Result<Vec<SocketAddr>, String> {
    match tokio::time::timeout(timeout, tokio::net::lookup_host((host.as_str(), *port))).await {
        Err(_) => Err(format!("lookup timed out after {timeout:?}")),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(addrs)) => {
            let set: BTreeSet<SocketAddr> = addrs.collect();
            if set.is_empty() {
                Err("no address".into())
            } else {
                Ok(set.into_iter().collect())
            }
        }
    }
}

impl DnsCache {
    /// True when every name has been looked up at least once (a new name needs a lookup now,
    /// not at the next periodic refresh).
    pub fn covers(&self, names: &BTreeSet<Name>) -> bool {
        names.iter().all(|n| self.entries.contains_key(n))
    }

    /// Resolves every name concurrently and returns the cache they give: names no longer
    /// wanted are dropped, a failed lookup keeps the previous addresses.
    pub async fn refreshed(&self, names: &BTreeSet<Name>, timeout: Duration) -> DnsCache {
        let lookups = names.iter().map(|n| async move { (n.clone(), lookup(n, timeout).await) });
        let results = futures_util::future::join_all(lookups).await;
        let mut next = DnsCache::default();
        for (name, result) in results {
            let previous = self.entries.get(&name).map(|e| e.addrs.clone()).unwrap_or_default();
            let entry = match result {
                Ok(addrs) => Entry { addrs, error: None },
                Err(e) => Entry { addrs: previous, error: Some(e) },
            };
            next.entries.insert(name, entry);
        }
        next
    }

    /// Replaces every `Names` target by the addresses the cache holds, with a problem for each
    /// name that is not resolved now.
    pub fn apply(&self, specs: &[RouteSpec]) -> (Vec<RouteSpec>, Vec<Problem>) {
        let mut problems = Vec::new();
        let specs = specs
            .iter()
            .cloned()
            .map(|mut spec| {
                let key = match &spec.provenance {
                    crate::model::Provenance::Service { key, .. } => key.clone(),
                    other => format!("{other}.upstreams"),
                };
                let source = spec.provenance.source();
                let from_labels = matches!(spec.provenance, crate::model::Provenance::Service { .. });
                if let Some(up) = spec.upstream_mut() {
                    if let UpstreamTarget::Names(names) = &up.target {
                        let mut endpoints = Vec::new();
                        for name in names {
                            let entry = self.entries.get(name);
                            if let Some(p) = self.problem(name, entry, &source, &key) {
                                problems.push(p);
                            }
                            let addrs = entry.map(|e| e.addrs.as_slice()).unwrap_or(&[]);
                            let (ok, local): (Vec<&SocketAddr>, Vec<&SocketAddr>) = addrs
                                .iter()
                                .partition(|a| !from_labels || !crate::labels::common::is_host_local(a.ip()));
                            if !local.is_empty() {
                                problems.push(Problem::new(
                                    &source,
                                    &key,
                                    format!("{}:{} resolves to host-local address(es) {local:?}, which labels may not reach; left out", name.0, name.1),
                                ));
                            }
                            endpoints.extend(ok.into_iter().map(|a| Endpoint::fixed(*a)));
                        }
                        up.target = UpstreamTarget::Static(endpoints);
                    }
                }
                spec
            })
            .collect();
        (specs, problems)
    }

    fn problem(&self, (host, port): &Name, entry: Option<&Entry>, source: &str, key: &str) -> Option<Problem> {
        let msg = match entry {
            None => format!("{host}:{port} is not resolved yet"),
            Some(Entry { error: None, .. }) => return None,
            Some(Entry { error: Some(e), addrs }) if addrs.is_empty() => {
                format!("{host}:{port} does not resolve ({e}); the route has no endpoints from it")
            }
            Some(Entry { error: Some(e), addrs }) => {
                format!("{host}:{port} does not resolve now ({e}); keeping its last {} address(es)", addrs.len())
            }
        };
        Some(Problem::new(source, key, msg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Provenance, UpstreamSpec};

    fn spec(names: &[(&str, u16)]) -> RouteSpec {
        let names = names.iter().map(|(h, p)| (h.to_string(), *p)).collect();
        RouteSpec::proxy(
            "file/0",
            Provenance::File { index: 0 },
            vec!["a.example.com".into()],
            UpstreamSpec::new(UpstreamTarget::Names(names)),
        )
    }

    fn endpoints(spec: &RouteSpec) -> Vec<String> {
        match &spec.upstream().unwrap().target {
            UpstreamTarget::Static(e) => e.iter().map(|e| e.addr.to_string()).collect(),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn names_resolve_and_failures_are_problems_that_keep_the_last_addresses() {
        let specs = [spec(&[("localhost", 8080), ("127.0.0.7", 81), ("does-not-exist.invalid", 80)])];
        let names = names_in(&specs);
        let cache = DnsCache::default().refreshed(&names, Duration::from_secs(5)).await;
        let (resolved, problems) = cache.apply(&specs);
        let eps = endpoints(&resolved[0]);
        assert!(eps.contains(&"127.0.0.1:8080".to_string()), "{eps:?}");
        assert!(eps.contains(&"127.0.0.7:81".to_string()), "{eps:?}");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, "routes[0].upstreams");
        assert!(problems[0].message.contains("does-not-exist.invalid:80 does not resolve"), "{problems:?}");

        // The name that resolved fails later: its addresses stay, and the problem says so.
        let mut failing = cache.clone();
        let entry = failing.entries.get_mut(&("localhost".to_string(), 8080)).unwrap();
        entry.error = Some("server failure".into());
        let (resolved, problems) = failing.apply(&specs);
        assert!(endpoints(&resolved[0]).contains(&"127.0.0.1:8080".to_string()));
        assert!(problems.iter().any(|p| p.message.contains("keeping its last")), "{problems:?}");
    }

    /// A label may name a DNS name, but not one that leads to the proxy's own host: file routes
    /// (the operator's) may, label routes (anyone who deploys) may not.
    #[tokio::test]
    async fn label_routes_never_get_host_local_addresses_from_dns() {
        let mut labelled = spec(&[("localhost", 2375), ("192.0.2.10", 80)]);
        labelled.provenance = Provenance::Service { service: "evil".into(), key: "caddy.reverse_proxy".into() };
        let specs = [spec(&[("localhost", 2375)]), labelled];
        let cache = DnsCache::default().refreshed(&names_in(&specs), Duration::from_secs(5)).await;
        let (resolved, problems) = cache.apply(&specs);
        assert!(endpoints(&resolved[0]).contains(&"127.0.0.1:2375".to_string()), "the file route keeps it");
        assert_eq!(endpoints(&resolved[1]), ["192.0.2.10:80"]);
        let p = problems.iter().find(|p| p.source == "evil").expect("a problem for the label route");
        assert_eq!(p.key, "caddy.reverse_proxy");
        assert!(p.message.contains("host-local"), "{p:?}");
    }
}
