"""Off-site logic without a network: checksums as S3 computes them, resumed uploads, retries, retention."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from datetime import UTC, datetime, timedelta

import pytest
from ansible_collections.mojorust.dr.plugins.module_utils.backup import config, offsite, sets
from botocore.exceptions import ClientError, EndpointConnectionError

MIB = 1 << 20


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


class FakeS3:
    """Just enough of an S3 client: object versions with SHA-256 checksums (a versioned bucket, or not), delete
    markers, object lock, multipart uploads, listing, deleting."""

    def __init__(self, fail_first: int = 0, versioned: bool = True):
        self.versions: dict[str, list[dict]] = {}  # key -> versions, oldest first (None data = a delete marker)
        self.uploads: dict[str, dict] = {}
        self.put_parts: list[int] = []
        self.fail_first = fail_first
        self.versioned = versioned
        self.locked = False  # a default retention on every version written
        self.serial = 0

    def _maybe_fail(self):
        if self.fail_first:
            self.fail_first -= 1
            raise EndpointConnectionError(endpoint_url="http://offsite:9000")

    def _store(self, key, data, checksum):
        self.serial += 1
        version = {"VersionId": f"v{self.serial}" if self.versioned else "null", "data": data,
                   "checksum": checksum, "locked": self.locked}  # fmt: skip
        if not self.versioned:
            self.versions[key] = []
        self.versions.setdefault(key, []).append(version)

    @property
    def objects(self) -> dict[str, tuple[bytes, str]]:
        """What a plain GET sees: the latest version of each key that is not a delete marker."""
        return {
            k: (v[-1]["data"], v[-1]["checksum"]) for k, v in self.versions.items() if v and v[-1]["data"] is not None
        }

    def _version(self, key, version_id=None):
        listed = self.versions.get(key, [])
        if version_id is None:
            return listed[-1] if listed and listed[-1]["data"] is not None else None
        return next((v for v in listed if v["VersionId"] == version_id and v["data"] is not None), None)

    def head_object(self, Bucket, Key, ChecksumMode=None, VersionId=None):
        self._maybe_fail()
        version = self._version(Key, VersionId)
        if version is None:
            raise ClientError({"Error": {"Code": "404"}}, "HeadObject")
        return {"ChecksumSHA256": version["checksum"]}

    def download_file(self, Bucket, Key, Filename, ExtraArgs=None):
        version = self._version(Key, (ExtraArgs or {}).get("VersionId"))
        with open(Filename, "wb") as handle:
            handle.write(version["data"])

    def put_object(self, Bucket, Key, Body, ChecksumAlgorithm):
        data = Body.read() if hasattr(Body, "read") else Body
        self._store(Key, data, b64(hashlib.sha256(data).digest()))

    def delete_object(self, Bucket, Key):
        """By key, as a stolen key can: a marker in a versioned bucket."""
        if self.versioned:
            self.serial += 1
            self.versions.setdefault(Key, []).append({"VersionId": f"m{self.serial}", "data": None, "locked": False})
        else:
            self.versions.pop(Key, None)

    def list_multipart_uploads(self, Bucket, Prefix):
        return {
            "Uploads": [
                {"Key": u["key"], "UploadId": i, "Initiated": n} for n, (i, u) in enumerate(self.uploads.items())
            ]
        }

    def abort_multipart_upload(self, Bucket, Key, UploadId):
        self.uploads.pop(UploadId)

    def create_multipart_upload(self, Bucket, Key, ChecksumAlgorithm):
        upload_id = f"u{len(self.uploads)}"
        self.uploads[upload_id] = {"key": Key, "parts": {}}
        return {"UploadId": upload_id}

    def upload_part(self, Bucket, Key, UploadId, PartNumber, Body, ChecksumAlgorithm):
        self.put_parts.append(PartNumber)
        checksum = b64(hashlib.sha256(Body).digest())
        self.uploads[UploadId]["parts"][PartNumber] = (Body, checksum)
        return {"ETag": f'"e{PartNumber}"', "ChecksumSHA256": checksum}

    def complete_multipart_upload(self, Bucket, Key, UploadId, MultipartUpload):
        parts = self.uploads.pop(UploadId)["parts"]
        numbers = [p["PartNumber"] for p in MultipartUpload["Parts"]]
        data = b"".join(parts[n][0] for n in numbers)
        composite = hashlib.sha256(b"".join(base64.b64decode(parts[n][1]) for n in numbers)).digest()
        self._store(Key, data, f"{b64(composite)}-{len(numbers)}")

    def delete_objects(self, Bucket, Delete):
        errors = []
        for obj in Delete["Objects"]:
            if "VersionId" not in obj:
                self.delete_object(Bucket, obj["Key"])
                continue
            listed = self.versions.get(obj["Key"], [])
            version = next((v for v in listed if v["VersionId"] == obj["VersionId"]), None)
            if version is not None and version["locked"]:
                errors.append({"Key": obj["Key"], "VersionId": obj["VersionId"], "Code": "AccessDenied"})
            elif version is not None:
                listed.remove(version)
                if not listed:
                    del self.versions[obj["Key"]]
        return {"Errors": errors} if errors else {}

    def get_paginator(self, name):
        fake = self

        class Paginator:
            def paginate(self, Bucket, Prefix="", Key=None, UploadId=None):
                if name == "list_parts":
                    parts = fake.uploads[UploadId]["parts"]
                    yield {
                        "Parts": [
                            {"PartNumber": n, "ETag": f'"e{n}"', "ChecksumSHA256": c} for n, (_, c) in parts.items()
                        ]
                    }
                    return
                assert name == "list_object_versions", name
                fake._maybe_fail()
                versions, markers = [], []
                for key, listed in sorted(fake.versions.items()):
                    if not key.startswith(Prefix):
                        continue
                    for version in reversed(listed):  # newest first, as S3 lists them
                        entry = {"Key": key, "VersionId": version["VersionId"], "IsLatest": version is listed[-1]}
                        if version["data"] is None:
                            markers.append(entry)
                        else:
                            versions.append({**entry, "Size": len(version["data"])})
                yield {"Versions": versions, "DeleteMarkers": markers}

        return Paginator()


def write_set(backup_dir, set_id: str, size: int = 1000) -> sets.SetInfo:
    path = os.path.join(backup_dir, set_id)
    os.makedirs(path)
    names = sets.set_files(set_id)
    with open(os.path.join(path, names["tar"]), "wb") as handle:
        handle.write(os.urandom(size))
    for kind in ("sha256", "sig", "summary"):
        with open(os.path.join(path, names[kind]), "w") as handle:
            handle.write(json.dumps({"id": set_id}) if kind == "summary" else kind)
    return next(s for s in sets.list_sets(backup_dir) if s.id == set_id)


@pytest.fixture
def cfg():
    return offsite.OffsiteConfig(bucket="b", prefix="mojorust", part_size_mib=5, attempts=3, backoff_seconds=1)


def test_expected_checksum_single_part_is_the_files_sha256(tmp_path):
    data = os.urandom(3000)
    path = tmp_path / "f"
    path.write_bytes(data)
    assert offsite.expected_checksum(str(path), 5 * MIB) == b64(hashlib.sha256(data).digest())


def test_expected_checksum_multipart_is_s3s_composite(tmp_path):
    data = os.urandom(11 * MIB)
    path = tmp_path / "f"
    path.write_bytes(data)
    parts = [data[i : i + 5 * MIB] for i in range(0, len(data), 5 * MIB)]
    composite = hashlib.sha256(b"".join(hashlib.sha256(p).digest() for p in parts)).digest()
    assert offsite.expected_checksum(str(path), 5 * MIB) == f"{b64(composite)}-3"


def test_push_set_uploads_the_four_files_summary_last_and_verifies(tmp_path, cfg):
    s3 = FakeS3()
    one = write_set(str(tmp_path), "20261125T020000Z")
    result = offsite.push_set(s3, cfg, one, lambda m: None)
    assert result["uploaded"][-1].endswith(".json")
    assert sorted(s3.objects) == sorted(f"mojorust/{one.id}/{n}" for n in sets.set_files(one.id).values())
    # A second push uploads nothing: every object is there with the right checksum.
    assert offsite.push_set(s3, cfg, one, lambda m: None)["uploaded"] == []


def test_an_interrupted_multipart_upload_is_resumed_keeping_good_parts(tmp_path, cfg):
    s3 = FakeS3()
    one = write_set(str(tmp_path), "20261125T020000Z", size=12 * MIB)
    tar = os.path.join(one.path, sets.set_files(one.id)["tar"])
    key = cfg.key(one.id, os.path.basename(tar))
    # An earlier run uploaded part 1 and died.
    upload_id = s3.create_multipart_upload(Bucket="b", Key=key, ChecksumAlgorithm="SHA256")["UploadId"]
    with open(tar, "rb") as handle:
        s3.upload_part(
            Bucket="b", Key=key, UploadId=upload_id, PartNumber=1, Body=handle.read(5 * MIB), ChecksumAlgorithm="SHA256"
        )
    # An even older, abandoned upload of the same key is aborted, not kept billing.
    stale = s3.create_multipart_upload(Bucket="b", Key=key, ChecksumAlgorithm="SHA256")["UploadId"]
    s3.uploads = {stale: s3.uploads.pop(stale), **s3.uploads}
    s3.put_parts.clear()
    offsite.push_set(s3, cfg, one, lambda m: None)
    assert s3.put_parts == [2, 3]
    assert s3.uploads == {}
    with open(tar, "rb") as handle:
        assert s3.objects[key][0] == handle.read()
    assert s3.objects[key][1] == offsite.expected_checksum(tar, cfg.part_size)


def test_push_all_retries_transient_errors_with_backoff(tmp_path, cfg, monkeypatch):
    s3 = FakeS3(fail_first=2)
    monkeypatch.setattr(offsite, "client", lambda _cfg: s3)
    backup = config.Config(backup_dir=str(tmp_path), alert_api_base="")
    one = write_set(str(tmp_path), config.now_utc().strftime(sets.ID_FORMAT))
    waits = []
    result = offsite.push_all(cfg, backup, sleep=waits.append)
    assert waits == [1, 2]
    assert result["attempts"] == 3 and [p["id"] for p in result["pushed"]] == [one.id]
    recorded = json.loads((tmp_path / ".status.json").read_text())
    assert recorded["offsite_last_result"] == "ok" and recorded["offsite_newest_id"] == one.id


def test_push_all_gives_up_clearly_and_keeps_everything(tmp_path, cfg, monkeypatch):
    s3 = FakeS3(fail_first=100)
    monkeypatch.setattr(offsite, "client", lambda _cfg: s3)
    backup = config.Config(backup_dir=str(tmp_path), alert_api_base="")
    one = write_set(str(tmp_path), "20261125T020000Z")
    with pytest.raises(config.BackupError) as failure:
        offsite.push_all(cfg, backup, sleep=lambda s: None)
    assert failure.value.check == "offsite"
    assert "after 3 attempt(s)" in failure.value.message
    assert "local sets are untouched" in failure.value.message
    assert os.path.exists(one.tar)
    assert json.loads((tmp_path / ".status.json").read_text())["offsite_last_result"] == "failed"


def test_push_all_applies_retention_with_a_floor(tmp_path, cfg, monkeypatch):
    s3 = FakeS3()
    monkeypatch.setattr(offsite, "client", lambda _cfg: s3)
    now = datetime(2026, 11, 25, tzinfo=UTC)
    backup = config.Config(backup_dir=str(tmp_path / "local"), alert_api_base="")
    old_dir = tmp_path / "old"
    old_ids = [(now - timedelta(days=age)).strftime(sets.ID_FORMAT) for age in range(100, 110)]
    for set_id in old_ids:
        offsite.push_set(s3, cfg, write_set(str(old_dir), set_id), lambda m: None)
    newest = write_set(backup.backup_dir, now.strftime(sets.ID_FORMAT))
    result = offsite.push_all(cfg, backup, now=now, sleep=lambda s: None)
    # The new set plus the six newest old ones stay (floor 7); the other old ones (> 90 days) go.
    assert sorted(result["deleted"]) == sorted(old_ids[6:])
    assert result["remote_sets"] == sorted([*old_ids[:6], newest.id])


def test_offsite_config_rejects_unknown_settings_and_needs_a_bucket():
    with pytest.raises(config.BackupError, match="unknown off-site setting"):
        offsite.OffsiteConfig.from_dict({"bucket": "b", "endpoint": "typo"})
    with pytest.raises(config.BackupError, match="no off-site bucket"):
        offsite.OffsiteConfig.from_dict({"bucket": ""})


def _pushed(tmp_path, cfg, s3, ids):
    local = tmp_path / "local"
    local.mkdir()
    for set_id in ids:
        offsite.push_set(s3, cfg, write_set(str(local), set_id), lambda m: None)


def test_fetch_latest_passes_over_a_newer_set_that_fails_its_check(tmp_path, cfg, monkeypatch):
    s3 = FakeS3()
    monkeypatch.setattr(offsite, "client", lambda c: s3)
    _pushed(tmp_path, cfg, s3, ["20261124T020000Z", "20261125T020000Z"])
    dest = tmp_path / "restore"

    def check(set_info):
        if set_info.id == "20261125T020000Z":
            raise offsite.BackupError("signature", "signed by an unknown key")

    got, skipped = offsite.fetch_good_set(cfg, "latest", str(dest), check=check)
    assert got.id == "20261124T020000Z"
    assert skipped == [{"id": "20261125T020000Z", "check": "signature", "message": "signed by an unknown key"}]
    # the bad copy is marked locally so nothing restores it by accident; the bucket is unchanged
    assert (dest / "20261125T020000Z" / "BAD").read_text().startswith("signature:")
    assert [s.id for s in offsite.remote_sets(s3, cfg)] == ["20261124T020000Z", "20261125T020000Z"]


def test_fetch_a_chosen_set_that_fails_its_check_raises(tmp_path, cfg, monkeypatch):
    s3 = FakeS3()
    monkeypatch.setattr(offsite, "client", lambda c: s3)
    _pushed(tmp_path, cfg, s3, ["20261124T020000Z", "20261125T020000Z"])

    def check(set_info):
        raise offsite.BackupError("sha256", "archive does not match")

    with pytest.raises(offsite.BackupError) as error:
        offsite.fetch_good_set(cfg, "20261125T020000Z", str(tmp_path / "r"), check=check)
    assert error.value.check == "sha256"


def test_fetch_latest_when_no_set_is_good_names_each_failure(tmp_path, cfg, monkeypatch):
    s3 = FakeS3()
    monkeypatch.setattr(offsite, "client", lambda c: s3)
    _pushed(tmp_path, cfg, s3, ["20261124T020000Z", "20261125T020000Z"])

    def check(set_info):
        raise offsite.BackupError("signature", f"bad {set_info.id}")

    with pytest.raises(offsite.BackupError) as error:
        offsite.fetch_good_set(cfg, "latest", str(tmp_path / "r"), check=check)
    assert "20261124T020000Z: signature" in error.value.message
    assert "20261125T020000Z: signature" in error.value.message


# --------------------------------------------------------------------------------- versions and locks (issue 15)
def _pushed_old_sets(s3, cfg, tmp_path, now, ages):
    ids = [(now - timedelta(days=age)).strftime(sets.ID_FORMAT) for age in ages]
    for set_id in ids:
        offsite.push_set(s3, cfg, write_set(str(tmp_path / "old"), set_id), lambda m: None)
    return ids


def test_retention_deletes_every_version_not_just_the_current_one(tmp_path, cfg, monkeypatch):
    """Before, a delete by key in a versioned bucket only added a delete marker: the set vanished from the listing
    while all its data stayed (and was billed), and a lock never showed in kept_by_object_lock."""
    s3 = FakeS3(versioned=True)
    monkeypatch.setattr(offsite, "client", lambda _cfg: s3)
    now = datetime(2026, 11, 25, tzinfo=UTC)
    old = _pushed_old_sets(s3, cfg, tmp_path, now, range(100, 108))
    backup = config.Config(backup_dir=str(tmp_path / "local"), alert_api_base="")
    write_set(backup.backup_dir, now.strftime(sets.ID_FORMAT))
    result = offsite.push_all(cfg, backup, now=now, sleep=lambda s: None)
    assert sorted(result["deleted"]) == sorted(old[6:]) and result["kept_by_object_lock"] == []
    for set_id in old[6:]:
        assert not [k for k in s3.versions if set_id in k], f"{set_id} left versions or markers behind"


def test_locked_versions_are_kept_and_reported(tmp_path, cfg, monkeypatch):
    s3 = FakeS3(versioned=True)
    s3.locked = True  # a default retention (COMPLIANCE) on every version
    monkeypatch.setattr(offsite, "client", lambda _cfg: s3)
    now = datetime(2026, 11, 25, tzinfo=UTC)
    old = _pushed_old_sets(s3, cfg, tmp_path, now, range(100, 108))
    backup = config.Config(backup_dir=str(tmp_path / "local"), alert_api_base="")
    write_set(backup.backup_dir, now.strftime(sets.ID_FORMAT))
    result = offsite.push_all(cfg, backup, now=now, sleep=lambda s: None)
    assert result["deleted"] == [] and sorted(result["kept_by_object_lock"]) == sorted(old[6:])
    assert all(any(set_id in k for k in s3.objects) for set_id in old)


def test_a_set_deleted_or_overwritten_by_key_is_still_listed_and_fetched_as_first_written(tmp_path, cfg, monkeypatch):
    """What a stolen key can do to a versioned bucket: a delete marker (hides the set from a plain listing) and a
    new version (replaces what a plain GET returns). The listing and the fetch read the versions."""
    s3 = FakeS3(versioned=True)
    monkeypatch.setattr(offsite, "client", lambda _cfg: s3)
    genuine = write_set(str(tmp_path / "host"), "20261125T020000Z")
    offsite.push_set(s3, cfg, genuine, lambda m: None)
    names = sets.set_files(genuine.id)
    s3.delete_object("b", cfg.key(genuine.id, names["summary"]))  # hidden from list_objects
    s3.put_object("b", cfg.key(genuine.id, names["tar"]), b"forged", "SHA256")  # a newer version
    assert [s.id for s in offsite.remote_sets(s3, cfg)] == [genuine.id]
    got = offsite.fetch_set(cfg, genuine.id, str(tmp_path / "fetched"))
    with open(got.tar, "rb") as fetched, open(genuine.tar, "rb") as original:
        assert fetched.read() == original.read()


def test_a_new_bucket_lock_is_compliance_mode_by_default(cfg):
    calls = {}

    class Bucket:
        def head_bucket(self, Bucket):
            pass

        def get_bucket_versioning(self, Bucket):
            return {"Status": "Enabled"}

        def get_object_lock_configuration(self, Bucket):
            return {"ObjectLockConfiguration": {}}

        def put_object_lock_configuration(self, Bucket, ObjectLockConfiguration):
            calls["rule"] = ObjectLockConfiguration["Rule"]

    assert offsite.ensure_bucket(Bucket(), cfg, False, True, 90) == ["object lock COMPLIANCE 90 days"]
    assert calls["rule"] == {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 90}}
