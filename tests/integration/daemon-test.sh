#!/usr/bin/env bash
# daemon-test.sh WHICH PRELOAD GWMEM GWDEMO
#
# Start a real daemon (WHICH: mosquitto | redis | gwdemo) under the preload on
# 127.0.0.1 with a free port, put a bounded load on it, then inspect it live
# with `gwmem stats PID` and `gwmem leaks PID --older-than 0 --json` and check
# the numbers are plausible.  mosquitto and redis are also run daemonized
# (they fork; the child keeps tracking in its own segment).  Only processes
# started here are stopped, by pid, with timeouts.  Exit 77 when the daemon,
# its client tools or the gwmem CLI are missing.
set -u
which=$1 preload=$2 gwmem=${3:-} gwdemo=${4:-}

skip() { echo "SKIP: $*"; exit 77; }
[ -n "$gwmem" ] && [ -x "$gwmem" ] || skip "the gwmem CLI is not built"
nm -D --defined-only "$preload" 2>/dev/null | grep -qw malloc || skip "$preload does not define malloc yet"
py=/usr/bin/python3; [ -x "$py" ] || py=$(command -v python3) || skip "python3 missing"
case $which in
  mosquitto) for p in mosquitto mosquitto_pub mosquitto_sub; do
               command -v $p >/dev/null || [ -x /usr/sbin/$p ] || skip "$p not installed"; done ;;
  redis) for p in redis-server redis-benchmark redis-cli; do
           command -v $p >/dev/null || skip "$p not installed"; done ;;
  gwdemo) [ -x "$gwdemo" ] || skip "gwdemo not built" ;;
esac
PATH=$PATH:/usr/sbin

tmp=$(mktemp -d /tmp/gwmem-daemon-$which.XXXXXX)
chmod 755 "$tmp"
pids=()
fail=0

