//! The outbound queue from the command line: `send --queue`, sendmail mode's queue on
//! failure, and `postline queue list|run|flush|show|remove|release|migrate`: thin layers
//! over [`postline_queue`]'s stores (a spool directory, or PostgreSQL) and runner.
//!
//! A queued message's route is a [`postline_queue::Route`]: the account by name and the
//! connection flags, never a secret's value and never a command. The runner resolves it at
//! each attempt with [`connect::target`], so a fixed config file or a rotated password
//! applies to what is already queued.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use postline::delivery::{Delivery, DeliveryStatus};
use postline::{Envelope, Error};
use postline_queue::{
    AnyStore, Destination, Dsn, DsnRet, Entry, LoadError, PgStore, Policy, RecipientStatus, Route,
    RouteTls, RunReport, Runner, Secret, Smtp, Spool, Store,
};
use serde_json::{json, Value};

use crate::account::{Account, TlsMode};
use crate::args::{AuthArg, QueueArgs, QueueCommand, ServerArgs};
use crate::connect::{self, Fail, Target};
use crate::exit;
use crate::output::{self, errln, escape, outln};

/// A run sending more messages than this shows a progress bar (on a terminal).
const PROGRESS_OVER: usize = 5;

/// How many times (a second apart) a one-shot run tries again to write results it could
/// not write, before it exits.
const UNRECORDED_RETRIES: usize = 10;

fn route_tls(t: TlsMode) -> RouteTls {
    match t {
        TlsMode::Starttls => RouteTls::Starttls,
        TlsMode::Implicit => RouteTls::Implicit,
        TlsMode::Opportunistic => RouteTls::Opportunistic,
        TlsMode::None => RouteTls::None,
    }
}

fn tls_mode(t: RouteTls) -> TlsMode {
    match t {
        RouteTls::Starttls => TlsMode::Starttls,
        RouteTls::Implicit => TlsMode::Implicit,
        RouteTls::Opportunistic => TlsMode::Opportunistic,
        RouteTls::None => TlsMode::None,
    }
}

fn auth_name(a: AuthArg) -> &'static str {
    match a {
        AuthArg::Plain => "plain",
        AuthArg::Login => "login",
        AuthArg::CramMd5 => "cram-md5",
        AuthArg::Xoauth2 => "xoauth2",
        AuthArg::Oauthbearer => "oauthbearer",
        AuthArg::ScramSha256 => "scram-sha-256",
        AuthArg::ScramSha256Plus => "scram-sha-256-plus",
        AuthArg::External => "external",
    }
}

fn auth_arg(name: &str) -> Option<AuthArg> {
    [
        AuthArg::Plain,
        AuthArg::Login,
        AuthArg::CramMd5,
        AuthArg::Xoauth2,
        AuthArg::Oauthbearer,
        AuthArg::ScramSha256,
        AuthArg::ScramSha256Plus,
        AuthArg::External,
    ]
    .into_iter()
    .find(|a| auth_name(*a) == name)
}

/// The route `send` (or sendmail mode) queues with: the account pinned by name (a later
/// change of the config file's default does not redirect queued mail), the flags, and where
/// a secret comes from. A command given on the command line cannot be queued: the runner
/// never executes what the spool says.
pub fn route(args: &ServerArgs, account: Option<&Account>, direct: bool) -> Result<Route, Fail> {
    if args.password_cmd.is_some() || args.oauth_token_cmd.is_some() {
        return Err(Fail::new(
            exit::USAGE,
            "a queued message cannot get its password from --password-cmd or --oauth-token-cmd \
             (the queue runner never runs a command stored in the spool): put the command in an \
             account of the config file, or use --password-env or --password-file",
        ));
    }
    // Paths are stored absolute: the runner may start in another directory.
    let absolute = |p: &PathBuf| std::path::absolute(p).unwrap_or_else(|_| p.clone());
    let secret = args
        .password_env
        .clone()
        .map(Secret::PasswordEnv)
        .or(args
            .password_file
            .as_ref()
            .map(|p| Secret::PasswordFile(absolute(p))))
        .or(args.oauth_token_env.clone().map(Secret::OauthTokenEnv));
    // A proxy password typed into --proxy has nowhere to come from at the next attempt, and
    // the spool never holds a secret.
    if args
        .proxy
        .as_deref()
        .is_some_and(crate::account::inline_password)
    {
        return Err(Fail::new(
            exit::USAGE,
            "a queued message cannot keep a proxy password given in --proxy (the spool never \
             holds a secret): use --proxy-password-env or --proxy-password-file, or an account's \
             proxy_password_*",
        ));
    }
    let proxy_secret = args
        .proxy_password_env
        .clone()
        .map(Secret::PasswordEnv)
        .or(args
            .proxy_password_file
            .as_ref()
            .map(|p| Secret::PasswordFile(absolute(p))));
    // The same rule as at the command line, for a ServerArgs built otherwise.
    let timeout_ms = match args.timeout.map(crate::args::timeout_duration) {
        None => None,
        Some(Ok(d)) => Some(d.as_micros().div_ceil(1000) as u64),
        Some(Err(why)) => {
            return Err(Fail::new(
                exit::USAGE,
                format!("--timeout {}: {why}", args.timeout.unwrap_or_default()),
            ))
        }
    };
    Ok(Route {
        version: postline_queue::ROUTE_VERSION,
        account: account.map(|a| a.name.clone()),
        server: args.server.clone(),
        direct,
        tls: args.tls.map(route_tls),
        ca_file: args.ca_file.as_ref().map(absolute),
        system_roots: args.system_roots,
        tls_fingerprint: args.tls_fingerprint.clone(),
        pinned_pubkey: args.pinned_pubkey.clone(),
        cert: args.cert.as_ref().map(absolute),
        key: args.key.as_ref().map(absolute),
        insecure: args.insecure,
        require_tls: args.require_tls,
        helo: args.helo.clone(),
        timeout_ms,
        allow_plaintext_auth: args.allow_plaintext_auth,
        user: args.user.clone(),
        secret,
        allow_readable_secret_file: args.allow_world_readable_password,
        auth: args.auth.map(|a| auth_name(a).to_string()),
        dns_server: args.dns_server,
        mx_port: args.mx_port,
        proxy: args.proxy.clone(),
        proxy_secret,
        source_address: args.source_address,
        lmtp: args.protocol.map(|p| p == crate::account::Protocol::Lmtp),
    })
}

