//! Delivery without a relay: each recipient domain's mail exchangers, found in DNS
//! (RFC 5321 section 5, RFC 974, RFC 7505), tried in preference order.
//!
//! [`Mailer`] takes a [`Route`]: `Relay` sends everything through one server, `Direct` groups
//! recipients by domain, resolves each domain's MX records with hickory-resolver, and delivers
//! one transaction per domain, several domains at once. Every recipient's result says which
//! exchanger was used or tried and whether the failure is permanent.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::{Resolver, TokioResolver};

use crate::asynchronous::AsyncClient;
use crate::config::{Config, Tls};
use crate::envelope::Envelope;
use crate::error::Error;
use crate::reply::ServerReply;

/// How mail leaves: through a relay, or straight to each domain's exchangers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// One server (smarthost) for every recipient.
    Relay(String, u16),
    /// Each recipient domain's MX hosts (or its address, for a domain without MX).
    Direct,
}

/// What happened to one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// The exchanger accepted the message for this recipient.
    Delivered {
        /// The end-of-data reply (often naming the queue id).
        reply: ServerReply,
    },
    /// Not delivered.
    Failed {
        /// True when retrying cannot help (5xx, NXDOMAIN, null MX).
        permanent: bool,
        /// What went wrong, with every exchanger tried.
        reason: String,
        /// The server reply that decided it, when one did.
        reply: Option<ServerReply>,
    },
}

/// One recipient's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientDelivery {
    /// The address.
    pub address: String,
    /// Its domain (or the relay's host).
    pub domain: String,
    /// The exchanger that took the message, or the last one tried.
    pub host: Option<String>,
    /// Delivered or failed.
    pub status: DeliveryStatus,
}

impl RecipientDelivery {
    /// True when delivered.
    pub fn delivered(&self) -> bool {
        matches!(self.status, DeliveryStatus::Delivered { .. })
    }

    /// True when failed and a later attempt may succeed.
    pub fn is_transient_failure(&self) -> bool {
        matches!(
            self.status,
            DeliveryStatus::Failed {
                permanent: false,
                ..
            }
        )
    }
}

/// Every recipient's result, in envelope order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// One entry per envelope recipient.
    pub recipients: Vec<RecipientDelivery>,
}

impl Delivery {
    /// True when every recipient got the message.
    pub fn all_delivered(&self) -> bool {
        self.recipients.iter().all(RecipientDelivery::delivered)
    }
}

/// Sends messages along a [`Route`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Mailer {
    route: Route,
    base: Config,
    dns: Option<SocketAddr>,
    mx_port: u16,
    concurrency: usize,
    require_tls: bool,
    dns_timeout: Duration,
    /// The TLS configuration, built on first use and shared by every connection and clone.
    tls: Arc<std::sync::OnceLock<Arc<rustls::ClientConfig>>>,
}

