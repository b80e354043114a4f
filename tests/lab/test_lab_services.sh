#!/usr/bin/env bash
# Lab services test: drlab-offsite (S3 endpoint) and drlab-dns (BIND 9, zone drlab.test) in the running lab.
#   make lab && tests/lab/test_lab_services.sh
# Prints one line per check ("ok   ..." or "FAIL ..."), then "N passed, M failed"; exits non-zero on any failure.
# It restarts both containers (podman restart) and their services (systemctl restart) to prove persistence.
# Test buckets are named drlab-svc-test-*, and removed at the end; bot.drlab.test gets its address back.
# Talks to the containers' addresses on the podman network "drlab" from this machine (rootful podman routes
# them), by name from the other lab host, and inside each container with podman exec.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/lab/containers.conf}"
PYTHON="${PYTHON:-$PWD/.venv/bin/python}"
S3=drlab-offsite
DNS=drlab-dns
S3_PY=/opt/drlab-offsite/venv/bin/python
ACCESS_KEY=AKIADRLABOFFSITE0001
SECRET_KEY=drlab-offsite-lab-only-secret-key-000001
TSIG_NAME=drlab-ddns
TSIG_SECRET=0WhzahFiXfcHRSOBed06PEx+mURJdk6qQnPBBUjmI+A=
RUN="$(date +%s)$$"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0
failed=0
# anything that fails outside a check still ends with a FAIL line and the count
trap 'echo "FAIL unexpected error (exit $?) at line $LINENO of $0"; echo "$passed passed, $((failed + 1)) failed"' ERR

ok() { echo "ok   $*"; passed=$((passed + 1)); }
fail() { echo "FAIL $*"; failed=$((failed + 1)); }
# check NAME CMD...: one line for a command that must succeed (its last output line is shown on failure)
check() {
  local name=$1 out
  shift
  if out=$("$@" 2>&1); then ok "$name"; else fail "$name: $(tail -1 <<<"$out")"; fi
}
# tally: count the ok/FAIL lines a helper printed (a helper that printed none has failed)
tally() {
  local what=$1 out=$2 rc=$3 line seen=0
  while IFS= read -r line; do
    case $line in
      "ok   "*) echo "$line"; passed=$((passed + 1)); seen=1 ;;
      "FAIL "*) echo "$line"; failed=$((failed + 1)); seen=1 ;;
    esac
  done <<<"$out"
  if [ "$seen" = 0 ] || { [ "$rc" != 0 ] && ! grep -q '^FAIL ' <<<"$out"; }; then
    fail "$what: helper failed (rc=$rc): $(tail -1 <<<"$out")"
  fi
}
ip_of() { podman inspect "$1" --format '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}'; }
tcp_open() {
  "$PYTHON" -c 'import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()' "$@"
}
# wait_booted CONTAINER [UNIT]: systemd has finished booting (right after a restart it may have no bus yet: ask
# again), and UNIT is active (Type=notify: its port is open). Up to 60 s; the checks after it say what is missing.
wait_booted() {
  local state=""
  for _ in $(seq 60); do
    state=$(podman exec "$1" systemctl is-system-running --wait 2>/dev/null || true)
    if [[ $state == running || $state == degraded ]] && { [ -z "${2:-}" ] || podman exec "$1" systemctl is-active --quiet "$2"; }; then
      return 0
    fi
    sleep 1
  done
}

cat >"$work/s3checks.py" <<'PY'
import base64
import datetime as dt
import hashlib
import json
import os
import sys
import urllib.error
import urllib.request

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

ENDPOINT, PHASE, RUN = sys.argv[1], sys.argv[2], sys.argv[3]
PERSIST = f"drlab-svc-test-{RUN}-persist"
ACCESS = os.environ.get("DRLAB_S3_ACCESS_KEY", "AKIADRLABOFFSITE0001")
SECRET = os.environ.get("DRLAB_S3_SECRET_KEY", "drlab-offsite-lab-only-secret-key-000001")
MIB = 1024 * 1024
failed = 0


def client(access=ACCESS, secret=SECRET, **cfg):
    return boto3.client(
        "s3",
        endpoint_url=ENDPOINT,
        aws_access_key_id=access,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}, **cfg),
    )


s3 = client()


def check(name, fn):
    global failed
    try:
        detail = fn()
    except Exception as exc:  # one line per check, whatever went wrong
        failed += 1
        print(f"FAIL s3 {name}: {type(exc).__name__}: {exc}".replace("\n", " "))
    else:
        print(f"ok   s3 {name}" + (f" ({detail})" if detail else ""))


def error_code(fn):
    try:
        fn()
    except ClientError as exc:
        return exc.response["Error"]["Code"]
    raise AssertionError("the call succeeded")


def md5(data):
    return hashlib.md5(data).hexdigest()


