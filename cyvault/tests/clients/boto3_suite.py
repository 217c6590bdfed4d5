#!/usr/bin/env python3
"""boto3 end-to-end suite for an S3 endpoint (Cyberun Vault's gateway; also runs against radosgw).

Environment:
  AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY   the user under test ("root")
  CYV_USER2_ACCESS_KEY, CYV_USER2_SECRET_KEY                   optional second user (isolation cases)
  CYV_SUITE_SKIP=a,b   skip these cases (they count as skipped, never as passed)
  CYV_SUITE_ONLY=a,b   run only these cases

boto3 keeps its DEFAULT checksum behaviour (CRC32 on every upload that supports it). Prints one
line per case, `ok NAME` / `FAIL NAME: why` / `skip NAME: why`, then `N passed, M failed, K skipped`,
and exits non-zero when a case failed or none ran.
"""

import base64
import contextlib
import datetime
import hashlib
import io
import os
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
import uuid
import xml.etree.ElementTree as ET
import zlib
from http.client import HTTPConnection, HTTPException

import boto3
import botocore
import botocore.auth
import botocore.httpchecksum
from boto3.s3.transfer import TransferConfig
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sigv4  # noqa: E402

ENDPOINT = os.environ["AWS_ENDPOINT_URL"].rstrip("/")
AK = os.environ["AWS_ACCESS_KEY_ID"]
SK = os.environ["AWS_SECRET_ACCESS_KEY"]
U2_AK = os.environ.get("CYV_USER2_ACCESS_KEY", "")
U2_SK = os.environ.get("CYV_USER2_SECRET_KEY", "")
SKIP = {s.strip() for s in os.environ.get("CYV_SUITE_SKIP", "").split(",") if s.strip()}
ONLY = {s.strip() for s in os.environ.get("CYV_SUITE_ONLY", "").split(",") if s.strip()}
MIB = 1024 * 1024
RUN = uuid.uuid4().hex[:10]


def _reconnect_once(attempts, caught_exception=None, **_):
    """Retry (once, at once) only a request whose pooled keep-alive connection turned out to be
    closed; no other retries, so every S3 error reaches the cases. How the server treats the
    connection after an early error is checked on its own by `early_error_keeps_connection_usable`."""
    if attempts == 1 and isinstance(caught_exception, botocore.exceptions.ConnectionClosedError):
        return 0
    return None


def client(access=AK, secret=SK, signature_version="s3v4", **extra):
    cfg = Config(
        s3={"addressing_style": "path"},
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=10,
        read_timeout=30,
        signature_version=signature_version,
        **extra,
    )
    c = boto3.client(
        "s3",
        endpoint_url=ENDPOINT,
        aws_access_key_id=access,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=cfg,
    )
    c.meta.events.register("needs-retry.s3", _reconnect_once)
    return c


S = client()
U2 = client(U2_AK, U2_SK) if U2_AK else None
BUCKETS = []  # (client, name) to clean up


def bucket_name(tag):
    name = f"cyv-b3-{RUN}-{tag}"
    assert len(name) <= 63, name
    return name


def make_bucket(tag, c=None):
    c = c or S
    name = bucket_name(tag)
    c.create_bucket(Bucket=name)
    BUCKETS.append((c, name))
    return name


B = bucket_name("main")

# --------------------------------------------------------------------------------------------
# The runner
# --------------------------------------------------------------------------------------------
CASES = []


class Failure(Exception):
    pass


class Skip(Exception):
    pass


def case(fn):
    CASES.append(fn)
    return fn


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def eq(got, want, what):
    if got != want:
        g, w = repr(got), repr(want)
        raise Failure(f"{what}: got {g[:300]}, want {w[:300]}")


def status(resp):
    return resp["ResponseMetadata"]["HTTPStatusCode"]


def expect_error(fn, codes, http_status, what=""):
    """Runs fn(); it must raise ClientError with one of `codes` and `http_status`. Every error but
    HEAD's (no body) must carry a request id."""
    if isinstance(codes, str):
        codes = (codes,)
    try:
        r = fn()
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code")
        st = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code not in codes or st != http_status:
            raise Failure(f"{what}: want {'/'.join(codes)} {http_status}, got {code} {st}: {e}")
        if not str(code).isdigit() and not e.response.get("ResponseMetadata", {}).get("RequestId"):
            raise Failure(f"{what}: error {code} carries no RequestId")
        return e
    raise Failure(f"{what}: want {'/'.join(codes)} {http_status}, but the call succeeded: {str(r)[:200]}")


def md5_hex(b):
    return hashlib.md5(b).hexdigest()


def b64(b):
    return base64.b64encode(b).decode()


def crc32_b64(b):
    return b64(zlib.crc32(b).to_bytes(4, "big"))


def _table(poly, bits):
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        t.append(c)
    return t


_CRC32C = _table(0x82F63B78, 32)
_CRC64NVME = _table(0x9A6C9329AC4BC9B5, 64)


