//! SMS encoding and segments (3GPP TS 23.038): a text that fits the GSM 7-bit default alphabet (with its
//! extension table, whose characters take two septets: escape + character) is sent as GSM-7, 160 septets
//! in one message or 153 per part of a concatenated one (the UDH takes the rest); anything else is UCS-2,
//! 70 UTF-16 units alone or 67 per part. Parts never split an escape pair or a surrogate pair.

use serde::Serialize;
use utoipa::ToSchema;

/// The GSM 7-bit default alphabet, in code order (0x1B, the escape to the extension table, is not a
/// character of its own and appears here as a space placeholder that `gsm7_code` never matches).
const BASIC: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\u{1b}', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

/// The extension table: (character, code after the 0x1B escape).
const EXTENSION: [(char, u8); 10] = [
    ('\u{0c}', 0x0A),
    ('^', 0x14),
    ('{', 0x28),
    ('}', 0x29),
    ('\\', 0x2F),
    ('[', 0x3C),
    ('~', 0x3D),
    (']', 0x3E),
    ('|', 0x40),
    ('€', 0x65),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub enum Encoding {
    #[serde(rename = "GSM-7")]
    Gsm7,
    #[serde(rename = "UCS-2")]
    Ucs2,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Gsm7 => "GSM-7",
            Encoding::Ucs2 => "UCS-2",
        }
    }
    /// Units in a single-part message.
    pub fn single(self) -> usize {
        match self {
            Encoding::Gsm7 => 160,
            Encoding::Ucs2 => 70,
        }
    }
    /// Units per part of a concatenated message.
    pub fn part(self) -> usize {
        match self {
            Encoding::Gsm7 => 153,
            Encoding::Ucs2 => 67,
        }
    }
}

/// What a text costs as SMS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct SmsInfo {
    pub encoding: Encoding,
    /// Septets (GSM-7) or UTF-16 code units (UCS-2).
    pub units: usize,
    pub segments: usize,
}

/// The GSM-7 septets of `c`: one code, or escape + code for the extension table.
fn gsm7_code(c: char) -> Option<(Option<u8>, u8)> {
    if c == '\u{1b}' {
        return None;
    }
    if let Some(i) = BASIC.iter().position(|&b| b == c) {
        return Some((None, i as u8));
    }
    EXTENSION.iter().find(|(e, _)| *e == c).map(|(_, code)| (Some(0x1B), *code))
}

fn septets(c: char) -> Option<usize> {
    gsm7_code(c).map(|(esc, _)| if esc.is_some() { 2 } else { 1 })
}

pub fn encoding_of(text: &str) -> Encoding {
    if text.chars().all(|c| gsm7_code(c).is_some()) { Encoding::Gsm7 } else { Encoding::Ucs2 }
}

fn units(c: char, encoding: Encoding) -> usize {
    match encoding {
        Encoding::Gsm7 => septets(c).unwrap_or(1),
        Encoding::Ucs2 => c.len_utf16(),
    }
}

/// Splits `text` into the parts it is sent as (one part when it fits a single message).
pub fn split(text: &str) -> (Encoding, Vec<String>) {
    let encoding = encoding_of(text);
    let total: usize = text.chars().map(|c| units(c, encoding)).sum();
    if total <= encoding.single() {
        return (encoding, vec![text.to_string()]);
    }
    let mut parts = Vec::new();
    let (mut current, mut used) = (String::new(), 0);
    for c in text.chars() {
        let u = units(c, encoding);
        if used + u > encoding.part() {
            parts.push(std::mem::take(&mut current));
            used = 0;
        }
        current.push(c);
        used += u;
    }
    if !current.is_empty() {
        parts.push(current);
    }
    (encoding, parts)
}

pub fn analyse(text: &str) -> SmsInfo {
    let (encoding, parts) = split(text);
    let units = text.chars().map(|c| units(c, encoding)).sum();
    SmsInfo { encoding, units, segments: parts.len().max(1) }
}