def sha256_b64(data):
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def body(key, size):
    seed = hashlib.sha256(f"{RUN}/{key}".encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def expect(cond, msg):
    if not cond:
        raise AssertionError(msg)


def api_checks():
    bucket = f"drlab-svc-test-{RUN}"
    data = body("basic", 1000)

    def basic():
        s3.create_bucket(Bucket=bucket)
        put = s3.put_object(Bucket=bucket, Key="dir/basic.bin", Body=data, Metadata={"set": "nightly"})
        head = s3.head_object(Bucket=bucket, Key="dir/basic.bin")
        expect(head["ContentLength"] == len(data) and head["Metadata"] == {"set": "nightly"}, f"head {head}")
        expect(s3.get_object(Bucket=bucket, Key="dir/basic.bin")["Body"].read() == data, "get returned other bytes")
        listed = s3.list_objects_v2(Bucket=bucket, Prefix="dir/")
        expect([o["Key"] for o in listed["Contents"]] == ["dir/basic.bin"], f"list {listed.get('Contents')}")
        expect(put["ETag"] == head["ETag"], "etag differs between put and head")
        s3.delete_object(Bucket=bucket, Key="dir/basic.bin")
        expect(error_code(lambda: s3.head_object(Bucket=bucket, Key="dir/basic.bin")) == "404", "still there")
        expect(s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0, "list not empty after delete")
        return "put/get/head/list-v2/delete"

    check("PutObject GetObject HeadObject ListObjectsV2 DeleteObject", basic)

    def etag_md5():
        s3.put_object(Bucket=bucket, Key="etag.bin", Body=data)
        etag = s3.head_object(Bucket=bucket, Key="etag.bin")["ETag"].strip('"')
        expect(etag == md5(data), f"etag {etag} != md5 {md5(data)}")
        return "single-part ETag = MD5 of the body"

    check("ETag of a single-part object", etag_md5)

    def checksum_sha256():
        put = s3.put_object(Bucket=bucket, Key="sum.bin", Body=data, ChecksumAlgorithm="SHA256")
        want = sha256_b64(data)
        expect(put.get("ChecksumSHA256") == want, f"put answered {put.get('ChecksumSHA256')}")
        head = s3.head_object(Bucket=bucket, Key="sum.bin", ChecksumMode="ENABLED")
        expect(head.get("ChecksumSHA256") == want, f"head answered {head.get('ChecksumSHA256')}")
        attrs = s3.get_object_attributes(Bucket=bucket, Key="sum.bin", ObjectAttributes=["Checksum", "ObjectSize"])
        expect(attrs["Checksum"].get("ChecksumSHA256") == want, f"attributes {attrs.get('Checksum')}")
        bad = error_code(
            lambda: s3.put_object(Bucket=bucket, Key="bad.bin", Body=data, ChecksumSHA256=sha256_b64(b"other"))
        )
        expect(bad in ("BadDigest", "InvalidRequest", "XAmzContentChecksumMismatch"), f"wrong checksum gave {bad}")
        return f"ChecksumSHA256 stored and returned; a wrong one refused with {bad}"

    check("ChecksumSHA256 after upload", checksum_sha256)

    def multipart():
        key = "multi.bin"
        parts_data = [body("p1", 5 * MIB), body("p2", 5 * MIB), body("p3", 1234)]
        up = s3.create_multipart_upload(Bucket=bucket, Key=key, ChecksumAlgorithm="SHA256")["UploadId"]
        etags = []
        for n, chunk in enumerate(parts_data[:2], 1):
            r = s3.upload_part(
                Bucket=bucket, Key=key, UploadId=up, PartNumber=n, Body=chunk, ChecksumAlgorithm="SHA256"
            )
            etags.append(r["ETag"])
        # resume as a new client would: find the upload, list its parts, send the rest
        uploads = client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        expect([u["UploadId"] for u in uploads if u["Key"] == key] == [up], f"uploads {uploads}")
        listed = client().list_parts(Bucket=bucket, Key=key, UploadId=up)["Parts"]
        expect([p["PartNumber"] for p in listed] == [1, 2], f"parts {listed}")
        expect([p["ETag"] for p in listed] == etags, "part etags differ")
        expect(listed[0].get("ChecksumSHA256") == sha256_b64(parts_data[0]), f"part checksum {listed[0]}")
        r = s3.upload_part(
            Bucket=bucket, Key=key, UploadId=up, PartNumber=3, Body=parts_data[2], ChecksumAlgorithm="SHA256"
        )
        etags.append(r["ETag"])
        sums = [sha256_b64(c) for c in parts_data]
        done = s3.complete_multipart_upload(
            Bucket=bucket,
            Key=key,
            UploadId=up,
            MultipartUpload={
                "Parts": [
                    {"PartNumber": n, "ETag": e, "ChecksumSHA256": c}
                    for n, (e, c) in enumerate(zip(etags, sums, strict=False), 1)
                ]
            },
        )
        want_etag = md5(b"".join(bytes.fromhex(e.strip('"')) for e in etags)) + "-3"
        expect(done["ETag"].strip('"') == want_etag, f"etag {done['ETag']} != {want_etag}")
        got = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        expect(got == b"".join(parts_data), "assembled object differs")
        head = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        composite = base64.b64encode(hashlib.sha256(b"".join(base64.b64decode(c) for c in sums)).digest()).decode()
        expect(head.get("ChecksumSHA256") == composite + "-3", f"composite {head.get('ChecksumSHA256')}")
        return "create, upload part, list uploads, list parts, resume, complete; ETag md5-of-md5s-3, composite SHA256"

    check("multipart upload and resume", multipart)

    def abort():
        up = s3.create_multipart_upload(Bucket=bucket, Key="aborted.bin")["UploadId"]
        s3.upload_part(Bucket=bucket, Key="aborted.bin", UploadId=up, PartNumber=1, Body=b"x" * 100)
        s3.abort_multipart_upload(Bucket=bucket, Key="aborted.bin", UploadId=up)
        code = error_code(lambda: s3.list_parts(Bucket=bucket, Key="aborted.bin", UploadId=up))
        expect(code == "NoSuchUpload", f"list_parts after abort gave {code}")
        return "abort, then NoSuchUpload"

    check("multipart abort", abort)

    def versioning():
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        expect(s3.get_bucket_versioning(Bucket=bucket).get("Status") == "Enabled", "versioning not enabled")
        v1 = s3.put_object(Bucket=bucket, Key="v.txt", Body=b"one")["VersionId"]
        v2 = s3.put_object(Bucket=bucket, Key="v.txt", Body=b"two")["VersionId"]
        expect(v1 != v2, "same version id")
        versions = s3.list_object_versions(Bucket=bucket, Prefix="v.txt")["Versions"]
        expect({v["VersionId"] for v in versions} == {v1, v2}, f"versions {versions}")
        expect(s3.get_object(Bucket=bucket, Key="v.txt", VersionId=v1)["Body"].read() == b"one", "v1 content")
        marker = s3.delete_object(Bucket=bucket, Key="v.txt")
        expect(marker.get("DeleteMarker") is True, f"no delete marker: {marker}")
        expect(error_code(lambda: s3.get_object(Bucket=bucket, Key="v.txt")) == "NoSuchKey", "latest not deleted")
        expect(s3.get_object(Bucket=bucket, Key="v.txt", VersionId=v2)["Body"].read() == b"two", "v2 lost")
        return "enable, 2 versions, get by VersionId, delete marker"

    check("bucket versioning", versioning)

    lock_bucket = f"drlab-svc-test-{RUN}-lock"

    def object_lock():
        s3.create_bucket(Bucket=lock_bucket, ObjectLockEnabledForBucket=True)
        conf = s3.get_object_lock_configuration(Bucket=lock_bucket)["ObjectLockConfiguration"]
        expect(conf.get("ObjectLockEnabled") == "Enabled", f"lock conf {conf}")
        expect(s3.get_bucket_versioning(Bucket=lock_bucket).get("Status") == "Enabled", "lock without versioning")
        now = dt.datetime.now(dt.UTC)
        v = s3.put_object(
            Bucket=lock_bucket,
            Key="governance.bin",
            Body=b"keep",
            ObjectLockMode="GOVERNANCE",
            ObjectLockRetainUntilDate=now + dt.timedelta(seconds=60),
        )["VersionId"]
        ret = s3.get_object_retention(Bucket=lock_bucket, Key="governance.bin", VersionId=v)["Retention"]
        expect(ret["Mode"] == "GOVERNANCE", f"retention {ret}")
        code = error_code(lambda: s3.delete_object(Bucket=lock_bucket, Key="governance.bin", VersionId=v))
        expect(code == "AccessDenied", f"delete of a GOVERNANCE-retained version gave {code}")
        s3.put_object_legal_hold(Bucket=lock_bucket, Key="governance.bin", VersionId=v, LegalHold={"Status": "ON"})
        code = error_code(
            lambda: s3.delete_object(
                Bucket=lock_bucket, Key="governance.bin", VersionId=v, BypassGovernanceRetention=True
            )
        )
        expect(code == "AccessDenied", f"delete under legal hold gave {code}")
        s3.put_object_legal_hold(Bucket=lock_bucket, Key="governance.bin", VersionId=v, LegalHold={"Status": "OFF"})
        s3.delete_object(Bucket=lock_bucket, Key="governance.bin", VersionId=v, BypassGovernanceRetention=True)
        v = s3.put_object(
            Bucket=lock_bucket,
            Key="compliance.bin",
            Body=b"keep",
            ObjectLockMode="COMPLIANCE",
            ObjectLockRetainUntilDate=now + dt.timedelta(seconds=5),
        )["VersionId"]
        code = error_code(
            lambda: s3.delete_object(
                Bucket=lock_bucket, Key="compliance.bin", VersionId=v, BypassGovernanceRetention=True
            )
        )
        expect(code == "AccessDenied", f"delete under COMPLIANCE retention (with bypass) gave {code}")
        s3.put_object_lock_configuration(
            Bucket=lock_bucket,
            ObjectLockConfiguration={
                "ObjectLockEnabled": "Enabled",
                "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}},
            },
        )
        v = s3.put_object(Bucket=lock_bucket, Key="default.bin", Body=b"keep")["VersionId"]
        ret = s3.get_object_retention(Bucket=lock_bucket, Key="default.bin", VersionId=v)["Retention"]
        expect(ret["Mode"] == "GOVERNANCE", f"default retention not applied: {ret}")
        code = error_code(lambda: s3.delete_object(Bucket=lock_bucket, Key="default.bin", VersionId=v))
        expect(code == "AccessDenied", f"delete under default retention gave {code}")
        return "GOVERNANCE (bypass), COMPLIANCE (no bypass), legal hold, default retention; GetObjectRetention"

    check("object lock", object_lock)

    def auth():
        wrong = error_code(lambda: client(secret="wrong-secret").list_buckets())
        unknown = error_code(lambda: client(access="AKIAUNKNOWNUNKNOWN00").list_buckets())
        req = urllib.request.Request(f"{ENDPOINT}/{bucket}/etag.bin")
        try:
            urllib.request.urlopen(req, timeout=10)
            anon = "200"
        except urllib.error.HTTPError as exc:
            anon = str(exc.code)
        url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "etag.bin"}, ExpiresIn=60)
        presigned = urllib.request.urlopen(url, timeout=10).read()
        url4 = client(signature_version="s3v4").generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": "etag.bin"}, ExpiresIn=60
        )
        expect("X-Amz-Signature=" in url4, "not a SigV4 URL")
        expect(urllib.request.urlopen(url4, timeout=10).read() == data, "SigV4 presigned GET returned other bytes")
        try:
            urllib.request.urlopen(url4.replace("X-Amz-Expires=60", "X-Amz-Expires=61"), timeout=10)
            tampered = "200"
        except urllib.error.HTTPError as exc:
            tampered = str(exc.code)
        expect(tampered == "403", f"tampered presigned URL gave {tampered}")
        expect(wrong == "SignatureDoesNotMatch", f"wrong secret gave {wrong}")
        expect(unknown == "InvalidAccessKeyId", f"unknown key gave {unknown}")
        expect(anon == "403", f"anonymous GET gave {anon}")
        expect(presigned == data, "presigned GET returned other bytes")
        return "wrong secret, unknown key, anonymous and tampered URL refused; presigned GET (SigV2, SigV4) works"

    check("credentials (SigV4)", auth)


