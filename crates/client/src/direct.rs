//! Delivery without a relay: each recipient domain's mail exchangers, found in DNS
//! (RFC 5321 section 5, RFC 974, RFC 7505), tried in preference order.
//!
//! [`Mailer`] takes a [`Route`]: `Relay` sends everything through one server, `Direct` groups
//! recipients by domain, resolves each domain's MX records with hickory-resolver, and delivers
//! one transaction per domain, several domains at once. Every recipient gets a [`Delivery`],
//! the same vocabulary as every other path.
//!
//! The rule for moving on: an exchanger that fails for a reason that is not about the message
//! (it refuses the session, closes, cannot do the TLS that is required, breaks the protocol
//! before the end of data, times out) is skipped for the next address or the next exchanger,
//! because the domain's other exchangers may well work. A reply about the message itself
//! (MAIL, RCPT, DATA, the end of data) ends the attempt with that result: another exchanger
//! of the same domain would apply the same policy. And once the end of data was on the wire
//! without a final reply the attempt ends in doubt: the message may have arrived, and giving
//! it to another exchanger could deliver it twice.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError, NoRecords};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::{Resolver, TokioResolver};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::{timeout_at, Instant};

use crate::asynchronous::AsyncClient;
use crate::config::{Config, Tls};
use crate::delivery::{status_of, Delivery, DeliveryStatus, MAX_REPLY_TEXT};
use crate::envelope::Envelope;
use crate::error::{ConfigError, Error, Fault};
use crate::outcome::Outcome;
use postline_proto::command::Address;
use postline_proto::session::Phase;

/// How mail leaves: through a relay, or straight to each domain's exchangers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// One server (smarthost) for every recipient.
    Relay(String, u16),
    /// Each recipient domain's MX hosts (or its address, for a domain without MX).
    Direct,
}

/// How many exchangers of a domain are tried at most, by default: enough for any real
/// backup arrangement, few enough that a domain listing dozens cannot hold a delivery for
/// long (Postfix bounds its sessions and addresses per delivery the same way).
const DEFAULT_MAX_EXCHANGERS: usize = 5;
/// How many addresses of one exchanger are tried at most, by default.
const DEFAULT_MAX_ADDRESSES: usize = 2;
/// The default bound on one domain's whole attempt: DNS, every exchanger tried, the message.
const DEFAULT_ATTEMPT_DEADLINE: Duration = Duration::from_secs(10 * 60);

/// Sends messages along a [`Route`]. Cheap to clone; clones share the TLS configuration and
/// the DNS resolver (with its cache), each built on first use.
///
/// Each [`Mailer::send`] opens its own connections (for many messages to one relay, a pool
/// reuses them). Every recipient gets a [`Delivery`]:
///
/// ```no_run
/// use postline::{Config, DeliveryStatus, Envelope, Mailer};
/// # async fn run() -> Result<(), postline::Error> {
/// // Straight to each domain's mail exchangers, as an MTA delivers.
/// let mailer = Mailer::direct(Config::relay("localhost").hello_name("mail.example.com"));
/// let envelope = Envelope::new("me@example.com", ["you@example.org", "them@example.net"])?;
/// for d in mailer.send(&envelope, b"Subject: hi\r\n\r\nHello\r\n").await? {
///     match d.status {
///         DeliveryStatus::Delivered => println!("{}: accepted by {:?}", d.address, d.host),
///         DeliveryStatus::Failed => println!("{}: refused: {}", d.address, d.detail()),
///         _ => println!("{}: {} ({}), try again later", d.address, d.status, d.detail()),
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Mailer {
    route: Route,
    base: Config,
    dns: Option<SocketAddr>,
    mx_port: u16,
    concurrency: usize,
    require_tls: bool,
    dns_timeout: Duration,
    max_exchangers: usize,
    max_addresses: usize,
    attempt_deadline: Duration,
    /// The TLS configuration, built on first use and shared by every connection and clone.
    /// The TLS configurations, built once: `[opportunistic, verified]`.
    tls: Arc<[OnceLock<Arc<rustls::ClientConfig>>; 2]>,
    /// The resolver, built on first use and shared by every send and clone.
    resolver: Arc<OnceLock<TokioResolver>>,
}

