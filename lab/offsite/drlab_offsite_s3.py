#!/usr/bin/env python3
"""drlab-offsite-s3: the lab's off-site object store, an S3 endpoint whose data survives a restart.

S3 itself is moto's S3 backend (moto.s3, the emulation the AWS SDKs are tested against: versioning, object
lock, multipart uploads, checksums, S3's ETag rules and error codes). This file adds what moto's server
lacks for a lab host that stands in for AWS S3 / Backblaze B2 / GCS:

* persistence: after every request that can change state (PUT, POST, DELETE) and before its answer is sent,
  moto's S3 state is written to --data-dir: object bodies as content-addressed blobs (blobs/ab/<sha256>),
  everything else (buckets, versions, upload ids, locks, tags, checksums) as one pickle (state.pickle),
  each written to a temporary file, fsynced and renamed. At start the state is loaded again. An answered
  write is on disk, as with S3; a crash or SIGKILL loses at most the request that had no answer yet.
* authentication: AWS Signature Version 4 (Authorization header and presigned URLs) checked against one
  fixed key pair, with S3's error codes (InvalidAccessKeyId, SignatureDoesNotMatch, AccessDenied,
  RequestTimeTooSkewed, XAmzContentSHA256Mismatch). moto alone accepts any key.
* path-style addressing only (http://HOST:PORT/BUCKET/KEY), and nothing but S3 is served (no /moto-api,
  which could reset the state).

Requests are handled one at a time (a lock around moto and the snapshot); bodies are read before the lock
is taken. Run under systemd as drlab-offsite-s3.service; see README.md next to this file.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import hashlib
import hmac
import io
import json
import logging
import os
import pickle
import re
import signal
import socket
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import quote, unquote
from xml.etree import ElementTree
from xml.sax.saxutils import escape

# moto reads these at import time: path-style buckets whatever the Host header says; no blanket CORS headers.
os.environ.setdefault("S3_IGNORE_SUBDOMAIN_BUCKETNAME", "true")
os.environ.setdefault("MOTO_DISABLE_GLOBAL_CORS", "true")

from botocore.auth import HmacV1Auth
from moto.moto_server.werkzeug_app import MotoRequestHandler, create_backend_app
from moto.s3.exceptions import InvalidBucketState
from moto.s3.models import FakeKey, S3Backend, s3_backends
from moto.s3.responses import S3Response
from moto.s3.utils import compute_checksum
from werkzeug.serving import make_server
from werkzeug.wsgi import get_input_stream

# Lab-only credentials, the defaults (see README.md); never use them for anything real.
LAB_ACCESS_KEY = "AKIADRLABOFFSITE0001"
LAB_SECRET_KEY = "drlab-offsite-lab-only-secret-key-000001"
# The pair the lab's bot hosts use (inventories/lab lab_secrets.offsite): not the admin pair, so a breach drill can
# revoke it. Seeded when the store has no keys.json yet.
LAB_HOST_KEYS = {"AKIADRLABBOTHOST0001": "drlab-offsite-lab-bot-host-secret-00001"}
NO_SUCH_KEY_ID = "The AWS Access Key Id you provided does not exist in our records."
SKEWED = "The difference between the request time and the current time is too large."
STATE_FILE = "state.pickle"
STATE_VERSION = 1
MUTATING = frozenset({"PUT", "POST", "DELETE", "PATCH"})
MAX_SKEW = 15 * 60
HEX64 = re.compile(r"[0-9a-f]{64}")
LOG = logging.getLogger("drlab-offsite-s3")


# --------------------------------------------------------------------------------------------------------------
# Persistence
# --------------------------------------------------------------------------------------------------------------
def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


# FakeKey.value is written only through its property setter; forget the cached blob name whenever it is.
_value_property = FakeKey.value


def _set_value(self: FakeKey, new_value: bytes) -> None:
    self.__dict__.pop("_drlab_blob", None)
    _value_property.fset(self, new_value)


FakeKey.value = property(_value_property.fget, _set_value)


def _new(cls: type) -> object:
    return cls.__new__(cls)


def _restore_dict(obj: dict, state: tuple[dict | None, list]) -> None:
    attrs, items = state
    if attrs:
        obj.__dict__.update(attrs)
    for key, value in items:
        dict.__setitem__(obj, key, value)


class Store:
    """Object bodies as content-addressed files, the rest of moto's S3 state as one pickle.

    Two kinds of object need help to survive pickle: FakeKey (its body lives in a temporary file; here it
    goes to a blob named by its sha256, written once) and moto's dict subclasses such as _VersionedKeyStore,
    whose items() and __setitem__ show and take only the newest version of a key (pickled here as raw
    dict items, restored with dict.__setitem__, so every version is kept).
    """

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.blob_dir = data_dir / "blobs"
        self.blob_dir.mkdir(parents=True, exist_ok=True)

    def blob_path(self, sha: str) -> Path:
        return self.blob_dir / sha[:2] / sha

    def put_blob(self, value: bytes) -> str:
        sha = hashlib.sha256(value).hexdigest()
        path = self.blob_path(sha)
        if not path.exists():
            path.parent.mkdir(exist_ok=True)
            _write_atomic(path, value)
        return sha

    def key_state(self, key: FakeKey) -> dict:
        state = {k: v for k, v in key.__dict__.items() if k not in ("_value_buffer", "lock")}
        sha = state.get("_drlab_blob")
        if sha is None or not self.blob_path(sha).exists():
            try:
                value = key.value
            except ValueError:  # buffer closed: the key was disposed of (deleted), as FakeKey.__getstate__ does
                value = b""
            sha = self.put_blob(value)
            key.__dict__["_drlab_blob"] = state["_drlab_blob"] = sha
        return state

    def snapshot(self) -> None:
        referenced: set[str] = set()
        store = self

        class Pickler(pickle.Pickler):
            def reducer_override(self, obj: object) -> object:
                if isinstance(obj, FakeKey):
                    state = store.key_state(obj)
                    referenced.add(state["_drlab_blob"])
                    return (_new, (type(obj),), state, None, None, _restore_key)
                if isinstance(obj, dict) and type(obj) is not dict and type(obj).__module__.startswith("moto."):
                    state = (getattr(obj, "__dict__", None), list(dict.items(obj)))
                    return (_new, (type(obj),), state, None, None, _restore_dict)
                return NotImplemented

        backends = {(acct, region): backend for acct, region, backend in s3_backends.iter_backends()}
        buf = io.BytesIO()
        Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(
            {"version": STATE_VERSION, "bucket_accounts": dict(s3_backends.bucket_accounts), "backends": backends}
        )
        _write_atomic(self.data_dir / STATE_FILE, buf.getvalue())
        for path in self.blob_dir.glob("*/*"):
            if path.name not in referenced and not path.name.startswith("."):
                path.unlink(missing_ok=True)

    def load(self) -> None:
        for leftover in [*self.data_dir.glob(".*.tmp"), *self.blob_dir.glob("*/.*.tmp")]:
            leftover.unlink()  # a write that a crash cut short; the state never referred to it
        path = self.data_dir / STATE_FILE
        if not path.exists():
            LOG.info("no saved state in %s: starting empty", self.data_dir)
            return
        global _LOADING_STORE
        _LOADING_STORE = self
        try:
            with open(path, "rb") as fh:
                state = pickle.load(fh)
        finally:
            _LOADING_STORE = None
        if state.get("version") != STATE_VERSION:
            raise SystemExit(f"{path}: state version {state.get('version')} is not {STATE_VERSION}")
        for (acct, region), backend in state["backends"].items():
            dict.__setitem__(s3_backends[acct], region, backend)
        s3_backends.bucket_accounts.update(state["bucket_accounts"])
        buckets = [b for _, _, backend in s3_backends.iter_backends() for b in backend.buckets.values()]
        versions = sum(len(versions) for b in buckets for versions in dict.values(b.keys))
        LOG.info("loaded %d bucket(s) holding %d object version(s) from %s", len(buckets), versions, path)


_LOADING_STORE: Store | None = None


def _restore_key(obj: FakeKey, state: dict) -> None:
    assert _LOADING_STORE is not None
    sha = state["_drlab_blob"]
    obj.__setstate__(dict(state, value=_LOADING_STORE.blob_path(sha).read_bytes()))
    obj.__dict__["_drlab_blob"] = sha  # the value setter forgot it while the value was put back


# --------------------------------------------------------------------------------------------------------------
# Where moto 5.2 differs from S3 in what the backups need, put right here (each is checked by the lab test)
# --------------------------------------------------------------------------------------------------------------
class S3Error(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
CHECKSUM_ALGORITHMS = ("CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256")


def _exact_algorithms() -> set[str]:
    """moto quietly computes CRC32 for CRC32C without the crc32c package, and for CRC64NVME without awscrt."""
    exact = {"CRC32", "SHA1", "SHA256"}
    with contextlib.suppress(ImportError):
        import crc32c  # noqa: F401

        exact.add("CRC32C")
    with contextlib.suppress(ImportError):
        import awscrt.checksums  # noqa: F401

        exact.add("CRC64NVME")
    return exact


EXACT_ALGORITHMS = _exact_algorithms()
_upload_part, _list_parts = S3Response.upload_part, S3Response.list_parts
_key_response_get, _head_object = S3Response._key_response_get, S3Response.head_object


def _upload_part_keeps_checksum(self: S3Response):
    """UploadPart: keep the part's checksum (moto drops it), as S3 does for ListParts and resuming."""
    result = _upload_part(self)
    multipart = self.backend.get_bucket(self.bucket_name).multiparts[self._get_param("uploadId")]
    part = multipart.parts[self._get_int_param("partNumber")]
    algorithm = self.headers.get("x-amz-sdk-checksum-algorithm") or multipart.metadata.get("x-amz-checksum-algorithm")
    if algorithm and algorithm.upper() in CHECKSUM_ALGORITHMS:
        part.checksum_algorithm = algorithm.upper()
        part.checksum_value = compute_checksum(part.value, algorithm.upper()).decode()
    return result


