//! What each diagnosis says: its sentence, where the fault is, and the next checks, in the
//! order an engineer on call would run them. Azure's names (168.63.129.16, NSG, SNAT) are said
//! where the evidence points at Azure, not everywhere.

use std::collections::BTreeSet;

use outflow_core::category::{Category, AZURE_WIRESERVER};
use outflow_core::wire::diagnosis::DiagnosisKind;
use outflow_core::Outcome;

use crate::{Example, ExampleRecord, Fact, Input};

/// A diagnosis's words.
pub(crate) struct Words {
    pub summary: String,
    pub fault: String,
    pub next_checks: Vec<String>,
}

/// `a`, `a and b`, `a, b, c and 4 more`.
fn list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let items: Vec<&str> = items.into_iter().collect();
    match items.len() {
        0 => String::new(),
        1 => items[0].to_string(),
        2 | 3 => format!(
            "{} and {}",
            items[..items.len() - 1].join(", "),
            items[items.len() - 1]
        ),
        n => format!("{} and {} more", items[..3].join(", "), n - 3),
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

fn namespaces<'a>(facts: &[&'a Fact]) -> BTreeSet<&'a str> {
    facts
        .iter()
        .filter(|f| f.failed())
        .map(|f| f.namespace.as_str())
        .collect()
}

fn failed(facts: &[&Fact]) -> u64 {
    facts.iter().filter(|f| f.failed()).map(|f| f.count).sum()
}

fn total(facts: &[&Fact]) -> u64 {
    facts
        .iter()
        .filter(|f| f.failed() || f.succeeded())
        .map(|f| f.count)
        .sum()
}

/// The words of a DNS diagnosis.
pub(crate) fn dns(
    kind: DiagnosisKind,
    names: &BTreeSet<&str>,
    servers: &[String],
    facts: &[&Fact],
) -> Words {
    let who = list(namespaces(facts));
    let some = list(names.iter().copied());
    let first = names.first().copied().unwrap_or("NAME");
    let addresses = list(servers.iter().map(String::as_str));
    let via = if servers.is_empty() {
        "the upstream resolver".to_string()
    } else {
        format!("the upstream resolver {addresses}")
    };
    let upstream = servers.first().map(String::as_str).unwrap_or("UPSTREAM");
    let azure = servers.iter().any(|s| s == &AZURE_WIRESERVER.to_string());
    let (f, n) = (failed(facts), total(facts));
    match kind {
        DiagnosisKind::DnsCluster => Words {
            summary: format!(
                "DNS lookups from {who} fail at the cluster DNS: {f} of {n} lookups of {some} \
                 got no usable answer"
            ),
            fault: format!(
                "the cluster DNS ({}): CoreDNS or the node-local DNS cache is down or overloaded, \
                 or the path from the pods to it is cut",
                if servers.is_empty() {
                    "its Service".to_string()
                } else {
                    addresses
                }
            ),
            next_checks: vec![
                "kubectl -n kube-system get pods -l k8s-app=kube-dns -o wide: are the CoreDNS \
                 pods running and ready?"
                    .into(),
                "kubectl -n kube-system logs -l k8s-app=kube-dns --tail=100".into(),
                format!(
                    "from a debug pod: nslookup {first} {}",
                    servers.first().map(String::as_str).unwrap_or("KUBE-DNS-IP")
                ),
                "kubectl -n kube-system top pods -l k8s-app=kube-dns: CPU at its limit means \
                 overload (scale CoreDNS, or add node-local DNS)"
                    .into(),
            ],
        },
        DiagnosisKind::DnsUpstreamDown => Words {
            summary: format!(
                "The cluster DNS's queries to {via} go unanswered, so {f} lookups of {some} fail \
                 for {who}"
            ),
            fault: if azure {
                "Azure DNS (168.63.129.16) as reached from the cluster DNS's node: a route, NSG \
                 or firewall rule blocks it"
                    .to_string()
            } else {
                format!(
                    "{via} (the VNet's custom DNS servers, or CoreDNS's forward target): down, \
                     or not reachable from the cluster's subnet"
                )
            },
            next_checks: vec![
                format!(
                    "from the node: kubectl debug node/NODE -it --image=busybox -- nslookup \
                     {first} {upstream}"
                ),
                if azure {
                    "168.63.129.16 must stay reachable from every node: check user-defined \
                     routes and NSG or firewall rules that send or block it"
                        .into()
                } else {
                    format!(
                        "{upstream} must answer UDP and TCP 53 from the cluster's subnet: check \
                         that it runs, and NSG and firewall rules on the way"
                    )
                },
                "kubectl -n kube-system get configmap coredns -o yaml: the forward plugin's \
                 target"
                    .into(),
            ],
        },
        DiagnosisKind::DnsUpstreamError => Words {
            summary: format!(
                "The cluster DNS passes on error answers (SERVFAIL or REFUSED) from {via} for \
                 {some}, so {f} lookups fail for {who}"
            ),
            fault: format!(
                "{via}: it cannot resolve these names (a broken forwarder or conditional \
                 forwarder, DNSSEC, or a zone it refuses)"
            ),
            next_checks: vec![
                format!("from the node: nslookup {first} {upstream}, and read the answer's code"),
                "the upstream's forwarders and conditional forwarders for the zone".into(),
                "for *.privatelink.* names: the private DNS zone and its link to the cluster's \
                 VNet"
                    .into(),
            ],
        },
        _ => Words {
            summary: format!(
                "{some} does not exist: {f} lookups from {who} got NXDOMAIN after every search \
                 expansion"
            ),
            fault: "the name: a typo in the application's configuration, a record not created \
                    yet, or a private DNS zone not linked to the cluster's VNet"
                .into(),
            next_checks: vec![
                format!(
                    "nslookup {first} from a debug pod and from the node: NXDOMAIN from both \
                     means the name does not exist"
                ),
                "the host name in the application's configuration".into(),
                "for *.privatelink.* names: the private DNS zone exists and is linked to the \
                 cluster's VNet"
                    .into(),
            ],
        },
    }
}