def admin(method, path, secret=SECRET, payload=None):
    """The lab's key management (/_drlab/), as a breach's key rotation uses it: (HTTP status, JSON)."""
    request = urllib.request.Request(
        ENDPOINT + path, method=method, data=None if payload is None else json.dumps(payload).encode(),
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def key_checks():
    def rotate():
        access, secret = f"AKIADRLABROTATE{RUN}", f"rotate-secret-{RUN}-0123456789"
        expect(admin("PUT", f"/_drlab/keys/{access}", "wrong-admin-secret", {"secret_key": secret})[0] == 403,
               "a key added without the admin secret")
        expect(admin("PUT", f"/_drlab/keys/{access}", payload={"secret_key": secret})[0] == 200, "key not added")
        client(access, secret).list_buckets()
        status, answer = admin("POST", "/_drlab/revoke", secret)
        expect(status == 200 and answer["revoked"] == access, f"revoke answered {status} {answer}")
        code = error_code(lambda: client(access, secret).list_buckets())
        expect(code == "InvalidAccessKeyId", f"a revoked key still works ({code})")
        again = admin("POST", "/_drlab/revoke", secret)
        expect(again == (200, {"revoked": access}), f"revoking it again answered {again}")
        expect(admin("POST", "/_drlab/revoke", SECRET)[0] == 401, "the lab's own key was revoked")
        return "a new pair works; revoked by presenting its secret (again: the same answer) it is refused at once"

    check("key pairs added and revoked (a breach's rotation)", rotate)


def persist_write():
    def write():
        access = f"AKIADRLABPERSIST{RUN}"
        expect(admin("PUT", f"/_drlab/keys/{access}", payload={"secret_key": f"persist-secret-{RUN}-0123456789"})[0]
               == 200, "key not added")  # fmt: skip
        s3.create_bucket(Bucket=PERSIST, ObjectLockEnabledForBucket=True)
        prefix = f"run-{RUN}/"
        s3.put_object(Bucket=PERSIST, Key=prefix + "set.tar", Body=body("v1", 3000), ChecksumAlgorithm="SHA256")
        s3.put_object(
            Bucket=PERSIST,
            Key=prefix + "set.tar",
            Body=body("v2", 4000),
            ChecksumAlgorithm="SHA256",
            ObjectLockMode="GOVERNANCE",
            ObjectLockRetainUntilDate=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10),
        )
        up = s3.create_multipart_upload(Bucket=PERSIST, Key=prefix + "big.tar", ChecksumAlgorithm="SHA256")["UploadId"]
        s3.upload_part(
            Bucket=PERSIST,
            Key=prefix + "big.tar",
            UploadId=up,
            PartNumber=1,
            Body=body("m1", 5 * MIB),
            ChecksumAlgorithm="SHA256",
        )
        return f"2 versions (one under retention) and a multipart upload with 1 part under {prefix}"

    check("data written before restart", write)


