#!/usr/bin/env python3
"""S3 writer for the kill -9 tests (cyvault/tests/common/crash_flow.rs drives it).

One long-lived process. Commands arrive on stdin, one per line; everything it reports goes to
stdout, one event per line, so the test can keep a ledger of what was acknowledged:

  endpoint URL           use this endpoint from now on              -> "ok endpoint"
  mkbucket               create the bucket (argv[1])                -> "ok mkbucket"
  go ROUND SEED          start the writer threads                   -> "ok go"
  stop                   writers finish their current op and exit   -> "stopped"
  scan                   list objects and multipart uploads         -> "obj KEY SIZE"..., "upload KEY ID"..., "end scan"
  get KEY                read KEY whole                             -> "body KEY SHA256 LEN" | "missing KEY"
  put KEY ATTEMPT KIND SIZE   write that payload again (replay)     -> "ack KEY ATTEMPT" | "fail ..."
  abortmpu KEY           start a multipart upload and abort it      -> "ok abortmpu"
  quit

Writer threads report, for every operation:
  start KEY ATTEMPT KIND SIZE SHA256   before the first byte is sent (KIND: put | mpu)
  mpu KEY ATTEMPT UPLOAD_ID            CreateMultipartUpload acknowledged
  complete KEY ATTEMPT                 CompleteMultipartUpload about to be sent
  ack KEY ATTEMPT                      the write was acknowledged (HTTP 200)
  fail KEY ATTEMPT CLASS MESSAGE       it was not (CLASS: conn = connection lost, http = an S3
                                       error response, other = anything else)

Payloads are a pure function of (key, attempt, size), so the test can have any of them written
again. Keys never contain spaces. Each thread owns its keys, so writes to one key never overlap.
"""

import hashlib
import math
import os
import random
import sys
import threading

import boto3
import botocore.config
import botocore.exceptions

MIB = 1024 * 1024
PART = 5 * MIB
PARTS = 3
THREADS = int(os.environ.get("CRASH_WRITER_THREADS", "4"))
HOT_KEYS = 4

BUCKET = sys.argv[1]
_out_lock = threading.Lock()
_state = {"endpoint": None}
_stop = threading.Event()
_threads = []


def say(*words):
    line = " ".join(str(w) for w in words).replace("\n", " ").replace("\r", " ")
    with _out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def payload(key, attempt, size):
    return random.Random(f"{key}|{attempt}".encode()).randbytes(size)


def client(endpoint):
    cfg = botocore.config.Config(
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        retries={"max_attempts": 1, "mode": "standard"},
        connect_timeout=5,
        read_timeout=120,
        max_pool_connections=THREADS + 2,
    )
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
        config=cfg,
    )


_main_clients = {}


def main_client():
    """The client of the command loop (one per endpoint: building one takes ~0.1 s)."""
    ep = _state["endpoint"]
    if ep not in _main_clients:
        _main_clients[ep] = client(ep)
    return _main_clients[ep]


def classify(exc):
    if isinstance(exc, botocore.exceptions.ClientError):
        err = exc.response.get("Error", {})
        return "http", f"{err.get('Code')} {exc.response.get('ResponseMetadata', {}).get('HTTPStatusCode')} {err.get('Message')}"
    conn = (
        botocore.exceptions.EndpointConnectionError,
        botocore.exceptions.ConnectionClosedError,
        botocore.exceptions.ReadTimeoutError,
        botocore.exceptions.ConnectTimeoutError,
        botocore.exceptions.HTTPClientError,
        ConnectionError,
    )
    if isinstance(exc, conn):
        return "conn", f"{type(exc).__name__}: {exc}"
    return "other", f"{type(exc).__name__}: {exc}"