/// The flags a route stands for, to connect as `send` would.
fn server_args(route: &Route, verbose: bool) -> Result<ServerArgs, String> {
    let mut args = ServerArgs {
        server: route.server.clone(),
        account: route.account.clone(),
        dns_server: route.dns_server,
        mx_port: route.mx_port,
        tls: route.tls.map(tls_mode),
        ca_file: route.ca_file.clone(),
        system_roots: route.system_roots,
        tls_fingerprint: route.tls_fingerprint.clone(),
        pinned_pubkey: route.pinned_pubkey.clone(),
        cert: route.cert.clone(),
        key: route.key.clone(),
        insecure: route.insecure,
        require_tls: route.require_tls,
        helo: route.helo.clone(),
        timeout: route.timeout().map(|d| d.as_secs_f64()),
        allow_plaintext_auth: route.allow_plaintext_auth,
        user: route.user.clone(),
        allow_world_readable_password: route.allow_readable_secret_file,
        proxy: route.proxy.clone(),
        source_address: route.source_address,
        protocol: route.lmtp.map(|lmtp| {
            if lmtp {
                crate::account::Protocol::Lmtp
            } else {
                crate::account::Protocol::Smtp
            }
        }),
        verbose,
        ..ServerArgs::default()
    };
    match &route.proxy_secret {
        Some(Secret::PasswordEnv(v)) => args.proxy_password_env = Some(v.clone()),
        Some(Secret::PasswordFile(p)) => args.proxy_password_file = Some(p.clone()),
        Some(Secret::OauthTokenEnv(_)) => {
            return Err("a proxy takes a password, not a token".into())
        }
        None => {}
    }
    match &route.secret {
        Some(Secret::PasswordEnv(v)) => args.password_env = Some(v.clone()),
        Some(Secret::PasswordFile(p)) => args.password_file = Some(p.clone()),
        Some(Secret::OauthTokenEnv(v)) => args.oauth_token_env = Some(v.clone()),
        None => {}
    }
    if let Some(name) = &route.auth {
        args.auth = Some(auth_arg(name).ok_or_else(|| format!("unknown mechanism {name:?}"))?);
    }
    Ok(args)
}

/// Resolves a stored route as `send` would, reading the account and its secrets now.
fn destination(route: &Route, verbose: bool) -> Result<Destination, String> {
    let args = server_args(route, verbose)?;
    let account = if route.direct {
        None
    } else {
        connect::load_account(args.account.as_deref()).map_err(|f| f.message)?
    };
    let target = connect::target(&args, account.as_ref()).map_err(|f| f.message)?;
    Ok(if target.direct {
        Destination::Direct(mailer(&target))
    } else {
        Destination::Relay(target.config)
    })
}

/// The direct-delivery mailer for a target.
pub fn mailer(target: &Target) -> postline::Mailer {
    let mut mailer = postline::Mailer::direct(target.config.clone())
        .mx_port(target.port)
        .require_tls(target.tls == TlsMode::Starttls || target.config.requires_tls());
    if let Some(dns) = target.dns_server {
        mailer = mailer.dns_server(dns);
    }
    mailer
}

/// Direct delivery, as `send` does it: one result per recipient.
pub fn direct(
    target: &Target,
    from: &str,
    recipients: &[String],
    message: &[u8],
    dsn: Option<&Dsn>,
) -> Vec<Delivery> {
    let envelope = match Envelope::new(from, recipients) {
        Ok(e) => postline_queue::Dsn::apply_to(dsn, e),
        Err(e) => return relay_results(&Err(e), recipients),
    };
    match mailer(target).send_blocking(&envelope, message) {
        Ok(d) => d,
        Err(e) => relay_results(&Err(e), recipients),
    }
}

