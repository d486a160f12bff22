#!/usr/bin/env bash
# The preload in a hostile or unlucky environment:
#  - planted report names: another user who can write to report_dir creates
#    every predictable name (files and symlinks) for the next seconds before
#    the report signal; the report is still written, under a random name,
#    and no planted symlink is followed;
#  - a full tmpfs under shm_dir (a small tmpfs mounted here; skipped when
#    not root or mount fails): the program runs to the end, its allocations
#    served (untracked where the segment could not be made or grow), no
#    SIGBUS.
#
#   hostile-test.sh PRELOAD CONTRACT
set -u
preload=$1 contract=$2
fail=0
tmp=$(mktemp -d)
mnt=""
cleanup() {
  [ -n "$mnt" ] && umount "$mnt" 2>/dev/null
  [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
export GWMEM_CONFIG=/dev/null

# --- planted report names -------------------------------------------------
rep=$tmp/reports
mkdir -p "$rep"
GWMEM_LEAK_DETECTION_REPORT_DIR="$rep" LD_PRELOAD="$preload" sleep 20 2>"$tmp/sleep.err" &
pid=$!
# wait until the preload's SIGUSR1 handler is in place (SigCgt bit 10)
for _ in $(seq 100); do
  cgt=$(awk '/^SigCgt/ {print $2}' "/proc/$pid/status" 2>/dev/null)
  [ -n "$cgt" ] && [ $(( 0x$cgt & 0x200 )) -ne 0 ] && break
  sleep 0.05
done
now=$(date +%s)
for s in $(seq $((now - 1)) $((now + 8))); do
  ln -s "$tmp/victim" "$rep/gwmem-report.$pid.$s.txt"
  for n in 1 2 3; do
    if [ $n -eq 2 ]; then : >"$rep/gwmem-report.$pid.$s.$n.txt"
    else ln -s "$tmp/victim" "$rep/gwmem-report.$pid.$s.$n.txt"; fi
  done
done
kill -USR1 "$pid"
found=""
for _ in $(seq 50); do
  found=$(ls "$rep" | grep -E "^gwmem-report\.$pid\.[0-9]+\.[0-9a-f]{16}\.txt$" | head -1)
  [ -n "$found" ] && [ -s "$rep/$found" ] && break
  sleep 0.1
done
kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; pid=""
if [ -n "$found" ] && [ -s "$rep/$found" ] && [ ! -e "$tmp/victim" ]; then
  echo "ok   planted-report-names: report written to $found; no symlink followed"
  echo "     $(grep -m1 'taken' "$tmp/sleep.err")"
else
  echo "FAIL planted-report-names: no report under a random name (or a symlink was followed)"
  ls "$rep" | grep -v "\.$pid\.[0-9]*\(\.[0-9]\)\?\.txt$" | head; cat "$tmp/sleep.err"; fail=1
fi

# --- full tmpfs -------------------------------------------------------------
if [ "$(id -u)" -ne 0 ]; then
  echo "skip full-tmpfs: not root (mounts a small tmpfs)"
  exit $fail
fi
mnt=$tmp/shm
mkdir -p "$mnt"
if ! mount -t tmpfs -o size=256k,mode=1777 tmpfs "$mnt" 2>"$tmp/mount.err"; then
  echo "skip full-tmpfs: mount failed ($(cat "$tmp/mount.err"))"
  mnt=""
  exit $fail
fi
# 1. full before the program starts; 2. a little room left, which the
#    segment fills while the program runs
for room in 0 96; do
  rm -f "$mnt"/*
  dd if=/dev/zero of="$mnt/filler" bs=1k count=$((256 - room)) 2>/dev/null
  env LD_PRELOAD="$preload" GWMEM_LEAK_DETECTION_SHM_DIR="$mnt" "$contract" all \
    >"$tmp/out" 2>"$tmp/err"
  rc=$?
  if [ $rc -eq 0 ]; then
    echo "ok   full-tmpfs ($room KiB free): the contract program passed; $(grep -m1 'gwmem:' "$tmp/err" | cut -c1-110)"
  else
    echo "FAIL full-tmpfs ($room KiB free): exit $rc"; tail -5 "$tmp/err"; fail=1
  fi
done
exit $fail