def _list_parts_with_checksums(self: S3Response):
    """ListParts: each part's ChecksumXXX and the upload's ChecksumAlgorithm, as S3 answers."""
    status, headers, body = _list_parts(self)
    multipart = self.backend.get_bucket(self.bucket_name).multiparts.get(self._get_param("uploadId"))
    if status != 200 or multipart is None:
        return status, headers, body
    ElementTree.register_namespace("", S3_NS)
    root = ElementTree.fromstring(body)
    algorithm = multipart.metadata.get("x-amz-checksum-algorithm")
    if algorithm and root.find(f"{{{S3_NS}}}ChecksumAlgorithm") is None:
        ElementTree.SubElement(root, f"{{{S3_NS}}}ChecksumAlgorithm").text = algorithm.upper()
    for element in root.iter(f"{{{S3_NS}}}Part"):
        part = multipart.parts.get(int(element.findtext(f"{{{S3_NS}}}PartNumber")))
        if part is not None and getattr(part, "checksum_value", None) and part.checksum_algorithm:
            ElementTree.SubElement(element, f"{{{S3_NS}}}Checksum{part.checksum_algorithm}").text = part.checksum_value
    return status, headers, ElementTree.tostring(root, encoding="unicode", xml_declaration=True)


def _key_response_get_with_retention(self: S3Response, query: dict, key_name: str):
    """GetObjectRetention (moto answers 500)."""
    if "retention" not in query:
        return _key_response_get(self, query, key_name)
    self._set_action("KEY", "GET", query)
    key, _ = self._get_key(validate_storage_class=False)
    headers = {"Content-Type": "application/xml"}
    if key.version_id != "null":
        headers["x-amz-version-id"] = key.version_id
    if not key.lock_mode or not key.lock_until:
        message = "The specified object does not have a ObjectLock configuration"
        body = f"<Error><Code>NoSuchObjectLockConfiguration</Code><Message>{message}</Message></Error>"
        return 404, headers, '<?xml version="1.0" encoding="UTF-8"?>\n' + body
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Retention xmlns="{S3_NS}"><Mode>{key.lock_mode}</Mode>'
        f"<RetainUntilDate>{escape(key.lock_until)}</RetainUntilDate></Retention>"
    )
    return 200, headers, body


