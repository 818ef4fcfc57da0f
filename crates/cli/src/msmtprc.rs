//! `postline config import-msmtprc [FILE]`: msmtp's configuration file turned into postline's
//! TOML accounts, with every setting that has no postline equivalent reported by line.
//!
//! Values are never echoed in messages (a `password` line's value, above all): a warning or an
//! error names the line and the command only.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::connect::Fail;
use crate::exit;
use crate::output::errln;

/// Exit code when the TOML was written but some settings could not be mapped.
pub const UNMAPPED: u8 = 1;

/// Commands msmtp knows (1.8), besides `account` and `defaults`.
const KNOWN: &[&str] = &[
    "add_missing_date_header",
    "add_missing_from_header",
    "aliases",
    "allow_from_override",
    "auth",
    "auto_from",
    "domain",
    "dsn_notify",
    "dsn_return",
    "eval",
    "from",
    "host",
    "keepbcc",
    "logfile",
    "logfile_time_format",
    "maildomain",
    "ntlmdomain",
    "password",
    "passwordeval",
    "port",
    "protocol",
    "proxy_host",
    "proxy_port",
    "remove_bcc_headers",
    "set_date_header",
    "set_from_header",
    "set_msgid_header",
    "socket",
    "source_ip",
    "syslog",
    "timeout",
    "tls",
    "tls_cert_file",
    "tls_certcheck",
    "tls_crl_file",
    "tls_fingerprint",
    "tls_host_override",
    "tls_key_file",
    "tls_min_dh_prime_bits",
    "tls_nocertcheck",
    "tls_priorities",
    "tls_starttls",
    "tls_trust_file",
    "undisclosed_recipients",
    "user",
];

/// One setting: its value and the line it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Setting {
    value: String,
    line: usize,
}

type Settings = BTreeMap<String, Setting>;

/// One `account` block, its settings resolved (defaults and inherited accounts filled in).
#[derive(Debug, Clone)]
struct MsmtpAccount {
    name: String,
    line: usize,
    settings: Settings,
    /// `account NAME : A` with one parent and no settings of its own.
    alias_of: Option<String>,
}

/// The parsed file.
#[derive(Debug)]
struct MsmtpFile {
    accounts: Vec<MsmtpAccount>,
}

/// A syntax error: `line N: ...`.
#[derive(Debug, PartialEq, Eq)]
struct SyntaxError {
    line: usize,
    message: String,
}

/// Splits one line into command and argument (unquoted). `None` for blank and comment lines.
fn split_line(raw: &str, line: usize) -> Result<Option<(String, String)>, SyntaxError> {
    let err = |message: &str| SyntaxError {
        line,
        message: message.to_string(),
    };
    let text = raw.trim();
    if text.is_empty() || text.starts_with('#') {
        return Ok(None);
    }
    let (cmd, rest) = match text.find(|c: char| c.is_whitespace()) {
        Some(i) => (&text[..i], text[i..].trim()),
        None => (text, ""),
    };
    if !cmd
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(err("not a command (commands are lower-case words)"));
    }
    // msmtp strips the enclosing quotes and nothing else: no backslash escapes.
    let arg = if rest.starts_with('"') {
        match rest.get(1..).and_then(|r| r.strip_suffix('"')) {
            Some(inner) => inner.to_string(),
            None => return Err(err(&format!("{cmd}: unterminated double quote"))),
        }
    } else {
        rest.to_string()
    };
    Ok(Some((cmd.to_string(), arg)))
}

