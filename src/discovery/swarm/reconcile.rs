//! Services + tasks + networks → [`ProviderSnapshot`]: translate the labels, then resolve every
//! `UpstreamTarget::Tasks` into the task addresses on a network the proxy shares.
//!
//! Pure functions, so `swarmgate check --services FILE --tasks FILE` shows exactly what a live
//! cluster would get, and the 1,000-service benchmark needs no engine.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};

use super::types::{Network, NetworkAttachment, Service, Task};
use super::SwarmError;
use crate::discovery::ProviderSnapshot;
use crate::labels::{LabelsConfig, ServiceInput, Translation};
use crate::model::{Endpoint, Problem, TaskTarget, UpstreamTarget};

/// Which of a task's network attachments gives the address the proxy dials.
///
/// A per-service override (`TaskTarget::network`, from `swarmgate.network`,
/// `caddy_ingress_network`, `traefik.swarm.network`) always wins over this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkSelection {
    /// `[docker] networks`: names or IDs, in order of preference.
    Configured(Vec<String>),
    /// The networks of the proxy's own container (IDs or names), found at start.
    Proxy(Vec<String>),
    /// The proxy runs outside a container: any non-ingress network of the task.
    Any,
}

impl NetworkSelection {
    /// `[docker] networks` when set, else `Any` (the caller upgrades to `Proxy` when it finds
    /// its own container).
    pub fn from_config(networks: &[String]) -> Self {
        if networks.is_empty() {
            NetworkSelection::Any
        } else {
            NetworkSelection::Configured(networks.to_vec())
        }
    }

    fn describe(&self) -> String {
        match self {
            NetworkSelection::Configured(n) => {
                format!("the configured network(s) {}", n.join(", "))
            }
            NetworkSelection::Proxy(n) => format!("the proxy's own network(s) {}", n.join(", ")),
            NetworkSelection::Any => "any non-ingress network".into(),
        }
    }
}

/// `wanted` (a name, a full ID or an ID prefix of 12+ characters) names this attachment's network.
/// A stack-local name also matches the stack-prefixed network (`proxy` → `shop_proxy` in stack
/// `shop`), the usual cause of "not in the same network" reports with other proxies.
fn network_matches(att: &NetworkAttachment, wanted: &str, namespace: Option<&str>) -> bool {
    let net = &att.network;
    if wanted.is_empty() {
        return false;
    }
    if net.spec.name == wanted || net.id == wanted || (wanted.len() >= 12 && net.id.starts_with(wanted)) {
        return true;
    }
    match namespace {
        Some(ns) => net.spec.name.strip_prefix(ns).and_then(|rest| rest.strip_prefix('_')) == Some(wanted),
        None => false,
    }
}

/// The address the proxy dials for `task`, or `None` when it is on no selected network.
fn task_ip(
    task: &Task,
    override_net: Option<&str>,
    selection: &NetworkSelection,
    namespace: Option<&str>,
) -> Option<IpAddr> {
    let atts = &task.networks_attachments;
    if let Some(want) = override_net {
        return atts.iter().filter(|a| network_matches(a, want, namespace)).find_map(NetworkAttachment::ip);
    }
    match selection {
        NetworkSelection::Configured(list) | NetworkSelection::Proxy(list) => {
            // In the order of preference of the list, so a task on two selected networks is
            // always dialled on the same one (Traefik picks randomly: issues #979, #5040).
            list.iter()
                .find_map(|want| atts.iter().filter(|a| network_matches(a, want, None)).find_map(NetworkAttachment::ip))
        }
        NetworkSelection::Any => atts.iter().filter(|a| !a.network.is_ingress()).find_map(NetworkAttachment::ip),
    }
}

/// The label that set a service's network override, for the problem's key.
fn override_label_key(service: &Service, network: &str) -> String {
    service
        .spec
        .labels
        .iter()
        .find(|(k, v)| k.to_ascii_lowercase().ends_with("network") && v.as_str() == network)
        .map(|(k, _)| k.clone())
        .unwrap_or_else(|| "network".into())
}

/// The label-facing view of a service.
pub fn service_input(s: &Service) -> ServiceInput {
    ServiceInput { id: s.id.clone(), name: s.spec.name.clone(), labels: s.spec.labels.clone(), ports: s.target_ports() }
}