def _head_object_composite_checksum(self: S3Response, bucket_name: str, query: dict, key_name: str, headers: dict):
    """HeadObject: a multipart object's composite checksum carries its -N suffix, as GetObject's does."""
    status, response_headers, body = _head_object(self, bucket_name, query, key_name, headers)
    if status == 200 and headers.get("x-amz-checksum-mode") == "ENABLED" and not query.get("partNumber"):
        key = self.backend.get_object(bucket_name, key_name, version_id=query.get("versionId", [None])[0])
        if key is not None and key.checksum_algorithm and key.checksum_type == "COMPOSITE" and key.checksum_parts:
            response_headers[f"x-amz-checksum-{key.checksum_algorithm.lower()}"] = (
                f"{key.checksum_value}-{key.checksum_parts}"
            )
            response_headers["x-amz-checksum-type"] = key.checksum_type
    return status, response_headers, body


def _put_object_lock_configuration(
    self: S3Backend,
    bucket_name: str,
    lock_enabled: bool,
    mode: str | None = None,
    days: int | None = None,
    years: int | None = None,
) -> None:
    """PutObjectLockConfiguration on a bucket that holds objects (moto wants it empty; S3 does not)."""
    bucket = self.get_bucket(bucket_name)
    if not bucket.is_versioned:
        raise InvalidBucketState("Versioning must be 'Enabled' on the bucket to apply a Object Lock configuration")
    if lock_enabled:
        bucket.object_lock_enabled = True
        bucket.versioning_status = "Enabled"
    bucket.default_lock_mode = mode
    bucket.default_lock_days = days
    bucket.default_lock_years = years


