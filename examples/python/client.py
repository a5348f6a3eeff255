#!/usr/bin/env python3
"""Drive `agentexec serve` from Python: python3 client.py [agentexec [--policy FILE]]

The client itself is agentexec_client.py beside this file (copy it); this shows its use.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentexec_client import AgentExec, ProtocolError  # noqa: E402

binary, *flags = sys.argv[1:] or ["agentexec"]
with AgentExec([binary, "serve", *flags]) as ax:
    # Submitted together, they run concurrently; results come in any order.
    futs = [ax.submit("ls"), ax.submit("cat", stdin="hello\n"), ax.submit("rm", "-rf", "/")]
    for i, fut in enumerate(futs, 1):
        r = fut.result(timeout=60)
        print(i, r.status, r.exit_code, repr(r.stdout.decode("utf-8", "replace"))[:60], r.error or "")

    # Binary stdin and output, 1 MiB each way: written while the reader thread reads.
    blob = bytes(range(256)) * 4096
    r = ax.run("cat", stdin=blob, timeout=60)
    print("binary", r.status, len(r.stdout), r.stdout == blob)

    # Streamed output arrives as it is produced, and the result holds all of it.
    chunks = []
    r = ax.run("cat", stdin="one\ntwo\n", stream=True, on_output=lambda s, d: chunks.append((s, d)), timeout=60)
    print("stream", r.status, len(chunks) > 0, r.stdout == b"one\ntwo\n")

    # An id still in flight: the error answers the second request, never the first.
    slow = ax.submit("cat", stdin="first\n", id="same")
    try:
        ax.submit("cat", id="same").result(timeout=60)
    except ValueError as e:  # this client refuses it before sending...
        print("duplicate refused by the client:", e)
    try:  # ...a server-side refusal comes back as ProtocolError, matched by line number
        ax.submit("cat", timeout_ms=-1).result(timeout=60)
    except ProtocolError as e:
        print("protocol error", e.code, "line", e.line)
    print("same", slow.result(timeout=60).stdout.decode())

    print("stats", {k: v for k, v in ax.stats().result(timeout=60).items() if k in ("requests", "results", "errors")})
sys.exit(ax.close())
