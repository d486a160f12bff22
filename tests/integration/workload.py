# workload.py - a json/dict-heavy script whose output is deterministic: it is
# run with and without the preload and the outputs must match.
import hashlib
import json

devices = {}
for i in range(40000):
    dev = "dev-%05d" % (i % 1500)
    rec = devices.setdefault(dev, {"count": 0, "readings": [], "tags": {}})
    rec["count"] += 1
    rec["readings"].append({"t": i, "v": (i * 37) % 1000 / 10.0, "ok": i % 7 != 0})
    rec["tags"]["k%d" % (i % 13)] = "x" * (i % 50)
    if len(rec["readings"]) > 20:
        del rec["readings"][:10]

blob = json.dumps(devices, sort_keys=True)
back = json.loads(blob)
assert back == devices
words = {}
for w in blob.replace('"', " ").replace(",", " ").split():
    words[w] = words.get(w, 0) + 1
top = sorted(words.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
print(len(devices), len(blob), hashlib.sha256(blob.encode()).hexdigest())
for w, n in top:
    print(w, n)
