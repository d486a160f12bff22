#!/usr/bin/env bash
# config-test.sh PRELOAD PROGRAM [ARGS...]
#
# A bad configuration never stops the host: for each kind of bad input the
# preloaded PROGRAM still runs and succeeds, and stderr carries exactly one
# "gwmem:" line naming the file (and the line and key where there is one).
# Also: GWMEM_MEMORY_POOL_ENABLED=false (pass-through) keeps PROGRAM working.
set -u
preload=$1; shift
if ! nm -D --defined-only "$preload" 2>/dev/null | grep -qw malloc; then
  echo "SKIP: $preload does not define malloc yet"
  exit 77
fi
tmp=$(mktemp -d /tmp/gwmem-config-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail=0

# run NAME EXPECT... : run PROGRAM under the preload with the current
# GWMEM_CONFIG / env, then require exit 0, one gwmem: line, and each EXPECT in it.
run() {
  local name=$1; shift
  LD_PRELOAD=$preload "$@" >"$tmp/out" 2>"$tmp/err"
  local rc=$?
  mapfile -t lines < <(grep '^gwmem: ' "$tmp/err" | grep -v -i 'statistic')
  if [ "$rc" -ne 0 ]; then
    echo "FAIL $name: program exited $rc"; sed 's/^/  stderr: /' "$tmp/err" | head -5; fail=1; return
  fi
  if [ "${#lines[@]}" -ne 1 ]; then
    echo "FAIL $name: ${#lines[@]} gwmem: lines on stderr, want 1"; sed 's/^/  stderr: /' "$tmp/err" | head -5
    fail=1; return
  fi
  local want
  for want in "${expects[@]}"; do
    if [[ "${lines[0]}" != *"$want"* ]]; then
      echo "FAIL $name: '${lines[0]}' does not contain '$want'"; fail=1; return
    fi
  done
  echo "ok   $name: ${lines[0]}"
}

cfg=$tmp/unknown.toml
printf '[memory]\npool_enabled = true\n\n[memory_pool]\nmax_chunk = 50\n' >"$cfg"
expects=("$cfg:5:" "max_chunk")
GWMEM_CONFIG=$cfg run unknown-key "$@"

cfg=$tmp/badvalue.toml
printf '# gateway\n[memory_pool]\nmax_chunks = banana\nblocks_per_chunk = 256\n' >"$cfg"
expects=("$cfg:3:" "max_chunks")
GWMEM_CONFIG=$cfg run bad-value "$@"

cfg=$tmp/range.toml
printf '[compaction]\nfragmentation_threshold = 0.5\n[memory_pool]\nblocks_per_chunk = 1\n' >"$cfg"
expects=("$cfg:4:" "blocks_per_chunk")
GWMEM_CONFIG=$cfg run out-of-range "$@"

cfg=$tmp/bool.toml
printf '[leak_detection]\ntracking_enabled = maybe\n' >"$cfg"
expects=("$cfg:2:" "tracking_enabled")
GWMEM_CONFIG=$cfg run bad-bool "$@"

mkdir "$tmp/dir.toml"
expects=("$tmp/dir.toml")
GWMEM_CONFIG=$tmp/dir.toml run directory "$@"

cfg=$tmp/huge.toml
{ echo '[memory]'; for i in $(seq 1 20000); do echo "# padding line $i of a file far too large"; done; } >"$cfg"
expects=("$cfg")
GWMEM_CONFIG=$cfg run huge-file "$@"

expects=("$tmp/missing.toml")
GWMEM_CONFIG=$tmp/missing.toml run missing-file "$@"

expects=("GWMEM_MEMORY_POOL_MAX_CHUNKS")
GWMEM_CONFIG=/dev/null GWMEM_MEMORY_POOL_MAX_CHUNKS=lots run bad-env "$@"

# pass-through: pools off, the program still works and nothing is printed
GWMEM_CONFIG=/dev/null GWMEM_MEMORY_POOL_ENABLED=false LD_PRELOAD=$preload "$@" >"$tmp/out" 2>"$tmp/err"
rc=$?
if [ $rc -ne 0 ] || grep -q '^gwmem: ' "$tmp/err"; then
  echo "FAIL pool-disabled: exit $rc"; sed 's/^/  stderr: /' "$tmp/err" | head -5; fail=1
else
  echo "ok   pool-disabled: GWMEM_MEMORY_POOL_ENABLED=false runs as a pass-through: $(tail -1 "$tmp/out")"
fi
exit $fail
