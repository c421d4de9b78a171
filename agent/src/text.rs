//! Text from etcd or the network is untrusted: before it reaches a terminal every control or
//! bidirectional-override character is shown escaped, and text embedded in errors and statuses is
//! bounded so one hostile value cannot blow up a status past etcd's request limit.

/// Longest error text kept in a status step or shown for an invalid record, in bytes.
pub const MAX_ERROR_BYTES: usize = 1024;

/// `text` with control characters (C0, DEL, C1) and bidi controls written as `\n`, `\t`, `\r`,
/// `\u{…}`, and backslashes doubled, so what is printed is exactly what was stored.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// At most `max` bytes of `text` (cut at a character boundary), with a note of what was cut.
pub fn bound(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}… ({} more bytes)", &text[..cut], text.len() - cut)
}

/// [`escape`] then [`bound`] to [`MAX_ERROR_BYTES`]: for a hostile value quoted in a message.
pub fn quote(text: &str) -> String {
    format!("\"{}\"", bound(&escape(text), MAX_ERROR_BYTES / 4))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_a_terminal_would_interpret() {
        assert_eq!(escape("node-1"), "node-1");
        assert_eq!(escape("a\nb\x1b[31mred"), "a\\nb\\u{1b}[31mred");
        assert_eq!(escape("x\u{202e}gpj.exe"), "x\\u{202e}gpj.exe");
        assert_eq!(escape("\u{9b}2J"), "\\u{9b}2J");
        assert_eq!(escape("back\\slash"), "back\\\\slash");
        assert_eq!(escape("zone ü"), "zone ü");
    }

    #[test]
    fn bounds_at_a_character_boundary() {
        assert_eq!(bound("short", 10), "short");
        let long = "é".repeat(10);
        let cut = bound(&long, 5);
        assert!(cut.starts_with("éé…"), "{cut}");
        assert!(cut.ends_with("(16 more bytes)"), "{cut}");
        assert!(quote(&"x".repeat(10_000)).len() < MAX_ERROR_BYTES);
    }
}
