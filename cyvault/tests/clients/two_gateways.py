"""Two gateways on one pool, driven at once: writes through one are read and listed through the
other immediately, bucket creation races have one winner, and at the end both list the same.

Usage: two_gateways.py ENDPOINT_A ENDPOINT_B BUCKET  (keys from AWS_ACCESS_KEY_ID/SECRET)
Prints `ok <check>` lines and exits non-zero on the first failure."""
import concurrent.futures
import hashlib
import sys

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

a_url, b_url, bucket = sys.argv[1:4]
cfg = Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"})
A = boto3.client("s3", endpoint_url=a_url, config=cfg)
B = boto3.client("s3", endpoint_url=b_url, config=cfg)


def fail(msg):
    print(f"FAIL {msg}", flush=True)
    sys.exit(1)


# 1. Both create the same bucket at once: exactly one creates it.
def create(c):
    try:
        c.create_bucket(Bucket=bucket)
        return "created"
    except ClientError as e:
        return e.response["Error"]["Code"]


with concurrent.futures.ThreadPoolExecutor(2) as ex:
    outcomes = sorted(ex.map(create, [A, B]))
if outcomes != ["BucketAlreadyOwnedByYou", "created"]:
    fail(f"concurrent CreateBucket outcomes {outcomes}")
print("ok one CreateBucket wins", flush=True)


# 2. Writers on both gateways; every write is read and listed through the OTHER one at once.
def writer(name, mine, other, n=40):
    for i in range(n):
        key = f"{name}/{i:03d}"
        body = hashlib.sha256(key.encode()).digest() * (1 + i * 37)
        etag = mine.put_object(Bucket=bucket, Key=key, Body=body)["ETag"]
        got = other.get_object(Bucket=bucket, Key=key)
        if got["Body"].read() != body or got["ETag"] != etag:
            fail(f"{key}: read through the other gateway differs")
        listed = other.list_objects_v2(Bucket=bucket, Prefix=key)
        if [o["Key"] for o in listed.get("Contents", [])] != [key]:
            fail(f"{key}: not listed through the other gateway right after the PUT")
        if i % 5 == 0:
            mine.delete_object(Bucket=bucket, Key=key)
            if other.list_objects_v2(Bucket=bucket, Prefix=key).get("KeyCount") != 0:
                fail(f"{key}: still listed through the other gateway after DELETE")
    return n


with concurrent.futures.ThreadPoolExecutor(4) as ex:
    futs = [ex.submit(writer, "a1", A, B), ex.submit(writer, "b1", B, A), ex.submit(writer, "a2", A, B), ex.submit(writer, "b2", B, A)]
    total = sum(f.result() for f in futs)
print(f"ok {total} writes read and listed through the other gateway at once", flush=True)


# 3. Both gateways list the same, and the listing agrees with GET.
def listing(c):
    out, token = {}, None
    while True:
        kw = {"Bucket": bucket, "MaxKeys": 37}
        if token:
            kw["ContinuationToken"] = token
        page = c.list_objects_v2(**kw)
        for o in page.get("Contents", []):
            out[o["Key"]] = (o["Size"], o["ETag"])
        if not page.get("IsTruncated"):
            return out
        token = page["NextContinuationToken"]


la, lb = listing(A), listing(B)
if la != lb:
    fail(f"the gateways list differently: {sorted(set(la) ^ set(lb))}")
if len(la) != 4 * 32:
    fail(f"{len(la)} keys listed, expected {4 * 32}")
for k, (size, etag) in la.items():
    h = B.head_object(Bucket=bucket, Key=k)
    if (h["ContentLength"], h["ETag"]) != (size, etag):
        fail(f"{k}: listed {size} {etag}, HEAD says {h['ContentLength']} {h['ETag']}")
print(f"ok both gateways list the same {len(la)} keys, agreeing with HEAD", flush=True)
print("passed", flush=True)
