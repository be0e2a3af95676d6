//! Key-file results longer than RunCommand can return, in pages. RunCommand keeps only the last
//! 4096 bytes of a script's output (WINDOWS-REALITIES.md, "RunCommand"), and a listing's result
//! line grows by ~140 bytes a key, so about 20 keys used to be the limit. A result line that
//! fits is written as before; a longer one is saved on the guest once, base64 (RunCommand's
//! output encoding is not documented: base64 is ASCII), in a file only SYSTEM and
//! Administrators can read, and the script writes its first page; each further RunCommand
//! reads the next page of that same snapshot (so the pages are consistent even when the file
//! changes meanwhile, and the edit that produced the result is never run twice) and the last
//! one deletes the file.
//!
//! A listing interrupted between pages (Ctrl-C, a killed process, a RunCommand that failed)
//! leaves its snapshot behind. The client discards it with one more RunCommand when a page
//! fails, but a killed process cannot, so every script with this epilogue first sweeps
//! snapshots older than [`STALE_MINUTES`]: no listing still pages after that long (each page is
//! one RunCommand of about 20 s), so a younger snapshot may be another operator's listing in
//! progress and is left alone.

use base64::Engine;

use super::authorized_keys::{ADMINISTRATORS_SID, SYSTEM_SID};
use super::combined::RESULT_MARKER;
use super::error::WindowsError;

/// The line that carries one page: `AZSSH-PAGE:<id>:<total>:<offset>:<base64 piece>`.
pub const PAGE_MARKER: &str = "AZSSH-PAGE:";

/// Characters of base64 per page: with the marker, id and numbers the line stays well inside
/// RunCommand's 4096-byte tail.
pub const PAGE_CHARS: usize = 3000;

/// Result lines up to this many bytes are written whole, as every other script's are.
const WHOLE_LINE_BYTES: usize = 3500;

/// Snapshots older than this are abandoned, and swept by the next paged script.
pub const STALE_MINUTES: u32 = 30;

/// The file name pattern of every snapshot (`azssh-keys-<id>.b64`).
const SNAPSHOT_PATTERN: &str = "azssh-keys-*.b64";

/// A new page id: the snapshot file's name on the guest, 32 hex digits.
pub fn new_page_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn snapshot_path_ps(id: &str) -> String {
    format!("(Join-Path $env:ProgramData 'ssh\\azssh-keys-{id}.b64')")
}

/// The epilogue: the result line when it fits, else the first page of the saved snapshot.
/// `id` comes from [`new_page_id`] (hex only: inert in the single-quoted literal).
pub fn paged_epilogue(id: &str, depth: u8) -> String {
    let path = snapshot_path_ps(id);
    format!(
        r#"{sweep}
$AzsshJson = $r | ConvertTo-Json -Compress -Depth {depth}
$AzsshBytes = [Text.Encoding]::UTF8.GetBytes($AzsshJson)
if ($AzsshBytes.Length -le {WHOLE_LINE_BYTES}) {{
    Write-Output ('{RESULT_MARKER}' + $AzsshJson)
}} else {{
    $AzsshAll = [Convert]::ToBase64String($AzsshBytes)
    $AzsshPath = {path}
    $AzsshDir = Split-Path -Parent $AzsshPath
    if (-not (Test-Path -LiteralPath $AzsshDir)) {{ $null = New-Item -ItemType Directory -Path $AzsshDir -Force }}
    [IO.File]::WriteAllText($AzsshPath, '')
    $null = icacls.exe $AzsshPath /inheritance:r /grant '*{SYSTEM_SID}:F' /grant '*{ADMINISTRATORS_SID}:F'
    [IO.File]::WriteAllText($AzsshPath, $AzsshAll)
    Write-Output ('{PAGE_MARKER}{id}:' + $AzsshAll.Length + ':0:' + $AzsshAll.Substring(0, {PAGE_CHARS}))
}}"#,
        sweep = stale_sweep()
    )
}

/// Removes snapshots last written more than [`STALE_MINUTES`] ago; never fails the script (a
/// sweep that cannot run leaves the files for the next one).
fn stale_sweep() -> String {
    format!(
        r#"try {{
    $AzsshSnapshots = Join-Path $env:ProgramData 'ssh'
    $AzsshStale = [DateTime]::UtcNow.AddMinutes(-{STALE_MINUTES})
    if (Test-Path -LiteralPath $AzsshSnapshots) {{
        Get-ChildItem -LiteralPath $AzsshSnapshots -Filter '{SNAPSHOT_PATTERN}' -File -ErrorAction SilentlyContinue |
            Where-Object {{ $_.LastWriteTimeUtc -lt $AzsshStale }} |
            ForEach-Object {{ Remove-Item -LiteralPath $_.FullName -Force -ErrorAction SilentlyContinue }}
    }}
}} catch {{ }}"#
    )
}

/// The script that deletes snapshot `id` (a listing that stopped between pages); succeeds when
/// it is already gone.
pub fn discard_script(id: &str) -> String {
    let path = snapshot_path_ps(id);
    format!(
        r#"$AzsshPath = {path}
if (Test-Path -LiteralPath $AzsshPath) {{ Remove-Item -LiteralPath $AzsshPath -Force }}
Write-Output '{RESULT_MARKER}{{}}'"#
    )
}