/// Parses msmtp's configuration text.
fn parse(text: &str) -> Result<MsmtpFile, SyntaxError> {
    let mut defaults = Settings::new();
    let mut accounts: Vec<MsmtpAccount> = Vec::new();
    // None: before any section; Some(None): defaults; Some(Some(i)): accounts[i].
    let mut current: Option<Option<usize>> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let Some((cmd, arg)) = split_line(raw, line)? else {
            continue;
        };
        let err = |message: String| SyntaxError { line, message };
        match cmd.as_str() {
            "defaults" => {
                if !arg.is_empty() {
                    return Err(err("defaults takes no argument".into()));
                }
                current = Some(None);
            }
            "account" => {
                let (name, parents) = match arg.split_once(':') {
                    Some((n, p)) => (n.trim(), Some(p)),
                    None => (arg.trim(), None),
                };
                if name.is_empty() || name.contains(char::is_whitespace) {
                    return Err(err(
                        "account needs one name (account NAME [: OTHER,...])".into()
                    ));
                }
                if accounts.iter().any(|a| a.name == name) {
                    return Err(err(format!("account \"{name}\" is defined twice")));
                }
                let mut settings = defaults.clone();
                let mut alias_of = None;
                if let Some(p) = parents {
                    let list: Vec<&str> = p.split(',').map(str::trim).collect();
                    for parent in &list {
                        let Some(a) = accounts.iter().find(|a| a.name == *parent) else {
                            return Err(err(if parent.is_empty() {
                                "account: an empty name after the colon".to_string()
                            } else {
                                format!("account \"{parent}\" is not defined before this line")
                            }));
                        };
                        for (k, v) in &a.settings {
                            settings.insert(k.clone(), v.clone());
                        }
                    }
                    if list.len() == 1 {
                        alias_of = Some(list[0].to_string());
                    }
                }
                accounts.push(MsmtpAccount {
                    name: name.to_string(),
                    line,
                    settings,
                    alias_of,
                });
                current = Some(Some(accounts.len() - 1));
            }
            c if KNOWN.contains(&c) => {
                let setting = Setting { value: arg, line };
                match current {
                    None => {
                        return Err(err(format!(
                            "{c} before any \"account\" or \"defaults\" line"
                        )))
                    }
                    Some(None) => {
                        defaults.insert(cmd, setting);
                    }
                    Some(Some(i)) => {
                        accounts[i].alias_of = None;
                        accounts[i].settings.insert(cmd, setting);
                    }
                }
            }
            c => return Err(err(format!("unknown command \"{c}\""))),
        }
    }
    Ok(MsmtpFile { accounts })
}

/// `on`/`off` (an empty argument is `on`).
fn on_off(s: &Setting, cmd: &str) -> Result<bool, SyntaxError> {
    match s.value.as_str() {
        "" | "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(SyntaxError {
            line: s.line,
            message: format!("{cmd}: expected on or off"),
        }),
    }
}

/// A TOML basic string.
fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A TOML key: bare when it can be.
fn key(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        s.to_string()
    } else {
        quote(s)
    }
}

/// The result of mapping: TOML text and warnings by line.
struct Mapped {
    toml: String,
    warnings: BTreeMap<(usize, String), ()>,
}

impl Mapped {
    fn warn(&mut self, line: usize, msg: impl Into<String>) {
        self.warnings.insert((line, msg.into()), ());
    }
}

/// Commands postline has no account key for, with the reason shown.
fn unsupported(cmd: &str) -> Option<&'static str> {
    Some(match cmd {
        "aliases" => "not supported by postline (no alias expansion)",
        "dsn_notify" | "dsn_return" => {
            "not supported in postline accounts (use postline send --dsn-notify/--dsn-ret, or sendmail -N/-R)"
        }
        "timeout" => "not supported in postline accounts (use --timeout)",
        "eval" => "not supported (postline does not run commands to read its config)",
        "tls_host_override" => "not supported by postline",
        "tls_crl_file" | "tls_priorities" | "tls_min_dh_prime_bits" => "not supported by postline",
        "ntlmdomain" => "not supported by postline (no NTLM)",
        "maildomain" | "auto_from" | "allow_from_override" | "set_from_header"
        | "set_date_header" | "set_msgid_header" | "add_missing_from_header"
        | "add_missing_date_header" | "remove_bcc_headers" | "keepbcc"
        | "undisclosed_recipients" | "logfile_time_format" => "not supported by postline",
        _ => return None,
    })
}