stop_pid() {   # stop_pid PID: TERM, wait up to 5 s, then KILL
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  echo "note: pid $pid ignored SIGTERM, killing"
  kill -KILL "$pid" 2>/dev/null
}
cleanup() {
  local p
  for p in "${pids[@]}"; do stop_pid "$p"; done
  wait 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

free_port() {
  "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_port() {  # wait_port PORT: up to 10 s for a listener
  local i
  for i in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
wait_pidfile() {  # wait_pidfile FILE: up to 10 s; prints the pid
  local i
  for i in $(seq 100); do
    if [ -s "$1" ]; then
      local p; p=$(tr -dc 0-9 <"$1")
      [ -n "$p" ] && kill -0 "$p" 2>/dev/null && { echo "$p"; return 0; }
    fi
    sleep 0.1
  done
  return 1
}

# inspect NAME PID [LEAK_FUNCTION]: gwmem stats and leaks on a live process.
inspect() {
  local name=$1 pid=$2 expect_fn=${3:-}
  local rss_kb
  rss_kb=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null)
  # A daemonized (forked) process publishes its own segment on its first
  # allocation after it has lived a second (docs/tracking.md, fork): wait up
  # to 10 s for it to appear.
  local i
  for i in $(seq 50); do
    "$gwmem" ps --json 2>/dev/null | grep -q "\"pid\": $pid, \"state\": \"running\"" && break
    sleep 0.2
  done
  if ! timeout 20 "$gwmem" stats "$pid" >"$tmp/stats.txt" 2>"$tmp/stats.err"; then
    echo "FAIL $name: gwmem stats $pid exited $?"; cat "$tmp/stats.err"; fail=1; return
  fi
  if [ ! -s "$tmp/stats.txt" ]; then
    echo "FAIL $name: gwmem stats printed nothing"; fail=1; return
  fi
  echo "ok   $name: gwmem stats $pid ($(wc -l <"$tmp/stats.txt") lines)"
  sed 's/^/       /' "$tmp/stats.txt" | head -12
  if timeout 20 "$gwmem" stats "$pid" --json >"$tmp/stats.json" 2>/dev/null; then
    # the pools served this daemon: some class shows allocations and chunks,
    # and the pid matches
    if ! "$py" - "$tmp/stats.json" "$pid" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
problems = []
if d.get("pid") != int(sys.argv[2]):
    problems.append("pid %r" % d.get("pid"))
classes = d.get("classes", [])
alloc = sum(c.get("total_allocated", 0) for c in classes)
chunks = sum(c.get("total_chunks", 0) for c in classes)
if alloc <= 0 or chunks <= 0:
    problems.append("pool classes show %d allocations in %d chunks" % (alloc, chunks))
# allocations up to the largest class come from the pools: the pools' active
# blocks account for most of what the allocation table holds
active = sum(c.get("active_blocks", 0) for c in classes)
live = d.get("live_count", 0)
if live > 1000 and active < live // 2:
    problems.append("%d active pool blocks for %d live tracked allocations" % (active, live))
for c in classes:
    if c.get("total_freed", 0) > c.get("total_allocated", 0):
        problems.append("class %s freed more than allocated" % c.get("block_size"))
        break
print("       stats --json: %d classes, %d pool allocations, %d chunks, %d live tracked allocations"
      % (len(classes), alloc, chunks, d.get("live_count", -1)))
if problems:
    print("implausible stats: " + "; ".join(problems))
    sys.exit(1)
PY
    then
      echo "FAIL $name: gwmem stats --json:"; head -c 400 "$tmp/stats.json"; echo; fail=1
    fi
  fi
  if ! timeout 30 "$gwmem" leaks "$pid" --older-than 0 --json >"$tmp/leaks.json" 2>"$tmp/leaks.err"; then
    echo "FAIL $name: gwmem leaks $pid --older-than 0 --json exited $?"; cat "$tmp/leaks.err"; fail=1; return
  fi
  if ! "$py" - "$tmp/leaks.json" "$pid" "${rss_kb:-0}" "$expect_fn" <<'PY'
import json, sys
path, pid, rss_kb, expect_fn = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
d = json.load(open(path))
problems = []
if d.get("pid") != pid:
    problems.append("pid %r, want %d" % (d.get("pid"), pid))
sites = d.get("sites")
if not isinstance(sites, list) or not sites:
    problems.append("no allocation sites")
    sites = []
count = sum(s.get("count", 0) for s in sites)
nbytes = sum(s.get("bytes", 0) for s in sites)
for s in sites:
    if s.get("count", 0) <= 0 or s.get("bytes", -1) < 0 or not isinstance(s.get("frames"), list):
        problems.append("bad site %r" % {k: s.get(k) for k in ("count", "bytes")})
        break
    if s.get("oldest_age_s", -1) < 0:
        problems.append("negative age")
        break
# Plausible: something is live, and no more than the process's address
# space could hold (RSS is a loose bound: untouched pages are not resident).
if nbytes <= 0 or count <= 0:
    problems.append("%d bytes in %d allocations live" % (nbytes, count))
if rss_kb and nbytes > rss_kb * 1024 * 4:
    problems.append("%d live bytes, far above RSS %d kB" % (nbytes, rss_kb))
ranked = [s.get("bytes", 0) for s in sites]
if ranked != sorted(ranked, reverse=True):
    problems.append("sites not ranked by bytes")
fns = [f.get("function") or "" for s in sites for f in s.get("frames", [])]
if expect_fn:
    hit = [s for s in sites if any((f.get("function") or "") == expect_fn for f in s.get("frames", []))]
    if not hit:
        problems.append("no site with function %s (functions seen: %s)" % (expect_fn, sorted(set(fns))[:15]))
    else:
        hits = sum(s["count"] for s in hit)
        print("       leak site %s: %d allocations, %d bytes" % (expect_fn, hits, sum(s["bytes"] for s in hit)))
        if hits < 1000:
            problems.append("%s holds %d allocations, want >= 1000 (one per QoS 1 message)" % (expect_fn, hits))
print("       %d sites, %d live allocations, %d live bytes, RSS %d kB" % (len(sites), count, nbytes, rss_kb))
if problems:
    print("implausible: " + "; ".join(problems))
    sys.exit(1)
PY
  then
    echo "FAIL $name: gwmem leaks --json output:"; head -c 600 "$tmp/leaks.json"; echo; fail=1; return
  fi
  echo "ok   $name: gwmem leaks $pid --older-than 0 --json"
}

export GWMEM_CONFIG=/dev/null

case $which in
mosquitto)
  for mode in foreground daemonized; do
    port=$(free_port)
    conf=$tmp/mosquitto-$mode.conf
    pidfile=$tmp/mosquitto-$mode.pid
    {
      echo "listener $port 127.0.0.1"
      echo "allow_anonymous true"
      echo "persistence false"
      echo "log_dest file $tmp/mosquitto-$mode.log"
      echo "pid_file $pidfile"
      [ "$(id -u)" -eq 0 ] && echo "user root"
    } >"$conf"
    if [ $mode = foreground ]; then
      LD_PRELOAD=$preload mosquitto -c "$conf" >"$tmp/mosq.out" 2>&1 &
      pid=$!
      pids+=("$pid")
    else
      LD_PRELOAD=$preload mosquitto -c "$conf" -d >"$tmp/mosq.out" 2>&1
      pid=$(wait_pidfile "$pidfile") || { echo "FAIL: daemonized mosquitto wrote no pid file"; cat "$tmp/mosq.out"; exit 1; }
      pids+=("$pid")
    fi
    wait_port "$port" || { echo "FAIL: mosquitto ($mode) not listening on $port"; cat "$tmp/mosq.out" "$tmp/mosquitto-$mode.log" 2>/dev/null; exit 1; }
    n=3000
    timeout 30 mosquitto_sub -h 127.0.0.1 -p "$port" -t 'gw/#' -q 1 -C $n >"$tmp/sub.out" 2>"$tmp/sub.err" &
    sub=$!
    sleep 0.5
    for t in a b c; do
      seq 1 $((n / 3)) | sed "s/^/reading-$t-/" |
        timeout 30 mosquitto_pub -h 127.0.0.1 -p "$port" -t "gw/sensor/$t" -q 1 -l || { echo "FAIL: mosquitto_pub"; fail=1; }
    done
    wait $sub
    got=$(wc -l <"$tmp/sub.out")
    if [ "$got" -ne $n ]; then
      echo "FAIL mosquitto ($mode): subscriber got $got of $n messages"; fail=1
    else
      echo "ok   mosquitto ($mode, pid $pid, port $port): $n QoS 1 messages published and received"
    fi
    inspect "mosquitto-$mode" "$pid"
    stop_pid "$pid"
  done
  ;;