/// (service name, network override): targets sharing it share one address lookup.
type TargetKey<'a> = (&'a str, Option<String>);

/// Translate every service's labels, then resolve task upstreams. See [`resolve`].
pub fn reconcile(
    services: &[Service],
    tasks: &[Task],
    networks: &[Network],
    selection: &NetworkSelection,
    labels: &LabelsConfig,
) -> ProviderSnapshot {
    let inputs: Vec<ServiceInput> = services.iter().map(service_input).collect();
    let mut translation = crate::labels::translate(&inputs, labels);
    translation.problems.extend(services.iter().filter_map(|s| container_label_problem(s, labels)));
    resolve(translation, services, tasks, networks, selection)
}

/// Routing labels under `ContainerSpec.Labels` (a stack file's `labels:` where `deploy.labels:`
/// was meant) do nothing, in swarmgate as in caddy-docker-proxy and Traefik's Swarm provider:
/// say so, naming the first such label, instead of leaving the service silently unrouted.
fn container_label_problem(s: &Service, cfg: &LabelsConfig) -> Option<Problem> {
    let prefixes = [
        (cfg.native, format!("{}.", cfg.native_prefix)),
        (cfg.caddy, cfg.caddy_prefix.clone()),
        (cfg.traefik, "traefik.".to_owned()),
    ];
    let routing = |k: &str| prefixes.iter().any(|(on, p)| *on && k.starts_with(p.as_str()));
    let key = s.spec.task_template.container_spec.labels.keys().find(|k| routing(k))?;
    Some(Problem::new(
        &s.spec.name,
        key,
        "is a container label (ContainerSpec.Labels): routing labels must be service labels; in a stack file, move them under deploy.labels",
    ))
}

/// Replace every `UpstreamTarget::Tasks` by the `Static` endpoints of the routable tasks.
///
/// - Routable = desired and observed state both `running`.
/// - One endpoint per task: its address on the override network, else on the selected networks.
/// - A route whose service has no routable task keeps an empty endpoint list, so the proxy
///   answers 503 (the site exists, nothing serves it) instead of 404.
/// - Running tasks with no address on a selected network become one problem per service and
///   network choice, naming the label (or `docker.networks`) that chose the network.
pub fn resolve(
    translation: Translation,
    services: &[Service],
    tasks: &[Task],
    networks: &[Network],
    selection: &NetworkSelection,
) -> ProviderSnapshot {
    let Translation { mut routes, mut problems, global } = translation;

    let by_name: HashMap<&str, &Service> = services.iter().map(|s| (s.spec.name.as_str(), s)).collect();
    let mut running: HashMap<&str, Vec<&Task>> = HashMap::with_capacity(services.len());
    for t in tasks.iter().filter(|t| t.is_routable()) {
        running.entry(t.service_id.as_str()).or_default().push(t);
    }

    // (service, override) → (ip, task id) of every routable task with a selected address.
    let mut resolved: HashMap<TargetKey<'_>, Vec<(IpAddr, &Task)>> = HashMap::new();
    let mut unknown_services: BTreeSet<String> = BTreeSet::new();

    services_named_by_address(&mut routes, &by_name, &mut problems);
    for route in &mut routes {
        let Some(up) = route.upstream_mut() else {
            continue;
        };
        let UpstreamTarget::Tasks(targets) = &up.target else {
            continue;
        };
        let mut endpoints: Vec<Endpoint> = Vec::new();
        for TaskTarget { service, network, port } in targets {
            let Some(svc) = by_name.get(service.as_str()) else {
                unknown_services.insert(service.clone());
                continue;
            };
            let key = (svc.spec.name.as_str(), network.clone());
            let ips = resolved.entry(key).or_insert_with(|| {
                let ns = svc.stack_namespace();
                let task_list = running.get(svc.id.as_str()).map(Vec::as_slice).unwrap_or(&[]);
                let mut ips = Vec::with_capacity(task_list.len());
                let mut stranded: Vec<&Task> = Vec::new();
                for t in task_list {
                    match task_ip(t, network.as_deref(), selection, ns) {
                        Some(ip) => ips.push((ip, *t)),
                        None => stranded.push(t),
                    }
                }
                if !stranded.is_empty() {
                    problems.push(stranded_problem(svc, network.as_deref(), selection, &stranded));
                }
                ips
            });
            endpoints.extend(ips.iter().map(|(ip, t)| Endpoint {
                addr: SocketAddr::new(*ip, *port),
                task: t.id.clone(),
                node: t.node_id.clone(),
            }));
        }
        endpoints.sort_unstable();
        endpoints.dedup();
        up.target = UpstreamTarget::Static(endpoints);
    }

    for name in unknown_services {
        problems.push(Problem::new(
            name,
            "service",
            "a route names this service but the engine lists no service by that name",
        ));
    }
    if let NetworkSelection::Configured(list) = selection {
        if !networks.is_empty() {
            for want in list {
                let known = networks
                    .iter()
                    .any(|n| n.name == *want || n.id == *want || (want.len() >= 12 && n.id.starts_with(want.as_str())));
                if !known {
                    problems.push(Problem::new(
                        "config",
                        "docker.networks",
                        format!("network {want:?} does not exist on this swarm"),
                    ));
                }
            }
        }
    }
    problems.sort();
    problems.dedup();
    // Stable order: equal clusters give equal snapshots whatever order the engine listed them in.
    routes.sort_by(|a, b| a.id.cmp(&b.id));
    ProviderSnapshot { routes, problems, global }
}

