//! The part of `~/.ssh/config` azssh honours for host-name targets: `Host` blocks with
//! `HostName`, `User`, `Port`, `IdentityFile` and `ProxyJump`. First value wins, as in OpenSSH; other
//! keywords (and `Match`, `Include`) are ignored rather than half-implemented.
//!
//! A parser of five keywords is smaller than any maintained crate that does all of ssh_config.

use std::path::{Path, PathBuf};

use super::error::SshError;
use super::known_hosts::wildcard_match;

/// What the config says about one target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostConfig {
    pub host_name: Option<String>,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity_files: Vec<PathBuf>,
    /// `ProxyJump`, as written (`none` included).
    pub proxy_jump: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct SshConfig {
    blocks: Vec<Block>,
}

#[derive(Debug, Clone)]
struct Block {
    patterns: Vec<String>,
    settings: Vec<(String, String)>,
}

impl SshConfig {
    /// `~/.ssh/config`, or nothing when it does not exist.
    pub fn load_user_default() -> Result<SshConfig, SshError> {
        match crate::home::ssh_dir() {
            Some(dir) => SshConfig::load(&dir.join("config")),
            None => Ok(SshConfig::default()),
        }
    }

    /// Reads a config file; a missing file is empty.
    pub fn load(path: &Path) -> Result<SshConfig, SshError> {
        match crate::local_file::read_text(path, crate::local_file::cap::CONFIG, "ssh config") {
            Ok(text) => SshConfig::parse(&text, path),
            Err(e) if e.is_not_found() => Ok(SshConfig::default()),
            Err(e) => Err(e.into()),
        }
    }

    pub fn parse(text: &str, file: &Path) -> Result<SshConfig, SshError> {
        // Lines before the first `Host` apply to every host.
        let mut blocks = vec![Block {
            patterns: vec!["*".to_string()],
            settings: Vec::new(),
        }];
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            // `Keyword value` or `Keyword=value`.
            let (key, value) = match line.split_once(|c: char| c.is_whitespace() || c == '=') {
                Some((k, v)) => (
                    k,
                    v.trim_start_matches(|c: char| c.is_whitespace() || c == '='),
                ),
                None => (line, ""),
            };
            let value = value.trim().trim_matches('"');
            let key = key.to_ascii_lowercase();
            if key == "host" {
                if value.is_empty() {
                    return Err(SshError::Config {
                        file: file.to_path_buf(),
                        line: i + 1,
                        reason: "`Host` needs a pattern".to_string(),
                    });
                }
                blocks.push(Block {
                    patterns: value.split_whitespace().map(str::to_string).collect(),
                    settings: Vec::new(),
                });
            } else if let Some(block) = blocks.last_mut() {
                block.settings.push((key, value.to_string()));
            }
        }
        Ok(SshConfig { blocks })
    }

    /// Settings for `host` from every matching block, first value winning (`IdentityFile`
    /// accumulates).
    pub fn resolve(&self, host: &str) -> HostConfig {
        let mut out = HostConfig::default();
        for block in self.blocks.iter().filter(|b| b.matches(host)) {
            for (key, value) in &block.settings {
                match key.as_str() {
                    "hostname" if out.host_name.is_none() => {
                        out.host_name = Some(value.replace("%h", host));
                    }
                    "user" if out.user.is_none() => out.user = Some(value.clone()),
                    "port" if out.port.is_none() => out.port = value.parse().ok(),
                    "identityfile" => out.identity_files.push(expand_tilde(value)),
                    "proxyjump" if out.proxy_jump.is_none() => {
                        out.proxy_jump = Some(value.clone());
                    }
                    _ => {}
                }
            }
        }
        out
    }
}

impl Block {
    fn matches(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        let mut hit = false;
        for p in &self.patterns {
            let p = p.to_ascii_lowercase();
            match p.strip_prefix('!') {
                Some(neg) if wildcard_match(neg, &host) => return false,
                Some(_) => {}
                None => hit |= wildcard_match(&p, &host),
            }
        }
        hit
    }
}

// OpenSSH expands only `~/` in `IdentityFile`; `expand_home` also takes `~\`, which no
// config written for OpenSSH on Linux contains.
fn expand_tilde(path: &str) -> PathBuf {
    crate::home::expand_home(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_the_five_keywords_first_value_wins() {
        let text = "\
IdentityFile /keys/global
Host web-* !web-test
  HostName %h.contoso.net
  User azureuser
  Port 2222
  IdentityFile /keys/web
Host *
  User fallback
  Port=22
";
        let cfg = SshConfig::parse(text, Path::new("config")).expect("parse");
        let web = cfg.resolve("web-1");
        assert_eq!(web.host_name.as_deref(), Some("web-1.contoso.net"));
        assert_eq!(web.user.as_deref(), Some("azureuser"));
        assert_eq!(web.port, Some(2222));
        assert_eq!(
            web.identity_files,
            vec![PathBuf::from("/keys/global"), PathBuf::from("/keys/web")]
        );
        let test = cfg.resolve("web-test");
        assert_eq!(test.host_name, None);
        assert_eq!(test.user.as_deref(), Some("fallback"));
        assert_eq!(test.port, Some(22));
    }

    #[test]
    fn host_without_pattern_is_an_error_with_its_line() {
        let err = SshConfig::parse("\n\nHost\n", Path::new("c")).expect_err("must fail");
        assert!(err.to_string().contains("line 3"), "{err}");
    }
}