impl fmt::Debug for Mailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mailer")
            .field("route", &self.route)
            .field("base", &self.base)
            .field("dns", &self.dns)
            .field("mx_port", &self.mx_port)
            .field("concurrency", &self.concurrency)
            .field("require_tls", &self.require_tls)
            .field("dns_timeout", &self.dns_timeout)
            .field("max_exchangers", &self.max_exchangers)
            .field("max_addresses", &self.max_addresses)
            .field("attempt_deadline", &self.attempt_deadline)
            .finish_non_exhaustive()
    }
}

/// Why a domain cannot be reached, before any SMTP.
struct Unroutable {
    status: DeliveryStatus,
    reason: String,
}

/// What one exchanger address did with the message.
enum Attempt {
    /// The message's own result there (accepted, refused, in doubt): it ends the attempt.
    Decided(Result<Outcome, Error>),
    /// The exchanger could not take part; another one may.
    Next(Error),
    /// A fault on this side that every exchanger would meet.
    Stop(Error),
    /// The attempt deadline passed before the message was handed over whole.
    OutOfTime,
}

/// Recipients of one domain, by their position in the envelope.
#[derive(Debug, PartialEq, Eq)]
struct Group {
    domain: String,
    indices: Vec<usize>,
}

impl Mailer {
    /// Sends through the relay `config` names (its host, port, TLS and credentials).
    pub fn relay(config: Config) -> Self {
        let route = Route::Relay(config.host.clone(), config.effective_port());
        Mailer::with_route(route, config)
    }

    /// Delivers straight to each domain's exchangers on port 25, with opportunistic STARTTLS
    /// as MTAs use it (encrypted when offered; certificates not required to verify, RFC 7435)
    /// unless [`Mailer::require_tls`] is set. `template` supplies the EHLO name, timeouts and
    /// transcript; its host, port and credentials are not used.
    pub fn direct(template: Config) -> Self {
        Mailer::with_route(Route::Direct, template)
    }

    fn with_route(route: Route, base: Config) -> Self {
        // REQUIRETLS messages go only over verified TLS (RFC 8689 4.1).
        let require_tls = base.require_tls;
        Mailer {
            route,
            base,
            dns: None,
            mx_port: 25,
            concurrency: 8,
            require_tls,
            dns_timeout: Duration::from_secs(5),
            max_exchangers: DEFAULT_MAX_EXCHANGERS,
            max_addresses: DEFAULT_MAX_ADDRESSES,
            attempt_deadline: DEFAULT_ATTEMPT_DEADLINE,
            tls: Arc::default(),
            resolver: Arc::default(),
        }
    }

    /// `config` with the mailer's one TLS configuration: the base's for a relay; for
    /// exchangers, the base's trust when TLS is required, else opportunistic (RFC 7435).
    fn with_tls(&self, mut config: Config) -> Result<Config, Error> {
        let slot = &self.tls[usize::from(config.verifies_certificates())];
        if config.tls == Tls::None {
            return Ok(config);
        }
        if let Some(tls) = slot.get() {
            config.rustls = Some(tls.clone());
            return Ok(config);
        }
        let config = config.prepare_tls()?;
        if let Some(tls) = &config.rustls {
            let _ = slot.set(tls.clone());
        }
        Ok(config)
    }

    /// Resolve with this name server instead of the system's (`/etc/resolv.conf`).
    pub fn dns_server(mut self, server: SocketAddr) -> Self {
        self.dns = Some(server);
        self.resolver = Arc::default();
        self
    }

    /// The exchangers' port (25; other values are for tests and unusual networks).
    pub fn mx_port(mut self, port: u16) -> Self {
        self.mx_port = port;
        self
    }

    /// Require STARTTLS with a verified certificate at every exchanger. An exchanger that
    /// does not offer it, or whose certificate does not verify, is skipped like one that is
    /// down.
    pub fn require_tls(mut self, on: bool) -> Self {
        self.require_tls = on;
        self
    }

