#!/usr/bin/env bash
# The host keeps running when gwmem's own resources fail: a refused
# address-space reservation (RLIMIT_AS), a segment directory that does not
# exist, a full allocation table, a full stack table, a pool class at
# max_chunks.  Each case runs the whole malloc contract program under the
# preload, which must pass, and checks the one diagnostic line or counter.
#
#   limits-test.sh PRELOAD CONTRACT GWMEM MISUSE
set -u
preload=$1 contract=$2 gwmem=${3:-}
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export GWMEM_CONFIG=/dev/null

run() {   # name, then env assignments; runs the contract program
  local name=$1; shift
  if ! env "$@" LD_PRELOAD="$preload" "$contract" all >"$tmp/out" 2>"$tmp/err"; then
    echo "FAIL $name: the contract program failed"; cat "$tmp/out" "$tmp/err" | tail -20; fail=1
    return 1
  fi
  return 0
}

expect_err() {   # name, pattern
  if ! grep -q -- "$2" "$tmp/err"; then
    echo "FAIL $1: stderr lacks '$2'"; head -5 "$tmp/err"; fail=1
  else
    echo "ok   $1: $(grep -m1 -- "$2" "$tmp/err")"
  fi
  local lines
  lines=$(grep -c -- "$2" "$tmp/err")
  if [ "$lines" -gt 1 ]; then
    echo "FAIL $1: the diagnostic was printed $lines times, not once"; fail=1
  fi
}

# 1. address space limited to 2 GB: the pools shrink their reservation
#    (by default they reserve 18 GiB of PROT_NONE address space on 64-bit)
if (ulimit -v 2000000 && run rlimit-as); then
  expect_err rlimit-as "address space is limited"
fi

# 2. address space of 120 MB: a real program still sorts correctly
seq 20000 | sort -R --random-source=/dev/zero >"$tmp/in"
if (ulimit -v 120000 && GWMEM_MEMORY_LEAK_DETECTION_ENABLED=false LD_PRELOAD="$preload" \
      sort -n "$tmp/in" >"$tmp/sorted" 2>"$tmp/err") && seq 20000 | cmp -s - "$tmp/sorted"; then
  if grep -q "address space is limited\|cannot reserve" "$tmp/err"; then
    echo "ok   rlimit-small: sort output correct; $(head -1 "$tmp/err")"
  else
    echo "FAIL rlimit-small: no diagnostic"; cat "$tmp/err"; fail=1
  fi
else
  echo "FAIL rlimit-small: sort under a 120 MB address-space limit"; cat "$tmp/err"; fail=1
fi

# 2b. an address-space limit leaves the program the memory glibc gives it:
#     the pools take a bounded share of RLIMIT_AS, not what is left, use small
#     chunks and give their unused part back when the next allocator runs
#     out; the next allocator's blocks placed there stay its own (usable
#     size, realloc).  What gwmem keeps for itself then (its library, static
#     data, the reporter's stack, the chunks in use: about 360 KiB) is less
#     than one 1 MiB block, so untracked it gets glibc's count at 80000 kB
#     (glibc leaves 420 KiB unused there) and never more than one block
#     fewer at any limit.  Tracking adds libunwind (about 300 KiB mapped plus
#     a 256 KiB trace cache per thread) and the segment's mapping (its share
#     of the limit, max_segment_bytes / 32 of it, counts in full however
#     sparse): at most three blocks at 80000 kB.
misuse=${4:-}
if [ -x "$misuse" ]; then
  fill() {   # limit-kB, then env; prints the number of 1 MiB blocks obtained
    (ulimit -v "$1"; shift; env "$@" "$misuse" fill 2>>"$tmp/err" | sed -n 's/.*blocks: //p')
  }
  : >"$tmp/err"
  g=$(fill 80000)
  u=$(fill 80000 LD_PRELOAD="$preload" GWMEM_MEMORY_LEAK_DETECTION_ENABLED=false)
  t=$(fill 80000 LD_PRELOAD="$preload")
  echo "info rlimit-share: ulimit -v 80000, 1 MiB blocks: glibc $g, gwmem untracked $u, tracked $t"
  if [ -n "$g" ] && [ -n "$u" ] && [ -n "$t" ] && [ "$u" -ge "$g" ] && [ "$t" -ge $((g - 3)) ]; then
    echo "ok   rlimit-share: untracked >= glibc's blocks, tracked >= glibc's - 3"
  else
    echo "FAIL rlimit-share: too few blocks under the limit"; head -5 "$tmp/err"; fail=1
  fi
  for lim in 30000 50000 120000; do
    g2=$(fill $lim) u2=$(fill $lim LD_PRELOAD="$preload" GWMEM_MEMORY_LEAK_DETECTION_ENABLED=false)
    if [ -n "$g2" ] && [ -n "$u2" ] && [ "$u2" -ge $((g2 - 1)) ]; then
      echo "ok   rlimit-share-$lim: glibc $g2, gwmem untracked $u2 (at most one block fewer)"
    else
      echo "FAIL rlimit-share-$lim: glibc $g2, gwmem untracked $u2"; fail=1
    fi
  done
  if grep -q "the pools gave back" "$tmp/err"; then
    echo "ok   rlimit-trim: $(grep -m1 'the pools gave back' "$tmp/err")"
  else
    echo "FAIL rlimit-trim: the pools did not give address space back"; fail=1
  fi
  # a limit far below the default reservation: the program still runs
  for e in "GWMEM_MEMORY_LEAK_DETECTION_ENABLED=false" "GWMEM_LEAK_DETECTION_TRACKING_ENABLED=true"; do
    if (ulimit -v 16000; env LD_PRELOAD="$preload" "$e" "$misuse" fill >"$tmp/out" 2>"$tmp/err") &&
       (ulimit -v 16000; env LD_PRELOAD="$preload" "$e" sort -n "$tmp/in" | cmp -s - <(seq 20000)); then
      echo "ok   rlimit-16000 ($e): $(cat "$tmp/out")"
    else
      echo "FAIL rlimit-16000 ($e): exit status or sort output"; tail -3 "$tmp/err"; fail=1
    fi
  done