/// A label upstream given by address (`reverse_proxy whoami:80`, Traefik `server.url`) whose
/// host is a Swarm service, by its name or by its short name inside the labelled service's own
/// stack (`whoami` for `shop_whoami`, as Docker's DNS resolves it there), is balanced across
/// that service's tasks like `{{upstreams}}`: per task, drained, never through the VIP. Other
/// names stay names, looked up off the request path by the publisher's resolver.
fn services_named_by_address(
    routes: &mut [crate::model::RouteSpec],
    by_name: &HashMap<&str, &Service>,
    problems: &mut Vec<Problem>,
) {
    for route in routes {
        let crate::model::Provenance::Service { service: own, key } = &route.provenance else {
            continue;
        };
        let (own, key) = (own.clone(), key.clone());
        let ns = by_name.get(own.as_str()).and_then(|s| s.stack_namespace()).map(str::to_owned);
        let Some(up) = route.upstream_mut() else {
            continue;
        };
        let UpstreamTarget::Names(names) = &up.target else {
            continue;
        };
        let find = |host: &str| -> Option<String> {
            let scoped = ns.as_ref().map(|ns| format!("{ns}_{host}"));
            [Some(host.to_owned()), scoped].into_iter().flatten().find(|n| by_name.contains_key(n.as_str()))
        };
        let targets: Vec<Option<TaskTarget>> = names
            .iter()
            .map(|(host, port)| find(host).map(|service| TaskTarget { service, network: None, port: *port }))
            .collect();
        match targets.iter().filter(|t| t.is_some()).count() {
            0 => {}
            n if n == targets.len() => up.target = UpstreamTarget::Tasks(targets.into_iter().flatten().collect()),
            _ => problems.push(Problem::new(
                &own,
                &key,
                "upstreams mix Swarm service names with other addresses; all are looked up by DNS (service names then reach the VIP, not the tasks): split them",
            )),
        }
    }
}

fn stranded_problem(svc: &Service, network: Option<&str>, selection: &NetworkSelection, stranded: &[&Task]) -> Problem {
    let mut on: BTreeSet<&str> = BTreeSet::new();
    for t in stranded {
        for a in &t.networks_attachments {
            on.insert(if a.network.spec.name.is_empty() {
                a.network.id.as_str()
            } else {
                a.network.spec.name.as_str()
            });
        }
    }
    let on = if on.is_empty() { "no network".to_owned() } else { on.into_iter().collect::<Vec<_>>().join(", ") };
    let n = stranded.len();
    match network {
        Some(want) => Problem::new(
            &svc.spec.name,
            override_label_key(svc, want),
            format!("{n} running task(s) have no address on network {want:?} (they are on: {on}); attach the service to it or fix the label"),
        ),
        None => Problem::new(
            &svc.spec.name,
            "docker.networks",
            format!(
                "{n} running task(s) have no address on {} (they are on: {on}); attach the service to a network the proxy shares or set a network label",
                selection.describe()
            ),
        ),
    }
}