    /// How many domains are delivered to at once (default 8).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// How long one DNS query may take (default 5 s).
    pub fn dns_timeout(mut self, t: Duration) -> Self {
        self.dns_timeout = t;
        self.resolver = Arc::default();
        self
    }

    /// At most `n` exchangers of a domain are tried, best first (default 5, at least 1):
    /// enough for any real backup arrangement, few enough that a domain listing dozens
    /// cannot hold a delivery for long.
    pub fn max_exchangers(mut self, n: usize) -> Self {
        self.max_exchangers = n.max(1);
        self
    }

    /// At most `n` addresses of each exchanger are tried (default 2, at least 1).
    pub fn max_addresses(mut self, n: usize) -> Self {
        self.max_addresses = n.max(1);
        self
    }

    /// A bound on each domain's whole attempt: the DNS lookups, every exchanger tried and the
    /// message (default 10 minutes). When it passes, the domain's
    /// recipients are deferred, unless the whole message had already been handed to an
    /// exchanger, which makes them in doubt. The exchangers' own timeouts (the template's
    /// [`crate::Timeouts`]) still apply within it.
    pub fn attempt_deadline(mut self, deadline: Duration) -> Self {
        self.attempt_deadline = deadline;
        self
    }

    /// The route.
    pub fn route(&self) -> &Route {
        &self.route
    }

    /// Sends `message` to every recipient of `envelope`: one [`Delivery`] per recipient, in
    /// envelope order. For direct delivery each names, in `host`, the exchanger whose answer
    /// decided it; a recipient whose domain no exchanger answered for has none, and its
    /// reason lists the exchangers tried. Only a resolver that cannot be set up is an error.
    pub async fn send(&self, envelope: &Envelope, message: &[u8]) -> Result<Vec<Delivery>, Error> {
        self.send_each(envelope, message, &mut |_| {}).await
    }

    /// Sends a [`crate::Message`] to the recipients of its envelope (Bcc included); the
    /// same as [`crate::AsyncTransport::send_message`], without importing the trait.
    #[cfg(feature = "message")]
    pub async fn send_message(&self, message: &crate::Message) -> Result<Vec<Delivery>, Error> {
        self.send(message.envelope(), message.as_bytes()).await
    }

