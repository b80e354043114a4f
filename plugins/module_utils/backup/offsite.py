"""Off-site copies of backup sets in S3-compatible storage (AWS S3, Backblaze B2, Google Cloud Storage, the lab).

Shared by the Ansible modules (mojorust.dr.offsite_push, offsite_fetch) and the host's `mojorust-backup
offsite-push` (the backup role deploys this package). Only encrypted sets leave the host: what is
pushed are the four files of a published set (archive of encrypted members, .sha256, .sig, summary), never
anything else.

Remote layout: s3://<bucket>/<prefix>/<set id>/<the set's four file names>. The summary (.json) is uploaded last,
so a set whose summary is there is complete. Every object is uploaded with a SHA-256 checksum the server verifies,
and afterwards its checksum as the server reports it is compared with one computed here from the local file
(for a multipart object, S3's composite: sha256 of the parts' sha256s, then -<parts>); an interrupted multipart
upload is resumed, parts already there with the right checksum are kept.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
from dataclasses import dataclass
from datetime import datetime

from .config import BackupError, Config, now_utc, settings_from_dict
from .sets import SetInfo, list_sets, parse_id, retention_plan, set_files
from .status import send_alert, write_status

UPLOAD_ORDER = ("tar", "sha256", "sig", "summary")  # the summary last: its presence marks a complete copy
MIB = 1 << 20


@dataclass
class OffsiteConfig:
    bucket: str
    prefix: str = "mojorust"
    endpoint_url: str = ""
    region: str = "us-east-1"
    access_key_id: str = ""
    secret_access_key: str = ""
    part_size_mib: int = 64
    keep_days: int = 90
    min_keep: int = 7
    attempts: int = 5
    backoff_seconds: float = 2.0

    @classmethod
    def from_dict(cls, data: dict) -> OffsiteConfig:
        if not data.get("bucket"):
            raise BackupError("config", "no off-site bucket: set offsite_bucket")
        if int(data.get("attempts", 1)) < 1:
            raise BackupError("config", "off-site attempts must be 1 or more")
        return settings_from_dict(cls, data, "off-site setting")

    @property
    def part_size(self) -> int:
        return max(5, self.part_size_mib) * MIB  # S3's smallest part is 5 MiB

    def key(self, set_id: str, name: str) -> str:
        return f"{self.prefix.strip('/')}/{set_id}/{name}" if self.prefix.strip("/") else f"{set_id}/{name}"

    def where(self) -> str:
        return f"s3://{self.bucket}/{self.prefix.strip('/')}" + (
            f" at {self.endpoint_url}" if self.endpoint_url else ""
        )


def client(cfg: OffsiteConfig):
    import boto3
    from botocore.config import Config

    options = {"retries": {"max_attempts": 3, "mode": "standard"}, "connect_timeout": 5, "read_timeout": 120}
    if cfg.endpoint_url:
        options["s3"] = {"addressing_style": "path"}
    return boto3.client(
        "s3",
        endpoint_url=cfg.endpoint_url or None,
        region_name=cfg.region,
        aws_access_key_id=cfg.access_key_id or None,
        aws_secret_access_key=cfg.secret_access_key or None,
        config=Config(**options),
    )


# ------------------------------------------------------------------------------------------------- checksums
def b64_sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def parts_of(path: str, part_size: int):
    with open(path, "rb") as handle:
        yield from iter(lambda: handle.read(part_size), b"")


def expected_checksum(path: str, part_size: int) -> str:
    """The ChecksumSHA256 S3 reports for this file uploaded with this part size (composite for multipart)."""
    if os.path.getsize(path) <= part_size:
        digest = hashlib.sha256()
        for chunk in parts_of(path, MIB):
            digest.update(chunk)
        return base64.b64encode(digest.digest()).decode()
    digests = [hashlib.sha256(chunk).digest() for chunk in parts_of(path, part_size)]
    return f"{base64.b64encode(hashlib.sha256(b''.join(digests)).digest()).decode()}-{len(digests)}"


def remote_checksum(s3, cfg: OffsiteConfig, key: str, version_id: str | None = None) -> str | None:
    from botocore.exceptions import ClientError

    try:
        extra = {"VersionId": version_id} if version_id else {}
        head = s3.head_object(Bucket=cfg.bucket, Key=key, ChecksumMode="ENABLED", **extra)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    return head.get("ChecksumSHA256")


def ensure_bucket(
    s3, cfg: OffsiteConfig, create: bool, versioning: bool, object_lock_days: int, object_lock_mode: str = "COMPLIANCE"
) -> list[str]:
    """Bucket there with versioning and a default object lock as asked; what was changed. COMPLIANCE (the default)
    cannot be bypassed by any key, the host's included; GOVERNANCE yields to a key with s3:BypassGovernanceRetention."""
    from botocore.exceptions import ClientError

    changes = []
    try:
        s3.head_bucket(Bucket=cfg.bucket)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound") or not create:
            raise BackupError(
                "bucket", f"bucket {cfg.bucket} is not reachable ({error}); create it or check the keys"
            ) from None
        kwargs = {"Bucket": cfg.bucket, "ObjectLockEnabledForBucket": object_lock_days > 0}
        if cfg.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": cfg.region}
        s3.create_bucket(**kwargs)
        changes.append("created")
    wants_versions = versioning or object_lock_days > 0
    if wants_versions and s3.get_bucket_versioning(Bucket=cfg.bucket).get("Status") != "Enabled":
        s3.put_bucket_versioning(Bucket=cfg.bucket, VersioningConfiguration={"Status": "Enabled"})
        changes.append("versioning enabled")
    if object_lock_days > 0:
        rule = {"DefaultRetention": {"Mode": object_lock_mode, "Days": object_lock_days}}
        try:
            current = s3.get_object_lock_configuration(Bucket=cfg.bucket)["ObjectLockConfiguration"].get("Rule")
        except ClientError:
            current = None
        if current != rule:
            s3.put_object_lock_configuration(
                Bucket=cfg.bucket, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled", "Rule": rule}
            )
            changes.append(f"object lock {object_lock_mode} {object_lock_days} days")
    return changes


