//! Rules for the names people give things (accounts, users, roles, contacts, tags, groups, segments,
//! channels): one validator, so a name means the same everywhere.

use validator::ValidationError;

/// The first control character of `s` (C0, DEL or C1: `char::is_control`), if any.
pub fn control_character(s: &str) -> Option<char> {
    s.chars().find(|c| c.is_control())
}

/// Why `value` cannot be a name: blank (whitespace only; an empty value is left to the length rule, one
/// message per problem), or holding a control character (NUL, a newline, an escape… PostgreSQL cannot
/// even store a NUL in text).
pub fn name_problem(value: &str) -> Option<&'static str> {
    if !value.is_empty() && value.trim().is_empty() {
        return Some("must not be blank");
    }
    control_character(value).map(|_| "must not contain control characters")
}

/// The `validator` rule for name fields: `#[validate(custom(function = "crate::domain::text::name"))]`.
pub fn name(value: &str) -> Result<(), ValidationError> {
    match name_problem(value) {
        None => Ok(()),
        Some(message) => Err(ValidationError::new("name").with_message(message.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_refuse_blanks_and_control_characters() {
        assert!(name("Abebe Kebede").is_ok());
        assert!(name("Ḿaría-José ✓").is_ok());
        assert!(name("").is_ok(), "emptiness is the length rule's");
        assert_eq!(name_problem("   "), Some("must not be blank"));
        for bad in ["a\0b", "a\nb", "tab\there", "esc\u{1b}[31m", "del\u{7f}", "c1\u{85}"] {
            assert_eq!(name_problem(bad), Some("must not contain control characters"), "{bad:?}");
        }
    }
}