def crc32c(b):
    c = 0xFFFFFFFF
    for x in b:
        c = _CRC32C[(c ^ x) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def crc64nvme(b):
    m = 0xFFFFFFFFFFFFFFFF
    c = m
    for x in b:
        c = _CRC64NVME[(c ^ x) & 0xFF] ^ (c >> 8)
    return c ^ m


assert crc32c(b"123456789") == 0xE3069283
assert crc64nvme(b"123456789") == 0xAE8B14860A799888

CHECKSUMS = {
    # algorithm: (response field, value of data as the x-amz-checksum-* header carries it)
    "CRC32": ("ChecksumCRC32", crc32_b64),
    "CRC32C": ("ChecksumCRC32C", lambda b: b64(crc32c(b).to_bytes(4, "big"))),
    "SHA1": ("ChecksumSHA1", lambda b: b64(hashlib.sha1(b).digest())),
    "SHA256": ("ChecksumSHA256", lambda b: b64(hashlib.sha256(b).digest())),
    "CRC64NVME": ("ChecksumCRC64NVME", lambda b: b64(crc64nvme(b).to_bytes(8, "big"))),
}
BOTO_COMPUTES = {"CRC32", "SHA1", "SHA256"}  # the others need awscrt: we send the value ourselves


def put_with_checksum(c, bucket, key, data, alg, value=None):
    field, fn = CHECKSUMS[alg]
    if value is None and alg in BOTO_COMPUTES:
        return c.put_object(Bucket=bucket, Key=key, Body=data, ChecksumAlgorithm=alg)
    return c.put_object(Bucket=bucket, Key=key, Body=data, **{field: value if value is not None else fn(data)})


def body_of(resp):
    return resp["Body"].read()


def get(key, bucket=None, c=None, **kw):
    return body_of((c or S).get_object(Bucket=bucket or B, Key=key, **kw))


def rand(n):
    return os.urandom(n)


def http(method, url, data=None, headers=None):
    """A plain urllib request; returns (status, headers, body) for 2xx-5xx alike."""
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def error_xml(body, what):
    """Parses an S3 error body: returns (Code, RequestId); fails unless it is `<Error>` XML with both."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError as e:
        raise Failure(f"{what}: error body is not XML ({e}): {body[:200]!r}")
    tag = root.tag.split("}")[-1]
    eq(tag, "Error", f"{what}: root element")
    code = root.findtext("Code")
    rid = root.findtext("RequestId")
    check(code, f"{what}: no <Code> in {body[:200]!r}")
    check(rid, f"{what}: no <RequestId> in {body[:200]!r}")
    return code, rid


def key_url(bucket, key):
    return f"{ENDPOINT}/{bucket}/{urllib.parse.quote(key, safe='/~')}"


@contextlib.contextmanager
def clock_offset(seconds):
    """botocore signs with a clock that is `seconds` off."""
    orig = botocore.auth.get_current_datetime

    def skewed(*a, **kw):
        return orig(*a, **kw) + datetime.timedelta(seconds=seconds)

    botocore.auth.get_current_datetime = skewed
    try:
        yield
    finally:
        botocore.auth.get_current_datetime = orig


@contextlib.contextmanager
def trailer_checksums():
    """botocore sends aws-chunked bodies with trailing checksums (STREAMING-UNSIGNED-PAYLOAD-TRAILER)
    only over https; make it believe the plain-http endpoint is https so we test exactly that body."""
    orig = botocore.httpchecksum.urlparse

    def as_https(url, *a, **kw):
        u = orig(url, *a, **kw)
        return u._replace(scheme="https") if u.scheme == "http" else u

    botocore.httpchecksum.urlparse = as_https
    try:
        yield
    finally:
        botocore.httpchecksum.urlparse = orig


# --------------------------------------------------------------------------------------------
# Buckets
# --------------------------------------------------------------------------------------------
@case
def create_bucket_and_list_buckets():
    r = S.create_bucket(Bucket=B)
    BUCKETS.append((S, B))
    eq(status(r), 200, "CreateBucket status")
    r = S.list_buckets()
    names = [b["Name"] for b in r["Buckets"]]
    check(B in names, f"{B} not in ListBuckets {names}")
    check(r.get("Owner", {}).get("ID"), f"ListBuckets has no Owner/ID: {r.get('Owner')}")
    for b in r["Buckets"]:
        check(isinstance(b.get("CreationDate"), datetime.datetime), f"bucket {b} has no CreationDate")


@case
def create_own_bucket_again_is_already_owned_by_you():
    expect_error(lambda: S.create_bucket(Bucket=B), "BucketAlreadyOwnedByYou", 409, "re-create own bucket")


@case
def head_bucket_existing_and_missing():
    eq(status(S.head_bucket(Bucket=B)), 200, "HeadBucket status")
    expect_error(lambda: S.head_bucket(Bucket=bucket_name("nosuch")), "404", 404, "HeadBucket missing")


@case
def get_bucket_location_is_us_east_1():
    r = S.get_bucket_location(Bucket=B)
    # us-east-1 is reported as an empty LocationConstraint.
    check(r.get("LocationConstraint") in (None, ""), f"LocationConstraint {r.get('LocationConstraint')!r}")


@case
def invalid_bucket_name_is_rejected():
    expect_error(lambda: S.create_bucket(Bucket=f"Bad_Name_{RUN}"), "InvalidBucketName", 400, "bad name")


@case
def missing_bucket_errors():
    nb = bucket_name("nosuch")
    expect_error(lambda: S.get_object(Bucket=nb, Key="k"), "NoSuchBucket", 404, "GetObject")
    expect_error(lambda: S.put_object(Bucket=nb, Key="k", Body=b"x"), "NoSuchBucket", 404, "PutObject")
    expect_error(lambda: S.list_objects_v2(Bucket=nb), "NoSuchBucket", 404, "ListObjectsV2")
    expect_error(lambda: S.list_objects(Bucket=nb), "NoSuchBucket", 404, "ListObjects")
    expect_error(lambda: S.delete_bucket(Bucket=nb), "NoSuchBucket", 404, "DeleteBucket")


@case
def delete_non_empty_bucket_is_bucket_not_empty():
    nb = make_bucket("notempty")
    S.put_object(Bucket=nb, Key="k", Body=b"x")
    expect_error(lambda: S.delete_bucket(Bucket=nb), "BucketNotEmpty", 409, "DeleteBucket non-empty")
    S.delete_object(Bucket=nb, Key="k")
    eq(status(S.delete_bucket(Bucket=nb)), 204, "DeleteBucket status")
    BUCKETS.remove((S, nb))
    expect_error(lambda: S.head_bucket(Bucket=nb), "404", 404, "HeadBucket after delete")
    names = [b["Name"] for b in S.list_buckets()["Buckets"]]
    check(nb not in names, "deleted bucket still listed")


# --------------------------------------------------------------------------------------------
# Objects
# --------------------------------------------------------------------------------------------
@case
def put_get_head_round_trip():
    data = rand(1000)
    r = S.put_object(Bucket=B, Key="rt/obj", Body=data)
    eq(r["ETag"], f'"{md5_hex(data)}"', "PutObject ETag")
    g = S.get_object(Bucket=B, Key="rt/obj")
    eq(body_of(g), data, "body")
    eq(g["ETag"], f'"{md5_hex(data)}"', "GetObject ETag")
    eq(g["ContentLength"], 1000, "ContentLength")
    h = S.head_object(Bucket=B, Key="rt/obj")
    eq(h["ContentLength"], 1000, "HEAD ContentLength")
    eq(h["ETag"], r["ETag"], "HEAD ETag")
    age = datetime.datetime.now(datetime.timezone.utc) - h["LastModified"]
    check(abs(age.total_seconds()) < 300, f"LastModified {h['LastModified']} is not now")
    # Overwrite replaces.
    S.put_object(Bucket=B, Key="rt/obj", Body=b"second")
    eq(get("rt/obj"), b"second", "body after overwrite")


@case
def large_single_put():
    data = rand(6 * MIB + 3)
    r = S.put_object(Bucket=B, Key="rt/large", Body=data)
    eq(r["ETag"], f'"{md5_hex(data)}"', "ETag")
    eq(get("rt/large"), data, "body")


@case
def empty_object():
    r = S.put_object(Bucket=B, Key="rt/empty", Body=b"")
    eq(r["ETag"], '"d41d8cd98f00b204e9800998ecf8427e"', "ETag of empty object")
    eq(get("rt/empty"), b"", "body")
    eq(S.head_object(Bucket=B, Key="rt/empty")["ContentLength"], 0, "ContentLength")


@case
def range_on_empty_object_is_invalid_range():
    S.put_object(Bucket=B, Key="rt/empty0", Body=b"")
    for rng in ("bytes=0-0", "bytes=0-", "bytes=5-10"):
        expect_error(
            lambda: S.get_object(Bucket=B, Key="rt/empty0", Range=rng), "InvalidRange", 416, f"Range {rng}"
        )


@case
def range_reads():
    data = bytes(range(256)) * 4
    S.put_object(Bucket=B, Key="rt/range", Body=data)
    for rng, lo, hi in (
        ("bytes=0-9", 0, 9),
        ("bytes=1000-", 1000, 1023),
        ("bytes=-24", 1000, 1023),
        ("bytes=1020-5000", 1020, 1023),
        ("bytes=5-5", 5, 5),
        ("bytes=-5000", 0, 1023),
    ):
        r = S.get_object(Bucket=B, Key="rt/range", Range=rng)
        eq(status(r), 206, f"{rng} status")
        eq(r.get("ContentRange"), f"bytes {lo}-{hi}/1024", f"{rng} Content-Range")
        eq(r["ContentLength"], hi - lo + 1, f"{rng} Content-Length")
        eq(body_of(r), data[lo : hi + 1], f"{rng} body")
    for rng in ("bytes=1024-", "bytes=2000-3000"):
        expect_error(lambda: S.get_object(Bucket=B, Key="rt/range", Range=rng), "InvalidRange", 416, rng)


SPECIAL_KEYS = [
    "sk/with space.txt",
    "sk/ünïcødé/日本語 ファイル.txt",
    "sk/plus+sign+",
    "sk/percent%2Fliteral%25%",
    "sk/amp&eq=q?hash#end",
    "sk/tilde~star*(paren)!'quote\"",
    "sk/emoji-😀",
    "sk/semi;colon:comma,at@dollar$",
]


@case
def special_character_keys_round_trip():
    for k in SPECIAL_KEYS:
        S.put_object(Bucket=B, Key=k, Body=k.encode())
    for k in SPECIAL_KEYS:
        eq(get(k), k.encode(), f"GET {k!r}")
        eq(S.head_object(Bucket=B, Key=k)["ContentLength"], len(k.encode()), f"HEAD {k!r}")
    listed = [o["Key"] for o in S.list_objects_v2(Bucket=B, Prefix="sk/")["Contents"]]
    eq(listed, sorted(SPECIAL_KEYS, key=lambda s: s.encode()), "ListObjectsV2 keys (UTF-8 byte order)")
    listed1 = [o["Key"] for o in S.list_objects(Bucket=B, Prefix="sk/")["Contents"]]
    eq(listed1, listed, "ListObjects (v1) keys")
    for k in SPECIAL_KEYS:
        S.copy_object(Bucket=B, Key=k + ".copy", CopySource={"Bucket": B, "Key": k})
        eq(get(k + ".copy"), k.encode(), f"copy of {k!r}")
    for k in SPECIAL_KEYS:
        S.delete_object(Bucket=B, Key=k)
        S.delete_object(Bucket=B, Key=k + ".copy")
    eq(S.list_objects_v2(Bucket=B, Prefix="sk/")["KeyCount"], 0, "KeyCount after delete")


@case
def keys_with_double_and_leading_slash():
    for k in ("ds//double", "/leading", "trailing/", "ds/./dot/../dots"):
        S.put_object(Bucket=B, Key=k, Body=k.encode())
        eq(get(k), k.encode(), f"GET {k!r}")
        listed = [o["Key"] for o in S.list_objects_v2(Bucket=B, Prefix=k)["Contents"]]
        check(k in listed, f"{k!r} not listed under its own prefix: {listed}")
        S.delete_object(Bucket=B, Key=k)


@case
def list_encoding_type_url():
    keys = ["enc/a b", "enc/ü+x", "enc/dir one/x", "enc/p%q"]
    for k in keys:
        S.put_object(Bucket=B, Key=k, Body=b"")
    # An explicit EncodingType makes botocore hand back the raw (encoded) values.
    r = S.list_objects_v2(Bucket=B, Prefix="enc/", EncodingType="url")
    eq(r.get("EncodingType"), "url", "EncodingType echoed")
    raw = [o["Key"] for o in r["Contents"]]
    for k in raw:
        check(k.isascii() and " " not in k, f"key {k!r} is not URL-encoded")
    eq(sorted(urllib.parse.unquote_plus(k) for k in raw), sorted(keys), "decoded keys")
    r = S.list_objects_v2(Bucket=B, Prefix="enc/", Delimiter="/", EncodingType="url")
    prefixes = [urllib.parse.unquote_plus(p["Prefix"]) for p in r.get("CommonPrefixes", [])]
    eq(prefixes, ["enc/dir one/"], "decoded CommonPrefixes")
    for p in r.get("CommonPrefixes", []):
        check(" " not in p["Prefix"], f"prefix {p['Prefix']!r} is not URL-encoded")
    r = S.list_objects(Bucket=B, Prefix="enc/", EncodingType="url")
    eq(sorted(urllib.parse.unquote_plus(o["Key"]) for o in r["Contents"]), sorted(keys), "v1 decoded keys")
    for k in keys:
        S.delete_object(Bucket=B, Key=k)


PG = ["pg/a1", "pg/a2", "pg/a3", "pg/a4", "pg/a5", "pg/d1/x", "pg/d1/y", "pg/d2/x", "pg/d3/z/w", "pg/d4/"]
PG_TOP = ["pg/a1", "pg/a2", "pg/a3", "pg/a4", "pg/a5"]
PG_DIRS = ["pg/d1/", "pg/d2/", "pg/d3/", "pg/d4/"]


@case
def list_v2_pagination_with_delimiter():
    for k in PG:
        S.put_object(Bucket=B, Key=k, Body=b"p")
    contents, prefixes, pages, token = [], [], 0, None
    while True:
        kw = {"ContinuationToken": token} if token else {}
        r = S.list_objects_v2(Bucket=B, Prefix="pg/", Delimiter="/", MaxKeys=2, **kw)
        pages += 1
        check(pages <= 10, "pagination does not end")
        eq(r.get("Prefix"), "pg/", "Prefix echoed")
        eq(r.get("Delimiter"), "/", "Delimiter echoed")
        eq(r.get("MaxKeys"), 2, "MaxKeys echoed")
        if token:
            eq(r.get("ContinuationToken"), token, "ContinuationToken echoed")
        c = [o["Key"] for o in r.get("Contents", [])]
        p = [x["Prefix"] for x in r.get("CommonPrefixes", [])]
        eq(r["KeyCount"], len(c) + len(p), f"KeyCount on page {pages}")
        check(len(c) + len(p) <= 2, f"page {pages} has {len(c) + len(p)} entries with MaxKeys=2")
        contents += c
        prefixes += p
        if not r["IsTruncated"]:
            check(not r.get("NextContinuationToken"), "NextContinuationToken on the last page")
            break
        token = r.get("NextContinuationToken")
        check(token, "truncated page without NextContinuationToken")
    eq(contents, PG_TOP, "Contents across pages")
    eq(prefixes, PG_DIRS, "CommonPrefixes across pages")
    eq(pages, 5, "pages (objects and common prefixes each count against MaxKeys)")


@case
def list_v2_start_after_prefix_and_max_keys():
    r = S.list_objects_v2(Bucket=B, Prefix="pg/")
    eq([o["Key"] for o in r["Contents"]], PG, "full listing")
    eq(r["KeyCount"], len(PG), "KeyCount")
    eq(r["IsTruncated"], False, "IsTruncated")
    for o in r["Contents"]:
        eq(o["Size"], 1, f"Size of {o['Key']}")
        eq(o["ETag"], f'"{md5_hex(b"p")}"', f"ETag of {o['Key']}")
    r = S.list_objects_v2(Bucket=B, Prefix="pg/", StartAfter="pg/a3")
    eq(r.get("StartAfter"), "pg/a3", "StartAfter echoed")
    eq([o["Key"] for o in r["Contents"]], PG[3:], "after pg/a3")
    r = S.list_objects_v2(Bucket=B, Prefix="pg/", MaxKeys=3)
    eq([o["Key"] for o in r["Contents"]], PG[:3], "MaxKeys=3")
    eq(r["IsTruncated"], True, "IsTruncated with MaxKeys=3")
    r = S.list_objects_v2(Bucket=B, Prefix="pg/d3/", Delimiter="/")
    eq(r.get("Contents", []), [], "no Contents under pg/d3/")
    eq([p["Prefix"] for p in r.get("CommonPrefixes", [])], ["pg/d3/z/"], "nested CommonPrefixes")
    r = S.list_objects_v2(Bucket=B, Prefix="pg/nothing")
    eq(r["KeyCount"], 0, "KeyCount for an empty prefix")
    check("Contents" not in r, "Contents for an empty prefix")
    r = S.list_objects_v2(Bucket=B, Prefix="pg/", Delimiter="1")
    eq([p["Prefix"] for p in r.get("CommonPrefixes", [])], ["pg/a1", "pg/d1"], "non-slash delimiter")


@case
def list_v1_marker_pagination():
    contents, prefixes, marker, pages = [], [], None, 0
    while True:
        kw = {"Marker": marker} if marker else {}
        r = S.list_objects(Bucket=B, Prefix="pg/", Delimiter="/", MaxKeys=2, **kw)
        pages += 1
        check(pages <= 10, "pagination does not end")
        if marker:
            eq(r.get("Marker"), marker, "Marker echoed")
        contents += [o["Key"] for o in r.get("Contents", [])]
        prefixes += [x["Prefix"] for x in r.get("CommonPrefixes", [])]
        if not r["IsTruncated"]:
            break
        marker = r.get("NextMarker")
        check(marker, "truncated v1 page with a delimiter has no NextMarker")
    eq(contents, PG_TOP, "v1 Contents across pages")
    eq(prefixes, PG_DIRS, "v1 CommonPrefixes across pages")
    eq(pages, 5, "v1 pages")
    # Without a delimiter the next marker is the last key returned.
    got, marker = [], None
    while True:
        kw = {"Marker": marker} if marker else {}
        r = S.list_objects(Bucket=B, Prefix="pg/", MaxKeys=4, **kw)
        page = [o["Key"] for o in r.get("Contents", [])]
        got += page
        if not r["IsTruncated"]:
            break
        check(page, "truncated empty page")
        marker = r.get("NextMarker") or page[-1]
    eq(got, PG, "v1 without delimiter")


@case
def list_fetch_owner():
    r = S.list_objects_v2(Bucket=B, Prefix="pg/", FetchOwner=True)
    for o in r["Contents"]:
        check(o.get("Owner", {}).get("ID"), f"{o['Key']} has no Owner with FetchOwner=true")
    r = S.list_objects_v2(Bucket=B, Prefix="pg/")
    for o in r["Contents"]:
        check("Owner" not in o, f"{o['Key']} has an Owner without FetchOwner")
    r = S.list_objects(Bucket=B, Prefix="pg/")
    for o in r["Contents"]:
        check(o.get("Owner", {}).get("ID"), f"v1: {o['Key']} has no Owner")


@case
def list_paginator():
    pages = list(S.get_paginator("list_objects_v2").paginate(Bucket=B, Prefix="pg/", PaginationConfig={"PageSize": 3}))
    eq([o["Key"] for p in pages for o in p.get("Contents", [])], PG, "keys via paginator")
    eq(len(pages), 4, "pages of 3")
    pages = list(S.get_paginator("list_objects").paginate(Bucket=B, Prefix="pg/", PaginationConfig={"PageSize": 3}))
    eq([o["Key"] for p in pages for o in p.get("Contents", [])], PG, "v1 keys via paginator")


@case
def delete_object_and_missing_key():
    S.put_object(Bucket=B, Key="del/a", Body=b"a")
    eq(status(S.delete_object(Bucket=B, Key="del/a")), 204, "DeleteObject status")
    expect_error(lambda: S.get_object(Bucket=B, Key="del/a"), "NoSuchKey", 404, "GET deleted")
    expect_error(lambda: S.head_object(Bucket=B, Key="del/a"), "404", 404, "HEAD deleted")
    eq(status(S.delete_object(Bucket=B, Key="del/a")), 204, "DeleteObject of a missing key")
    expect_error(lambda: S.get_object(Bucket=B, Key="never/was"), "NoSuchKey", 404, "GET missing")


@case
def delete_objects_verbose_and_quiet():
    keys = ["dobj/a", "dobj/b", "dobj/c d"]
    for k in keys:
        S.put_object(Bucket=B, Key=k, Body=b"x")
    r = S.delete_objects(Bucket=B, Delete={"Objects": [{"Key": k} for k in keys + ["dobj/missing"]]})
    eq(sorted(d["Key"] for d in r.get("Deleted", [])), sorted(keys + ["dobj/missing"]), "Deleted")
    eq(r.get("Errors", []), [], "Errors")
    eq(S.list_objects_v2(Bucket=B, Prefix="dobj/")["KeyCount"], 0, "left after DeleteObjects")
    for k in keys:
        S.put_object(Bucket=B, Key=k, Body=b"x")
    r = S.delete_objects(Bucket=B, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True})
    eq(r.get("Deleted", []), [], "Deleted in quiet mode")
    eq(r.get("Errors", []), [], "Errors in quiet mode")
    eq(S.list_objects_v2(Bucket=B, Prefix="dobj/")["KeyCount"], 0, "left after quiet DeleteObjects")


META_HEADERS = {
    "ContentType": "text/x-cyv; charset=utf-8",
    "ContentEncoding": "gzip",
    "ContentDisposition": 'attachment; filename="report.txt"',
    "ContentLanguage": "de-DE",
    "CacheControl": "max-age=60, private",
}
EXPIRES = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
EXPIRES_STR = "Wed, 02 Jan 2030 03:04:05 GMT"


def check_meta(r, what, metadata):
    eq(r.get("Metadata"), metadata, f"{what} Metadata")
    for k, v in META_HEADERS.items():
        eq(r.get(k), v, f"{what} {k}")
    eq(r.get("ExpiresString"), EXPIRES_STR, f"{what} Expires")


@case
def metadata_and_standard_headers_round_trip():
    S.put_object(
        Bucket=B,
        Key="meta/obj",
        Body=b"meta body",
        Metadata={"color": "blue", "Mixed-Case": "Value With  Spaces", "empty": ""},
        Expires=EXPIRES,
        **META_HEADERS,
    )
    want = {"color": "blue", "mixed-case": "Value With  Spaces", "empty": ""}
    check_meta(S.head_object(Bucket=B, Key="meta/obj"), "HEAD", want)
    g = S.get_object(Bucket=B, Key="meta/obj")
    check_meta(g, "GET", want)
    eq(body_of(g), b"meta body", "body")


@case
def copy_object_copy_directive():
    data = rand(3000)
    src = S.put_object(Bucket=B, Key="cp/src", Body=data, Metadata={"m": "1"}, ContentType="application/x-src")
    r = S.copy_object(Bucket=B, Key="cp/dst", CopySource={"Bucket": B, "Key": "cp/src"})
    eq(r["CopyObjectResult"]["ETag"], src["ETag"], "CopyObjectResult ETag")
    check(isinstance(r["CopyObjectResult"].get("LastModified"), datetime.datetime), "no LastModified")
    h = S.head_object(Bucket=B, Key="cp/dst")
    eq(h["Metadata"], {"m": "1"}, "copied Metadata")
    eq(h["ContentType"], "application/x-src", "copied ContentType")
    eq(h["ETag"], src["ETag"], "copied ETag")
    eq(get("cp/dst"), data, "copied body")


@case
def copy_object_replace_directive():
    data = rand(100)
    S.put_object(Bucket=B, Key="cp/src2", Body=data, Metadata={"old": "1"}, ContentType="application/x-old")
    S.copy_object(
        Bucket=B,
        Key="cp/dst2",
        CopySource={"Bucket": B, "Key": "cp/src2"},
        MetadataDirective="REPLACE",
        Metadata={"new": "2"},
        ContentType="application/x-new",
    )
    h = S.head_object(Bucket=B, Key="cp/dst2")
    eq(h["Metadata"], {"new": "2"}, "replaced Metadata")
    eq(h["ContentType"], "application/x-new", "replaced ContentType")
    eq(get("cp/dst2"), data, "body")
    eq(S.head_object(Bucket=B, Key="cp/src2")["Metadata"], {"old": "1"}, "source Metadata unchanged")


@case
def copy_object_cross_bucket():
    other = make_bucket("cpdst")
    data = rand(2048)
    S.put_object(Bucket=B, Key="cp/x y/src", Body=data)
    r = S.copy_object(Bucket=other, Key="in/other", CopySource={"Bucket": B, "Key": "cp/x y/src"})
    eq(r["CopyObjectResult"]["ETag"], f'"{md5_hex(data)}"', "ETag")
    eq(get("in/other", bucket=other), data, "body in the other bucket")
    eq(get("cp/x y/src"), data, "source still there")


@case
def copy_object_onto_itself():
    S.put_object(Bucket=B, Key="cp/self", Body=b"self", Metadata={"v": "1"})
    expect_error(
        lambda: S.copy_object(Bucket=B, Key="cp/self", CopySource={"Bucket": B, "Key": "cp/self"}),
        "InvalidRequest",
        400,
        "copy onto itself without changes",
    )
    S.copy_object(
        Bucket=B, Key="cp/self", CopySource={"Bucket": B, "Key": "cp/self"}, MetadataDirective="REPLACE", Metadata={"v": "2"}
    )
    eq(S.head_object(Bucket=B, Key="cp/self")["Metadata"], {"v": "2"}, "Metadata after REPLACE onto itself")
    eq(get("cp/self"), b"self", "body after REPLACE onto itself")


@case
def copy_object_missing_source():
    expect_error(
        lambda: S.copy_object(Bucket=B, Key="cp/z", CopySource={"Bucket": B, "Key": "cp/none"}), "NoSuchKey", 404, "key"
    )
    expect_error(
        lambda: S.copy_object(Bucket=B, Key="cp/z", CopySource={"Bucket": bucket_name("nosuch"), "Key": "k"}),
        "NoSuchBucket",
        404,
        "bucket",
    )


# --------------------------------------------------------------------------------------------
# Conditional requests
# --------------------------------------------------------------------------------------------
def _not_modified_since(key):
    """A date at or after the object's Last-Modified and not in the future."""
    lm = S.head_object(Bucket=B, Key=key)["LastModified"]
    since = lm + datetime.timedelta(seconds=1)
    wait = (since - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
    if wait > 0:
        time.sleep(wait + 0.05)
    return lm, since


@case
def conditional_get():
    S.put_object(Bucket=B, Key="cond/g", Body=b"cond")
    etag = S.head_object(Bucket=B, Key="cond/g")["ETag"]
    lm, since = _not_modified_since("cond/g")
    past = lm - datetime.timedelta(days=1)
    future = lm + datetime.timedelta(days=1)
    eq(get("cond/g", IfMatch=etag), b"cond", "If-Match current")
    expect_error(lambda: S.get_object(Bucket=B, Key="cond/g", IfMatch='"0123"'), "PreconditionFailed", 412, "If-Match")
    expect_error(lambda: S.get_object(Bucket=B, Key="cond/g", IfNoneMatch=etag), "304", 304, "If-None-Match")
    eq(get("cond/g", IfNoneMatch='"0123"'), b"cond", "If-None-Match other")
    eq(get("cond/g", IfModifiedSince=past), b"cond", "If-Modified-Since past")
    expect_error(
        lambda: S.get_object(Bucket=B, Key="cond/g", IfModifiedSince=since), "304", 304, "If-Modified-Since after"
    )
    eq(get("cond/g", IfUnmodifiedSince=future), b"cond", "If-Unmodified-Since future")
    expect_error(
        lambda: S.get_object(Bucket=B, Key="cond/g", IfUnmodifiedSince=past),
        "PreconditionFailed",
        412,
        "If-Unmodified-Since past",
    )
    # RFC 7232 / S3: If-Match wins over If-Unmodified-Since, If-None-Match over If-Modified-Since.
    eq(get("cond/g", IfMatch=etag, IfUnmodifiedSince=past), b"cond", "If-Match true + If-Unmodified-Since false")
    expect_error(
        lambda: S.get_object(Bucket=B, Key="cond/g", IfNoneMatch=etag, IfModifiedSince=past),
        "304",
        304,
        "If-None-Match false + If-Modified-Since true",
    )


@case
def conditional_head():
    S.put_object(Bucket=B, Key="cond/h", Body=b"cond")
    etag = S.head_object(Bucket=B, Key="cond/h")["ETag"]
    lm, since = _not_modified_since("cond/h")
    eq(status(S.head_object(Bucket=B, Key="cond/h", IfMatch=etag)), 200, "If-Match current")
    expect_error(lambda: S.head_object(Bucket=B, Key="cond/h", IfMatch='"0123"'), "412", 412, "If-Match")
    expect_error(lambda: S.head_object(Bucket=B, Key="cond/h", IfNoneMatch=etag), "304", 304, "If-None-Match")
    expect_error(lambda: S.head_object(Bucket=B, Key="cond/h", IfModifiedSince=since), "304", 304, "If-Modified-Since")
    expect_error(
        lambda: S.head_object(Bucket=B, Key="cond/h", IfUnmodifiedSince=lm - datetime.timedelta(days=1)),
        "412",
        412,
        "If-Unmodified-Since",
    )


@case
def conditional_put():
    S.put_object(Bucket=B, Key="cond/p", Body=b"v1")
    expect_error(
        lambda: S.put_object(Bucket=B, Key="cond/p", Body=b"v2", IfNoneMatch="*"),
        "PreconditionFailed",
        412,
        "If-None-Match * on an existing key",
    )
    eq(get("cond/p"), b"v1", "body after refused put")
    r = S.put_object(Bucket=B, Key="cond/p-new", Body=b"n", IfNoneMatch="*")
    eq(status(r), 200, "If-None-Match * on a new key")
    etag = S.head_object(Bucket=B, Key="cond/p")["ETag"]
    r = S.put_object(Bucket=B, Key="cond/p", Body=b"v3", IfMatch=etag)
    eq(r["ETag"], f'"{md5_hex(b"v3")}"', "If-Match current ETag")
    expect_error(
        lambda: S.put_object(Bucket=B, Key="cond/p", Body=b"v4", IfMatch=etag),
        "PreconditionFailed",
        412,
        "If-Match stale ETag",
    )
    eq(get("cond/p"), b"v3", "body after stale If-Match")


@case
def early_error_keeps_connection_usable():
    """An error sent before the request body was read (here 412 for If-None-Match: * on a 1 MiB
    PUT) must leave the keep-alive connection usable, or announce `Connection: close` (RFC 9112
    9.6); otherwise the client's next request on it fails."""
    S.put_object(Bucket=B, Key="conn/k", Body=b"exists")
    u = urllib.parse.urlsplit(ENDPOINT)
    conn = HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        url = key_url(B, "conn/k")
        body = rand(MIB)
        hdrs = {"if-none-match": "*"}
        sig = sigv4.sign("PUT", url, AK, SK, hashlib.sha256(body).hexdigest(), hdrs)
        hdrs.update(sig.headers)
        conn.request("PUT", urllib.parse.urlsplit(url).path, body=body, headers=hdrs)
        r = conn.getresponse()
        r.read()
        eq(r.status, 412, "status of the refused PUT")
        if (r.getheader("Connection") or "").lower() == "close":
            return
        sig = sigv4.sign("GET", url, AK, SK)
        try:
            conn.request("GET", urllib.parse.urlsplit(url).path, headers=sig.headers)
            r = conn.getresponse()
            got = r.read()
        except (HTTPException, OSError) as e:
            raise Failure(f"the server closed the connection after the 412 without `Connection: close`: {e!r}")
        eq((r.status, got), (200, b"exists"), "GET on the same connection")
    finally:
        conn.close()


# --------------------------------------------------------------------------------------------
# Multipart
# --------------------------------------------------------------------------------------------
def mpu_etag(part_bodies):
    return '"%s-%d"' % (hashlib.md5(b"".join(hashlib.md5(p).digest() for p in part_bodies)).hexdigest(), len(part_bodies))


@case
def multipart_three_parts_with_ranged_copy():
    src = rand(6 * MIB)
    S.put_object(Bucket=B, Key="mp/src", Body=src)
    p1, p3 = rand(5 * MIB), rand(1234)
    lo, hi = MIB, 6 * MIB - 1
    p2 = src[lo : hi + 1]
    up = S.create_multipart_upload(Bucket=B, Key="mp/obj", Metadata={"mp": "yes"}, ContentType="application/x-mp")
    uid = up["UploadId"]
    eq(up["Key"], "mp/obj", "CreateMultipartUpload Key")
    eq(up["Bucket"], B, "CreateMultipartUpload Bucket")
    r1 = S.upload_part(Bucket=B, Key="mp/obj", UploadId=uid, PartNumber=1, Body=p1)
    eq(r1["ETag"], f'"{md5_hex(p1)}"', "part 1 ETag")
    r2 = S.upload_part_copy(
        Bucket=B,
        Key="mp/obj",
        UploadId=uid,
        PartNumber=2,
        CopySource={"Bucket": B, "Key": "mp/src"},
        CopySourceRange=f"bytes={lo}-{hi}",
    )
    eq(r2["CopyPartResult"]["ETag"], f'"{md5_hex(p2)}"', "part 2 (ranged copy) ETag")
    r3 = S.upload_part(Bucket=B, Key="mp/obj", UploadId=uid, PartNumber=3, Body=p3)
    eq(r3["ETag"], f'"{md5_hex(p3)}"', "part 3 ETag")
    lp = S.list_parts(Bucket=B, Key="mp/obj", UploadId=uid)
    eq([p["PartNumber"] for p in lp["Parts"]], [1, 2, 3], "ListParts numbers")
    eq([p["Size"] for p in lp["Parts"]], [len(p1), len(p2), len(p3)], "ListParts sizes")
    eq([p["ETag"] for p in lp["Parts"]], [r1["ETag"], r2["CopyPartResult"]["ETag"], r3["ETag"]], "ListParts ETags")
    lu = S.list_multipart_uploads(Bucket=B, Prefix="mp/")
    eq([(u["Key"], u["UploadId"]) for u in lu.get("Uploads", [])], [("mp/obj", uid)], "ListMultipartUploads")
    parts = [
        {"PartNumber": 1, "ETag": r1["ETag"]},
        {"PartNumber": 2, "ETag": r2["CopyPartResult"]["ETag"]},
        {"PartNumber": 3, "ETag": r3["ETag"]},
    ]
    c = S.complete_multipart_upload(Bucket=B, Key="mp/obj", UploadId=uid, MultipartUpload={"Parts": parts})
    eq(c["ETag"], mpu_etag([p1, p2, p3]), "multipart ETag")
    eq(c.get("Key"), "mp/obj", "CompleteMultipartUpload Key")
    h = S.head_object(Bucket=B, Key="mp/obj")
    eq(h["ContentLength"], len(p1) + len(p2) + len(p3), "ContentLength")
    eq(h["ETag"], c["ETag"], "HEAD ETag")
    eq(h["Metadata"], {"mp": "yes"}, "Metadata from CreateMultipartUpload")
    eq(h["ContentType"], "application/x-mp", "ContentType from CreateMultipartUpload")
    eq(get("mp/obj"), p1 + p2 + p3, "body")
    eq(get("mp/obj", Range=f"bytes={5 * MIB - 2}-{5 * MIB + 1}"), p1[-2:] + p2[:2], "range across parts")
    eq(S.list_multipart_uploads(Bucket=B, Prefix="mp/").get("Uploads", []), [], "uploads after Complete")


@case
def multipart_list_parts_paging_and_abort():
    uid = S.create_multipart_upload(Bucket=B, Key="mp/paged")["UploadId"]
    for n in (1, 2, 3):
        S.upload_part(Bucket=B, Key="mp/paged", UploadId=uid, PartNumber=n, Body=bytes([n]) * 100)
    r = S.list_parts(Bucket=B, Key="mp/paged", UploadId=uid, MaxParts=2)
    eq([p["PartNumber"] for p in r["Parts"]], [1, 2], "first page")
    eq(r["IsTruncated"], True, "IsTruncated")
    eq(int(r["NextPartNumberMarker"]), 2, "NextPartNumberMarker")
    r = S.list_parts(Bucket=B, Key="mp/paged", UploadId=uid, PartNumberMarker=2)
    eq([p["PartNumber"] for p in r["Parts"]], [3], "second page")
    eq(r["IsTruncated"], False, "IsTruncated on the last page")
    # Re-uploading a part number replaces it.
    S.upload_part(Bucket=B, Key="mp/paged", UploadId=uid, PartNumber=2, Body=b"replaced")
    r = S.list_parts(Bucket=B, Key="mp/paged", UploadId=uid)
    eq([p["Size"] for p in r["Parts"]], [100, 8, 100], "sizes after replacing part 2")
    eq(status(S.abort_multipart_upload(Bucket=B, Key="mp/paged", UploadId=uid)), 204, "Abort status")
    expect_error(lambda: S.list_parts(Bucket=B, Key="mp/paged", UploadId=uid), "NoSuchUpload", 404, "ListParts")
    expect_error(
        lambda: S.upload_part(Bucket=B, Key="mp/paged", UploadId=uid, PartNumber=4, Body=b"x"),
        "NoSuchUpload",
        404,
        "UploadPart after abort",
    )
    expect_error(
        lambda: S.complete_multipart_upload(
            Bucket=B, Key="mp/paged", UploadId=uid, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"00"'}]}
        ),
        "NoSuchUpload",
        404,
        "Complete after abort",
    )
    expect_error(lambda: S.head_object(Bucket=B, Key="mp/paged"), "404", 404, "object of an aborted upload")


@case
def multipart_complete_errors():
    key = "mp/bad"
    uid = S.create_multipart_upload(Bucket=B, Key=key)["UploadId"]
    big, small, tail = rand(5 * MIB), rand(1024), rand(10)
    # Parts 1 and 2 are big (the same bytes), 3 and 4 small: each request below has exactly one fault.
    e = {}
    for n, body in ((1, big), (2, big), (3, small), (4, tail)):
        e[n] = S.upload_part(Bucket=B, Key=key, UploadId=uid, PartNumber=n, Body=body)["ETag"]

    def complete(*parts, etags=None):
        lst = [{"PartNumber": n, "ETag": (etags or {}).get(n, e.get(n, '"%s"' % md5_hex(b"none")))} for n in parts]
        return lambda: S.complete_multipart_upload(Bucket=B, Key=key, UploadId=uid, MultipartUpload={"Parts": lst})

    wrong = '"%s"' % md5_hex(b"not this")
    expect_error(complete(1, 2, etags={2: wrong}), "InvalidPart", 400, "wrong ETag for part 2")
    expect_error(complete(1, 5), "InvalidPart", 400, "part 5 was never uploaded")
    expect_error(complete(2, 1), "InvalidPartOrder", 400, "parts 2, 1")
    expect_error(complete(1, 3, 4), "EntityTooSmall", 400, "1 KiB part 3 before the last part")
    # The upload survives failed completions; parts left out are dropped; the last part may be small.
    c = complete(1, 2, 3)()
    eq(c["ETag"], mpu_etag([big, big, small]), "ETag")
    eq(get(key), big + big + small, "body")
    uid = S.create_multipart_upload(Bucket=B, Key="mp/one")["UploadId"]
    e1 = S.upload_part(Bucket=B, Key="mp/one", UploadId=uid, PartNumber=7, Body=tail)["ETag"]
    c = S.complete_multipart_upload(
        Bucket=B, Key="mp/one", UploadId=uid, MultipartUpload={"Parts": [{"PartNumber": 7, "ETag": e1}]}
    )
    eq(c["ETag"], mpu_etag([tail]), "ETag of a one-part upload")
    eq(get("mp/one"), tail, "body of a one-part upload")


@case
def list_multipart_uploads_prefix():
    ua = S.create_multipart_upload(Bucket=B, Key="lmu/a")["UploadId"]
    ub = S.create_multipart_upload(Bucket=B, Key="lmu/b")["UploadId"]
    r = S.list_multipart_uploads(Bucket=B, Prefix="lmu/")
    eq([(u["Key"], u["UploadId"]) for u in r.get("Uploads", [])], [("lmu/a", ua), ("lmu/b", ub)], "uploads")
    for u in r["Uploads"]:
        check(isinstance(u.get("Initiated"), datetime.datetime), f"upload {u['Key']} has no Initiated")
    eq(r.get("Bucket"), B, "Bucket")
    S.abort_multipart_upload(Bucket=B, Key="lmu/a", UploadId=ua)
    S.abort_multipart_upload(Bucket=B, Key="lmu/b", UploadId=ub)
    eq(S.list_multipart_uploads(Bucket=B, Prefix="lmu/").get("Uploads", []), [], "after abort")


@case
def upload_file_and_download_file_multipart():
    data = rand(11 * MIB)
    cfg = TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB, max_concurrency=2)
    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, "src"), os.path.join(d, "dst")
        with open(src, "wb") as f:
            f.write(data)
        S.upload_file(src, B, "xfer/big", Config=cfg)
        h = S.head_object(Bucket=B, Key="xfer/big")
        eq(h["ContentLength"], len(data), "ContentLength")
        eq(h["ETag"], mpu_etag([data[: 5 * MIB], data[5 * MIB : 10 * MIB], data[10 * MIB :]]), "ETag")
        S.download_file(B, "xfer/big", dst, Config=cfg)
        with open(dst, "rb") as f:
            check(f.read() == data, "downloaded bytes differ")
        buf = io.BytesIO()
        S.download_fileobj(B, "xfer/big", buf)
        check(buf.getvalue() == data, "download_fileobj bytes differ")