    /// [`Mailer::send`], telling each domain's results to `each` as soon as that domain is
    /// done (the relay route tells all at once), so a caller can record them while other
    /// domains are still in progress.
    pub async fn send_each(
        &self,
        envelope: &Envelope,
        message: &[u8],
        each: &mut (dyn FnMut(&[Delivery]) + Send),
    ) -> Result<Vec<Delivery>, Error> {
        if let Route::Relay(host, _) = &self.route {
            let results = self.send_relay(host, envelope, message).await;
            each(&results);
            return Ok(results);
        }
        let resolver = self.resolver()?;
        let message: Arc<[u8]> = Arc::from(message);
        let groups = group_by_domain(envelope);
        let limit = Arc::new(tokio::sync::Semaphore::new(self.concurrency));
        // One copy of the settings for all the domains' tasks.
        let shared = Arc::new(self.clone());
        let mut tasks = tokio::task::JoinSet::new();
        for (g, group) in groups.iter().enumerate() {
            let env = domain_envelope(envelope, &group.indices, message.len());
            let mailer = shared.clone();
            let resolver = resolver.clone();
            let message = message.clone();
            let limit = limit.clone();
            let domain = group.domain.clone();
            tasks.spawn(async move {
                // The semaphore is never closed, so a permit always comes.
                let _permit = limit.acquire_owned().await;
                let results = mailer
                    .deliver_domain(&resolver, &domain, &env, &message)
                    .await;
                (g, results)
            });
        }
        let mut slots: Vec<Option<Delivery>> = vec![None; envelope.to.len()];
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((g, results)) => {
                    each(&results);
                    for (&i, d) in groups[g].indices.iter().zip(results) {
                        slots[i] = Some(d);
                    }
                }
                // A panic in a domain's task is a bug: let it surface as one.
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(e) => return Err(Error::Io(Arc::new(io::Error::other(e)))),
            }
        }
        Ok(slots
            .into_iter()
            .zip(envelope.to())
            .map(|(d, a)| {
                d.unwrap_or_else(|| Delivery::new(a, DeliveryStatus::NotAttempted, None, ""))
            })
            .collect())
    }

    /// [`Mailer::send`] from synchronous code (runs a small runtime of its own; called from
    /// inside a tokio runtime, on a thread of its own, since a runtime cannot block on
    /// another).
    pub fn send_blocking(
        &self,
        envelope: &Envelope,
        message: &[u8],
    ) -> Result<Vec<Delivery>, Error> {
        self.send_blocking_each(envelope, message, &mut |_| {})
    }

    /// [`Mailer::send_each`] from synchronous code.
    pub fn send_blocking_each(
        &self,
        envelope: &Envelope,
        message: &[u8],
        each: &mut (dyn FnMut(&[Delivery]) + Send),
    ) -> Result<Vec<Delivery>, Error> {
        let mut run = || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Error::Io(Arc::new(e)))?;
            rt.block_on(self.send_each(envelope, message, each))
        };
        if tokio::runtime::Handle::try_current().is_err() {
            return run();
        }
        std::thread::scope(|s| s.spawn(run).join())
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }

    async fn send_relay(&self, host: &str, envelope: &Envelope, message: &[u8]) -> Vec<Delivery> {
        let result = async {
            let config = self.with_tls(self.base.clone())?;
            let mut client = AsyncClient::connect(config).await?;
            let result = client.send_bytes(envelope, message).await;
            let _ = client.quit().await;
            result
        }
        .await;
        Delivery::from_result(&result, envelope)
            .into_iter()
            .map(|d| d.at_host(host))
            .collect()
    }

    /// The mailer's resolver, built on first use. Clones share it, and so its cache.
    fn resolver(&self) -> Result<TokioResolver, Error> {
        if let Some(r) = self.resolver.get() {
            return Ok(r.clone());
        }
        let dns_error = |e: &dyn fmt::Display| Error::Resolve {
            host: "the DNS resolver".into(),
            source: Arc::new(io::Error::other(e.to_string())),
        };
        let mut builder = match self.dns {
            Some(server) => {
                let mut ns = NameServerConfig::udp_and_tcp(server.ip());
                for c in &mut ns.connections {
                    c.port = server.port();
                }
                Resolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![ns]),
                    TokioRuntimeProvider::default(),
                )
            }
            None => TokioResolver::builder_tokio().map_err(|e| dns_error(&e))?,
        };
        let opts: &mut ResolverOpts = builder.options_mut();
        opts.timeout = self.dns_timeout;
        opts.attempts = 2;
        let built = builder.build().map_err(|e| dns_error(&e))?;
        // Two sends racing here build two; the first stored wins and the other is dropped.
        Ok(self.resolver.get_or_init(|| built).clone())
    }

    /// The exchangers of `domain`, best first.
    async fn exchangers(
        &self,
        resolver: &TokioResolver,
        domain: &str,
    ) -> Result<Vec<String>, Unroutable> {
        let failed = |reason: String| Unroutable {
            status: DeliveryStatus::Failed,
            reason,
        };
        if let Some(literal) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
            let ip = literal
                .strip_prefix("IPv6:")
                .or(literal.strip_prefix("ipv6:"))
                .unwrap_or(literal);
            return match ip.parse::<IpAddr>() {
                Ok(ip) => Ok(vec![ip.to_string()]),
                Err(_) => Err(failed(format!("bad address literal [{literal}]"))),
            };
        }
        if domain.is_empty() {
            return Err(failed("address has no domain".into()));
        }
        let fqdn = format!("{}.", domain.trim_end_matches('.'));
        match resolver.mx_lookup(fqdn.as_str()).await {
            Ok(lookup) => {
                let mut mx: Vec<(u16, u64, String)> = lookup
                    .answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::MX(m) => Some((m.preference, random(), m.exchange.to_ascii())),
                        _ => None,
                    })
                    .collect();
                if mx.is_empty() {
                    return Ok(vec![fqdn]);
                }
                // RFC 7505: a single "0 ." record says the domain takes no mail.
                mx.retain(|(_, _, host)| host != "." && !host.is_empty());
                if mx.is_empty() {
                    return Err(failed(format!(
                        "{domain} accepts no mail (null MX, RFC 7505)"
                    )));
                }
                // Random order among equal preferences (RFC 5321 5.1).
                mx.sort_unstable_by_key(|(pref, r, _)| (*pref, *r));
                Ok(mx.into_iter().map(|(_, _, host)| host).collect())
            }
            Err(e) => match negative(&e) {
                Some(ResponseCode::NXDomain) => {
                    Err(failed(format!("{domain} does not exist (NXDOMAIN)")))
                }
                // The name exists without MX: it is its own exchanger (implicit MX).
                Some(ResponseCode::NoError) => Ok(vec![fqdn]),
                // SERVFAIL, REFUSED, timeouts, the network: DNS trouble passes.
                _ => Err(Unroutable {
                    status: DeliveryStatus::Deferred,
                    reason: format!("DNS lookup of MX for {domain} failed: {e}"),
                }),
            },
        }
    }

    /// One domain's attempt: its recipients' results, in the order of `env`.
    async fn deliver_domain(
        &self,
        resolver: &TokioResolver,
        domain: &str,
        env: &Envelope,
        message: &[u8],
    ) -> Vec<Delivery> {
        let deadline = deadline_after(self.attempt_deadline);
        let everyone = |status: DeliveryStatus, reply: Option<&crate::ServerReply>, why: &str| {
            env.to()
                .map(|a| Delivery::new(a, status, reply, why))
                .collect::<Vec<_>>()
        };
        let out_of_time = |tried: &Tried| {
            let mut why = format!(
                "attempt deadline of {}s passed",
                self.attempt_deadline.as_secs_f32()
            );
            if !tried.is_empty() {
                let _ = write!(why, " after {tried}");
            }
            everyone(DeliveryStatus::Deferred, None, &why)
        };
        let mut tried = Tried::default();
        let hosts = match timeout_at(deadline, self.exchangers(resolver, domain)).await {
            Err(_) => return out_of_time(&tried),
            Ok(Err(u)) => return everyone(u.status, None, &u.reason),
            Ok(Ok(hosts)) => hosts,
        };
        let mut last: Option<Error> = None;
        for host in hosts.iter().take(self.max_exchangers) {
            let name = host.trim_end_matches('.');
            let ips: Vec<IpAddr> = match name.parse::<IpAddr>() {
                Ok(ip) => vec![ip],
                Err(_) => {
                    let lookup = resolver.lookup_ip(format!("{name}."));
                    match timeout_at(deadline, lookup).await {
                        Err(_) => return out_of_time(&tried),
                        Ok(Ok(l)) => l.iter().take(self.max_addresses).collect(),
                        Ok(Err(e)) => {
                            tried.push(format_args!("{name}"), &format_args!("no address ({e})"));
                            continue;
                        }
                    }
                }
            };
            for ip in ips {
                if Instant::now() >= deadline {
                    return out_of_time(&tried);
                }
                match self.attempt(name, ip, env, message, deadline).await {
                    Attempt::Decided(result) => {
                        return Delivery::from_result(&result, env)
                            .into_iter()
                            .map(|d| d.at_host(name))
                            .collect()
                    }
                    Attempt::Next(e) => {
                        tried.push(format_args!("{name} [{ip}]"), &e);
                        last = Some(e);
                    }
                    Attempt::Stop(e) => {
                        tried.push(format_args!("{name} [{ip}]"), &e);
                        return everyone(status_of(&e), e.reply(), &tried.to_string());
                    }
                    Attempt::OutOfTime => {
                        tried.push(format_args!("{name} [{ip}]"), &"out of time");
                        return out_of_time(&tried);
                    }
                }
            }
        }
        let mut why = if tried.is_empty() {
            format!("no exchanger of {domain} has an address")
        } else {
            format!("no exchanger of {domain} took the message: {tried}")
        };
        if hosts.len() > self.max_exchangers {
            let _ = write!(
                why,
                " ({} more not tried, at most {} per attempt)",
                hosts.len() - self.max_exchangers,
                self.max_exchangers
            );
        }
        everyone(
            DeliveryStatus::Deferred,
            last.as_ref().and_then(Error::reply),
            &why,
        )
    }

    /// The configuration for exchanger `name` at `ip`: no credentials, the exchanger's name
    /// for its certificate, TLS as the mailer's policy says, and the time left of the
    /// attempt as the cap on each of the connection's operations.
    fn exchanger_config(
        &self,
        name: &str,
        ip: IpAddr,
        deadline: Instant,
        plain: bool,
        required: bool,
    ) -> Result<Config, Error> {
        let mut config = self.base.clone();
        config.host = ip.to_string();
        config.port = Some(self.mx_port);
        config.tls_name = Some(name.to_string());
        config.auth = None;
        let left = deadline.saturating_duration_since(Instant::now());
        config.timeouts.attempt = Some(config.timeouts.attempt.map_or(left, |a| a.min(left)));
        if plain {
            config.tls = Tls::None;
        } else if required {
            config.tls = Tls::StartTls;
        } else if config.tls != Tls::None {
            config.tls = Tls::Opportunistic;
            config = config.dangerous_accept_invalid_certificates(true);
        }
        self.with_tls(config)
    }

    /// One exchanger address: connect (falling back to clear text when opportunistic TLS
    /// fails, as MTAs do) and send, all within `deadline`.
    async fn attempt(
        &self,
        name: &str,
        ip: IpAddr,
        env: &Envelope,
        message: &[u8],
        deadline: Instant,
    ) -> Attempt {
        // A message with REQUIRETLS goes only over verified STARTTLS (RFC 8689 4.2.1).
        let required = self.require_tls || env.require_tls;
        let connect = |plain: bool| async move {
            let config = self.exchanger_config(name, ip, deadline, plain, required)?;
            AsyncClient::connect(config).await
        };
        let mut connected = timeout_at(deadline, connect(false)).await;
        let opportunistic = !required && self.base.tls != Tls::None;
        if opportunistic && matches!(connected, Ok(Err(Error::Tls { .. }))) {
            connected = timeout_at(deadline, connect(true)).await;
        }
        let mut client = match connected {
            Err(_) => return Attempt::OutOfTime,
            Ok(Err(e)) => return verdict(e),
            Ok(Ok(c)) => c,
        };
        let handed_over = AtomicBool::new(false);
        let body = Tracked {
            rest: message,
            whole: &handed_over,
        };
        let result = match timeout_at(deadline, client.send(env, body)).await {
            Ok(r) => r,
            Err(_) => {
                // The send was cut short; dropping the client closes the connection.
                drop(client);
                return if handed_over.load(Ordering::Relaxed) {
                    Attempt::Decided(Err(Error::DeliveryUnknown {
                        cause: Box::new(Error::Timeout {
                            phase: Phase::DataEnd,
                            after: self.attempt_deadline,
                        }),
                        recipients: Vec::new(),
                    }))
                } else {
                    Attempt::OutOfTime
                };
            }
        };
        // The result is known; QUIT is a courtesy and may not outlast the deadline.
        let _ = timeout_at(deadline, client.quit()).await;
        match result {
            Ok(o) => Attempt::Decided(Ok(o)),
            Err(e) => verdict(e),
        }
    }
}

