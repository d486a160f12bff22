#!/usr/bin/env bash
# musl-test.sh GLIBC_BUILD MUSL_BUILD: gwmem on musl, natively (no emulation).
#
#   1. configure and build MUSL_BUILD with cross/x86_64-linux-musl.ini
#      (libgwmem-preload.so and libgwmem.so for musl, libgcc unwinder,
#      libinih from subprojects/);
#   2. build with musl-gcc, dynamic, -O2 without frame pointers: leaky
#      (tests/leak), the contract and stress programs (tests/integration),
#      and a musl libgcc_s.so.1 from GCC's libgcc_eh.a (libgcc-s.c says why);
#   3. the contract and stress programs pass on plain musl (proves the tests
#      under musl), then under the musl preload with tracking on (and the
#      preload seen active), tracking off, pools off;
#   4. leaky under the musl preload: the glibc build's gwmem CLI names every
#      leak site with its exact count and bytes, walked through the
#      frame-less code by libgcc's unwinder (main is the caller), and with
#      the frame-pointer unwinder no frame lies outside a mapped module.
#
# Exit 0 = pass, 1 = fail, 77 = skipped (no musl-gcc).
set -uo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
glibc_build=$(cd "${1:?usage: musl-test.sh GLIBC_BUILD MUSL_BUILD}" && pwd)
musl_build=${2:?usage: musl-test.sh GLIBC_BUILD MUSL_BUILD}
unset LD_PRELOAD

if ! command -v musl-gcc >/dev/null; then
  echo "musl-test: SKIP: musl-gcc not installed (Debian package musl-tools; scripts/setup installs it)"
  exit 77
fi
gwmem=$glibc_build/tools/gwmem
if [ ! -x "$gwmem" ]; then
  echo "musl-test: SKIP: $gwmem not built (-Dcli=false)"
  exit 77
fi

fails=0
pass() { echo "  PASS $*"; }
fail() { echo "  FAIL $*"; fails=$((fails + 1)); }

# --- 1. the musl build -------------------------------------------------------
cd "$src"
# a build directory configured when libinih was taken with inih's default
# options (200-byte lines) keeps them: start it again
if [ -f "$musl_build/build.ninja" ] && ! meson introspect "$musl_build" --buildoptions 2>/dev/null |
     python3 -c 'import json, sys; sys.exit(0 if any(o["name"] == "inih:max_line_length" and o["value"] >= 4096 for o in json.load(sys.stdin)) else 1)'; then
  echo "  $musl_build: libinih configured with other options before; configured again"
  rm -rf "$musl_build"
fi
if [ ! -f "$musl_build/build.ninja" ]; then
  if ! meson setup "$musl_build" --cross-file cross/x86_64-linux-musl.ini >"${TMPDIR:-/tmp}/gwmem-musl-setup.$$" 2>&1; then
    cat "${TMPDIR:-/tmp}/gwmem-musl-setup.$$"; rm -f "${TMPDIR:-/tmp}/gwmem-musl-setup.$$"
    echo "musl-test: FAIL: meson setup $musl_build --cross-file cross/x86_64-linux-musl.ini"
    exit 1
  fi
  rm -f "${TMPDIR:-/tmp}/gwmem-musl-setup.$$"
fi
musl_build=$(cd "$musl_build" && pwd)
if ! meson compile -C "$musl_build" >"$musl_build/musl-compile.log" 2>&1; then
  tail -30 "$musl_build/musl-compile.log"
  echo "musl-test: FAIL: meson compile -C $musl_build"
  exit 1
fi
preload=$musl_build/lib/libgwmem-preload.so
for f in "$preload" "$musl_build/lib/libgwmem.so"; do
  # a musl object needs musl's libc.so, never glibc's libc.so.6
  if readelf -dW "$f" | grep 'libc\.so\.6' >/dev/null; then
    fail "$f links glibc"
  else
    pass "built ${f##*/} for musl ($(stat -L -c %s "$f") bytes)"
  fi
done

# --- 2. the programs ---------------------------------------------------------
out=$musl_build/musl-test
mkdir -p "$out"
flags=(-O2 -g -fomit-frame-pointer -D_GNU_SOURCE -Wl,--eh-frame-hdr -w)
musl-gcc "${flags[@]}" -pthread -rdynamic -o "$out/leaky" tests/leak/leaky.c &&
musl-gcc "${flags[@]}" -fno-builtin -o "$out/contract" tests/integration/contract.c &&
musl-gcc "${flags[@]}" -fno-builtin -pthread -o "$out/stress" tests/integration/stress.c || {
  echo "musl-test: FAIL: building the test programs with musl-gcc"; exit 1; }