redis)
  for mode in foreground daemonized; do
    port=$(free_port)
    pidfile=$tmp/redis-$mode.pid
    args=(--port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$tmp" --logfile "$tmp/redis-$mode.log")
    if [ $mode = foreground ]; then
      LD_PRELOAD=$preload redis-server "${args[@]}" --daemonize no >"$tmp/redis.out" 2>&1 &
      pid=$!
      pids+=("$pid")
    else
      LD_PRELOAD=$preload redis-server "${args[@]}" --daemonize yes --pidfile "$pidfile" >"$tmp/redis.out" 2>&1
      pid=$(wait_pidfile "$pidfile") || { echo "FAIL: daemonized redis-server wrote no pid file"; cat "$tmp/redis.out"; exit 1; }
      pids+=("$pid")
    fi
    wait_port "$port" || { echo "FAIL: redis-server ($mode) not listening on $port"; cat "$tmp/redis.out" "$tmp/redis-$mode.log"; exit 1; }
    if ! timeout 60 redis-benchmark -h 127.0.0.1 -p "$port" -n 5000 -c 4 -q -t set,get,lpush,lpop,hset >"$tmp/bench.out" 2>&1; then
      echo "FAIL redis ($mode): redis-benchmark"; cat "$tmp/bench.out"; fail=1
    fi
    keys=$(timeout 10 redis-cli -h 127.0.0.1 -p "$port" dbsize)
    echo "ok   redis ($mode, pid $pid, port $port): redis-benchmark -n 5000: $(tr '\r' '\n' <"$tmp/bench.out" | grep -c 'requests per second') commands measured, dbsize $keys"
    inspect "redis-$mode" "$pid"
    stop_pid "$pid"
  done
  ;;
gwdemo)
  port=$(free_port)
  LD_PRELOAD=$preload "$gwdemo" serve "$port" >"$tmp/gwdemo.out" 2>&1 &
  pid=$!
  pids+=("$pid")
  wait_port "$port" || { echo "FAIL: gwdemo not listening"; cat "$tmp/gwdemo.out"; exit 1; }
  timeout 30 "$gwdemo" client "$port" 4000 4 || { echo "FAIL: gwdemo client"; fail=1; }
  inspect gwdemo "$pid" retry_entry_new
  stop_pid "$pid"
  ;;
*) echo "unknown daemon $which"; exit 2 ;;
esac
exit $fail
