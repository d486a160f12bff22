#!/usr/bin/env python3
"""The CLI on segments written by mkseg (tests/common/segbuild.h) rather
than by a real process: content no real process gives, and exact figures.

    cli_test.py GWMEM MKSEG TEST

TEST is one of:
  escapes  command line, executable and module path hold terminal escapes,
           C1 controls, quotes, newlines, ';' and bytes that are not UTF-8:
           no command writes a control byte or invalid UTF-8 to stdout, every
           JSON output parses (python3 -m json.tool), every Prometheus label
           value follows the exposition format, folded lines keep their shape.
  partial  the table refused allocations (untracked_table_full): `leaks` and
           `report` say that the result is partial, in text and in JSON.
  stats    text, JSON and Prometheus give the same figures, which are those
           the segment holds; usage and directory errors give their exit codes.
Exit 0 = pass, 1 = fail, 77 = skipped.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

GWMEM, MKSEG, TEST = sys.argv[1:4]
TMP = tempfile.mkdtemp(prefix="gwmem-strings-")
FAILS = []


def check(cond, msg):
    if not cond:
        FAILS.append(msg)
        print("FAIL:", msg)
    return cond


def gwmem(*args):
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    env["GWMEM_SHM_DIR"] = TMP
    return subprocess.run([GWMEM] + [str(a) for a in args], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=60)


def mkseg(name, kind):
    path = os.path.join(TMP, name)
    subprocess.run([MKSEG, path, kind], check=True)
    return path


# Bytes a terminal acts on: C0 controls but newline, DEL; C1 (U+0080..U+009F) once decoded.
BAD_CHARS = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def clean_output(what, out):
    try:
        text = out.decode("utf-8", errors="strict")
    except UnicodeDecodeError as e:
        check(False, "%s: stdout is not UTF-8: %s" % (what, e))
        return None
    m = BAD_CHARS.search(text)
    check(not m, "%s: control character %r in output: %r" %
          (what, m.group(0) if m else "", text[max(0, m.start() - 40):m.end() + 40] if m else ""))
    return text


def json_ok(what, out):
    p = subprocess.run([sys.executable, "-m", "json.tool"], input=out, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    check(p.returncode == 0, "%s: json.tool refuses the output: %s" % (what, p.stderr.decode()))
    try:
        return json.loads(out.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None


# Prometheus text format: name{label="value",...} number; in a value only \\, \" and \n escapes.
PROM_SAMPLE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*'
                         r'(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
                         r'(,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*")*\})?'
                         r' [-+0-9.eEinfNa]+$')


def test_escapes():
    seg = mkseg("gwmem.4242.12345", "hostile")
    runs = [
        ("stats", seg), ("stats", seg, "--json"), ("stats", seg, "--format", "prometheus"),
        ("leaks", seg, "--older-than", "0"), ("leaks", seg, "--older-than", "0", "--no-symbols"),
        ("leaks", seg, "--older-than", "0", "--json"),
        ("leaks", seg, "--older-than", "0", "--format", "folded"),
        ("report", seg), ("report", seg, "--json", "--no-symbols"),
        ("diff", seg, seg, "--all"), ("diff", seg, seg, "--all", "--json"),
        ("top", seg, "--iterations", "1"), ("ps",), ("ps", "--json"),
    ]
    for args in runs:
        what = " ".join(str(a) for a in args if a != seg)
        p = gwmem(*args)
        if not check(p.returncode == 0, "%s: exit %d: %s" % (what, p.returncode, p.stderr[-300:])):
            continue
        text = clean_output(what, p.stdout)
        if text is None:
            continue
        if "--json" in args:
            doc = json_ok(what, p.stdout)
            if args[0] in ("leaks", "report") and doc:
                mods = [f["module"] for s in doc["sites"] for f in s["frames"] if f["module"]]
                check(any(m.startswith("/lib/\x1b[1mlib\\x9b31m\x9b\"q\\b\n;x y.so") for m in mods),
                      "%s: module path not kept exactly: %r" % (what, mods[:1]))
                check(doc["command"].startswith("evil\x1b]0;pwned\x07 --clear"),
                      "%s: command %r" % (what, doc["command"]))
        elif "prometheus" in args:
            for line in text.splitlines():
                if line.startswith("#"):
                    continue
                check(PROM_SAMPLE.match(line), "prometheus: malformed sample %r" % line)
            check('command="evil\\\\x1b]0;pwned\\\\x07"' in text,
                  "prometheus: command label not escaped as expected")
        elif "folded" in args:
            for line in text.splitlines():
                check(re.match(r"^[^ ]+ [0-9]+$", line), "folded: malformed line %r" % line)
        elif args[0] in ("leaks", "report", "diff"):
            check("\\x1b[1mlib\\x9b31m\\xc2\\x9b" in text, "%s: module path not shown escaped" % what)
        if args[0] == "report" and "--json" not in args:
            check("/tmp/\\x1b[31mred\\xc3(\\x7f\\x0a.bin" in text, "report: executable %r" %
                  [l for l in text.splitlines() if "executable" in l])


def test_partial():
    seg = mkseg("full.seg", "full")
    p = gwmem("leaks", seg, "--older-than", "0")
    check(p.returncode == 0, "leaks: exit %d" % p.returncode)
    out = p.stdout.decode()
    check("partial" in out and "1234567 allocations were not tracked" in out,
          "leaks text does not say it is partial:\n" + out[:400])
    for cmd in ("leaks", "report"):
        p = gwmem(cmd, seg, "--json", "--no-symbols")
        doc = json_ok(cmd, p.stdout)
        check(doc and doc.get("partial") is True and doc.get("untracked_table_full") == 1234567,
              "%s --json: %r" % (cmd, {k: (doc or {}).get(k) for k in ("partial", "untracked_table_full")}))
    p = gwmem("report", seg, "--no-symbols")
    check("1234567 allocations were not tracked" in p.stdout.decode(), "report text: not partial")
    check("max_segment_bytes" not in p.stdout.decode(), "report: a full table blamed on the segment")
    # a segment that could not grow: said so, not only "raise the table's capacity"
    seg = mkseg("segfull.seg", "segfull")
    for cmd in ("leaks", "report"):
        out = gwmem(cmd, seg, "--no-symbols", *(["--older-than", "0"] if cmd == "leaks" else [])).stdout.decode()
        check("77 allocations were not tracked" in out and "could not grow 3 times" in out and
              "max_segment_bytes" in out, "%s: segment growth not named:\n%s" % (cmd, out[:600]))
    # a complete table says nothing of the kind
    seg = mkseg("hostile.seg", "hostile")
    p = gwmem("leaks", seg, "--older-than", "0", "--no-symbols")
    check("partial" not in p.stdout.decode(), "leaks calls a complete result partial")
    doc = json_ok("leaks", gwmem("leaks", seg, "--older-than", "0", "--json").stdout)
    check(doc and doc.get("partial") is False and doc.get("untracked_table_full") == 0,
          "complete: %r" % ({k: (doc or {}).get(k) for k in ("partial", "untracked_table_full")}))


def test_stats():
    seg = mkseg("gwmem.4242.12345", "full")
    # the segment: 4 records of 158 bytes, 4 x 8 slots, 2 stacks of 16, class 16 with 3 active
    want = {"live_bytes": 158, "live_count": 4, "table_slots": 32, "stacks_used": 2,
            "stack_capacity": 16, "untracked_table_full": 1234567}
    doc = json_ok("stats --json", gwmem("stats", seg, "--json").stdout) or {}
    got = dict((k, doc.get(k, doc.get("counters", {}).get(k))) for k in want)
    check(got == want, "stats --json: %r" % got)
    check([c["active_blocks"] for c in doc.get("classes", [])] == [3, 0], "classes %r" % doc.get("classes"))
    text = gwmem("stats", seg).stdout.decode()
    for line in ("live tracked:     158 bytes in 4 allocations",
                 "allocation table: 4 of 32 slots (12.5%), 4 stripes",
                 "stack table:      2 of 16 stacks, 8 frames max",
                 "untracked:        1234567 table full, 0 internal, 0 sampled out (1 in 0)"):
        check(line in text, "stats text lacks %r:\n%s" % (line, text))
    prom = gwmem("stats", seg, "--format", "prometheus").stdout.decode()
    samples = {}
    families = []
    for line in prom.splitlines():
        if line.startswith("# TYPE "):
            families.append(line.split()[2])
            continue
        if line.startswith("#"):
            continue
        check(PROM_SAMPLE.match(line), "prometheus: malformed sample %r" % line)
        name_labels, value = line.rsplit(" ", 1)
        samples[name_labels] = float(value)
    check(len(families) == len(set(families)), "a Prometheus family appears twice: %r" % families)
    lbl = 'pid="4242",command="testprog"'
    for name, v in (("gwmem_live_bytes", 158), ("gwmem_live_allocations", 4), ("gwmem_table_slots", 32),
                    ("gwmem_table_fill_ratio", 0.125), ("gwmem_stacks_used", 2),
                    ("gwmem_untracked_allocations_total{%s,reason=\"table_full\"}" % lbl, 1234567),
                    ('gwmem_pool_active_blocks{%s,class_size="16"}' % lbl, 3)):
        key = name if "{" in name else "%s{%s}" % (name, lbl)
        check(samples.get(key) == v, "prometheus %s = %r, want %r" % (key, samples.get(key), v))
    # errors and their exit codes
    check(gwmem("stats", "--format").returncode == 1, "missing argument is a usage error")
    check(b"needs an argument" in gwmem("leaks", seg, "--top").stderr, "missing argument message")
    check(gwmem("stats", "--shm-dir", os.path.join(TMP, "nonexistent")).returncode == 2,
          "a missing segment directory gives 2")
    p = gwmem("ps", "--shm-dir", os.path.join(TMP, "nonexistent"))
    check(p.returncode == 2 and b"cannot read segment directory" in p.stderr, "ps: %r" % p.stderr)
    check(gwmem("leaks", "4242", "--json", "--older-than", "0").returncode == 0, "leaks by pid")


def main():
    if not (os.path.exists(GWMEM) and os.path.exists(MKSEG)):
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