/// Per recipient, what one relay transaction did.
pub fn relay_results(
    result: &Result<postline::Outcome, Error>,
    recipients: &[String],
) -> Vec<Delivery> {
    Delivery::for_recipients(result, recipients.iter().map(String::as_str))
}

/// The spool directory: the flag (or `POSTLINE_QUEUE_DIR`), else the default.
pub fn spool_dir(flag: Option<&Path>) -> Result<PathBuf, Fail> {
    if let Some(d) = flag {
        return Ok(d.to_path_buf());
    }
    Spool::default_dir().ok_or_else(|| {
        Fail::new(
            exit::CONFIG,
            "queue: no spool directory: set XDG_STATE_HOME or HOME, or give --queue-dir",
        )
    })
}

/// Opens (creating if needed) the spool: 77 (EX_NOPERM) when it is not private, 73
/// (EX_CANTCREAT) when it is not a directory, 75 otherwise.
pub fn open_spool(flag: Option<&Path>) -> Result<Spool, Fail> {
    let dir = spool_dir(flag)?;
    Spool::open(&dir).map_err(|e| spool_fail(&dir, e))
}

/// What is wrong with `url` as a queue's location, if anything: it must be a
/// `postgres://` (or `postgresql://`) URL, and a password may not ride in its query
/// (`?password=`), where messages would show it (the password comes from the URL's user part
/// or from `PGPASSWORD`).
pub fn queue_url_problem(url: &str) -> Option<String> {
    if !AnyStore::is_database(url) {
        return Some(
            "the queue's URL is postgres://USER@HOST[:PORT]/DB (a spool directory is \
             --queue-dir or POSTLINE_QUEUE_DIR)"
                .to_string(),
        );
    }
    if query_password(url) {
        return Some(
            "a password= parameter in the queue's URL is not accepted (messages would show \
             it): set PGPASSWORD instead"
                .to_string(),
        );
    }
    None
}

/// Whether the URL's query has a `password` parameter.
pub fn query_password(url: &str) -> bool {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    let query = query.split('#').next().unwrap_or("");
    query.split('&').any(|pair| {
        pair.split('=')
            .next()
            .is_some_and(|key| key.trim().eq_ignore_ascii_case("password"))
    })
}

/// `--queue-url` (or `POSTLINE_QUEUE_URL`): a usage error when it is not a queue's URL.
/// Checked here rather than by clap, whose message would repeat the value, password and all.
pub fn flag_queue_url(url: Option<&String>) -> Result<Option<String>, Fail> {
    match url {
        Some(url) => match queue_url_problem(url) {
            Some(problem) => Err(Fail::new(exit::USAGE, format!("--queue-url: {problem}"))),
            None => Ok(Some(url.clone())),
        },
        None => Ok(None),
    }
}

/// The queue `url` names (PostgreSQL) when there is one, else the spool (created if
/// needed).
pub fn open_store(dir: Option<&Path>, url: Option<&str>) -> Result<AnyStore, Fail> {
    match url {
        Some(url) => open_database(url),
        None => open_spool(dir).map(AnyStore::Spool),
    }
}

/// The queue in PostgreSQL: 78 (EX_CONFIG) when the URL or the schema is wrong (with the
/// fix), 75 (EX_TEMPFAIL) when the database cannot be reached now. The password is never
/// shown.
pub fn open_database(url: &str) -> Result<AnyStore, Fail> {
    // The flag and the account are checked as they are read; sendmail mode's
    // POSTLINE_QUEUE_URL only here.
    if let Some(problem) = queue_url_problem(url) {
        return Err(Fail::new(exit::CONFIG, format!("queue: {problem}")));
    }
    PgStore::connect(url)
        .map(AnyStore::Postgres)
        .map_err(|e| database_fail(url, e))
}

fn database_fail(url: &str, e: std::io::Error) -> Fail {
    use std::io::ErrorKind;
    match e.kind() {
        // The store's own refusals name the database (without its password) and the fix.
        ErrorKind::NotFound
        | ErrorKind::InvalidData
        | ErrorKind::InvalidInput
        | ErrorKind::PermissionDenied => {
            let text = e.to_string();
            if text.contains("postgres://") {
                Fail::new(exit::CONFIG, format!("queue: {text}"))
            } else {
                // The server's refusal (authentication, a missing database, rights).
                let shown = postline_queue::PgStore::shown(url);
                Fail::new(exit::CONFIG, format!("queue: {shown}: {text}"))
            }
        }
        _ => Fail::new(
            exit::TEMPFAIL,
            format!(
                "queue: cannot reach {}: {e}",
                postline_queue::PgStore::shown(url)
            ),
        ),
    }
}