/// Why a domain cannot be reached, before any SMTP.
struct Unroutable {
    permanent: bool,
    reason: String,
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
        Mailer {
            route,
            base,
            dns: None,
            mx_port: 25,
            concurrency: 8,
            require_tls: false,
            dns_timeout: Duration::from_secs(5),
            tls: Arc::default(),
        }
    }

    /// `config` with the mailer's one TLS configuration: the base's for a relay; for
    /// exchangers, the base's trust when TLS is required, else opportunistic (RFC 7435).
    fn with_tls(&self, mut config: Config) -> Result<Config, Error> {
        if config.tls == Tls::None {
            return Ok(config);
        }
        if let Some(tls) = self.tls.get() {
            config.rustls = Some(tls.clone());
            return Ok(config);
        }
        let config = config.prepare_tls()?;
        if let Some(tls) = &config.rustls {
            let _ = self.tls.set(tls.clone());
        }
        Ok(config)
    }

    /// Resolve with this name server instead of the system's (`/etc/resolv.conf`).
    pub fn dns_server(mut self, server: SocketAddr) -> Self {
        self.dns = Some(server);
        self
    }

    /// The exchangers' port (25; other values are for tests and unusual networks).
    pub fn mx_port(mut self, port: u16) -> Self {
        self.mx_port = port;
        self
    }

    /// Require STARTTLS with a verified certificate at every exchanger.
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
        self
    }

    /// The route.
    pub fn route(&self) -> &Route {
        &self.route
    }

    /// Sends `message` to every recipient of `envelope`. Only a resolver that cannot be set
    /// up is an error; everything else is a per-recipient result.
    pub async fn send(&self, envelope: &Envelope, message: &[u8]) -> Result<Delivery, Error> {
        if let Route::Relay(host, _) = &self.route {
            return Ok(self.send_relay(host.clone(), envelope, message).await);
        }
        let resolver = Arc::new(self.resolver()?);
        let message: Arc<[u8]> = Arc::from(message);
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        for to in envelope.to() {
            let domain = to
                .rsplit_once('@')
                .map(|(_, d)| d.to_ascii_lowercase())
                .unwrap_or_default();
            match groups.iter_mut().find(|(d, _)| *d == domain) {
                Some((_, list)) => list.push(to.to_string()),
                None => groups.push((domain, vec![to.to_string()])),
            }
        }
        let limit = Arc::new(tokio::sync::Semaphore::new(self.concurrency));
        let mut tasks = tokio::task::JoinSet::new();
        for (i, (domain, rcpts)) in groups.into_iter().enumerate() {
            let mailer = self.clone();
            let resolver = resolver.clone();
            let message = message.clone();
            let limit = limit.clone();
            let mut env = envelope.clone();
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await;
                let result = mailer
                    .deliver_domain(&resolver, &domain, &rcpts, &mut env, &message)
                    .await;
                (i, result)
            });
        }
        let mut done = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(r) => done.push(r),
                Err(e) => return Err(Error::Io(Arc::new(std::io::Error::other(e)))),
            }
        }
        done.sort_by_key(|(i, _)| *i);
        let mut by_address: Vec<RecipientDelivery> =
            done.into_iter().flat_map(|(_, r)| r).collect();
        // Back to envelope order.
        let mut ordered = Vec::with_capacity(by_address.len());
        for to in envelope.to() {
            if let Some(pos) = by_address.iter().position(|r| r.address == to) {
                ordered.push(by_address.swap_remove(pos));
            }
        }
        Ok(Delivery {
            recipients: ordered,
        })
    }

    /// [`Mailer::send`] from synchronous code (runs a small runtime of its own).
    pub fn send_blocking(&self, envelope: &Envelope, message: &[u8]) -> Result<Delivery, Error> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Io(Arc::new(e)))?;
        rt.block_on(self.send(envelope, message))
    }

    async fn send_relay(&self, host: String, envelope: &Envelope, message: &[u8]) -> Delivery {
        let rcpts: Vec<String> = envelope.to().map(str::to_string).collect();
        let fail = |permanent: bool, reason: String, reply: Option<ServerReply>| Delivery {
            recipients: rcpts
                .iter()
                .map(|a| RecipientDelivery {
                    address: a.clone(),
                    domain: host.clone(),
                    host: Some(host.clone()),
                    status: DeliveryStatus::Failed {
                        permanent,
                        reason: reason.clone(),
                        reply: reply.clone(),
                    },
                })
                .collect(),
        };
        let config = match self.with_tls(self.base.clone()) {
            Ok(c) => c,
            Err(e) => return fail(!e.is_retryable(), e.to_string(), e.reply().cloned()),
        };
        let mut client = match AsyncClient::connect(config).await {
            Ok(c) => c,
            Err(e) => return fail(!e.is_retryable(), e.to_string(), e.reply().cloned()),
        };
        let result = client.send_bytes(envelope, message).await;
        let _ = client.quit().await;
        match outcome_to_results(&host, &host, result) {
            Ok(list) => Delivery { recipients: list },
            Err(e) => fail(!e.is_retryable(), e.to_string(), e.reply().cloned()),
        }
    }

    fn resolver(&self) -> Result<TokioResolver, Error> {
        let dns_error = |e: &dyn std::fmt::Display| Error::Resolve {
            host: "the DNS resolver".into(),
            source: Arc::new(std::io::Error::other(e.to_string())),
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
        builder.build().map_err(|e| dns_error(&e))
    }

    /// The exchangers of `domain`, best first, each with its addresses resolved lazily.
    async fn exchangers(
        &self,
        resolver: &TokioResolver,
        domain: &str,
    ) -> Result<Vec<String>, Unroutable> {
        if let Some(literal) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
            let ip = literal
                .strip_prefix("IPv6:")
                .or(literal.strip_prefix("ipv6:"))
                .unwrap_or(literal);
            return match ip.parse::<IpAddr>() {
                Ok(ip) => Ok(vec![ip.to_string()]),
                Err(_) => Err(Unroutable {
                    permanent: true,
                    reason: format!("bad address literal [{literal}]"),
                }),
            };
        }
        if domain.is_empty() {
            return Err(Unroutable {
                permanent: true,
                reason: "address has no domain".into(),
            });
        }
        let fqdn = format!("{}.", domain.trim_end_matches('.'));
        match resolver.mx_lookup(fqdn.as_str()).await {
            Ok(lookup) => {
                let mut mx: Vec<(u16, String, u64)> = lookup
                    .answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::MX(m) => Some((m.preference, m.exchange.to_ascii(), 0)),
                        _ => None,
                    })
                    .collect();
                if mx.is_empty() {
                    return Ok(vec![fqdn]);
                }
                // RFC 7505: a single "0 ." record says the domain takes no mail.
                mx.retain(|(_, host, _)| host != "." && !host.is_empty());
                if mx.is_empty() {
                    return Err(Unroutable {
                        permanent: true,
                        reason: format!("{domain} accepts no mail (null MX, RFC 7505)"),
                    });
                }
                // Random order among equal preferences (RFC 5321 5.1).
                for entry in &mut mx {
                    entry.2 = random();
                }
                mx.sort_by_key(|(pref, _, r)| (*pref, *r));
                Ok(mx.into_iter().map(|(_, host, _)| host).collect())
            }
            Err(e) if e.is_nx_domain() => Err(Unroutable {
                permanent: true,
                reason: format!("{domain} does not exist (NXDOMAIN)"),
            }),
            // No MX: the domain itself is the exchanger (implicit MX).
            Err(e) if e.is_no_records_found() => Ok(vec![fqdn]),
            Err(e) => Err(Unroutable {
                permanent: false,
                reason: format!("DNS lookup of MX for {domain} failed: {e}"),
            }),
        }
    }

    async fn deliver_domain(
        &self,
        resolver: &TokioResolver,
        domain: &str,
        rcpts: &[String],
        env: &mut Envelope,
        message: &[u8],
    ) -> Vec<RecipientDelivery> {
        let all =
            |host: Option<String>, permanent: bool, reason: String, reply: Option<ServerReply>| {
                rcpts
                    .iter()
                    .map(|a| RecipientDelivery {
                        address: a.clone(),
                        domain: domain.to_string(),
                        host: host.clone(),
                        status: DeliveryStatus::Failed {
                            permanent,
                            reason: reason.clone(),
                            reply: reply.clone(),
                        },
                    })
                    .collect::<Vec<_>>()
            };
        let hosts = match self.exchangers(resolver, domain).await {
            Ok(h) => h,
            Err(u) => return all(None, u.permanent, u.reason, None),
        };
        env.to = match rcpts
            .iter()
            .map(|a| postline_proto::command::Address::new(a.clone()))
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(v) => v,
            Err(e) => return all(None, true, e.to_string(), None),
        };
        let mut attempts: Vec<String> = Vec::new();
        let mut last_host = None;
        let mut any_address = false;
        for host in &hosts {
            let name = host.trim_end_matches('.').to_string();
            let ips: Vec<IpAddr> = match name.parse::<IpAddr>() {
                Ok(ip) => vec![ip],
                Err(_) => match resolver.lookup_ip(format!("{name}.").as_str()).await {
                    Ok(l) => l.iter().collect(),
                    Err(e) => {
                        attempts.push(format!("{name}: no address ({e})"));
                        continue;
                    }
                },
            };
            for ip in ips {
                any_address = true;
                last_host = Some(name.clone());
                let label = format!("{name} [{ip}]");
                match self.attempt(&name, ip, env, message).await {
                    Attempt::Done(results) => {
                        return results
                            .into_iter()
                            .map(|mut r| {
                                r.domain = domain.to_string();
                                r.host = Some(name.clone());
                                r
                            })
                            .collect()
                    }
                    Attempt::Permanent(e) => {
                        return all(
                            Some(name.clone()),
                            true,
                            format!("{label}: {e}"),
                            e.reply().cloned(),
                        )
                    }
                    Attempt::InDoubt(e) => {
                        // Trying another exchanger could deliver the message twice.
                        return all(Some(name.clone()), false, format!("{label}: {e}"), None);
                    }
                    Attempt::Next(e) => attempts.push(format!("{label}: {e}")),
                }
            }
        }
        let permanent = !any_address && attempts.is_empty();
        let reason = if attempts.is_empty() {
            format!("no exchanger of {domain} has an address")
        } else {
            format!(
                "every exchanger of {domain} failed: {}",
                attempts.join("; ")
            )
        };
        all(last_host, permanent, reason, None)
    }

    /// One exchanger address: connect (falling back to clear text when opportunistic TLS
    /// fails, as MTAs do) and send.
    async fn attempt(&self, name: &str, ip: IpAddr, env: &Envelope, message: &[u8]) -> Attempt {
        let mut config = self.base.clone();
        config.host = ip.to_string();
        config.port = Some(self.mx_port);
        config.tls_name = Some(name.to_string());
        config.auth = None;
        if self.require_tls {
            config.tls = Tls::StartTls;
        } else if config.tls != Tls::None {
            config.tls = Tls::Opportunistic;
            config = config.dangerous_accept_invalid_certificates(true);
        }
        let config = match self.with_tls(config) {
            Ok(c) => c,
            Err(e) => return Attempt::Permanent(e),
        };
        let client = match AsyncClient::connect(config.clone()).await {
            Ok(c) => Ok(c),
            Err(Error::Tls { .. }) if !self.require_tls && config.tls != Tls::None => {
                AsyncClient::connect(config.tls(Tls::None)).await
            }
            Err(e) => Err(e),
        };
        let mut client = match client {
            Ok(c) => c,
            Err(e) if e.is_retryable() || matches!(e, Error::Tls { .. } | Error::Protocol(_)) => {
                return Attempt::Next(e)
            }
            Err(e) => return Attempt::Permanent(e),
        };
        let result = client.send_bytes(env, message).await;
        let _ = client.quit().await;
        match result {
            Err(e) if e.is_in_doubt() => Attempt::InDoubt(e),
            Err(e @ Error::MessageRejected { .. }) if !e.is_retryable() => {
                match outcome_to_results(name, name, Err(e)) {
                    Ok(r) => Attempt::Done(r),
                    Err(e) => Attempt::Permanent(e),
                }
            }
            Err(e) if e.is_retryable() || matches!(e, Error::Protocol(_)) => Attempt::Next(e),
            Err(e) => Attempt::Permanent(e),
            Ok(o) => match outcome_to_results(name, name, Ok(o)) {
                Ok(r) => Attempt::Done(r),
                Err(e) => Attempt::Permanent(e),
            },
        }
    }
}

