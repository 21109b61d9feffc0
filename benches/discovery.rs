//! Swarm discovery cost: reconciling 1,000 services with 3,000 tasks (labels → routes → task
//! endpoints). The budget is "well under 100 ms" per resync, since a resync runs on every
//! service event and every task poll during a rolling update.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use serde_json::json;
use swarmgate::discovery::swarm::types::{Service, Task};
use swarmgate::discovery::swarm::{reconcile, resolve, service_input, NetworkSelection};
use swarmgate::labels::{translate, LabelsConfig};

fn cluster(n_services: usize, tasks_per_service: usize) -> (Vec<Service>, Vec<Task>) {
    let mut services = Vec::with_capacity(n_services);
    let mut tasks = Vec::with_capacity(n_services * tasks_per_service);
    for i in 0..n_services {
        let name = format!("stack{}_svc{i}", i % 37);
        let labels = match i % 3 {
            0 => json!({"com.docker.stack.namespace": format!("stack{}", i % 37),
                        "swarmgate.host": format!("s{i}.example.com"), "swarmgate.port": "8080",
                        "swarmgate.routes.api.host": format!("api{i}.example.com"), "swarmgate.routes.api.path": "/api"}),
            1 => json!({"com.docker.stack.namespace": format!("stack{}", i % 37),
                        "caddy": format!("c{i}.example.com"), "caddy.reverse_proxy": "{{upstreams 5000}}"}),
            // Router and service names unique per service, as real stacks have them.
            _ => {
                let mut m = serde_json::Map::new();
                m.insert("com.docker.stack.namespace".into(), json!(format!("stack{}", i % 37)));
                m.insert("traefik.enable".into(), json!("true"));
                m.insert(
                    format!("traefik.http.routers.r{i}.rule"),
                    json!(format!("Host(`t{i}.example.com`) && PathPrefix(`/x`)")),
                );
                m.insert(format!("traefik.http.services.s{i}.loadbalancer.server.port"), json!("80"));
                serde_json::Value::Object(m)
            }
        };
        let id = format!("{i:025}");
        services.push(
            serde_json::from_value::<Service>(json!({
                "ID": id, "Version": {"Index": 10},
                "Spec": {"Name": name, "Labels": labels, "Mode": {"Replicated": {"Replicas": tasks_per_service}}},
                "Endpoint": {"Ports": [{"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 0}]}
            }))
            .unwrap(),
        );
        for slot in 0..tasks_per_service {
            let n = i * tasks_per_service + slot;
            let state = if slot == 2 && i % 10 == 0 { "starting" } else { "running" };
            tasks.push(
                serde_json::from_value::<Task>(json!({
                    "ID": format!("task{n:021}"), "ServiceID": id, "Slot": slot + 1, "NodeID": "node1",
                    "Status": {"State": state}, "DesiredState": "running",
                    "NetworksAttachments": [
                        {"Network": {"ID": "ingressid", "Spec": {"Name": "ingress", "Ingress": true}}, "Addresses": [format!("10.0.{}.{}/16", n / 250, n % 250 + 2)]},
                        {"Network": {"ID": "proxynetid", "Spec": {"Name": "proxy"}}, "Addresses": [format!("10.1.{}.{}/16", n / 250, n % 250 + 2)]}
                    ]
                }))
                .unwrap(),
            );
        }
    }
    (services, tasks)
}

fn bench(c: &mut Criterion) {
    let (services, tasks) = cluster(1_000, 3);
    let labels = LabelsConfig::default();
    let sel = NetworkSelection::Configured(vec!["proxy".into()]);
    let snap = reconcile(&services, &tasks, &[], &sel, &labels);
    eprintln!("1,000 services / 3,000 tasks → {} routes, {} problems", snap.routes.len(), snap.problems.len());

    c.bench_function("reconcile_1000_services_3000_tasks", |b| {
        b.iter(|| reconcile(black_box(&services), black_box(&tasks), &[], &sel, &labels))
    });
    // Parsing the engine's answers is part of every resync too.
    let tasks_json = serde_json::to_vec(&tasks).unwrap();
    let services_json = serde_json::to_vec(&services).unwrap();
    c.bench_function("parse_3000_tasks_and_1000_services_json", |b| {
        b.iter(|| {
            let t: Vec<Task> = serde_json::from_slice(black_box(&tasks_json)).unwrap();
            let s: Vec<Service> = serde_json::from_slice(black_box(&services_json)).unwrap();
            (t, s)
        })
    });
    // The discovery-only half: resolving task targets, given the label translation.
    let inputs: Vec<_> = services.iter().map(service_input).collect();
    let translation = translate(&inputs, &labels);
    c.bench_function("resolve_tasks_only_1000_services_3000_tasks", |b| {
        b.iter(|| resolve(black_box(translation.clone()), &services, &tasks, &[], &sel))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