/// Whether an exchanger's error ends the domain's attempt (the message's own result, or a
/// fault on this side) or lets the next exchanger try.
fn verdict(e: Error) -> Attempt {
    match &e {
        // About the message: a refusal of it (or a server declaring it cannot take it: too
        // large, SMTPUTF8, REQUIRETLS) is what the domain says of this message, and an end of
        // data without a final reply must not be sent again.
        Error::MessageRejected { .. } | Error::Incompatible(_) | Error::DeliveryUnknown { .. } => {
            Attempt::Decided(Err(e))
        }
        // A name one exchanger's certificate cannot be checked against is that exchanger's.
        Error::Config(ConfigError::TlsServerName(_)) => Attempt::Next(e),
        // An exchanger address of the other family than the source address: another
        // address of this exchanger, or another exchanger, may be of the right one.
        Error::Config(ConfigError::SourceFamily { .. }) => Attempt::Next(e),
        // The connection this attempt opened was ended by the server.
        Error::Closed => Attempt::Next(e),
        _ if e.fault() == Fault::Local => Attempt::Stop(e),
        // The session, not the message: refused greeting or EHLO, STARTTLS, TLS, AUTH,
        // protocol errors, 421, the network, timeouts, and anything not completed.
        _ => Attempt::Next(e),
    }
}

