#!/usr/bin/env python3
"""A configurable real aiosmtpd server for postline's interop tests.

Run with the venv that .ci/install-deps creates:

    tests/interop/.venv/bin/python tests/interop/aiosmtpd_server.py --port 0 --store DIR ...

Once it listens it prints exactly one line ``READY <port>`` on stdout (and nothing else ever
goes to stdout), then serves until SIGTERM/SIGINT, until its stdin reaches EOF (so a test
harness that dies does not leak servers: spawn it with a piped stdin and keep the pipe open),
or until ``--lifetime`` seconds have passed. Logs go to stderr. See README.md beside this file.
"""

import argparse
import asyncio
import base64
import binascii
import json
import logging
import os
import signal
import ssl
import stat
import sys
import warnings

from aiosmtpd.smtp import SMTP, MISSING, AuthResult, LoginPassword

DEFAULT_MAX_SIZE = 64 * 1024 * 1024  # bodies of 32 MiB and more must fit
LOG = logging.getLogger("postline.interop")


class Handler:
    """aiosmtpd handler: RCPT rejection, temporary DATA failures, and the message store."""

    def __init__(self, args):
        self.store = args.store
        self.reject_rcpt = list(args.reject_rcpt or [])
        self.tempfail_left = args.tempfail_first
        self.refuse_data_lines = args.refuse_data_lines
        self.refuse_data_width = args.refuse_data_width
        self.advertise_auth = args.auth is not None or bool(args.scram)
        self.count = 0  # messages accepted (and stored) so far
        self.dsn = args.dsn
        self.scram = ScramAuth(args) if args.scram else None
        self.sessions_file = args.sessions_file
        self.sessions = {"current": 0, "peak": 0, "total": 0}

    def session_opened(self):
        s = self.sessions
        s["current"] += 1
        s["total"] += 1
        s["peak"] = max(s["peak"], s["current"])
        self._write_sessions()

    def session_closed(self):
        self.sessions["current"] -= 1
        self._write_sessions()

    def _write_sessions(self):
        if self.sessions_file is not None:
            _write_atomic(self.sessions_file, (json.dumps(self.sessions) + "\n").encode())

    # aiosmtpd finds handler methods named auth_<MECH> ("__" becomes "-") and calls them as
    # method(server, args) with args = ["MECH"] or ["MECH", initial-response].
    async def auth_SCRAM__SHA__256(self, server, args):
        if self.scram is None:
            await server.push("504 5.5.4 Unrecognized authentication type")
            return AuthResult(success=False, handled=True)
        return await self.scram.run(server, args, "SCRAM-SHA-256")

    async def auth_SCRAM__SHA__256__PLUS(self, server, args):
        if self.scram is None:
            await server.push("504 5.5.4 Unrecognized authentication type")
            return AuthResult(success=False, handled=True)
        return await self.scram.run(server, args, "SCRAM-SHA-256-PLUS")

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        # New-style hook: it must record the client's name itself.
        session.host_name = hostname
        if not self.advertise_auth:
            responses = [r for r in responses if not r[4:].upper().startswith("AUTH")]
        # This server binds channels with tls-server-end-point only; under TLS 1.3 RFC 9266
        # makes tls-exporter the binding (Python's ssl cannot export keying material), so
        # -PLUS is offered only over TLS 1.2.
        ssl_object = server.transport.get_extra_info("ssl_object") if server.transport else None
        if ssl_object is not None and ssl_object.version() == "TLSv1.3":
            responses = [r.replace(" SCRAM-SHA-256-PLUS", "") for r in responses]
        if self.dsn:
            # Before the last line ("250 HELP"), which ends the reply.
            responses = responses[:-1] + ["250-DSN"] + responses[-1:]
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        for needle in self.reject_rcpt:
            if needle in address:
                LOG.info("RCPT %s rejected (matches %r)", address, needle)
                return "550 5.1.1 User unknown"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.tempfail_left > 0:
            self.tempfail_left -= 1
            LOG.info("DATA tempfailed (%d more to come)", self.tempfail_left)
            return "451 4.3.0 Try again later"
        if self.refuse_data_lines > 0:
            # A policy refusal with a long explanation, as large providers send: every line
            # but the last a continuation.
            lines = [f"5.7.26 Line {i + 1} of why this message was refused: the sender is not authenticated."
                     for i in range(self.refuse_data_lines)]
            # Padded to the width asked for (lines longer than a client's buffer).
            lines = [line + " " + "x" * (self.refuse_data_width - len(line) - 5)
                     if self.refuse_data_width > len(line) + 5 else line for line in lines]
            LOG.info("DATA refused with a %d-line reply", len(lines))
            return "\r\n".join(f"550{'-' if i < len(lines) - 1 else ' '}{line}"
                                for i, line in enumerate(lines))
        self.count += 1
        n = self.count
        if self.store is not None:
            meta = {
                "mail_from": envelope.mail_from,
                "rcpt_tos": list(envelope.rcpt_tos),
                "mail_options": list(envelope.mail_options),
                "rcpt_options": list(envelope.rcpt_options),
                "smtp_utf8": bool(envelope.smtp_utf8),
                "size": len(envelope.original_content),
                "tls": session.ssl is not None or server.transport.get_extra_info("sslcontext") is not None,
                "auth_user": _auth_user(session),
                # The client's address as this server saw it: 127.0.0.9 when microsocks
                # (-b 127.0.0.9) carried the session, the source address a client bound.
                "peer": session.peer[0] if session.peer else None,
                "host_name": session.host_name,
            }
            _write_atomic(os.path.join(self.store, f"{n}.eml"), envelope.original_content)
            _write_atomic(
                os.path.join(self.store, f"{n}.json"),
                (json.dumps(meta, indent=1, sort_keys=True) + "\n").encode(),
            )
        LOG.info("message %d accepted: %d bytes from %r to %r",
                 n, len(envelope.original_content), envelope.mail_from, envelope.rcpt_tos)
        return "250 OK"