fn spool_fail(dir: &Path, e: std::io::Error) -> Fail {
    use std::io::ErrorKind;
    match e.kind() {
        // The spool's own refusals say which directory and why.
        ErrorKind::PermissionDenied if e.to_string().starts_with("refusing") => {
            Fail::new(exit::NOPERM, format!("queue: {e}"))
        }
        ErrorKind::NotADirectory => Fail::new(exit::CANTCREAT, format!("queue: {e}")),
        _ => Fail::new(
            exit::TEMPFAIL,
            format!("queue: cannot open the spool {}: {e}", dir.display()),
        ),
    }
}

/// The retry policy; bounce reports name this host.
pub fn policy() -> Policy {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty() && postline::proto::Domain::new(h.as_str()).is_ok())
        .unwrap_or_else(|| "localhost".into());
    Policy {
        reporting_host: host,
        ..Policy::default()
    }
}

/// Text quoted from a server or the spool, safe for a terminal: one line, controls escaped.
fn one_line(s: &str) -> String {
    escape(s).into_owned()
}

/// How the first attempt's results are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Voice {
    /// `send`: a line per recipient on stdout.
    Lines,
    /// `send --json`.
    Json,
    /// sendmail: refusals on stderr only.
    Quiet,
}

/// After a first attempt: queues the recipients still to be tried (deferred, in doubt, not
/// attempted; only those) and reports. The exit code and the queue id; `None` when nothing
/// is left to try, or the spool could not take it (said on stderr): the caller then reports
/// as without a queue.
#[allow(clippy::too_many_arguments)]
pub fn queue_deferred(
    spool: Result<AnyStore, Fail>,
    route: &Route,
    from: &str,
    dsn: Option<&Dsn>,
    message: &[u8],
    results: &[Delivery],
    voice: Voice,
    partial_ok: bool,
) -> Option<(u8, String)> {
    let later: Vec<&Delivery> = results.iter().filter(|d| !d.status.is_final()).collect();
    if later.is_empty() {
        return None;
    }
    let now = SystemTime::now();
    let policy = policy();
    let queued = spool.and_then(|s| {
        let addresses: Vec<String> = later.iter().map(|d| d.address.clone()).collect();
        let mut entry = Entry::fresh(from, &addresses, route, message, now);
        for (r, d) in entry.recipients.iter_mut().zip(&later) {
            r.status = RecipientStatus::Pending {
                last_error: Some(d.detail()),
                in_doubt: d.status == DeliveryStatus::InDoubt,
            };
        }
        entry.dsn = dsn.cloned();
        entry.attempts = 1;
        entry.last_error = later.last().map(|d| d.detail());
        entry.next_attempt = postline_queue::unix_now(now) + policy.backoff(1).as_secs().max(1);
        s.enqueue_entry(entry, message)
            .map_err(|e| Fail::new(enqueue_code(&e), format!("{}: {e}", s.describe())))
    });
    let id = match queued {
        Ok(id) => id,
        Err(f) => {
            errln!(
                "postline: could not queue the message: {}",
                one_line(&f.message)
            );
            return None;
        }
    };
    let failed = results.iter().any(|d| d.status == DeliveryStatus::Failed);
    let code = if failed && !partial_ok {
        exit::NOUSER
    } else {
        exit::OK
    };
    let shown = |d: &Delivery| match d.status {
        DeliveryStatus::Delivered => "accepted",
        DeliveryStatus::Failed => "refused",
        _ => "queued",
    };
    match voice {
        Voice::Json => {
            let list: Vec<Value> = results
                .iter()
                .map(|d| {
                    let result = match d.status {
                        DeliveryStatus::Delivered => "delivered",
                        DeliveryStatus::Failed => "failed",
                        _ => "queued",
                    };
                    json!({"address": d.address, "result": result, "status": d.status.name(), "detail": d.detail()})
                })
                .collect();
            let v =
                json!({"status": "queued", "queue_id": id, "recipients": list, "exit_code": code});
            outln!("{}", output::json_safe(&v.to_string()));
        }
        Voice::Lines => {
            for d in results {
                outln!("{:<9} {}  {}", shown(d), d.address, one_line(&d.detail()));
            }
        }
        Voice::Quiet => {
            for d in results
                .iter()
                .filter(|d| d.status == DeliveryStatus::Failed)
            {
                errln!("postline: {} refused: {}", d.address, one_line(&d.detail()));
            }
        }
    }
    let doubt = later.iter().any(|d| d.status == DeliveryStatus::InDoubt);
    errln!(
        "postline: queued as {id} for {} recipient(s), sent by `postline queue run` (or a \
         running `postline queue run --daemon`): {}{}",
        later.len(),
        one_line(&later[0].detail()),
        if doubt {
            " (in doubt: the server may already have it; it will be sent again)"
        } else {
            ""
        }
    );
    Some((code, id))
}

/// Exit code for a message the spool did not take: too large is the message's fault (65),
/// anything else is the disk's (75).
fn enqueue_code(e: &std::io::Error) -> u8 {
    if e.kind() == std::io::ErrorKind::FileTooLarge {
        exit::DATAERR
    } else {
        exit::TEMPFAIL
    }
}