enum Attempt {
    Done(Vec<RecipientDelivery>),
    Permanent(Error),
    InDoubt(Error),
    Next(Error),
}

/// Per-recipient results from one transaction's outcome. A refused message is reported per
/// recipient with the reply that applies to each.
fn outcome_to_results(
    domain: &str,
    host: &str,
    result: Result<crate::outcome::Outcome, Error>,
) -> Result<Vec<RecipientDelivery>, Error> {
    let entry = |address: String, status: DeliveryStatus| RecipientDelivery {
        address,
        domain: domain.to_string(),
        host: Some(host.to_string()),
        status,
    };
    match result {
        Ok(o) => Ok(o
            .recipients
            .into_iter()
            .map(|r| {
                let status = if r.accepted {
                    DeliveryStatus::Delivered {
                        reply: o.reply.clone(),
                    }
                } else {
                    let reply = r.reply.clone();
                    DeliveryStatus::Failed {
                        permanent: reply.as_ref().is_none_or(|x| x.is_permanent()),
                        reason: reply
                            .as_ref()
                            .map(|x| x.to_string())
                            .unwrap_or_else(|| "refused".into()),
                        reply,
                    }
                };
                entry(r.address, status)
            })
            .collect()),
        Err(Error::MessageRejected {
            reply,
            recipients,
            at,
        }) => Ok(recipients
            .into_iter()
            .map(|r| {
                let decisive = if r.accepted {
                    reply.clone()
                } else {
                    r.reply.clone().or(reply.clone())
                };
                let permanent = decisive.as_ref().is_none_or(|x| x.is_permanent());
                let reason = match &decisive {
                    Some(x) => format!("{}: {x}", describe(at)),
                    None => describe(at).to_string(),
                };
                entry(
                    r.address,
                    DeliveryStatus::Failed {
                        permanent,
                        reason,
                        reply: decisive,
                    },
                )
            })
            .collect()),
        Err(e) => Err(e),
    }
}

fn describe(at: crate::FailedAt) -> &'static str {
    match at {
        crate::FailedAt::Mail => "sender refused",
        crate::FailedAt::NoValidRecipients => "recipient refused",
        crate::FailedAt::Data => "DATA refused",
        crate::FailedAt::Message => "message refused",
    }
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
