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

/// The controller's token as the agent sends it.
#[derive(Debug, Clone, Default)]
pub enum Token {
    /// None: the controller listens on loopback or runs open.
    #[default]
    None,
    /// Given once (`OUTFLOW_TOKEN`).
    Fixed(String),
    /// A file read at every request, so a Secret mounted after the agent started (the
    /// controller makes it on its first start) or rotated since is picked up.
    File(std::path::PathBuf),
}

impl Token {
    /// The token now; a file that is missing or empty gives none.
    pub fn current(&self) -> Option<String> {
        match self {
            Token::None => None,
            Token::Fixed(t) => Some(t.clone()),
            Token::File(f) => std::fs::read_to_string(f)
                .ok()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty()),
        }
    }
}
