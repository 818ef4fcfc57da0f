#!/usr/bin/env python3
"""The Python smtplib peer for bench/run: one connection reused for N messages of SIZE bytes,
or one message read whole from a file (smtplib needs it in memory). Prints one JSON line.

    smtplib_peer.py --port P --count N --size BYTES [--rcpts K]
    smtplib_peer.py --port P --path FILE
"""
import argparse
import json
import smtplib
import sys
import time

LINE = b"The quick brown fox jumps over the lazy dog; pack my box with five dozen jugs.\r\n"
HEAD = (b"From: a@client.bench.test\r\nTo: b@sink.test\r\nSubject: bench\r\n"
        b"Message-ID: <bench@client.bench.test>\r\n\r\n")


def message(size):
    """The same text the Rust clients send: exactly `size` bytes, CRLF lines."""
    m = bytearray(HEAD)
    while len(m) < size:
        m += LINE
    del m[max(size, 2) - 2:]
    if m and m[-1:] == b"\r":
        m[-1:] = b"x"
    m += b"\r\n"
    return bytes(m)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--rcpts", type=int, default=1)
    ap.add_argument("--path")
    a = ap.parse_args()
    if a.path:
        with open(a.path, "rb") as f:
            body = f.read()
        count = 1
    else:
        body = message(a.size)
        count = a.count
    rcpts = ["%db@sink.test" % i for i in range(1, a.rcpts + 1)]
    start = time.monotonic()
    s = smtplib.SMTP("127.0.0.1", a.port, local_hostname="client.bench.test", timeout=300)
    first = None
    for _ in range(count):
        refused = s.sendmail("a@client.bench.test", rcpts, body)
        if refused:
            print("refused: %r" % refused, file=sys.stderr)
            return 1
        if first is None:
            first = time.monotonic() - start
    sent = time.monotonic() - start
    s.quit()
    total = time.monotonic() - start
    print(json.dumps({"client": "smtplib", "count": count, "size": len(body), "rcpts": a.rcpts,
                      "first_s": first, "sent_s": sent, "total_s": total}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