def persist_verify(when, complete):
    prefix = f"run-{RUN}/"

    def verify():
        client(f"AKIADRLABPERSIST{RUN}", f"persist-secret-{RUN}-0123456789").list_buckets()  # keys.json kept
        versions = s3.list_object_versions(Bucket=PERSIST, Prefix=prefix + "set.tar")["Versions"]
        expect(len(versions) == 2, f"{len(versions)} versions")
        latest = s3.get_object(Bucket=PERSIST, Key=prefix + "set.tar", ChecksumMode="ENABLED")
        expect(latest["Body"].read() == body("v2", 4000), "latest version content")
        expect(latest.get("ChecksumSHA256") == sha256_b64(body("v2", 4000)), "checksum lost")
        expect(latest["ETag"].strip('"') == md5(body("v2", 4000)), "etag changed")
        old = next(v for v in versions if not v["IsLatest"])
        got = s3.get_object(Bucket=PERSIST, Key=prefix + "set.tar", VersionId=old["VersionId"])["Body"].read()
        expect(got == body("v1", 3000), "old version content")
        newest = next(v for v in versions if v["IsLatest"])["VersionId"]
        code = error_code(lambda: s3.delete_object(Bucket=PERSIST, Key=prefix + "set.tar", VersionId=newest))
        expect(code == "AccessDenied", f"retention lost: delete gave {code}")
        up = [u for u in s3.list_multipart_uploads(Bucket=PERSIST, Prefix=prefix).get("Uploads", [])]
        expect(len(up) == 1, f"uploads {up}")
        up = up[0]["UploadId"]
        parts = s3.list_parts(Bucket=PERSIST, Key=prefix + "big.tar", UploadId=up)["Parts"]
        expect([p["PartNumber"] for p in parts] == [1], f"parts {parts}")
        if complete:
            p2 = body("m2", 100)
            r = s3.upload_part(
                Bucket=PERSIST, Key=prefix + "big.tar", UploadId=up, PartNumber=2, Body=p2, ChecksumAlgorithm="SHA256"
            )
            s3.complete_multipart_upload(
                Bucket=PERSIST,
                Key=prefix + "big.tar",
                UploadId=up,
                MultipartUpload={
                    "Parts": [
                        {"PartNumber": 1, "ETag": parts[0]["ETag"], "ChecksumSHA256": parts[0]["ChecksumSHA256"]},
                        {"PartNumber": 2, "ETag": r["ETag"], "ChecksumSHA256": sha256_b64(p2)},
                    ]
                },
            )
            got = s3.get_object(Bucket=PERSIST, Key=prefix + "big.tar")["Body"].read()
            expect(got == body("m1", 5 * MIB) + p2, "resumed upload content")
            return "versions, content, ETag, ChecksumSHA256, retention and the open upload kept; upload resumed"
        return "versions, content, ETag, ChecksumSHA256, retention and the open upload (1 part) kept"

    check(f"data survives {when}", verify)