# --------------------------------------------------------------------------------------------------- upload
def upload(s3, cfg: OffsiteConfig, path: str, key: str, progress) -> None:
    size = os.path.getsize(path)
    if size <= cfg.part_size:
        with open(path, "rb") as body:
            s3.put_object(Bucket=cfg.bucket, Key=key, Body=body, ChecksumAlgorithm="SHA256")
        return
    upload_id, done = _resumable_upload(s3, cfg, key)
    parts = []
    for number, chunk in enumerate(parts_of(path, cfg.part_size), 1):
        checksum = b64_sha256(chunk)
        if done.get(number, {}).get("ChecksumSHA256") == checksum:
            parts.append({"PartNumber": number, "ETag": done[number]["ETag"], "ChecksumSHA256": checksum})
            continue
        answer = s3.upload_part(
            Bucket=cfg.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=chunk, ChecksumAlgorithm="SHA256"
        )
        parts.append(
            {"PartNumber": number, "ETag": answer["ETag"], "ChecksumSHA256": answer.get("ChecksumSHA256", checksum)}
        )
        progress(f"  {key}: part {number} of {-(-size // cfg.part_size)}")
    s3.complete_multipart_upload(Bucket=cfg.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts})


def _resumable_upload(s3, cfg: OffsiteConfig, key: str) -> tuple[str, dict]:
    """An unfinished upload of this key to resume (with its parts), or a new one."""
    uploads = s3.list_multipart_uploads(Bucket=cfg.bucket, Prefix=key).get("Uploads", [])
    mine = sorted((u for u in uploads if u["Key"] == key), key=lambda u: u["Initiated"], reverse=True)
    # Older abandoned uploads of this key are aborted: the provider bills their parts until then.
    for stale in mine[1:]:
        s3.abort_multipart_upload(Bucket=cfg.bucket, Key=key, UploadId=stale["UploadId"])
    if mine:
        done = {}
        for page in s3.get_paginator("list_parts").paginate(Bucket=cfg.bucket, Key=key, UploadId=mine[0]["UploadId"]):
            for part in page.get("Parts", []):
                done[part["PartNumber"]] = part
        return mine[0]["UploadId"], done
    created = s3.create_multipart_upload(Bucket=cfg.bucket, Key=key, ChecksumAlgorithm="SHA256")
    return created["UploadId"], {}


