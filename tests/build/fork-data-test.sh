#!/usr/bin/env bash
# fork-data-test.sh LIBRARY
#
# libgwmem-preload.so keeps the state a fork writes (GW_FORK_DATA in
# lib/common/internal.h) on one page: its section gw_fork_data starts a
# page (lib/preload/fork-data.ld) and is no larger than one, and the
# track, reporter and counter state is in it.  A section that grew past a
# page, or a link without the script, would cost every fork a
# copy-on-write fault more on each side.
set -u
lib=$1
command -v readelf >/dev/null && command -v nm >/dev/null || { echo "SKIP: binutils missing"; exit 77; }
read -r addr size < <(readelf -SW "$lib" |
  awk '{ sub(/^ *\[ *[0-9]+\] */, "") } $1 == "gw_fork_data" { print $3, $5 }')
if [ -z "${addr:-}" ]; then
  echo "FAIL: $lib has no gw_fork_data section"
  exit 1
fi
addr=$((16#$addr)) size=$((16#$size))
if [ $((addr % 4096)) -ne 0 ] || [ "$size" -gt 4096 ] || [ "$size" -eq 0 ]; then
  printf 'FAIL: gw_fork_data at 0x%x, %d bytes: not one page-aligned page\n' "$addr" "$size"
  exit 1
fi
fail=0
for sym in T R gw_counters gw_reporter_restart_pending; do
  a=$(nm "$lib" | awk -v s="$sym" '$3 == s && $2 ~ /^[dDbB]$/ { print $1; exit }')
  if [ -z "$a" ] || [ $((16#$a)) -lt "$addr" ] || [ $((16#$a)) -ge $((addr + size)) ]; then
    echo "FAIL: $sym is not in gw_fork_data"
    fail=1
  fi
done
[ $fail -eq 0 ] || exit 1
printf 'ok: gw_fork_data at 0x%x, %d bytes, holds T, R, gw_counters, gw_reporter_restart_pending\n' "$addr" "$size"
