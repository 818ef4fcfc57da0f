//! Command-line arguments (clap derive).

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::TypedValueParser as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::account::TlsMode;

/// Send mail over SMTP: correct to the RFCs, fast on the wire, hard to trick.
#[derive(Debug, Parser)]
#[command(name = "postline", version, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compose (or take) a message and send it.
    Send(Box<SendArgs>),
    /// A drop-in for /usr/sbin/sendmail: the message on stdin, recipients as arguments.
    /// Also selected when the binary is invoked as `sendmail`.
    #[command(disable_help_flag = true)]
    Sendmail {
        /// sendmail's flags and recipients, as sendmail takes them.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Connect to a server and report what it offers: banner, extensions, TLS, AUTH.
    Probe(Box<ProbeArgs>),
    /// Print a shell completion script.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// The outbound queue: messages that met a transient failure wait here and are retried
    /// (1 min, doubling, at most 1 h apart, for up to 5 days). In a spool directory, or in
    /// PostgreSQL shared by several nodes (--queue-url, after `postline queue migrate`).
    Queue(QueueArgs),
    /// Print the man page (roff).
    Man,
    /// Configuration: import another program's.
    #[command(subcommand)]
    Config(ConfigCommand),
}

/// `postline config`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print msmtp's configuration as postline accounts (TOML). Settings postline cannot
    /// map are listed on stderr by line, and the exit code is then 1 (0: everything mapped).
    /// A `password` is never copied.
    ImportMsmtprc {
        /// msmtp's file [default: ~/.msmtprc, else $XDG_CONFIG_HOME/msmtp/config].
        file: Option<PathBuf>,
        /// Write to this file (created with mode 0600) instead of stdout.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Overwrite the --output file when it exists.
        #[arg(long, requires = "output")]
        force: bool,
    },
}

/// `postline queue`.
#[derive(Debug, Clone, Args)]
pub struct QueueArgs {
    /// The spool directory [default: $XDG_STATE_HOME/postline/queue].
    #[arg(long, value_name = "DIR", env = "POSTLINE_QUEUE_DIR", global = true)]
    pub queue_dir: Option<PathBuf>,
    /// The queue in PostgreSQL instead of a spool: postgres://USER@HOST[:PORT]/DB (the
    /// password from PGPASSWORD); it wins over --queue-dir [default: the default account's
    /// queue_url].
    #[arg(long, value_name = "URL", env = "POSTLINE_QUEUE_URL", global = true)]
    pub queue_url: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: QueueCommand,
}

/// The `queue` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum QueueCommand {
    /// One line per queued message: id, age, recipients, attempts, next try, last error.
    List {
        /// A JSON array on stdout instead.
        #[arg(long)]
        json: bool,
    },
    /// One pass over the messages that are due. Exit 0 when the pass ran (even if messages
    /// stay queued), 75 when the spool cannot be opened or the database cannot be reached,
    /// 78 when the database has no queue schema (run `postline queue migrate`).
    Run {
        /// Keep running, retrying on schedule; SIGTERM or SIGINT finishes the message in hand
        /// and exits 0.
        #[arg(long)]
        daemon: bool,
        /// Print each SMTP transcript on stderr.
        #[arg(short, long)]
        verbose: bool,
    },
    /// Try every queued message now, due or not (or only the ones named). Exit 66 when a
    /// named message is not queued.
    Flush {
        /// Only these queue ids.
        ids: Vec<String>,
        /// Print each SMTP transcript on stderr.
        #[arg(short, long)]
        verbose: bool,
    },
    /// Print one message's entry: envelope, per-recipient state, route, attempts. Exit 66 when
    /// there is no such message, 64 for something that is not a queue id.
    Show {
        /// The queue id.
        id: String,
        /// The entry as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a queued message without sending it. Exit 66 when there is no such message, 75
    /// while a runner is delivering it.
    Remove {
        /// The queue id.
        id: String,
    },
    /// Release recipients held in doubt (the server may already have the message) so the
    /// next run sends to them again.
    Release {
        /// The queue id.
        id: String,
    },
    /// Create or upgrade the queue's schema in PostgreSQL (--queue-url, POSTLINE_QUEUE_URL or
    /// the default account's queue_url); safe to run again, and from several nodes at once.
    /// Exit 64 without a database (a spool has no schema), 75 when it cannot be reached.
    Migrate,
}