def push_set(s3, cfg: OffsiteConfig, set_info: SetInfo, progress) -> dict:
    """Upload what is missing of one set, verify every object; {'id', 'uploaded', 'bytes'}."""
    names = set_files(set_info.id)
    uploaded, total = [], 0
    for kind in UPLOAD_ORDER:
        path = os.path.join(set_info.path, names[kind])
        key = cfg.key(set_info.id, names[kind])
        expected = expected_checksum(path, cfg.part_size)
        if remote_checksum(s3, cfg, key) == expected:
            continue
        progress(f"uploading {key} ({os.path.getsize(path)} bytes)")
        upload(s3, cfg, path, key, progress)
        actual = remote_checksum(s3, cfg, key)
        if actual != expected:
            raise BackupError(
                "verify",
                f"s3://{cfg.bucket}/{key} has checksum {actual}, the local file {expected}: the copy is not the set; "
                "it will be uploaded again on the next run",
            )
        uploaded.append(names[kind])
        total += os.path.getsize(path)
    return {"id": set_info.id, "uploaded": uploaded, "bytes": total}


# ------------------------------------------------------------------------------------------------ listing
def remote_versions(s3, cfg: OffsiteConfig, prefix: str) -> tuple[dict[str, list[dict]], list[dict]]:
    """Every stored version of every key under prefix, oldest first (an unversioned bucket has one, 'null'), and the
    delete markers. A delete without a version id only adds a marker in a versioned bucket: the versions are there."""
    versions: dict[str, list[dict]] = {}
    markers: list[dict] = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=cfg.bucket, Prefix=prefix):
        for version in page.get("Versions", []):
            versions.setdefault(version["Key"], []).append(version)
        markers += page.get("DeleteMarkers", [])
    for listed in versions.values():
        listed.reverse()  # S3 lists each key's versions newest first
    return versions, markers


def remote_sets(s3, cfg: OffsiteConfig) -> list[SetInfo]:
    """Complete sets in the bucket (a stored version of each of the four files), oldest first. A set hidden by a
    delete marker (someone deleted it by key, as a stolen key can) is still there, and still listed."""
    prefix = f"{cfg.prefix.strip('/')}/" if cfg.prefix.strip("/") else ""
    versions, _markers = remote_versions(s3, cfg, prefix)
    found: dict[str, dict[str, int]] = {}
    for key, listed in versions.items():
        set_id, _slash, name = key[len(prefix) :].partition("/")
        found.setdefault(set_id, {})[name] = listed[0]["Size"]
    sets = []
    for set_id, names in sorted(found.items()):
        try:
            created = parse_id(set_id)
        except ValueError:
            continue
        wanted = set_files(set_id)
        if all(n in names for n in wanted.values()):
            sets.append(
                SetInfo(
                    id=set_id,
                    path=f"s3://{cfg.bucket}/{cfg.key(set_id, '')}",
                    created_at=created.isoformat(),
                    size=names[wanted["tar"]],
                    sha256="",
                    good=True,
                )
            )
    return sets