# --------------------------------------------------------------------------------------------
# Tagging, attributes, versioning
# --------------------------------------------------------------------------------------------
@case
def object_tagging():
    S.put_object(Bucket=B, Key="tag/o", Body=b"t", Tagging="k1=v1&k2=v%202")
    r = S.get_object_tagging(Bucket=B, Key="tag/o")
    eq(sorted((t["Key"], t["Value"]) for t in r["TagSet"]), [("k1", "v1"), ("k2", "v 2")], "tags from PutObject")
    S.put_object_tagging(Bucket=B, Key="tag/o", Tagging={"TagSet": [{"Key": "only", "Value": "one"}]})
    r = S.get_object_tagging(Bucket=B, Key="tag/o")
    eq([(t["Key"], t["Value"]) for t in r["TagSet"]], [("only", "one")], "tags after PutObjectTagging")
    eq(status(S.delete_object_tagging(Bucket=B, Key="tag/o")), 204, "DeleteObjectTagging status")
    eq(S.get_object_tagging(Bucket=B, Key="tag/o")["TagSet"], [], "tags after delete")
    eq(get("tag/o"), b"t", "body untouched by tagging")
    expect_error(
        lambda: S.get_object_tagging(Bucket=B, Key="tag/none"), "NoSuchKey", 404, "GetObjectTagging missing key"
    )


