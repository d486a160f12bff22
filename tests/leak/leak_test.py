#!/usr/bin/env python3
"""Leak-suite driver: runs tests/leak/leaky under the preload library and
checks what `gwmem` reports about it.

    leak_test.py GWMEM PRELOAD LEAKY TEST [FIELDLEAK [MKSEG]]

TEST is one of: sites, churn, sigusr1, corrupt, diff, million, commands,
sysroot, debugdir, mismatch, fifo, fieldreport, wrappers, buildids (these
use FIELDLEAK, an -O2 -g program without -rdynamic, often stripped), cross
(also MKSEG: segments of an aarch64 and an armhf process).
Every test works in its own temporary directory (segments and reports),
starts its own target and stops it by pid.  Exit 0 = pass, 1 = fail,
77 = skipped.
"""
import json
import os
import random
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

GWMEM, PRELOAD, LEAKY, TEST = sys.argv[1:5]
FIELDLEAK = sys.argv[5] if len(sys.argv) > 5 else None
MKSEG = sys.argv[6] if len(sys.argv) > 6 else None
# the light CLI (-Dsymbolizer=disabled) prints module+offset+build-id only:
# tests that need the CLI to name frames are skipped with it
NAMES = "symbolizer none" not in subprocess.run([GWMEM, "--version"], stdout=subprocess.PIPE,
                                                text=True).stdout


def need_names():
    if not NAMES:
        print("skipped: this gwmem has no symbolizer")
        raise SystemExit(77)
TMP = tempfile.mkdtemp(prefix="gwmem-leak-")
FAILS = []


def check(cond, msg):
    if not cond:
        FAILS.append(msg)
        print("FAIL:", msg)
    return cond


def target_env(extra=None):
    env = dict(os.environ)
    env.update({
        "LD_PRELOAD": PRELOAD,
        "GWMEM_CONFIG": "/nonexistent/gwmem.toml",
        "GWMEM_LEAK_DETECTION_SHM_DIR": TMP,
        "GWMEM_LEAK_DETECTION_REPORT_DIR": TMP,
    })
    env.update(extra or {})
    return env


def cli_env():
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    env["GWMEM_SHM_DIR"] = TMP
    return env


def gwmem(*args, timeout=60):
    p = subprocess.run([GWMEM] + [str(a) for a in args], env=cli_env(),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=timeout)
    return p


def gwmem_json(*args):
    p = gwmem(*args)
    if not check(p.returncode == 0, "gwmem %s: exit %d: %s" % (" ".join(map(str, args)), p.returncode, p.stderr)):
        return None
    try:
        return json.loads(p.stdout)
    except ValueError as e:
        check(False, "gwmem %s: bad JSON (%s): %s" % (args, e, p.stdout[:500]))
        return None