/// GSM-7 as unpacked septets, one per byte (SMPP `data_coding` 0x00 on most SMSCs); `None` when the text
/// needs UCS-2.
pub fn encode_gsm7(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        let (esc, code) = gsm7_code(c)?;
        if let Some(e) = esc {
            out.push(e);
        }
        out.push(code);
    }
    Some(out)
}

/// UCS-2 (UTF-16 big-endian), SMPP `data_coding` 0x08.
pub fn encode_ucs2(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

/// Decodes unpacked GSM-7 septets (inbound `deliver_sm` with data_coding 0).
pub fn decode_gsm7(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    let mut escaped = false;
    for &b in bytes {
        let b = b & 0x7F;
        if escaped {
            escaped = false;
            out.push(EXTENSION.iter().find(|(_, code)| *code == b).map(|(c, _)| *c).unwrap_or(' '));
        } else if b == 0x1B {
            escaped = true;
        } else {
            out.push(BASIC[b as usize]);
        }
    }
    out
}

pub fn decode_ucs2(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes.chunks(2).map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])).collect();
    String::from_utf16_lossy(&units)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gsm7_single_and_concatenated() {
        assert_eq!(analyse("Hello"), SmsInfo { encoding: Encoding::Gsm7, units: 5, segments: 1 });
        assert_eq!(analyse(&"a".repeat(160)).segments, 1);
        assert_eq!(analyse(&"a".repeat(161)).segments, 2);
        assert_eq!(analyse(&"a".repeat(306)).segments, 2);
        assert_eq!(analyse(&"a".repeat(307)).segments, 3);
        assert_eq!(analyse("").segments, 1);
    }

    #[test]
    fn extension_characters_count_twice_and_never_split() {
        let info = analyse("Price: 5€ [net]");
        assert_eq!(info.encoding, Encoding::Gsm7);
        assert_eq!(info.units, 15 + 3, "€, [ and ] take two septets each");
        assert_eq!(analyse(&"€".repeat(80)).segments, 1, "160 septets");
        assert_eq!(analyse(&"€".repeat(81)).segments, 2);
        // 152 plain septets then '€': the escape pair moves whole to the next part.
        let text = format!("{}€", "a".repeat(152)) + &"b".repeat(10);
        let (_, parts) = split(&text);
        assert_eq!(parts[0], "a".repeat(152));
        assert!(parts[1].starts_with('€'));
    }

    #[test]
    fn ucs2_when_any_character_is_outside_gsm7() {
        let info = analyse("ሰላም");
        assert_eq!(info, SmsInfo { encoding: Encoding::Ucs2, units: 3, segments: 1 });
        assert_eq!(analyse(&"ሀ".repeat(70)).segments, 1);
        assert_eq!(analyse(&"ሀ".repeat(71)).segments, 2);
        assert_eq!(analyse(&"ሀ".repeat(134)).segments, 2);
        assert_eq!(analyse(&"ሀ".repeat(135)).segments, 3);
        // One emoji makes the whole text UCS-2; it is two UTF-16 units and is never split.
        let text = format!("{}😀", "a".repeat(66));
        assert_eq!(analyse(&text), SmsInfo { encoding: Encoding::Ucs2, units: 68, segments: 1 });
        let (_, parts) = split(&format!("{}😀{}", "a".repeat(66), "b".repeat(10)));
        assert_eq!(parts[0], "a".repeat(66));
        assert!(parts[1].starts_with('😀'));
    }

    #[test]
    fn codecs_round_trip() {
        let text = "Hi {name}! 5€ @home";
        let bytes = encode_gsm7(text).unwrap();
        assert_eq!(bytes.len(), analyse(text).units);
        assert_eq!(decode_gsm7(&bytes), text);
        assert_eq!(encode_gsm7("ሰላም"), None);
        assert_eq!(decode_ucs2(&encode_ucs2("ሰላም 😀")), "ሰላም 😀");
        assert_eq!(encode_ucs2("A"), vec![0x00, 0x41]);
    }
}