def cleanup():
    def clean():
        removed, left = 0, ["first pass"]
        for attempt in range(3):
            if not left:
                break
            if attempt:
                time.sleep(4)  # a COMPLIANCE retention of a few seconds from the api checks may still run
            removed, left = remove_test_buckets(removed)
        expect(not left, f"still locked: {left}")
        return f"{removed} test bucket(s) removed"

    def remove_test_buckets(removed):
        left = []
        for bucket in [b["Name"] for b in s3.list_buckets()["Buckets"] if b["Name"].startswith("drlab-svc-test-")]:
            for up in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
                s3.abort_multipart_upload(Bucket=bucket, Key=up["Key"], UploadId=up["UploadId"])
            listing = s3.list_object_versions(Bucket=bucket)
            for v in listing.get("Versions", []) + listing.get("DeleteMarkers", []):
                try:
                    s3.delete_object(
                        Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"], BypassGovernanceRetention=True
                    )
                except ClientError:
                    left.append(f"{bucket}/{v['Key']}")
            if not any(entry.startswith(bucket + "/") for entry in left):
                s3.delete_bucket(Bucket=bucket)
                removed += 1
        return removed, left

    check("test buckets removed", clean)


if PHASE == "api":
    api_checks()
    key_checks()
elif PHASE == "write":
    persist_write()
elif PHASE == "cleanup":
    cleanup()
elif PHASE == "names":
    check(
        "path-style endpoint by name and port " + ENDPOINT,
        lambda: f"{len(s3.list_buckets()['Buckets'])} bucket(s) listed with the lab key",
    )
elif PHASE.startswith("verify:"):
    persist_verify(PHASE.split(":", 1)[1], complete=False)
elif PHASE.startswith("resume:"):
    persist_verify(PHASE.split(":", 1)[1], complete=True)
else:
    sys.exit(f"unknown phase {PHASE}")
sys.exit(1 if failed else 0)
PY

cat >"$work/dnscheck.py" <<'PY'
import base64
import hashlib
import hmac
import ipaddress
import random
import socket
import struct
import sys
import time

RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED", 9: "NOTAUTH"}
TSIG_ERRORS = {0: "", 16: "BADSIG", 17: "BADKEY", 18: "BADTIME"}


def wire_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.lower().encode()
    return out + b"\0"


def read_name(msg, pos):
    labels, jumped, end = [], False, pos
    while True:
        length = msg[pos]
        if length & 0xC0 == 0xC0:
            if not jumped:
                end = pos + 2
            pos, jumped = ((length & 0x3F) << 8) | msg[pos + 1], True
            continue
        pos += 1
        if length == 0:
            break
        labels.append(msg[pos : pos + length].decode())
        pos += length
    return ".".join(labels) + ".", (end if jumped else pos)


def exchange(server, msg, tcp):
    if tcp:
        with socket.create_connection((server, 53), timeout=5) as s:
            s.sendall(struct.pack("!H", len(msg)) + msg)
            size = struct.unpack("!H", s.recv(2, socket.MSG_WAITALL))[0]
            return s.recv(size, socket.MSG_WAITALL)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(msg, (server, 53))
        return s.recv(4096)


def parse(msg):
    _, flags, qd, an, ns, ar = struct.unpack("!6H", msg[:12])
    pos, records = 12, []
    for _ in range(qd):
        _, pos = read_name(msg, pos)
        pos += 4
    for _ in range(an + ns + ar):
        name, pos = read_name(msg, pos)
        rtype, _, _, rdlen = struct.unpack("!HHIH", msg[pos : pos + 10])
        pos += 10
        records.append((name, rtype, msg[pos : pos + rdlen]))
        pos += rdlen
    tsig_error = ""
    for _, rtype, rdata in records:
        if rtype == 250:
            _, p = read_name(rdata, 0)
            mac_size = struct.unpack("!H", rdata[p + 8 : p + 10])[0]
            err = struct.unpack("!H", rdata[p + 12 + mac_size : p + 14 + mac_size])[0]
            tsig_error = TSIG_ERRORS.get(err, str(err))
    rcode = RCODES.get(flags & 0xF, str(flags & 0xF))
    return rcode + (f"({tsig_error})" if tsig_error else ""), an, records