/// Maps the parsed file to postline's TOML.
fn map(file: &MsmtpFile, source: &Path) -> Result<Mapped, SyntaxError> {
    let mut m = Mapped {
        toml: String::new(),
        warnings: BTreeMap::new(),
    };
    let mut body = String::new();
    let mut written: Vec<String> = Vec::new();
    let default_account = file.accounts.iter().find(|a| a.name == "default");
    for a in &file.accounts {
        if a.name == "default" && a.alias_of.is_some() {
            continue; // becomes the top-level `default = "NAME"`.
        }
        let s = &a.settings;
        let get = |k: &str| s.get(k);
        // msmtp's socket overrides host and port: a Unix socket is postline's server path.
        let socket = get("socket").filter(|v| !v.value.is_empty());
        if let Some(sock) = socket.filter(|v| !v.value.starts_with('/')) {
            m.warn(
                sock.line,
                format!(
                    "account {}: socket {}: postline takes a socket's absolute path; not written",
                    a.name,
                    sock.value.escape_debug()
                ),
            );
            continue;
        }
        let Some(host) = socket.or(get("host").filter(|h| !h.value.is_empty())) else {
            m.warn(a.line, format!("account {}: no host; not written", a.name));
            continue;
        };
        let mut t = format!("\n[accounts.{}]\n", key(&a.name));
        let line = |t: &mut String, k: &str, v: String| {
            t.push_str(&format!("{k} = {v}\n"));
        };
        line(&mut t, "server", quote(&host.value));
        let lmtp = get("protocol").is_some_and(|p| p.value == "lmtp");

        // TLS: msmtp's default is off; tls_starttls defaults to on.
        let tls = match get("tls") {
            Some(v) => on_off(v, "tls")?,
            None => false,
        };
        let starttls = match get("tls_starttls") {
            Some(v) => on_off(v, "tls_starttls")?,
            None => true,
        };
        let port = match get("port").filter(|p| !p.value.is_empty()) {
            Some(p) => match p.value.parse::<u16>() {
                Ok(n) if n > 0 => n,
                _ => {
                    return Err(SyntaxError {
                        line: p.line,
                        message: "port: expected a number from 1 to 65535".into(),
                    })
                }
            },
            None if tls && !starttls => 465,
            None => 25,
        };
        let port_given = get("port").is_some_and(|p| !p.value.is_empty());
        if socket.is_some() {
            if tls {
                m.warn(
                    host.line,
                    "socket: TLS over a Unix socket is not supported by postline; written without",
                );
            }
        } else {
            if lmtp && !port_given {
                // msmtp refuses to send ("port not set"); postline's LMTP port is 24.
                m.warn(
                    a.line,
                    format!("account {}: protocol lmtp without a port (msmtp has no default and refuses to send): postline's default, 24, applies", a.name),
                );
            } else {
                line(&mut t, "port", port.to_string());
            }
            let mode = match (tls, starttls) {
                (false, _) => "none",
                (true, true) => "starttls",
                (true, false) => "implicit",
            };
            line(&mut t, "tls", quote(mode));
        }

        // Authentication.
        let auth = get("auth");
        let auth_value = auth.map(|a| a.value.as_str());
        let auth_on = !matches!(auth_value, None | Some("off"));
        let oauth = matches!(auth_value, Some("oauthbearer" | "xoauth2"));
        if let Some(a) = auth {
            match a.value.as_str() {
                "" | "on" | "off" | "oauthbearer" | "xoauth2" => {}
                "plain" | "login" | "cram-md5" | "scram-sha-256" | "external" => m.warn(
                    a.line,
                    format!(
                        "auth {}: postline accounts cannot force a mechanism (postline picks the strongest offered; postline send --auth {} forces it)",
                        a.value, a.value
                    ),
                ),
                other => m.warn(
                    a.line,
                    format!("auth {other}: not supported by postline"),
                ),
            }
        }
        if auth_on {
            if let Some(u) = get("user") {
                line(&mut t, "user", quote(&u.value));
            }
            if let Some(p) = get("passwordeval") {
                let k = if oauth {
                    "oauth_token_cmd"
                } else {
                    "password_cmd"
                };
                line(&mut t, k, quote(&p.value));
            }
        } else {
            for k in ["user", "passwordeval"] {
                if let Some(v) = get(k) {
                    m.warn(
                        v.line,
                        format!("{k}: not written for account {} (auth is off)", a.name),
                    );
                }
            }
        }
        if let Some(p) = get("password") {
            m.warn(
                p.line,
                "password: not copied (postline never stores a password in its config file); \
                 use password_cmd, password_env or password_file",
            );
        }

        if let Some(f) = get("from").filter(|f| !f.value.is_empty()) {
            line(&mut t, "from", quote(&f.value));
        }
        if let Some(d) = get("domain").filter(|d| !d.value.is_empty()) {
            line(&mut t, "helo", quote(&d.value));
        }
        if let Some(f) = get("tls_trust_file").filter(|f| !f.value.is_empty()) {
            if f.value == "system" {
                line(&mut t, "system_roots", "true".into());
            } else {
                line(&mut t, "ca_file", quote(&f.value));
            }
        }
        if let Some(f) = get("tls_fingerprint").filter(|f| !f.value.is_empty()) {
            let hex: String = f.value.chars().filter(|c| *c != ':').collect();
            if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                line(&mut t, "tls_fingerprint", quote(&f.value));
            } else {
                m.warn(
                    f.line,
                    "tls_fingerprint: not a SHA-256 fingerprint (postline takes SHA-256 only)",
                );
            }
        }
        if let Some(c) = get("tls_certcheck") {
            if !on_off(c, "tls_certcheck")? {
                m.warn(
                    c.line,
                    "tls_certcheck off: not supported in postline accounts (use tls_fingerprint)",
                );
            }
        }
        if let Some(c) = get("tls_nocertcheck") {
            m.warn(
                c.line,
                "tls_nocertcheck: not supported in postline accounts (use tls_fingerprint)",
            );
        }
        if let Some(f) = get("tls_cert_file").filter(|f| !f.value.is_empty()) {
            line(&mut t, "cert", quote(&f.value));
        }
        if let Some(f) = get("tls_key_file").filter(|f| !f.value.is_empty()) {
            line(&mut t, "key", quote(&f.value));
        }
        if let Some(f) = get("logfile").filter(|f| !f.value.is_empty()) {
            if f.value == "-" {
                m.warn(
                    f.line,
                    "logfile -: logging to stdout is not supported by postline",
                );
            } else {
                line(&mut t, "log_file", quote(&f.value));
            }
        }
        if let Some(v) = get("syslog") {
            match v.value.as_str() {
                "off" => {}
                "" | "on" | "LOG_MAIL" => line(&mut t, "log", quote("syslog")),
                _ => m.warn(
                    v.line,
                    "syslog: only facility LOG_MAIL is supported by postline",
                ),
            }
        }
        if let Some(h) = get("proxy_host").filter(|h| !h.value.is_empty()) {
            let host = if h.value.contains(':') {
                format!("[{}]", h.value)
            } else {
                h.value.clone()
            };
            let port = match get("proxy_port").filter(|p| !p.value.is_empty()) {
                Some(p) => match p.value.parse::<u16>() {
                    Ok(n) if n > 0 => n,
                    _ => {
                        return Err(SyntaxError {
                            line: p.line,
                            message: "proxy_port: expected a number from 1 to 65535".into(),
                        })
                    }
                },
                None => 1080,
            };
            line(&mut t, "proxy", quote(&format!("socks5://{host}:{port}")));
        }
        if let Some(ip) = get("source_ip").filter(|i| !i.value.is_empty()) {
            if ip.value.parse::<std::net::IpAddr>().is_ok() {
                line(&mut t, "source_address", quote(&ip.value));
            } else {
                m.warn(
                    ip.line,
                    "source_ip: not an IP address (postline's source_address takes one)",
                );
            }
        }
        if let Some(p) = get("protocol") {
            match p.value.as_str() {
                "" | "smtp" => {}
                "lmtp" => line(&mut t, "protocol", quote("lmtp")),
                _ => m.warn(p.line, "protocol: expected smtp or lmtp"),
            }
        }
        for (k, v) in s {
            if let Some(why) = unsupported(k) {
                m.warn(v.line, format!("{k}: {why}"));
            }
        }
        body.push_str(&t);
        written.push(a.name.clone());
    }

    m.toml.push_str(&format!(
        "# Imported from {} by postline config import-msmtprc.\n",
        source.display()
    ));
    if let Some(d) = default_account {
        match &d.alias_of {
            Some(target) if written.contains(target) => {
                m.toml.push_str(&format!("default = {}\n", quote(target)));
            }
            Some(target) => m.warn(
                d.line,
                format!("account default : {target}: {target} was not written, so no default"),
            ),
            None if written.iter().any(|n| n == "default") => {
                m.toml.push_str("default = \"default\"\n");
            }
            None => {}
        }
    }
    m.toml.push_str(&body);
    Ok(m)
}

