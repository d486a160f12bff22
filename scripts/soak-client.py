#!/usr/bin/env python3
"""Load clients for scripts/soak: every request is checked.

  soak-client.py redis PORT SECONDS     SET/GET/APPEND/DEL in pipelined batches;
                                        every reply compared with the expected one
  soak-client.py mqtt PORT SECONDS      QoS 1 messages through mosquitto_pub and
                                        mosquitto_sub; every payload must come
                                        back once, in order

Prints one line: "ops=N seconds=S errors=E".
"""
import os
import socket
import subprocess
import sys
import time


def resp(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


class Reader:
    def __init__(self, sock):
        self.sock, self.buf = sock, b""

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def reply(self):
        line = self.line()
        kind, rest = line[:1], line[1:]
        if kind in (b"+", b"-", b":"):
            return kind + rest
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self.exact(n)
        raise ValueError("unexpected reply %r" % line)


def redis(port, seconds):
    s = socket.create_connection(("127.0.0.1", port))
    r = Reader(s)
    ops = errors = 0
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        batch, want = [], []
        for _ in range(100):
            i += 1
            key = b"k%d" % (i % 5000)
            val = b"v%d-" % i + b"x" * (i % 700)
            batch += [resp("SET", key, val), resp("GET", key), resp("APPEND", key, b"!"),
                      resp("GET", key)]
            want += [b"+OK", val, b":%d" % (len(val) + 1), val + b"!"]
            if i % 7 == 0:
                batch.append(resp("DEL", key))
                want.append(b":1")
        s.sendall(b"".join(batch))
        for w in want:
            got = r.reply()
            ops += 1
            if got != w:
                errors += 1
                if errors <= 3:
                    print("mismatch: want %r got %r" % (w[:40], (got or b"")[:40]), file=sys.stderr)
    s.close()
    return ops, errors


def mqtt(port, seconds):
    ops = errors = 0
    end = time.monotonic() + seconds
    rnd = 0
    while time.monotonic() < end:
        rnd += 1
        n = 2000
        topic = "soak/%d/%d" % (os.getpid(), rnd)
        sub = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-q", "1",
                                "-t", topic, "-C", str(n), "-W", "30"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(0.2)   # subscribed before the first message
        payloads = ["m%d-%d-%s" % (rnd, k, "y" * (k % 300)) for k in range(n)]
        pub = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", "1",
                              "-t", topic, "-l"], input="\n".join(payloads) + "\n",
                             capture_output=True, text=True, timeout=60)
        out, _ = sub.communicate(timeout=60)
        got = out.decode().splitlines()
        if pub.returncode != 0 or got != payloads:
            errors += 1
            print("round %d: pub rc %d, %d of %d messages back in order" %
                  (rnd, pub.returncode, sum(1 for a, b in zip(got, payloads) if a == b), n),
                  file=sys.stderr)
        ops += len(got)
    return ops, errors


def main():
    kind, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    t0 = time.monotonic()
    ops, errors = (redis if kind == "redis" else mqtt)(port, seconds)
    print("ops=%d seconds=%.2f errors=%d" % (ops, time.monotonic() - t0, errors))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