/// The message, read by a client, noting when the last byte was handed over: from then on
/// the end of data may be on the wire, so a cut-short send is in doubt.
struct Tracked<'a> {
    rest: &'a [u8],
    whole: &'a AtomicBool,
}

impl AsyncRead for Tracked<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = self.rest.len().min(buf.remaining());
        let (now, later) = self.rest.split_at(n);
        buf.put_slice(now);
        self.rest = later;
        if later.is_empty() {
            self.whole.store(true, Ordering::Relaxed);
        }
        Poll::Ready(Ok(()))
    }
}

/// The exchangers tried and what each said, as one line of at most [`MAX_REPLY_TEXT`]
/// bytes however many were tried and however long their replies: each entry is cut at a
/// quarter of that, and entries that no longer fit are only counted.
#[derive(Default)]
struct Tried {
    text: String,
    left_out: usize,
}

const TRIED_ENTRY: usize = MAX_REPLY_TEXT / 4;

impl Tried {
    fn is_empty(&self) -> bool {
        self.text.is_empty() && self.left_out == 0
    }

    fn push(&mut self, who: fmt::Arguments<'_>, what: &dyn fmt::Display) {
        // Room for the separator, a cut entry and the count of those left out.
        if self.text.len() + TRIED_ENTRY + 16 > MAX_REPLY_TEXT {
            self.left_out += 1;
            return;
        }
        if !self.text.is_empty() {
            self.text.push_str("; ");
        }
        let mut w = Capped {
            out: &mut self.text,
            room: TRIED_ENTRY,
        };
        // A full entry stops the formatting early: the rest of a long reply is never copied.
        if write!(w, "{who}: {what}").is_err() {
            self.text.push_str("...");
        }
    }
}

