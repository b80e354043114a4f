#!/usr/bin/env bash
# One run, same data, same machine: our backup set and db_restore.yml against the recovery plan's naive
# `pg_dump | gzip | gpg` and `gpg -d | gunzip | psql`, on a database grown to about 1.5 GB in the lab's prod.
# Prints a table and writes bench/results-backup-restore-<UTC>.json. A first step towards `make bench` (issue 8);
# not a test. Usage: bench/backup_restore_vs_naive.sh [rows]   (default 10000000, about 1.5 GB)
set -euo pipefail
cd "$(dirname "$0")/.."
export CONTAINERS_CONF=$PWD/lab/containers.conf
rows=${1:-10000000}
prod=drlab-prod
in_prod() { podman exec "$prod" bash -c "$1"; }
seconds() { local start=$(date +%s.%N); "$@" >/dev/null; echo "$(date +%s.%N) - $start" | bc; }

echo "growing trading_db with bench_accounts: $rows rows of random filler"
podman exec -i "$prod" su postgres -c "psql -q -v ON_ERROR_STOP=1 -d trading_db" <<SQL
DROP TABLE IF EXISTS bench_accounts;
CREATE TABLE bench_accounts AS
  SELECT g AS aid, g % 1000 AS bid, (random() * 100000)::int AS abalance,
         md5(random()::text) || md5(random()::text) || left(md5(random()::text), 20) AS filler
  FROM generate_series(1, $rows) g;
ALTER TABLE bench_accounts ADD PRIMARY KEY (aid);
ALTER TABLE bench_accounts OWNER TO trading_user;
VACUUM ANALYZE bench_accounts;
SQL
db_bytes=$(in_prod "su postgres -c \"psql -Atc \\\"SELECT pg_database_size('trading_db')\\\"\"")
echo "trading_db is $((db_bytes / 1048576)) MiB"

# Ours: the backup set (dump + checksums + pack + zstd + encrypt + sign + verify + publish), as the timer runs it.
ours_backup=$(seconds in_prod "su tradingbot -c '/usr/local/bin/mojorust-backup create --owner bench'")
ours_set=$(in_prod "cat /home/tradingbot/backups/LAST_GOOD")
ours_bytes=$(in_prod "stat -c %s /home/tradingbot/backups/$ours_set/mojorust-backup-$ours_set.tar")

# The plan's pipeline, encrypting to the same operator key (gpg compresses again, as by default).
recipient=$(in_prod "python3 -c \"import json;print(json.load(open('/etc/mojorust-backup/config.json'))['recipients'][0])\"")
naive_backup=$(seconds in_prod "su tradingbot -c 'export PGPASSWORD=\$(grep ^DB_PASSWORD= ~/mojo-trading-bot/.env | cut -d= -f2-);
  pg_dump -h 127.0.0.1 -U trading_user trading_db | gzip | gpg --homedir ~/.config/mojorust-backup/gnupg --batch \
  --trust-model always --encrypt -r $recipient > /home/tradingbot/naive.sql.gz.gpg'")
naive_bytes=$(in_prod "stat -c %s /home/tradingbot/naive.sql.gz.gpg")

# Ours: db_restore.yml end to end from the workstation (verify, probe, stop, restore beside, swap, start, reconcile).
start=$(date +%s.%N)
.venv/bin/ansible-playbook -i inventories/lab playbooks/db_restore.yml -e backup_id="$ours_set" \
  > bench/.db_restore.log 2>&1
ours_restore=$(echo "$(date +%s.%N) - $start" | bc)
engine=$(grep -o "pg_restore [0-9.]* s" bench/.db_restore.log | head -1 | awk '{print $2}')
bot_down=$(grep -o "bot down [0-9.]* s" bench/.db_restore.log | head -1 | awk '{print $3}')

# The plan's restore into a new database, with the operator's key in a tmpfs keyring.
operator_key=$(.venv/bin/python -c "import yaml;print(yaml.safe_load(open('inventories/lab/group_vars/all/lab_secrets.yml'))['lab_secrets']['operator_key']['secret_key'])")
in_prod "rm -rf /dev/shm/bench-gnupg; mkdir -m 700 /dev/shm/bench-gnupg; chown tradingbot: /dev/shm/bench-gnupg"
printf '%s\n' "$operator_key" | podman exec -i "$prod" su tradingbot -c "gpg --homedir /dev/shm/bench-gnupg --batch --import" 2>/dev/null
in_prod "su postgres -c 'dropdb --if-exists naive_restore; createdb -O trading_user naive_restore'"
naive_restore=$(seconds in_prod "su tradingbot -c 'export PGPASSWORD=\$(grep ^DB_PASSWORD= ~/mojo-trading-bot/.env | cut -d= -f2-);
  gpg --homedir /dev/shm/bench-gnupg --batch -d /home/tradingbot/naive.sql.gz.gpg 2>/dev/null | gunzip \
  | psql -q -h 127.0.0.1 -U trading_user naive_restore'")
in_prod "gpgconf --homedir /dev/shm/bench-gnupg --kill gpg-agent 2>/dev/null; rm -rf /dev/shm/bench-gnupg /home/tradingbot/naive.sql.gz.gpg;
  su postgres -c 'dropdb naive_restore'"

# Leave the lab as it was: the bench table and the database db_restore.yml kept aside go.
kept=$(grep -o "kept as trading_db_before_[0-9a-z]*" bench/.db_restore.log | head -1 | awk '{print $3}')
in_prod "su postgres -c \"psql -q -d trading_db -c 'DROP TABLE IF EXISTS bench_accounts'\""
[ -n "$kept" ] && in_prod "su postgres -c 'dropdb --if-exists $kept'"

stamp=$(date -u +%Y%m%dT%H%M%SZ)
cat > "bench/results-backup-restore-$stamp.json" <<JSON
{"at": "$stamp", "cores": $(nproc), "database_bytes": $db_bytes, "rows": $rows,
 "backup": {"ours_seconds": $ours_backup, "ours_bytes": $ours_bytes, "naive_seconds": $naive_backup, "naive_bytes": $naive_bytes},
 "restore": {"ours_end_to_end_seconds": $ours_restore, "ours_bot_down_seconds": ${bot_down:-null},
             "ours_pg_restore_seconds": ${engine:-null}, "naive_seconds": $naive_restore}}
JSON
printf '\n%-44s %10s %12s\n' "database $((db_bytes / 1048576)) MiB, $(nproc) cores" seconds MiB
printf '%-44s %10.1f %12.1f\n' "backup: ours (set: zstd, gpg, signed, verified)" "$ours_backup" "$(echo "$ours_bytes/1048576" | bc -l)"
printf '%-44s %10.1f %12.1f\n' "backup: plan's pg_dump | gzip | gpg" "$naive_backup" "$(echo "$naive_bytes/1048576" | bc -l)"
printf '%-44s %10.1f\n' "restore: ours, db_restore.yml end to end" "$ours_restore"
printf '%-44s %10s\n' "  of which the bot was down" "${bot_down:-?}"
printf '%-44s %10s\n' "  of which pg_restore" "${engine:-?}"
printf '%-44s %10.1f\n' "restore: plan's gpg -d | gunzip | psql" "$naive_restore"
echo "written bench/results-backup-restore-$stamp.json"
