#!/usr/bin/env python3
"""Checks that the interop servers behave as README.md says, with Python's smtplib.

    tests/interop/.venv/bin/python tests/interop/selftest.py [--no-sink]

Starts aiosmtpd_server.py in its modes (and Postfix smtp-sink unless --no-sink) on 127.0.0.1,
with a throwaway self-signed certificate made by openssl in a temporary directory. Every wait
is bounded; every server it starts is stopped. Exits non-zero if a check fails.
"""

import base64
import json
import os
import shutil
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER = os.path.join(HERE, "aiosmtpd_server.py")
HOST = "127.0.0.1"
TIMEOUT = 10

failures = []
passes = 0


def check(cond, what):
    global passes
    if cond:
        passes += 1
        print(f"ok   {what}")
    else:
        failures.append(what)
        print(f"FAIL {what}")


def expect_code(fn, code, what):
    try:
        r = fn()
        got = r[0] if isinstance(r, tuple) else None
        check(got == code, f"{what}: {r!r}")
    except smtplib.SMTPResponseException as e:
        check(e.smtp_code == code, f"{what}: {e.smtp_code} {e.smtp_error!r}")
    except smtplib.SMTPRecipientsRefused as e:
        codes = {v[0] for v in e.recipients.values()}
        check(codes == {code}, f"{what}: {e.recipients!r}")


