//! Our own serde types for the Engine API objects discovery reads.
//!
//! Why not bollard's models: bollard's `Task` has no `NetworksAttachments` (the field was missing
//! from the Engine swagger until moby 37302166e0), so task IPs are silently dropped; and its enums
//! are strict, so one unknown state from a newer daemon would fail a whole `/tasks` list. Here
//! every state is a plain string, every field we do not need is ignored, and absent or `null`
//! collections are empty.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Deserializer, Serialize};

/// `null` → the type's default (Go nil maps and slices are emitted as `null` by some versions).
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// One element of `GET /services` (or of `docker service inspect a b c`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Service {
    #[serde(rename = "ID", default)]
    pub id: String,
    #[serde(default, deserialize_with = "nullable")]
    pub spec: ServiceSpec,
    #[serde(default, deserialize_with = "nullable")]
    pub endpoint: ServiceEndpoint,
    /// Absent until the service's first update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_status: Option<UpdateStatus>,
}

impl Service {
    /// True while a rolling update (or rollback) is replacing tasks: discovery polls tasks faster.
    pub fn is_updating(&self) -> bool {
        matches!(self.update_status.as_ref().map(|u| u.state.as_str()), Some("updating" | "rollback_started"))
    }

    /// The stack this service belongs to (`docker stack deploy` namespace), if any.
    pub fn stack_namespace(&self) -> Option<&str> {
        self.spec.labels.get("com.docker.stack.namespace").map(String::as_str)
    }

