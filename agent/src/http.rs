//! How the agent (and the CLI) call the controller: one client configuration, one token rule.

use std::time::Duration;

/// A client that returns every status as a response (callers decide what 4xx and 5xx mean)
/// and gives up after `timeout` (`None`: never, for streamed uploads).
pub fn client(timeout: Option<Duration>) -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .timeout_global(timeout)
            .http_status_as_error(false)
            .build(),
    )
}

/// A request with the controller's bearer token, when there is one.
pub fn authorized<B>(req: ureq::RequestBuilder<B>, token: Option<&str>) -> ureq::RequestBuilder<B> {
    match token {
        Some(t) => req.header("authorization", format!("Bearer {t}")),
        None => req,
    }
}