else
  echo "skip rlimit-share: no misuse program"
fi

# 3. the segment directory does not exist: allocation goes on untracked
if run no-shm-dir GWMEM_LEAK_DETECTION_SHM_DIR="$tmp/missing"; then
  expect_err no-shm-dir "cannot create the shared-memory segment"
fi

# 4. one pool class limited to one small chunk: requests past it are forwarded
if run max-chunks GWMEM_MEMORY_POOL_MAX_CHUNKS=1 GWMEM_MEMORY_POOL_BLOCKS_PER_CHUNK=8 GWMEM_STATS=1; then
  if grep -Eq "forwarded allocations [1-9]" "$tmp/err"; then
    echo "ok   max-chunks: $(grep -m1 'forwarded allocations' "$tmp/err" | sed 's/.*invalid/invalid/')"
  else
    echo "FAIL max-chunks: no forwarded allocations counted"; tail -3 "$tmp/err"; fail=1
  fi
fi

# 5. full allocation and stack tables, read back through the CLI
if [ -x "$gwmem" ]; then
  cat >"$tmp/hold.py" <<'PY'
import sys, time
keep = [bytearray(40 + i % 200) for i in range(20000)]
print("ready", flush=True)
time.sleep(3)
PY
  GWMEM_LEAK_DETECTION_MAX_TRACKED_ALLOCATIONS=64 GWMEM_LEAK_DETECTION_MAX_STACKS=16 \
    LD_PRELOAD="$preload" python3 "$tmp/hold.py" >"$tmp/py.out" 2>"$tmp/err" &
  pid=$!
  for _ in $(seq 50); do grep -q ready "$tmp/py.out" 2>/dev/null && break; sleep 0.1; done
  if "$gwmem" stats "$pid" --json >"$tmp/stats.json" 2>"$tmp/cli.err"; then
    python3 - "$tmp/stats.json" <<'PY' || fail=1
import json, sys
s = json.load(open(sys.argv[1]))
c = s["counters"]
full, dropped = c["untracked_table_full"], c["dropped_stacks"]
assert full > 1000, f"untracked_table_full={full}"
assert dropped > 0, f"dropped_stacks={dropped}"
assert s["live_count"] <= 128, f"live_count={s['live_count']}"   # 64 * 4/3 slots, rounded up
print(f"ok   full-tables: {s['live_count']} tracked, {full} untracked (table full), {dropped} dropped stacks")
PY
  else
    echo "FAIL full-tables: gwmem stats"; cat "$tmp/cli.err"; fail=1
  fi
  wait "$pid" || { echo "FAIL full-tables: python exited non-zero"; tail -5 "$tmp/err"; fail=1; }
else
  echo "skip full-tables: no gwmem CLI"
fi

exit $fail