eh=$(gcc -print-file-name=libgcc_eh.a)
mkdir -p "$out/libgcc"
objcopy --redefine-sym _Unwind_Backtrace=gcc_Unwind_Backtrace \
        --redefine-sym _Unwind_GetIP=gcc_Unwind_GetIP "$eh" "$out/libgcc_eh-renamed.a" &&
musl-gcc -shared -fPIC -O2 -Wl,--eh-frame-hdr -Wl,-soname,libgcc_s.so.1 -o "$out/libgcc/libgcc_s.so.1" \
  tests/musl/libgcc-s.c -Wl,--whole-archive "$out/libgcc_eh-renamed.a" -Wl,--no-whole-archive -lgcc || {
  echo "musl-test: FAIL: building a musl libgcc_s.so.1 from $eh"; exit 1; }
if readelf -lW "$out/leaky" | grep '/lib/ld-musl-x86_64.so.1' >/dev/null &&
   ! readelf -dW "$out/leaky" | grep 'libc\.so\.6' >/dev/null; then
  pass "leaky, contract, stress: musl-gcc, dynamic (/lib/ld-musl-x86_64.so.1), no frame pointers"
else
  fail "leaky is not a dynamic musl program"
fi

# --- 3. contract and stress --------------------------------------------------
run() {   # run NAME ENV... -- PROG ARGS...
  local name=$1; shift
  local envs=()
  while [ "$1" != -- ]; do envs+=("$1"); shift; done
  shift
  local log=$out/$(echo "$name" | tr -c 'A-Za-z0-9_.-' '_').log
  if timeout -k 5 120 env "${envs[@]}" "$@" >"$log" 2>&1; then
    RUN_LOG=$log; return 0
  fi
  RUN_LOG=$log; return 1
}
base=(GWMEM_CONFIG=/dev/null LD_LIBRARY_PATH="$out/libgcc")
stress_args=(16 20000)
check_run() {
  local name=$1; shift
  if run "$name" "$@"; then
    pass "$name: $(grep -v '^gwmem:' "$RUN_LOG" | tail -1 | cut -c1-100)"
  else
    fail "$name (log $RUN_LOG)"; grep -v '^gwmem:' "$RUN_LOG" | grep FAIL | head -5 | sed 's/^/    /'
  fi
}
check_run "plain musl: contract all" "${base[@]}" -- "$out/contract" all
check_run "plain musl: stress ${stress_args[*]}" "${base[@]}" -- "$out/stress" "${stress_args[@]}"
if run "preload: contract all, tracking on" "${base[@]}" LD_PRELOAD="$preload" GWMEM_STATS=1 -- "$out/contract" all &&
   grep -q "LD_PRELOAD=$preload" "$RUN_LOG" && grep -q '^gwmem: total:' "$RUN_LOG"; then
  pass "preload: contract all, tracking on (preload active: its statistics at exit)"
else
  fail "preload: contract all, tracking on (log $RUN_LOG)"; grep FAIL "$RUN_LOG" | head -5 | sed 's/^/    /'
fi
check_run "preload: contract all, tracking off" "${base[@]}" LD_PRELOAD="$preload" \
  GWMEM_MEMORY_LEAK_DETECTION_ENABLED=false -- "$out/contract" all
check_run "preload: contract all, pools off" "${base[@]}" LD_PRELOAD="$preload" \
  GWMEM_MEMORY_POOL_ENABLED=false -- "$out/contract" all
check_run "preload: stress ${stress_args[*]}, tracking on" "${base[@]}" LD_PRELOAD="$preload" -- \
  "$out/stress" "${stress_args[@]}"
check_run "preload: stress ${stress_args[*]}, tracking off" "${base[@]}" LD_PRELOAD="$preload" \
  GWMEM_MEMORY_LEAK_DETECTION_ENABLED=false -- "$out/stress" "${stress_args[@]}"

