#!/usr/bin/env python3
"""A small, independent AWS Signature V4 signer for hand-made S3 requests in the e2e tests.

Used two ways:
  * as a module by boto3_suite.py (aws-chunked bodies, raw requests);
  * as a command by the Rust tests, which send the request with curl:
        sigv4.py METHOD URL --access AK --secret SK [--skew-secs N] [--payload-file F] [--header 'k: v']...
    prints one `Name: value` line per header to send (Authorization, X-Amz-Date, ...).

Only the standard library: the point is to produce requests that no SDK would (wrong clocks,
wrong secrets, tampered chunk signatures) while staying correct everywhere else.
"""

import argparse
import datetime
import hashlib
import hmac
import sys
import urllib.parse

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"


def _hmac(key, msg):
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def signing_key(secret, date, region="us-east-1", service="s3"):
    k = _hmac(("AWS4" + secret).encode("utf-8"), date)
    k = _hmac(k, region)
    k = _hmac(k, service)
    return _hmac(k, "aws4_request")


def _canonical_query(query):
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    enc = [(urllib.parse.quote(k, safe="-_.~"), urllib.parse.quote(v, safe="-_.~")) for k, v in pairs]
    return "&".join(f"{k}={v}" for k, v in sorted(enc))


class Signed:
    """The result of `sign`: headers to send plus what chunk signing needs."""

    def __init__(self, headers, signature, key, timestamp, scope):
        self.headers = headers
        self.signature = signature
        self.key = key
        self.timestamp = timestamp
        self.scope = scope


def sign(method, url, access, secret, payload_hash=EMPTY_SHA256, headers=None, now=None, region="us-east-1"):
    """Signs `method url` (path already percent-encoded as it will be sent). `headers` are extra
    headers to send and sign. Returns a `Signed` whose `headers` include Host, X-Amz-Date,
    X-Amz-Content-SHA256 and Authorization."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    date = stamp[:8]
    parts = urllib.parse.urlsplit(url)
    hdrs = {"host": parts.netloc, "x-amz-date": stamp, "x-amz-content-sha256": payload_hash}
    for k, v in (headers or {}).items():
        hdrs[k.lower()] = str(v)
    names = sorted(hdrs)
    canonical_headers = "".join(f"{n}:{' '.join(hdrs[n].split())}\n" for n in names)
    signed_headers = ";".join(names)
    creq = "\n".join(
        [method, parts.path or "/", _canonical_query(parts.query), canonical_headers, signed_headers, payload_hash]
    )
    scope = f"{date}/{region}/s3/aws4_request"
    sts = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(creq.encode("utf-8")).hexdigest()])
    key = signing_key(secret, date, region)
    sig = hmac.new(key, sts.encode("utf-8"), hashlib.sha256).hexdigest()
    out = {k: v for k, v in hdrs.items() if k != "host"}
    out["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={access}/{scope}, SignedHeaders={signed_headers}, Signature={sig}"
    )
    return Signed(out, sig, key, stamp, scope)


def chunk_signature(signed, prev_sig, chunk):
    sts = "\n".join(
        [
            "AWS4-HMAC-SHA256-PAYLOAD",
            signed.timestamp,
            signed.scope,
            prev_sig,
            EMPTY_SHA256,
            hashlib.sha256(chunk).hexdigest(),
        ]
    )
    return hmac.new(signed.key, sts.encode("utf-8"), hashlib.sha256).hexdigest()


def signed_chunked_body(signed, data, chunk_size, tamper_chunk=None):
    """The body of a STREAMING-AWS4-HMAC-SHA256-PAYLOAD upload; `tamper_chunk=i` flips one
    character of chunk i's signature."""
    out = []
    prev = signed.signature
    chunks = [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)] + [b""]
    for i, c in enumerate(chunks):
        sig = chunk_signature(signed, prev, c)
        prev = sig
        if tamper_chunk == i:
            sig = ("0" if sig[0] != "0" else "1") + sig[1:]
        out.append(f"{len(c):x};chunk-signature={sig}\r\n".encode() + c + b"\r\n")
    return b"".join(out)


def signed_chunked_length(data_len, chunk_size):
    n, total = data_len, 0
    sizes = [chunk_size] * (n // chunk_size) + ([n % chunk_size] if n % chunk_size else []) + [0]
    for s in sizes:
        total += len(f"{s:x};chunk-signature=") + 64 + 2 + s + 2
    return total


def unsigned_trailer_body(data, chunk_size, trailer_name, trailer_value):
    """The body of a STREAMING-UNSIGNED-PAYLOAD-TRAILER upload (what the AWS SDKs send over TLS)."""
    out = []
    for i in range(0, len(data), chunk_size):
        c = data[i : i + chunk_size]
        out.append(f"{len(c):x}\r\n".encode() + c + b"\r\n")
    out.append(b"0\r\n")
    out.append(f"{trailer_name}:{trailer_value}\r\n\r\n".encode())
    return b"".join(out)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("method")
    p.add_argument("url")
    p.add_argument("--access", required=True)
    p.add_argument("--secret", required=True)
    p.add_argument("--skew-secs", type=int, default=0, help="sign as if the clock were off by this much")
    p.add_argument("--payload-file", help="sign this body's SHA-256 (default: empty body)")
    p.add_argument("--unsigned-payload", action="store_true", help="x-amz-content-sha256: UNSIGNED-PAYLOAD")
    p.add_argument("--header", action="append", default=[], help="extra signed header 'name: value'")
    a = p.parse_args()
    if a.unsigned_payload:
        payload = UNSIGNED_PAYLOAD
    elif a.payload_file:
        with open(a.payload_file, "rb") as f:
            payload = hashlib.sha256(f.read()).hexdigest()
    else:
        payload = EMPTY_SHA256
    extra = {}
    for h in a.header:
        k, _, v = h.partition(":")
        extra[k.strip()] = v.strip()
    now = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=a.skew_secs)
    s = sign(a.method.upper(), a.url, a.access, a.secret, payload, extra, now)
    for k, v in s.headers.items():
        sys.stdout.write(f"{k}: {v}\n")


if __name__ == "__main__":
    main()