/// Where msmtp looks: `~/.msmtprc`, else `$XDG_CONFIG_HOME/msmtp/config` (or
/// `~/.config/msmtp/config`).
fn default_source() -> Option<PathBuf> {
    let var = |n: &str| {
        std::env::var_os(n)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let home = var("HOME");
    if let Some(h) = &home {
        let p = h.join(".msmtprc");
        if p.exists() {
            return Some(p);
        }
    }
    let xdg = var("XDG_CONFIG_HOME")
        .filter(|p| p.is_absolute())
        .or_else(|| home.as_ref().map(|h| h.join(".config")))?;
    let p = xdg.join("msmtp").join("config");
    if p.exists() {
        return Some(p);
    }
    home.map(|h| h.join(".msmtprc"))
}

/// `postline config import-msmtprc`.
pub fn run(file: Option<&Path>, output: Option<&Path>, force: bool) -> Result<u8, Fail> {
    let source = match file {
        Some(f) => f.to_path_buf(),
        None => default_source().ok_or_else(|| {
            Fail::new(
                exit::NOINPUT,
                "no msmtp configuration found: HOME is not set",
            )
        })?,
    };
    let text = match std::fs::read_to_string(&source) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Fail::new(
                exit::NOINPUT,
                format!("{}: not found", source.display()),
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            return Err(Fail::new(
                exit::DATAERR,
                format!("{}: not valid UTF-8", source.display()),
            ))
        }
        Err(e) => {
            return Err(Fail::new(
                exit::NOINPUT,
                format!("{}: cannot read: {e}", source.display()),
            ))
        }
    };
    let syntax = |e: SyntaxError| {
        Fail::new(
            exit::CONFIG,
            format!("{} line {}: {}", source.display(), e.line, e.message),
        )
    };
    let parsed = parse(&text).map_err(syntax)?;
    let mapped = map(&parsed, &source).map_err(syntax)?;

    // The output must load as postline's config (relative paths as from the output's place).
    let check_path = output.map_or_else(|| PathBuf::from("config.toml"), Path::to_path_buf);
    if let Err(e) = crate::account::parse(&check_path, &mapped.toml) {
        return Err(Fail::new(
            exit::CONFIG,
            format!("the imported configuration does not load: {e}"),
        ));
    }

    match output {
        None => {
            if !crate::output::write_stdout(mapped.toml.as_bytes()) {
                return Err(Fail::new(exit::CANTCREAT, "cannot write to stdout"));
            }
        }
        Some(path) => write_private(path, mapped.toml.as_bytes(), force)?,
    }
    for (line, msg) in mapped.warnings.keys() {
        errln!("postline: {} line {line}: {msg}", source.display());
    }
    Ok(if mapped.warnings.is_empty() {
        exit::OK
    } else {
        UNMAPPED
    })
}