/// `--auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthArg {
    /// PLAIN (RFC 4616).
    Plain,
    /// LOGIN.
    Login,
    /// CRAM-MD5 (RFC 2195).
    CramMd5,
    /// XOAUTH2.
    Xoauth2,
    /// OAUTHBEARER (RFC 7628).
    Oauthbearer,
    /// SCRAM-SHA-256 (RFC 7677).
    #[value(name = "scram-sha-256")]
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
    /// SCRAM-SHA-256-PLUS: SCRAM bound to the TLS channel (TLS only).
    #[value(name = "scram-sha-256-plus")]
    #[serde(rename = "scram-sha-256-plus")]
    ScramSha256Plus,
    /// EXTERNAL: the identity of the TLS client certificate; no password (TLS only).
    External,
}

impl AuthArg {
    pub fn mechanism(self) -> postline::Mechanism {
        match self {
            AuthArg::Plain => postline::Mechanism::Plain,
            AuthArg::Login => postline::Mechanism::Login,
            AuthArg::CramMd5 => postline::Mechanism::CramMd5,
            AuthArg::Xoauth2 => postline::Mechanism::XOAuth2,
            AuthArg::Oauthbearer => postline::Mechanism::OAuthBearer,
            AuthArg::ScramSha256 => postline::Mechanism::ScramSha256,
            AuthArg::ScramSha256Plus => postline::Mechanism::ScramSha256Plus,
            AuthArg::External => postline::Mechanism::External,
        }
    }
}