@case
def bucket_tagging():
    tb = make_bucket("tags")
    expect_error(lambda: S.get_bucket_tagging(Bucket=tb), "NoSuchTagSet", 404, "before any tags")
    S.put_bucket_tagging(Bucket=tb, Tagging={"TagSet": [{"Key": "team", "Value": "vault"}, {"Key": "env", "Value": "t"}]})
    r = S.get_bucket_tagging(Bucket=tb)
    eq(sorted((t["Key"], t["Value"]) for t in r["TagSet"]), [("env", "t"), ("team", "vault")], "bucket tags")
    eq(status(S.delete_bucket_tagging(Bucket=tb)), 204, "DeleteBucketTagging status")
    expect_error(lambda: S.get_bucket_tagging(Bucket=tb), "NoSuchTagSet", 404, "after delete")


@case
def get_object_attributes():
    data = rand(4321)
    S.put_object(Bucket=B, Key="attr/single", Body=data)  # boto3 adds CRC32 by default
    attrs = ["ETag", "ObjectSize", "Checksum", "ObjectParts", "StorageClass"]
    r = S.get_object_attributes(Bucket=B, Key="attr/single", ObjectAttributes=attrs)
    eq(r.get("ETag", "").strip('"'), md5_hex(data), "ETag")
    eq(r.get("ObjectSize"), len(data), "ObjectSize")
    eq(r.get("Checksum", {}).get("ChecksumCRC32"), crc32_b64(data), "Checksum CRC32")
    check(isinstance(r.get("LastModified"), datetime.datetime), "no LastModified")
    p1, p2 = rand(5 * MIB), rand(100)
    uid = S.create_multipart_upload(Bucket=B, Key="attr/mp")["UploadId"]
    parts = []
    for n, body in ((1, p1), (2, p2)):
        parts.append({"PartNumber": n, "ETag": S.upload_part(Bucket=B, Key="attr/mp", UploadId=uid, PartNumber=n, Body=body)["ETag"]})
    S.complete_multipart_upload(Bucket=B, Key="attr/mp", UploadId=uid, MultipartUpload={"Parts": parts})
    r = S.get_object_attributes(Bucket=B, Key="attr/mp", ObjectAttributes=attrs)
    eq(r.get("ETag", "").strip('"'), mpu_etag([p1, p2]).strip('"'), "multipart ETag")
    eq(r.get("ObjectSize"), len(p1) + len(p2), "multipart ObjectSize")
    eq(r.get("ObjectParts", {}).get("TotalPartsCount"), 2, "TotalPartsCount")
    expect_error(
        lambda: S.get_object_attributes(Bucket=B, Key="attr/none", ObjectAttributes=["ETag"]), "NoSuchKey", 404, "missing"
    )


