#!/usr/bin/env bash
# footprint-test.sh GWMEM PRELOAD LEAKY [TABLE_OUT]
#
# What a segment costs, checked with stat/du (never timings):
#   ground-truth  1,200 live allocations (leaky million 1200): du of the
#                 segment <= 64 N + 160 S + 256 KiB, and under 1 MiB
#   100k          100,000 live allocations: the same bound, and the same du at
#                 max_tracked_allocations 4,000,000 as at the default
#   subshells     200 $(...) subshells of a tracked dash leave nothing in
#                 shm_dir (children that exec or exit soon write no file)
#   sigkill       a SIGKILLed process leaves a segment holding its live data
#                 only (bounded as above); `gwmem ps` shows it, `gwmem clean`
#                 removes it
#   setuid        a process that drops root before a normal exit cannot
#                 unlink its segment: it is left with 0 bytes; `gwmem ps`
#                 shows it as empty, `gwmem clean` removes it (root only)
#   full-tmpfs    a 256 KiB tmpfs as shm_dir (root only) and a small
#                 max_segment_bytes: 100,000 allocations are served, the
#                 untracked ones counted, no SIGBUS
#   pid-namespace the segment of a live process in another PID namespace
#                 is kept by `gwmem clean` and shown running by `gwmem ps`
#   planted       another user's file with the process's segment name: the
#                 process is tracked under a suffixed name, the CLI reads that
#                 one and refuses the planted one
#   mosquitto     idle mosquitto under full tracking: VmRSS + segment du
#                 within 3 MiB of VmRSS under glibc (when installed)
# With TABLE_OUT, the footprint table of docs/tracking.md is written there.
set -u
gwmem=$1 preload=$2 leaky=$3 table_out=${4:-}
py=$(command -v python3) || { echo "SKIP: python3 missing"; exit 77; }

tmp=$(mktemp -d /tmp/gwmem-footprint.XXXXXX)
chmod 755 "$tmp"
pids=()
mnt=""
fail=0
cleanup() {
  local p
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  [ -n "$mnt" ] && umount "$mnt" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
bad() { echo "FAIL $*"; fail=1; }

export GWMEM_CONFIG=/nonexistent/gwmem.toml GWMEM_SHM_DIR=$tmp/shm
mkdir -p "$tmp/shm"

du_b() { echo $(( $(stat -c %b "$1") * $(stat -c %B "$1") )); }
seg_of() { ls "$GWMEM_SHM_DIR"/gwmem."$1".* 2>/dev/null | head -1; }

# start_leaky NAME ARGS... : leaky under the preload, pid in $lpid, stdin kept open on fd 9
start_leaky() {
  local name=$1; shift
  mkfifo "$tmp/$name.in"
  env LD_PRELOAD="$preload" GWMEM_LEAK_DETECTION_SHM_DIR="$GWMEM_SHM_DIR" "${extra_env[@]}" \
    "$leaky" "$@" <"$tmp/$name.in" >"$tmp/$name.out" 2>"$tmp/$name.err" &
  lpid=$!
  pids+=("$lpid")
  exec 9>"$tmp/$name.in"
  for _ in $(seq 100); do grep -q READY "$tmp/$name.out" 2>/dev/null && return 0; sleep 0.1; done
  echo "FAIL $name: leaky did not start"; cat "$tmp/$name.err"; return 1
}
stop_leaky() { exec 9>&-; wait "$lpid"; }

# check_bound NAME PID [FLOOR]: du of the segment against 64 N + 160 S + 256 KiB (+ FLOOR);
# sets row="du N S apparent"
check_bound() {
  local name=$1 pid=$2 floor=${3:-0} seg stats n s du app
  seg=$(seg_of "$pid")
  [ -n "$seg" ] || { bad "$name: no segment"; return 1; }
  stats=$("$gwmem" stats "$pid" --json 2>"$tmp/stats.err") ||
    { bad "$name: gwmem stats exited $?: $(cat "$tmp/stats.err")"; return 1; }
  read -r n s < <(echo "$stats" | "$py" -c 'import json,sys; d=json.load(sys.stdin); print(d["live_count"], d["stacks_used"])')
  du=$(du_b "$seg"); app=$(stat -c %s "$seg")
  if [ "$du" -gt $(( 64 * n + 160 * s + 262144 + floor )) ]; then
    bad "$name: du $du > 64*$n + 160*$s + 256 KiB + $floor"
  else
    echo "ok   $name: du $du bytes for $n live allocations, $s stacks (bound $(( 64 * n + 160 * s + 262144 ))), apparent $app"
  fi
  row="$du $n $s $app"
}

table=()

# --- ground truth and 100k, at three configurations ------------------------
for conf in default small large; do
  case $conf in
    default) extra_env=(GWMEM_X=1) ;;
    small) extra_env=(GWMEM_LEAK_DETECTION_MAX_TRACKED_ALLOCATIONS=16384 GWMEM_LEAK_DETECTION_MAX_STACKS=2048
                      GWMEM_LEAK_DETECTION_MAX_FRAMES=8 GWMEM_LEAK_DETECTION_MAX_SEGMENT_BYTES=2097152) ;;
    large) extra_env=(GWMEM_LEAK_DETECTION_MAX_TRACKED_ALLOCATIONS=4000000 GWMEM_LEAK_DETECTION_MAX_STACKS=65536
                      GWMEM_LEAK_DETECTION_MAX_SEGMENT_BYTES=268435456) ;;
  esac
  # above 262,144 tracked allocations the table has one stripe per 2,048
  # (1024 at 4,000,000); small arrays are packed, so no floor per stripe
  floor=0
  start_leaky "gt-$conf" million 1200 || { fail=1; continue; }
  check_bound "ground-truth ($conf)" "$lpid" $floor
  gt=$row
  [ "${row%% *}" -lt $((1048576 + floor)) ] || bad "ground-truth ($conf): ${row%% *} bytes, not under 1 MiB (+ floor $floor)"
  stop_leaky
  [ -z "$(seg_of "$lpid")" ] || bad "ground-truth ($conf): segment left after a normal exit"
  start_leaky "100k-$conf" million 100000 || { fail=1; continue; }
  check_bound "100k ($conf)" "$lpid" $floor
  hk=$row
  stop_leaky
  table+=("$conf|$gt|$hk")