/// The words of an egress diagnosis.
pub(crate) fn egress(
    egress: Option<&str>,
    nodes: usize,
    destinations: &BTreeSet<&str>,
    facts: &[&Fact],
) -> Words {
    let (f, n) = (failed(facts), total(facts));
    let device = match egress {
        Some("loadBalancer") => "the load balancer's outbound SNAT (outbound rules, SNAT ports)",
        Some("natGateway") => {
            "the NAT gateway (its public IPs, its SNAT ports, its subnet association)"
        }
        Some("userDefinedRouting") | Some("firewall") => {
            "the firewall the route table sends 0.0.0.0/0 to (its rules, its health)"
        }
        Some("proxy") => "the HTTP proxy the pods go through",
        _ => "the egress path (load balancer, NAT gateway, firewall or proxy)",
    };
    let example = destinations.first().copied().unwrap_or("HOST:443");
    let mut next_checks = vec![format!(
        "from a debug pod and from a node: curl -v telnet://{example}"
    )];
    next_checks.push(match egress {
        Some("loadBalancer") => "az network lb outbound-rule list, and the load balancer's SNAT \
                                 connection metrics: failed SNAT connections mean port \
                                 exhaustion"
            .into(),
        Some("natGateway") => "the NAT gateway's SNAT connection metrics and its subnet \
                               association"
            .into(),
        Some("userDefinedRouting") | Some("firewall") => "the firewall's logs for the node \
                                                           subnet's traffic, and its network \
                                                           and application rules"
            .into(),
        Some("proxy") => format!("curl -I -x PROXY https://{example}: the proxy's status"),
        _ => "the route table of the node subnet and what its default route points at".into(),
    });
    Words {
        summary: format!(
            "Public destinations fail from every node ({}): {f} of {n} attempts to {} failed",
            plural(nodes, "node", "nodes"),
            list(destinations.iter().copied())
        ),
        fault: device.to_string(),
        next_checks,
    }
}

/// The words of a node diagnosis.
pub(crate) fn node(node: &str, category: Category, working: &[&str], facts: &[&Fact]) -> Words {
    let (f, n) = (failed(facts), total(facts));
    let c = category.as_str();
    Words {
        summary: format!(
            "Node {node} fails to reach {c} destinations ({f} of {n} attempts) while {} reach \
             them",
            list(working.iter().copied())
        ),
        fault: format!(
            "node {node}: its NIC's network security group, its SNAT ports, its routes or its \
             iptables rules"
        ),
        next_checks: vec![
            format!(
                "kubectl debug node/{node} -it --image=busybox: curl -v telnet://HOST:PORT from \
                 there and from a working node"
            ),
            format!("the NSG rules on {node}'s network interface and subnet"),
            format!("on {node}: iptables-save | grep -i -e drop -e reject, and conntrack -S"),
        ],
    }
}

/// The words of a network-policy diagnosis.
pub(crate) fn policy(
    ns: &str,
    dests: &BTreeSet<&str>,
    working: &BTreeSet<&str>,
    facts: &[&Fact],
) -> Words {
    let (f, n) = (failed(facts), total(facts));
    Words {
        summary: format!(
            "Pods in {ns} fail to reach {} ({f} of {n} attempts) that {} reach",
            list(dests.iter().copied()),
            list(working.iter().copied())
        ),
        fault: format!(
            "a rule that applies to {ns} alone: a NetworkPolicy (egress), or a rule on the node \
             for its pods' addresses"
        ),
        next_checks: vec![
            format!(
                "kubectl -n {ns} get networkpolicy -o yaml: an egress rule that leaves these out"
            ),
            "cluster-wide policies of the network plugin (Calico GlobalNetworkPolicy, Cilium \
             ClusterwideNetworkPolicy)"
                .into(),
            "on the node: iptables-save | grep -i -e drop -e reject for the pods' addresses".into(),
        ],
    }
}

/// ICMP errors seen for a destination: their codes and who sent them.
pub(crate) struct Icmp {
    pub codes: Vec<String>,
    pub from: Vec<String>,
}

