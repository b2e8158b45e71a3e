//! The view's endpoints called in-process: a posted report is in the matrix and its cell, and
//! bad parameters are a 400 that says what was wrong.

use axum::http::StatusCode;
use outflow_core::{Category, Outcome};

use super::tests::{call, connection, get, post, report, state};
use super::*;

#[tokio::test]
async fn a_posted_report_is_in_the_matrix_and_its_cell_lists_the_failing_destination() {
    let app = app(state());
    let r = report(vec![
        connection("web", "203.0.113.7", Outcome::Unanswered, Category::Public),
        connection("web", "10.0.0.9", Outcome::Established, Category::Internal),
    ]);
    let (status, body) = call(&app, post(serde_json::to_vec(&r).unwrap())).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    let (status, view) = call(&app, get("/api/v1/view?since=900")).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["by"], "namespace");
    let row = &view["rows"][0];
    assert_eq!(row["namespace"], "default");
    let cells = row["cells"].as_array().unwrap();
    let public = cells.iter().find(|c| c["category"] == "public").unwrap();
    assert_eq!(public["connections"]["unanswered"], 2);
    assert_eq!(public["failure_share"], 1.0);
    assert_eq!(public["nodes"], 1);
    let internal = cells.iter().find(|c| c["category"] == "internal").unwrap();
    assert_eq!(internal["failures"], 0);

    let (status, by_workload) = call(&app, get("/api/v1/view?by=workload")).await;
    assert_eq!(status, StatusCode::OK, "{by_workload}");
    assert_eq!(by_workload["rows"][0]["workload"], "pod/web");

    let (status, dests) = call(
        &app,
        get("/api/v1/view/destinations?namespace=default&category=public&since=900"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{dests}");
    assert_eq!(dests[0]["destination"], "203.0.113.7:443");
    assert_eq!(dests[0]["nodes"][0], "node-1");
    assert_eq!(dests[0]["pods"][0], "default/web");
    assert_eq!(dests[0]["example_connection"]["dst"], "203.0.113.7");
}

#[tokio::test]
async fn bad_view_parameters_are_a_400_that_names_the_problem() {
    let app = app(state());
    let long = "x".repeat(300);
    for (uri, says) in [
        ("/api/v1/view?since=0".to_string(), "since must be"),
        ("/api/v1/view?since=99999999".to_string(), "since must be"),
        ("/api/v1/view?by=pod".to_string(), "by"),
        ("/api/v1/view?bogus=1".to_string(), "bogus"),
        (format!("/api/v1/view?search={long}"), "search is longer"),
        (
            "/api/v1/view/destinations?namespace=a".to_string(),
            "category",
        ),
        (
            "/api/v1/view/destinations?namespace=a&category=mars".to_string(),
            "category",
        ),
        (
            format!("/api/v1/view/destinations?namespace={long}&category=public"),
            "namespace is longer",
        ),
    ] {
        let (status, body) = call(&app, get(&uri)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains(says), "{uri}: {error}");
    }
}

/// A destination that goes unanswered while another public one works is diagnosed from what
/// the agents posted, with its evidence; bad parameters are a 400.
#[tokio::test]
async fn a_failing_destination_is_diagnosed_from_the_posted_reports() {
    let app = app(state());
    let r = report(vec![
        connection("web", "203.0.113.7", Outcome::Unanswered, Category::Public),
        connection(
            "web",
            "198.51.100.9",
            Outcome::Established,
            Category::Public,
        ),
    ]);
    let (status, body) = call(&app, post(serde_json::to_vec(&r).unwrap())).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = call(&app, get("/api/v1/diagnoses?since=900")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let list = body["diagnoses"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{body}");
    let d = &list[0];
    assert_eq!(d["id"], "destination:public/203.0.113.7:443");
    assert_eq!(d["kind"], "destination");
    assert_eq!(d["state"], "active");
    assert_eq!(d["scope"]["pods"][0], "default/web");
    assert_eq!(d["evidence"]["counts"]["unanswered"], 2);
    assert_eq!(
        d["evidence"]["capture"]["filter"],
        "host 203.0.113.7 and tcp port 443"
    );
    let (status, _) = call(&app, get("/api/v1/diagnoses?since=0")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