def delete_set(s3, cfg: OffsiteConfig, set_id: str) -> list[str]:
    """Delete a set for good: every version of each of its objects and their delete markers, by version id (a delete
    by key would only add a marker in a versioned bucket). Returns the keys the bucket refused (object lock)."""
    versions, markers = remote_versions(s3, cfg, cfg.key(set_id, ""))
    targets = [{"Key": v["Key"], "VersionId": v["VersionId"]} for listed in versions.values() for v in listed]
    targets += [{"Key": m["Key"], "VersionId": m["VersionId"]} for m in markers]
    refused: list[str] = []
    for start in range(0, len(targets), 1000):  # S3 deletes at most 1000 per request
        answer = s3.delete_objects(Bucket=cfg.bucket, Delete={"Objects": targets[start : start + 1000], "Quiet": True})
        refused += [e["Key"] for e in answer.get("Errors", [])]
    return sorted(set(refused))


# ------------------------------------------------------------------------------------------------- push all
def _transient(error: Exception) -> bool:
    from botocore.exceptions import ClientError, ConnectionError, EndpointConnectionError, ReadTimeoutError

    if isinstance(error, EndpointConnectionError | ConnectionError | ReadTimeoutError):
        return True
    if isinstance(error, ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return status >= 500 or error.response.get("Error", {}).get("Code") in ("SlowDown", "RequestTimeout")
    return False


def push_all(cfg: OffsiteConfig, backup: Config, progress=None, now: datetime | None = None, sleep=time.sleep):
    """Push every good local set that is not complete off-site yet, then apply off-site retention.

    Transient errors (endpoint down, 5xx) are retried with exponential backoff; when the attempts are used up the
    run fails with an alert and the local sets untouched, and nothing is deleted off-site.
    """
    progress = progress or (lambda message: None)
    now = now or now_utc()
    started = time.monotonic()
    local = [s for s in list_sets(backup.backup_dir) if s.good]
    last_error: Exception | None = None
    for attempt in range(1, cfg.attempts + 1):
        try:
            s3 = client(cfg)
            there = {s.id for s in remote_sets(s3, cfg)}
            # Newest first: the most valuable copy lands first. A set half-uploaded by an earlier run is resumed.
            pushed = [push_set(s3, cfg, s, progress) for s in reversed(local) if s.id not in there]
            keep, delete = retention_plan(remote_sets(s3, cfg), now, cfg.keep_days, cfg.min_keep, True)
            locked = {set_id: delete_set(s3, cfg, set_id) for set_id in delete}
            result = {
                "pushed": pushed,
                "remote_sets": keep,
                "deleted": [i for i, refused in locked.items() if not refused],
                "kept_by_object_lock": [i for i, refused in locked.items() if refused],
                "attempts": attempt,
                "duration_seconds": round(time.monotonic() - started, 3),
            }
            write_status(
                backup,
                {
                    "offsite_last_run_at": now.isoformat(),
                    "offsite_last_result": "ok",
                    "offsite_last_error": "",
                    "offsite_last_success_at": now.isoformat(),
                    "offsite_newest_id": keep[-1] if keep else "",
                },
            )
            return result
        except BackupError as error:  # a copy that does not verify: report it like any failed run, no retry
            last_error = error
            break
        except Exception as error:  # boto3/botocore errors: transient ones are retried, others end the run
            last_error = error
            if not _transient(error) or attempt == cfg.attempts:
                break
            wait = cfg.backoff_seconds * 2 ** (attempt - 1)
            progress(f"attempt {attempt} failed ({type(error).__name__}); retrying in {wait:.0f} s")
            sleep(wait)
    reason = last_error.message if isinstance(last_error, BackupError) else f"{type(last_error).__name__}: {last_error}"
    message = (
        f"off-site push to {cfg.where()} failed after {attempt} attempt(s): {reason}. "
        "The local sets are untouched and nothing was deleted off-site; the next run pushes what is missing"
    )
    # The alert first: a status file that cannot be written (a full disk) must not swallow it.
    note = send_alert(backup, f"OFF-SITE PUSH FAILED on {backup.host}: {message}")
    try:
        write_status(
            backup,
            {"offsite_last_run_at": now.isoformat(), "offsite_last_result": "failed", "offsite_last_error": message},
        )
    except OSError as error:
        note = "; ".join(filter(None, [note, f"status file not written: {error.strerror}"]))
    check = last_error.check if isinstance(last_error, BackupError) else "offsite"
    raise BackupError(check, message + (f" ({note})" if note else ""))


# --------------------------------------------------------------------------------------------------- fetch
def fetch_set(cfg: OffsiteConfig, set_id: str, dest_dir: str, progress=None, check=None) -> SetInfo:
    """Download a complete set (an id or 'latest') into dest_dir/<id>/, each file checked against the bucket's
    checksum; returns it as a local SetInfo, ready for verify.verify_set. See fetch_good_set for `check`."""
    return fetch_good_set(cfg, set_id, dest_dir, progress, check)[0]


def fetch_good_set(
    cfg: OffsiteConfig, set_id: str, dest_dir: str, progress=None, check=None
) -> tuple[SetInfo, list[dict]]:
    """Like fetch_set, and `check(set_info)` (raising BackupError) runs on each download. With 'latest', a set that
    fails it is marked BAD locally and the next older one is tried, so the newest *good* set is returned with the
    list of those skipped ({id, check, message}); a chosen id that fails raises. The bucket is never changed."""
    progress = progress or (lambda message: None)
    s3 = client(cfg)
    sets = remote_sets(s3, cfg)
    if not sets:
        raise BackupError("select", f"no complete set in {cfg.where()}; run playbooks/offsite.yml on the bot host")
    if set_id == "latest":
        candidates = list(reversed(sets))
    else:
        candidates = [s for s in sets if s.id == set_id]
        if not candidates:
            newest = ", ".join(s.id for s in sets[-10:])
            raise BackupError("select", f"no complete set {set_id!r} in {cfg.where()}; the newest are: {newest}")
    skipped: list[dict] = []
    for chosen in candidates:
        target = os.path.join(dest_dir, chosen.id)
        os.makedirs(target, mode=0o700, exist_ok=True)
        versions, _markers = remote_versions(s3, cfg, cfg.key(chosen.id, ""))
        for name in set_files(chosen.id).values():
            key = cfg.key(chosen.id, name)
            path = os.path.join(target, name)
            # The first version written is the set's: a later one (an overwrite with a stolen key) is not taken.
            version = versions[key][0]["VersionId"]
            progress(f"downloading {key} (version {version})")
            s3.download_file(cfg.bucket, key, path, ExtraArgs={"VersionId": version} if version != "null" else None)
            remote = remote_checksum(s3, cfg, key, version if version != "null" else None)
            local = expected_checksum(path, cfg.part_size)
            # A multipart object uploaded with another part size cannot be compared here; the set's own sha256
            # check (backup_verify) still covers its archive.
            if remote and remote != local and "-" not in remote:
                raise BackupError(
                    "download", f"{name} downloaded with checksum {local}, the bucket says {remote}; retry"
                )
        got = next(s for s in list_sets(dest_dir) if s.id == chosen.id)
        if check is None:
            return got, skipped
        try:
            check(got)
            return got, skipped
        except BackupError as error:
            if set_id != "latest":
                raise
            with open(os.path.join(target, "BAD"), "w", encoding="utf-8") as handle:
                handle.write(f"{error.check}: {error.message}\n")
            skipped.append({"id": chosen.id, "check": error.check, "message": error.message})
            progress(f"set {chosen.id} failed {error.check}; trying the next older one")
    tried = "; ".join(f"{s['id']}: {s['check']} ({s['message']})" for s in skipped)
    raise BackupError("select", f"no set in {cfg.where()} passes its checks: {tried}")