class Target:
    def __init__(self, mode, *args, env=None):
        self.p = subprocess.Popen([LEAKY, mode] + [str(a) for a in args],
                                  env=target_env(env), stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        line = self.p.stdout.readline()
        if not line.startswith("READY"):
            self.stop()
            raise SystemExit("target did not start: %r" % line)
        self.pid = self.p.pid

    def send(self, line, expect=None):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        if expect:
            got = self.p.stdout.readline()
            check(got.strip() == expect, "target answered %r, wanted %r" % (got, expect))

    def stop(self):
        try:
            self.p.stdin.close()
        except OSError:
            pass
        try:
            self.p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(self.p.pid, signal.SIGKILL)
            self.p.wait()
        return self.p.returncode


KNOWN = ["leak_small", "leak_big", "leak_threaded", "churn_all", "cache_fill", "leak_grow",
         "hold_a", "hold_b"]


def by_function(doc):
    """Sum counts and bytes per known function: the innermost known frame of each site."""
    out = {}
    for site in doc["sites"]:
        for fr in site["frames"]:
            if fr["function"] in KNOWN:
                c, b = out.get(fr["function"], (0, 0))
                out[fr["function"]] = (c + site["count"], b + site["bytes"])
                break
    return out


def test_sites():
    need_names()
    t = Target("sites")
    try:
        doc = gwmem_json("leaks", t.pid, "--older-than", "0", "--top", "0", "--json")
        if doc is None:
            return
        check(doc["pid"] == t.pid, "pid %r != %d" % (doc["pid"], t.pid))
        for site in doc["sites"]:
            for k in ("count", "bytes", "oldest_age_s", "frames"):
                check(k in site, "site lacks %s" % k)
            for fr in site["frames"]:
                for k in ("address", "module", "function", "file", "line"):
                    check(k in fr, "frame lacks %s" % k)
                check(fr["address"].startswith("0x"), "address %r" % fr["address"])
        got = by_function(doc)
        want = {
            "leak_small": (10, 240),
            "leak_big": (3, 15000),
            "leak_threaded": (14, 1400),
            "cache_fill": (5, 1000),
        }
        for fn, w in want.items():
            check(got.get(fn) == w, "%s: got %r, want %r" % (fn, got.get(fn), w))
        check("churn_all" not in got, "churn_all reported: %r" % (got.get("churn_all"),))
        # the leak sites carry file:line from DWARF
        for site in doc["sites"]:
            f0 = site["frames"][0] if site["frames"] else None
            if f0 and f0["function"] == "leak_small":
                check(f0["file"].endswith("leaky.c") and f0["line"] > 0,
                      "leak_small frame lacks file:line: %r" % f0)
        # text and folded formats name the functions too
        p = gwmem("leaks", t.pid, "--older-than", "0", "--top", "0")
        check(p.returncode == 0 and "leak_threaded" in p.stdout, "text leaks: %s" % p.stderr)
        p = gwmem("leaks", t.pid, "--older-than", "0", "--top", "0", "--format", "folded")
        check(p.returncode == 0 and any(l.endswith(" 15000") and "leak_big" in l
                                        for l in p.stdout.splitlines()),
              "folded output lacks leak_big 15000")
        # default --older-than is the threshold (300 s): nothing that young
        doc = gwmem_json("leaks", t.pid, "--json")
        check(doc is not None and doc["sites"] == [], "default threshold should hide fresh allocations")
        # segment permissions
        segs = [f for f in os.listdir(TMP) if f.startswith("gwmem.%d." % t.pid)]
        check(len(segs) == 1, "segments: %r" % segs)
        if segs:
            mode = stat.S_IMODE(os.stat(os.path.join(TMP, segs[0])).st_mode)
            check(mode == 0o600, "segment mode %o" % mode)
    finally:
        check(t.stop() == 0, "target exit status")


def test_churn():
    t = Target("churn")
    try:
        for i in range(20):
            snap = os.path.join(TMP, "c%d.snap" % i)
            p = gwmem("snapshot", t.pid, "-o", snap, "--json")
            if not check(p.returncode == 0, "snapshot %d: exit %d %s" % (i, p.returncode, p.stderr)):
                continue
            meta = json.loads(p.stdout)
            doc = gwmem_json("leaks", snap, "--older-than", "0", "--top", "0", "--json", "--no-symbols")
            if doc is None:
                continue
            n = sum(s["count"] for s in doc["sites"])
            b = sum(s["bytes"] for s in doc["sites"])
            check(n == doc["live_count"] == meta["live_count"],
                  "snapshot %d: sites count %d, live %d, snapshot %d" % (i, n, doc["live_count"], meta["live_count"]))
            check(b == doc["live_bytes"] == meta["live_bytes"], "snapshot %d: bytes differ" % i)
            # a live read must be consistent too
            p = gwmem("stats", t.pid, "--json")
            check(p.returncode == 0, "stats while churning: exit %d %s" % (p.returncode, p.stderr))
    finally:
        check(t.stop() == 0, "target exit status")


def test_sigusr1():
    t = Target("sites")
    try:
        os.kill(t.pid, signal.SIGUSR1)
        report = None
        for _ in range(100):
            files = [f for f in os.listdir(TMP) if f.startswith("gwmem-report.%d." % t.pid)]
            if files:
                report = os.path.join(TMP, files[0])
                text = open(report).read()
                if "leak_threaded" in text or len(text) > 4000:
                    break
            time.sleep(0.05)
        if not check(report is not None, "no report file in %s" % TMP):
            return
        time.sleep(0.2)
        mode = stat.S_IMODE(os.stat(report).st_mode)
        check(mode == 0o600, "report mode %o" % mode)
        text = open(report).read()
        for fn in ("leak_small", "leak_big", "leak_threaded", "cache_fill"):
            check(fn in text, "report lacks %s" % fn)
        check("pid %d" % t.pid in text, "report lacks the pid")
        # the CLI's report names them too
        p = gwmem("report", t.pid)
        check(p.returncode == 0 and (not NAMES or "leak_big" in p.stdout), "gwmem report: %s" % p.stderr)
    finally:
        check(t.stop() == 0, "target exit status")


def run_on(path, *args):
    p = subprocess.run([GWMEM] + list(args[:1]) + [path] + list(args[1:]), env=cli_env(),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    return p.returncode


def test_corrupt():
    t = Target("sites")
    try:
        snap = os.path.join(TMP, "good.snap")
        p = gwmem("snapshot", t.pid, "-o", snap)
        if not check(p.returncode == 0, "snapshot: %s" % p.stderr):
            return
    finally:
        t.stop()
    good = open(snap, "rb").read()
    bad = os.path.join(TMP, "bad.seg")
    cmds = [("leaks", "--older-than", "0", "--no-symbols"), ("stats",), ("report", "--no-symbols")]

    def feed(data, want, what):
        with open(bad, "wb") as f:
            f.write(data)
        for c in cmds:
            rc = run_on(bad, *c)
            check(rc >= 0, "%s: gwmem %s died of signal %d" % (what, c[0], -rc))
            if want is not None:
                check(rc in want, "%s: gwmem %s exit %d, want %r" % (what, c[0], rc, want))

    feed(good, {0}, "intact copy")
    def patch(off, b):
        d = bytearray(good)
        d[off:off + len(b)] = b
        return bytes(d)
    feed(patch(0, b"XXXXXXXX"), {5}, "bad magic")
    feed(patch(8, (99).to_bytes(4, "little")), {4}, "bad version")
    feed(good[:len(good) // 2], {5}, "truncated")
    feed(good[:100], {5}, "truncated header")
    feed(b"", {5}, "empty file")
    rng = random.Random(1234)
    for i in range(60):
        d = bytearray(good)
        for _ in range(rng.randint(1, 16)):
            off = rng.randrange(0, 8192 if rng.random() < 0.8 else len(d))
            d[off] = rng.randrange(256)
        feed(bytes(d), None, "random mutation %d" % i)
    rc = run_on(os.path.join(TMP, "missing.seg"), "leaks")
    check(rc == 2, "missing file: exit %d" % rc)
    os.symlink(snap, os.path.join(TMP, "link.seg"))
    rc = run_on(os.path.join(TMP, "link.seg"), "leaks")
    check(rc == 5, "symlink: exit %d" % rc)


def test_diff():
    need_names()
    t = Target("grow")
    try:
        a = os.path.join(TMP, "a.snap")
        b = os.path.join(TMP, "b.snap")
        # one round first: stdin's buffer is allocated by the first read,
        # which must not race snapshot a
        t.send("grow", "GREW")
        check(gwmem("snapshot", t.pid, "-o", a).returncode == 0, "snapshot a")
        for _ in range(3):
            t.send("grow", "GREW")
        check(gwmem("snapshot", t.pid, "-o", b).returncode == 0, "snapshot b")
        doc = gwmem_json("diff", a, b, "--json")
        if doc and check(doc["sites"], "diff shows no site"):
            top = doc["sites"][0]
            fns = [f["function"] for f in top["frames"]]
            check("leak_grow" in fns, "top growing site is not leak_grow: %r" % fns)
            check(top["bytes_delta"] == 3840 and top["count_delta"] == 30,
                  "leak_grow delta %r/%r" % (top["bytes_delta"], top["count_delta"]))
        p = gwmem("diff", a, b)
        check(p.returncode == 0 and "leak_grow" in p.stdout, "text diff lacks leak_grow")
        p = gwmem("top", t.pid, "--iterations", "2", "--interval", "0.2")
        check(p.returncode == 0 and "gwmem top" in p.stdout, "top: %s" % p.stderr)
    finally:
        check(t.stop() == 0, "target exit status")


def test_million():
    need_names()
    n = 1000000
    t = Target("million", n, env={"GWMEM_LEAK_DETECTION_MAX_TRACKED_ALLOCATIONS": "2097152",
                                  "GWMEM_LEAK_DETECTION_MAX_SEGMENT_BYTES": "268435456"})
    try:
        t0 = time.monotonic()
        doc = gwmem_json("leaks", t.pid, "--older-than", "0", "--json", "--top", "10")
        dt = time.monotonic() - t0
        print("gwmem leaks on %d live allocations: %.2f s" % (n, dt))
        if doc:
            got = by_function(doc)
            check(got.get("hold_a", (0,))[0] == n // 2 and got.get("hold_b", (0,))[0] == n - n // 2,
                  "million: %r" % got)
        limit = float(os.environ.get("GWMEM_LEAKS_TIME_LIMIT", "4"))
        check(dt < limit, "gwmem leaks took %.2f s (limit %.1f s)" % (dt, limit))
    finally:
        t.stop()


def test_commands():
    t = Target("sites")
    try:
        p = gwmem("ps", "--json")
        doc = json.loads(p.stdout) if p.returncode == 0 else []
        check(any(e["pid"] == t.pid and e["state"] == "running" for e in doc), "ps lacks the target")
        p = gwmem("stats", t.pid, "--format", "prometheus")
        check(p.returncode == 0 and 'gwmem_live_bytes{pid="%d"' % t.pid in p.stdout, "prometheus")
        for c in ("ps", "stats", "leaks", "snapshot", "diff", "top", "report", "clean"):
            p = gwmem(c, "--help")
            check(p.returncode == 0 and "EXIT STATUS" in p.stdout and "EXAMPLES" in p.stdout,
                  "%s --help" % c)
        check(gwmem("leaks").returncode == 1, "missing PID is a usage error")
        check(gwmem("leaks", "1", "--bogus").returncode == 1, "unknown option is a usage error")
        check(gwmem("leaks", "999999999").returncode in (1, 2), "bad pid")
        check(gwmem("--version").returncode == 0, "--version")
    finally:
        t.stop()
    # a crashed process: its segment stays readable and is symbolized offline
    t = Target("sites")
    os.kill(t.pid, signal.SIGKILL)
    t.p.wait()
    p = gwmem("ps", "--json")
    doc = json.loads(p.stdout) if p.returncode == 0 else []
    check(any(e["pid"] == t.pid and e["state"] == "crashed" for e in doc), "ps: not crashed")
    doc = gwmem_json("leaks", t.pid, "--older-than", "0", "--top", "0", "--json")
    if doc and NAMES:
        got = by_function(doc)
        check(got.get("leak_big") == (3, 15000), "crashed: leak_big %r" % (got.get("leak_big"),))
    # clean removes what is left of dead processes, nothing else
    fake = os.path.join(TMP, "gwmem.999999.1")
    open(fake, "wb").close()
    other = os.path.join(TMP, "gwmem-not-a-segment")
    open(other, "wb").close()
    p = gwmem("clean")
    check(p.returncode == 0 and not os.path.exists(fake), "clean kept a dead segment")
    check(not [f for f in os.listdir(TMP) if f.startswith("gwmem.%d." % t.pid)], "clean kept the crashed segment")
    check(os.path.exists(other), "clean removed a file that is not a segment")


# --- offline symbolization of a stripped program ------------------------------

FIELD_SITES = {"leak_alpha": (4, 1200), "leak_beta": (2, 1400), "dup_one": (3, 72),
               "dup_two": (5, 200)}


class FieldTarget:
    """A stripped copy of fieldleak at DEVICE/usr/bin/fieldleak, run under the preload."""

    def __init__(self, exe, env=None):
        self.p = subprocess.Popen([exe], env=target_env(env), stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        self.lines = {}
        while True:
            line = self.p.stdout.readline()
            if line.startswith("SITE "):
                _, fn, ln = line.split()
                self.lines[fn] = int(ln)
                continue
            if not line.startswith("READY"):
                self.stop()
                raise SystemExit("target did not start: %r" % line)
            break
        self.pid = self.p.pid

    def stop(self):
        return Target.stop(self)


def tool(*cmd):
    p = subprocess.run(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        raise SystemExit("%s failed: %s" % (cmd[0], p.stderr))


def field_setup():
    """device/usr/bin/fieldleak (stripped), sysroot/<device path> (unstripped),
    debug/.build-id/xx/rest.debug (only the debug info)."""
    if not FIELDLEAK or not shutil.which("strip") or not shutil.which("objcopy"):
        raise SystemExit(77)
    dev = os.path.join(TMP, "device", "usr", "bin", "fieldleak")
    os.makedirs(os.path.dirname(dev))
    shutil.copy(FIELDLEAK, dev)
    tool("strip", "--strip-all", dev)
    full = os.path.join(TMP, "sysroot") + dev
    os.makedirs(os.path.dirname(full))
    shutil.copy(FIELDLEAK, full)
    return dev, full


def build_id(path):
    p = subprocess.run(["readelf", "-n", path], stdout=subprocess.PIPE, text=True)
    for line in p.stdout.splitlines():
        if "Build ID:" in line:
            return line.split(":")[1].strip()
    return None


def field_snapshot(dev):
    t = FieldTarget(dev)
    snap = os.path.join(TMP, "field.snap")
    try:
        p = gwmem("snapshot", t.pid, "-o", snap)
        check(p.returncode == 0, "snapshot: %s" % p.stderr)
    finally:
        check(t.stop() == 0, "target exit status")
    return snap, t.lines


def field_sites(doc):
    """count, bytes and the set of file:line of each function's sites (named by their
    first frame in fieldleak; an optimised loop may call malloc from two places)."""
    out = {}
    for site in doc["sites"]:
        for fr in site["frames"]:
            if fr["function"] in FIELD_SITES:
                c, b, where = out.get(fr["function"], (0, 0, set()))
                where.add("%s:%d" % (os.path.basename(fr["file"]), fr["line"]))
                out[fr["function"]] = (c + site["count"], b + site["bytes"], where)
                break
    return out


def check_field_names(doc, lines, what):
    got = field_sites(doc)
    for fn, (count, nbytes) in FIELD_SITES.items():
        g = got.get(fn)
        if not check(g is not None, "%s: %s not named" % (what, fn)):
            continue
        check(g[:2] == (count, nbytes), "%s: %s holds %r, want %r" % (what, fn, g[:2], (count, nbytes)))
        check(g[2] == {"fieldleak.c:%d" % lines[fn]},
              "%s: %s at %r, want fieldleak.c:%d" % (what, fn, g[2], lines[fn]))


def test_sysroot():
    need_names()
    dev, full = field_setup()
    snap, lines = field_snapshot(dev)
    # stripped and not rdynamic: nothing of the program is named without help
    doc = gwmem_json("leaks", snap, "--older-than", "0", "--top", "0", "--json")
    if doc:
        check(not field_sites(doc), "stripped program named without a sysroot: %r" % field_sites(doc))
    doc = gwmem_json("leaks", snap, "--older-than", "0", "--top", "0", "--json",
                     "--sysroot", os.path.join(TMP, "sysroot"))
    if doc:
        check_field_names(doc, lines, "--sysroot")
    p = gwmem("report", snap, "--sysroot", os.path.join(TMP, "sysroot"))
    check(p.returncode == 0 and "leak_alpha" in p.stdout and "fieldleak.c:%d" % lines["leak_alpha"] in p.stdout,
          "report --sysroot lacks leak_alpha: %s" % p.stderr)
    check(p.stderr == "", "report --sysroot warned: %s" % p.stderr)


def test_debugdir():
    need_names()
    dev, full = field_setup()
    bid = build_id(full)
    if not check(bid, "no build-id in %s" % full):
        return
    snap, lines = field_snapshot(dev)
    # only the debug info, found by build-id
    dbg = os.path.join(TMP, "debug", ".build-id", bid[:2], bid[2:] + ".debug")
    os.makedirs(os.path.dirname(dbg))
    tool("objcopy", "--only-keep-debug", full, dbg)
    shutil.rmtree(os.path.join(TMP, "sysroot"))
    doc = gwmem_json("leaks", snap, "--older-than", "0", "--top", "0", "--json",
                     "--debug-dir", os.path.join(TMP, "empty"), "--debug-dir", os.path.join(TMP, "debug"))
    if doc:
        check_field_names(doc, lines, "--debug-dir .build-id")
    # the same file as <name>.debug in a flat directory
    flat = os.path.join(TMP, "flat")
    os.makedirs(flat)
    shutil.move(dbg, os.path.join(flat, "fieldleak.debug"))
    doc = gwmem_json("leaks", snap, "--older-than", "0", "--top", "0", "--json", "--debug-dir", flat)
    if doc:
        check_field_names(doc, lines, "--debug-dir <name>.debug")


def test_mismatch():
    need_names()
    dev, full = field_setup()
    snap, lines = field_snapshot(dev)
    # another build at the same path: same code, another build-id
    bid = build_id(full)
    data = bytearray(open(full, "rb").read())
    raw = bytes.fromhex(bid)
    at = data.find(raw)
    if not check(at >= 0, "build-id bytes not found"):
        return
    data[at] ^= 0xff
    open(full, "wb").write(bytes(data))
    p = gwmem("leaks", snap, "--older-than", "0", "--top", "0", "--json",
              "--sysroot", os.path.join(TMP, "sysroot"))
    if not check(p.returncode == 0, "leaks: %s" % p.stderr):
        return
    doc = json.loads(p.stdout)
    named = [fr for s in doc["sites"] for fr in s["frames"]
             if fr["module"] == dev and (fr["function"] or fr["file"])]
    check(not named, "frames of a mismatched module got names: %r" % named[:3])
    warn = [l for l in p.stderr.splitlines() if "build-id" in l]
    check(len(warn) == 1 and dev in warn[0] and full in warn[0],
          "want one warning naming %s and %s: %r" % (dev, full, p.stderr))
    # a mismatched debug file is refused the same way
    os.remove(full)
    dbg = os.path.join(TMP, "flat", "fieldleak.debug")
    os.makedirs(os.path.dirname(dbg))
    tool("objcopy", "--only-keep-debug", FIELDLEAK, dbg)
    data = bytearray(open(dbg, "rb").read())
    data[data.find(raw)] ^= 0xff
    open(dbg, "wb").write(bytes(data))
    p = gwmem("leaks", snap, "--older-than", "0", "--top", "0", "--json", "--debug-dir",
              os.path.join(TMP, "flat"))
    doc = json.loads(p.stdout) if p.returncode == 0 else {"sites": []}
    check(not field_sites(doc), "names from a mismatched debug file")
    check(dbg in p.stderr and "build-id" in p.stderr, "no warning for the debug file: %r" % p.stderr)


def test_fifo():
    dev, full = field_setup()
    t = FieldTarget(dev)
    os.kill(t.pid, signal.SIGKILL)
    t.p.wait()
    # the crashed program's file is now a FIFO, and so is the sysroot copy
    os.remove(dev)
    os.mkfifo(dev)
    os.remove(full)
    os.mkfifo(full)
    for args in (("leaks", t.pid, "--older-than", "0"), ("report", t.pid), ("top", t.pid, "--iterations", "1"),
                 ("leaks", t.pid, "--older-than", "0", "--sysroot", os.path.join(TMP, "sysroot")),
                 ("leaks", t.pid, "--older-than", "0", "--debug-dir", os.path.dirname(dev))):
        try:
            p = gwmem(*args, timeout=20)
            check(p.returncode == 0, "%s on a FIFO module: exit %d %s" % (args, p.returncode, p.stderr))
        except subprocess.TimeoutExpired:
            check(False, "%s hangs on a FIFO module path" % (args,))


def report_of(t):
    """SIGUSR1 the target and return its report text (complete once 'modules' is written)."""
    os.kill(t.pid, signal.SIGUSR1)
    for _ in range(200):
        files = [f for f in os.listdir(TMP) if f.startswith("gwmem-report.%d." % t.pid)]
        if files:
            text = open(os.path.join(TMP, files[0])).read()
            if "modules (start-end, build-id, path):" in text and text.endswith("\n"):
                time.sleep(0.1)
                return open(os.path.join(TMP, files[0])).read()
        time.sleep(0.05)
    check(False, "no complete report in %s" % TMP)
    return ""


def test_fieldreport():
    """The SIGUSR1 report of an -O2 -g program without -rdynamic names its static
    functions with file:line, and lists its module with its build-id."""
    if not FIELDLEAK:
        raise SystemExit(77)
    t = FieldTarget(FIELDLEAK)
    try:
        text = report_of(t)
        for fn in FIELD_SITES:
            want = "in %s (fieldleak.c:%d)" % (fn, t.lines[fn])
            check(want in text, "report lacks %r" % want)
            check(re.search(r"#\d+ 0x[0-9a-f]+ %s \(.*fieldleak\+0x[0-9a-f]+\) at .*fieldleak.c:%d"
                            % (fn, t.lines[fn]), text), "report lacks the frame of %s" % fn)
        bid = build_id(FIELDLEAK)
        check(re.search(r"^  0x[0-9a-f]+-0x[0-9a-f]+ %s %s$" % (bid, re.escape(os.path.realpath(FIELDLEAK))), text, re.M),
              "report lacks the module line of %s with build-id %s" % (FIELDLEAK, bid))
    finally:
        check(t.stop() == 0, "target exit status")
    # stripped, it still reports: module+offset and the build-id to find the files by
    dev, full = field_setup()
    t = FieldTarget(dev)
    try:
        text = report_of(t)
        check("leak_alpha" not in text and re.search(r"\(%s\+0x[0-9a-f]+\)" % re.escape(dev), text),
              "stripped report: %s" % text[:2000])
        check(build_id(full) in text, "stripped report lacks the build-id")
    finally:
        check(t.stop() == 0, "target exit status")


def test_buildids():
    """Without names (--no-symbols, or the light CLI) every frame is module+offset
    and the output lists each module with its build-id, for a host to symbolize."""
    dev, full = field_setup()
    bid = build_id(full)
    t = FieldTarget(dev)
    try:
        args = ["leaks", t.pid, "--older-than", "0", "--top", "0"] + ([] if not NAMES else ["--no-symbols"])
        p = gwmem(*args)
        check(p.returncode == 0, "leaks: %s" % p.stderr)
        check(re.search(r"^  0x[0-9a-f]+-0x[0-9a-f]+ %s %s$" % (bid, re.escape(dev)), p.stdout, re.M),
              "leaks text lacks the module line of %s: %s" % (dev, p.stdout[-1500:]))
        check(re.search(r"\(%s\+0x[0-9a-f]+\)" % re.escape(dev), p.stdout), "no module+offset frame")
        doc = gwmem_json(*(args + ["--json"]))
        if doc:
            mods = [m for m in doc["modules"] if m["path"] == dev]
            check(len(mods) == 1 and mods[0]["build_id"] == bid, "JSON modules: %r" % doc["modules"][:3])
            offs = {fr["offset"] for s in doc["sites"] for fr in s["frames"] if fr["module"] == dev}
            check(offs and all(o.startswith("0x") for o in offs), "JSON offsets %r" % offs)
        p = gwmem("report", t.pid, "--no-symbols")
        check(bid in p.stdout and "stats" not in p.stderr, "report lacks the build-id")
        if not NAMES:
            p = gwmem("leaks", t.pid, "--sysroot", TMP)
            check(p.returncode == 0 and "no symbolizer" in p.stderr, "light CLI and --sysroot: %s" % p.stderr)
    finally:
        check(t.stop() == 0, "target exit status")


# (name, toolchain triplet, pointer bits, load bias of the program)
CROSS = [("aarch64", "aarch64-linux-gnu", 64, 0x5500000000), ("armhf", "arm-linux-gnueabihf", 32, 0x400000)]
CROSS_SIZES = {"leak_alpha": 300, "leak_beta": 700, "dup_one": 24, "dup_two": 40}


def call_sites(objdump, path):
    """The first call to malloc/calloc/strdup in each leak function: {function: file vaddr}."""
    out, fn = {}, None
    p = subprocess.run([objdump, "-d", "--no-show-raw-insn", path], stdout=subprocess.PIPE, text=True)
    for line in p.stdout.splitlines():
        m = re.match(r"^[0-9a-f]+ <(\w+)>:$", line)
        if m:
            fn = m.group(1)
            continue
        m = re.match(r"^\s*([0-9a-f]+):\s+blx?\s+[0-9a-f]+ <(malloc|calloc|strdup)@plt>", line)
        if m and fn in CROSS_SIZES and fn not in out:
            out[fn] = int(m.group(1), 16)
    return out


def test_cross():
    """A segment of an aarch64 (and an armhf) process, read by this machine's CLI:
    its program named with --sysroot (unstripped) and with --debug-dir (stripped
    program, debug file found by build-id), at the exact lines.  The segment is
    built by mkseg from the cross-compiled program's real call sites."""
    need_names()
    src = os.path.join(os.path.dirname(os.path.realpath(__file__)), "fieldleak.c")
    lines = {}
    for i, l in enumerate(open(src), 1):
        m = re.search(r'printf\("SITE (\w+) %d\\n", __LINE__ \+ 2\)', l)
        if m:
            lines[m.group(1)] = i + 2
    check(set(lines) == set(CROSS_SIZES), "SITE lines in fieldleak.c: %r" % lines)
    ran = 0
    for arch, triplet, bits, bias in CROSS:
        tools = {t: shutil.which("%s-%s" % (triplet, t)) for t in ("gcc", "objdump", "objcopy", "strip")}
        if not all(tools.values()) or not MKSEG:
            print("%s: no %s toolchain, skipped" % (arch, triplet))
            continue
        root = os.path.join(TMP, "sysroot-" + arch)
        dev = "/usr/bin/fieldleak"
        full = root + dev
        os.makedirs(os.path.dirname(full))
        tool(tools["gcc"], "-O2", "-g", "-o", full, src)
        bid = build_id(full)
        calls = call_sites(tools["objdump"], full)
        if not check(set(calls) == set(CROSS_SIZES) and bid, "%s: call sites %r, build-id %r" % (arch, calls, bid)):
            continue
        seg = os.path.join(TMP, arch + ".seg")
        # return addresses: the instruction after each (4-byte) bl
        stacks = ["%d:%x" % (CROSS_SIZES[fn], bias + calls[fn] + 4) for fn in sorted(calls)]
        tool(MKSEG, seg, "foreign", str(bits), dev, "%x" % bias, "%x" % (bias + 0x100000), bid, *stacks)
        want = {fn: (1, CROSS_SIZES[fn], {"fieldleak.c:%d" % lines[fn]}) for fn in CROSS_SIZES}
        doc = gwmem_json("leaks", seg, "--older-than", "0", "--top", "0", "--json", "--sysroot", root)
        if doc:
            got = field_sites(doc)
            check(got == want, "%s --sysroot: %r, want %r" % (arch, got, want))
        # the stripped program, its debug info found by build-id
        dbg = os.path.join(TMP, "debug-" + arch, ".build-id", bid[:2], bid[2:] + ".debug")
        os.makedirs(os.path.dirname(dbg))
        tool(tools["objcopy"], "--only-keep-debug", full, dbg)
        tool(tools["strip"], "--strip-all", full)
        doc = gwmem_json("leaks", seg, "--older-than", "0", "--top", "0", "--json", "--sysroot", root,
                         "--debug-dir", os.path.join(TMP, "debug-" + arch))
        if doc:
            got = field_sites(doc)
            check(got == want, "%s --debug-dir: %r, want %r" % (arch, got, want))
        ran += 1
    if not ran:
        raise SystemExit(77)


def test_symbolize():
    """Reports copied off the device (the SIGUSR1 text, `gwmem report --json`, a
    snapshot) are named on the host by `gwmem symbolize --sysroot`."""
    need_names()
    dev, full = field_setup()
    t = FieldTarget(dev)
    rjson = os.path.join(TMP, "report.json")
    snap = os.path.join(TMP, "field.snap")
    try:
        text = report_of(t)
        check("leak_alpha" not in text, "the stripped program's report names leak_alpha")
        rtxt = os.path.join(TMP, "report.txt")
        open(rtxt, "w").write(text)
        p = gwmem("report", t.pid, "--json", "--no-symbols")
        check(p.returncode == 0, "report --json: %s" % p.stderr)
        open(rjson, "w").write(p.stdout)
        check(gwmem("snapshot", t.pid, "-o", snap).returncode == 0, "snapshot")
    finally:
        check(t.stop() == 0, "target exit status")
    root = os.path.join(TMP, "sysroot")
    # a sysroot holds the device's libc too: strdup is then known as a wrapper
    doc = json.load(open(rjson))
    for m in doc["modules"]:
        if "/libc.so" in m["path"] and os.path.isfile(m["path"]):
            os.makedirs(os.path.dirname(root + m["path"]), exist_ok=True)
            shutil.copy(m["path"], root + m["path"])
    p = gwmem("symbolize", rtxt, "--sysroot", root)
    check(p.returncode == 0, "symbolize text: %s" % p.stderr)
    for fn in FIELD_SITES:
        check(re.search(r"\] +in %s \(fieldleak\.c:%d\)\n" % (fn, t.lines[fn]), p.stdout),
              "symbolize text: no site named %s (fieldleak.c:%d): %s" % (fn, t.lines[fn], p.stdout[:3000]))
    doc = gwmem_json("symbolize", rjson, "--sysroot", root, "--json")
    if doc:
        check_field_names(doc, t.lines, "symbolize JSON")
        check(any(m["path"] == dev and m["build_id"] == build_id(full) for m in doc["modules"]),
              "symbolize JSON keeps the module list")
    doc = gwmem_json("symbolize", snap, "--sysroot", root, "--json")
    if doc:
        check_field_names(doc, t.lines, "symbolize snapshot")
    p = gwmem("symbolize", os.path.join(TMP, "sysroot") + dev)
    check(p.returncode == 5, "symbolize of an ELF file: exit %d" % p.returncode)


def test_wrappers():
    """Two strdup callers are two sites in labels, top, diff, folded and the report."""
    need_names()
    if not FIELDLEAK:
        raise SystemExit(77)
    t = FieldTarget(FIELDLEAK)
    try:
        want = {fn: "%s (fieldleak.c:%d)" % (fn, t.lines[fn]) for fn in ("dup_one", "dup_two")}
        doc = gwmem_json("leaks", t.pid, "--older-than", "0", "--top", "0", "--json")
        if doc:
            labels = {s["site"] for s in doc["sites"]}
            for fn, w in want.items():
                check(w in labels, "JSON site labels lack %r: %r" % (w, labels))
            dups = [s for s in doc["sites"] if s["site"] in want.values()]
            check(all(s["frames"][0]["function"] in ("__strdup", "strdup") for s in dups),
                  "JSON frames must keep the strdup frame: %r" % [s["frames"][0] for s in dups])
        p = gwmem("leaks", t.pid, "--older-than", "0", "--top", "0", "--format", "folded")
        lines = p.stdout.splitlines()
        for fn in want:
            check(any(l.split(" ")[0].endswith(";" + fn) for l in lines),
                  "folded: no stack ends in %s: %r" % (fn, lines))
        check(not any("strdup" in l for l in lines), "folded keeps strdup: %r" % lines)
        p = gwmem("report", t.pid)
        for w in want.values():
            check(("in " + w) in p.stdout, "report lacks label %r" % w)
        p = gwmem("top", t.pid, "--iterations", "1")
        for w in want.values():
            check(w in p.stdout, "top lacks %r: %s" % (w, p.stdout))
        check("__strdup" not in p.stdout, "top names the wrapper")
        # a configurable list: with dup_one a wrapper too, its site is named by main
        p = gwmem("top", t.pid, "--iterations", "1", "--alloc-wrappers", "dup_one, leak_*")
        check(want["dup_one"] not in p.stdout and "main (fieldleak.c:" in p.stdout,
              "--alloc-wrappers: %s" % p.stdout)
        # the target's own report names them the same way
        text = report_of(t)
        for w in want.values():
            check(("in " + w) in text, "SIGUSR1 report lacks label %r" % w)
    finally:
        check(t.stop() == 0, "target exit status")
    # and takes GWMEM_ALLOC_WRAPPERS from its environment
    t = FieldTarget(FIELDLEAK, env={"GWMEM_ALLOC_WRAPPERS": "dup_one"})
    try:
        text = report_of(t)
        check(("in " + want["dup_one"]) not in text and ("in " + want["dup_two"]) in text
              and re.search(r"\] +in main \(fieldleak\.c:\d+\)", text),
              "GWMEM_ALLOC_WRAPPERS in the report: %s" % text[:3000])
    finally:
        check(t.stop() == 0, "target exit status")


def main():
    if not (os.path.exists(GWMEM) and os.path.exists(PRELOAD) and os.path.exists(LEAKY)):
        print("missing binaries")
        return 77
    try:
        globals()["test_" + TEST]()
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
    if FAILS:
        print("%d failure(s)" % len(FAILS))
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
