#!/usr/bin/python3
"""Writes the seed inputs of the fuzzing harnesses into tests/fuzz/corpus/NAME/seed-*.
Message harnesses take frames as [u16 little-endian length][bytes]; the broker's harness
takes one more byte first (which of four peers sends). docs/protocol.md has the format."""
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

def hdr(type_, priority=3, flags=0, seq=1, status=0, id_=0, parent=0, tx=0, timeout=0, time_us=0):
    return (b"LC" + struct.pack("<BBBBH", 1, type_, priority, 0, flags) +
            struct.pack("<IIQQQII Q", seq, status, id_, parent, tx, timeout, 0, time_us))

def frames(*parts):
    out = b""
    for p in parts:
        if isinstance(p, str):
            p = p.encode()
        out += struct.pack("<H", len(p)) + p
    return out

def js(o):
    return json.dumps(o, separators=(",", ":"))

HELLO, WELCOME, CALL, REPLY, ERROR, TASK, EVENT, DONE = 1, 2, 3, 4, 5, 6, 7, 8
PING, PONG, BYE, STATE, NOTICE = 10, 11, 12, 13, 14
hello = js({"token": "0123456789abcdef", "pid": 1, "version": "0.1.0",
            "methods": [{"name": "echo", "args": {"text": "string"}}, {"name": "m"}],
            "events": ["door_*", "tick"], "window": 4, "state": "active"})

broker = {
    "hello": b"\x00" + frames(hdr(HELLO), "a", "", hello),
    "hello-tool": b"\x01" + frames(hdr(HELLO), "tool", "", js({"token": "fedcba9876543210", "lifecycle": False})),
    "call": b"\x01" + frames(hdr(CALL, seq=7, timeout=100), "a.echo", "", js({"text": "hi"})),
    "reply": b"\x00" + frames(hdr(REPLY, seq=7, id_=5), "", "", js({"text": "hi"})),
    "error": b"\x00" + frames(hdr(ERROR, status=1, id_=5), "", "", js({"code": 3, "message": "x"})),
    "task": b"\x01" + frames(hdr(TASK, flags=4, priority=1), "a.m", "", js({"x": 1})),
    "event": b"\x01" + frames(hdr(EVENT, flags=4), "door_open", "", js({"door": 1})),
    "done": b"\x00" + frames(hdr(DONE, id_=1), "", "", ""),
    "state": b"\x00" + frames(hdr(STATE), "", "", js({"state": "passive"})),
    "ping": b"\x02" + frames(hdr(PING, seq=3), "", "", ""),
    "bye": b"\x00" + frames(hdr(BYE), "", "", ""),
    "broker-list": b"\x01" + frames(hdr(CALL, seq=9), "broker.list", "", "{}"),
    "broker-stats": b"\x01" + frames(hdr(CALL, seq=9), "broker.stats", "", "{}"),
    "broker-wait": b"\x01" + frames(hdr(CALL, seq=9, timeout=10), "broker.wait", "", js({"modules": ["a"]})),
    "broker-expect": b"\x01" + frames(hdr(CALL, seq=9), "broker.expect", "", js({"modules": ["a", "b"], "timeout_ms": 10})),
    "too-many-frames": b"\x03" + frames(hdr(PING), "", "", "", "", "", "", "", ""),
    "bad-version": b"\x03" + frames(b"LC\x07" + hdr(PING)[3:], "", "", ""),
}
client = {
    "call": frames(hdr(CALL, id_=11, tx=11, timeout=1000), "fz.echo", "peer", js({"a": [1, 2]})),
    "task": frames(hdr(TASK, id_=12, tx=12), "echo", "peer", js({"a": 1})),
    "event": frames(hdr(EVENT, id_=13, tx=13), "tick", "peer", js({"n": 1})),
    "reply": frames(hdr(REPLY, seq=1, id_=14), "", "broker", js({"ok": True})),
    "error": frames(hdr(ERROR, seq=1, status=2, id_=15), "", "broker", js({"message": "unknown module"})),
    "notice": frames(hdr(NOTICE, seq=2, status=13, id_=16), "x.y", "broker", js({"message": "full", "dropped": ["b"]})),
    "state-active": frames(hdr(STATE, id_=17), "", "broker", js({"state": "active"})),
    "state-shutdown": frames(hdr(STATE, id_=18), "", "broker", js({"state": "inactive", "shutdown": True})),
    "welcome": frames(hdr(WELCOME, seq=1, id_=19), "fz", "broker", js({"name": "fz", "heartbeat_ms": 100, "max_payload": 10})),
    "pong": frames(hdr(PONG, seq=1, id_=20), "", "broker", ""),
    "short-header": frames(b"LC\x01\x03", "fz.echo", "", "{}"),
    "bad-json": frames(hdr(CALL, id_=21, tx=21), "fz.echo", "peer", "{\"a\":"),
}
yaml = {
    "system": open(os.path.join(HERE, "..", "..", "config", "demo.yaml"), "rb").read(),
    "anchors": b"a: &x {b: [1, 2, {c: d}]}\nmodules:\n  m: {program: lc-echo, config: *x, after: [n]}\n  n: {program: lc-echo}\n",
    "env": b"bus:\n  endpoint: ${LC_BUS:-ipc:///tmp/x}\nmodules:\n  a: {program: p, args: ['${HOME}', \"$${x}\"], restart: on-failure}\n",
    "broken": b"modules: [\n  a: {\n",
}
args = {
    "json": b'{"a": [1, {"b": null}], "c": "d"}',
    "words": b"text=hello\x00n=3\x00flag=true\x00list=[1,2]\x00obj={\"x\":1}",
    "bad": b"novalue\x00=x\x00a=b=c",
}

def write(name, seeds):
    d = os.path.join(HERE, "corpus", name)
    os.makedirs(d, exist_ok=True)
    for key, data in seeds.items():
        with open(os.path.join(d, "seed-" + key), "wb") as f:
            f.write(data)

for name, seeds in (("broker", broker), ("client", client), ("yaml", yaml), ("args", args)):
    write(name, seeds)
print("seeds written to", os.path.join(HERE, "corpus"), file=sys.stderr)
