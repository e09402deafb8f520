//! Contact addresses, parsed once: [`PhoneE164`] (libphonenumber's rules via the `phonenumber` crate,
//! national numbers read with the account's default region) and [`EmailAddress`] (trimmed, lowercased,
//! checked). Whoever holds one knows it is valid; nothing downstream checks it again.

use std::fmt;

use phonenumber::{Mode, country};

/// A valid phone number in E.164 form (`+251911234567`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PhoneE164(String);

impl PhoneE164 {
    /// Parses a number written nationally (read with `region`) or internationally.
    pub fn parse(raw: &str, region: Option<country::Id>) -> Result<Self, String> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err("must not be empty".into());
        }
        if raw.len() > 40 {
            return Err("is too long to be a phone number".into());
        }
        let international = raw.starts_with('+') || raw.starts_with("00");
        if !international && region.is_none() {
            return Err(
                "is not in international format (+<country code>…) and the account has no default_country_code".into(),
            );
        }
        let number = phonenumber::parse(region, raw).map_err(|_| "is not a phone number".to_string())?;
        if !phonenumber::is_valid(&number) {
            return Err("is not a valid phone number for its country".into());
        }
        Ok(PhoneE164(number.format().mode(Mode::E164).to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for PhoneE164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The default region of an account's `default_country_code`: an ISO alpha-2 code (`ET`) or a calling
/// code (`+251`, `251`), resolved to its main region.
pub fn default_region(code: Option<&str>) -> Option<country::Id> {
    let code = code?.trim();
    if code.len() == 2 && code.chars().all(|c| c.is_ascii_alphabetic()) {
        return code.to_ascii_uppercase().parse().ok();
    }
    let calling: u16 = code.strip_prefix('+').unwrap_or(code).parse().ok()?;
    let regions = phonenumber::metadata::DATABASE.region(&calling)?;
    regions.first().and_then(|r| r.parse().ok())
}

/// A valid e-mail address, trimmed and lowercased.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(raw: &str) -> Result<Self, String> {
        use validator::ValidateEmail;
        let email = Self::canonical(raw);
        if email.len() > 254 || !email.validate_email() {
            return Err("must be a valid e-mail address".into());
        }
        Ok(EmailAddress(email))
    }

    /// The form addresses are stored and looked up in (trimmed, lowercased), for input not yet known
    /// to be valid (a login attempt, an inbound sender).
    pub fn canonical(raw: &str) -> String {
        raw.trim().to_lowercase()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