@case
def versioning_on_an_unversioned_bucket():
    S.put_object(Bucket=B, Key="ver/a", Body=b"va")
    S.put_object(Bucket=B, Key="ver/b", Body=b"vbb")
    r = S.list_object_versions(Bucket=B, Prefix="ver/")
    v = r.get("Versions", [])
    eq([(x["Key"], x["VersionId"], x["IsLatest"], x["Size"]) for x in v], [("ver/a", "null", True, 2), ("ver/b", "null", True, 3)], "Versions")
    eq(v[0]["ETag"], f'"{md5_hex(b"va")}"', "version ETag")
    eq(r.get("DeleteMarkers", []), [], "DeleteMarkers")
    r = S.get_bucket_versioning(Bucket=B)
    check("Status" not in r, f"GetBucketVersioning of a never-versioned bucket has Status {r.get('Status')!r}")
    check("MFADelete" not in r, "GetBucketVersioning has MFADelete")


# --------------------------------------------------------------------------------------------
# Checksums and upload encodings
# --------------------------------------------------------------------------------------------
def checksum_case(alg):
    def fn():
        field, f = CHECKSUMS[alg]
        data = rand(3000)
        key = f"ck/{alg}"
        put_with_checksum(S, B, key, data, alg)
        want = f(data)
        g = S.get_object(Bucket=B, Key=key, ChecksumMode="ENABLED")
        eq(body_of(g), data, "body")
        eq(g.get(field), want, f"GET {field}")
        h = S.head_object(Bucket=B, Key=key, ChecksumMode="ENABLED")
        eq(h.get(field), want, f"HEAD {field}")
        # Without ChecksumMode the checksum is not required; with it, it must be right.

    fn.__name__ = f"checksum_{alg.lower()}_validated_and_returned"
    return fn