/// The ICMP errors in the examples of `dest`.
pub(crate) fn icmp_of(input: &Input, dest: &str) -> Icmp {
    let (mut codes, mut from) = (BTreeSet::new(), BTreeSet::new());
    for e in input.examples.iter().filter(|e| e.destination == dest) {
        if let ExampleRecord::Connection(c) = &e.record {
            codes.extend(c.record.unreachable_codes.keys().cloned());
            from.extend(c.record.icmp_from.iter().map(|a| a.to_string()));
        }
    }
    Icmp {
        codes: codes.into_iter().collect(),
        from: from.into_iter().collect(),
    }
}

/// `host:port` to try, from a destination as the view names it.
fn target(dest: &str) -> String {
    match dest.split_once(", port ") {
        // `service shop/web, port 80`: the Service's DNS name.
        Some((who, port)) => match who.split_once(' ') {
            Some(("service", ns_name)) => match ns_name.split_once('/') {
                Some((ns, name)) => format!("{name}.{ns}.svc:{port}"),
                None => format!("{ns_name}:{port}"),
            },
            _ => format!("ADDRESS:{port}"),
        },
        None => dest.to_string(),
    }
}

/// The words of a destination diagnosis.
pub(crate) fn destination(
    dest: &str,
    category: Category,
    worst: Outcome,
    icmp: &Icmp,
    (failed, total): (u64, u64),
    others_work: bool,
    facts: &[&Fact],
) -> Words {
    let who = list(namespaces(facts));
    let c = category.as_str();
    let t = target(dest);
    let (how, fault, check) = match worst {
        Outcome::Refused => (
            "is refused (RST)".to_string(),
            format!(
                "{dest} itself: nothing listens on the port, or a firewall in front of it \
                 rejects with RST"
            ),
            format!("is the service behind {dest} running and listening on that port?"),
        ),
        Outcome::Unreachable => (
            format!(
                "is rejected with ICMP {}{}",
                if icmp.codes.is_empty() {
                    "unreachable".into()
                } else {
                    list(icmp.codes.iter().map(String::as_str))
                },
                if icmp.from.is_empty() {
                    String::new()
                } else {
                    format!(" from {}", list(icmp.from.iter().map(String::as_str)))
                }
            ),
            format!(
                "the router or firewall that sends the ICMP error{}: a rule or a missing route \
                 for {dest}",
                if icmp.from.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", list(icmp.from.iter().map(String::as_str)))
                }
            ),
            "the rules and routes of the device that sent the ICMP error".to_string(),
        ),
        _ => (
            "goes unanswered (SYNs time out)".to_string(),
            format!(
                "the path to {dest}: a firewall, NSG or proxy rule that drops it, or {dest} is \
                 down"
            ),
            format!(
                "if {c} traffic leaves through a firewall or proxy: its logs and rules for {dest}"
            ),
        ),
    };
    Words {
        summary: format!(
            "{dest} ({c}) {how} for {who}: {failed} of {total} attempts failed{}",
            if others_work {
                format!(", while other {c} destinations work")
            } else {
                format!("; no other {c} destination was reached to compare")
            }
        ),
        fault,
        next_checks: vec![format!("from a debug pod: curl -v telnet://{t}"), check],
    }
}

/// A tcpdump filter for the traffic of a record.
pub(crate) fn capture_filter(r: &ExampleRecord) -> Option<String> {
    match r {
        ExampleRecord::Connection(c) => Some(format!(
            "host {} and {} port {}",
            c.record.dst, c.record.proto, c.record.dst_port
        )),
        ExampleRecord::Dns(_) => Some("port 53".into()),
        ExampleRecord::Finding(_) => None,
    }
}

/// One line for an example record.
pub(crate) fn example_line(e: &Example) -> String {
    let who = if e.pod.is_empty() {
        format!("{}/{}", e.namespace, e.workload)
    } else {
        e.pod.clone()
    };
    let outcomes = |m: Vec<(&str, u64)>| {
        m.into_iter()
            .map(|(o, n)| format!("{o} ×{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match &e.record {
        ExampleRecord::Connection(c) => {
            let r = &c.record;
            let mut line = format!(
                "{who} on {}: {} → {}:{} {}: {}",
                e.node,
                r.src,
                r.dst,
                r.dst_port,
                r.proto,
                outcomes(r.outcomes.iter().map(|(o, n)| (o.as_str(), *n)).collect())
            );
            if !r.unreachable_codes.is_empty() {
                let codes: Vec<&str> = r.unreachable_codes.keys().map(String::as_str).collect();
                line.push_str(&format!(" (ICMP {})", list(codes)));
            }
            line
        }
        ExampleRecord::Dns(d) => {
            let r = &d.record;
            let servers: Vec<String> = r.servers.iter().map(|s| s.to_string()).collect();
            format!(
                "{who} on {}: {} {} via {}: {}",
                e.node,
                r.name,
                r.qtype,
                list(servers.iter().map(String::as_str)),
                outcomes(r.outcomes.iter().map(|(o, n)| (o.as_str(), *n)).collect())
            )
        }
        ExampleRecord::Finding(f) => format!("{who} on {}: {}", e.node, f.record.message),
    }
}
