#!/usr/bin/env bash
# package-test.sh SRCDIR WORKDIR: the Debian package, built and installed.
#
#   1. dpkg-buildpackage -b on a copy of the source tree: gwmem,
#      libgwmem-preload, libgwmem0, libgwmem-dev;
#   2. lintian: no error, and every warning is one debian/*lintian-overrides
#      explains (overridden tags are not reported);
#   3. apt-get install ./*.deb (as root; apt resolves the dependencies),
#      then LD_PRELOAD=/usr/lib/<triplet>/libgwmem-preload.so into python3
#      and /usr/bin/gwmem leaks names its allocation site; the manual pages
#      are installed and say what --help says; a program builds against
#      libgwmem-dev with pkg-config and runs;
#   4. the packages are purged again.
#
# Exit 0 = pass, 1 = fail, 77 = skipped (no dpkg-buildpackage, not root).
set -uo pipefail
src=$(cd "${1:?usage: package-test.sh SRCDIR WORKDIR}" && pwd)
work=${2:?usage: package-test.sh SRCDIR WORKDIR}
unset LD_PRELOAD

if ! command -v dpkg-buildpackage >/dev/null || ! dpkg-query -W -f='${Status}' debhelper 2>/dev/null | grep "install ok installed" >/dev/null; then
  echo "package-test: SKIP: dpkg-buildpackage or debhelper not installed (scripts/setup installs them)"
  exit 77
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "package-test: SKIP: installing the packages needs root"
  exit 77
fi

fails=0
pass() { echo "  PASS $*"; }
fail() { echo "  FAIL $*"; fails=$((fails + 1)); }

# --- 1. build ------------------------------------------------------------------
dir=$work/package
rm -rf "$dir"
mkdir -p "$dir/gwmem"
# the tracked source (a git checkout) or the whole tree minus build output
if git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
  (cd "$src" && git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf -) | tar -C "$dir/gwmem" -xf -
else
  tar -C "$src" --exclude='./build*' --exclude='./obj-*' -cf - . | tar -C "$dir/gwmem" -xf -
fi
start=$SECONDS
if (cd "$dir/gwmem" && DEB_BUILD_OPTIONS="parallel=2 nocheck" dpkg-buildpackage -b -us -uc) >"$dir/build.log" 2>&1; then
  pass "dpkg-buildpackage -b in $((SECONDS - start)) s: $(cd "$dir" && ls *.deb | tr '\n' ' ')"
else
  tail -30 "$dir/build.log"
  echo "package-test: FAIL: dpkg-buildpackage (log $dir/build.log)"
  exit 1
fi
for p in gwmem libgwmem-preload libgwmem0 libgwmem-dev; do
  ls "$dir"/${p}_*.deb >/dev/null 2>&1 || fail "no ${p}_*.deb"
done