/// The script that returns the page of snapshot `id` at `offset`, deleting the snapshot after
/// its last page.
pub fn next_page_script(id: &str, offset: usize) -> String {
    let path = snapshot_path_ps(id);
    format!(
        r#"$AzsshPath = {path}
$AzsshAll = [IO.File]::ReadAllText($AzsshPath)
$AzsshOffset = {offset}
$AzsshCount = [Math]::Min({PAGE_CHARS}, $AzsshAll.Length - $AzsshOffset)
$AzsshPiece = $AzsshAll.Substring($AzsshOffset, $AzsshCount)
if ($AzsshOffset + $AzsshCount -ge $AzsshAll.Length) {{ Remove-Item -LiteralPath $AzsshPath -Force }}
Write-Output ('{PAGE_MARKER}{id}:' + $AzsshAll.Length + ':' + $AzsshOffset + ':' + $AzsshPiece)"#
    )
}

/// One page as the guest wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub id: String,
    pub total: usize,
    pub offset: usize,
    pub piece: String,
}

/// The page line of `stdout`, if the script wrote one (else it wrote a whole result line).
pub fn find_page(stdout: &str) -> Result<Option<Page>, WindowsError> {
    let Some(line) = stdout
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix(PAGE_MARKER))
    else {
        return Ok(None);
    };
    let bad = |why: &str| WindowsError::MalformedResult {
        reason: format!("page line: {why}"),
    };
    let mut parts = line.splitn(4, ':');
    let id = parts.next().unwrap_or_default();
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad("the page id is not 32 hex digits"));
    }
    let mut number = |what: &str| {
        parts
            .next()
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| bad(&format!("no {what}")))
    };
    let total = number("total")?;
    let offset = number("offset")?;
    let piece = parts.next().unwrap_or_default().to_string();
    if piece.is_empty() || offset + piece.len() > total {
        return Err(bad("the piece does not fit the total"));
    }
    Ok(Some(Page {
        id: id.to_string(),
        total,
        offset,
        piece,
    }))
}

/// Collects pages in order; `None` from [`Pages::next_offset`] once complete.
#[derive(Debug, Default)]
pub struct Pages {
    id: String,
    total: usize,
    text: String,
}

impl Pages {
    pub fn new(first: Page) -> Result<Pages, WindowsError> {
        let mut p = Pages {
            id: first.id.clone(),
            total: first.total,
            text: String::new(),
        };
        p.push(first)?;
        Ok(p)
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Adds the page that was asked for; a page of another snapshot or offset is refused.
    pub fn push(&mut self, page: Page) -> Result<(), WindowsError> {
        if page.id != self.id || page.offset != self.text.len() || page.total != self.total {
            return Err(WindowsError::MalformedResult {
                reason: format!(
                    "page at {} of {} ({}) where {} of {} ({}) was asked for",
                    page.offset,
                    page.total,
                    page.id,
                    self.text.len(),
                    self.total,
                    self.id
                ),
            });
        }
        self.text.push_str(&page.piece);
        Ok(())
    }

    /// Where the next page starts, `None` when every page is in.
    pub fn next_offset(&self) -> Option<usize> {
        (self.text.len() < self.total).then_some(self.text.len())
    }

    /// The whole result as a result line (`AZSSH-RESULT:{...}`), as a short result is written.
    pub fn result_line(&self) -> Result<String, WindowsError> {
        let malformed = |reason: String| WindowsError::MalformedResult { reason };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(self.text.as_bytes())
            .map_err(|e| malformed(format!("pages are not base64: {e}")))?;
        let json =
            String::from_utf8(bytes).map_err(|e| malformed(format!("pages are not UTF-8: {e}")))?;
        Ok(format!("{RESULT_MARKER}{json}"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn paging_scripts_parse_as_windows_powershell_5_1_and_are_ascii() {
        let id = new_page_id();
        for script in [
            paged_epilogue(&id, 8),
            next_page_script(&id, 3000),
            discard_script(&id),
        ] {
            assert!(
                pwsh::check_ps51(&script).is_empty(),
                "{:?}",
                pwsh::check_ps51(&script)
            );
            assert!(script.is_ascii());
        }
    }

    #[test]
    fn a_long_result_is_read_back_whole_from_its_pages_in_order() {
        let json = format!("{{\"keys\":\"{}\"}}", "k\u{e9}y ".repeat(2000));
        let all = base64::engine::general_purpose::STANDARD.encode(json.as_bytes());
        let id = new_page_id();
        let page = |offset: usize| {
            let end = (offset + PAGE_CHARS).min(all.len());
            format!(
                "noise\r\n{PAGE_MARKER}{id}:{}:{offset}:{}\r\n",
                all.len(),
                &all[offset..end]
            )
        };
        let mut pages = Pages::new(find_page(&page(0)).unwrap().unwrap()).unwrap();
        let mut calls = 1;
        while let Some(offset) = pages.next_offset() {
            pages
                .push(find_page(&page(offset)).unwrap().unwrap())
                .unwrap();
            calls += 1;
        }
        assert_eq!(calls, all.len().div_ceil(PAGE_CHARS));
        assert_eq!(
            pages.result_line().unwrap(),
            format!("{RESULT_MARKER}{json}")
        );
        // A page of the wrong place is refused, not spliced in.
        let mut again = Pages::new(find_page(&page(0)).unwrap().unwrap()).unwrap();
        assert!(again.push(find_page(&page(0)).unwrap().unwrap()).is_err());
        assert!(find_page("AZSSH-RESULT:{}").unwrap().is_none());
        assert!(find_page("AZSSH-PAGE:zz:1:0:a").is_err());
    }
}