/// Queues without trying: prints the id (sendmail mode stays quiet) and returns it.
pub fn queue_only(
    spool: Result<AnyStore, Fail>,
    route: &Route,
    from: &str,
    dsn: Option<&Dsn>,
    recipients: &[String],
    message: &[u8],
    voice: Voice,
) -> Result<String, Fail> {
    let spool = spool?;
    let mut entry = Entry::fresh(from, recipients, route, message, SystemTime::now());
    entry.dsn = dsn.cloned();
    let id = spool.enqueue_entry(entry, message).map_err(|e| {
        Fail::new(
            enqueue_code(&e),
            format!("cannot queue the message in {}: {e}", spool.describe()),
        )
    })?;
    match voice {
        Voice::Lines => outln!("{id}"),
        Voice::Json => outln!(
            "{}",
            json!({"status": "queued", "queue_id": id, "recipients": recipients, "exit_code": 0})
        ),
        Voice::Quiet => {}
    }
    Ok(id)
}

// ----------------------------------------------------------------------------- subcommands

/// `postline queue ...`.
pub fn run(args: &QueueArgs) -> Result<u8, Fail> {
    // A database named by the flag, POSTLINE_QUEUE_URL, or the default account.
    let url = match flag_queue_url(args.queue_url.as_ref())? {
        Some(u) => Some(u),
        None if args.queue_dir.is_none() => connect::load_account(None)?.and_then(|a| a.queue_url),
        None => None,
    };
    if let QueueCommand::Migrate = &args.command {
        return migrate(url.as_deref());
    }
    if let Some(url) = url {
        let store = open_database(&url)?;
        return on_store(args, store);
    }
    // The daemon waits for mail: its spool is made if missing.
    if let QueueCommand::Run {
        daemon: true,
        verbose,
    } = &args.command
    {
        return daemon_loop(
            AnyStore::Spool(open_spool(args.queue_dir.as_deref())?),
            *verbose,
        );
    }
    // Nothing else here creates a spool: a missing one is an empty queue.
    let dir = spool_dir(args.queue_dir.as_deref())?;
    let spool = match Spool::open_existing(&dir) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return match &args.command {
                QueueCommand::Show { id, .. }
                | QueueCommand::Remove { id }
                | QueueCommand::Release { id } => Err(Fail::new(
                    exit::NOINPUT,
                    format!(
                        "queue: no message {id}: there is no queue at {}",
                        dir.display()
                    ),
                )),
                QueueCommand::List { json: true } => {
                    outln!("[]");
                    Ok(exit::OK)
                }
                // `queue run` from cron stays quiet when there is nothing to do.
                QueueCommand::Run { .. } => Ok(exit::OK),
                _ => {
                    errln!(
                        "postline: no queue at {} (nothing was ever queued there)",
                        dir.display()
                    );
                    Ok(exit::OK)
                }
            };
        }
        Err(e) => return Err(spool_fail(&dir, e)),
    };
    on_store(args, AnyStore::Spool(spool))
}

/// The subcommands, on whichever store it is.
fn on_store(args: &QueueArgs, store: AnyStore) -> Result<u8, Fail> {
    match &args.command {
        QueueCommand::List { json } => list(&store, *json),
        QueueCommand::Run { daemon, verbose } => {
            if *daemon {
                daemon_loop(store, *verbose)
            } else {
                pass(store, false, None, *verbose)
            }
        }
        QueueCommand::Flush { ids, verbose } => {
            // Every named message must be queued (66 otherwise), before anything is sent.
            for id in ids {
                if let Err(e) = store.load(id) {
                    // One that cannot be read now is reported by the pass itself.
                    if !matches!(e, LoadError::Unreadable(_)) {
                        load_for(&store, id)?;
                    }
                }
            }
            let only = (!ids.is_empty()).then_some(ids.as_slice());
            pass(store, true, only, *verbose)
        }
        QueueCommand::Show { id, json } => show(&store, id, *json),
        QueueCommand::Remove { id } => remove(&store, id),
        QueueCommand::Release { id } => release(&store, id),
        QueueCommand::Migrate => migrate(None),
    }
}

/// `queue migrate`: creates or upgrades the schema in the database. A spool has none: asking
/// to migrate one is a usage error (64), so a mistyped setup is not taken for success.
fn migrate(url: Option<&str>) -> Result<u8, Fail> {
    let Some(url) = url else {
        return Err(Fail::new(
            exit::USAGE,
            "queue migrate: no database: give --queue-url postgres://USER@HOST/DB (or \
             POSTLINE_QUEUE_URL, or queue_url in the default account); a spool needs no \
             migration",
        ));
    };
    let shown = PgStore::shown(url);
    let before = PgStore::migrate(url).map_err(|e| database_fail(url, e))?;
    let now = postline_queue::SCHEMA_VERSION;
    if before == now {
        outln!("the queue schema in {shown} is already at version {now}");
    } else if before == 0 {
        outln!("created the queue schema (version {now}) in {shown}");
    } else {
        outln!("upgraded the queue schema in {shown} from version {before} to {now}");
    }
    Ok(exit::OK)
}