S3Backend.put_object_lock_configuration = _put_object_lock_configuration
S3Response.head_object = _head_object_composite_checksum
S3Response.upload_part = _upload_part_keeps_checksum
S3Response.list_parts = _list_parts_with_checksums
S3Response._key_response_get = _key_response_get_with_retention


def _decode_aws_chunked(body: bytes) -> tuple[bytes, dict[str, str]]:
    """The payload and trailers of a body sent with Content-Encoding: aws-chunked."""
    data, trailers, pos = bytearray(), {}, 0
    while True:
        end = body.index(b"\r\n", pos)
        size = int(body[pos:end].split(b";")[0], 16)
        pos = end + 2
        if size == 0:
            break
        data += body[pos : pos + size]
        pos += size + 2
    for line in body[pos:].split(b"\r\n"):
        name, sep, value = line.decode().partition(":")
        if sep:
            trailers[name.strip().lower()] = value.strip()
    return bytes(data), trailers


def verify_checksums(environ: dict, body: bytes) -> None:
    """A PUT's x-amz-checksum-* (header or aws-chunked trailer) must match the body (moto only stores it)."""
    if environ["REQUEST_METHOD"] != "PUT":
        return
    sent = {
        name[len("HTTP_X_AMZ_CHECKSUM_") :]: value
        for name, value in environ.items()
        if name.startswith("HTTP_X_AMZ_CHECKSUM_") and name[len("HTTP_X_AMZ_CHECKSUM_") :] in CHECKSUM_ALGORITHMS
    }
    payload = body
    if "aws-chunked" in environ.get("HTTP_CONTENT_ENCODING", "") or environ.get(
        "HTTP_X_AMZ_CONTENT_SHA256", ""
    ).startswith("STREAMING-"):
        try:
            payload, trailers = _decode_aws_chunked(body)
        except ValueError as exc:
            raise S3Error(400, "IncompleteBody", "the aws-chunked body could not be decoded") from exc
        for name, value in trailers.items():
            if name.startswith("x-amz-checksum-") and name[len("x-amz-checksum-") :].upper() in CHECKSUM_ALGORITHMS:
                sent[name[len("x-amz-checksum-") :].upper()] = value
    for algorithm, value in sent.items():
        if algorithm not in EXACT_ALGORITHMS:
            continue
        try:
            valid = len(base64.b64decode(value, validate=True)) > 0
        except binascii.Error:
            valid = False
        if not valid:
            raise S3Error(400, "InvalidRequest", f"Value for x-amz-checksum-{algorithm.lower()} header is invalid.")
        if compute_checksum(payload, algorithm).decode() != value:
            raise S3Error(400, "BadDigest", f"The {algorithm} you specified did not match the calculated checksum.")


