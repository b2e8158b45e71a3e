//! The API's OpenAPI document, `GET /api/v1/openapi.json`, made from the handlers' own
//! `#[utoipa::path]` attributes and the wire types' schemas.
//!
//! Every route the router has is in it: a test walks the router and fails on a path or method
//! the document lacks. The probes and the page are described here, not at their handlers: the
//! probe router is shared with the agent, which serves no document.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use outflow_core::wire::routes;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi as Document;
use utoipa::{Modify, OpenApi};

/// The document's source: every path and the schemas they name.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "outflow controller API",
        description = "Pod egress health: agents post window reports, people and the CLI read \
            records, the flow health view and diagnoses, and run captures. Behind a token unless \
            the controller listens on loopback without one: `Authorization: Bearer TOKEN`, or \
            `X-Outflow-Token: TOKEN` through the Kubernetes API server's service proxy. Every \
            error is `{\"error\": \"...\"}`, a sentence saying what was wrong; a server fault is \
            a 500 of the same shape whose cause is in the controller's log.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        super::post_report,
        super::connections,
        super::dns,
        super::findings,
        super::health,
        super::cluster_profile,
        super::metrics,
        super::captures::list,
        super::captures::create,
        super::captures::one,
        super::captures::stop,
        super::captures::download,
        super::captures::upload,
        super::captures::result,
        super::captures::tasks,
        super::flow_view::matrix,
        super::flow_view::destinations,
        super::flow_view::diagnoses,
        page,
        healthz,
        readyz,
        openapi_json,
    ),
    modifiers(&Tokens, &FlattenedSpec),
    tags(
        (name = "agents", description = "What the agents send and poll"),
        (name = "records", description = "Connection, DNS and finding records"),
        (name = "health", description = "Nodes, the flow health view and diagnoses"),
        (name = "captures", description = "Packet captures on demand (DESIGN.md §4.4)"),
        (name = "controller", description = "The page, the probes, metrics and this document"),
    )
)]
struct ApiDoc;

/// The OpenAPI document of [`super::app`].
pub fn document() -> Document {
    ApiDoc::openapi()
}

/// `GET /api/v1/openapi.json`.
pub(super) async fn serve() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        // Made once per request: it is small, asked for rarely, and never out of date.
        document().to_json().unwrap_or_default(),
    )
        .into_response()
}

/// The two ways to send the token, and every path behind it marked as needing one.
struct Tokens;

impl Modify for Tokens {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "token_header",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new(
                outflow_core::wire::TOKEN_HEADER,
            ))),
        );
        // Open: the page (it holds no data), the probes and this document.
        let open = ["/", "/healthz", "/readyz", routes::OPENAPI];
        for (path, item) in doc.paths.paths.iter_mut() {
            if open.contains(&path.as_str()) {
                continue;
            }
            for op in operations(item) {
                op.security = Some(vec![
                    utoipa::openapi::security::SecurityRequirement::new(
                        "bearer",
                        Vec::<String>::new(),
                    ),
                    utoipa::openapi::security::SecurityRequirement::new(
                        "token_header",
                        Vec::<String>::new(),
                    ),
                ]);
            }
        }
    }
}

/// `CaptureInfo` flattens `CaptureSpec`, whose `deny_unknown_fields` utoipa turns into
/// `additionalProperties: false`: in the `allOf` that would forbid the info's own fields, and
/// every capture served would break its schema. The info refers instead to a copy that only
/// lists the request's fields; the request body stays strict, as the handler is.
struct FlattenedSpec;

impl Modify for FlattenedSpec {
    fn modify(&self, doc: &mut Document) {
        use utoipa::openapi::schema::Schema;
        use utoipa::openapi::RefOr;
        let Some(components) = doc.components.as_mut() else {
            return;
        };
        let Some(RefOr::T(Schema::Object(spec))) = components.schemas.get("CaptureSpec") else {
            return;
        };
        let mut fields = spec.clone();
        fields.additional_properties = None;
        components
            .schemas
            .insert("CaptureSpecFields".into(), RefOr::T(Schema::Object(fields)));
        if let Some(RefOr::T(Schema::AllOf(info))) = components.schemas.get_mut("CaptureInfo") {
            for item in &mut info.items {
                if let RefOr::Ref(r) = item {
                    if r.ref_location == "#/components/schemas/CaptureSpec" {
                        r.ref_location = "#/components/schemas/CaptureSpecFields".into();
                    }
                }
            }
        }
    }
}

/// A path's operations, whichever methods it has.
fn operations(
    item: &mut utoipa::openapi::PathItem,
) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

#[utoipa::path(get, path = "/", tag = "controller",
    summary = "The health view: one page whose script reads the API",
    responses((status = 200, content_type = "text/html", body = String)))]
#[allow(dead_code)]
fn page() {}

#[utoipa::path(get, path = "/healthz", tag = "controller",
    summary = "Liveness: 200 while the process serves",
    responses((status = 200, content_type = "text/plain", body = String)))]
#[allow(dead_code)]
fn healthz() {}

#[utoipa::path(get, path = "/readyz", tag = "controller",
    summary = "Readiness: 200 once the controller does its job",
    responses(
        (status = 200, content_type = "text/plain", body = String),
        (status = 503, description = "Not ready, and why", content_type = "text/plain", body = String),
    ))]
#[allow(dead_code)]
fn readyz() {}

#[utoipa::path(get, path = routes::OPENAPI, tag = "controller",
    summary = "This document (OpenAPI 3.1)",
    responses((status = 200, content_type = "application/json", body = Object)))]
#[allow(dead_code)]
fn openapi_json() {}

#[cfg(test)]
mod tests;