def query_a(server, name, tcp=False):
    msg = struct.pack("!6H", random.randint(0, 0xFFFF), 0, 1, 0, 0, 0) + wire_name(name) + struct.pack("!HH", 1, 1)
    rcode, an, records = parse(exchange(server, msg, tcp))
    return rcode, [str(ipaddress.IPv4Address(r[2])) for r in records[:an] if r[1] == 1]


def update_a(server, zone, name, address, key_name, secret_b64, tcp=False):
    """RFC 2136 update (replace NAME's A records) signed with TSIG hmac-sha256 (RFC 8945), as nsupdate sends."""
    msg_id = random.randint(0, 0xFFFF)
    body = wire_name(zone) + struct.pack("!HH", 6, 1)
    body += wire_name(name) + struct.pack("!HHIH", 1, 255, 0, 0)
    body += wire_name(name) + struct.pack("!HHIH", 1, 1, 60, 4) + ipaddress.IPv4Address(address).packed
    msg = struct.pack("!6H", msg_id, 5 << 11, 1, 0, 2, 0) + body
    if key_name is None:
        return parse(exchange(server, msg, tcp))[0]
    alg, now, fudge = wire_name("hmac-sha256"), int(time.time()), 300
    signed = struct.pack("!HI", now >> 32, now & 0xFFFFFFFF) + struct.pack("!H", fudge)
    variables = wire_name(key_name) + struct.pack("!HI", 255, 0) + alg + signed + struct.pack("!HH", 0, 0)
    mac = hmac.new(base64.b64decode(secret_b64), msg + variables, hashlib.sha256).digest()
    rdata = alg + signed + struct.pack("!H", len(mac)) + mac + struct.pack("!HHH", msg_id, 0, 0)
    tsig = wire_name(key_name) + struct.pack("!HHIH", 250, 255, 0, len(rdata)) + rdata
    msg = struct.pack("!6H", msg_id, 5 << 11, 1, 0, 2, 1) + body + tsig
    return parse(exchange(server, msg, tcp))[0]


if __name__ == "__main__":
    # query SERVER NAME udp|tcp  -> "RCODE addr,addr"; update SERVER ADDRESS KEYNAME|- SECRET|- udp|tcp -> "RCODE"
    cmd, server, arg = sys.argv[1], sys.argv[2], sys.argv[3]
    if cmd == "query":
        rcode, addresses = query_a(server, arg, tcp=sys.argv[4] == "tcp")
        print(rcode, ",".join(addresses))
    else:
        key_name, secret = (None, None) if sys.argv[4] == "-" else (sys.argv[4], sys.argv[5])
        print(update_a(server, "drlab.test", "bot.drlab.test", arg, key_name, secret, tcp=sys.argv[6] == "tcp"))
PY

# s3 PHASE [ENDPOINT]: the boto3 checks from this machine (the controller's boto3) against the container's
# address, or inside drlab-offsite against http://drlab-offsite:9000 when this machine cannot reach it.
s3() {
  local phase=$1 out rc=0
  if [ "$s3_mode" = host ]; then
    out=$(DRLAB_S3_ACCESS_KEY=$ACCESS_KEY DRLAB_S3_SECRET_KEY=$SECRET_KEY \
      "$PYTHON" "$work/s3checks.py" "http://$(ip_of $S3):9000" "$phase" "$RUN" 2>&1) || rc=$?
  else
    out=$(podman exec -i $S3 $S3_PY - "http://$S3:9000" "$phase" "$RUN" <"$work/s3checks.py" 2>&1) || rc=$?
  fi
  tally "s3 $phase" "$out" "$rc"
}
# dnsq SERVER NAME udp|tcp -> "RCODE addresses" (stdlib DNS client, from this machine)
dnsq() { "$PYTHON" "$work/dnscheck.py" query "$@"; }
dnsu() { "$PYTHON" "$work/dnscheck.py" update "$@"; }
# nsupdate inside drlab-dns: nsup ADDRESS [-y KEYSPEC]
nsup() {
  local address=$1
  shift
  printf 'server 127.0.0.1\nzone drlab.test\nupdate delete bot.drlab.test A\n%s\nsend\n' \
    "update add bot.drlab.test 60 A $address" | podman exec -i $DNS nsupdate "$@" 2>&1
}
dig_bot() {
  { podman exec $DNS dig +short +norecurse @127.0.0.1 bot.drlab.test A 2>/dev/null || true; } |
    { grep -E '^[0-9.]+$' || true; } | tr '\n' ' ' | sed 's/ $//'
}
# wait_dig ADDRESS: named answers ADDRESS for bot.drlab.test (it may still be loading its zones)
wait_dig() {
  local _
  for _ in $(seq 1 30); do
    [ "$(dig_bot)" = "$1" ] && return 0
    sleep 0.5
  done
  echo "bot.drlab.test is '$(dig_bot)', not '$1'"
  return 1
}

