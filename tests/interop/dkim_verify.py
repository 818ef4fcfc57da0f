#!/usr/bin/env python3
"""Verifies a message's DKIM-Signature with dkimpy, no DNS: the key record comes from a file.

usage: dkim_verify.py MESSAGE PUBKEY_DER rsa|ed25519

PUBKEY_DER is the public key as `openssl pkey -pubout -outform DER` writes it (a
SubjectPublicKeyInfo). The TXT record handed to dkimpy is `v=DKIM1; k=rsa; p=<base64 of the DER
SubjectPublicKeyInfo>` for RSA and `v=DKIM1; k=ed25519; p=<base64 of the raw 32-byte key>` for
Ed25519 (RFC 8463 section 4). Prints the signature's d=, s= and the record asked for; exits 0
when the signature verifies, 1 when it does not.
"""
import base64
import sys

import dkim


def main():
    message_path, pub_path, kind = sys.argv[1:4]
    message = open(message_path, "rb").read()
    der = open(pub_path, "rb").read()
    if kind == "ed25519":
        raw = der[-32:]
        record = b"v=DKIM1; k=ed25519; p=" + base64.b64encode(raw)
    elif kind == "rsa":
        record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)
    else:
        sys.exit("kind must be rsa or ed25519")
    asked = []

    def dnsfunc(name, timeout=5):
        asked.append(name)
        return record

    ok = dkim.verify(message, dnsfunc=dnsfunc)
    print("asked:", b",".join(asked).decode() if asked else "-")
    print("verified" if ok else "NOT verified")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
