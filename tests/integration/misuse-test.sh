#!/usr/bin/env bash
# Malloc misuse through LD_PRELOAD: what the preload promises for each case,
# checked, and glibc's behaviour for the same program printed beside it
# (docs/misuse.md keeps the table).  Promises checked here:
#  - two threads freeing one pooled block at the same moment, 20,000 times:
#    never a block live twice afterwards, every second free counted as a
#    double free, the diagnostic printed once (then at 2^k counts);
#  - realloc of a freed or interior pooled pointer: NULL with EINVAL, the
#    block untouched, counted, and no record left behind in the segment;
#  - glibc's own blocks (__libc_malloc) are freed and realloc'd by glibc;
#  - threads exiting in the middle of cross-thread traffic (malloc, calloc,
#    realloc across the pool limit and glibc's mmap threshold) never abort.
#
#   misuse-test.sh PRELOAD MISUSE GWMEM
set -u
preload=$1 prog=$2 gwmem=${3:-}
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export GWMEM_CONFIG=/dev/null

# run NAME ARGS...: under the preload into $tmp/out, $tmp/err; sets rc
run() {
  local name=$1; shift
  env "${envs[@]}" LD_PRELOAD="$preload" "$prog" "$@" >"$tmp/out" 2>"$tmp/err"
  rc=$?
  # glibc, for the comparison (its outcome is information, not a check)
  "$prog" "$@" >"$tmp/gout" 2>"$tmp/gerr"
  local grc=$? gsig=""
  [ $grc -gt 128 ] && gsig=" (signal $((grc - 128)))"
  printf '%-18s glibc: exit %d%s %s\n' "$name" "$grc" "$gsig" \
    "$(cat "$tmp/gerr" "$tmp/gout" | grep -v '^duplicate' | tr '\n' ' ' | cut -c1-110)"
}

check() {   # name, condition text, then the test command
  local name=$1 what=$2; shift 2
  if "$@"; then
    echo "ok   $name: $what"
  else
    echo "FAIL $name: $what"; sed 's/^/     /' "$tmp/out" "$tmp/err" | head -15; fail=1
  fi
}

once() {   # the diagnostic pattern appears exactly once without a "seen" count
  [ "$(grep -c -- "$1" "$tmp/err")" -ge 1 ] &&
    [ "$(grep -- "$1" "$tmp/err" | grep -vc 'seen [0-9]* times')" -eq 1 ]
}

# --- cross-thread double free --------------------------------------------
rounds=20000
envs=(GWMEM_STATS=1)
run xdouble xdouble $rounds
check xdouble "exit 0, no block live twice" \
  test $rc -eq 0 -a -n "$(grep 'duplicates=0$' "$tmp/out")"
check xdouble-counted "every one of the $rounds second frees counted as a double free" \
  grep -q "double frees $rounds," "$tmp/err"
check xdouble-once "the diagnostic is printed once (then at 2^k counts)" \
  once "double free of"

# the same without tracking: the pools' fast path alone
envs=(GWMEM_STATS=1 GWMEM_MEMORY_LEAK_DETECTION_ENABLED=false)
run xdouble-untracked xdouble $rounds
check xdouble-untracked "exit 0, no duplicates, $rounds double frees counted" \
  test $rc -eq 0 -a -n "$(grep 'duplicates=0$' "$tmp/out")" -a -n "$(grep "double frees $rounds," "$tmp/err")"