# ---------------------------------------------------------------------------------------------------------------
echo "# lab containers"
for c in $S3 $DNS; do
  image=$(podman container inspect "$c" --format '{{.ImageName}} {{.State.Running}}' 2>/dev/null || true)
  case $image in
    "localhost/${c}:"*" true") ok "$c runs from its own image (${image% true})" ;;
    *) fail "$c is not running from localhost/${c}:* (got '${image:-no such container}'); run: make lab" ;;
  esac
done
if [ "$failed" != 0 ]; then
  echo "$passed passed, $failed failed"
  exit 1
fi
check "drlab-offsite-s3.service is active" podman exec $S3 systemctl is-active drlab-offsite-s3.service
check "drlab-offsite-tls.service is active" podman exec $S3 systemctl is-active drlab-offsite-tls.service
check "named.service is active in drlab-dns" podman exec $DNS systemctl is-active named.service

# ---------------------------------------------------------------------------------------------------------------
echo "# drlab-offsite: S3"
if tcp_open "$(ip_of $S3)" 9000 2>/dev/null; then
  s3_mode=host
  ok "this machine reaches drlab-offsite at its address $(ip_of $S3):9000 (checks run with the controller's boto3)"
else
  s3_mode=container
  echo "note this machine cannot reach $(ip_of $S3):9000: the S3 checks run inside drlab-offsite"
fi
s3_by_name() {
  # from the other lab host: name, port and an S3 answer (anonymous request -> 403 AccessDenied); HTTPS on 9443 is
  # stunnel in front of 9000, with the lab's self-signed certificate (not checked)
  podman exec $DNS python3 -c '
import ssl, sys, urllib.error, urllib.request
context = ssl.create_default_context(); context.check_hostname = False; context.verify_mode = ssl.CERT_NONE
try:
    urllib.request.urlopen(sys.argv[1], timeout=5, context=context)
except urllib.error.HTTPError as exc:
    body = exc.read().decode()
    assert exc.code == 403 and "<Code>AccessDenied</Code>" in body, (exc.code, body)
else:
    raise SystemExit("anonymous request answered 200")' "$1"
}
check "s3 http://drlab-offsite:9000 answers by name from drlab-dns (anonymous: 403 AccessDenied)" \
  s3_by_name http://drlab-offsite:9000/
check "s3 https://drlab-offsite:9443 (stunnel) answers the same" s3_by_name https://drlab-offsite:9443/
out=$(podman exec -i $S3 $S3_PY - "http://$S3:9000" names "$RUN" <"$work/s3checks.py" 2>&1) && rc=0 || rc=$?
tally "s3 names" "$out" "$rc"
s3 api
s3 write
check "podman restart drlab-offsite" podman restart $S3
wait_booted $S3 drlab-offsite-s3.service
s3 "verify:podman restart drlab-offsite"
check "systemctl restart drlab-offsite-s3 (returns once the port is open: Type=notify)" \
  podman exec $S3 systemctl restart drlab-offsite-s3.service
s3 "resume:systemctl restart drlab-offsite-s3"
if [ "$s3_mode" = host ]; then
  ansible_s3() {
    local ep src="$work/ansible-put.txt" dest="$work/ansible-get.txt"
    ep="http://$(ip_of $S3):9000"
    echo "backup set $RUN" >"$src"
    local common=(endpoint_url="$ep" "access_key=$ACCESS_KEY" "secret_key=$SECRET_KEY" region=us-east-1)
    "$PWD/.venv/bin/ansible" localhost -m amazon.aws.s3_bucket -a "name=drlab-svc-test-$RUN-ansible ${common[*]}" &&
      "$PWD/.venv/bin/ansible" localhost -m amazon.aws.s3_object \
        -a "bucket=drlab-svc-test-$RUN-ansible object=sets/a.txt src=$src mode=put ${common[*]}" &&
      "$PWD/.venv/bin/ansible" localhost -m amazon.aws.s3_object \
        -a "bucket=drlab-svc-test-$RUN-ansible object=sets/a.txt dest=$dest mode=get ${common[*]}" &&
      cmp "$src" "$dest"
  }
  check "s3 amazon.aws.s3_bucket / s3_object put and get from the controller" ansible_s3
fi
s3 cleanup

# ---------------------------------------------------------------------------------------------------------------
echo "# drlab-dns: BIND 9, zone drlab.test, TSIG key $TSIG_NAME"
KEY="hmac-sha256:$TSIG_NAME:$TSIG_SECRET"
# a well-formed secret that is not the key's: base64 of 32 bytes
other_secret() {
  "$PYTHON" -c 'import base64 as b, hashlib as h, sys; print(b.b64encode(h.sha256(sys.argv[1].encode()).digest()).decode())' \
    "$1"
}
WRONG_SECRET="hmac-sha256:$TSIG_NAME:$(other_secret wrong)"
UNKNOWN_KEY="hmac-sha256:not-$TSIG_NAME:$TSIG_SECRET"
for _ in $(seq 1 30); do # named may still be loading its zones
  [ -n "$(dig_bot)" ] && break
  sleep 0.5