/// Where to connect, how, and as whom. Serialized as a queued message's route: it names where
/// secrets come from (a variable, a file, a command), never a secret itself.
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerArgs {
    /// The server, HOST[:PORT] (IPv6 as [ADDR]:PORT), or the absolute path of a Unix
    /// socket (/run/dovecot/lmtp).
    #[arg(long, value_name = "HOST[:PORT]|PATH")]
    pub server: Option<String>,
    /// The protocol: smtp, or lmtp (RFC 2033) to deliver into a mail store such as
    /// Dovecot or Cyrus, with a result per recipient. LMTP's port is 24 by default, with
    /// STARTTLS when offered over TCP.
    #[arg(long, value_enum, value_name = "PROTOCOL", ignore_case = true)]
    pub protocol: Option<crate::account::Protocol>,
    /// An account from the config file ($POSTLINE_CONFIG, else
    /// $XDG_CONFIG_HOME/postline/config.toml); flags override its settings.
    #[arg(long, value_name = "NAME")]
    pub account: Option<String>,
    /// Without --server (and no account), mail goes straight to each recipient domain's
    /// exchangers (MX records); this name server answers those lookups [default: the
    /// system's resolver].
    #[arg(long, value_name = "IP:PORT")]
    pub dns_server: Option<std::net::SocketAddr>,
    /// The exchangers' port for direct delivery (tests and unusual networks).
    #[arg(long, value_name = "PORT", hide = true, value_parser = clap::value_parser!(u16).range(1..))]
    pub mx_port: Option<u16>,
    /// TLS mode [default: implicit for port 465, starttls otherwise; opportunistic for direct
    /// delivery, where starttls means required and verified, and for --protocol lmtp; none
    /// for a Unix socket].
    #[arg(long, value_enum)]
    pub tls: Option<TlsMode>,
    /// Trust the CA certificates in this PEM file too; a server's own self-signed certificate
    /// given here is trusted as itself.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Also trust the operating system's certificate store (the built-in roots are always
    /// trusted).
    #[arg(long)]
    pub system_roots: bool,
    /// Trust the server only if its certificate's SHA-256 fingerprint is this (hex, colons
    /// optional, as `postline probe` and `openssl x509 -fingerprint -sha256` print it);
    /// replaces chain, name and date checks.
    #[arg(long, value_name = "SHA256")]
    pub tls_fingerprint: Option<String>,
    /// Trust the server only if its public key's SHA-256 is this (`sha256//BASE64`, as curl's
    /// --pinnedpubkey and `postline probe` print it; several separated by `;`); replaces
    /// chain, name and date checks.
    #[arg(long, value_name = "sha256//BASE64")]
    pub pinned_pubkey: Option<String>,
    /// Present this client certificate (PEM, optionally followed by its chain) when the
    /// server asks; its key comes from --key, else from this same file.
    #[arg(long, value_name = "PEM")]
    pub cert: Option<PathBuf>,
    /// The private key of --cert (PEM).
    #[arg(long, value_name = "PEM")]
    pub key: Option<PathBuf>,
    /// Skip certificate verification (prints a warning): no protection against an attacker.
    #[arg(long)]
    pub insecure: bool,
    /// Send with REQUIRETLS (RFC 8689): every hop must keep the message on verified TLS; a
    /// server that does not offer it is not sent the message. Implies verified TLS.
    #[arg(long)]
    pub require_tls: bool,
    /// The name to announce in EHLO [default: this host's fully qualified name, else the
    /// address literal of the connection's local end, e.g. [192.0.2.1]].
    #[arg(long, value_name = "NAME")]
    pub helo: Option<String>,
    /// Cap every phase's timeout, in seconds, 0.001 to 86400 [default: RFC 5321's, 2 to 10
    /// minutes].
    // Values starting with '-' reach parse_timeout, which says why `-1` or `-inf` is refused.
    #[arg(long, value_name = "SECS", value_parser = parse_timeout, allow_hyphen_values = true)]
    pub timeout: Option<f64>,
    /// Allow credentials over a connection without TLS.
    #[arg(long)]
    pub allow_plaintext_auth: bool,
    /// User name to authenticate as (with --auth external: the identity to act as, if not
    /// the certificate's own).
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Read the password from this environment variable.
    #[arg(long, value_name = "VAR", group = "password")]
    pub password_env: Option<String>,
    /// Read the password from the first line of this file (must not be readable by others).
    #[arg(long, value_name = "PATH", group = "password")]
    pub password_file: Option<PathBuf>,
    /// Read the password from the first line this shell command prints.
    #[arg(long, value_name = "CMD", group = "password")]
    pub password_cmd: Option<String>,
    /// Read an OAuth 2.0 access token from this environment variable.
    #[arg(long, value_name = "VAR", group = "password")]
    pub oauth_token_env: Option<String>,
    /// Read an OAuth 2.0 access token from the first line this shell command prints.
    #[arg(long, value_name = "CMD", group = "password")]
    pub oauth_token_cmd: Option<String>,
    /// Use this SASL mechanism instead of the strongest one offered. Unforced, a password
    /// uses SCRAM-SHA-256-PLUS (under TLS), SCRAM-SHA-256, PLAIN, then LOGIN, and CRAM-MD5
    /// only when nothing else is offered; a token OAUTHBEARER, then XOAUTH2. Without TLS
    /// nothing is sent unless --allow-plaintext-auth. `external` authenticates with the TLS
    /// client certificate; --user then names an identity to act as.
    #[arg(long, value_enum)]
    pub auth: Option<AuthArg>,
    /// Accept a --password-file that group or others can read.
    #[arg(long)]
    pub allow_world_readable_password: bool,
    /// Connect through this SOCKS5 proxy: socks5://[USER[:PASS]@]HOST[:PORT] (port 1080 by
    /// default; socks5h:// is the same). The server's name is sent to the proxy, which
    /// resolves it. Prefer --proxy-password-env or --proxy-password-file to a password in the
    /// URL (others can read a command line); the password is never printed.
    #[arg(long, value_name = "URL")]
    #[serde(skip_serializing)]
    pub proxy: Option<String>,
    /// Read the proxy password from this environment variable (the user is the URL's).
    #[arg(long, value_name = "VAR", group = "proxy_password")]
    pub proxy_password_env: Option<String>,
    /// Read the proxy password from the first line of this file (must not be readable by
    /// others).
    #[arg(long, value_name = "PATH", group = "proxy_password")]
    pub proxy_password_file: Option<PathBuf>,
    /// Connect from this local IP address (it must be one of this host's); only the server's
    /// (or the proxy's) addresses of the same family are tried.
    #[arg(long, value_name = "IP")]
    pub source_address: Option<std::net::IpAddr>,
    /// Print the SMTP transcript (C:/S: lines, credentials replaced by ***) on stderr.
    #[arg(short, long)]
    #[serde(skip)]
    pub verbose: bool,
    /// Print one JSON object with the result on stdout.
    #[arg(long)]
    #[serde(skip)]
    pub json: bool,
}