/// `check --services FILE [--tasks FILE]`: the same resolution over saved engine JSON.
///
/// `services_json` is what `docker service inspect a b c` prints (an array; one object is
/// accepted too); `tasks_json` is the body of `GET /tasks`. Without tasks every route is shown
/// with no endpoints. Networks come from the task attachments.
pub fn snapshot_from_json(
    services_json: &str,
    tasks_json: Option<&str>,
    selection: &NetworkSelection,
    labels: &LabelsConfig,
) -> Result<ProviderSnapshot, SwarmError> {
    let services: Vec<Service> =
        parse_one_or_many(services_json).map_err(|source| SwarmError::Json { what: "services JSON".into(), source })?;
    let tasks: Vec<Task> = match tasks_json {
        Some(t) => parse_one_or_many(t).map_err(|source| SwarmError::Json { what: "tasks JSON".into(), source })?,
        None => Vec::new(),
    };
    Ok(reconcile(&services, &tasks, &[], selection, labels))
}

fn parse_one_or_many<T: serde::de::DeserializeOwned>(text: &str) -> Result<Vec<T>, serde_json::Error> {
    if text.trim_start().starts_with('{') {
        serde_json::from_str::<T>(text).map(|one| vec![one])
    } else {
        serde_json::from_str(text)
    }
}

/// A one-line summary of what changed between two snapshots, for the log; `None` when only
/// ordering differs.
pub fn diff_summary(old: &ProviderSnapshot, new: &ProviderSnapshot) -> Option<String> {
    let old_ids: HashSet<&str> = old.routes.iter().map(|r| r.id.as_str()).collect();
    let new_ids: HashSet<&str> = new.routes.iter().map(|r| r.id.as_str()).collect();
    let mut added: Vec<&str> = new_ids.difference(&old_ids).copied().collect();
    let mut removed: Vec<&str> = old_ids.difference(&new_ids).copied().collect();
    added.sort_unstable();
    removed.sort_unstable();

    let eps = |s: &ProviderSnapshot| -> HashSet<(String, SocketAddr, String)> {
        let mut set = HashSet::new();
        for r in &s.routes {
            if let Some(UpstreamTarget::Static(e)) = r.upstream().map(|u| &u.target) {
                for ep in e {
                    set.insert((r.id.clone(), ep.addr, ep.task.clone()));
                }
            }
        }
        set
    };
    let (old_eps, new_eps) = (eps(old), eps(new));
    let ep_added: BTreeSet<String> = new_eps.difference(&old_eps).map(|(_, a, t)| fmt_ep(a, t)).collect();
    let ep_removed: BTreeSet<String> = old_eps.difference(&new_eps).map(|(_, a, t)| fmt_ep(a, t)).collect();
    let changed_routes = new.routes.iter().filter(|r| old.routes.iter().any(|o| o.id == r.id && o != *r)).count();

    if added.is_empty()
        && removed.is_empty()
        && ep_added.is_empty()
        && ep_removed.is_empty()
        && changed_routes == 0
        && old.global == new.global
    {
        return if old.problems == new.problems {
            None
        } else {
            Some(format!("problems {} → {}", old.problems.len(), new.problems.len()))
        };
    }
    let mut parts =
        vec![format!("routes {} (+{} -{}, {} changed)", new.routes.len(), added.len(), removed.len(), changed_routes)];
    if !added.is_empty() {
        parts.push(format!("added [{}]", list(&added)));
    }
    if !removed.is_empty() {
        parts.push(format!("removed [{}]", list(&removed)));
    }
    if !ep_added.is_empty() || !ep_removed.is_empty() {
        let a: Vec<&str> = ep_added.iter().map(String::as_str).collect();
        let r: Vec<&str> = ep_removed.iter().map(String::as_str).collect();
        parts.push(format!("endpoints +{} [{}] -{} [{}]", a.len(), list(&a), r.len(), list(&r)));
    }
    Some(parts.join("; "))
}

fn fmt_ep(addr: &SocketAddr, task: &str) -> String {
    let short = task.get(..12).unwrap_or(task);
    format!("{addr}@{short}")
}

