//! Accounts from the TOML config file, and the secrets they point to.
//!
//! STUB: the interface below is fixed; the implementation is being written.

use std::path::{Path, PathBuf};

/// `tls = ...` in an account, and `--tls`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// STARTTLS, required.
    Starttls,
    /// TLS from the first byte.
    Implicit,
    /// STARTTLS when offered.
    Opportunistic,
    /// Clear text.
    None,
}

/// Where a secret comes from. Never the secret itself on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// An environment variable's value.
    Env(String),
    /// A file's first line; refused when group or others can read it, unless allowed.
    File(PathBuf),
    /// A shell command's first line of output (`sh -c`).
    Cmd(String),
}

/// One `[accounts.NAME]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Account {
    /// The table's name.
    pub name: String,
    /// `server`: host name.
    pub server: String,
    /// `port`.
    pub port: Option<u16>,
    /// `tls`.
    pub tls: Option<TlsMode>,
    /// `user`.
    pub user: Option<String>,
    /// `password_cmd` / `password_env` / `password_file` (at most one).
    pub password: Option<SecretSource>,
    /// `oauth_token_cmd` / `oauth_token_env` (at most one).
    pub oauth_token: Option<SecretSource>,
    /// `from`: default envelope sender.
    pub from: Option<String>,
    /// `helo`.
    pub helo: Option<String>,
    /// `ca_file`.
    pub ca_file: Option<PathBuf>,
}

/// A bad config file, or a secret that cannot be read. Displays as one line naming the file
/// (and line, for syntax errors). Exit 78 (EX_CONFIG).
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The parsed config file.
#[derive(Debug, Clone, Default)]
pub struct Accounts {
    /// The file it came from.
    pub path: PathBuf,
    /// All accounts, in file order.
    pub accounts: Vec<Account>,
    /// The default account's name, when one is defined.
    pub default: Option<String>,
}

/// `$POSTLINE_CONFIG`, else `$XDG_CONFIG_HOME/postline/config.toml`, else
/// `$HOME/.config/postline/config.toml`.
pub fn config_path() -> Option<PathBuf> {
    None
}

/// Reads and validates the file.
pub fn load(path: &Path) -> Result<Accounts, ConfigError> {
    Err(ConfigError(format!("{}: not implemented", path.display())))
}

impl Accounts {
    /// `--account NAME`, or the default: the `default` key, else the only account, else the
    /// one with `default = true`. `None` when no name was asked and there is no default.
    pub fn select(&self, name: Option<&str>) -> Result<Option<&Account>, ConfigError> {
        let _ = name;
        Ok(None)
    }
}

/// Reads a secret: env var value, first line of a file (permission-checked unless
/// `allow_world_readable`), or first line of a command's stdout. Empty is an error.
pub fn read_secret(source: &SecretSource, allow_world_readable: bool) -> Result<String, ConfigError> {
    let _ = (source, allow_world_readable);
    Err(ConfigError("not implemented".into()))
}
