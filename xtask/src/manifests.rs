//! `cargo xtask manifests`: renders deploy/ and every overlay, validates each render against the
//! Kubernetes versions AKS supports, and checks the privileges its workloads ask for.
//!
//! Rendering is `kubectl kustomize` (whichever kubectl is installed: Debian's 1.20 carries
//! kustomize v2.0.3, newer ones v5; the manifests keep to fields both know). Validation is
//! kubernetes-validate from PyPI, pinned, in strict mode (an unknown field is an error), from a
//! venv under `~/.local/share/outflow/venv` made on first use. The privilege check is here, on the
//! parsed render: no container privileged or able to escalate, every one dropping ALL and adding
//! only the agent's four capabilities, and the controller not root. Nothing is skipped: a tool
//! that cannot be installed fails the task.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_yaml_ng::Value;

/// kubernetes-validate, pinned: its schemas decide what "valid" means.
const KUBERNETES_VALIDATE: crate::venv::Tool = crate::venv::Tool {
    venv: "venv",
    pin: "kubernetes-validate==1.37.0",
    bin: "kubernetes-validate",
};

/// Kubernetes versions AKS supports (standard and LTS) that the pinned kubernetes-validate has
/// strict schemas for.
const KUBERNETES_VERSIONS: &[&str] = &["1.30.0", "1.31.0", "1.32.0", "1.33.0", "1.34.0", "1.35.0"];

/// The capabilities a container may add: the agent's, each justified in deploy/base/agent.yaml.
/// The image's least-privilege test grants the same four.
pub const ALLOWED_CAPABILITIES: &[&str] = &["BPF", "PERFMON", "NET_ADMIN", "NET_RAW"];

/// The workloads every render must hold, so the check cannot pass on a render that lost them.
const AGENT: (&str, &str) = ("DaemonSet", "outflow-agent");
const CONTROLLER: (&str, &str) = ("Deployment", "outflow-controller");

/// What a container or workload does that the deployment must not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// `securityContext.privileged: true`.
    Privileged,
    /// `allowPrivilegeEscalation` missing or not false.
    PrivilegeEscalation,
    /// A capability added outside [`ALLOWED_CAPABILITIES`].
    Capability(String),
    /// `capabilities.drop` without `ALL`.
    NoDropAll,
    /// The controller may run as root: `runAsUser` 0 or unset, or `runAsNonRoot` not true.
    ControllerRoot,
    /// The node's PID or IPC namespace shared with the pod.
    HostNamespace(&'static str),
    /// The render lacks a workload it must hold.
    Missing,
}

/// One broken rule, with the object (`Kind/name`) and the container it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// `Kind/name` of the object.
    pub object: String,
    /// The container, when the rule is about one.
    pub container: Option<String>,
    /// The rule broken.
    pub rule: Rule,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.object)?;
        if let Some(c) = &self.container {
            write!(f, " container {c}")?;
        }
        let allowed = ALLOWED_CAPABILITIES.join(", ");
        match &self.rule {
            Rule::Privileged => write!(f, ": privileged; grant capabilities instead"),
            Rule::PrivilegeEscalation => write!(f, ": set allowPrivilegeEscalation: false"),
            Rule::Capability(c) => write!(f, ": adds {c}; only {allowed} are allowed"),
            Rule::NoDropAll => write!(f, ": capabilities must drop [ALL]"),
            Rule::ControllerRoot => write!(
                f,
                ": may run as root; set runAsNonRoot: true and a non-zero runAsUser"
            ),
            Rule::HostNamespace(k) => write!(f, ": shares the node's namespace ({k}: true)"),
            Rule::Missing => write!(f, ": missing from the render"),
        }
    }
}

/// Renders, checks and validates deploy/ and each overlay.
pub fn run() -> Result<()> {
    let root = crate::root_dir();
    let kubectl = ensure_kubectl()?;
    let validate = crate::venv::ensure(&KUBERNETES_VALIDATE)?;
    let out = root.join("target/manifests");
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let mut files = Vec::new();
    for dir in kustomizations(&root.join("deploy"))? {
        let name = dir
            .strip_prefix(&root)
            .unwrap_or(&dir)
            .display()
            .to_string();
        let render = render(&kubectl, &dir)?;
        let violations = check(&render).with_context(|| format!("parsing the render of {name}"))?;
        if !violations.is_empty() {
            let list: Vec<String> = violations.iter().map(|v| format!("  {v}")).collect();
            bail!("{name} breaks the privilege rules:\n{}", list.join("\n"));
        }
        let file = out.join(format!("{}.yaml", name.replace('/', "-")));
        std::fs::write(&file, &render).with_context(|| format!("writing {}", file.display()))?;
        println!("manifests {name}: rendered, privileges within the rules");
        files.push(file);
    }
    for version in KUBERNETES_VERSIONS {
        crate::run(
            Command::new(&validate)
                .args(["--strict", "--quiet", "--kubernetes-version", version])
                .args(&files),
        )
        .with_context(|| format!("the renders are not valid for Kubernetes {version}"))?;
        println!("manifests: every render valid for Kubernetes {version} (strict)");
    }
    Ok(())
}

