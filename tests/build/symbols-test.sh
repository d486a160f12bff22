#!/usr/bin/env bash
# symbols-test.sh LIBRARY KIND
#
# The dynamic symbol table of a gwmem library exports nothing but its API:
#   KIND=preload  libgwmem-preload.so: the malloc family, _exit/_Exit and gwmem_* only
#   KIND=api      libgwmem.so: gwmem_* only
set -u
lib=$1 kind=$2
command -v nm >/dev/null || { echo "SKIP: nm missing"; exit 77; }
malloc_family='malloc|free|calloc|realloc|reallocarray|posix_memalign|aligned_alloc|memalign|valloc|pvalloc|malloc_usable_size|cfree'
case $kind in
  preload) allowed="^($malloc_family|_exit|_Exit|gwmem_.*)\$" ;;
  api)     allowed='^gwmem_.*$' ;;
  *) echo "unknown kind $kind"; exit 2 ;;
esac
syms=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TtDdBbRrWwVVi]$/ { print $3 }' | sed 's/@.*//' | sort -u)
bad=$(printf '%s\n' "$syms" | grep -v '^$' | grep -Ev "$allowed")
n=$(printf '%s\n' "$syms" | grep -c .)
if [ -n "$bad" ]; then
  echo "FAIL: $lib exports symbols outside its API:"
  printf '  %s\n' $bad
  exit 1
fi
echo "ok: $lib exports $n symbols, all in the allowed set ($kind):"
printf '%s\n' "$syms" | tr '\n' ' '; echo