# --- 4. leak sites through the glibc CLI -------------------------------------
shm=$(mktemp -d "${TMPDIR:-/tmp}/gwmem-musl.XXXXXX")
leak_check() {   # leak_check UNWINDER
  local unwinder=$1 pid json rc=0
  coproc LEAKY { exec env "${base[@]}" LD_PRELOAD="$preload" GWMEM_LEAK_DETECTION_SHM_DIR="$shm" \
    GWMEM_LEAK_DETECTION_UNWINDER="$unwinder" "$out/leaky" sites 2>"$out/leaky-$unwinder.err"; }
  pid=$LEAKY_PID
  local ready=""
  read -r -t 30 ready <&"${LEAKY[0]}" || true
  if [[ "$ready" != READY* ]]; then
    fail "leaky ($unwinder) did not start: '$ready' $(head -3 "$out/leaky-$unwinder.err")"
    kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
    return
  fi
  json=$out/leaks-$unwinder.json
  # the module map reaches the segment from the preload's reporter thread,
  # shortly after start: until then frames have no module
  local try
  for try in $(seq 40); do
    rc=0
    GWMEM_SHM_DIR=$shm "$gwmem" leaks "$pid" --older-than 0 --top 0 --json >"$json" 2>"$json.err" || rc=$?
    [ $rc -ne 0 ] || ! grep -q '"module": ""' "$json" || { sleep 0.25; continue; }
    break
  done
  GWMEM_SHM_DIR=$shm "$gwmem" leaks "$pid" --older-than 0 --top 0 >"$out/leaks-$unwinder.txt" 2>&1 || true
  cat "/proc/$pid/maps" >"$out/maps-$unwinder.txt" 2>/dev/null
  eval "exec ${LEAKY[1]}>&-"
  wait "$pid" 2>/dev/null
  if [ $rc -ne 0 ]; then
    fail "gwmem leaks ($unwinder): exit $rc: $(head -3 "$json.err")"
    return
  fi
  if python3 - "$json" "$unwinder" "$out/maps-$unwinder.txt" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
unwinder = sys.argv[2]
# the process's executable mappings: every frame must lie in one
text = []
for line in open(sys.argv[3]):
    f = line.split()
    if len(f) >= 2 and "x" in f[1]:
        lo, hi = (int(x, 16) for x in f[0].split("-"))
        text.append((lo, hi))
want = {"leak_small": (10, 240), "leak_big": (3, 15000), "leak_threaded": (14, 1400), "cache_fill": (5, 1000)}
known = list(want) + ["churn_all"]
got, callers, bad = {}, {}, []
for site in doc["sites"]:
    for i, fr in enumerate(site["frames"]):
        a = int(fr["address"], 16)
        if not fr.get("module") or not any(lo <= a < hi for lo, hi in text):
            bad.append("%s (%s)" % (fr["address"], fr.get("module")))
    fns = [fr["function"] for fr in site["frames"]]
    for i, fn in enumerate(fns):
        if fn in known:
            c, b = got.get(fn, (0, 0))
            got[fn] = (c + site["count"], b + site["bytes"])
            callers.setdefault(fn, set()).add(fns[i + 1] if i + 1 < len(fns) else None)
            break
errs = []
for fn, w in want.items():
    if got.get(fn) != w:
        errs.append("%s: got %r, want %r" % (fn, got.get(fn), w))
if "churn_all" in got:
    errs.append("churn_all (all freed) reported: %r" % (got["churn_all"],))
if bad:
    errs.append("frames outside every executable mapping: %s" % ", ".join(bad[:5]))
if unwinder == "libgcc":
    # frame-less code: only a table-driven unwinder finds the caller
    for fn in ("leak_small", "leak_big", "cache_fill"):
        if callers.get(fn) != {"main"}:
            errs.append("%s: callers %r, want main" % (fn, callers.get(fn)))
    if callers.get("leak_threaded") != {"thread_main"}:
        errs.append("leak_threaded: callers %r, want thread_main" % (callers.get("leak_threaded"),))
for e in errs:
    print("    " + e)
sys.exit(1 if errs else 0)
EOF
  then
    pass "leaky under the musl preload ($unwinder unwinder): gwmem leaks names leak_small 10 x 24 B, leak_big 3 x 5000 B, leak_threaded 14 x 100 B, cache_fill 5 x 200 B$([ "$unwinder" = libgcc ] && echo ', each called from main / thread_main')"
  else
    fail "leaky under the musl preload ($unwinder unwinder): see $json, $out/leaks-$unwinder.txt"
  fi
}
leak_check libgcc
leak_check frame-pointer
if grep -q "cannot load" "$out/leaky-libgcc.err"; then
  fail "the libgcc unwinder did not load: $(head -1 "$out/leaky-libgcc.err")"
fi
rm -rf "$shm"

echo "musl-test: $fails failed"
[ $fails -eq 0 ]