/// `deploy` itself and each overlay under it that holds a kustomization, in name order.
fn kustomizations(deploy: &Path) -> Result<Vec<PathBuf>> {
    let mut dirs = vec![deploy.to_path_buf()];
    let overlays = deploy.join("overlays");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&overlays)
        .with_context(|| format!("reading {}", overlays.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    found.retain(|d| d.join("kustomization.yaml").is_file());
    found.sort();
    if found.is_empty() {
        bail!("no overlays in {}", overlays.display());
    }
    dirs.extend(found);
    Ok(dirs)
}

/// `kubectl kustomize DIR`. Its stderr (kustomize v5 warns of `bases` and `patchesJson6902`,
/// which v2.0.3 needs) is shown only when it fails.
fn render(kubectl: &str, dir: &Path) -> Result<String> {
    let out = Command::new(kubectl)
        .arg("kustomize")
        .arg(dir)
        .output()
        .with_context(|| format!("starting {kubectl} kustomize"))?;
    if !out.status.success() {
        bail!(
            "kubectl kustomize {} failed: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8(out.stdout).context("kubectl kustomize printed something not UTF-8")
}

/// kubectl from the PATH; on a machine without one, Debian's kubernetes-client.
fn ensure_kubectl() -> Result<String> {
    let works = |k: &str| {
        Command::new(k)
            .args(["version", "--client"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !works("kubectl") {
        eprintln!("installing kubernetes-client (kubectl with kustomize)");
        crate::install_packages(&["kubernetes-client"])?;
        if !works("kubectl") {
            bail!("kubectl is still missing after installing kubernetes-client");
        }
    }
    Ok("kubectl".into())
}

/// Every broken rule in a multi-document render.
pub fn check(render: &str) -> Result<Vec<Violation>> {
    let mut violations = Vec::new();
    let mut seen = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(render) {
        let doc = Value::deserialize(document)?;
        if doc.is_null() {
            continue;
        }
        let kind = str_at(&doc, &["kind"]).unwrap_or("?");
        let name = str_at(&doc, &["metadata", "name"]).unwrap_or("?");
        let Some(pod) = pod_spec(&doc, kind) else {
            continue;
        };
        seen.push((kind.to_string(), name.to_string()));
        let object = format!("{kind}/{name}");
        check_pod(&object, pod, (kind, name) == CONTROLLER, &mut violations);
    }
    for (kind, name) in [AGENT, CONTROLLER] {
        if !seen.iter().any(|(k, n)| k == kind && n == name) {
            violations.push(Violation {
                object: format!("{kind}/{name}"),
                container: None,
                rule: Rule::Missing,
            });
        }
    }
    Ok(violations)
}

/// The pod spec inside a workload of `kind`, if it is one.
fn pod_spec<'a>(doc: &'a Value, kind: &str) -> Option<&'a Value> {
    let path: &[&str] = match kind {
        "Pod" => &["spec"],
        "CronJob" => &["spec", "jobTemplate", "spec", "template", "spec"],
        "DaemonSet"
        | "Deployment"
        | "StatefulSet"
        | "ReplicaSet"
        | "Job"
        | "ReplicationController" => &["spec", "template", "spec"],
        _ => return None,
    };
    at(doc, path)
}

fn check_pod(object: &str, pod: &Value, is_controller: bool, out: &mut Vec<Violation>) {
    let mut push = |container: Option<&str>, rule| {
        out.push(Violation {
            object: object.into(),
            container: container.map(Into::into),
            rule,
        })
    };
    for key in ["hostPID", "hostIPC"] {
        if at(pod, &[key]).and_then(Value::as_bool) == Some(true) {
            push(None, Rule::HostNamespace(key));
        }
    }
    let pod_security = at(pod, &["securityContext"]);
    let containers = ["initContainers", "containers", "ephemeralContainers"]
        .into_iter()
        .filter_map(|k| at(pod, &[k]).and_then(Value::as_sequence))
        .flatten();
    for c in containers {
        let name = str_at(c, &["name"]);
        let sc = at(c, &["securityContext"]);
        let sc_bool = |k: &str| sc.and_then(|s| at(s, &[k])).and_then(Value::as_bool);
        if sc_bool("privileged") == Some(true) {
            push(name, Rule::Privileged);
        }
        if sc_bool("allowPrivilegeEscalation") != Some(false) {
            push(name, Rule::PrivilegeEscalation);
        }
        let caps = |k: &str| -> Vec<String> {
            sc.and_then(|s| at(s, &["capabilities", k]))
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(capability_name)
                .collect()
        };
        if !caps("drop").iter().any(|c| c == "ALL") {
            push(name, Rule::NoDropAll);
        }
        for cap in caps("add") {
            if !ALLOWED_CAPABILITIES.contains(&cap.as_str()) {
                push(name, Rule::Capability(cap));
            }
        }
        if is_controller {
            // The container's setting wins over the pod's, as the kubelet applies them.
            let effective = |k: &str| {
                sc.and_then(|s| at(s, &[k]))
                    .or_else(|| pod_security.and_then(|s| at(s, &[k])))
            };
            let user = effective("runAsUser").and_then(Value::as_u64);
            let non_root = effective("runAsNonRoot").and_then(Value::as_bool);
            if !matches!(user, Some(u) if u != 0) || non_root != Some(true) {
                push(name, Rule::ControllerRoot);
            }
        }
    }
}

/// `CAP_NET_RAW`, `net_raw` and `NET_RAW` alike, as container runtimes take them.
fn capability_name(c: &str) -> String {
    let upper = c.to_ascii_uppercase();
    upper.strip_prefix("CAP_").unwrap_or(&upper).to_string()
}

fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(v, path).and_then(Value::as_str)
}

#[cfg(test)]
mod tests;