impl fmt::Display for Tried {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)?;
        if self.left_out > 0 {
            write!(f, "; {} more", self.left_out)?;
        }
        Ok(())
    }
}

/// A writer that takes at most `room` bytes (cut at a character boundary), then fails.
struct Capped<'a> {
    out: &'a mut String,
    room: usize,
}

impl fmt::Write for Capped<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if s.len() <= self.room {
            self.out.push_str(s);
            self.room -= s.len();
            return Ok(());
        }
        let mut cut = self.room;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        self.out.push_str(&s[..cut]);
        self.room = 0;
        Err(fmt::Error)
    }
}

/// The recipients grouped by domain (compared without case), groups in the order their
/// first recipient appears, each holding positions in the envelope.
fn group_by_domain(envelope: &Envelope) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (i, to) in envelope.to().enumerate() {
        let domain = to
            .rsplit_once('@')
            .map(|(_, d)| d.to_ascii_lowercase())
            .unwrap_or_default();
        match index.get(&domain) {
            Some(&g) => groups[g].indices.push(i),
            None => {
                index.insert(domain.clone(), groups.len());
                groups.push(Group {
                    domain,
                    indices: vec![i],
                });
            }
        }
    }
    groups
}

/// `envelope` for the recipients at `indices` only, its size declared as `size` unless it
/// says otherwise.
fn domain_envelope(envelope: &Envelope, indices: &[usize], size: usize) -> Envelope {
    let to: Vec<Address<String>> = indices.iter().map(|&i| envelope.to[i].clone()).collect();
    Envelope {
        from: envelope.from.clone(),
        to,
        size: envelope.size.or(Some(size as u64)),
        body: envelope.body,
        ret: envelope.ret,
        envid: envelope.envid.clone(),
        notify: envelope.notify,
        orcpt: envelope.orcpt,
        require_tls: envelope.require_tls,
    }
}