done
# the limits cost address space, not memory: default and large within 10 % + 256 KiB
# (1024 stripes x a 256-byte first array)
d100=$(printf '%s\n' "${table[@]}" | awk -F'|' '$1=="default"{split($3,a," "); print a[1]}')
l100=$(printf '%s\n' "${table[@]}" | awk -F'|' '$1=="large"{split($3,a," "); print a[1]}')
if [ -n "$d100" ] && [ -n "$l100" ]; then
  if [ $(( l100 * 10 )) -gt $(( d100 * 11 + 10 * 1024 * 256 )) ]; then bad "100k: du $l100 at 4,000,000 vs $d100 at the default"
  else echo "ok   100k: du $l100 at max_tracked_allocations 4,000,000, $d100 at the default"; fi
fi
extra_env=(GWMEM_X=1)

# --- 200 subshells of a tracked dash ---------------------------------------
if command -v dash >/dev/null; then
  before=$(ls "$GWMEM_SHM_DIR" | wc -l)
  LD_PRELOAD=$preload GWMEM_LEAK_DETECTION_SHM_DIR=$GWMEM_SHM_DIR dash -c \
    'i=0; while [ $i -lt 200 ]; do x=$(true); y=$(echo $i); i=$((i + 1)); done' || bad "subshells: dash failed"
  left=$(ls "$GWMEM_SHM_DIR" | wc -l)
  bytes=$(du -s -B1 "$GWMEM_SHM_DIR" | cut -f1)
  # dash itself leaves with _exit (no exit handlers): the preload's _exit
  # removes its segment as a normal exit would
  if [ "$left" -gt "$before" ] || [ "$bytes" -gt 2097152 ]; then
    bad "subshells: $((left - before)) segments left ($bytes bytes)"
  else
    echo "ok   subshells: 400 subshells and dash itself (it exits with _exit) left no segment"
  fi
  rm -f "$GWMEM_SHM_DIR"/*
else
  echo "skip subshells: dash not installed"
fi

# --- _exit: as a normal exit, for the process that made the segment only ----
# A forked child's _exit and a vfork child's (subprocess's exec of a missing
# program ends in _exit(255) in the child) leave the parent's segment; the
# parent's own _exit removes it, or marks it exited when it is kept.
for keep in false true; do
  LD_PRELOAD=$preload GWMEM_LEAK_DETECTION_SHM_DIR=$GWMEM_SHM_DIR \
    GWMEM_LEAK_DETECTION_KEEP_SEGMENT_ON_EXIT=$keep "$py" -c '
import os, subprocess, sys
d = os.environ["GWMEM_LEAK_DETECTION_SHM_DIR"]
mine = lambda: [f for f in os.listdir(d) if f.startswith("gwmem.%d." % os.getpid())]
keep = [bytearray(100) for _ in range(1000)]
had = len(mine())
pid = os.fork()
if pid == 0:
    os._exit(0)
os.waitpid(pid, 0)
after_fork = len(mine())
try:
    subprocess.run(["/nonexistent/gwmem-no-such-program"])
except OSError:
    pass
print(os.getpid(), had, after_fork, len(mine()), flush=True)
os._exit(0)
' >"$tmp/exit.out" 2>"$tmp/exit.err" || bad "_exit ($keep): python failed: $(cat "$tmp/exit.err")"
  read -r epid had after_fork after_spawn <"$tmp/exit.out"
  if [ "$had $after_fork $after_spawn" != "1 1 1" ]; then
    bad "_exit ($keep): the parent's segment went with a child's _exit (had/after fork/after failed spawn: $had $after_fork $after_spawn)"
  elif [ "$keep" = false ] && [ -n "$(seg_of "$epid")" ]; then
    bad "_exit: the segment was left behind"
  elif [ "$keep" = true ] && ! "$gwmem" ps | grep -E "^$epid +exited" >/dev/null; then
    bad "_exit (kept): gwmem ps does not show it exited: $("$gwmem" ps | grep -E "^$epid " || echo none)"
  else
    echo "ok   _exit (keep_segment_on_exit $keep): children's _exit left the parent's segment, the parent's own $( [ "$keep" = true ] && echo "marked it exited" || echo "removed it")"
  fi
  rm -f "$GWMEM_SHM_DIR"/gwmem."$epid".*
done

# --- SIGKILL: a bounded post-mortem segment ---------------------------------
if start_leaky sigkill million 20000; then
  kill -KILL "$lpid"; wait "$lpid" 2>/dev/null; exec 9>&-
  seg=$(seg_of "$lpid")
  if [ -z "$seg" ]; then bad "sigkill: no segment left to read"
  else
    du=$(du_b "$seg")
    [ "$du" -le $(( 64 * 20000 + 160 * 64 + 262144 )) ] || bad "sigkill: du $du"
    "$gwmem" ps | grep -E "^$lpid +crashed" >/dev/null || bad "sigkill: gwmem ps does not show it crashed"
    "$gwmem" clean >/dev/null || bad "sigkill: gwmem clean failed"
    [ -z "$(seg_of "$lpid")" ] || bad "sigkill: gwmem clean left it"
    echo "ok   sigkill: $du bytes left for 20,000 live allocations; ps shows it, clean removes it"
  fi
fi

# --- a daemon that drops root ------------------------------------------------
if [ "$(id -u)" -eq 0 ]; then
  LD_PRELOAD=$preload GWMEM_LEAK_DETECTION_SHM_DIR=$GWMEM_SHM_DIR "$py" -c '
import os
keep = [bytearray(100) for _ in range(5000)]
os.setgid(65534); os.setuid(65534)
print(os.getpid(), flush=True)
' >"$tmp/setuid.out" 2>"$tmp/setuid.err" || bad "setuid: python failed: $(cat "$tmp/setuid.err")"
  spid=$(cat "$tmp/setuid.out")
  seg=$(seg_of "$spid")
  if [ -z "$seg" ]; then bad "setuid: no segment left (expected an emptied one)"
  else
    size=$(stat -c %s "$seg"); du=$(du_b "$seg")
    [ "$size" -eq 0 ] && [ "$du" -eq 0 ] || bad "setuid: segment left with $size bytes ($du in memory)"
    "$gwmem" ps | grep -E "^$spid +empty" >/dev/null || bad "setuid: gwmem ps does not show it empty"
    "$gwmem" clean >/dev/null
    [ -z "$(seg_of "$spid")" ] || bad "setuid: gwmem clean left it"
    echo "ok   setuid: the segment it could not remove was left with 0 bytes; clean removed it"
  fi
else
  echo "skip setuid: not root"
fi
left=$(du -s -B1 "$GWMEM_SHM_DIR" | cut -f1)
echo "note shm_dir holds $left bytes after these runs"

# --- a process in another PID namespace: its pid means nothing here ---------
if [ "$(id -u)" -eq 0 ] && unshare --pid --fork --mount-proc true 2>/dev/null; then
  rm -f "$GWMEM_SHM_DIR"/*
  mkfifo "$tmp/ns.in"
  unshare --pid --fork --mount-proc env LD_PRELOAD="$preload" GWMEM_LEAK_DETECTION_SHM_DIR="$GWMEM_SHM_DIR" \
    "$leaky" sites <"$tmp/ns.in" >"$tmp/ns.out" 2>&1 &
  nspid=$!; pids+=("$nspid")
  exec 8>"$tmp/ns.in"
  for _ in $(seq 100); do grep -q READY "$tmp/ns.out" 2>/dev/null && break; sleep 0.1; done
  sleep 1.5   # one heartbeat at least
  seg=$(ls "$GWMEM_SHM_DIR"/gwmem.* 2>/dev/null | head -1)
  if [ -z "$seg" ]; then bad "pid-namespace: no segment"
  else
    "$gwmem" clean >/dev/null
    [ -e "$seg" ] || bad "pid-namespace: gwmem clean removed the segment of a live process"
    "$gwmem" ps | grep -E "running .*leaky sites" >/dev/null || bad "pid-namespace: gwmem ps does not show it running"
    echo "ok   pid-namespace: $(basename "$seg") kept by clean and shown running while its process lives"
  fi
  exec 8>&-; wait "$nspid" 2>/dev/null
else
  echo "skip pid-namespace: unshare --pid not available"
fi

# --- a planted segment name --------------------------------------------------
# gwmem.<pid>.<starttime> is predictable: another user's file of that name
# must not deny the process tracking, nor be shown as its segment
if [ "$(id -u)" -eq 0 ]; then
  rm -f "$GWMEM_SHM_DIR"/*
  mkfifo "$tmp/pl.in"
  sh -c 'sleep 1; exec "$@"' sh env LD_PRELOAD="$preload" GWMEM_LEAK_DETECTION_SHM_DIR="$GWMEM_SHM_DIR" \
    "$leaky" sites <"$tmp/pl.in" >"$tmp/pl.out" 2>"$tmp/pl.err" &
  plpid=$!; pids+=("$plpid")
  exec 7>"$tmp/pl.in"
  plst=$(awk '{print $22}' "/proc/$plpid/stat")
  forged=$GWMEM_SHM_DIR/gwmem.$plpid.$plst
  printf 'forged' >"$forged"; chown 65534 "$forged"
  for _ in $(seq 100); do grep -q READY "$tmp/pl.out" 2>/dev/null && break; sleep 0.1; done
  real=$(ls "$GWMEM_SHM_DIR"/gwmem."$plpid"."$plst".* 2>/dev/null | head -1)
  if [ -z "$real" ] || [ "$(stat -c %u "$real")" != 0 ]; then
    bad "planted: no segment of its own next to the planted name ($(cat "$tmp/pl.err"))"
  else
    out=$("$gwmem" stats "$plpid" 2>&1) || bad "planted: gwmem stats failed: $out"
    echo "$out" | grep -F "$real" >/dev/null || bad "planted: gwmem stats did not read $real: $out"
    mv "$real" "$real.moved"
    out=$("$gwmem" stats "$plpid" 2>&1); rc=$?
    [ $rc -eq 3 ] && echo "$out" | grep -q "not its segment" || bad "planted: the forged file was read (exit $rc): $out"
    mv "$real.moved" "$real"
    echo "ok   planted: tracked in $(basename "$real"); the planted file is refused"
  fi
  exec 7>&-; wait "$plpid" 2>/dev/null
  rm -f "$GWMEM_SHM_DIR"/*

  # the same, across an exec: the new image removes its previous image's
  # suffixed file (same pid and start time), never the planted one
  mkfifo "$tmp/ple.go" "$tmp/ple.in"
  sh -c 'read x <"$1"; shift; exec "$@"' sh "$tmp/ple.go" env LD_PRELOAD="$preload" \
    GWMEM_LEAK_DETECTION_SHM_DIR="$GWMEM_SHM_DIR" LEAKY="$leaky" \
    dash -c 'x=$(echo a); exec "$LEAKY" sites' <"$tmp/ple.in" >"$tmp/ple.out" 2>"$tmp/ple.err" &
  plpid=$!; pids+=("$plpid")
  exec 7>"$tmp/ple.in"
  plst=$(awk '{print $22}' "/proc/$plpid/stat")
  forged=$GWMEM_SHM_DIR/gwmem.$plpid.$plst
  printf 'forged' >"$forged"; chown 65534 "$forged"
  echo go >"$tmp/ple.go"
  for _ in $(seq 100); do grep -q READY "$tmp/ple.out" 2>/dev/null && break; sleep 0.1; done
  n=$(ls "$GWMEM_SHM_DIR"/gwmem."$plpid"."$plst".* 2>/dev/null | wc -l)
  if ! grep -q READY "$tmp/ple.out"; then
    bad "planted+exec: the program did not start ($(cat "$tmp/ple.err"))"
  elif [ "$n" -ne 1 ] || [ ! -f "$forged" ]; then
    bad "planted+exec: $n suffixed segments after one exec (want 1), planted file $( [ -f "$forged" ] && echo kept || echo removed)"
  else
    echo "ok   planted+exec: one segment after an exec, the planted file left alone"
  fi
  exec 7>&-; wait "$plpid" 2>/dev/null
  rm -f "$GWMEM_SHM_DIR"/*
else
  echo "skip planted: not root"
fi

# --- a full tmpfs --------------------------------------------------------------
if [ "$(id -u)" -eq 0 ] && mkdir -p "$tmp/small" && mount -t tmpfs -o size=256k,mode=1777 gwmem-small "$tmp/small" 2>/dev/null; then
  mnt=$tmp/small
  for sub in tmpfs cap; do
    if [ $sub = tmpfs ]; then dir=$mnt; extra_env=(GWMEM_X=1); else dir=$tmp/shm; extra_env=(GWMEM_LEAK_DETECTION_MAX_SEGMENT_BYTES=262144); fi
    GWMEM_SHM_DIR=$dir start_leaky "full-$sub" million 100000 || { fail=1; continue; }
    GWMEM_SHM_DIR=$dir "$gwmem" stats "$lpid" --json >"$tmp/full.json" || bad "full-$sub: gwmem stats"
    stop_leaky; rc=$?
    [ $rc -eq 0 ] || bad "full-$sub: leaky exited with $rc (SIGBUS is 135)"
    "$py" -c '
import json, sys
d = json.load(open(sys.argv[2])); c = d["counters"]
untracked = c["untracked_table_full"] + c.get("untracked_segment_full", 0)
assert untracked > 0, c
print("ok   full-%s: %d tracked, %d untracked, no SIGBUS" % (sys.argv[1], d["live_count"], untracked))
' "$sub" "$tmp/full.json" || bad "full-$sub: no untracked allocations counted"
  done
  extra_env=(GWMEM_X=1)
  umount "$mnt" && mnt=""
else
  echo "skip full-tmpfs: cannot mount a tmpfs here"
fi

# --- idle mosquitto -------------------------------------------------------------
mosq=$(command -v mosquitto || ls /usr/sbin/mosquitto 2>/dev/null)
if [ -n "$mosq" ]; then
  rss() { awk '/^VmRSS/ {print $2 * 1024}' "/proc/$1/status"; }
  free_port() { "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
  for mode in glibc gwmem; do
    port=$(free_port)
    printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$port" >"$tmp/m.conf"
    [ "$(id -u)" -eq 0 ] && echo "user root" >>"$tmp/m.conf"
    if [ $mode = gwmem ]; then
      LD_PRELOAD=$preload GWMEM_LEAK_DETECTION_SHM_DIR=$GWMEM_SHM_DIR "$mosq" -c "$tmp/m.conf" >/dev/null 2>&1 &
    else
      "$mosq" -c "$tmp/m.conf" >/dev/null 2>&1 &
    fi
    mpid=$!; pids+=("$mpid")
    sleep 1.5
    r=$(rss "$mpid"); seg=$(seg_of "$mpid")
    shm=0; [ -n "$seg" ] && shm=$(du_b "$seg")
    eval "rss_$mode=$r shm_$mode=$shm"
    kill -TERM "$mpid"; wait "$mpid" 2>/dev/null
  done
  extra=$(( rss_gwmem + shm_gwmem - rss_glibc ))
  if [ "$extra" -gt 3145728 ]; then bad "mosquitto: $extra bytes over glibc (rss $rss_gwmem + shm $shm_gwmem vs $rss_glibc)"
  else echo "ok   mosquitto idle: VmRSS $rss_gwmem + segment $shm_gwmem bytes vs glibc VmRSS $rss_glibc (+$extra)"; fi
else
  echo "skip mosquitto: not installed"
fi

if [ -n "$table_out" ]; then
  {
    echo "| configuration | ~1,200 live: du (live allocations, stacks) | 100,000 live: du (stacks) | address space |"
    echo "|---|---|---|---|"
    for t in "${table[@]}"; do
      IFS='|' read -r conf gt hk <<<"$t"
      read -r gd gn gs ga <<<"$gt"; read -r hd hn hs ha <<<"$hk"
      printf '| %s | %d KiB (%d, %d) | %d KiB (%d) | %d MiB |\n' "$conf" $((gd / 1024)) "$gn" "$gs" $((hd / 1024)) "$hs" $((ha / 1048576))
    done
  } >"$table_out"
fi
exit $fail