done
original=$(dig_bot)
new1="203.0.113.$((RUN % 200 + 1))"
new2="203.0.113.$(((RUN + 1) % 200 + 1))"
new3="203.0.113.$(((RUN + 2) % 200 + 1))"
listening() {
  local ip sockets
  ip=$(ip_of $DNS)
  sockets=$(podman exec $DNS ss -lnu; podman exec $DNS ss -lnt)
  for a in "127.0.0.1:53" "$ip:53"; do
    [ "$(grep -c " $a " <<<"$sockets")" -ge 2 ] || { echo "nothing on $a (udp and tcp)"; return 1; }
  done
}
check "named listens on port 53 udp and tcp (127.0.0.1 and $(ip_of $DNS))" listening
soa() {
  local out
  out=$(podman exec $DNS dig +short @127.0.0.1 drlab.test SOA; podman exec $DNS dig +short @127.0.0.1 drlab.test NS)
  if ! grep -q '^drlab-dns.dns.podman. hostmaster.drlab.test. ' <<<"$out" ||
    ! grep -qx 'drlab-dns.dns.podman.' <<<"$out"; then
    echo "$out"
    return 1
  fi
}
check "zone drlab.test: SOA and NS drlab-dns(.dns.podman), bot.drlab.test A ${original:-missing}" soa
check "nsupdate -y $TSIG_NAME (in drlab-dns) sets bot.drlab.test A $new1" nsup "$new1" -y "$KEY"
check "dig @127.0.0.1 answers $new1" wait_dig "$new1"
refused() {
  local out
  if out=$(nsup 203.0.113.250 "$@"); then echo "accepted: $out"; return 1; fi
  grep -Eq "$expect" <<<"$out" || { echo "$out"; return 1; }
  wait_dig "$new1"
}
expect='NOTAUTH|BADSIG|tsig'
check "update signed with a wrong secret is refused (BADSIG), address unchanged" refused -y "$WRONG_SECRET"
expect='NOTAUTH\(BADKEY\)|BADKEY'
check "update signed with an unknown key name is refused (BADKEY)" refused -y "$UNKNOWN_KEY"
expect='REFUSED'
check "unsigned update is refused (REFUSED)" refused

host_dns() {
  local ip want=$1 got
  ip=$(ip_of $DNS)
  for proto in udp tcp; do
    got=$(dnsq "$ip" bot.drlab.test $proto)
    [ "$got" = "NOERROR $want" ] || { echo "$proto: $got"; return 1; }
  done
}
if host_dns "$new1" >/dev/null 2>&1; then
  ok "this machine queries drlab-dns at its address $(ip_of $DNS):53 (udp and tcp): $new1"
  upd() { local r; r=$(dnsu "$(ip_of $DNS)" "$@"); [ "$r" = "${expect_rcode}" ] || { echo "answer $r"; return 1; }; }
  expect_rcode=NOERROR
  check "TSIG-signed update from this machine (as community.general.nsupdate sends) sets $new2" \
    upd "$new2" $TSIG_NAME "$TSIG_SECRET" udp
  check "dig answers $new2" wait_dig "$new2"
  expect_rcode="NOTAUTH(BADSIG)"
  check "update from this machine with a wrong secret is refused (NOTAUTH/BADSIG)" \
    upd 203.0.113.251 $TSIG_NAME "$(other_secret other)" tcp
  check "address still $new2" wait_dig "$new2"
else
  fail "this machine cannot query drlab-dns at $(ip_of $DNS):53: $(host_dns "$new1" 2>&1 | tail -1)"
  nsup "$new2" -y "$KEY" >/dev/null || true # where the checks below expect it
fi
module_nsupdate() {
  "$PWD/.venv/bin/ansible" localhost -m community.general.nsupdate -a "server=$(ip_of $DNS) zone=drlab.test \
    record=bot type=A value=$new3 ttl=60 key_name=$TSIG_NAME key_secret=$TSIG_SECRET key_algorithm=hmac-sha256" &&
    wait_dig "$new3" && nsup "$new2" -y "$KEY" >/dev/null
}
check "community.general.nsupdate from the controller sets $new3 (dnspython is pinned in .venv)" module_nsupdate
by_name() {
  # from the other lab host, by name on the drlab network: query and a signed update (the same stdlib client)
  local r
  r=$(podman exec -i $S3 python3 - query drlab-dns bot.drlab.test udp <"$work/dnscheck.py")
  [ "$r" = "NOERROR $new2" ] || { echo "query: $r"; return 1; }
  r=$(podman exec -i $S3 python3 - update drlab-dns "$new3" $TSIG_NAME "$TSIG_SECRET" tcp <"$work/dnscheck.py")
  [ "$r" = NOERROR ] || { echo "update: $r"; return 1; }
  wait_dig "$new3"
}
check "drlab-offsite reaches drlab-dns by name: query, then signed update to $new3" by_name

check "podman restart drlab-dns" podman restart $DNS
wait_booted $DNS named.service
check "bot.drlab.test is still $new3 after podman restart drlab-dns" wait_dig "$new3"
check "nsupdate after the restart sets $new1" nsup "$new1" -y "$KEY"
check "systemctl restart named" podman exec $DNS systemctl restart named.service
check "bot.drlab.test is still $new1 after systemctl restart named" wait_dig "$new1"
restore_to=${original:-198.51.100.10} # the zone's starting address when named did not answer at first
restore() { nsup "$restore_to" -y "$KEY" >/dev/null && wait_dig "$restore_to"; }
check "bot.drlab.test back to $restore_to" restore

echo "$passed passed, $failed failed"
[ "$failed" = 0 ] || exit 1
