#!/usr/bin/env bash
# options-test.sh SRCDIR WORKDIR VARIANT: configure the tree with one
# feature turned off and compile it (suite 'build-options', run by
# scripts/test; `meson test --setup full --suite build-options`).
#
#   no-libunwind   -Dunwinder=libgcc      (libgcc's _Unwind_Backtrace)
#   frame-pointer  -Dunwinder=frame-pointer
#   no-libinih     --wrap-mode=nofallback (as scripts/cross): libinih is still
#                  built from subprojects/, and nothing needs libinih.so.0
#   no-tracking    -Dtracking=false
#   no-libdw       -Dsymbolizer=disabled  (the CLI without elfutils libdw)
#   no-cli         -Dcli=false
#
# To keep it short each variant is unoptimized (-Dbuildtype=plain), leaves
# out tests and examples, and builds only the preload, libgwmem.so and
# (where on) the CLI.
set -euo pipefail
src=$1 work=$2 variant=$3
case $variant in
  no-libunwind)  opts=(-Dunwinder=libgcc) ;;
  frame-pointer) opts=(-Dunwinder=frame-pointer) ;;
  no-libinih)    opts=(--wrap-mode=nofallback) ;;
  no-tracking)   opts=(-Dtracking=false) ;;
  no-libdw)      opts=(-Dsymbolizer=disabled) ;;
  no-cli)        opts=(-Dcli=false) ;;
  *) echo "unknown variant $variant"; exit 2 ;;
esac
dir=$work/options-$variant
rm -rf "$dir"
echo "meson setup $dir ${opts[*]} -Dtests=false -Dexamples=false -Dbuildtype=plain"
meson setup "$dir" "$src" "${opts[@]}" -Dtests=false -Dexamples=false -Dbuildtype=plain \
  >"$work/options-$variant.log" 2>&1 ||
  { cat "$work/options-$variant.log"; exit 1; }
sed -n '/^  Preload/,/^$/p' "$work/options-$variant.log"
targets=(lib/gwmem-preload:shared_library lib/gwmem:shared_library)
case $variant in no-cli) ;; *) targets+=(tools/gwmem) ;; esac
meson compile -C "$dir" "${targets[@]}" >>"$work/options-$variant.log" 2>&1 ||
  { grep -E 'error|FAILED' "$work/options-$variant.log" | head -20; exit 1; }
for f in lib/libgwmem-preload.so lib/libgwmem.so; do
  [ -f "$dir/$f" ] || { echo "missing $f"; exit 1; }
done
# what the variant promises
case $variant in
  no-libunwind)
    grep -q 'unwinder *: libgcc' "$work/options-$variant.log"
    nm -D "$dir/lib/libgwmem-preload.so" | grep ' U dlopen' >/dev/null ;;
  no-libinih)
    grep -q 'libinih *: subprojects' "$work/options-$variant.log"
    ! readelf -d "$dir/lib/libgwmem.so" "$dir/lib/libgwmem-preload.so" | grep libinih >/dev/null ;;
  no-libdw)
    [ -x "$dir/tools/gwmem" ] && ! readelf -d "$dir/tools/gwmem" | grep 'NEEDED.*libdw' >/dev/null ;;
  no-cli)
    [ ! -e "$dir/tools/gwmem" ] ;;
  *)
    [ "$variant" = no-tracking ] || [ -x "$dir/tools/gwmem" ] ;;
esac
rm -rf "$dir"
echo "$variant: configured and built"