for _alg in CHECKSUMS:
    case(checksum_case(_alg))


@case
def default_crc32_is_returned():
    data = rand(777)
    S.put_object(Bucket=B, Key="ck/default", Body=data)
    g = S.get_object(Bucket=B, Key="ck/default", ChecksumMode="ENABLED")
    eq(g.get("ChecksumCRC32"), crc32_b64(data), "CRC32 that boto3 sent by default")
    eq(body_of(g), data, "body")


@case
def checksum_mismatch_is_rejected():
    data = rand(500)
    for alg, (field, f) in CHECKSUMS.items():
        key = f"ck/bad-{alg}"
        expect_error(
            lambda: put_with_checksum(S, B, key, data, alg, value=f(b"something else")),
            ("BadDigest", "InvalidRequest"),
            400,
            f"wrong {alg}",
        )
        expect_error(lambda: S.head_object(Bucket=B, Key=key), "404", 404, f"object after a rejected {alg} upload")


@case
def content_md5():
    data = b"md5 checked"
    r = S.put_object(Bucket=B, Key="ck/md5", Body=data, ContentMD5=b64(hashlib.md5(data).digest()))
    eq(r["ETag"], f'"{md5_hex(data)}"', "ETag with a right Content-MD5")
    expect_error(
        lambda: S.put_object(Bucket=B, Key="ck/md5-bad", Body=data, ContentMD5=b64(hashlib.md5(b"x").digest())),
        "BadDigest",
        400,
        "wrong Content-MD5",
    )
    expect_error(lambda: S.head_object(Bucket=B, Key="ck/md5-bad"), "404", 404, "object after a wrong Content-MD5")


@case
def aws_chunked_trailer_from_boto3():
    seen = []

    def capture(request, **_):
        seen.append(dict(request.headers))

    S.meta.events.register("before-send.s3.PutObject", capture)
    try:
        for alg in ("CRC32", "SHA256"):
            data = rand(200 * 1024 + 7)
            key = f"chunked/boto-{alg}"
            seen.clear()
            with trailer_checksums():
                S.put_object(Bucket=B, Key=key, Body=data, ChecksumAlgorithm=alg)
            h = {k.lower(): (v.decode() if isinstance(v, bytes) else v) for k, v in seen[-1].items()}
            eq(h.get("x-amz-content-sha256"), "STREAMING-UNSIGNED-PAYLOAD-TRAILER", "the request was aws-chunked")
            check("aws-chunked" in h.get("content-encoding", ""), f"Content-Encoding {h.get('content-encoding')}")
            g = S.get_object(Bucket=B, Key=key, ChecksumMode="ENABLED")
            eq(body_of(g), data, f"{alg} body")
            field, f = CHECKSUMS[alg]
            eq(g.get(field), f(data), f"{alg} checksum from the trailer")
            eq(g.get("ContentLength"), len(data), "ContentLength is the decoded length")
            check("aws-chunked" not in (g.get("ContentEncoding") or ""), f"stored ContentEncoding {g.get('ContentEncoding')}")
        # Multipart parts go the same way.
        with trailer_checksums():
            uid = S.create_multipart_upload(Bucket=B, Key="chunked/mp", ChecksumAlgorithm="CRC32")["UploadId"]
            p1, p2 = rand(5 * MIB), rand(10)
            parts = []
            for n, body in ((1, p1), (2, p2)):
                r = S.upload_part(Bucket=B, Key="chunked/mp", UploadId=uid, PartNumber=n, Body=body, ChecksumAlgorithm="CRC32")
                eq(r["ETag"], f'"{md5_hex(body)}"', f"part {n} ETag")
                parts.append({"PartNumber": n, "ETag": r["ETag"], "ChecksumCRC32": crc32_b64(body)})
            S.complete_multipart_upload(Bucket=B, Key="chunked/mp", UploadId=uid, MultipartUpload={"Parts": parts})
        eq(get("chunked/mp"), p1 + p2, "multipart aws-chunked body")
    finally:
        S.meta.events.unregister("before-send.s3.PutObject", capture)