    /// Container ports the service publishes (TCP), from the effective endpoint, else the spec.
    pub fn target_ports(&self) -> Vec<u16> {
        let ports = if self.endpoint.ports.is_empty() { &self.spec.endpoint_spec.ports } else { &self.endpoint.ports };
        let mut out: Vec<u16> = ports
            .iter()
            .filter(|p| p.protocol.is_empty() || p.protocol.eq_ignore_ascii_case("tcp"))
            .filter_map(|p| u16::try_from(p.target_port).ok())
            .filter(|p| *p != 0)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceSpec {
    #[serde(default)]
    pub name: String,
    /// Service labels (`deploy.labels`): where every dialect's routing intent lives.
    #[serde(default, deserialize_with = "nullable")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "nullable")]
    pub endpoint_spec: EndpointSpec,
    /// Only the container labels are read: routing labels put there by mistake (a stack
    /// file's `labels:` instead of `deploy.labels:`) are reported, never used.
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "TaskTemplate::is_empty")]
    pub task_template: TaskTemplate,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TaskTemplate {
    #[serde(default, deserialize_with = "nullable")]
    pub container_spec: ContainerSpec,
}

impl TaskTemplate {
    fn is_empty(&self) -> bool {
        self.container_spec.labels.is_empty()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerSpec {
    /// Container labels (a stack file's service-level `labels:`).
    #[serde(default, deserialize_with = "nullable")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointSpec {
    #[serde(default)]
    pub mode: String,
    #[serde(default, deserialize_with = "nullable")]
    pub ports: Vec<PortConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceEndpoint {
    #[serde(default, deserialize_with = "nullable")]
    pub ports: Vec<PortConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PortConfig {
    #[serde(default)]
    pub protocol: String,
    #[serde(default)]
    pub target_port: u32,
    #[serde(default)]
    pub published_port: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateStatus {
    /// `updating`, `paused`, `completed`, `rollback_started`, …
    #[serde(default)]
    pub state: String,
}

/// One element of `GET /tasks`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Task {
    #[serde(rename = "ID", default)]
    pub id: String,
    #[serde(rename = "ServiceID", default)]
    pub service_id: String,
    /// Replicated tasks only: global tasks have slot 0, which the engine omits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<u64>,
    #[serde(rename = "NodeID", default)]
    pub node_id: String,
    /// Missing for a task the scheduler has not touched yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<TaskStatus>,
    #[serde(default)]
    pub desired_state: String,
    #[serde(default, deserialize_with = "nullable")]
    pub networks_attachments: Vec<NetworkAttachment>,
}

impl Task {
    /// Both the desired and the observed state are `running`: only then does it get traffic.
    /// A task desired `shutdown` is drained even while its container still runs.
    pub fn is_routable(&self) -> bool {
        self.desired_state == "running" && self.status.as_ref().is_some_and(|s| s.state == "running")
    }

    /// Observed state, or `""` when the engine gave none.
    pub fn state(&self) -> &str {
        self.status.as_ref().map(|s| s.state.as_str()).unwrap_or("")
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TaskStatus {
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub message: String,
}

/// A task's place on one network: the network and the task's address(es) on it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkAttachment {
    #[serde(default)]
    pub network: AttachedNetwork,
    /// CIDR strings, e.g. `10.0.1.3/24`.
    #[serde(default, deserialize_with = "nullable")]
    pub addresses: Vec<String>,
}

impl NetworkAttachment {
    /// The first address that parses, without its prefix length.
    pub fn ip(&self) -> Option<IpAddr> {
        self.addresses.iter().find_map(|a| parse_cidr_ip(a))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttachedNetwork {
    #[serde(rename = "ID", default)]
    pub id: String,
    #[serde(default, deserialize_with = "nullable")]
    pub spec: AttachedNetworkSpec,
}

impl AttachedNetwork {
    /// The routing-mesh network: never a way to reach a task directly.
    pub fn is_ingress(&self) -> bool {
        self.spec.ingress || self.spec.name == "ingress"
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttachedNetworkSpec {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub ingress: bool,
}

/// `10.0.1.3/24` → 10.0.1.3; a bare address is accepted too.
pub fn parse_cidr_ip(s: &str) -> Option<IpAddr> {
    let ip = s.split_once('/').map_or(s, |(ip, _)| ip);
    ip.trim().parse().ok()
}

/// One element of `GET /networks` (the list uses `Id`, inspect uses `ID` in some versions).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    #[serde(rename = "Id", alias = "ID", default)]
    pub id: String,
    #[serde(rename = "Name", default)]
    pub name: String,
    #[serde(rename = "Scope", default)]
    pub scope: String,
    #[serde(rename = "Ingress", default)]
    pub ingress: bool,
}

/// The parts of `GET /info` that say whether this node can serve discovery.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Info {
    #[serde(default, deserialize_with = "nullable")]
    pub swarm: SwarmInfo,
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SwarmInfo {
    #[serde(rename = "NodeID", default)]
    pub node_id: String,
    /// `""`, `inactive`, `pending`, `active`, `error`, `locked`.
    #[serde(default)]
    pub local_node_state: String,
    #[serde(default)]
    pub control_available: bool,
    #[serde(default)]
    pub error: String,
}

/// One line of `GET /events`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Event {
    #[serde(rename = "Type", default)]
    pub typ: String,
    #[serde(rename = "Action", default)]
    pub action: String,
    #[serde(rename = "Actor", default)]
    pub actor: EventActor,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct EventActor {
    #[serde(rename = "ID", default)]
    pub id: String,
    #[serde(rename = "Attributes", default, deserialize_with = "nullable")]
    pub attributes: BTreeMap<String, String>,
}

/// `GET /containers/{id}/json`, only the networks (to find the networks the proxy is on).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ContainerInspect {
    #[serde(rename = "Id", default)]
    pub id: String,
    #[serde(rename = "NetworkSettings", default, deserialize_with = "nullable")]
    pub network_settings: ContainerNetworkSettings,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ContainerNetworkSettings {
    /// Network name → endpoint settings.
    #[serde(rename = "Networks", default, deserialize_with = "nullable")]
    pub networks: BTreeMap<String, ContainerNetwork>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ContainerNetwork {
    #[serde(rename = "NetworkID", default)]
    pub network_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    const TASKS: &str = r#"[
      { "ID": "0kzzo1i0y4jz6027t0k7aezc7", "Version": {"Index": 40}, "ServiceID": "9mnpnzenvg8p8tdbtq4wvbkcz", "Slot": 1,
        "NodeID": "60gvrl6tm78dmak4yl7srz94v", "Labels": {},
        "Spec": {"ContainerSpec": {"Image": "shop/web:1.4"}, "ForceUpdate": 0},
        "Status": { "Timestamp": "2026-11-20T10:00:12Z", "State": "running", "Message": "started",
                    "ContainerStatus": { "ContainerID": "e5d62702a1b4", "PID": 677, "ExitCode": 0 }, "PortStatus": {} },
        "DesiredState": "running",
        "NetworksAttachments": [
          { "Network": { "ID": "ingressnetid00000000000000", "Version": {"Index": 6},
                         "Spec": { "Name": "ingress", "Labels": {"com.docker.swarm.internal": "true"}, "Ingress": true, "Scope": "swarm" },
                         "DriverState": {"Name": "overlay"}, "IPAMOptions": {"Configs": [{"Subnet": "10.0.0.0/24"}]} },
            "Addresses": [ "10.0.0.7/24" ] },
          { "Network": { "ID": "4qvuz4ko70xaltuqbt8956gd1", "Spec": { "Name": "shop_proxy", "Scope": "swarm" } },
            "Addresses": [ "10.0.1.3/24" ] } ] },
      { "ID": "globaltask1", "ServiceID": "glob", "NodeID": "node2",
        "Status": { "State": "starting", "Message": "starting" }, "DesiredState": "running",
        "NetworksAttachments": [
          { "Network": { "ID": "v6net", "Spec": { "Name": "v6" } }, "Addresses": [ "fd00:1::5/64" ] } ] },
      { "ID": "fresh", "ServiceID": "glob", "DesiredState": "running" },
      { "ID": "nullattach", "ServiceID": "glob", "DesiredState": "shutdown", "Status": {"State": "running"},
        "NetworksAttachments": null }
    ]"#;

    #[test]
    fn tasks_parse_with_attachments_cidr_and_missing_fields() {
        let tasks: Vec<Task> = serde_json::from_str(TASKS).unwrap();
        assert_eq!(tasks.len(), 4);
        let t = &tasks[0];
        assert_eq!(t.slot, Some(1));
        assert!(t.is_routable());
        assert_eq!(t.networks_attachments.len(), 2);
        assert!(t.networks_attachments[0].network.is_ingress());
        assert_eq!(t.networks_attachments[1].network.spec.name, "shop_proxy");
        assert_eq!(t.networks_attachments[1].ip(), Some("10.0.1.3".parse().unwrap()));
        // Global task: no Slot at all; starting is not routable; IPv6 CIDR parses.
        let g = &tasks[1];
        assert_eq!(g.slot, None);
        assert_eq!(g.node_id, "node2");
        assert!(!g.is_routable());
        assert_eq!(g.networks_attachments[0].ip(), Some("fd00:1::5".parse().unwrap()));
        // No Status at all: not routable, no panic.
        assert!(!tasks[2].is_routable());
        assert_eq!(tasks[2].state(), "");
        // Desired shutdown while still running: drained.
        assert!(!tasks[3].is_routable());
        assert!(tasks[3].networks_attachments.is_empty());
    }

    #[test]
    fn service_parses_labels_ports_and_update_state() {
        let json = r#"{
          "ID": "9mnpnzenvg8p8tdbtq4wvbkcz", "Version": { "Index": 19 },
          "CreatedAt": "2026-11-20T09:59:00Z",
          "Spec": { "Name": "shop_web",
            "Labels": { "com.docker.stack.namespace": "shop", "swarmgate.host": "shop.example.com" },
            "TaskTemplate": { "ContainerSpec": { "Image": "shop/web:1.4", "Labels": null },
                              "Networks": [ { "Target": "4qvuz4ko70xaltuqbt8956gd1", "Aliases": ["web"] } ] },
            "Mode": { "Replicated": { "Replicas": 2 } },
            "EndpointSpec": { "Mode": "vip", "Ports": [ {"Protocol": "tcp", "TargetPort": 8080, "PublishedPort": 80} ] } },
          "Endpoint": { "Spec": { "Mode": "vip" },
            "Ports": [ {"Protocol": "tcp", "TargetPort": 8080, "PublishedPort": 80, "PublishMode": "ingress"},
                       {"Protocol": "udp", "TargetPort": 53, "PublishedPort": 53} ],
            "VirtualIPs": [ { "NetworkID": "4qvuz4ko70xaltuqbt8956gd1", "Addr": "10.0.1.2/24" } ] },
          "UpdateStatus": { "State": "updating", "StartedAt": "2026-11-20T10:00:00Z", "Message": "update in progress" }
        }"#;
        let s: Service = serde_json::from_str(json).unwrap();
        assert_eq!(s.spec.name, "shop_web");
        assert_eq!(s.stack_namespace(), Some("shop"));
        assert_eq!(s.target_ports(), vec![8080]);
        assert!(s.is_updating());
        // A service never updated has no UpdateStatus and null labels are fine.
        let bare: Service =
            serde_json::from_str(r#"{"ID":"x","Spec":{"Name":"n","Labels":null},"Endpoint":{}}"#).unwrap();
        assert!(!bare.is_updating());
        assert!(bare.spec.labels.is_empty());
        assert!(bare.target_ports().is_empty());
    }

    #[test]
    fn info_networks_and_events_parse() {
        let info: Info = serde_json::from_str(
            r#"{"ID":"abc","Name":"node1","Swarm":{"NodeID":"n1","NodeAddr":"10.0.0.2","LocalNodeState":"active","ControlAvailable":true,"Error":"","RemoteManagers":null,"Nodes":1,"Managers":1,"Cluster":{"ID":"c"}}}"#,
        )
        .unwrap();
        assert_eq!(info.swarm.local_node_state, "active");
        assert!(info.swarm.control_available);
        let worker: Info =
            serde_json::from_str(r#"{"Swarm":{"LocalNodeState":"inactive","ControlAvailable":false}}"#).unwrap();
        assert!(!worker.swarm.control_available);
        let nets: Vec<Network> = serde_json::from_str(
            r#"[{"Name":"ingress","Id":"ing","Scope":"swarm","Driver":"overlay","Ingress":true,"Labels":null},{"Name":"bridge","Id":"br","Scope":"local"}]"#,
        )
        .unwrap();
        assert_eq!(nets[0].id, "ing");
        assert!(nets[0].ingress);
        let ev: Event = serde_json::from_str(
            r#"{"Type":"service","Action":"update","Actor":{"ID":"svc1","Attributes":{"name":"shop_web","updatestate.new":"updating"}},"scope":"swarm","time":1,"timeNano":1}"#,
        )
        .unwrap();
        assert_eq!(ev.typ, "service");
        assert_eq!(ev.actor.attributes["name"], "shop_web");
    }

    #[test]
    fn cidr_parsing() {
        assert_eq!(parse_cidr_ip("10.0.0.2/24"), Some("10.0.0.2".parse().unwrap()));
        assert_eq!(parse_cidr_ip("10.0.0.2"), Some("10.0.0.2".parse().unwrap()));
        assert_eq!(parse_cidr_ip("2001:db8::1/64"), Some("2001:db8::1".parse().unwrap()));
        assert_eq!(parse_cidr_ip("garbage/24"), None);
        assert_eq!(parse_cidr_ip(""), None);
    }
}