fn now_secs() -> u64 {
    postline_queue::unix_now(SystemTime::now())
}

/// `90s`, `5m`, `3h`, `2d`.
fn span(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn entry_json(e: &Entry, now: u64) -> Value {
    let mut v = serde_json::to_value(e).unwrap_or(Value::Null);
    v["age_secs"] = json!(now.saturating_sub(e.created));
    v["next_in_secs"] = json!(e.next_attempt.saturating_sub(now));
    v["pending"] = json!(e.pending().map(|r| r.address.clone()).collect::<Vec<_>>());
    v
}

fn print_problems(problems: &[String]) {
    for p in problems {
        errln!("postline: queue: {}", one_line(p));
    }
}

fn list(spool: &AnyStore, json_out: bool) -> Result<u8, Fail> {
    let (entries, problems) = spool.list();
    print_problems(&problems);
    let now = now_secs();
    if json_out {
        let list: Vec<Value> = entries.iter().map(|e| entry_json(e, now)).collect();
        outln!("{}", output::json_safe(&Value::Array(list).to_string()));
        return Ok(exit::OK);
    }
    for e in &entries {
        let rcpts: Vec<&str> = e.pending().map(|r| r.address.as_str()).collect();
        let held = e.held().count();
        let doubt = e
            .recipients
            .iter()
            .filter(|r| matches!(r.status, RecipientStatus::Pending { in_doubt: true, .. }))
            .count();
        let next = if rcpts.is_empty() {
            "never (held)".to_string()
        } else if e.next_attempt <= now {
            "now".to_string()
        } else {
            format!("in {}", span(e.next_attempt - now))
        };
        outln!(
            "{}  age {}  to {}  attempts {}  next {}{}{}{}",
            e.id,
            span(now.saturating_sub(e.created)),
            rcpts.join(","),
            e.attempts,
            next,
            match (held, doubt) {
                (0, 0) => String::new(),
                (0, d) => format!("  {d} in doubt (may be delivered twice)"),
                (h, _) => format!("  {h} held in doubt (queue release)"),
            },
            if e.is_bounce { "  (bounce)" } else { "" },
            e.last_error
                .as_ref()
                .map(|x| format!("  last error: {}", one_line(x)))
                .unwrap_or_default()
        );
    }
    if entries.is_empty() {
        errln!("postline: the queue in {} is empty", spool.describe());
    }
    Ok(exit::OK)
}

fn load_for(spool: &AnyStore, id: &str) -> Result<Entry, Fail> {
    spool.load(id).map_err(|e| match e {
        LoadError::BadId(_) => Fail::new(exit::USAGE, format!("queue: {e}")),
        LoadError::Gone => Fail::new(
            exit::NOINPUT,
            format!("queue: no message {id} in {}", spool.describe()),
        ),
        LoadError::Unreadable(_) => Fail::new(exit::TEMPFAIL, format!("queue: {id}: {e}")),
        LoadError::Corrupt(_) | LoadError::Newer(_) => {
            Fail::new(exit::DATAERR, format!("queue: {e}"))
        }
    })
}

/// `notify=success,failure ret=hdrs envid=ID orcpt`, as much as was asked for.
fn dsn_text(d: &Dsn) -> String {
    let mut parts = Vec::new();
    if !d.notify.is_empty() {
        let words: Vec<String> = d
            .notify
            .iter()
            .map(|n| format!("{n:?}").to_ascii_lowercase())
            .collect();
        parts.push(format!("notify={}", words.join(",")));
    }
    if let Some(r) = d.ret {
        parts.push(format!(
            "ret={}",
            if r == DsnRet::Full { "full" } else { "hdrs" }
        ));
    }
    if let Some(id) = &d.envid {
        parts.push(format!("envid={id}"));
    }
    if d.orcpt {
        parts.push("orcpt".into());
    }
    parts.join(" ")
}

fn show(spool: &AnyStore, id: &str, json_out: bool) -> Result<u8, Fail> {
    let e = load_for(spool, id)?;
    let now = now_secs();
    if json_out {
        outln!("{}", output::json_safe(&entry_json(&e, now).to_string()));
        return Ok(exit::OK);
    }
    outln!("id          {}", e.id);
    outln!(
        "from        <{}>{}",
        e.from,
        if e.is_bounce { "  (bounce report)" } else { "" }
    );
    outln!("size        {} octets", e.size);
    outln!("age         {}", span(now.saturating_sub(e.created)));
    outln!("attempts    {}", e.attempts);
    if e.next_attempt <= now {
        outln!("next try    now");
    } else {
        outln!("next try    in {}", span(e.next_attempt - now));
    }
    if let Some(x) = &e.last_error {
        outln!("last error  {}", one_line(x));
    }
    outln!("route       {}", one_line(&e.route.describe()));
    if let Some(d) = &e.dsn {
        outln!("dsn         {}", one_line(&dsn_text(d)));
    }
    outln!("message     {}", spool.message_location(&e.id));
    for r in &e.recipients {
        let doubt = matches!(r.status, RecipientStatus::Pending { in_doubt: true, .. });
        outln!(
            "recipient   {:<9} {}  {}{}",
            r.status.name(),
            r.address,
            one_line(r.status.detail()),
            if doubt { "  (in doubt)" } else { "" }
        );
    }
    Ok(exit::OK)
}

/// Runs `f` on a message under its lock.
fn with_lock<T>(
    spool: &AnyStore,
    id: &str,
    f: impl FnOnce() -> Result<T, Fail>,
) -> Result<T, Fail> {
    load_for(spool, id)?;
    locked(spool, id, f)
}

/// Runs `f` under the message's lock, whatever state its files are in.
fn locked<T>(spool: &AnyStore, id: &str, f: impl FnOnce() -> Result<T, Fail>) -> Result<T, Fail> {
    let lock = spool
        .try_lock(id)
        .map_err(|e| Fail::new(exit::TEMPFAIL, format!("queue: cannot lock {id}: {e}")))?;
    let Some(_lock) = lock else {
        return Err(Fail::new(
            exit::TEMPFAIL,
            format!("queue: {id} is being delivered right now; try again"),
        ));
    };
    f()
}

/// `queue remove ID`: also for an entry that cannot be read (corrupt, or from a newer
/// postline), so no hand work in the spool is ever needed.
fn remove(spool: &AnyStore, id: &str) -> Result<u8, Fail> {
    match load_for(spool, id) {
        Ok(_) => {}
        Err(f) if f.code == exit::DATAERR => {}
        Err(f) => return Err(f),
    }
    locked(spool, id, || {
        spool.remove(id).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Fail::new(
                exit::NOINPUT,
                format!("queue: no message {id} in {}", spool.describe()),
            ),
            _ => Fail::new(exit::TEMPFAIL, format!("queue: cannot remove {id}: {e}")),
        })
    })?;
    outln!("removed {id}");
    Ok(exit::OK)
}

