//! The rig: a namespace, the TAP inside it, and embassy-net running on the TAP.

use std::io;
use std::net::Ipv4Addr;
use std::time::{SystemTime, UNIX_EPOCH};

use embassy_futures::select::{select, Either};
use embassy_net::tcp::{ConnectError, TcpSocket};
use embassy_net::{Config, Ipv4Cidr, Stack, StackResources, StaticConfigV4};
use embassy_net_tuntap::TunTapDevice;
use embassy_time::{with_timeout, Duration};

use crate::netns::Netns;
use crate::servers::{Aiosmtpd, SilentListener, SmtpSink};
use crate::Clock;

/// The kernel's address on the TAP, where the servers listen.
pub const KERNEL_ADDR: Ipv4Addr = Ipv4Addr::new(192, 168, 69, 1);
/// The stack's address (embassy-net, in the test process).
pub const DEVICE_ADDR: Ipv4Addr = Ipv4Addr::new(192, 168, 69, 2);
/// Both addresses' prefix length.
pub const PREFIX_LEN: u8 = 24;
/// How long [`Rig::run`] lets a test future run before it panics.
pub const RUN_LIMIT: Duration = Duration::from_secs(90);

/// The TAP device's name inside the namespace.
const TAP: &str = "tap0";

/// A namespace with a TAP whose kernel side is [`KERNEL_ADDR`], and the TAP's file, ready for
/// [`Rig::run`]. Dropping it closes the TAP (the kernel removes the device) and deletes the
/// namespace.
pub struct Rig {
    // Fields drop in this order: the TAP before the namespace.
    device: Option<TunTapDevice>,
    ns: Netns,
}

impl Rig {
    /// Creates the namespace and the TAP inside it (opened by this process from a thread that
    /// entered the namespace, so the device lives as long as its file), addresses the kernel
    /// side and brings it up.
    pub fn new() -> io::Result<Rig> {
        let ns = Netns::create()?;
        let device = ns.enter(|| TunTapDevice::new(TAP))?;
        let rig = Rig {
            device: Some(device),
            ns,
        };
        let cidr = format!("{KERNEL_ADDR}/{PREFIX_LEN}");
        rig.ns.ip(&["addr", "add", &cidr, "dev", TAP])?;
        rig.ns.ip(&["link", "set", TAP, "up"])?;
        Ok(rig)
    }

    /// The namespace, to start other programs or sockets on the kernel side.
    pub fn netns(&self) -> &Netns {
        &self.ns
    }

    /// Starts `tests/interop/aiosmtpd_server.py` inside the namespace on [`KERNEL_ADDR`], with
    /// extra flags (`--auth USER:PASS`, `--reject-rcpt SUBSTRING`, ...).
    pub fn aiosmtpd(&self, args: &[&str]) -> io::Result<Aiosmtpd> {
        Aiosmtpd::start(&self.ns, args)
    }

    /// Starts Postfix's `smtp-sink` inside the namespace on [`KERNEL_ADDR`].
    pub fn smtp_sink(&self) -> io::Result<SmtpSink> {
        SmtpSink::start(&self.ns)
    }

    /// A kernel-side listener on [`KERNEL_ADDR`] that accepts and never writes.
    pub fn silent_listener(&self) -> io::Result<SilentListener> {
        SilentListener::start(&self.ns)
    }

    /// Runs embassy-net on the TAP (static address [`DEVICE_ADDR`]) and `test` beside it on
    /// this thread, until `test` completes; panics past [`RUN_LIMIT`]. The TAP closes when
    /// this returns, so a rig runs once.
    pub fn run<T>(&mut self, test: impl for<'a> AsyncFnOnce(Net<'a>) -> T) -> T {
        let device = self.device.take().expect("a rig runs once");
        let config = Config::ipv4_static(StaticConfigV4 {
            address: Ipv4Cidr::new(DEVICE_ADDR, PREFIX_LEN),
            gateway: None,
            dns_servers: Default::default(),
        });
        let mut resources = StackResources::<4>::new();
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        let (stack, mut runner) = embassy_net::new(device, config, &mut resources, seed);
        let limited = with_timeout(RUN_LIMIT, async {
            stack.wait_config_up().await;
            test(Net { stack }).await
        });
        match async_io::block_on(select(runner.run(), limited)) {
            Either::First(never) => never,
            Either::Second(Ok(out)) => out,
            Either::Second(Err(_)) => panic!("the test over the TAP ran past {RUN_LIMIT:?}"),
        }
    }
}

/// The running stack, as a test sees it.
#[derive(Clone, Copy)]
pub struct Net<'d> {
    stack: Stack<'d>,
}

impl<'d> Net<'d> {
    /// The embassy-net stack itself.
    pub fn stack(&self) -> Stack<'d> {
        self.stack
    }

    /// The rig's clock.
    pub fn clock(&self) -> Clock {
        Clock
    }

    /// A TCP socket over the TAP connected to `KERNEL_ADDR:port`, with the caller's receive and
    /// transmit buffers. It implements `embedded_io_async::Read + Write` (0.7).
    pub async fn connect<'s>(
        &self,
        port: u16,
        rx: &'s mut [u8],
        tx: &'s mut [u8],
    ) -> Result<TcpSocket<'s>, ConnectError>
    where
        'd: 's,
    {
        let mut socket = TcpSocket::new(self.stack, rx, tx);
        socket.connect((KERNEL_ADDR, port)).await?;
        Ok(socket)
    }
}