# --- realloc of freed and interior pointers -----------------------------
segdir=$tmp/shm
mkdir -p "$segdir"
leaks_none() {   # the kept segment of the last run holds no record
  [ -x "$gwmem" ] || return 0
  local seg
  seg=$(ls "$segdir" | head -1)
  [ -n "$seg" ] || return 1
  "$gwmem" leaks "$segdir/$seg" --older-than 0 --json --no-symbols >"$tmp/leaks.json" 2>>"$tmp/err" &&
    grep -q '"live_count": 0,' "$tmp/leaks.json"
}
for m in realloc-freed realloc-interior; do
  rm -f "$segdir"/*
  envs=(GWMEM_STATS=1 GWMEM_LEAK_DETECTION_SHM_DIR="$segdir" GWMEM_LEAK_DETECTION_KEEP_SEGMENT_ON_EXIT=true)
  run $m $m
  check $m "exit 0, NULL with EINVAL, block untouched" \
    test $rc -eq 0 -a -n "$(grep 'returned NULL (errno 22)' "$tmp/out")"
  check $m-message "one 'realloc of' diagnostic" once "realloc of 0x"
  check $m-record "no record left in the segment (gwmem leaks: live_count 0)" leaks_none
done

# --- glibc's own blocks ---------------------------------------------------
envs=()
run foreign foreign
check foreign "free/realloc/malloc_usable_size of __libc_malloc blocks" \
  test $rc -eq 0 -o $rc -eq 77

# --- thread exit in the middle of traffic (bounded) ---------------------
# glibc initialises its malloc on the first call, unsynchronised; two
# threads making that first call at once both attach main_arena with one
# count, and the second to exit aborts in __malloc_arena_thread_freeres
# ("a->attached_threads > 0").  The preload makes that first call in its
# own init.  Under gdb: the first call into glibc's malloc happens while the
# process has one thread.
envs=()
if command -v gdb >/dev/null; then
  # pending on: before the run libc is not loaded, and a batch gdb answers
  # "no" to making the breakpoint pending, which would turn this into a skip;
  # startup-with-shell off: the program is run directly, not through a
  # shell that would allocate first; bounded in case ptrace hangs
  timeout 120 gdb -q -batch -nx -ex 'set breakpoint pending on' -ex 'set startup-with-shell off' \
    -ex "set environment LD_PRELOAD=$preload" -ex 'set environment GWMEM_CONFIG=/dev/null' \
    -ex 'break __libc_malloc' -ex run -ex 'info threads' -ex kill \
    --args "$prog" xinit 8 >"$tmp/gdb.out" 2>&1
  if grep -q 'Breakpoint 1, ' "$tmp/gdb.out"; then
    threads=$(sed -n '/Target Id/,$p' "$tmp/gdb.out" | grep -cE '^[* ] +[0-9]+ +Thread')
    check glibc-init "the first call into glibc's malloc is made with 1 thread (saw $threads)" \
      test "$threads" -eq 1
  else
    echo "skip glibc-init: gdb could not run the program ($(tail -1 "$tmp/gdb.out"))"
  fi
else
  echo "skip glibc-init: no gdb"
fi
# Without the fix, about 4 runs in 100 of 16 or 32 threads abort (against
# about 1 in 700 for the traffic that first showed it; fewer on a loaded
# machine, where the threads seldom run at once), so 100 runs fail
# with a probability of about 98 % on a quiet machine; each run takes
# about 30 ms.  The gdb check above fails on the old code every time.
n=0
for i in $(seq 100); do
  env LD_PRELOAD="$preload" "$prog" xinit 32 >"$tmp/out" 2>"$tmp/err" || { n=$((n + 1)); tail -1 "$tmp/err"; }
done
check xinit "100 runs of 32 threads making their first large malloc at once: no abort" test $n -eq 0
for i in 1 2 3; do
  run "xexit-$i" xexit 6 24
  check "xexit-$i" "24 threads x 6 rounds exit mid-traffic, exit 0" test $rc -eq 0
done

# --- frees of stack and static addresses ---------------------------------
# Not pooled: they go to glibc, which aborts or crashes as it would without
# gwmem; recorded here for the table, not checked.
envs=()
for m in stack global; do
  run $m $m
  echo "info $m under the preload: exit $rc ($(head -c 100 "$tmp/err" | tr '\n' ' '))"
done

exit $fail