/// `queue release ID`: recipients held in doubt become pending, due now.
fn release(spool: &AnyStore, id: &str) -> Result<u8, Fail> {
    let released = with_lock(spool, id, || {
        let mut e = load_for(spool, id)?;
        let mut n = 0;
        for r in e.recipients.iter_mut() {
            if let RecipientStatus::Held { reason, .. } = &r.status {
                r.status = RecipientStatus::Pending {
                    last_error: Some(reason.clone()),
                    in_doubt: true,
                };
                n += 1;
            }
        }
        e.next_attempt = now_secs();
        spool.save(&e).map_err(|err| {
            Fail::new(exit::TEMPFAIL, format!("queue: cannot update {id}: {err}"))
        })?;
        Ok(n)
    })?;
    outln!("released {released} recipient(s) of {id}");
    Ok(exit::OK)
}

/// One line per recipient result, printed once it is recorded.
fn result_line(id: &str, d: &Delivery) -> String {
    let via = d
        .host
        .as_deref()
        .map(|h| format!("  via {}", one_line(h)))
        .unwrap_or_default();
    format!(
        "{id}  {:<10} {}{via}  {}",
        d.status.name(),
        d.address,
        one_line(&d.detail())
    )
}

fn runner(spool: AnyStore, verbose: bool) -> Runner<Smtp, AnyStore> {
    let smtp = Smtp::new(move |route: &Route| destination(route, verbose));
    Runner::new(spool, policy(), smtp)
}