# --------------------------------------------------------------------------------------------------------------
# AWS Signature Version 4
# --------------------------------------------------------------------------------------------------------------
def _uri_encode(value: str, safe: str = "-_.~") -> str:
    return quote(value, safe=safe)


def _canonical_query(raw_query: str, drop: str | None = None) -> str:
    pairs = []
    for part in raw_query.split("&") if raw_query else []:
        name, _, value = part.partition("=")
        name, value = unquote(name), unquote(value)
        if name == drop:
            continue
        pairs.append((_uri_encode(name), _uri_encode(value)))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def _header(environ: dict, name: str) -> str | None:
    if name == "content-type":
        return environ.get("CONTENT_TYPE")
    if name == "content-length":
        return environ.get("CONTENT_LENGTH")
    return environ.get("HTTP_" + name.upper().replace("-", "_"))


def _canonical_headers(environ: dict, signed: list[str]) -> str:
    lines = []
    for name in signed:
        value = _header(environ, name)
        if value is None:
            raise S3Error(403, "SignatureDoesNotMatch", f"signed header {name} is missing from the request")
        lines.append(f"{name}:{' '.join(value.split())}\n")
    return "".join(lines)


def _signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _parse_amz_date(value: str) -> float:
    try:
        return datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError as exc:
        raise S3Error(403, "AccessDenied", f"bad X-Amz-Date {value!r}") from exc


class KeyStore:
    """The key pairs this S3 accepts, like an IAM user's access keys: the lab's own pair (the admin, never revoked)
    plus pairs added and revoked through /_drlab/ (a breach rotates the bot host's pair). Kept in keys.json in the
    data directory, written atomically, so a revocation survives a restart."""

    def __init__(self, data_dir: Path, admin_access_key: str, admin_secret_key: str):
        self.path = data_dir / "keys.json"
        self.admin = (admin_access_key, admin_secret_key)
        self.lock = threading.Lock()
        stored = json.loads(self.path.read_text()) if self.path.exists() else {"keys": dict(LAB_HOST_KEYS)}
        self.keys: dict[str, str] = stored.get("keys", {})
        # sha256 of each revoked secret -> its key id: revoking it again answers as the first time (idempotent)
        self.revoked: dict[str, str] = stored.get("revoked", {})

    def secret_of(self, access_key: str) -> str | None:
        if access_key == self.admin[0]:
            return self.admin[1]
        return self.keys.get(access_key)

    def _save(self) -> None:
        _write_atomic(self.path, json.dumps({"keys": self.keys, "revoked": self.revoked}, indent=2).encode())

    def add(self, access_key: str, secret_key: str) -> None:
        with self.lock:
            self.keys[access_key] = secret_key
            self._save()

    def revoke_secret(self, secret_key: str) -> str | None:
        """Revoke the pair whose secret this is (the way a stolen key is revoked by presenting it); its id. A pair
        revoked before answers the same (a breach response run again after a stop)."""
        digest = hashlib.sha256(secret_key.encode()).hexdigest()
        with self.lock:
            for access_key, secret in list(self.keys.items()):
                if hmac.compare_digest(secret.encode(), secret_key.encode()):
                    del self.keys[access_key]
                    self.revoked[digest] = access_key
                    self._save()
                    return access_key
            return self.revoked.get(digest)