/// The shortest `--timeout`, in seconds: below a millisecond every read would time out.
pub const MIN_TIMEOUT_SECS: f64 = 0.001;
/// The longest `--timeout`, in seconds (24 hours): RFC 5321's longest timer is 10 minutes.
pub const MAX_TIMEOUT_SECS: f64 = 86_400.0;

/// `--timeout SECS` as a duration: a number from [`MIN_TIMEOUT_SECS`] to [`MAX_TIMEOUT_SECS`]
/// (not infinite, not NaN, not negative). Also checks a value read back from a queued route.
pub fn timeout_duration(secs: f64) -> Result<Duration, String> {
    if !(MIN_TIMEOUT_SECS..=MAX_TIMEOUT_SECS).contains(&secs) {
        return Err(format!(
            "must be a number of seconds from {MIN_TIMEOUT_SECS} to {MAX_TIMEOUT_SECS} (24 hours)"
        ));
    }
    Duration::try_from_secs_f64(secs).map_err(|e| e.to_string())
}

/// clap's parser for `--timeout`: refuses what [`timeout_duration`] refuses.
fn parse_timeout(s: &str) -> Result<f64, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| "not a number of seconds".to_string())?;
    timeout_duration(secs).map(|_| secs)
}

/// Where `--quit-after` stops. Names as swaks spells them, in either case; swaks' `helo`
/// (after the last EHLO, over TLS when STARTTLS is used) is `tls` here, and its
/// `first-helo` is `helo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QuitAfter {
    /// After the greeting, as `banner` (swaks' synonym).
    Connect,
    /// After the greeting: no EHLO.
    Banner,
    /// After the first EHLO (LHLO, HELO) reply: no STARTTLS, no AUTH (swaks' first-helo).
    #[value(alias = "first-helo", alias = "first-ehlo", alias = "first-lhlo")]
    Helo,
    /// After STARTTLS and the EHLO over TLS (with no STARTTLS, after EHLO): no AUTH.
    Tls,
    /// After AUTH.
    Auth,
    /// After MAIL FROM.
    #[value(alias = "from")]
    Mail,
    /// After every RCPT TO.
    #[value(alias = "to")]
    Rcpt,
}

/// `postline probe`.
#[derive(Debug, Clone, Default, Args)]
pub struct ProbeArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Stop after this step and say QUIT: `connect`/`banner` (the greeting only, no EHLO),
    /// `helo` (the EHLO reply in clear text, no STARTTLS), `tls` (the default: STARTTLS or
    /// implicit TLS, the certificate and the EHLO over TLS) or `auth`: after the probe, a
    /// session opened as `send` would open it authenticates with the credentials given
    /// (without --quit-after auth a probe never sends credentials) and the server's answer is
    /// reported. `mail` and `rcpt` need an envelope, which a probe has not: use `postline send
    /// --quit-after mail|rcpt`. Exit 0 when every step was accepted, else the code `send`
    /// gives for the same failure (77 for a wrong password).
    #[arg(long, value_enum, value_name = "STAGE", ignore_case = true)]
    pub quit_after: Option<QuitAfter>,
}

