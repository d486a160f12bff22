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
#     the pools take a bounded share of RLIMIT_AS, not what is left, and use
#     small chunks; when the next allocator runs out, gwmem gives back once
#     what it holds but does not need (the pools' unused reservation, empty
#     chunks and their metadata, the segment's unused record area, the fork
#     buffer, glibc's free heap top) and the request is retried.  What it
#     keeps then, untracked, is its library, static data and TLS, the
#     reporter thread's stack and the chunks in use: about 190 KiB.  So where
#     glibc leaves at least FOOT_U of address space unused at its last
#     failure, gwmem untracked gets glibc's count, and never fewer than one
#     block less.  Tracking adds libunwind and liblzma (about 300 KiB), the
#     private indexes and what the segment uses: at most one block less.
#     The next allocator's blocks placed in the old range stay its own
#     (usable size, realloc: the fill program checks).
misuse=${4:-}
FOOT_U=256
if [ -x "$misuse" ]; then
  fill() {   # limit-kB, then env; prints "blocks vmsize-kB"
    (ulimit -v "$1"; shift; env "$@" "$misuse" fill 2>>"$tmp/err" |
       sed -n 's/.*blocks: //p; s/.*failure: \([0-9-]*\) kB/\1/p' | tr '\n' ' ')
  }
  : >"$tmp/err"
  for lim in 16000 30000 50000 80000 120000 200000; do
    read -r g vg < <(fill $lim)
    read -r u _ < <(fill $lim LD_PRELOAD="$preload" GWMEM_MEMORY_LEAK_DETECTION_ENABLED=false)
    read -r t _ < <(fill $lim LD_PRELOAD="$preload")
    slack=$((lim - ${vg:-$lim}))
    want_u=$g
    [ "$slack" -ge $FOOT_U ] || want_u=$((g - 1))
    line="ulimit -v $lim, 1 MiB blocks: glibc $g (leaves $slack KiB), gwmem untracked $u, tracked $t"
    if [ -n "$g" ] && [ -n "$u" ] && [ -n "$t" ] && [ "$u" -ge "$want_u" ] && [ "$t" -ge $((g - 1)) ]; then
      echo "ok   rlimit-share-$lim: $line"
    else
      echo "FAIL rlimit-share-$lim: $line (untracked needs >= $want_u, tracked >= $((g - 1)))"; fail=1
    fi
  done
  if grep -q "gwmem gave back" "$tmp/err"; then
    echo "ok   rlimit-give-back: $(grep -m1 'gwmem gave back' "$tmp/err")"
  else
    echo "FAIL rlimit-give-back: gwmem did not give address space back"; head -5 "$tmp/err"; fail=1
  fi

  # after the give-back, tracking goes on and the CLI reads the segment
  if [ -x "$gwmem" ]; then
    (ulimit -v 80000; exec env LD_PRELOAD="$preload" "$misuse" fill 1048576 2000 \
       >"$tmp/hold.out" 2>"$tmp/hold.err") &
    pid=$!
    for _ in $(seq 100); do grep -q ready "$tmp/hold.out" 2>/dev/null && break; sleep 0.1; done
    if "$gwmem" stats "$pid" --json >"$tmp/gb.json" 2>"$tmp/cli.err" &&
       "$gwmem" leaks "$pid" --older-than 0 >"$tmp/gb.leaks" 2>>"$tmp/cli.err"; then
      python3 - "$tmp/gb.json" "$tmp/gb.leaks" <<'PY' || fail=1
import json, sys
s = json.load(open(sys.argv[1]))
c = s["counters"]
given = c["address_space_given_back"]
assert given > 1 << 20, f"address_space_given_back={given}"
# the fill's 1 MiB blocks were recorded before, the small ones after as
# far as the record arrays have room
assert s["live_count"] >= 70, f"live_count={s['live_count']}"
assert s["live_bytes"] >= 70 << 20, f"live_bytes={s['live_bytes']}"
leaks = open(sys.argv[2]).read()
assert "misuse.c" in leaks, leaks[:400]
print(f"ok   rlimit-after-give-back: {given >> 10} KiB given back; gwmem stats: "
      f"{s['live_count']} live allocations, {c['untracked_segment_full']} not recorded "
      f"(no room); gwmem leaks names the fill site in misuse.c")
PY
    else
      echo "FAIL rlimit-after-give-back: gwmem stats/leaks"; cat "$tmp/cli.err"; fail=1
    fi
    wait "$pid" || { echo "FAIL rlimit-after-give-back: the program failed"; tail -5 "$tmp/hold.out" "$tmp/hold.err"; fail=1; }
  fi
  # a limit far below the default reservation: the program still runs
  for e in "GWMEM_MEMORY_LEAK_DETECTION_ENABLED=false" "GWMEM_LEAK_DETECTION_TRACKING_ENABLED=true"; do
    if (ulimit -v 16000; env LD_PRELOAD="$preload" "$e" "$misuse" fill >"$tmp/out" 2>"$tmp/err") &&
       (ulimit -v 16000; env LD_PRELOAD="$preload" "$e" sort -n "$tmp/in" | cmp -s - <(seq 20000)); then
      echo "ok   rlimit-16000 ($e): $(head -1 "$tmp/out")"
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