def write(s3, key, attempt, kind, size):
    """Writes one payload; returns normally only when it was acknowledged."""
    body = payload(key, attempt, size)
    if kind == "put":
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        return
    up = s3.create_multipart_upload(Bucket=BUCKET, Key=key)
    uid = up["UploadId"]
    say("mpu", key, attempt, uid)
    parts = []
    for n in range(PARTS):
        chunk = body[n * PART:(n + 1) * PART]
        r = s3.upload_part(Bucket=BUCKET, Key=key, UploadId=uid, PartNumber=n + 1, Body=chunk)
        parts.append({"PartNumber": n + 1, "ETag": r["ETag"]})
    say("complete", key, attempt)
    s3.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=uid, MultipartUpload={"Parts": parts})


def attempt_op(s3, key, attempt, kind, size):
    sha = hashlib.sha256(payload(key, attempt, size)).hexdigest()
    say("start", key, attempt, kind, size, sha)
    try:
        write(s3, key, attempt, kind, size)
    except Exception as exc:  # noqa: BLE001 - every failure is reported, none is fatal
        cls, msg = classify(exc)
        say("fail", key, attempt, cls, msg)
        return False
    say("ack", key, attempt)
    return True


def writer(round_no, seed, t, endpoint):
    rng = random.Random(f"{seed}/{round_no}/{t}")
    s3 = client(endpoint)
    seq = 0
    while not _stop.is_set():
        seq += 1
        attempt = f"r{round_no}t{t}s{seq}"
        r = rng.random()
        hot = f"hot/t{t}/h{rng.randrange(HOT_KEYS)}"
        fresh = f"r{round_no}/t{t}/f{seq}"
        if r < 0.15:
            kind, key, size = "mpu", hot if rng.random() < 0.5 else fresh, PARTS * PART
        else:
            kind, key = "put", hot if r < 0.55 else fresh
            size = 6 * MIB if rng.random() < 0.05 else int(math.exp(rng.uniform(math.log(1024), math.log(6 * MIB))))
        attempt_op(s3, key, attempt, kind, size)


def scan():
    s3 = main_client()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        for o in page.get("Contents", []):
            say("obj", o["Key"], o["Size"])
    kwargs = {"Bucket": BUCKET}
    while True:
        r = s3.list_multipart_uploads(**kwargs)
        for u in r.get("Uploads", []):
            say("upload", u["Key"], u["UploadId"])
        if not r.get("IsTruncated"):
            break
        kwargs["KeyMarker"] = r.get("NextKeyMarker", "")
        kwargs["UploadIdMarker"] = r.get("NextUploadIdMarker", "")
    say("end", "scan")


def get(key):
    s3 = main_client()
    try:
        data = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    except botocore.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchKey":
            say("missing", key)
            return
        raise
    say("body", key, hashlib.sha256(data).hexdigest(), len(data))


def main():
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        cmd = words[0]
        try:
            if cmd == "endpoint":
                _state["endpoint"] = words[1]
                say("ok", "endpoint")
            elif cmd == "mkbucket":
                main_client().create_bucket(Bucket=BUCKET)
                say("ok", "mkbucket")
            elif cmd == "go":
                _stop.clear()
                _threads.clear()
                for t in range(THREADS):
                    th = threading.Thread(target=writer, args=(int(words[1]), words[2], t, _state["endpoint"]), daemon=True)
                    th.start()
                    _threads.append(th)
                say("ok", "go")
            elif cmd == "stop":
                _stop.set()
                for th in _threads:
                    th.join()
                say("stopped")
            elif cmd == "scan":
                scan()
            elif cmd == "get":
                get(words[1])
            elif cmd == "put":
                attempt_op(main_client(), words[1], words[2], words[3], int(words[4]))
            elif cmd == "abortmpu":
                s3 = main_client()
                uid = s3.create_multipart_upload(Bucket=BUCKET, Key=words[1])["UploadId"]
                s3.abort_multipart_upload(Bucket=BUCKET, Key=words[1], UploadId=uid)
                say("ok", "abortmpu")
            elif cmd == "quit":
                break
            else:
                say("error", cmd, "unknown command")
        except Exception as exc:  # noqa: BLE001 - reported to the test, which fails on it
            cls, msg = classify(exc)
            say("error", cmd, cls, msg)
    _stop.set()


if __name__ == "__main__":
    main()
