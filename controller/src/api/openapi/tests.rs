//! The document against the router it describes: every route and method of the one is in the
//! other, every reference resolves, and it reads as OpenAPI 3.1.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::super::tests::state;
use super::super::{app, document};

/// `(METHOD, /path)` of every operation in the document.
fn documented() -> BTreeSet<(String, String)> {
    let doc = serde_json::to_value(document()).expect("the document serialises");
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("a path item").keys() {
            ops.insert((method.to_uppercase(), path.clone()));
        }
    }
    ops
}

/// The router's paths, as axum lists them in its `Debug` output (it offers no other way to
/// list them): every string in it that starts with `/`, less axum's own.
fn router_paths() -> BTreeSet<String> {
    let text = format!("{:?}", app(state()));
    let paths: BTreeSet<String> = text
        .split('"')
        .filter(|s| s.starts_with('/'))
        // axum's own catch-all for the fallback, no route of ours.
        .filter(|s| !s.contains("__private__axum"))
        .map(str::to_string)
        .collect();
    // If axum's `Debug` ever stops naming paths, fail here rather than compare nothing.
    for known in [
        outflow_core::wire::routes::REPORTS,
        outflow_core::wire::routes::OPENAPI,
        "/api/v1/captures/{id}/pcapng",
        "/healthz",
        "/",
    ] {
        assert!(
            paths.contains(known),
            "{known} not found in the router: {text}"
        );
    }
    paths
}

/// The methods the router takes on `path`: what its `405 Method Not Allowed` lists in `Allow`
/// for a method no route has.
async fn router_methods(path: &str) -> Vec<String> {
    let uri = path.replace("{id}", "1");
    let resp = app(state())
        .oneshot(
            Request::builder()
                .method(Method::from_bytes(b"PROBE").expect("a method name"))
                .uri(&uri)
                .body(Body::empty())
                .expect("a request"),
        )
        .await
        .expect("the router answers");
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED, "{uri}");
    let allow = resp
        .headers()
        .get("allow")
        .unwrap_or_else(|| panic!("{uri}: a 405 without Allow"))
        .to_str()
        .expect("ASCII");
    allow
        .split(',')
        .map(|m| m.trim().to_string())
        // axum answers HEAD wherever it answers GET.
        .filter(|m| m != "HEAD")
        .collect()
}

#[tokio::test]
async fn every_route_the_router_has_is_documented_and_nothing_else() {
    let mut served = BTreeSet::new();
    for path in router_paths() {
        let methods = router_methods(&path).await;
        assert!(!methods.is_empty(), "{path}: no method");
        for m in methods {
            served.insert((m, path.clone()));
        }
    }
    let documented = documented();
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty(),
        "routes without a #[utoipa::path] in the document (api/openapi.rs): {undocumented:?}"
    );
    assert!(unserved.is_empty(), "documented, not served: {unserved:?}");
}

#[test]
fn document_is_openapi_3_and_every_reference_resolves() {
    let json = document().to_json().expect("the document serialises");
    let spec = oas3::from_json(&json).expect("the document reads as OpenAPI 3.1");
    assert!(spec.openapi.starts_with("3."), "{}", spec.openapi);
    let doc: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(
        !refs.is_empty(),
        "no schema is referenced: the types are all inline?"
    );
    for r in refs {
        let pointer = r.strip_prefix('#').expect("a local reference");
        assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
    }
    for name in [
        "NodeReport",
        "ErrorBody",
        "FlowView",
        "Diagnoses",
        "CaptureInfo",
    ] {
        assert!(
            doc.pointer(&format!("/components/schemas/{name}"))
                .is_some(),
            "{name} missing from the components"
        );
    }
}

fn collect_refs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", serde_json::Value::String(r)) => out.push(r.clone()),
                    _ => collect_refs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// Regression: a capture as served (its request's fields beside its own) fits the schema the
/// document gives it, which a flattened strict `CaptureSpec` forbade.
#[test]
fn capture_info_allows_the_fields_of_its_flattened_request() {
    let doc = serde_json::to_value(document()).expect("JSON");
    let info = &doc["components"]["schemas"]["CaptureInfo"];
    let refs: Vec<&str> = info["allOf"]
        .as_array()
        .expect("CaptureInfo is an allOf of its request and its own fields")
        .iter()
        .filter_map(|i| i["$ref"].as_str())
        .collect();
    assert_eq!(refs, ["#/components/schemas/CaptureSpecFields"]);
    let fields = &doc["components"]["schemas"]["CaptureSpecFields"];
    assert!(fields["properties"]["filter"].is_object(), "{fields}");
    assert!(fields.get("additionalProperties").is_none(), "{fields}");
    // The request body stays as strict as the handler.
    assert_eq!(
        doc["components"]["schemas"]["CaptureSpec"]["additionalProperties"],
        serde_json::Value::Bool(false)
    );
}

#[tokio::test]
async fn the_document_is_served_open_at_its_route() {
    let resp = app(state().with_token(Some("secret".into())))
        .oneshot(
            Request::builder()
                .uri(outflow_core::wire::routes::OPENAPI)
                .body(Body::empty())
                .expect("a request"),
        )
        .await
        .expect("the router answers");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body = resp.into_body().collect().await.expect("a body").to_bytes();
    let served: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(served, serde_json::to_value(document()).expect("JSON"));
}