def raw_put(key, body, headers, payload_hash, tamper=None, creds=(AK, SK)):
    url = key_url(B, key)
    s = sigv4.sign("PUT", url, creds[0], creds[1], payload_hash, headers)
    if callable(body):
        body = body(s)
    hdrs = dict(headers)
    hdrs.update(s.headers)
    hdrs["content-length"] = str(len(body))
    return http("PUT", url, body, hdrs)


@case
def aws_chunked_unsigned_trailer_hand_made():
    data = rand(70000)
    hdrs = {
        "content-encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(len(data)),
        "x-amz-trailer": "x-amz-checksum-crc32",
    }
    good = sigv4.unsigned_trailer_body(data, 65536, "x-amz-checksum-crc32", crc32_b64(data))
    st, _, body = raw_put("chunked/raw-ok", good, hdrs, sigv4.STREAMING_UNSIGNED_TRAILER)
    eq(st, 200, f"status of a correct trailer upload ({body[:200]!r})")
    eq(get("chunked/raw-ok"), data, "body")
    bad = sigv4.unsigned_trailer_body(data, 65536, "x-amz-checksum-crc32", crc32_b64(b"other"))
    st, _, body = raw_put("chunked/raw-bad", bad, hdrs, sigv4.STREAMING_UNSIGNED_TRAILER)
    eq(st, 400, "status of a wrong trailing checksum")
    code, _ = error_xml(body, "wrong trailing checksum")
    check(code in ("BadDigest", "InvalidRequest"), f"code {code} for a wrong trailing checksum")
    expect_error(lambda: S.head_object(Bucket=B, Key="chunked/raw-bad"), "404", 404, "object after a bad trailer")


@case
def aws_chunked_signed_payload():
    data = rand(150000)
    hdrs = {
        "content-encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(len(data)),
    }
    st, _, body = raw_put(
        "chunked/signed", lambda s: sigv4.signed_chunked_body(s, data, 65536), hdrs, sigv4.STREAMING_SIGNED
    )
    eq(st, 200, f"status of a signed-chunk upload ({body[:300]!r})")
    eq(get("chunked/signed"), data, "body")
    eq(S.head_object(Bucket=B, Key="chunked/signed")["ETag"], f'"{md5_hex(data)}"', "ETag of the decoded body")
    st, _, body = raw_put(
        "chunked/signed-bad",
        lambda s: sigv4.signed_chunked_body(s, data, 65536, tamper_chunk=1),
        hdrs,
        sigv4.STREAMING_SIGNED,
    )
    eq(st, 403, f"status with a tampered chunk signature ({body[:200]!r})")
    code, _ = error_xml(body, "tampered chunk signature")
    eq(code, "SignatureDoesNotMatch", "code for a tampered chunk signature")
    expect_error(lambda: S.head_object(Bucket=B, Key="chunked/signed-bad"), "404", 404, "object after a bad chunk")


# --------------------------------------------------------------------------------------------
# Presigned URLs and authentication
# --------------------------------------------------------------------------------------------
@case
def presigned_get_and_put():
    key = "pre/ü a+b.txt"
    S.put_object(Bucket=B, Key=key, Body=b"presigned body")
    url = S.generate_presigned_url("get_object", Params={"Bucket": B, "Key": key}, ExpiresIn=300)
    st, _, body = http("GET", url)
    eq((st, body), (200, b"presigned body"), "presigned GET")
    url = S.generate_presigned_url("put_object", Params={"Bucket": B, "Key": "pre/put"}, ExpiresIn=300)
    st, _, body = http("PUT", url, b"uploaded via presigned PUT", {"Content-Type": "text/plain"})
    eq(st, 200, f"presigned PUT status ({body[:200]!r})")
    eq(get("pre/put"), b"uploaded via presigned PUT", "object from presigned PUT")
    url = S.generate_presigned_url("head_object", Params={"Bucket": B, "Key": key}, ExpiresIn=300)
    st, hdrs, _ = http("HEAD", url)
    eq(st, 200, "presigned HEAD")


@case
def presigned_url_default_signature():
    """boto3's default presigner (no signature_version configured) still signs query strings with
    SigV2 (AWSAccessKeyId/Signature/Expires); aws s3 presign does the same."""
    c = client(signature_version=None)
    S.put_object(Bucket=B, Key="pre/v2 key", Body=b"v2 body")
    url = c.generate_presigned_url("get_object", Params={"Bucket": B, "Key": "pre/v2 key"}, ExpiresIn=300)
    check("Signature=" in url or "X-Amz-Signature=" in url, f"not a presigned URL: {url}")
    st, _, body = http("GET", url)
    eq((st, body), (200, b"v2 body"), f"default presigned GET {url}")
    st, _, body = http("GET", url.replace("v2%20key", "v2%20kez"))
    eq(st, 403, "default presigned URL for another key")
    eq(error_xml(body, "tampered default presigned URL")[0], "SignatureDoesNotMatch", "code")


@case
def presigned_url_expired():
    S.put_object(Bucket=B, Key="pre/exp", Body=b"x")
    url = S.generate_presigned_url("get_object", Params={"Bucket": B, "Key": "pre/exp"}, ExpiresIn=1)
    time.sleep(2.1)
    st, _, body = http("GET", url)
    eq(st, 403, "status of an expired presigned URL")
    code, _ = error_xml(body, "expired presigned URL")
    eq(code, "AccessDenied", "code of an expired presigned URL")


@case
def presigned_url_tampered():
    S.put_object(Bucket=B, Key="pre/t1", Body=b"one")
    S.put_object(Bucket=B, Key="pre/t2", Body=b"two")
    url = S.generate_presigned_url("get_object", Params={"Bucket": B, "Key": "pre/t1"}, ExpiresIn=300)
    st, _, body = http("GET", url.replace("pre/t1", "pre/t2"))
    eq(st, 403, "status of a presigned URL for another key")
    code, _ = error_xml(body, "tampered presigned URL")
    eq(code, "SignatureDoesNotMatch", "code of a tampered presigned URL")


@case
def wrong_secret_is_signature_does_not_match():
    bad = client(AK, SK + "x")
    expect_error(lambda: bad.list_buckets(), "SignatureDoesNotMatch", 403, "ListBuckets")
    expect_error(lambda: bad.get_object(Bucket=B, Key="rt/obj"), "SignatureDoesNotMatch", 403, "GetObject")
    expect_error(lambda: bad.put_object(Bucket=B, Key="auth/x", Body=b"x"), "SignatureDoesNotMatch", 403, "PutObject")
    expect_error(lambda: S.head_object(Bucket=B, Key="auth/x"), "404", 404, "object of a refused PutObject")


@case
def unknown_access_key_is_invalid_access_key_id():
    bad = client("AKIDNOSUCHKEY" + RUN.upper(), SK)
    expect_error(lambda: bad.list_buckets(), "InvalidAccessKeyId", 403, "ListBuckets")
    expect_error(lambda: bad.get_object(Bucket=B, Key="rt/obj"), "InvalidAccessKeyId", 403, "GetObject")


@case
def anonymous_requests_are_denied():
    S.put_object(Bucket=B, Key="anon/o", Body=b"secret")
    anon = client(signature_version=UNSIGNED)
    expect_error(lambda: anon.list_buckets(), "AccessDenied", 403, "ListBuckets")
    expect_error(lambda: anon.get_object(Bucket=B, Key="anon/o"), "AccessDenied", 403, "GetObject")
    expect_error(lambda: anon.put_object(Bucket=B, Key="anon/p", Body=b"x"), "AccessDenied", 403, "PutObject")
    expect_error(lambda: anon.list_objects_v2(Bucket=B), "AccessDenied", 403, "ListObjectsV2")
    expect_error(lambda: anon.delete_object(Bucket=B, Key="anon/o"), "AccessDenied", 403, "DeleteObject")
    eq(get("anon/o"), b"secret", "object after anonymous delete")
    expect_error(lambda: S.head_object(Bucket=B, Key="anon/p"), "404", 404, "object of an anonymous PutObject")
    st, _, body = http("GET", key_url(B, "anon/o"))
    eq(st, 403, "plain GET")
    eq(error_xml(body, "anonymous GET")[0], "AccessDenied", "plain GET code")


@case
def skewed_clock_is_request_time_too_skewed():
    for off in (-20 * 60, 20 * 60):
        with clock_offset(off):
            expect_error(lambda: S.list_buckets(), "RequestTimeTooSkewed", 403, f"clock {off:+d} s")
            expect_error(lambda: S.put_object(Bucket=B, Key="skew/x", Body=b"x"), "RequestTimeTooSkewed", 403, "put")
    with clock_offset(-10 * 60):
        eq(status(S.list_buckets()), 200, "a clock 10 minutes slow is within the 15 minutes allowed")


@case
def error_bodies_are_s3_xml_with_request_id():
    url = key_url(B, "never/there")
    s = sigv4.sign("GET", url, AK, SK)
    st, hdrs, body = http("GET", url, None, s.headers)
    eq(st, 404, "status")
    ctype = {k.lower(): v for k, v in hdrs.items()}.get("content-type", "")
    check("xml" in ctype, f"Content-Type {ctype!r}")
    code, rid = error_xml(body, "NoSuchKey")
    eq(code, "NoSuchKey", "Code")
    url = f"{ENDPOINT}/{bucket_name('nosuch')}?list-type=2"
    s = sigv4.sign("GET", url, AK, SK)
    st, _, body = http("GET", url, None, s.headers)
    eq((st, error_xml(body, "NoSuchBucket")[0]), (404, "NoSuchBucket"), "missing bucket")
    # The hand-made signer itself is right: the same request to an existing key succeeds.
    S.put_object(Bucket=B, Key="raw/ok", Body=b"raw")
    url = key_url(B, "raw/ok")
    st, _, body = http("GET", url, None, sigv4.sign("GET", url, AK, SK).headers)
    eq((st, body), (200, b"raw"), "hand-signed GET")


