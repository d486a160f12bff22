#!/usr/bin/env bash
# real-test.sh PRELOAD WHICH SRCDIR
#
# Run a real program (WHICH: python | sqlite | sort | gcc) without and with
# LD_PRELOAD=PRELOAD; the outputs must be identical.  Then run it once more
# with GWMEM_STATS=1 and require the pool statistics on stderr.  Exit 77 when
# the program is not installed.
set -u
preload=$1 which=$2 srcdir=$3
tmp=$(mktemp -d /tmp/gwmem-real-$which.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

need() {
  command -v "$1" >/dev/null 2>&1 || { echo "SKIP: $1 not installed"; exit 77; }
}

case $which in
  python)
    # the system interpreter, not a version-manager shim script
    py=/usr/bin/python3; [ -x "$py" ] || { need python3; py=$(command -v python3); }
    cmd=("$py" "$srcdir/workload.py")
    ;;
  sqlite)
    need sqlite3
    cat >"$tmp/db.sql" <<'SQL'
CREATE TABLE readings(id INTEGER PRIMARY KEY, device TEXT, value REAL, note TEXT);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 60000)
INSERT INTO readings(device, value, note)
  SELECT 'dev-' || (i % 700), (i * 37) % 1000 / 10.0, printf('%.*c', i % 90, 'x') FROM n;
CREATE INDEX readings_device ON readings(device);
SELECT device, count(*), round(avg(value), 3), sum(length(note)) FROM readings
  GROUP BY device ORDER BY sum(value) DESC, device LIMIT 8;
SELECT count(DISTINCT device), max(id) FROM readings WHERE value > 50;
UPDATE readings SET note = upper(note) || device WHERE id % 3 = 0;
DELETE FROM readings WHERE id % 5 = 0;
SELECT count(*), sum(length(note)) FROM readings;
SQL
    # a file database (created fresh for each run) exercises the pager too
    cmd=(sh -c 'rm -f "$1/t.db" && sqlite3 "$1/t.db" < "$1/db.sql"' sh "$tmp")
    ;;
  sort)
    need sort
    awk 'BEGIN { s = 7; for (i = 0; i < 200000; i++) { s = (s * 1103515245 + 12345) % 2147483648;
         printf "%d gw-%x %s\n", s % 100000, s, substr("abcdefghijklmnopqrstuvwxyz", s % 26 + 1) } }' \
      >"$tmp/in.txt"
    cmd=(sort -k2,2 -k1,1n -S 8M "$tmp/in.txt")
    ;;
  gcc)
    need gcc
    cat >"$tmp/prog.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
struct node { struct node *next; char name[32]; int v; };
static int cmp(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }
int main(void) {
	struct node *head = NULL;
	for (int i = 0; i < 100; i++) {
		struct node *n = malloc(sizeof *n);
		snprintf(n->name, sizeof n->name, "node-%d", i);
		n->v = (i * 37) % 101; n->next = head; head = n;
	}
	int v[100], k = 0;
	for (struct node *n = head; n; n = n->next) v[k++] = n->v;
	qsort(v, 100, sizeof v[0], cmp);
	printf("%d %d %d\n", v[0], v[50], v[99]);
	return 0;
}
C
    # compile (cc1, as and ld all run preloaded), then run the result
    cmd=(sh -c 'gcc -O2 -Wall -o "$1/prog" "$1/prog.c" && "$1/prog"' sh "$tmp")
    ;;
  *) echo "unknown program $which"; exit 2 ;;
esac

export GWMEM_CONFIG=/dev/null
unset GWMEM_STATS GWMEM_MEMORY_STATS_ON_EXIT

"${cmd[@]}" >"$tmp/plain.out" 2>"$tmp/plain.err"; rc1=$?
LD_PRELOAD=$preload "${cmd[@]}" >"$tmp/pre.out" 2>"$tmp/pre.err"; rc2=$?
if [ $rc1 -ne 0 ]; then
  echo "FAIL: $which exits $rc1 without the preload"; cat "$tmp/plain.err"; exit 1
fi
if [ $rc2 -ne 0 ]; then
  echo "FAIL: $which exits $rc2 under the preload"; head -20 "$tmp/pre.err"; exit 1
fi
if ! cmp -s "$tmp/plain.out" "$tmp/pre.out"; then
  echo "FAIL: $which output differs under the preload"
  diff "$tmp/plain.out" "$tmp/pre.out" | head -20; exit 1
fi
if grep -q '^gwmem: ' "$tmp/pre.err"; then
  echo "FAIL: $which: gwmem diagnostics under the preload:"; grep '^gwmem: ' "$tmp/pre.err" | head; exit 1
fi
echo "ok: $which gives the same $(wc -l <"$tmp/pre.out") lines ($(wc -c <"$tmp/pre.out") bytes) with and without the preload"

# GWMEM_STATS=1: the interposer prints its pool statistics at exit.  Only
# meaningful once the preload is the real interposer (it defines malloc).
if ! nm -D --defined-only "$preload" 2>/dev/null | grep -qw malloc; then
  echo "note: $preload does not define malloc yet; statistics not checked"
  exit 0
fi
GWMEM_STATS=1 LD_PRELOAD=$preload "${cmd[@]}" >"$tmp/stats.out" 2>"$tmp/stats.err"; rc3=$?
if [ $rc3 -ne 0 ] || ! cmp -s "$tmp/plain.out" "$tmp/stats.out"; then
  echo "FAIL: $which with GWMEM_STATS=1: exit $rc3 or different output"; exit 1
fi
# "gwmem: pool statistics for pid N", a header naming the class column, and
# at least one class row with a non-zero allocation count
if ! grep -q '^gwmem: pool statistics' "$tmp/stats.err" || ! grep -Eq '^gwmem: .*class' "$tmp/stats.err" ||
   ! grep -Eq '^gwmem: +[0-9]+ +[1-9][0-9]* ' "$tmp/stats.err"; then
  echo "FAIL: $which with GWMEM_STATS=1: no pool statistics on stderr:"; head -20 "$tmp/stats.err"; exit 1
fi
echo "ok: GWMEM_STATS=1 prints pool statistics: $(grep -c '^gwmem: pool statistics' "$tmp/stats.err") table(s), $(grep -Ec '^gwmem: +[0-9]+ +[0-9]+ ' "$tmp/stats.err") class rows"
grep -m1 '^gwmem: total' "$tmp/stats.err"
exit 0
