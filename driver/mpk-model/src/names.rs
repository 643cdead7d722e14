//! The character rules every other rule builds on: lowercase hex of a
//! fixed length, and Hub organisation and repository names.

/// True when `s` is exactly `len` lowercase hexadecimal digits.
pub fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// True for a Hub organisation or repository name: 1 to 96 letters,
/// digits, `-`, `_`, `.`, and not `.` or `..`.
pub fn hub_name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 96
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && s != "."
        && s != ".."
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_names() {
        assert!(is_lower_hex("0a", 2));
        assert!(!is_lower_hex("0A", 2));
        assert!(!is_lower_hex("0a", 3));
        assert!(hub_name_ok("Llama_3.2-1B"));
        for bad in ["", ".", "..", "a b", "a/b", "é", &"a".repeat(97)] {
            assert!(!hub_name_ok(bad), "{bad:?}");
        }
    }
}
