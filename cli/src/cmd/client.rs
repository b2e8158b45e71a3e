//! The CLI's calls to the controller: typed requests and answers from `outflow_core::wire`, one
//! rule for the token, and one wording for "cannot reach" and for the controller's refusals.

use std::time::Duration;

use anyhow::Context;
use outflow_agent::http::{authorized, client};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A controller the CLI talks to.
pub struct Client {
    /// Base URL, without a trailing slash.
    pub base: String,
    /// How messages name the controller.
    name: String,
    /// What to check when it cannot be reached.
    hint: String,
    token: Option<String>,
    http: ureq::Agent,
}

impl Client {
    /// A client for `base`, sending `token` when there is one. Requests other than streams give
    /// up after 30 s.
    pub fn new(base: String, token: Option<String>) -> Client {
        Client {
            name: format!("the controller at {base}"),
            hint: "is `outflow up` running?".into(),
            base,
            token,
            http: client(Some(Duration::from_secs(30))),
        }
    }

    /// The same client, naming the controller `name` in messages and giving `hint` when it
    /// cannot be reached.
    pub fn named(mut self, name: String, hint: &str) -> Client {
        self.name = name;
        self.hint = hint.into();
        self
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn unreachable(&self) -> String {
        format!("cannot reach {} ({})", self.name, self.hint)
    }

    /// `GET path?query` as JSON.
    pub fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> anyhow::Result<T> {
        let mut req = authorized(self.http.get(self.url(path)), self.token.as_deref());
        for (k, v) in query {
            req = req.query(*k, v);
        }
        let resp = req.call().with_context(|| self.unreachable())?;
        answer(resp)
    }

    /// `GET path?query`, the body as text (JSON kept as the controller wrote it).
    pub fn get_text(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<String> {
        let mut req = authorized(self.http.get(self.url(path)), self.token.as_deref());
        for (k, v) in query {
            req = req.query(*k, v);
        }
        let mut resp = req.call().with_context(|| self.unreachable())?;
        let body = resp
            .body_mut()
            .read_to_string()
            .context("reading the controller's answer")?;
        refusal(resp.status(), &body)?;
        Ok(body)
    }

    /// `POST path` with a JSON body.
    pub fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let req = authorized(self.http.post(self.url(path)), self.token.as_deref());
        let resp = req.send_json(body).with_context(|| self.unreachable())?;
        answer(resp)
    }

    /// `DELETE path`.
    pub fn delete<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let req = authorized(self.http.delete(self.url(path)), self.token.as_deref());
        let resp = req.call().with_context(|| self.unreachable())?;
        answer(resp)
    }

    /// `GET path` as a stream with no time limit (a capture's pcapng as it comes).
    pub fn stream(&self, path: &str) -> anyhow::Result<impl std::io::Read> {
        let req = authorized(client(None).get(self.url(path)), self.token.as_deref());
        let mut resp = req.call().with_context(|| self.unreachable())?;
        if !resp.status().is_success() {
            let body = resp.body_mut().read_to_string().unwrap_or_default();
            refusal(resp.status(), &body)?;
        }
        Ok(resp.into_body().into_reader())
    }
}

fn answer<T: DeserializeOwned>(mut resp: ureq::http::Response<ureq::Body>) -> anyhow::Result<T> {
    let status = resp.status();
    let body = resp
        .body_mut()
        .read_to_string()
        .context("reading the controller's answer")?;
    refusal(status, &body)?;
    serde_json::from_str(&body).with_context(|| {
        format!(
            "the controller's answer is not what this outflow expects (another version?): {body}"
        )
    })
}

/// The controller's refusal as an error with its own words.
fn refusal(status: ureq::http::StatusCode, body: &str) -> anyhow::Result<()> {
    if status.is_success() {
        return Ok(());
    }
    // The controller's own words, else a Kubernetes API Status's (through the service proxy).
    let message = serde_json::from_str::<outflow_core::wire::ErrorBody>(body)
        .map(|e| e.error)
        .or_else(|_| {
            serde_json::from_str::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v["message"].as_str().map(String::from))
                .ok_or(())
        })
        .unwrap_or_else(|_| body.trim().to_string());
    anyhow::bail!("the controller said {status}: {message}")
}