def admin_app(environ: dict, start_response, keys: KeyStore) -> list[bytes]:
    """/_drlab/keys/<id> PUT {"secret_key"} (admin bearer): a new pair; /_drlab/revoke POST (bearer: the secret of
    the pair to revoke): that pair stops working at once. Never part of S3 (a bucket name cannot start with _)."""
    method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
    bearer = (environ.get("HTTP_AUTHORIZATION") or "").removeprefix("Bearer ").strip()

    def answer(status: str, payload: dict) -> list[bytes]:
        body = json.dumps(payload).encode()
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    if path == "/_drlab/revoke" and method == "POST":
        revoked = keys.revoke_secret(bearer) if bearer else None
        return (
            answer("200 OK", {"revoked": revoked}) if revoked else answer("401 Unauthorized", {"error": "no such key"})
        )
    if not hmac.compare_digest(bearer.encode(), keys.admin[1].encode()):
        return answer("403 Forbidden", {"error": "the lab's admin secret is needed"})
    if path.startswith("/_drlab/keys/") and method == "PUT":
        access_key = path.removeprefix("/_drlab/keys/")
        try:
            secret = json.loads(get_input_stream(environ).read() or b"{}").get("secret_key", "")
        except ValueError:
            secret = ""
        if not access_key or len(secret) < 20 or access_key == keys.admin[0]:
            return answer("400 Bad Request", {"error": "need an access key id and a secret_key of 20+ characters"})
        keys.add(access_key, secret)
        return answer("200 OK", {"access_key": access_key})
    if path == "/_drlab/keys" and method == "GET":
        return answer("200 OK", {"keys": sorted(keys.keys)})
    return answer("404 Not Found", {"error": "not found"})


