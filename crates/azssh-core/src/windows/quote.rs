//! Quoting and encoding for PowerShell: single-quoted literals and `-EncodedCommand`.
//!
//! PowerShell's tokenizer treats U+2018, U+2019, U+201A and U+201B exactly like `'` (a
//! "smart quote" pasted from a web page ends a literal), so all five are doubled, which is how a
//! single-quoted literal escapes a quote character. Inside such a literal nothing else is
//! special: no `$` expansion, no backtick escapes, no subexpressions.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::error::WindowsError;

/// The characters PowerShell accepts as a single quote.
pub const SINGLE_QUOTES: [char; 5] = ['\'', '\u{2018}', '\u{2019}', '\u{201A}', '\u{201B}'];

/// Returns `s` as a PowerShell single-quoted literal whose value is exactly `s`.
pub fn ps_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if SINGLE_QUOTES.contains(&c) {
            out.push(c);
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// Reads one single-quoted literal at the start of `text`, as PowerShell's tokenizer does.
/// Returns the value and the rest of the text after the closing quote, or `None` when `text`
/// does not start with a complete literal.
pub fn ps_unquote_prefix(text: &str) -> Option<(String, &str)> {
    let mut chars = text.char_indices().peekable();
    match chars.next() {
        Some((_, c)) if SINGLE_QUOTES.contains(&c) => {}
        _ => return None,
    }
    let mut value = String::new();
    while let Some((i, c)) = chars.next() {
        if SINGLE_QUOTES.contains(&c) {
            match chars.peek() {
                // A doubled quote is one literal quote: PowerShell keeps the second one.
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

/// Reads a text that must be exactly one single-quoted literal.
pub fn ps_unquote(text: &str) -> Option<String> {
    match ps_unquote_prefix(text) {
        Some((value, "")) => Some(value),
        _ => None,
    }
}

/// Base64 of the script as UTF-16LE: the argument of `powershell.exe -EncodedCommand`.
pub fn encoded_command(script: &str) -> String {
    let bytes: Vec<u8> = script.encode_utf16().flat_map(u16::to_le_bytes).collect();
    STANDARD.encode(bytes)
}

/// A PowerShell expression for `text` that keeps the script ASCII: a single-quoted literal for
/// ASCII text, else the UTF-8 bytes base64-encoded and decoded on the guest. RunCommand does not
/// document its `.ps1` file's encoding and Windows PowerShell 5.1 reads a BOM-less file as the
/// ANSI code page, so non-ASCII text would arrive mangled (reference WINDOWS-REALITIES.md).
pub fn ps_text(text: &str) -> String {
    if text.is_ascii() {
        ps_quote(text)
    } else {
        format!(
            "[Text.Encoding]::UTF8.GetString([Convert]::FromBase64String('{}'))",
            STANDARD.encode(text.as_bytes())
        )
    }
}

/// The inverse of [`encoded_command`].
pub fn decode_encoded_command(encoded: &str) -> Result<String, WindowsError> {
    let bytes = STANDARD
        .decode(encoded.trim())
        .map_err(|e| WindowsError::BadEncodedCommand {
            reason: e.to_string(),
        })?;
    if bytes.len() % 2 != 0 {
        return Err(WindowsError::BadEncodedCommand {
            reason: "odd number of bytes for utf-16".into(),
        });
    }
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|p| u16::from_le_bytes([p[0], p[1]]))
        .collect();
    String::from_utf16(&units).map_err(|e| WindowsError::BadEncodedCommand {
        reason: e.to_string(),
    })
}

/// The command line that runs `script` whatever the guest's DefaultShell (cmd or PowerShell):
/// base64 survives both shells' quoting rules untouched.
pub fn powershell_command_line(script: &str) -> String {
    format!(
        "powershell.exe -NoProfile -NonInteractive -EncodedCommand {}",
        encoded_command(script)
    )
}

/// Payloads that would escape a naively built literal (the product's and the emulator's tests
/// run every one of them).
#[doc(hidden)]
pub const INJECTION_CORPUS: &[&str] = &[
    "'; Remove-Item C:\\ -Recurse; '",
    "\u{2019}; calc.exe; \u{2018}",
    "\u{201A}\u{201B}''\u{2019}\u{2019}",
    "`$(whoami)`",
    "$(Invoke-Expression 'calc')",
    "${env:PATH}",
    "a; b | c & d && e",
    "line1\nline2\r\n'line3",
    "nul\0byte",
    "\"double\" and `backtick`n",
    "'",
    "",
];

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn quoted_corpus_reads_back_as_one_literal_with_the_same_value() {
        for payload in INJECTION_CORPUS {
            let quoted = ps_quote(payload);
            assert_eq!(ps_unquote(&quoted).as_deref(), Some(*payload), "{quoted}");
            let long = payload.repeat(500);
            assert_eq!(ps_unquote(&ps_quote(&long)), Some(long));
        }
    }

    #[test]
    fn unicode_quote_look_alikes_are_doubled() {
        assert_eq!(ps_quote("it\u{2019}s"), "'it\u{2019}\u{2019}s'");
        assert_eq!(ps_quote("o'k"), "'o''k'");
        // An undoubled look-alike really does end the literal, which is why we double it.
        let (value, rest) = ps_unquote_prefix("'a\u{2019}; calc'").unwrap();
        assert_eq!((value.as_str(), rest), ("a", "; calc'"));
    }

    #[test]
    fn encoded_command_is_base64_utf16le_and_round_trips() {
        // `powershell -EncodedCommand` of "dir" is the UTF-16LE bytes 64 00 69 00 72 00.
        assert_eq!(encoded_command("dir"), "ZABpAHIA");
        let script = "Write-Output 'h\u{e9}llo \u{1F600}'\n$x = 1";
        assert_eq!(
            decode_encoded_command(&encoded_command(script)).unwrap(),
            script
        );
        assert!(decode_encoded_command("not base64!").is_err());
        assert!(powershell_command_line("dir").ends_with("-EncodedCommand ZABpAHIA"));
    }
}