/// Writes `data` to a new file of mode 0600 (an existing one only with `force`).
fn write_private(path: &Path, data: &[u8], force: bool) -> Result<(), Fail> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).mode(0o600);
    if force {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    let mut f = opts.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            Fail::new(
                exit::CANTCREAT,
                format!("{} exists; --force overwrites it", path.display()),
            )
        } else {
            Fail::new(
                exit::CANTCREAT,
                format!("cannot create {}: {e}", path.display()),
            )
        }
    })?;
    use std::os::unix::fs::PermissionsExt;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .and_then(|()| f.write_all(data))
        .and_then(|()| f.sync_all())
        .map_err(|e| {
            Fail::new(
                exit::CANTCREAT,
                format!("cannot write {}: {e}", path.display()),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn import(text: &str) -> (String, Vec<String>) {
        let m = map(&parse(text).unwrap(), Path::new("/h/.msmtprc")).unwrap();
        crate::account::parse(Path::new("/x/config.toml"), &m.toml).unwrap();
        let w = m
            .warnings
            .keys()
            .map(|(l, msg)| format!("line {l}: {msg}"))
            .collect();
        (m.toml, w)
    }

    #[test]
    fn msmtprc_defaults_inheritance_and_default() {
        let (toml, w) = import(
            "# comment\ndefaults\ntls on\nauth on\n\naccount a\nhost smtp.a.test\nuser \"me x\"\npasswordeval \"pass show \\\"a\\\" x\\\\n\"\nfrom me@a.test\n\naccount b : a\nfrom other@a.test\ntls_starttls off\n\naccount default : b\n",
        );
        assert!(w.is_empty(), "{w:?}");
        assert!(toml.contains("default = \"b\"\n"), "{toml}");
        assert!(toml.contains("[accounts.a]\nserver = \"smtp.a.test\"\nport = 25\ntls = \"starttls\"\nuser = \"me x\"\npassword_cmd = 'pass show \\\"a\\\" x\\\\n'\nfrom = \"me@a.test\"\n"), "{toml}");
        assert!(
            toml.contains("[accounts.b]\nserver = \"smtp.a.test\"\nport = 465\ntls = \"implicit\""),
            "{toml}"
        );
        assert!(toml.contains("from = \"other@a.test\""), "{toml}");
        assert!(!toml.contains("[accounts.default]"), "{toml}");
    }

    #[test]
    fn msmtprc_unmapped_and_password() {
        let (toml, w) = import(
            "account a\nhost h\nauth plain\nuser u\npassword hunter2\ntls_crl_file /x\naliases /etc/aliases\ndsn_notify never\n",
        );
        assert!(!toml.contains("hunter2"));
        assert_eq!(w.len(), 5, "{w:?}");
        assert!(w[0].starts_with("line 3: auth plain:"), "{w:?}");
        assert!(w[1].starts_with("line 5: password: not copied"), "{w:?}");
        assert_eq!(w[2], "line 6: tls_crl_file: not supported by postline");
        assert!(w.iter().all(|l| !l.contains("hunter2")));
    }

    #[test]
    fn msmtprc_mapped_extras() {
        let (toml, w) = import(
            "account a\nhost h\ntls on\ntls_trust_file system\ntls_cert_file ~/c.pem\ntls_key_file ~/k.pem\nlogfile ~/log\nsyslog LOG_MAIL\ndomain me.test\nproxy_host ::1\nproxy_port 9050\nsource_ip 127.0.0.1\nauth oauthbearer\nuser u\npasswordeval tok\n",
        );
        assert!(w.is_empty(), "{w:?}");
        for want in [
            "system_roots = true",
            "cert = \"~/c.pem\"",
            "key = \"~/k.pem\"",
            "log_file = \"~/log\"",
            "log = \"syslog\"",
            "helo = \"me.test\"",
            "proxy = \"socks5://[::1]:9050\"",
            "source_address = \"127.0.0.1\"",
            "oauth_token_cmd = \"tok\"",
        ] {
            assert!(toml.contains(want), "{want}: {toml}");
        }
    }

    #[test]
    fn msmtprc_sockets_and_lmtp() {
        let (toml, w) = import(
            "account store\nsocket /run/dovecot/lmtp\nprotocol lmtp\n\naccount net\nhost mailstore\nprotocol lmtp\n\naccount rel\nhost h\nsocket run/x\n",
        );
        assert!(
            toml.contains("[accounts.store]\nserver = \"/run/dovecot/lmtp\"\nprotocol = \"lmtp\""),
            "{toml}"
        );
        assert!(!toml.contains("port = 25"), "{toml}");
        assert!(!toml.contains("[accounts.rel]"), "{toml}");
        assert!(
            w.iter().any(|l| l.contains("protocol lmtp without a port")),
            "{w:?}"
        );
        assert!(w.iter().any(|l| l.contains("absolute path")), "{w:?}");
    }

    #[test]
    fn msmtprc_syntax_errors_name_the_line() {
        let e = |t: &str| {
            let r = parse(t).and_then(|f| map(&f, Path::new("x")).map(|_| ()));
            r.unwrap_err()
        };
        let x = e("account a\nhost h\npassword \"sec ret\n");
        assert_eq!(x.line, 3);
        assert!(x.message.contains("unterminated"), "{x:?}");
        assert!(!x.message.contains("sec"), "{x:?}");
        assert_eq!(e("host h\n").line, 1);
        assert_eq!(e("account a\nhots h\n").line, 2);
        assert_eq!(e("account a : b\n").line, 1);
        assert_eq!(e("account a\nhost h\ntls maybe\n").line, 3);
        assert_eq!(e("account a\nhost h\nport x\n").line, 3);
        assert_eq!(e("account a\naccount a\n").line, 2);
    }
}
