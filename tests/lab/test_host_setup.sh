#!/usr/bin/env bash
# What a clean machine gets from the two commands (issue 14), proven without a clean machine:
# - lab/bin/install-host-packages, run with --simulate inside the lab's debootstrap rootfs (a bare Debian 12 root,
#   nothing installed), resolves every package the lab needs, netavark, aardvark-dns and iptables among them, and
#   never CNI's plugins;
# - lab/bin/preflight refuses a podman set up the ways that broke the lab before (crun, CNI, no explicit ulimits),
#   in one FAIL line each that names the fix, and passes with lab/containers.conf;
# - a container of ours whose processes were killed behind podman's back (as when a machine's processes are killed or
#   it is restored from a snapshot with /run kept) is cleared by lab/bin/preflight, so make lab can recreate it.
#   make images && tests/lab/test_host_setup.sh
# Prints one line per check ("ok   ..." or "FAIL ..."), then "N passed, M failed"; exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/lab/containers.conf}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0
failed=0
ok() { echo "ok   $*"; passed=$((passed + 1)); }
fail() { echo "FAIL $*"; failed=$((failed + 1)); }

rootfs=$(sed -n 's/^  rootfs: *//p' lab/.cache/images.yml 2>/dev/null || true)
if [ -z "$rootfs" ] || ! podman image exists "$rootfs"; then
  echo "FAIL no rootfs image in lab/.cache/images.yml: run make images first"
  exit 1
fi

# ------------------------------------------------------------------------ install-host-packages on a bare root
if podman run --rm --volume "$PWD/lab/bin:/drlab-bin:ro" "$rootfs" /drlab-bin/install-host-packages --simulate \
    >"$work/simulate.txt" 2>&1; then
  ok "apt-get install -s of the script's packages resolves on a bare Debian 12 root"
else
  fail "apt-get install -s failed on a bare Debian 12 root: $(tail -1 "$work/simulate.txt")"
fi
installs=$(sed -n 's/^Inst \([^ ]*\) .*/\1/p' "$work/simulate.txt" | sort)
present=$(podman run --rm "$rootfs" dpkg-query -W -f='${Package}\n' | sort)
for package in netavark aardvark-dns iptables podman runc; do
  if grep -qx "$package" <<<"$installs"; then ok "a bare root gets $package"; else fail "a bare root would not get $package"; fi
done
if grep -qx containernetworking-plugins <<<"$installs"; then
  fail "a bare root would get containernetworking-plugins (CNI, no DNS by name)"
else
  ok "a bare root gets no CNI plugins"
fi
missing=()
while read -r package; do
  grep -qx "$package" <<<"$installs"$'\n'"$present" || missing+=("$package")
done < <(lab/bin/install-host-packages --list)
if [ ${#missing[@]} -eq 0 ]; then
  ok "every package the script names is installed or already there"
else
  fail "packages named by the script but neither installed nor present: ${missing[*]}"
fi

# ------------------------------------------------------------------- preflight against the setups that broke
# expect_fail NAME SED-EXPRESSION PATTERN: preflight with lab/containers.conf edited by SED-EXPRESSION fails, and
# its FAIL line matches PATTERN and names a fix.
expect_fail() {
  local name=$1 edit=$2 pattern=$3 out rc=0
  sed "$edit" lab/containers.conf >"$work/$name.conf"
  out=$(CONTAINERS_CONF="$work/$name.conf" lab/bin/preflight --image "$rootfs" 2>&1) || rc=$?
  local line
  line=$(grep '^FAIL ' <<<"$out" | head -1 || true)
  if [ "$rc" -ne 0 ] && grep -q -- "$pattern" <<<"$line" && grep -q 'fix: ' <<<"$line"; then
    ok "preflight refuses $name: ${line:5:110}..."
  else
    fail "preflight did not refuse $name with a fix (exit $rc): ${line:-$(tail -1 <<<"$out")}"
  fi
}
expect_fail crun 's/^runtime = .*/runtime = "crun"/' 'runtime = "runc"\|runc needed'
expect_fail cni 's/^network_backend = .*/network_backend = "cni"/' "CNI networks give the lab no DNS"
expect_fail no-ulimits '/^default_ulimits/d' "no explicit nofile ulimit"
expect_fail no-dac-read-search 's/, "DAC_READ_SEARCH",//' "lack CAP_DAC_READ_SEARCH"

if out=$(lab/bin/preflight --image "$rootfs" 2>&1); then
  ok "preflight passes with lab/containers.conf ($(grep -c '^ok ' <<<"$out") checks)"
else
  fail "preflight fails with lab/containers.conf: $(grep '^FAIL' <<<"$out" | head -1)"
fi
if podman network ls --format '{{.Name}}' | grep -q '^drlab-preflight-'; then
  fail "preflight left a throwaway network behind"
else
  ok "preflight leaves no throwaway network or container behind"
fi

# ------------------------------------------------------------ a container whose processes are gone, podman unaware
stale=drlab-preflight-stale-$$
podman run --detach --name "$stale" --label drlab=preflight-test "$rootfs" sleep 600 >/dev/null
read -r init_pid conmon_pid <<<"$(podman inspect "$stale" --format '{{.State.Pid}} {{.State.ConmonPid}}')"
# conmon first: with it gone nobody tells podman that the container exited.
kill -KILL "$conmon_pid" "$init_pid"
sleep 0.5  # dead, perhaps not reaped: preflight counts a zombie as gone
if podman exec "$stale" true >/dev/null 2>&1; then
  fail "the stale container could still be exec'd into: the test did not make the state it means to"
elif out=$(lab/bin/preflight 2>&1) && grep -q "^ok   removed $stale: podman recorded" <<<"$out" \
    && ! podman container exists "$stale"; then
  ok "preflight removes a lab container that podman records as running while its processes are gone"
else
  fail "preflight did not clear the stale container $stale: $(grep "$stale\|^FAIL" <<<"$out" | head -1)"
fi
podman rm --force --time 0 "$stale" >/dev/null 2>&1 || true

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
