//! The `postline` binary when its surroundings are hostile or broken: stdout or stderr closed
//! (`postline ... | head`), arguments that are not UTF-8, absurd numbers, servers that send
//! terminal control sequences. Whatever happens, no panic (exit 101) and a clear exit code.

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use postline_testkit::{Sandbox, ScriptedServer, Step};

/// Bound on one run of the binary.
const RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// Which standard stream a run gets closed: a pipe whose read end is already gone, so the
/// first write fails with EPIPE.
#[derive(Clone, Copy, Debug)]
enum Closed {
    Stdout,
    Stderr,
}

/// What a run with one stream closed left: its status and the other stream's bytes.
struct Run {
    status: ExitStatus,
    open: String,
}

impl Run {
    /// Asserts the exit code, and that nothing panicked (the open stream would tell).
    #[track_caller]
    fn expect(&self, code: i32, what: &str) {
        assert!(
            !self.open.contains("panicked"),
            "{what}: panicked:\n{}",
            self.open
        );
        assert_eq!(
            self.status.code(),
            Some(code),
            "{what}: expected exit {code}, got {:?}; open stream:\n{}",
            self.status,
            self.open
        );
    }
}

/// Runs `cmd` with `closed` closed and stdin empty, bounded by [`RUN_TIMEOUT`].
fn run_closed(mut cmd: Command, closed: Closed) -> Run {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    cmd.stdin(Stdio::null());
    match closed {
        Closed::Stdout => cmd.stdout(writer).stderr(Stdio::piped()),
        Closed::Stderr => cmd.stderr(writer).stdout(Stdio::piped()),
    };
    let mut child = cmd.spawn().expect("spawn postline");
    // The command holds the pipe's write end; dropping it leaves only the child's.
    drop(cmd);
    let mut pipe: Box<dyn Read + Send> = match closed {
        Closed::Stdout => Box::new(child.stderr.take().unwrap()),
        Closed::Stderr => Box::new(child.stdout.take().unwrap()),
    };
    let reader = thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + RUN_TIMEOUT;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("postline still running after {RUN_TIMEOUT:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let open = String::from_utf8_lossy(&reader.join().unwrap()).into_owned();
    Run { status, open }
}

/// `postline ARGS` in `sb`, to run with [`run_closed`].
fn postline(sb: &Sandbox, args: &[&str]) -> Command {
    let mut c = sb.std_cmd();
    c.args(args);
    c
}

/// A port on 127.0.0.1 where nothing listens.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    port
}

/// A server for one `postline probe --tls none`: greeting, EHLO (no STARTTLS), QUIT.
fn probe_server(greeting: &str, ehlo: &[&str]) -> ScriptedServer {
    let mut steps = vec![Step::reply(greeting), Step::expect("EHLO")];
    let mut lines = vec!["scripted.test"];
    lines.extend(ehlo);
    for (i, l) in lines.iter().enumerate() {
        let sep = if i + 1 == lines.len() { ' ' } else { '-' };
        steps.push(Step::reply(&format!("250{sep}{l}")));
    }
    steps.extend([Step::expect("QUIT"), Step::reply("221 bye")]);
    ScriptedServer::start(steps)
}

// -------------------------------------------------------------------- closed stdout / stderr

#[test]
fn probe_into_a_closed_stdout_exits_0() {
    let sb = Sandbox::with_prefix("postline-robust-");
    for extra in [&[][..], &["--json"], &["-v"]] {
        let server = probe_server("220 scripted.test ready", &["PIPELINING", "SIZE 1000"]);
        let mut args = vec!["probe", "--server", "", "--tls", "none", "--timeout", "5"];
        let addr = server.addr();
        args[2] = &addr;
        args.extend(extra);
        run_closed(postline(&sb, &args), Closed::Stdout).expect(0, &format!("probe {extra:?}"));
        server.finish();
    }
}

#[test]
fn probe_transcript_into_a_closed_stderr_exits_0() {
    let sb = Sandbox::with_prefix("postline-robust-");
    let server = probe_server("220 scripted.test ready", &["PIPELINING"]);
    let addr = server.addr();
    let args = [
        "probe",
        "--server",
        &addr,
        "--tls",
        "none",
        "--timeout",
        "5",
        "-v",
    ];
    run_closed(postline(&sb, &args), Closed::Stderr).expect(0, "probe -v");
    server.finish();
}

#[test]
fn help_version_completions_and_man_into_a_closed_stdout_exit_0() {
    let sb = Sandbox::with_prefix("postline-robust-");
    for args in [
        &["--help"][..],
        &["--version"],
        &["send", "--help"],
        &["queue", "--help"],
        &["completions", "bash"],
        &["completions", "zsh"],
        &["man"],
    ] {
        run_closed(postline(&sb, args), Closed::Stdout).expect(0, &format!("{args:?}"));
    }
}

#[test]
fn failures_into_a_closed_stderr_keep_their_exit_codes() {
    let sb = Sandbox::with_prefix("postline-robust-");
    let unreachable = format!("127.0.0.1:{}", closed_port());
    let cases: [(&[&str], i32); 4] = [
        // Refused by main after parsing.
        (&["probe"], 64),
        // The probe's own failure line.
        (&["probe", "--server", &unreachable, "--tls", "none"], 75),
        // clap's own error.
        (&["send", "--no-such-flag"], 64),
        // sendmail mode's refusal.
        (&["sendmail", "-Z"], 64),
    ];
    for (args, code) in cases {
        run_closed(postline(&sb, args), Closed::Stderr).expect(code, &format!("{args:?}"));
    }
    // A config file that does not parse.
    let sb = Sandbox::with_prefix("postline-robust-");
    sb.config("not toml at all [");
    run_closed(postline(&sb, &["probe"]), Closed::Stderr).expect(78, "bad config");
}
