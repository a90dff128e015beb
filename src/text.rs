//! Text from outside (engine errors, node logs, alert labels, config lines) made safe before
//! it reaches a terminal or a report. Imports nothing: every layer may use it.

/// `text` safe for a terminal or a report line: every control character (a NUL, an escape
/// sequence's ESC, a newline) written as its Rust escape (`\u{0}`, `\u{1b}`, `\n`); the rest
/// unchanged.
pub fn printable(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_string();
    }
    text.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}