/// `postline send`.
#[derive(Debug, Clone, Default, Args)]
pub struct SendArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Envelope sender and From address [default: the account's `from`].
    #[arg(long, value_name = "ADDR")]
    pub from: Option<String>,
    /// Recipient (repeatable, or comma-separated).
    #[arg(long, value_name = "ADDR", value_delimiter = ',')]
    pub to: Vec<String>,
    /// Copy recipient (repeatable, or comma-separated).
    #[arg(long, value_name = "ADDR", value_delimiter = ',')]
    pub cc: Vec<String>,
    /// Blind copy recipient: in the envelope only, never in the headers.
    #[arg(long, value_name = "ADDR", value_delimiter = ',')]
    pub bcc: Vec<String>,
    /// Subject (any language: encoded as RFC 2047 requires).
    #[arg(long, value_name = "TEXT")]
    pub subject: Option<String>,
    /// The text body.
    #[arg(long, value_name = "TEXT", conflicts_with = "body_file")]
    pub body: Option<String>,
    /// Read the text body from a file (- for stdin).
    #[arg(long, value_name = "PATH")]
    pub body_file: Option<PathBuf>,
    /// An HTML body (with a text body: multipart/alternative).
    #[arg(long, value_name = "PATH")]
    pub html_file: Option<PathBuf>,
    /// Attach a file (repeatable); its type is guessed from its name.
    #[arg(long, value_name = "PATH")]
    pub attach: Vec<PathBuf>,
    /// An extra header, 'Name: value' (repeatable).
    #[arg(long, value_name = "'Name: value'")]
    pub header: Vec<String>,
    /// Priority (X-Priority and Importance headers).
    #[arg(long, value_enum)]
    pub priority: Option<Priority>,
    /// Reply-To address.
    #[arg(long, value_name = "ADDR")]
    pub reply_to: Option<String>,
    /// Send this ready RFC 5322 message as it is (- for stdin) instead of composing one.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["subject", "body", "body_file", "html_file", "attach", "header", "priority", "reply_to"])]
    pub message: Option<PathBuf>,
    /// With --message: take recipients from its To, Cc and Bcc headers too.
    #[arg(short = 't', long = "extract-recipients", requires = "message")]
    pub extract: bool,
    /// A ready message (--message) with a line longer than 998 octets (RFC 5322 2.1.1) is
    /// refused (exit 65) unless this is given: then such lines are broken as Postfix's
    /// smtp_line_length_limit does (after 998 octets, CRLF and a space, each continuation
    /// at most 998 octets with its space; never inside a UTF-8 character).
    #[arg(long, requires = "message")]
    pub fold_long_lines: bool,
    /// DSN (RFC 3461) NOTIFY: when the servers should report on each recipient: `never`,
    /// or some of `success`, `failure`, `delay` (comma-separated). Sent only to a server
    /// that offers DSN (else a note on stderr, and the message goes without).
    #[arg(long, value_name = "never|success,failure,delay", value_parser = parse_notify_arg)]
    pub dsn_notify: Option<NotifyArg>,
    /// DSN (RFC 3461) RET: what a delivery status notification returns: the full message or
    /// only its headers.
    #[arg(long, value_name = "full|hdrs", value_parser = clap::builder::PossibleValuesParser::new(["full", "hdrs"]).map(|s| crate::dsn::parse_ret(&s).expect("listed value")))]
    pub dsn_ret: Option<postline_queue::DsnRet>,
    /// DSN (RFC 3461) ENVID: an id the notifications quote back (1 to 100 printable
    /// US-ASCII characters, no spaces).
    #[arg(long, value_name = "ID", value_parser = crate::dsn::parse_envid)]
    pub dsn_envid: Option<String>,
    /// DSN (RFC 3461) ORCPT: name each recipient as the original recipient, so
    /// notifications say whom it was sent to even after forwarding.
    #[arg(long)]
    pub dsn_orcpt: bool,
    /// Exit 0 when some recipients were refused but the message went to the others.
    #[arg(long)]
    pub partial_ok: bool,
    /// Stop after this step and say QUIT, sending no message: `connect`/`banner` (the
    /// greeting), `helo`, `tls`, `auth`, `mail` (MAIL FROM only) or `rcpt` (MAIL and every
    /// RCPT, each recipient's reply reported: does the server accept these addresses?).
    /// Never DATA. The exit code is what `send` would give for
    /// the same replies (0 when every step was accepted).
    #[arg(long, value_enum, value_name = "STAGE", ignore_case = true, conflicts_with_all = ["queue", "queue_only"])]
    pub quit_after: Option<QuitAfter>,
    /// Queue what a transient failure (4xx, connection lost, timeout) kept from being
    /// delivered, for `postline queue run` to retry; exit 0 with a note on stderr.
    #[arg(long)]
    pub queue: bool,
    /// Queue the message without trying to send it now; prints its queue id.
    #[arg(long, conflicts_with = "queue")]
    pub queue_only: bool,
    /// Append a line per message to this file (msmtp's logfile fields: host, tls, auth,
    /// user, from, recipients, mailsize, smtpstatus, smtpmsg, errormsg, exitcode) [default:
    /// the account's log_file]. Created 0600; a failure to write it is a warning, never a
    /// failed message.
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,
    /// The spool directory for --queue [default: $XDG_STATE_HOME/postline/queue].
    #[arg(long, value_name = "DIR", env = "POSTLINE_QUEUE_DIR")]
    pub queue_dir: Option<PathBuf>,
    /// The queue in PostgreSQL for --queue instead of a spool: postgres://USER@HOST[:PORT]/DB
    /// (the password from PGPASSWORD); it wins over --queue-dir [default: the account's
    /// queue_url].
    #[arg(long, value_name = "URL", env = "POSTLINE_QUEUE_URL")]
    pub queue_url: Option<String>,
    /// DKIM-sign the message with this PEM private key (RSA: rsa-sha256, Ed25519:
    /// ed25519-sha256); with --dkim-selector and --dkim-domain [default: the account's
    /// dkim_key, dkim_selector, dkim_domain].
    #[arg(long, value_name = "PATH")]
    pub dkim_key: Option<PathBuf>,
    /// The DKIM selector (s=): the key is published at SELECTOR._domainkey.DOMAIN.
    #[arg(long, value_name = "SELECTOR")]
    pub dkim_selector: Option<String>,
    /// The DKIM signing domain (d=).
    #[arg(long, value_name = "DOMAIN")]
    pub dkim_domain: Option<String>,
}