/// Up to five items, then a count, so one log line stays one line in a big cluster.
fn list(items: &[&str]) -> String {
    const MAX: usize = 5;
    let mut s = items.iter().take(MAX).copied().collect::<Vec<_>>().join(", ");
    if items.len() > MAX {
        s.push_str(&format!(", … {} more", items.len() - MAX));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Provenance, RouteSpec, UpstreamSpec};
    use std::collections::BTreeMap;

    fn att(id: &str, name: &str, addr: &str) -> NetworkAttachment {
        serde_json::from_value(serde_json::json!({"Network": {"ID": id, "Spec": {"Name": name, "Ingress": name == "ingress"}}, "Addresses": [addr]}))
            .unwrap()
    }

    fn svc(id: &str, name: &str, labels: &[(&str, &str)]) -> Service {
        let mut s = Service { id: id.into(), ..Default::default() };
        s.spec.name = name.into();
        s.spec.labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>();
        s
    }

    fn task(id: &str, service: &str, desired: &str, state: &str, atts: Vec<NetworkAttachment>) -> Task {
        Task {
            id: id.into(),
            service_id: service.into(),
            desired_state: desired.into(),
            status: Some(super::super::types::TaskStatus { state: state.into(), message: String::new() }),
            networks_attachments: atts,
            node_id: format!("node-of-{id}"),
            ..Default::default()
        }
    }

    fn route(service: &str, network: Option<&str>, port: u16) -> RouteSpec {
        RouteSpec::proxy(
            format!("svc/{service}"),
            Provenance::Service { service: service.into(), key: "swarmgate.host".into() },
            vec![format!("{service}.example.com")],
            UpstreamSpec::new(UpstreamTarget::Tasks(vec![TaskTarget {
                service: service.into(),
                network: network.map(Into::into),
                port,
            }])),
        )
    }

    fn endpoints(s: &ProviderSnapshot, id: &str) -> Vec<String> {
        let r = s.routes.iter().find(|r| r.id == id).expect("route exists");
        match &r.upstream().unwrap().target {
            UpstreamTarget::Static(e) => e.iter().map(|e| e.addr.to_string()).collect(),
            other => panic!("unresolved target {other:?}"),
        }
    }

    fn tr(routes: Vec<RouteSpec>) -> Translation {
        Translation { routes, ..Default::default() }
    }

    #[test]
    fn only_running_running_tasks_are_endpoints_and_empty_route_stays() {
        let services = vec![svc("s1", "web", &[]), svc("s2", "idle", &[])];
        let net = |ip| vec![att("n1", "proxy", ip), att("ing", "ingress", "10.0.0.9/24")];
        let tasks = vec![
            task("t1", "s1", "running", "running", net("10.0.1.1/24")),
            task("t2", "s1", "running", "starting", net("10.0.1.2/24")),
            task("t3", "s1", "shutdown", "running", net("10.0.1.3/24")),
            task("t4", "s1", "running", "running", net("10.0.1.4/24")),
            task("t5", "s2", "running", "pending", net("10.0.1.5/24")),
        ];
        let snap = resolve(
            tr(vec![route("web", None, 5000), route("idle", None, 80)]),
            &services,
            &tasks,
            &[],
            &NetworkSelection::Any,
        );
        assert_eq!(endpoints(&snap, "svc/web"), vec!["10.0.1.1:5000", "10.0.1.4:5000"]);
        // Each endpoint says which task on which node it is (the dashboard shows both).
        let web = snap.routes.iter().find(|r| r.id == "svc/web").unwrap();
        let UpstreamTarget::Static(eps) = &web.upstream().unwrap().target else { panic!("resolved") };
        assert_eq!((eps[0].task.as_str(), eps[0].node.as_str()), ("t1", "node-of-t1"));
        // No routable task: the route is still there with no endpoints (→ 503, not 404).
        assert!(endpoints(&snap, "svc/idle").is_empty());
        assert!(snap.problems.is_empty(), "{:?}", snap.problems);
    }

    #[test]
    fn configured_network_wins_and_stranded_tasks_are_a_problem() {
        let services = vec![svc("s1", "web", &[])];
        let tasks = vec![
            task(
                "t1",
                "s1",
                "running",
                "running",
                vec![att("a", "other", "10.9.0.1/24"), att("n1", "proxy", "10.0.1.1/24")],
            ),
            task("t2", "s1", "running", "running", vec![att("a", "other", "10.9.0.2/24")]),
        ];
        let sel = NetworkSelection::Configured(vec!["proxy".into()]);
        let snap = resolve(tr(vec![route("web", None, 80)]), &services, &tasks, &[], &sel);
        assert_eq!(endpoints(&snap, "svc/web"), vec!["10.0.1.1:80"]);
        assert_eq!(snap.problems.len(), 1);
        let p = &snap.problems[0];
        assert_eq!((p.source.as_str(), p.key.as_str()), ("web", "docker.networks"));
        assert!(p.message.contains("other"), "{p}");
        // Selection by network ID works the same.
        let snap = resolve(
            tr(vec![route("web", None, 80)]),
            &services,
            &tasks,
            &[],
            &NetworkSelection::Configured(vec!["n1".into()]),
        );
        assert_eq!(endpoints(&snap, "svc/web"), vec!["10.0.1.1:80"]);
    }

    #[test]
    fn override_label_beats_configured_network_and_names_the_label() {
        let services =
            vec![svc("s1", "web", &[("caddy_ingress_network", "barnet"), ("com.docker.stack.namespace", "shop")])];
        let tasks = vec![task(
            "t1",
            "s1",
            "running",
            "running",
            vec![att("f", "proxy", "10.0.1.1/24"), att("b", "shop_barnet", "10.11.12.99/24")],
        )];
        let sel = NetworkSelection::Configured(vec!["proxy".into()]);
        // Stack-local name matches the stack-prefixed network.
        let snap = resolve(tr(vec![route("web", Some("barnet"), 80)]), &services, &tasks, &[], &sel);
        assert_eq!(endpoints(&snap, "svc/web"), vec!["10.11.12.99:80"]);
        assert!(snap.problems.is_empty());
        // Override naming a network the task is not on → no endpoint and a problem on that label.
        let services = vec![svc("s1", "web", &[("caddy_ingress_network", "nowhere")])];
        let snap = resolve(tr(vec![route("web", Some("nowhere"), 80)]), &services, &tasks, &[], &sel);
        assert!(endpoints(&snap, "svc/web").is_empty());
        assert_eq!(snap.problems[0].key, "caddy_ingress_network");
    }

    #[test]
    fn any_selection_skips_ingress_and_proxy_selection_uses_own_networks() {
        let services = vec![svc("s1", "web", &[])];
        let tasks = vec![task(
            "t1",
            "s1",
            "running",
            "running",
            vec![att("ing", "ingress", "10.0.0.5/24"), att("x", "backend", "10.2.0.5/24")],
        )];
        let snap = resolve(tr(vec![route("web", None, 80)]), &services, &tasks, &[], &NetworkSelection::Any);
        assert_eq!(endpoints(&snap, "svc/web"), vec!["10.2.0.5:80"]);
        let snap = resolve(
            tr(vec![route("web", None, 80)]),
            &services,
            &tasks,
            &[],
            &NetworkSelection::Proxy(vec!["front".into()]),
        );
        assert!(endpoints(&snap, "svc/web").is_empty());
        assert!(snap.problems[0].message.contains("proxy's own"), "{}", snap.problems[0]);
    }

    #[test]
    fn merged_targets_union_and_unknown_configured_network_is_reported() {
        let services = vec![svc("s1", "a", &[]), svc("s2", "b", &[])];
        let tasks = vec![
            task("t1", "s1", "running", "running", vec![att("n", "proxy", "10.0.1.1/24")]),
            task("t2", "s2", "running", "running", vec![att("n", "proxy", "10.0.1.2/24")]),
        ];
        let mut r = route("a", None, 80);
        r.upstream_mut().unwrap().target = UpstreamTarget::Tasks(vec![
            TaskTarget { service: "a".into(), network: None, port: 80 },
            TaskTarget { service: "b".into(), network: None, port: 8080 },
        ]);
        let nets = vec![Network { id: "n".into(), name: "proxy".into(), ..Default::default() }];
        let sel = NetworkSelection::Configured(vec!["proxy".into(), "typo".into()]);
        let snap = resolve(tr(vec![r]), &services, &tasks, &nets, &sel);
        assert_eq!(endpoints(&snap, "svc/a"), vec!["10.0.1.1:80", "10.0.1.2:8080"]);
        assert_eq!(
            snap.problems,
            vec![Problem::new("config", "docker.networks", "network \"typo\" does not exist on this swarm")]
        );
    }

    #[test]
    fn diff_summary_names_routes_and_endpoints() {
        let services = vec![svc("s1", "web", &[])];
        let t1 = task("t1aaaaaaaaaaaaaa", "s1", "running", "running", vec![att("n", "p", "10.0.1.1/24")]);
        let t2 = task("t2", "s1", "running", "running", vec![att("n", "p", "10.0.1.2/24")]);
        let a = resolve(
            tr(vec![route("web", None, 80)]),
            &services,
            std::slice::from_ref(&t1),
            &[],
            &NetworkSelection::Any,
        );
        let b = resolve(tr(vec![route("web", None, 80)]), &services, &[t2], &[], &NetworkSelection::Any);
        let line = diff_summary(&a, &b).unwrap();
        assert!(line.contains("+1 [10.0.1.2:80@t2]"), "{line}");
        assert!(line.contains("-1 [10.0.1.1:80@t1aaaaaaaaaa]"), "{line}");
        assert_eq!(diff_summary(&a, &a), None);
        let empty = ProviderSnapshot::default();
        assert!(diff_summary(&empty, &a).unwrap().contains("added [svc/web]"));
    }

    /// `reverse_proxy http://whoami:8080` inside stack `shop` means the service `shop_whoami`:
    /// its running task IPs, not a lookup. A name that is no service stays a name (DNS later).
    #[test]
    fn an_upstream_naming_a_service_goes_to_its_tasks() {
        let services = r#"[
            {"ID": "f1", "Spec": {"Name": "shop_front", "Labels": {"com.docker.stack.namespace": "shop",
                "caddy": "f.example.com", "caddy.reverse_proxy": "http://whoami:8080"}}},
            {"ID": "w1", "Spec": {"Name": "shop_whoami", "Labels": {"com.docker.stack.namespace": "shop"}}},
            {"ID": "o1", "Spec": {"Name": "outside", "Labels": {"caddy": "o.example.com", "caddy.reverse_proxy": "db.internal:5000"}}}]"#;
        let tasks = r#"[
            {"ID": "t1", "ServiceID": "w1", "Status": {"State": "running"}, "DesiredState": "running",
             "NetworksAttachments": [{"Network": {"ID": "n1", "Spec": {"Name": "shop_default"}}, "Addresses": ["10.0.9.3/24"]}]},
            {"ID": "t2", "ServiceID": "w1", "Status": {"State": "running"}, "DesiredState": "running",
             "NetworksAttachments": [{"Network": {"ID": "n1", "Spec": {"Name": "shop_default"}}, "Addresses": ["10.0.9.4/24"]}]}]"#;
        let snap = snapshot_from_json(services, Some(tasks), &NetworkSelection::Any, &LabelsConfig::default()).unwrap();
        assert!(snap.problems.is_empty(), "{:#?}", snap.problems);
        let target = |host: &str| {
            let r = snap.routes.iter().find(|r| r.hosts.iter().any(|h| h == host)).unwrap();
            r.upstream().unwrap().target.clone()
        };
        match target("f.example.com") {
            UpstreamTarget::Static(eps) => {
                let addrs: Vec<String> = eps.iter().map(|e| e.addr.to_string()).collect();
                assert_eq!(addrs, ["10.0.9.3:8080", "10.0.9.4:8080"]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(target("o.example.com"), UpstreamTarget::Names(vec![("db.internal".into(), 5000)]));
    }

    /// A stack file's `labels:` (container labels) instead of `deploy.labels:` is the most
    /// common reason a service "does nothing": it is a problem naming the label.
    #[test]
    fn routing_labels_on_the_container_are_a_problem_not_silence() {
        let services = r#"[{"ID": "a1", "Spec": {"Name": "app", "Labels": {},
                "TaskTemplate": {"ContainerSpec": {"Image": "x", "Labels": {"caddy": "app.example.com", "caddy.reverse_proxy": "{{upstreams 80}}"}}}}},
            {"ID": "b1", "Spec": {"Name": "other", "Labels": {},
                "TaskTemplate": {"ContainerSpec": {"Image": "x", "Labels": {"com.example.team": "web"}}}}}]"#;
        let snap = snapshot_from_json(services, None, &NetworkSelection::Any, &LabelsConfig::default()).unwrap();
        assert!(snap.routes.is_empty());
        assert_eq!(snap.problems.len(), 1, "{:#?}", snap.problems);
        let p = &snap.problems[0];
        assert_eq!((p.source.as_str(), p.key.as_str()), ("app", "caddy"));
        assert!(p.message.contains("deploy.labels"), "{}", p.message);
    }

    #[test]
    fn check_files_resolve_like_a_live_cluster() {
        // What `docker service inspect shop_web` and `curl --unix-socket … /tasks` print.
        let services = r#"[{"ID": "9mnpnzenvg8p8tdbtq4wvbkcz", "Version": {"Index": 19},
            "Spec": {"Name": "shop_web",
                     "Labels": {"com.docker.stack.namespace": "shop", "swarmgate.host": "shop.example.com", "swarmgate.port": "8080"},
                     "TaskTemplate": {"ContainerSpec": {"Image": "shop/web:1.4"}, "Networks": [{"Target": "4qvuz4ko70xaltuqbt8956gd1"}]},
                     "Mode": {"Replicated": {"Replicas": 2}}},
            "Endpoint": {"Spec": {"Mode": "vip"}, "VirtualIPs": [{"NetworkID": "4qvuz4ko70xaltuqbt8956gd1", "Addr": "10.0.1.2/24"}]}}]"#;
        let tasks = r#"[
          {"ID": "0kzzo1i0y4jz6027t0k7aezc7", "ServiceID": "9mnpnzenvg8p8tdbtq4wvbkcz", "Slot": 1, "NodeID": "n1",
           "Status": {"State": "running"}, "DesiredState": "running",
           "NetworksAttachments": [{"Network": {"ID": "4qvuz4ko70xaltuqbt8956gd1", "Spec": {"Name": "shop_proxy"}}, "Addresses": ["10.0.1.3/24"]}]},
          {"ID": "1lm3w2p8c0aq1s7tq0x4m9e2b", "ServiceID": "9mnpnzenvg8p8tdbtq4wvbkcz", "Slot": 2, "NodeID": "n1",
           "Status": {"State": "starting"}, "DesiredState": "running",
           "NetworksAttachments": [{"Network": {"ID": "4qvuz4ko70xaltuqbt8956gd1", "Spec": {"Name": "shop_proxy"}}, "Addresses": ["10.0.1.4/24"]}]}]"#;
        let sel = NetworkSelection::Configured(vec!["shop_proxy".into()]);
        let snap = snapshot_from_json(services, Some(tasks), &sel, &LabelsConfig::default()).unwrap();
        assert_eq!(snap.routes.len(), 1);
        assert_eq!(snap.routes[0].hosts, vec!["shop.example.com"]);
        match &snap.routes[0].upstream().unwrap().target {
            UpstreamTarget::Static(e) => {
                assert_eq!(e.len(), 1);
                assert_eq!(e[0].addr.to_string(), "10.0.1.3:8080");
                assert_eq!(e[0].task, "0kzzo1i0y4jz6027t0k7aezc7");
            }
            other => panic!("{other:?}"),
        }
        // Without --tasks: the route, with no endpoints.
        let snap = snapshot_from_json(services, None, &sel, &LabelsConfig::default()).unwrap();
        assert_eq!(snap.routes[0].upstream().unwrap().target, UpstreamTarget::Static(vec![]));
    }

    #[test]
    fn snapshot_from_json_accepts_inspect_array_and_single_object() {
        let services = r#"[{"ID":"s1","Spec":{"Name":"web","Labels":{"swarmgate.host":"web.example.com"}}}]"#;
        let one = r#"{"ID":"s1","Spec":{"Name":"web","Labels":{}}}"#;
        assert!(snapshot_from_json(services, None, &NetworkSelection::Any, &LabelsConfig::default()).is_ok());
        assert!(snapshot_from_json(one, Some("[]"), &NetworkSelection::Any, &LabelsConfig::default()).is_ok());
        let err = snapshot_from_json("[{", None, &NetworkSelection::Any, &LabelsConfig::default()).unwrap_err();
        assert!(err.to_string().contains("services JSON"), "{err}");
    }
}
