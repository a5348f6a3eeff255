#!/usr/bin/env python3
"""Drive `agentexec serve` from Python: python3 client.py [agentexec [--policy FILE]]"""
import base64, itertools, json, subprocess, sys

class AgentExec:
    def __init__(self, cmd=("agentexec",)):
        self.p = subprocess.Popen([*cmd, "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.ids, self.done = itertools.count(1), {}

    def submit(self, tool, *args, **opts):  # opts: cwd, env, stdin, timeout_ms, stream...
        rid = str(next(self.ids))
        self.p.stdin.write(json.dumps({"id": rid, "tool": tool, "args": list(args), **opts}) + "\n")
        self.p.stdin.flush()
        return rid

    def result(self, rid):  # read lines until rid's result; keep the others
        while rid not in self.done:
            msg = json.loads(self.p.stdout.readline() or '{"type":"eof"}')
            if msg["type"] in ("result", "error") and "id" in msg:
                self.done[msg["id"]] = msg
            elif msg["type"] == "eof":
                raise EOFError("agentexec serve exited")
        r = self.done.pop(rid)
        if r.get("stdout_encoding") == "base64":
            r["stdout"] = base64.b64decode(r["stdout"])
        return r

    def close(self):
        self.p.stdin.close()  # EOF: the server drains and exits 0
        return self.p.wait()

ax = AgentExec(sys.argv[1:] or ("agentexec",))
ids = [ax.submit("ls"), ax.submit("cat", stdin="hello\n"), ax.submit("rm", "-rf", "/")]
for rid in ids:  # submitted together, they run concurrently
    r = ax.result(rid)
    print(rid, r["status"], r.get("exit_code"), repr(r.get("stdout", ""))[:60], r.get("error", ""))
sys.exit(ax.close())