/// `--dsn-notify`'s value: `[never]` or some of success, failure, delay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyArg(pub Vec<postline_queue::NotifyOn>);

fn parse_notify_arg(s: &str) -> Result<NotifyArg, String> {
    crate::dsn::parse_notify(s).map(NotifyArg)
}

/// `--priority`: the library's [`postline::Priority`] as a command-line value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Priority {
    /// X-Priority: 1 (Highest), Importance: high.
    High,
    /// X-Priority: 3 (Normal), Importance: normal.
    Normal,
    /// X-Priority: 5 (Lowest), Importance: low.
    Low,
}

impl From<Priority> for postline::Priority {
    fn from(p: Priority) -> Self {
        match p {
            Priority::High => postline::Priority::High,
            Priority::Normal => postline::Priority::Normal,
            Priority::Low => postline::Priority::Low,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_in_range_only() {
        assert_eq!(parse_timeout("5"), Ok(5.0));
        assert_eq!(parse_timeout("0.5"), Ok(0.5));
        assert_eq!(parse_timeout("86400"), Ok(86_400.0));
        assert_eq!(timeout_duration(0.001), Ok(Duration::from_millis(1)));
        for bad in [
            "0", "-0", "-1", "1e-300", "0.0009", "86400.5", "1e20", "1e308", "1e999", "inf",
            "-inf", "infinity", "nan", "NaN", "", "abc", "0x10", "5s",
        ] {
            assert!(parse_timeout(bad).is_err(), "{bad:?} accepted");
        }
        assert!(timeout_duration(f64::NAN).is_err());
        assert!(timeout_duration(f64::MAX).is_err());
    }
}
