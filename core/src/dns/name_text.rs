//! The text of a DNS name: lowercase, dotted, escaped as in zone files.
//!
//! Both decoders (`wire.rs` and `hickory.rs`) must spell a name alike for the fuzz target's
//! comparison to hold, so they share this one builder.

/// Builds a name's text label by label: lowercase, dotted, with `.`, `\` and bytes that are not
/// printable ASCII escaped as `\DDD`, as in zone files.
///
/// The text is built as bytes and checked as UTF-8 once at the end: checking each label as it
/// came (to push it as a `str`) cost more than the rest of a message's decoding together.
#[derive(Default)]
pub(super) struct NameText {
    bytes: Vec<u8>,
}

impl NameText {
    /// Appends one label.
    pub(super) fn push_label(&mut self, label: &[u8]) {
        let b = &mut self.bytes;
        if b.is_empty() {
            b.reserve(64);
        } else {
            b.push(b'.');
        }
        for &c in label {
            match c {
                b'.' | b'\\' => b.extend_from_slice(&[b'\\', c]),
                0x21..=0x7e => b.push(c.to_ascii_lowercase()),
                _ => {
                    b.extend_from_slice(&[b'\\', b'0' + c / 100, b'0' + c / 10 % 10, b'0' + c % 10])
                }
            }
        }
    }

    /// The text (`.` for the root).
    pub(super) fn finish(self) -> String {
        ascii_text(self.bytes)
    }
}

/// A name's text from bytes that are printable ASCII by construction (`.` when empty).
pub(super) fn ascii_text(mut bytes: Vec<u8>) -> String {
    if bytes.is_empty() {
        bytes.push(b'.');
    }
    // Never takes the lossy branch: callers push only printable ASCII.
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}