def _auth_user(session):
    data = session.auth_data
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return None


def _write_atomic(path, data):
    d, base = os.path.split(path)
    tmp = os.path.join(d, f".{base}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
    os.replace(tmp, path)


class ScramAuth:
    """SCRAM-SHA-256 and SCRAM-SHA-256-PLUS (RFC 5802, RFC 7677) through scramp.

    SMTP AUTH framing (RFC 4954): the client-first message comes as the initial response (or
    after an empty ``334 ``), the server-first goes out as ``334 base64``, the client-final comes
    back, the server-final ``v=...`` goes out as another ``334 base64``, the client answers an
    empty line, then ``235``. A wrong proof gets ``535 5.7.8``. The channel binding is
    tls-server-end-point (RFC 5929 4.1: a hash of the server's own certificate, SHA-256 for
    sha1/sha256 signatures), computed by scramp from the certificate file given to --starttls or
    --implicit-tls; PLUS is refused without TLS.
    """

    def __init__(self, args):
        import scramp  # imported only when --scram is given

        self.scramp = scramp
        self.users = {}
        mech = scramp.ScramMechanism("SCRAM-SHA-256")
        for user, password in args.scram:
            self.users[user] = mech.make_auth_info(password, iteration_count=4096)
        cert = (args.starttls or args.implicit_tls or [None])[0]
        self.cert_pem = None
        if cert is not None:
            with open(cert) as f:
                self.cert_pem = f.read()
        self.implicit = args.implicit_tls is not None
        self.bad_proof = args.scram_bad_proof
        self.skip_final = args.scram_skip_final

    def _auth_fn(self, username):
        try:
            return self.users[username]
        except KeyError:
            raise self.scramp.ScramException("unknown user") from None

    async def run(self, server, args, mechanism):
        scramp = self.scramp
        under_tls = server._tls_protocol is not None or self.implicit
        cb = None
        ssl_object = server.transport.get_extra_info("ssl_object") if server.transport else None
        tls13 = ssl_object is not None and ssl_object.version() == "TLSv1.3"
        # Over TLS 1.3 this server cannot bind (see handle_EHLO), so it does not claim to.
        if under_tls and self.cert_pem is not None and not tls13:
            cb = ("tls-server-end-point", self.cert_pem)
        if mechanism.endswith("-PLUS") and cb is None:
            await server.push("535 5.7.8 Channel binding needs TLS")
            return AuthResult(success=False, handled=True)
        if len(args) > 1:
            try:
                client_first = base64.b64decode(args[1], validate=True)
            except (binascii.Error, ValueError):
                await server.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        else:
            client_first = await server.challenge_auth("")
            if client_first is MISSING:
                return AuthResult(success=False, handled=True)
        seen = {}

        def auth_fn(username):
            seen["user"] = username
            return self._auth_fn(username)

        try:
            s = scramp.ScramMechanism(mechanism).make_server(auth_fn, channel_binding=cb)
            s.set_client_first(client_first.decode("utf-8"))
            server_first = s.get_server_first()
        except (scramp.ScramException, UnicodeDecodeError) as e:
            LOG.info("AUTH %s: client-first refused: %s", mechanism, e)
            await server.push("535 5.7.8 Authentication credentials invalid")
            return AuthResult(success=False, handled=True)
        client_final = await server.challenge_auth(server_first)
        if client_final is MISSING:
            return AuthResult(success=False, handled=True)
        try:
            s.set_client_final(client_final.decode("utf-8"))
            server_final = s.get_server_final()
        except (scramp.ScramException, UnicodeDecodeError) as e:
            LOG.info("AUTH %s: client-final refused: %s", mechanism, e)
            await server.push("535 5.7.8 Authentication credentials invalid")
            return AuthResult(success=False, handled=True)
        user = seen.get("user", "?").encode("utf-8")
        if self.skip_final:
            LOG.info("AUTH %s: 235 without the server-final message (--scram-skip-final)", mechanism)
            return AuthResult(success=True, auth_data=user)
        if self.bad_proof:
            server_final = "v=" + base64.b64encode(os.urandom(32)).decode()
            LOG.info("AUTH %s: sending a wrong server signature (--scram-bad-proof)", mechanism)
        last = await server.challenge_auth(server_final)
        if last is MISSING:
            return AuthResult(success=False, handled=True)
        if last != b"":
            await server.push("501 5.5.2 Expected an empty response after the server-final message")
            return AuthResult(success=False, handled=True)
        return AuthResult(success=True, auth_data=user)


class Authenticator:
    def __init__(self, user, password):
        self.user = user.encode()
        self.password = password.encode()

    def __call__(self, server, session, envelope, mechanism, auth_data):
        if mechanism not in ("PLAIN", "LOGIN") or not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        if auth_data.login == self.user and auth_data.password == self.password:
            # auth_data is kept in session.auth_data
            return AuthResult(success=True, auth_data=auth_data.login)
        LOG.info("AUTH %s failed for %r", mechanism, auth_data.login)
        return AuthResult(success=False, handled=False)


def tls_context(cert, key, tls_max=None):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    if tls_max == "1.2":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port; 0 picks a free one (default 0)")
    p.add_argument("--unix-socket", metavar="PATH", default=None,
                   help="listen on this Unix stream socket instead of TCP (mode 0666; READY 0)")
    p.add_argument("--hostname", default="aiosmtpd.postline.test",
                   help="name in the greeting and EHLO reply (default aiosmtpd.postline.test)")
    p.add_argument("--store", metavar="DIR",
                   help="write each accepted message as DIR/<n>.eml (bytes after un-stuffing) and "
                        "DIR/<n>.json (envelope), n = 1, 2, ...; the .json is written last")
    tls = p.add_mutually_exclusive_group()
    tls.add_argument("--starttls", nargs=2, metavar=("CERT", "KEY"), help="advertise STARTTLS")
    tls.add_argument("--implicit-tls", nargs=2, metavar=("CERT", "KEY"), help="TLS from the first byte")
    p.add_argument("--require-starttls", action="store_true",
                   help="530 for commands other than EHLO/HELO/NOOP/QUIT/STARTTLS before STARTTLS")
    p.add_argument("--auth", metavar="USER:PASS",
                   help="offer AUTH PLAIN and LOGIN and require AUTH before MAIL; wrong credentials -> 535")
    p.add_argument("--scram", nargs=2, metavar=("USER", "PASS"), action="append",
                   help="offer AUTH SCRAM-SHA-256 and SCRAM-SHA-256-PLUS (tls-server-end-point) "
                        "through scramp and require AUTH before MAIL (repeatable for more users)")
    p.add_argument("--scram-bad-proof", action="store_true",
                   help="with --scram: send a wrong server signature (v=) after a right client proof")
    p.add_argument("--scram-skip-final", action="store_true",
                   help="with --scram: answer 235 after the client proof without sending v=")
    p.add_argument("--tls-max", choices=["1.2", "1.3"], default=None,
                   help="highest TLS version offered (1.2: e.g. for tls-server-end-point only "
                        "clients; Python's ssl cannot export keying material for tls-exporter)")
    p.add_argument("--auth-exclude", metavar="MECHANISM", action="append", default=[],
                   help="do not offer this AUTH mechanism (repeatable), e.g. PLAIN to make clients use LOGIN")
    p.add_argument("--auth-plaintext", action="store_true",
                   help="allow AUTH without TLS (aiosmtpd refuses it with 538 by default)")
    p.add_argument("--reject-rcpt", metavar="SUBSTRING", action="append",
                   help="RCPT TO whose address contains SUBSTRING -> 550 5.1.1 User unknown (repeatable)")
    p.add_argument("--tempfail-first", type=int, default=0, metavar="N",
                   help="answer the first N DATA transactions with 451 4.3.0 Try again later")
    p.add_argument("--refuse-data-lines", type=int, default=0, metavar="N",
                   help="refuse every message after its data with an N-line 550 reply")
    p.add_argument("--refuse-data-width", type=int, default=0, metavar="W",
                   help="pad each line of that refusal to W bytes (code and separator included)")
    p.add_argument("--max-size", type=int, default=DEFAULT_MAX_SIZE, metavar="N",
                   help=f"advertise SIZE N and refuse larger messages (default {DEFAULT_MAX_SIZE}); "
                        "0 = no SIZE keyword and no limit")
    p.add_argument("--smtputf8", action="store_true", help="advertise and accept SMTPUTF8")
    p.add_argument("--dsn", action="store_true",
                   help="advertise DSN and accept RET/ENVID (MAIL) and NOTIFY/ORCPT (RCPT); they are "
                        "recorded in mail_options/rcpt_options (without it they are refused with 555)")
    p.add_argument("--sessions-file", metavar="PATH", default=None,
                   help="keep JSON {current, peak, total} of client sessions (connections) in PATH")
    p.add_argument("--timeout", type=float, default=300, help="idle connection timeout in seconds (default 300)")
    p.add_argument("--lifetime", type=float, default=None, metavar="SECS", help="exit after SECS seconds")
    p.add_argument("--no-stdin-watch", action="store_true",
                   help="do not exit on stdin EOF (for running in the background by hand)")
    p.add_argument("-v", "--verbose", action="store_true", help="log sessions to stderr")
    args = p.parse_args(argv)
    if args.require_starttls and not args.starttls:
        p.error("--require-starttls needs --starttls CERT KEY")
    if (args.scram_bad_proof or args.scram_skip_final) and not args.scram:
        p.error("--scram-bad-proof and --scram-skip-final need --scram USER PASS")
    if args.auth is not None and ":" not in args.auth:
        p.error("--auth takes USER:PASS")
    if args.tempfail_first < 0 or args.max_size < 0:
        p.error("--tempfail-first and --max-size must be >= 0")
    return args


def _watch_stdin(loop, stop):
    """Stop when stdin reaches EOF, if stdin is something that can reach EOF (pipe, socket, tty)."""
    try:
        fd = sys.stdin.fileno()
        mode = os.fstat(fd).st_mode
    except (OSError, ValueError, AttributeError):
        LOG.warning("no stdin: not watching it for EOF")
        return
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(fd)):
        LOG.warning("stdin is not a pipe, socket or tty: not watching it for EOF")
        return

    def on_readable():
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            LOG.info("stdin closed: exiting")
            loop.remove_reader(fd)
            stop.set()

    os.set_blocking(fd, False)
    loop.add_reader(fd, on_readable)


