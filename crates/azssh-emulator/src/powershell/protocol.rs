//! What the emulated guest knows of azssh's scripts until it executes PowerShell itself: the
//! documented result protocol (block frames `# azssh:begin NAME` … `# azssh:end NAME`, the result
//! line `AZSSH-RESULT:{json}`), and PowerShell's own quoting and `-EncodedCommand` rules.
//!
//! These are written here, not imported: the judge never links the code it judges. The product's
//! integration tests check that both sides name the same blocks.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

pub(crate) const RESULT_MARKER: &str = "AZSSH-RESULT:";
pub(crate) const RESULT_VERSION: u32 = 1;
pub(crate) const PROLOGUE: &str = "prologue";
pub(crate) const SETUP: &str = "setup";
pub(crate) const SERVICE: &str = "service";
pub(crate) const KEY: &str = "key";
pub(crate) const HOST_KEYS: &str = "host-keys";
pub(crate) const EPILOGUE: &str = "epilogue";
/// Every block name the guest recognises (the product's tests compare it with what it emits).
pub const BLOCKS: [&str; 6] = [PROLOGUE, SETUP, SERVICE, KEY, HOST_KEYS, EPILOGUE];
/// The capability name of Windows' OpenSSH server (`Get-WindowsCapability -Online`).
pub(crate) const CAPABILITY: &str = "OpenSSH.Server~~~~0.0.1.0";

/// The characters PowerShell's tokenizer takes as a single quote: ASCII `'` and the typographic
/// quotes U+2018..U+201B (about_Quoting_Rules; `[char]::IsSingleQuote` in the parser).
pub(crate) const SINGLE_QUOTES: [char; 5] = ['\'', '\u{2018}', '\u{2019}', '\u{201A}', '\u{201B}'];

/// Reads one single-quoted literal at the start of `text`, as PowerShell's tokenizer does: a
/// doubled quote is one literal quote. Returns the value and the rest after the closing quote.
pub(crate) fn ps_unquote_prefix(text: &str) -> Option<(String, &str)> {
    let mut chars = text.char_indices().peekable();
    match chars.next() {
        Some((_, c)) if SINGLE_QUOTES.contains(&c) => {}
        _ => return None,
    }
    let mut value = String::new();
    while let Some((i, c)) = chars.next() {
        if SINGLE_QUOTES.contains(&c) {
            match chars.peek() {
                Some(&(_, next)) if SINGLE_QUOTES.contains(&next) => {
                    value.push(next);
                    chars.next();
                }
                _ => return Some((value, &text[i + c.len_utf8()..])),
            }
        } else {
            value.push(c);
        }
    }
    None
}

/// `powershell.exe -EncodedCommand` takes base64 of UTF-16LE text.
pub(crate) fn decode_encoded_command(encoded: &str) -> Result<String, String> {
    let bytes = STANDARD
        .decode(encoded.trim())
        .map_err(|e| format!("Cannot decode the -EncodedCommand argument: {e}"))?;
    if bytes.len() % 2 != 0 {
        return Err("Cannot decode the -EncodedCommand argument: odd number of bytes".into());
    }
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|p| u16::from_le_bytes([p[0], p[1]]))
        .collect();
    String::from_utf16(&units)
        .map_err(|e| format!("Cannot decode the -EncodedCommand argument: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubled_and_typographic_quotes_unquote_as_powershell_does() {
        assert_eq!(
            ps_unquote_prefix("'it''s' rest"),
            Some(("it's".to_string(), " rest"))
        );
        assert_eq!(
            ps_unquote_prefix("\u{2018}a\u{2019}\u{2019}b\u{2019}"),
            Some(("a\u{2019}b".to_string(), ""))
        );
        assert_eq!(ps_unquote_prefix("'open"), None);
    }

    #[test]
    fn encoded_command_is_utf16le_base64() {
        // "hi" as UTF-16LE: 68 00 69 00.
        assert_eq!(decode_encoded_command("aABpAA==").as_deref(), Ok("hi"));
        assert!(decode_encoded_command("aABp").is_err());
    }
}