class Authenticator:
    def __init__(self, keys: KeyStore):
        self.keys = keys

    def secret_for(self, key_id: str) -> str:
        secret = self.keys.secret_of(key_id)
        if secret is None:
            raise S3Error(403, "InvalidAccessKeyId", NO_SUCH_KEY_ID)
        return secret

    def check(self, environ: dict, body: bytes) -> None:
        raw_uri = environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO", "/")
        raw_path, _, raw_query = raw_uri.partition("?")
        auth = environ.get("HTTP_AUTHORIZATION")
        query_names = {unquote(p.partition("=")[0]) for p in raw_query.split("&")} if raw_query else set()
        if (auth and auth.startswith("AWS ")) or "AWSAccessKeyId" in query_names:
            self.check_v2(environ, raw_path, raw_query, auth)
            return
        if auth:
            if not auth.startswith("AWS4-HMAC-SHA256 "):
                raise S3Error(400, "InvalidArgument", "Unsupported Authorization Type")
            fields = dict(item.strip().partition("=")[::2] for item in auth[len("AWS4-HMAC-SHA256 ") :].split(","))
            credential, signed = fields.get("Credential"), fields.get("SignedHeaders")
            signature = fields.get("Signature")
            amz_date = environ.get("HTTP_X_AMZ_DATE") or ""
            payload = environ.get("HTTP_X_AMZ_CONTENT_SHA256")
            if not (credential and signed and signature and amz_date):
                raise S3Error(400, "AuthorizationHeaderMalformed", "the authorization header is malformed")
            if payload is None:
                raise S3Error(400, "InvalidRequest", "missing required header for this request: x-amz-content-sha256")
            if HEX64.fullmatch(payload) and hashlib.sha256(body).hexdigest() != payload:
                raise S3Error(
                    400, "XAmzContentSHA256Mismatch", "the provided 'x-amz-content-sha256' header does not match"
                )
            query = _canonical_query(raw_query)
            expires = None
        elif "X-Amz-Signature" in query_names:
            params = {unquote(k): unquote(v) for k, _, v in (p.partition("=") for p in raw_query.split("&"))}
            if params.get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256":
                raise S3Error(400, "AuthorizationQueryParametersError", "X-Amz-Algorithm must be AWS4-HMAC-SHA256")
            credential, signed = params.get("X-Amz-Credential"), params.get("X-Amz-SignedHeaders")
            signature, amz_date = params.get("X-Amz-Signature"), params.get("X-Amz-Date") or ""
            if not (credential and signed and signature and amz_date):
                raise S3Error(400, "AuthorizationQueryParametersError", "presigned URL parameters are missing")
            payload = params.get("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD")
            query = _canonical_query(raw_query, drop="X-Amz-Signature")
            expires = int(params.get("X-Amz-Expires", "604800"))
        else:
            raise S3Error(403, "AccessDenied", "Access Denied (anonymous requests are not allowed here)")

        key_id, _, scope = credential.partition("/")
        secret_key = self.secret_for(key_id)
        try:
            date, region, service, terminator = scope.split("/")
        except ValueError as exc:
            raise S3Error(400, "AuthorizationHeaderMalformed", f"bad credential scope {scope!r}") from exc
        if terminator != "aws4_request" or service != "s3" or not amz_date.startswith(date):
            raise S3Error(400, "AuthorizationHeaderMalformed", f"bad credential scope {scope!r}")
        signed_at, now = _parse_amz_date(amz_date), time.time()
        if expires is None and abs(now - signed_at) > MAX_SKEW:
            raise S3Error(403, "RequestTimeTooSkewed", SKEWED)
        if expires is not None and not (signed_at - MAX_SKEW <= now <= signed_at + expires):
            raise S3Error(403, "AccessDenied", "Request has expired")

        signed_names = signed.split(";")
        headers = _canonical_headers(environ, signed_names)
        key = _signing_key(secret_key, date, region, service)
        # S3 signs the path as sent (no normalisation); accept the once-encoded form too, as S3 does.
        candidates = dict.fromkeys([raw_path, _uri_encode(unquote(raw_path), safe="/-_.~")])
        for path in candidates:
            canonical = "\n".join([environ["REQUEST_METHOD"], path, query, headers, signed, payload])
            to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
            expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
            if hmac.compare_digest(expected, signature):
                return
        raise S3Error(
            403,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. "
            "Check your key and signing method.",
        )

    def check_v2(self, environ: dict, raw_path: str, raw_query: str, auth: str | None) -> None:
        """AWS Signature Version 2, which boto3 still uses by default for presigned S3 URLs."""
        params = {}
        for part in raw_query.split("&") if raw_query else []:
            name, _, value = part.partition("=")
            params[unquote(name)] = unquote(value)
        if auth:
            key_id, _, signature = auth[len("AWS ") :].partition(":")
            date = "" if "HTTP_X_AMZ_DATE" in environ else environ.get("HTTP_DATE", "")
            when = environ.get("HTTP_X_AMZ_DATE") or date
            try:
                signed_at = parsedate_to_datetime(when).timestamp()
            except (TypeError, ValueError) as exc:
                raise S3Error(403, "AccessDenied", "a valid Date or x-amz-date header is required") from exc
            if abs(time.time() - signed_at) > MAX_SKEW:
                raise S3Error(403, "RequestTimeTooSkewed", SKEWED)
        else:
            key_id, signature = params.get("AWSAccessKeyId", ""), params.get("Signature", "")
            date = params.get("Expires", "")
            if not date.isdigit() or int(date) < time.time():
                raise S3Error(403, "AccessDenied", "Request has expired")
        secret_key = self.secret_for(key_id)
        amz = {}
        for name, value in environ.items():
            if name.startswith("HTTP_X_AMZ_"):
                amz[name[5:].lower().replace("_", "-")] = ",".join(v.strip() for v in value.split(","))
        resource = raw_path
        sub = sorted(
            (name, value, "=" in part)
            for part in (raw_query.split("&") if raw_query else [])
            for name, value in [(unquote(part.partition("=")[0]), unquote(part.partition("=")[2]))]
            if name in HmacV1Auth.QSAOfInterest
        )
        if sub:
            resource += "?" + "&".join(f"{n}={v}" if has_value else n for n, v, has_value in sub)
        to_sign = "\n".join(
            [
                environ["REQUEST_METHOD"],
                environ.get("HTTP_CONTENT_MD5", ""),
                environ.get("CONTENT_TYPE", ""),
                date,
                *[f"{name}:{amz[name]}" for name in sorted(amz)],
                resource,
            ]
        )
        digest = hmac.new(secret_key.encode(), to_sign.encode(), hashlib.sha1).digest()
        expected = base64.b64encode(digest).decode()
        if not hmac.compare_digest(expected, signature):
            raise S3Error(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided. "
                "Check your key and signing method.",
            )