/// One pass over the queue (`force`: everything, due or not), a line per recipient
/// result, or a progress bar when there are many messages and stdout is a terminal. Exit
/// 75 when results could not be recorded (the messages stay queued).
fn pass(spool: AnyStore, force: bool, only: Option<&[String]>, verbose: bool) -> Result<u8, Fail> {
    let t = now_secs();
    let due = if std::io::stdout().is_terminal() {
        let (entries, _) = spool.list();
        entries
            .iter()
            .filter(|e| e.pending().next().is_some() && (force || e.next_attempt <= t))
            .count()
    } else {
        0
    };
    let bar = (due > PROGRESS_OVER).then(|| {
        let bar = indicatif::ProgressBar::new(due as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let mut runner = runner(spool, verbose);
    let mut last_id = String::new();
    let mut observe = |id: &str, d: &Delivery| {
        let line = result_line(id, d);
        match &bar {
            Some(b) => {
                if id != last_id {
                    b.inc(1);
                    last_id = id.to_string();
                }
                b.println(line)
            }
            None => outln!("{line}"),
        }
    };
    let mut report = match only {
        Some(ids) => runner.pass_only(SystemTime::now(), ids, &|| false, &mut observe),
        None => runner.pass(SystemTime::now(), force, &|| false, &mut observe),
    };
    // Results this process knows and could not write: a few more tries before they are
    // lost with it (then those recipients are sent to again by the next run).
    for _ in 0..UNRECORDED_RETRIES {
        if runner.unrecorded().is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
        let retry = runner.pass(SystemTime::now(), false, &|| true, &mut observe);
        report.unrecorded = retry.unrecorded;
        report.blocked = retry.blocked;
        report.completed += retry.completed;
        report.failed += retry.failed;
        report.bounces += retry.bounces;
        for p in retry.problems {
            if !report.problems.contains(&p) {
                report.problems.push(p);
            }
        }
    }

    if let Some(b) = bar {
        b.finish_and_clear();
    }
    // `queue run` (from cron) says nothing when nothing was due; `flush` always reports.
    if force || report.attempted > 0 || !report.problems.is_empty() || report.blocked {
        summarize(&report);
    }
    let left = runner.unrecorded();
    if !left.is_empty() {
        errln!(
            "postline: queue: could not record the results of {}: their recipients that were \
             delivered will be sent to again by the next run",
            left.join(", ")
        );
    }
    Ok(exit_for(&report))
}

fn exit_for(report: &RunReport) -> u8 {
    if report.unrecorded > 0 || report.blocked {
        exit::TEMPFAIL
    } else {
        exit::OK
    }
}

fn summarize(r: &RunReport) {
    print_problems(&r.problems);
    outln!(
        "attempted {}, delivered {}, deferred {}, failed {}, bounces {}, busy {}",
        r.attempted,
        r.completed,
        r.deferred,
        r.failed,
        r.bounces,
        r.busy
    );
    if r.lost > 0 {
        errln!(
            "postline: queue: {} message(s) went to another node before their results could be \
             written (this node's lease ran out); that node sends them, in doubt",
            r.lost
        );
    }
    if r.unrecorded > 0 {
        errln!(
            "postline: queue: {} message(s) have results that could not be written (is the disk \
             full?); delivery stopped",
            r.unrecorded
        );
    }
}

/// `queue run --daemon`: passes until SIGTERM or SIGINT; the round in hand is finished and
/// recorded first.
fn daemon_loop(spool: AnyStore, verbose: bool) -> Result<u8, Fail> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        // A second signal leaves at once (exit 75): what is on the wire is then in doubt.
        signal_hook::flag::register_conditional_shutdown(
            sig,
            exit::TEMPFAIL as i32,
            Arc::clone(&stop),
        )
        .and_then(|_| signal_hook::flag::register(sig, Arc::clone(&stop)))
        .map_err(|e| Fail::new(exit::SOFTWARE, format!("queue: cannot handle signals: {e}")))?;
    }
    errln!(
        "postline: queue daemon on {} (SIGTERM to stop)",
        spool.describe()
    );
    let mut runner = runner(spool, verbose);
    let mut observe = |id: &str, d: &Delivery| outln!("{}", result_line(id, d));
    let mut on_pass = |r: &RunReport| {
        if r.attempted > 0 || !r.problems.is_empty() || r.blocked {
            summarize(r);
        }
    };
    runner.daemon(&stop, Duration::from_secs(60), &mut observe, &mut on_pass);
    errln!("postline: queue daemon stopping: what was on the wire is finished and recorded");
    let left = runner.unrecorded();
    if !left.is_empty() {
        errln!(
            "postline: queue daemon stopping with unrecorded results for: {} (they will be sent \
             again by the next run)",
            left.join(", ")
        );
        return Ok(exit::TEMPFAIL);
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_auth_mechanism_round_trips_by_its_flag_name() {
        use clap::ValueEnum;
        for a in AuthArg::value_variants() {
            let flag = a.to_possible_value().unwrap().get_name().to_string();
            assert_eq!(auth_name(*a), flag);
            assert_eq!(auth_arg(&flag), Some(*a));
            assert!(a.mechanism().name().eq_ignore_ascii_case(&flag), "{flag}");
        }
    }

    #[test]
    fn route_round_trips_without_secrets_or_commands() {
        let args = ServerArgs {
            server: Some("mail.example.com:587".into()),
            user: Some("me".into()),
            password_env: Some("MAIL_PASSWORD".into()),
            timeout: Some(30.0),
            verbose: true,
            json: true,
            ..Default::default()
        };
        let r = route(&args, None, false).unwrap();
        let text = serde_json::to_string(&r).unwrap();
        assert!(text.contains("MAIL_PASSWORD"), "{text}");
        assert!(
            !text.contains("verbose") && !text.contains("\"json\""),
            "{text}"
        );
        let back = server_args(&r, false).unwrap();
        assert_eq!(back.server.as_deref(), Some("mail.example.com:587"));
        assert_eq!(back.password_env.as_deref(), Some("MAIL_PASSWORD"));
        assert_eq!(back.timeout, Some(30.0));
        let cmd = ServerArgs {
            password_cmd: Some("pass show mail".into()),
            ..args.clone()
        };
        assert_eq!(route(&cmd, None, false).unwrap_err().code, exit::USAGE);
        for t in [1e20, f64::INFINITY, f64::NAN, -1.0, 0.0] {
            let bad = ServerArgs {
                timeout: Some(t),
                ..args.clone()
            };
            assert_eq!(
                route(&bad, None, false).unwrap_err().code,
                exit::USAGE,
                "{t}"
            );
        }
    }
}
