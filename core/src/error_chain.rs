//! An error and its causes as one line, for messages that leave the process as text (a log
//! line, a capture's failure reason) where `{:#}` of anyhow is not at hand.

use std::error::Error;

/// `outer: cause: root cause`, as anyhow's `{:#}` prints a chain.
pub fn error_chain(e: &(dyn Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("writing the file")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn each_cause_follows_on_the_same_line() {
        let e = Outer(std::io::Error::other("no space left on device"));
        assert_eq!(error_chain(&e), "writing the file: no space left on device");
    }
}