class DsnSMTP(SMTP):
    """aiosmtpd refuses MAIL/RCPT parameters it does not know (555); RFC 3461's are taken here
    (and stay in the recorded options, upper-cased as aiosmtpd records every option)."""

    DSN_PARAMS = ("RET", "ENVID", "NOTIFY", "ORCPT")

    def _getparams(self, params):
        parsed = super()._getparams(params)
        if parsed is not None:
            for key in self.DSN_PARAMS:
                parsed.pop(key, None)
        return parsed


async def serve(args):
    loop = asyncio.get_running_loop()
    if args.store is not None:
        os.makedirs(args.store, exist_ok=True)
    handler = Handler(args)
    implicit = args.implicit_tls is not None
    starttls_ctx = tls_context(*args.starttls, tls_max=args.tls_max) if args.starttls else None
    server_ssl = tls_context(*args.implicit_tls, tls_max=args.tls_max) if implicit else None

    smtp_kwargs = dict(
        data_size_limit=args.max_size or None,
        enable_SMTPUTF8=args.smtputf8,
        decode_data=False,
        hostname=args.hostname,
        tls_context=starttls_ctx,
        require_starttls=args.require_starttls,
        timeout=args.timeout,
        # With implicit TLS aiosmtpd does not know the connection is encrypted, so it
        # must not insist on STARTTLS before AUTH there.
        auth_require_tls=not (args.auth_plaintext or implicit),
        loop=loop,
    )
    excluded = []
    if args.auth is not None:
        user, password = args.auth.split(":", 1)
        smtp_kwargs.update(auth_required=True, authenticator=Authenticator(user, password))
    else:
        excluded += ["PLAIN", "LOGIN"]
    excluded += [m.upper() for m in args.auth_exclude]
    if args.scram:
        smtp_kwargs.update(auth_required=True)
    else:
        excluded += ["SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"]
    if excluded:
        smtp_kwargs.update(auth_exclude_mechanism=excluded)

    base = DsnSMTP if args.dsn else SMTP

    class Counted(base):
        """Counts open sessions (for --sessions-file): connections to this server at once."""

        def connection_made(self, transport):
            handler.session_opened()
            super().connection_made(transport)

        def connection_lost(self, exc):
            handler.session_closed()
            super().connection_lost(exc)

    factory = lambda: (Counted if args.sessions_file else base)(handler, **smtp_kwargs)  # noqa: E731
    if args.unix_socket is not None:
        server = await loop.create_unix_server(factory, path=args.unix_socket, ssl=server_ssl)
        os.chmod(args.unix_socket, 0o666)
        port = 0
    else:
        server = await loop.create_server(factory, host=args.host, port=args.port, ssl=server_ssl)
        port = server.sockets[0].getsockname()[1]

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if not args.no_stdin_watch:
        _watch_stdin(loop, stop)
    if args.lifetime is not None:
        loop.call_later(args.lifetime, stop.set)

    sys.stdout.write(f"READY {port}\n")
    sys.stdout.flush()
    LOG.info("listening on %s", args.unix_socket or f"{args.host}:{port}")
    await stop.wait()
    server.close()
    LOG.info("stopped after %d message(s)", handler.count)


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO if args.verbose else logging.WARNING,
                        format="aiosmtpd_server[%(process)d] %(levelname)s %(name)s: %(message)s")
    # "Requiring AUTH while not requiring TLS" is what --auth-plaintext asks for.
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
    logging.getLogger("mail.log").setLevel(logging.INFO if args.verbose else logging.ERROR)
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