/// The response code of a lookup that found no records (NXDOMAIN, or NOERROR with no
/// answer); `None` for every other failure (SERVFAIL, REFUSED, timeouts, the network).
fn negative(e: &NetError) -> Option<ResponseCode> {
    match e {
        NetError::Dns(DnsError::NoRecordsFound(NoRecords { response_code, .. })) => {
            match response_code {
                ResponseCode::NXDomain | ResponseCode::NoError => Some(*response_code),
                _ => None,
            }
        }
        _ => None,
    }
}

/// `now + d`, or far in the future when that does not fit.
fn deadline_after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// A random number for ordering equal-preference exchangers (no cryptographic need).
fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_are_grouped_by_domain_by_position() {
        let env = Envelope::new(
            "a@x.test",
            [
                "1@One.test",
                "2@two.test",
                "3@one.TEST",
                "4@[127.0.0.1]",
                "5@two.test",
            ],
        )
        .unwrap();
        let groups = group_by_domain(&env);
        let got: Vec<(&str, &[usize])> = groups
            .iter()
            .map(|g| (g.domain.as_str(), g.indices.as_slice()))
            .collect();
        assert_eq!(
            got,
            [
                ("one.test", &[0, 2][..]),
                ("two.test", &[1, 4][..]),
                ("[127.0.0.1]", &[3][..]),
            ]
        );
        let one = domain_envelope(&env.clone().dsn_envid("id-1"), &groups[0].indices, 42);
        assert_eq!(one.to().collect::<Vec<_>>(), ["1@One.test", "3@one.TEST"]);
        assert_eq!(one.from(), "a@x.test");
        assert_eq!(one.size, Some(42));
        assert_eq!(one.envid.as_deref(), Some("id-1"));
    }

    #[test]
    fn the_list_of_exchangers_tried_stays_bounded() {
        let mut tried = Tried::default();
        let long = "é".repeat(100_000);
        for i in 0..1000 {
            tried.push(format_args!("mx{i}.example [192.0.2.{}]", i % 256), &long);
        }
        let text = tried.to_string();
        assert!(text.len() <= MAX_REPLY_TEXT, "{}", text.len());
        assert!(text.starts_with("mx0.example [192.0.2.0]: é"), "{text}");
        assert!(text.contains("mx1.example"), "{text}");
        assert!(text.ends_with(" more"), "{text}");
    }

    #[test]
    fn errors_about_the_session_move_on_and_errors_about_the_message_decide() {
        use crate::reply::ServerReply;
        let reply = |code| ServerReply {
            code,
            enhanced: None,
            lines: vec!["x".into()],
        };
        let lost = Error::ConnectionLost {
            phase: Phase::DataEnd,
        };
        let next = [
            Error::Rejected(reply(554)),
            Error::ServiceClosing(reply(421)),
            Error::StartTlsUnavailable(None),
            Error::Protocol(postline_proto::session::SessionError::UnexpectedReply {
                code: postline_proto::reply::Code::new(250).unwrap(),
            }),
            lost.clone(),
            Error::NotSent {
                cause: Box::new(lost.clone()),
            },
            Error::AuthRounds { rounds: 9 },
            Error::Closed,
            // An IPv6 exchanger address with an IPv4 source address: the next address.
            Error::Config(ConfigError::SourceFamily {
                address: "127.0.0.1".parse().unwrap(),
                host: "::1".into(),
                family: "IPv4",
            }),
        ];
        for e in next {
            assert!(matches!(verdict(e.clone()), Attempt::Next(_)), "{e}");
        }
        let decided = [
            Error::DeliveryUnknown {
                cause: Box::new(lost),
                recipients: Vec::new(),
            },
            Error::MessageRejected {
                at: crate::FailedAt::Mail,
                reply: Some(reply(550)),
                recipients: vec![],
            },
            Error::Incompatible(crate::Refusal::SmtpUtf8Unsupported),
        ];
        for e in decided {
            assert!(matches!(verdict(e.clone()), Attempt::Decided(_)), "{e}");
        }
        let local = Error::Config(ConfigError::CaFile {
            path: "/nonexistent".into(),
            reason: "missing".into(),
        });
        assert!(matches!(verdict(local), Attempt::Stop(_)));
    }
}
