//! TEMPORARY: replaced by the full mask layer.

/// Glob match.
pub fn matches(mask: &str, text: &str) -> bool {
    let (m, t) = (mask.to_ascii_lowercase(), text.to_ascii_lowercase());
    let (m, t) = (m.as_bytes(), t.as_bytes());
    let (mut i, mut j, mut star, mut mark) = (0, 0, None, 0);
    while j < t.len() {
        if i < m.len() && (m[i] == b'?' || m[i] == t[j]) {
            i += 1;
            j += 1;
        } else if i < m.len() && m[i] == b'*' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if let Some(s) = star {
            i = s + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    while i < m.len() && m[i] == b'*' {
        i += 1;
    }
    i == m.len()
}

/// Canonical ban mask.
pub fn normalize_ban_mask(text: &str) -> String {
    match (text.contains('!'), text.contains('@')) {
        (true, true) => text.to_owned(),
        (true, false) => format!("{text}@*"),
        (false, true) => format!("*!{text}"),
        (false, false) if text.contains('.') || text.contains(':') => format!("*!*@{text}"),
        (false, false) => format!("{text}!*@*"),
    }
}