@case
def unimplemented_operations_are_not_implemented():
    policy = '{"Version":"2012-10-17","Statement":[]}'
    expect_error(lambda: S.put_bucket_policy(Bucket=B, Policy=policy), "NotImplemented", 501, "PutBucketPolicy")
    expect_error(
        lambda: S.put_bucket_lifecycle_configuration(
            Bucket=B,
            LifecycleConfiguration={"Rules": [{"ID": "r", "Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 1}}]},
        ),
        "NotImplemented",
        501,
        "PutBucketLifecycleConfiguration",
    )


# --------------------------------------------------------------------------------------------
# Isolation between the user under test and user2
# --------------------------------------------------------------------------------------------
B2 = bucket_name("user2")


def need_user2():
    if U2 is None:
        raise Skip("CYV_USER2_ACCESS_KEY is not set")


@case
def isolation_list_buckets():
    need_user2()
    U2.create_bucket(Bucket=B2)
    BUCKETS.append((U2, B2))
    U2.put_object(Bucket=B2, Key="u2/o", Body=b"user2 data")
    mine = [b["Name"] for b in S.list_buckets()["Buckets"]]
    theirs = [b["Name"] for b in U2.list_buckets()["Buckets"]]
    check(B2 in theirs, f"user2 does not see its bucket: {theirs}")
    check(B not in theirs, f"user2 sees {B}: {theirs}")
    check(B2 not in mine, f"root sees user2's bucket: {mine}")
    check(not set(mine) & set(theirs), f"both users list {set(mine) & set(theirs)}")


@case
def isolation_object_operations_denied():
    need_user2()
    S.put_object(Bucket=B, Key="iso/o", Body=b"root data")
    for what, fn in (
        ("GetObject", lambda: U2.get_object(Bucket=B, Key="iso/o")),
        ("PutObject", lambda: U2.put_object(Bucket=B, Key="iso/new", Body=b"x")),
        ("DeleteObject", lambda: U2.delete_object(Bucket=B, Key="iso/o")),
        ("ListObjectsV2", lambda: U2.list_objects_v2(Bucket=B)),
        ("ListObjects", lambda: U2.list_objects(Bucket=B)),
        ("GetObjectTagging", lambda: U2.get_object_tagging(Bucket=B, Key="iso/o")),
        ("CreateMultipartUpload", lambda: U2.create_multipart_upload(Bucket=B, Key="iso/mp")),
        ("ListMultipartUploads", lambda: U2.list_multipart_uploads(Bucket=B)),
        ("root GetObject of user2", lambda: S.get_object(Bucket=B2, Key="u2/o")),
        ("root PutObject into user2", lambda: S.put_object(Bucket=B2, Key="u2/x", Body=b"x")),
        ("root ListObjectsV2 of user2", lambda: S.list_objects_v2(Bucket=B2)),
    ):
        expect_error(fn, "AccessDenied", 403, what)
    expect_error(lambda: U2.head_object(Bucket=B, Key="iso/o"), "403", 403, "HeadObject")
    try:
        r = U2.delete_objects(Bucket=B, Delete={"Objects": [{"Key": "iso/o"}]})
        errs = [(e["Key"], e["Code"]) for e in r.get("Errors", [])]
        eq(errs, [("iso/o", "AccessDenied")], "DeleteObjects by user2 (per-key errors)")
    except ClientError as e:
        eq(e.response["Error"]["Code"], "AccessDenied", "DeleteObjects by user2")
    eq(get("iso/o"), b"root data", "root's object after user2's attempts")
    expect_error(lambda: S.head_object(Bucket=B, Key="iso/new"), "404", 404, "object user2 tried to put")
    eq(get("u2/o", bucket=B2, c=U2), b"user2 data", "user2's object after root's attempts")


@case
def isolation_bucket_operations_denied():
    need_user2()
    expect_error(lambda: U2.head_bucket(Bucket=B), "403", 403, "HeadBucket")
    expect_error(lambda: U2.delete_bucket(Bucket=B), "AccessDenied", 403, "DeleteBucket")
    expect_error(lambda: U2.get_bucket_location(Bucket=B), "AccessDenied", 403, "GetBucketLocation")
    expect_error(
        lambda: U2.put_bucket_tagging(Bucket=B, Tagging={"TagSet": [{"Key": "a", "Value": "b"}]}),
        "AccessDenied",
        403,
        "PutBucketTagging",
    )
    expect_error(lambda: U2.get_bucket_versioning(Bucket=B), "AccessDenied", 403, "GetBucketVersioning")
    expect_error(lambda: U2.create_bucket(Bucket=B), "BucketAlreadyExists", 409, "user2 creates root's bucket name")
    expect_error(lambda: S.create_bucket(Bucket=B2), "BucketAlreadyExists", 409, "root creates user2's bucket name")
    expect_error(lambda: S.delete_bucket(Bucket=B2), "AccessDenied", 403, "root deletes user2's bucket")
    eq(status(S.head_bucket(Bucket=B)), 200, "root's bucket after user2's attempts")
    eq(status(U2.head_bucket(Bucket=B2)), 200, "user2's bucket after root's attempts")


@case
def isolation_copy_and_presigned_denied():
    need_user2()
    S.put_object(Bucket=B, Key="iso/c", Body=b"copy me")
    expect_error(
        lambda: U2.copy_object(Bucket=B2, Key="stolen", CopySource={"Bucket": B, "Key": "iso/c"}),
        "AccessDenied",
        403,
        "user2 copies out of root's bucket",
    )
    expect_error(
        lambda: S.copy_object(Bucket=B, Key="iso/in", CopySource={"Bucket": B2, "Key": "u2/o"}),
        "AccessDenied",
        403,
        "root copies out of user2's bucket",
    )
    uid = U2.create_multipart_upload(Bucket=B2, Key="stolen-mp")["UploadId"]
    try:
        expect_error(
            lambda: U2.upload_part_copy(
                Bucket=B2, Key="stolen-mp", UploadId=uid, PartNumber=1, CopySource={"Bucket": B, "Key": "iso/c"}
            ),
            "AccessDenied",
            403,
            "user2 UploadPartCopy from root's bucket",
        )
    finally:
        U2.abort_multipart_upload(Bucket=B2, Key="stolen-mp", UploadId=uid)
    expect_error(lambda: U2.head_object(Bucket=B2, Key="stolen"), "404", 404, "the copy user2 tried")
    url = U2.generate_presigned_url("get_object", Params={"Bucket": B, "Key": "iso/c"}, ExpiresIn=300)
    st, _, body = http("GET", url)
    eq((st, error_xml(body, "user2 presigned")[0]), (403, "AccessDenied"), "user2's presigned URL for root's object")


# --------------------------------------------------------------------------------------------
# Cleanup (a case: deleting everything must work)
# --------------------------------------------------------------------------------------------
def empty_bucket(c, name):
    for page in c.get_paginator("list_multipart_uploads").paginate(Bucket=name):
        for u in page.get("Uploads", []):
            c.abort_multipart_upload(Bucket=name, Key=u["Key"], UploadId=u["UploadId"])
    for page in c.get_paginator("list_objects_v2").paginate(Bucket=name):
        objs = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if objs:
            r = c.delete_objects(Bucket=name, Delete={"Objects": objs, "Quiet": True})
            check(not r.get("Errors"), f"DeleteObjects errors: {r.get('Errors')}")


@case
def cleanup_deletes_everything():
    errors = []
    for c, name in list(BUCKETS):
        try:
            empty_bucket(c, name)
            c.delete_bucket(Bucket=name)
            BUCKETS.remove((c, name))
        except (ClientError, Failure) as e:
            errors.append(f"{name}: {e}")
    check(not errors, "; ".join(errors))
    left = [b["Name"] for b in S.list_buckets()["Buckets"] if b["Name"].startswith(f"cyv-b3-{RUN}")]
    eq(left, [], "buckets left")


ALWAYS = {"create_bucket_and_list_buckets", "cleanup_deletes_everything"}  # setup and teardown


def main():
    passed = failed = skipped = 0
    names = [fn.__name__ for fn in CASES]
    unknown = (SKIP | ONLY) - set(names)
    if unknown:
        print(f"unknown case names in CYV_SUITE_SKIP/ONLY: {sorted(unknown)}")
        return 2
    t0 = time.time()
    for fn in CASES:
        name = fn.__name__
        if name in SKIP or (ONLY and name not in ONLY | ALWAYS):
            print(f"skip {name}: not selected", flush=True)
            skipped += 1
            continue
        t = time.time()
        try:
            fn()
        except Skip as e:
            print(f"skip {name}: {e}", flush=True)
            skipped += 1
            continue
        except Failure as e:
            print(f"FAIL {name}: {e}", flush=True)
            failed += 1
            continue
        except Exception as e:  # noqa: BLE001 - an unexpected error is a failure of the case
            here = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == __file__]
            lines = ">".join(str(f.lineno) for f in here[1:]) or "?"
            print(f"FAIL {name}: {type(e).__name__}: {e} (suite lines {lines})", flush=True)
            failed += 1
            continue
        passed += 1
        took = f" ({time.time() - t:.2f}s)" if os.environ.get("CYV_SUITE_TIMES") else ""
        print(f"ok {name}{took}", flush=True)
    print(f"{passed} passed, {failed} failed, {skipped} skipped in {time.time() - t0:.1f}s", flush=True)
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main())
