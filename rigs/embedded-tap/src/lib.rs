//! A test rig for postline's embedded driver: a real no_std TCP/IP stack (embassy-net over
//! smoltcp) on a TAP device inside a network namespace the test creates, and servers on the
//! kernel side of that TAP.
//!
//! ```text
//!   test process                         namespace pl-tap-<pid>-<n>
//!   embassy-net 192.168.69.2  <-- tap0 -->  kernel 192.168.69.1 (aiosmtpd, smtp-sink, a silent listener)
//! ```
//!
//! [`Rig::new`] creates the namespace, opens the TAP from a thread that entered it, and gives
//! the kernel side its address; [`Rig::run`] runs the stack and a test future together and hands
//! the test a [`Net`], from which it connects an `embedded_io_async::Read + Write` socket. The
//! namespace is deleted when the [`Rig`] drops, also when the test panics; one a killed run left
//! behind is deleted by the next [`Rig::new`]. Needs root.

mod clock;
mod netns;
mod rig;
mod servers;

pub use clock::Clock;
pub use netns::Netns;
pub use rig::{Net, Rig, DEVICE_ADDR, KERNEL_ADDR, PREFIX_LEN, RUN_LIMIT};
pub use servers::{Aiosmtpd, SilentListener, SmtpSink};

pub use embassy_net;
pub use embassy_time;
pub use embedded_io_async;
