//! The privilege checker on a fixture broken one rule at a time, and on the real renders.

use super::{check, Rule, Violation};

const GOOD: &str = include_str!("../../tests/fixtures/workloads.yaml");

/// The fixture with `from` replaced by `to` once; fails if `from` is not there, so a test cannot
/// pass by checking the unbroken fixture.
fn broken(from: &str, to: &str) -> String {
    assert_eq!(
        GOOD.matches(from).count(),
        1,
        "{from:?} must occur once in the fixture"
    );
    GOOD.replacen(from, to, 1)
}

fn rules(render: &str) -> Vec<(String, Option<String>, Rule)> {
    check(render)
        .expect("the fixture parses")
        .into_iter()
        .map(
            |Violation {
                 object,
                 container,
                 rule,
             }| (object, container, rule),
        )
        .collect()
}

fn agent(rule: Rule) -> (String, Option<String>, Rule) {
    ("DaemonSet/outflow-agent".into(), Some("agent".into()), rule)
}

fn controller(rule: Rule) -> (String, Option<String>, Rule) {
    (
        "Deployment/outflow-controller".into(),
        Some("controller".into()),
        rule,
    )
}

#[test]
fn fixture_keeping_every_rule_passes() {
    assert_eq!(rules(GOOD), vec![]);
}

#[test]
fn privileged_container_fails() {
    let r = broken(
        "runAsUser: 0\n",
        "runAsUser: 0\n            privileged: true\n",
    );
    assert_eq!(rules(&r), vec![agent(Rule::Privileged)]);
}

#[test]
fn agent_that_may_escalate_fails_whether_true_or_unset() {
    let agent_escalation = "allowPrivilegeEscalation: false\n            runAsUser: 0";
    let r = broken(
        agent_escalation,
        "allowPrivilegeEscalation: true\n            runAsUser: 0",
    );
    assert_eq!(rules(&r), vec![agent(Rule::PrivilegeEscalation)]);
    let r = broken(agent_escalation, "runAsUser: 0");
    assert_eq!(rules(&r), vec![agent(Rule::PrivilegeEscalation)]);
}

#[test]
fn capability_outside_the_four_fails_in_any_spelling() {
    let r = broken("NET_RAW]", "NET_RAW, SYS_ADMIN]");
    assert_eq!(rules(&r), vec![agent(Rule::Capability("SYS_ADMIN".into()))]);
    let r = broken("NET_RAW]", "NET_RAW, cap_sys_ptrace]");
    assert_eq!(
        rules(&r),
        vec![agent(Rule::Capability("SYS_PTRACE".into()))]
    );
    // A capability of the four in the runtime's spelling is still one of the four.
    let r = broken("add: [BPF,", "add: [CAP_BPF,");
    assert_eq!(rules(&r), vec![]);
}

#[test]
fn container_not_dropping_all_fails() {
    let r = broken(
        "drop: [ALL]\n              add",
        "drop: [NET_BIND_SERVICE]\n              add",
    );
    assert_eq!(rules(&r), vec![agent(Rule::NoDropAll)]);
    let r = broken(
        "allowPrivilegeEscalation: false\n            capabilities:\n              drop: [ALL]\n",
        "allowPrivilegeEscalation: false\n",
    );
    assert_eq!(rules(&r), vec![controller(Rule::NoDropAll)]);
}

#[test]
fn controller_as_root_fails() {
    let r = broken("runAsUser: 65532", "runAsUser: 0");
    assert_eq!(rules(&r), vec![controller(Rule::ControllerRoot)]);
    let r = broken("runAsNonRoot: true\n", "");
    assert_eq!(rules(&r), vec![controller(Rule::ControllerRoot)]);
    // The container's user wins over the pod's.
    let r = broken(
        "          securityContext:\n            allowPrivilegeEscalation: false\n            capabilities:",
        "          securityContext:\n            runAsUser: 0\n            allowPrivilegeEscalation: false\n            capabilities:",
    );
    assert_eq!(rules(&r), vec![controller(Rule::ControllerRoot)]);
}

#[test]
fn host_pid_fails() {
    let r = broken(
        "hostNetwork: true",
        "hostNetwork: true\n      hostPID: true",
    );
    assert_eq!(
        rules(&r),
        vec![(
            "DaemonSet/outflow-agent".into(),
            None,
            Rule::HostNamespace("hostPID")
        )]
    );
}

#[test]
fn render_without_the_agent_fails() {
    let r = broken("name: outflow-agent", "name: something-else");
    assert_eq!(
        rules(&r),
        vec![("DaemonSet/outflow-agent".into(), None, Rule::Missing)]
    );
}

/// The real renders pass: deploy/ and every overlay, through the kubectl on this machine.
#[test]
fn every_real_render_passes() {
    let root = crate::root_dir();
    let kubectl = super::ensure_kubectl();
    let have = kubectl.is_ok();
    if !outflow_tests::required(
        "every_real_render_passes",
        "kubectl (cargo xtask setup)",
        have,
    ) {
        return;
    }
    let kubectl = kubectl.expect("checked above");
    let dirs = super::kustomizations(&root.join("deploy")).expect("deploy/ and its overlays");
    assert!(dirs.len() >= 4, "deploy/ and three overlays: {dirs:?}");
    for dir in dirs {
        let render = super::render(&kubectl, &dir).expect("renders");
        assert_eq!(check(&render).expect("parses"), vec![], "{}", dir.display());
        assert!(render.contains("kind: DaemonSet"), "{}", dir.display());
    }
}