class Server:
    def __init__(self, *args):
        self.proc = subprocess.Popen([sys.executable, SERVER, *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        line = _readline_within(self.proc.stdout, TIMEOUT)
        if not line.startswith("READY "):
            self.stop()
            raise RuntimeError(f"server {args} did not get ready: {line!r}")
        self.port = int(line.split()[1])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(TIMEOUT)


def _readline_within(stream, secs):
    import selectors
    sel = selectors.DefaultSelector()
    sel.register(stream, selectors.EVENT_READ)
    if not sel.select(secs):
        return ""
    return stream.readline()


def wait_for_file(path, secs=TIMEOUT):
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        if os.path.exists(path):
            return True
        time.sleep(0.02)
    return False


def unverified():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def make_cert(d):
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def raw_session(port, lines, secs=TIMEOUT):
    """Send raw bytes (one chunk per list item, waiting for a reply after each) and return replies."""
    out = []
    with socket.create_connection((HOST, port), timeout=secs) as s:
        f = s.makefile("rb")
        out.append(f.readline())
        for chunk in lines:
            s.sendall(chunk)
            reply = f.readline()
            while reply[3:4] == b"-":
                reply = f.readline()
            out.append(reply)
    return out


def test_plain_store(tmp):
    store = os.path.join(tmp, "store-plain")
    srv = Server("--store", store, "--smtputf8")
    try:
        with smtplib.SMTP(HOST, srv.port, timeout=TIMEOUT) as c:
            code, _ = c.ehlo("client.test")
            check(code == 250, "plain: EHLO 250")
            check(c.has_extn("size") and c.esmtp_features["size"] == str(64 * 1024 * 1024),
                  f"plain: SIZE 67108864 advertised ({c.esmtp_features.get('size')!r})")
            check(c.has_extn("smtputf8"), "plain: SMTPUTF8 advertised with --smtputf8")
            check(c.has_extn("8bitmime"), "plain: 8BITMIME advertised")
            check(not c.has_extn("auth"), "plain: no AUTH advertised without --auth")
            check(not c.has_extn("starttls"), "plain: no STARTTLS advertised without --starttls")
        # Raw DATA: a stuffed line "..x" (arrives as ".x"), a bare LF inside a line, a bare CR.
        body = b"Subject: t\r\n\r\n..x\r\nbare\nlf\r\nbare\rcr\r\n.y\r\nend\r\n"
        replies = raw_session(srv.port, [
            b"EHLO client.test\r\n",
            b"MAIL FROM:<a@example.test> BODY=8BITMIME SMTPUTF8\r\n",
            b"RCPT TO:<b@example.test>\r\n",
            b"RCPT TO:<c@example.test>\r\n",
            b"DATA\r\n",
            body + b".\r\n",
            b"QUIT\r\n",
        ])
        check([r[:3] for r in replies] == [b"220", b"250", b"250", b"250", b"250", b"354", b"250", b"221"],
              f"plain: raw transaction codes {[r[:3] for r in replies]}")
        ok = wait_for_file(os.path.join(store, "1.json"))
        check(ok, "plain: 1.json written")
        if ok:
            with open(os.path.join(store, "1.eml"), "rb") as f:
                got = f.read()
            want = b"Subject: t\r\n\r\n.x\r\nbare\nlf\r\nbare\rcr\r\ny\r\nend\r\n"
            check(got == want, f"plain: stored bytes un-stuffed exactly: {got!r}")
            with open(os.path.join(store, "1.json")) as f:
                meta = json.load(f)
            check(meta["mail_from"] == "a@example.test"
                  and meta["rcpt_tos"] == ["b@example.test", "c@example.test"]
                  and meta["mail_options"] == ["BODY=8BITMIME", "SMTPUTF8"]
                  and meta["rcpt_options"] == [] and meta["smtp_utf8"] is True,
                  f"plain: 1.json envelope {meta}")
            leftovers = [n for n in os.listdir(store) if n.startswith(".")]
            check(not leftovers, f"plain: no temp files left in store {leftovers}")
        # A second message through smtplib gets number 2.
        with smtplib.SMTP(HOST, srv.port, timeout=TIMEOUT) as c:
            c.sendmail("x@example.test", ["y@example.test"], b"Subject: 2\r\n\r\nsecond\r\n")
        check(wait_for_file(os.path.join(store, "2.json")), "plain: second message stored as 2.*")
        # A 33 MiB body (over 32 MiB) is accepted and stored whole.
        big = (b"x" * 998 + b"\r\n") * (33 * 1024 * 1024 // 1000)
        with smtplib.SMTP(HOST, srv.port, timeout=60) as c:
            c.sendmail("x@example.test", ["y@example.test"], b"Subject: big\r\n\r\n" + big)
        ok = wait_for_file(os.path.join(store, "3.json"), 30)
        check(ok and os.path.getsize(os.path.join(store, "3.eml")) == len(big) + 16,
              f"plain: 33 MiB body stored ({os.path.getsize(os.path.join(store, '3.eml')) if ok else None})")
    finally:
        srv.stop()


def test_max_size():
    srv = Server("--max-size", "1000")
    try:
        with smtplib.SMTP(HOST, srv.port, timeout=TIMEOUT) as c:
            c.ehlo("client.test")
            check(c.esmtp_features.get("size") == "1000", "max-size: SIZE 1000 advertised")
            expect_code(lambda: c.mail("a@example.test", ["SIZE=2000"]), 552, "max-size: MAIL SIZE=2000 -> 552")
            c.rset()
            c.mail("a@example.test")
            c.rcpt("b@example.test")
            expect_code(lambda: c.data((b"x" * 98 + b"\r\n") * 15), 552, "max-size: 1500-byte body -> 552")
    finally:
        srv.stop()
    srv = Server("--max-size", "0")
    try:
        with smtplib.SMTP(HOST, srv.port, timeout=TIMEOUT) as c:
            c.ehlo("client.test")
            check(not c.has_extn("size"), "max-size 0: no SIZE advertised")
            check(not c.has_extn("smtputf8"), "default: no SMTPUTF8 advertised")
            expect_code(lambda: c.docmd("MAIL", "FROM:<a@example.test> SMTPUTF8"), 501, "default: MAIL SMTPUTF8 -> 501")
    finally:
        srv.stop()


def test_starttls(cert, key, tmp):
    store = os.path.join(tmp, "store-tls")
    srv = Server("--starttls", cert, key, "--require-starttls", "--auth", "user:secret", "--store", store)
    try:
        with smtplib.SMTP(HOST, srv.port, timeout=TIMEOUT) as c:
            c.ehlo("client.test")
            check(c.has_extn("starttls"), "starttls: STARTTLS advertised")
            check(not c.has_extn("auth"), "starttls: AUTH not advertised before TLS")
            expect_code(lambda: c.mail("a@example.test"), 530, "require-starttls: MAIL before STARTTLS -> 530")
            code, _ = c.starttls(context=unverified())
            check(code == 220, "starttls: STARTTLS 220")
            c.ehlo("client.test")
            check(not c.has_extn("starttls"), "starttls: no STARTTLS after TLS")
            check(c.has_extn("auth") and set(c.esmtp_features["auth"].split()) == {"PLAIN", "LOGIN"},
                  f"starttls: AUTH {c.esmtp_features.get('auth')!r} after TLS")
            expect_code(lambda: c.mail("a@example.test"), 530, "auth: MAIL before AUTH -> 530")
            c.rset()
            expect_code(lambda: c.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0user\0wrong").decode()),
                        535, "auth: PLAIN wrong password -> 535")
            c.user, c.password = "user", "wrong"
            expect_code(lambda: c.docmd("AUTH", "LOGIN " + base64.b64encode(b"user").decode()),
                        334, "auth: LOGIN username -> 334")
            expect_code(lambda: c.docmd(base64.b64encode(b"wrong").decode()), 535,
                        "auth: LOGIN wrong password -> 535")
            code, _ = c.login("user", "secret")  # smtplib tries CRAM-MD5? no: only PLAIN/LOGIN offered
            check(code == 235, "auth: smtplib login (PLAIN) right password -> 235")
            c.sendmail("a@example.test", ["b@example.test"], b"Subject: tls\r\n\r\nover tls\r\n")
        check(wait_for_file(os.path.join(store, "1.json")), "starttls: message stored")
        with open(os.path.join(store, "1.json")) as f:
            meta = json.load(f)
        check(meta["tls"] is True and meta["auth_user"] == "user", f"starttls: json tls/auth_user {meta}")
        # LOGIN with the right password, step by step.
        with smtplib.SMTP(HOST, srv.port, timeout=TIMEOUT) as c:
            c.starttls(context=unverified())
            c.ehlo("client.test")
            c.docmd("AUTH", "LOGIN")
            c.docmd(base64.b64encode(b"user").decode())
            expect_code(lambda: c.docmd(base64.b64encode(b"secret").decode()), 235,
                        "auth: LOGIN right password -> 235")
            expect_code(lambda: c.mail("a@example.test"), 250, "auth: MAIL after AUTH LOGIN -> 250")
    finally:
        srv.stop()


def test_auth_plaintext():
    srv = Server("--auth", "user:secret")
    try:
        with smtplib.SMTP(HOST, srv.port, timeout=TIMEOUT) as c:
            c.ehlo("client.test")
            check(not c.has_extn("auth"), "auth without TLS: AUTH not advertised")
            expect_code(lambda: c.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0user\0secret").decode()),
                        538, "auth without TLS: AUTH -> 538")
    finally:
        srv.stop()
    srv = Server("--auth", "user:secret", "--auth-plaintext")
    try:
        with smtplib.SMTP(HOST, srv.port, timeout=TIMEOUT) as c:
            c.ehlo("client.test")
            check(c.has_extn("auth"), "auth-plaintext: AUTH advertised on plain text")
            expect_code(lambda: c.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0user\0nope").decode()),
                        535, "auth-plaintext: PLAIN wrong -> 535")
            expect_code(lambda: c.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0user\0secret").decode()),
                        235, "auth-plaintext: PLAIN right -> 235")
    finally:
        srv.stop()


def test_implicit_tls(cert, key, tmp):
    store = os.path.join(tmp, "store-implicit")
    srv = Server("--implicit-tls", cert, key, "--auth", "user:secret", "--store", store)
    try:
        with smtplib.SMTP_SSL(HOST, srv.port, timeout=TIMEOUT, context=unverified()) as c:
            c.ehlo("client.test")
            check(not c.has_extn("starttls"), "implicit-tls: no STARTTLS advertised")
            check(c.has_extn("auth"), "implicit-tls: AUTH advertised")
            expect_code(lambda: c.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0user\0x").decode()),
                        535, "implicit-tls: PLAIN wrong -> 535")
            c.login("user", "secret")
            c.sendmail("a@example.test", ["b@example.test"], b"Subject: i\r\n\r\nimplicit\r\n")
        ok = wait_for_file(os.path.join(store, "1.json"))
        check(ok, "implicit-tls: message stored")
        if ok:
            with open(os.path.join(store, "1.json")) as f:
                check(json.load(f)["tls"] is True, "implicit-tls: json tls true")
        # A plain-text client gets no greeting.
        with socket.create_connection((HOST, srv.port), timeout=2) as s:
            s.sendall(b"EHLO x\r\n")
            try:
                data = s.recv(100)
            except (socket.timeout, ConnectionError):
                data = b""
            check(not data.startswith(b"220"), f"implicit-tls: no plain-text greeting ({data[:20]!r})")
    finally:
        srv.stop()


def test_no_auth_over_tls(cert, key):
    srv = Server("--implicit-tls", cert, key)
    try:
        with smtplib.SMTP_SSL(HOST, srv.port, timeout=TIMEOUT, context=unverified()) as c:
            c.ehlo("client.test")
            check(not c.has_extn("auth"), "no --auth, TLS: AUTH not advertised")
            expect_code(lambda: c.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0u\0p").decode()), 504,
                        "no --auth, TLS: AUTH -> 504")
            expect_code(lambda: c.mail("a@example.test"), 250, "no --auth, TLS: MAIL -> 250")
    finally:
        srv.stop()


def test_reject_and_tempfail(tmp):
    store = os.path.join(tmp, "store-rt")
    srv = Server("--reject-rcpt", "bad", "--reject-rcpt", "nobody@", "--tempfail-first", "2", "--store", store)
    try:
        with smtplib.SMTP(HOST, srv.port, timeout=TIMEOUT) as c:
            c.ehlo("client.test")
            c.mail("a@example.test")
            expect_code(lambda: c.rcpt("bad-user@example.test"), 550, "reject-rcpt: bad-user -> 550")
            code, msg = c.rcpt("bad@x")
            check(code == 550 and msg == b"5.1.1 User unknown", f"reject-rcpt: text {code} {msg!r}")
            expect_code(lambda: c.rcpt("nobody@example.test"), 550, "reject-rcpt: second pattern -> 550")
            expect_code(lambda: c.rcpt("good@example.test"), 250, "reject-rcpt: good -> 250")
            code, msg = c.data(b"Subject: 1\r\n\r\none\r\n")
            check(code == 451 and msg == b"4.3.0 Try again later", f"tempfail: first DATA {code} {msg!r}")
            c.mail("a@example.test")
            c.rcpt("good@example.test")
            expect_code(lambda: c.data(b"Subject: 2\r\n\r\ntwo\r\n"), 451, "tempfail: second DATA -> 451")
            c.mail("a@example.test")
            c.rcpt("good@example.test")
            expect_code(lambda: c.data(b"Subject: 3\r\n\r\nthree\r\n"), 250, "tempfail: third DATA -> 250")
        ok = wait_for_file(os.path.join(store, "1.json"))
        check(ok and sorted(os.listdir(store)) == ["1.eml", "1.json"], f"tempfail: only the accepted message stored")
        if ok:
            with open(os.path.join(store, "1.eml"), "rb") as f:
                check(f.read() == b"Subject: 3\r\n\r\nthree\r\n", "tempfail: stored message is the third")
            with open(os.path.join(store, "1.json")) as f:
                check(json.load(f)["rcpt_tos"] == ["good@example.test"], "reject-rcpt: only accepted rcpt in json")
    finally:
        srv.stop()


def test_lifecycle():
    # Closing stdin makes the server exit.
    srv = Server()
    srv.proc.stdin.close()
    try:
        rc = srv.proc.wait(TIMEOUT)
        check(rc == 0, f"lifecycle: exits (rc {rc}) when stdin closes")
    except subprocess.TimeoutExpired:
        check(False, "lifecycle: exits when stdin closes")
        srv.stop()
    srv = Server()
    srv.proc.terminate()
    try:
        rc = srv.proc.wait(TIMEOUT)
        check(rc == 0, f"lifecycle: exits (rc {rc}) on SIGTERM")
    except subprocess.TimeoutExpired:
        check(False, "lifecycle: exits on SIGTERM")
        srv.stop()
    with socket.socket() as s:
        s.bind((HOST, 0))
        port = s.getsockname()[1]
    srv = Server("--port", str(port), "--lifetime", "1")
    check(srv.port == port, f"lifecycle: --port {port} honoured")
    try:
        rc = srv.proc.wait(TIMEOUT)
        check(rc == 0, "lifecycle: --lifetime 1 exits")
    except subprocess.TimeoutExpired:
        check(False, "lifecycle: --lifetime 1 exits")
        srv.stop()


class Sink:
    def __init__(self, *flags):
        with socket.socket() as s:
            s.bind((HOST, 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen(["smtp-sink", "-u", "nobody", *flags, f"{HOST}:{self.port}", "64"],
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            try:
                socket.create_connection((HOST, self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("smtp-sink did not start")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(TIMEOUT)


def test_smtp_sink():
    if not shutil.which("smtp-sink"):
        check(False, "smtp-sink installed (run .ci/install-deps)")
        return
    sink = Sink()
    try:
        with smtplib.SMTP(HOST, sink.port, timeout=TIMEOUT) as c:
            c.ehlo("client.test")
            check(c.has_extn("pipelining"), "smtp-sink: PIPELINING advertised by default")
            refused = c.sendmail("a@example.test", ["b@example.test", "c@example.test"], b"Subject: s\r\n\r\nsink\r\n")
            check(refused == {}, "smtp-sink: accepts a message")
        # smtp-source against it: 10 messages, 2 sessions.
        r = subprocess.run(["smtp-source", "-c", "-m", "10", "-s", "2", "-l", "1024", "-f", "a@example.test",
                            "-t", "b@example.test", f"{HOST}:{sink.port}"], capture_output=True, text=True,
                           timeout=60)
        check(r.returncode == 0 and r.stdout.strip().endswith("10"), f"smtp-source: 10 messages (rc {r.returncode}, {r.stdout.strip()!r})")
    finally:
        sink.stop()
    sink = Sink("-p")
    try:
        with smtplib.SMTP(HOST, sink.port, timeout=TIMEOUT) as c:
            c.ehlo("client.test")
            check(not c.has_extn("pipelining"), "smtp-sink -p: no PIPELINING")
    finally:
        sink.stop()
    sink = Sink("-f", "rcpt")
    try:
        with smtplib.SMTP(HOST, sink.port, timeout=TIMEOUT) as c:
            c.ehlo("client.test")
            c.mail("a@example.test")
            code, _ = c.rcpt("b@example.test")
            check(code >= 500, f"smtp-sink -f rcpt: every RCPT rejected ({code})")
    finally:
        sink.stop()


def main():
    tmp = tempfile.mkdtemp(prefix="postline-interop-")
    try:
        cert, key = make_cert(tmp)
        test_plain_store(tmp)
        test_max_size()
        test_starttls(cert, key, tmp)
        test_auth_plaintext()
        test_implicit_tls(cert, key, tmp)
        test_no_auth_over_tls(cert, key)
        test_reject_and_tempfail(tmp)
        test_lifecycle()
        if "--no-sink" not in sys.argv:
            test_smtp_sink()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{passes} passed, {len(failures)} failed")
    for f in failures:
        print(f"  failed: {f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
