//! [`SendCmd`]: a `postline send` command line, built flag by flag.

use std::borrow::{Borrow, BorrowMut};
use std::ffi::OsStr;
use std::ops::{Deref, DerefMut};

use assert_cmd::Command;

/// A `postline send ...` command in a [`Sandbox`](crate::Sandbox), from
/// [`Sandbox::send`](crate::Sandbox::send) or [`Sandbox::send_bare`](crate::Sandbox::send_bare).
///
/// Every flag method appends its flag (and value) to the command line, in the order called;
/// what has no method of its own goes in with [`arg`](Self::arg) or [`args`](Self::args).
/// [`env`](Self::env) and [`env_remove`](Self::env_remove) change the environment. It
/// dereferences to the assert_cmd [`Command`] (for `write_stdin`, `output`, ...), and
/// [`run_code`](crate::run_code) takes it as it is.
pub struct SendCmd {
    cmd: Command,
}

impl SendCmd {
    /// `cmd` is `postline send` with the sandbox's environment.
    pub(crate) fn new(cmd: Command) -> SendCmd {
        SendCmd { cmd }
    }

    /// One more argument, as is.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> SendCmd {
        self.cmd.arg(arg);
        self
    }

    /// More arguments, as they are.
    pub fn args<I, S>(mut self, args: I) -> SendCmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd.args(args);
        self
    }

    fn flag(self, name: &str, value: impl AsRef<OsStr>) -> SendCmd {
        self.arg(name).arg(value)
    }

    /// `--server HOST[:PORT]`.
    pub fn server(self, server: impl AsRef<OsStr>) -> SendCmd {
        self.flag("--server", server)
    }

    /// `--tls MODE`.
    pub fn tls(self, mode: impl AsRef<OsStr>) -> SendCmd {
        self.flag("--tls", mode)
    }

    /// `--timeout SECS`.
    pub fn timeout(self, secs: u32) -> SendCmd {
        self.flag("--timeout", secs.to_string())
    }

    /// `--helo NAME`.
    pub fn helo(self, name: impl AsRef<OsStr>) -> SendCmd {
        self.flag("--helo", name)
    }

    /// `--from ADDRESS`.
    pub fn from(self, address: impl AsRef<OsStr>) -> SendCmd {
        self.flag("--from", address)
    }

    /// `--to ADDRESSES`.
    pub fn to(self, addresses: impl AsRef<OsStr>) -> SendCmd {
        self.flag("--to", addresses)
    }

    /// `--cc ADDRESSES`.
    pub fn cc(self, addresses: impl AsRef<OsStr>) -> SendCmd {
        self.flag("--cc", addresses)
    }

    /// `--bcc ADDRESSES`.
    pub fn bcc(self, addresses: impl AsRef<OsStr>) -> SendCmd {
        self.flag("--bcc", addresses)
    }

    /// `--subject TEXT`.
    pub fn subject(self, subject: impl AsRef<OsStr>) -> SendCmd {
        self.flag("--subject", subject)
    }

    /// `--body TEXT`.
    pub fn body(self, body: impl AsRef<OsStr>) -> SendCmd {
        self.flag("--body", body)
    }

    /// `--body-file PATH` (`-`: standard input).
    pub fn body_file(self, path: impl AsRef<OsStr>) -> SendCmd {
        self.flag("--body-file", path)
    }

    /// `--message PATH` (`-`: standard input).
    pub fn message(self, path: impl AsRef<OsStr>) -> SendCmd {
        self.flag("--message", path)
    }

    /// `--attach PATH`.
    pub fn attach(self, path: impl AsRef<OsStr>) -> SendCmd {
        self.flag("--attach", path)
    }

    /// `--user NAME`.
    pub fn user(self, name: impl AsRef<OsStr>) -> SendCmd {
        self.flag("--user", name)
    }

    /// `--password-env VAR`.
    pub fn password_env(self, var: impl AsRef<OsStr>) -> SendCmd {
        self.flag("--password-env", var)
    }

    /// `--ca-file PATH`.
    pub fn ca_file(self, path: impl AsRef<OsStr>) -> SendCmd {
        self.flag("--ca-file", path)
    }

    /// `--account NAME`.
    pub fn account(self, name: impl AsRef<OsStr>) -> SendCmd {
        self.flag("--account", name)
    }

    /// `--json`.
    pub fn json(self) -> SendCmd {
        self.arg("--json")
    }

    /// `-v`.
    pub fn verbose(self) -> SendCmd {
        self.arg("-v")
    }

    /// Sets the environment variable `key` for this run.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> SendCmd {
        self.cmd.env(key, value);
        self
    }

    /// Removes the environment variable `key` for this run.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> SendCmd {
        self.cmd.env_remove(key);
        self
    }

    /// The assert_cmd command.
    pub fn into_command(self) -> Command {
        self.cmd
    }
}

impl Deref for SendCmd {
    type Target = Command;

    fn deref(&self) -> &Command {
        &self.cmd
    }
}

impl DerefMut for SendCmd {
    fn deref_mut(&mut self) -> &mut Command {
        &mut self.cmd
    }
}

impl Borrow<Command> for SendCmd {
    fn borrow(&self) -> &Command {
        &self.cmd
    }
}

impl BorrowMut<Command> for SendCmd {
    fn borrow_mut(&mut self) -> &mut Command {
        &mut self.cmd
    }
}

impl From<SendCmd> for Command {
    fn from(s: SendCmd) -> Command {
        s.cmd
    }
}
