"""Backup sets of the MojoRust bot: create, list, verify, restore, retention, off-site copies.

One implementation for the Ansible modules (mojorust.dr.backup_set, backup_verify, backup_restore, offsite_push,
offsite_fetch, ...) and the `mojorust-backup` command the systemd timers run on the host (the backup role deploys
this package with ../wallet.py). Standard library only, plus psycopg2 for the database, boto3 for the off-site copy,
and the gpg, zstd, pg_dump and pg_restore programs. Modules import what they use, lowest first, with no loop:

  config    settings (config.json), BackupError, the bot's .env
  sets      a set's layout on disk, listing, choosing a set (resolve_set), retention
  pipeline  processes piped together, hashing copies, durable writes
  gpg       private keyrings, encryption, signatures that bind a set's id and host
  pgstats   PostgreSQL connections, each table's row count and checksum
  hostdir   the backup directory: its owner, its lock, the backup user's privileges
  status    the status file, Prometheus metrics, staleness, Telegram alerts
  verify    the plan's checks, through one open file (OpenedSet)
  restore   files and database from a verified set
  create    making, verifying and publishing a set
  offsite   copies in S3-compatible storage
  cli       the host command, the only module that joins create and offsite

A set is a directory <backup_dir>/<id>/ (id: UTC timestamp, 20261125T020000Z) holding
  mojorust-backup-<id>.tar          the set: an uncompressed tar of three encrypted members
      manifest.json.gpg             what the set holds (sizes, sha256, row counts, checksums, fingerprints)
      db.dump.zst.gpg               pg_dump custom format | zstd | gpg, streamed (no plaintext on disk)
      files.tar.zst.gpg             config/ (with its git history), .env, wallet, portfolio state, recent logs
  mojorust-backup-<id>.tar.sha256   `sha256sum -c` format
  mojorust-backup-<id>.tar.sig      detached signature by the host's signing key
  mojorust-backup-<id>.json         plaintext summary (id, created_at, size, sha256, recipients, signer)
It is written as <backup_dir>/.partial-<id>/ and renamed into place only when complete and verified.
"""