# --- 2. lintian ------------------------------------------------------------------
if command -v lintian >/dev/null; then
  changes=$(ls "$dir"/*.changes | head -1)
  lintian --display-level '>=warning' --tag-display-limit 0 "$changes" >"$dir/lintian.log" 2>&1
  grep -E '^[EW]: ' "$dir/lintian.log" | grep -v ': debug-file-with-no-debug-symbols' >"$dir/lintian-ew.log" || true
  if [ -s "$dir/lintian-ew.log" ]; then
    fail "lintian (errors and warnings not explained in debian/*lintian-overrides):"
    sed 's/^/    /' "$dir/lintian-ew.log"
  else
    pass "lintian: no errors, no unexplained warnings (overrides explained in debian/*.lintian-overrides)"
  fi
else
  echo "  (lintian not installed: not run)"
fi

# --- 3. install and use ----------------------------------------------------------
debs=()
for p in gwmem libgwmem-preload libgwmem0 libgwmem-dev; do
  debs+=("$(ls "$dir"/${p}_*.deb | head -1)")
done
purge() {
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 purge -y -q \
    gwmem libgwmem-preload libgwmem0 libgwmem-dev >/dev/null 2>&1
}
for p in gwmem libgwmem-preload libgwmem0 libgwmem-dev; do
  if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep "install ok installed" >/dev/null; then
    echo "package-test: SKIP: $p is already installed on this machine; not replacing it"
    exit 77
  fi
done
trap purge EXIT
if DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 install -y -q --no-install-recommends \
     "${debs[@]}" >"$dir/install.log" 2>&1; then
  pass "apt-get install ./gwmem_*.deb ./libgwmem-preload_*.deb ./libgwmem0_*.deb ./libgwmem-dev_*.deb"
else
  tail -20 "$dir/install.log"
  echo "package-test: FAIL: apt-get install (log $dir/install.log)"
  exit 1
fi

triplet=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
preload=/usr/lib/$triplet/libgwmem-preload.so
[ -f "$preload" ] && pass "$preload installed" || fail "$preload missing"

# libinih is linked in statically (built from subprojects/ with a 4 KiB line
# buffer): no package depends on libinih0 and no library needs libinih.so.0;
# a 250-character report_dir line loads without a diagnostic
deps=$(for d in "${debs[@]}"; do dpkg-deb -f "$d" Depends; done)
if [[ "$deps" != *libinih* ]] && ! readelf -d "$preload" /usr/lib/$triplet/libgwmem.so.0 | grep libinih >/dev/null; then
  pass "no dependency on libinih0, no NEEDED libinih.so.0"
else
  fail "the packages still need libinih: $(echo "$deps" | tr '\n' ' ')"
fi
longcfg=$dir/long.toml
printf '[leak_detection]\nreport_dir = "/%s"  # a long path\n' "$(printf 'd%.0s' $(seq 1 250))" >"$longcfg"
if longerr=$(LD_PRELOAD=$preload GWMEM_CONFIG=$longcfg python3 -c 'pass' 2>&1) && [[ "$longerr" != *gwmem:* ]]; then
  pass "a configuration line of $(wc -L <"$longcfg") bytes loads without a diagnostic"
else
  fail "a long configuration line: $longerr"
fi
shm=$(mktemp -d "${TMPDIR:-/tmp}/gwmem-pkg.XXXXXX")
coproc PY { exec env LD_PRELOAD="$preload" GWMEM_CONFIG=/dev/null GWMEM_LEAK_DETECTION_SHM_DIR="$shm" \
  python3 -c '
import ctypes, os, sys
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
keep = [libc.malloc(4321) for _ in range(7)]
print("READY", os.getpid(), flush=True)
sys.stdin.read()
'; }
read -r -t 30 ready pid <&"${PY[0]}" || true
if [ "${ready:-}" = READY ]; then
  GWMEM_SHM_DIR=$shm /usr/bin/gwmem leaks "$pid" --older-than 0 --top 0 --json >"$dir/leaks.json" 2>"$dir/leaks.err"
  rc=$?
  eval "exec ${PY[1]}>&-"
  wait "$PY_PID" 2>/dev/null
  if [ $rc -eq 0 ] && python3 - "$dir/leaks.json" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
hit = [s for s in doc["sites"] if s["bytes"] == 7 * 4321 and s["count"] == 7]
sys.exit(0 if hit else 1)
EOF
  then
    pass "LD_PRELOAD=$preload python3: /usr/bin/gwmem leaks names the site of 7 x 4321 bytes"
  else
    fail "gwmem leaks (exit $rc): $(head -3 "$dir/leaks.err") (see $dir/leaks.json)"
  fi
else
  fail "python3 under the installed preload did not start"
  kill "$PY_PID" 2>/dev/null
fi
rm -rf "$shm"

# manual pages: installed, and the text of --help
for c in "" leaks stats; do
  page=gwmem${c:+-$c}
  if ! man -w "$page" >/dev/null 2>&1; then
    fail "man page $page not installed"
    continue
  fi
  want=$(/usr/bin/gwmem $c --help 2>&1 | sed -n '/^\(NAME\|Usage\)/,$p' | grep -m3 -E '^ +--|^  [a-z]' | head -1 | sed 's/^ *//')
  got=$(MANWIDTH=200 man "$page" 2>/dev/null | col -bx)
  if [ -n "$want" ] && grep -qF -- "$want" <<<"$got"; then
    pass "man $page shows the --help text ('$want')"
  else
    fail "man $page lacks '$want'"
  fi
done

# libgwmem-dev: compile and link against the installed library
cat >"$dir/use.c" <<'EOF'
#include <gwmem.h>
#include <stdio.h>
int main(void)
{
	struct gwmem_fixpool_options o = { .block_size = 64, .name = "package-test" };
	struct gwmem_fixpool *p = gwmem_fixpool_create(&o);
	void *b = p ? gwmem_fixpool_alloc(p) : NULL;
	if (!b)
		return 1;
	gwmem_fixpool_free(p, b);
	gwmem_fixpool_destroy(p);
	puts("ok");
	return 0;
}
EOF
if gcc -o "$dir/use" "$dir/use.c" $(pkg-config --cflags --libs gwmem) >"$dir/use.log" 2>&1 &&
   [ "$(GWMEM_CONFIG=/dev/null "$dir/use")" = ok ]; then
  pass "a program built with pkg-config gwmem ($(pkg-config --modversion gwmem)) links libgwmem.so.0 and runs"
else
  fail "building against libgwmem-dev: $(head -5 "$dir/use.log")"
fi

echo "package-test: $fails failed"
[ $fails -eq 0 ]