# --------------------------------------------------------------------------------------------------------------
# The WSGI application
# --------------------------------------------------------------------------------------------------------------
def _error_response(environ: dict, start_response, err: S3Error) -> list[bytes]:
    request_id = uuid.uuid4().hex[:16].upper()
    resource = environ.get("PATH_INFO", "/")
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{err.code}</Code><Message>{escape(err.message)}</Message>"
        f"<Resource>{escape(resource)}</Resource><RequestId>{request_id}</RequestId></Error>"
    ).encode()
    reason = {400: "Bad Request", 403: "Forbidden"}.get(err.status, "Error")
    start_response(
        f"{err.status} {reason}",
        [("Content-Type", "application/xml"), ("Content-Length", str(len(body))), ("x-amz-request-id", request_id)],
    )
    return [] if environ["REQUEST_METHOD"] == "HEAD" else [body]


class OffsiteApp:
    def __init__(self, store: Store, auth: Authenticator):
        self.store, self.auth = store, auth
        self.s3 = create_backend_app("s3")
        self.lock = threading.Lock()

    def __call__(self, environ: dict, start_response):
        method = environ["REQUEST_METHOD"]
        if environ.get("PATH_INFO", "").startswith("/_drlab/"):
            return admin_app(environ, start_response, self.auth.keys)
        body = get_input_stream(environ).read()
        environ["wsgi.input"] = io.BytesIO(body)
        environ["wsgi.input_terminated"] = True
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        if method != "OPTIONS":
            try:
                self.auth.check(environ, body)
                verify_checksums(environ, body)
            except S3Error as err:
                LOG.info("%s %s -> %s %s", method, environ.get("PATH_INFO"), err.status, err.code)
                return _error_response(environ, start_response, err)
        captured: dict = {}

        def capture(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers
            return lambda data: captured.setdefault("written", []).append(data)

        with self.lock:
            try:
                result = self.s3(environ, capture)
                try:
                    chunks = captured.pop("written", []) + list(result)
                finally:
                    if hasattr(result, "close"):
                        result.close()
            finally:
                if method in MUTATING:  # even after an error: moto may have changed something before it
                    self.store.snapshot()
        start_response(captured["status"], captured["headers"])
        return chunks


def sd_notify(message: str) -> None:
    """Tell systemd (Type=notify) that the port is open, so `systemctl restart` returns only when it is."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(message.encode(), address)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("DRLAB_S3_HOST", "0.0.0.0"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("DRLAB_S3_PORT", "9000")))
    data_dir = Path(os.environ.get("DRLAB_S3_DATA", "/var/lib/drlab-offsite"))
    parser.add_argument("--data-dir", type=Path, default=data_dir)
    parser.add_argument("--access-key", default=os.environ.get("DRLAB_S3_ACCESS_KEY", LAB_ACCESS_KEY))
    parser.add_argument("--secret-key", default=os.environ.get("DRLAB_S3_SECRET_KEY", LAB_SECRET_KEY))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)

    store = Store(args.data_dir)
    store.load()
    app = OffsiteApp(store, Authenticator(KeyStore(args.data_dir, args.access_key, args.secret_key)))
    server = make_server(args.host, args.port, app, threaded=True, request_handler=MotoRequestHandler)

    def stop(signum, frame):  # every answered write is already on disk: just stop serving
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    LOG.info("serving S3 on http://%s:%d (data in %s)", args.host, args.port, args.data_dir)
    sd_notify("READY=1")
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    server.server_close()
    LOG.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
