"""A client for `agentexec serve` (docs/protocol.md): copy this file into your project.

Standard library only, Python 3.8+. Thread-safe: submit from any thread; one reader
thread reads the server's stdout, so large stdin and large output never deadlock.

    from agentexec_client import AgentExec

    with AgentExec(["agentexec", "serve", "--policy", "agent.yaml"]) as ax:
        fut = ax.submit("rg", "-n", "TODO", ".")          # a concurrent.futures.Future
        r = fut.result(timeout=60)                        # a Result
        print(r.status, r.exit_code, r.stdout.decode())   # stdout/stderr are bytes
        r = ax.run("cat", stdin=b"\\x00\\x01 binary")       # submit + result
        ax.submit("make", stream=True, on_output=lambda stream, data: print(stream, data))

How answers are matched (the part that is easy to get wrong):

- every line the client writes gets exactly one answer from the server (a run
  request: its result or an error line; ping, stats, policy: their reply; a cancel
  that applies: nothing of its own, the canceled request's result answers it);
- results, chunks and control replies carry the id the client chose;
- error lines carry the *line number* of the line they answer, and an id only when
  it could be read: they are matched by line number, never by id (a duplicate_id
  error must not be taken for the result of the earlier request that holds the id);
- stdout, stderr and chunk data are base64 when the line says so ("stdout_encoding",
  "stderr_encoding", "encoding"); this client always hands out bytes.
"""

import base64
import concurrent.futures
import itertools
import json
import subprocess
import threading

__all__ = ["AgentExec", "Result", "ProtocolError", "ServerGone"]


class ProtocolError(Exception):
    """The server refused a line: code is the error code (docs/protocol.md, "Error lines")."""

    def __init__(self, code, message, line, rid=None):
        super().__init__(f"{code}: {message} (line {line})")
        self.code, self.message, self.line, self.id = code, message, line, rid


class ServerGone(ConnectionError):
    """The server's stdout ended before the answer came."""


class Result:
    """A result line, with stdout and stderr decoded to bytes. Every field of the line
    is in .fields; the common ones are attributes."""

    def __init__(self, fields, streamed_stdout=b"", streamed_stderr=b""):
        self.fields = fields
        self.id = fields.get("id")
        self.status = fields.get("status")  # ok, denied, error, timeout, killed
        self.exit_code = fields.get("exit_code")  # None unless the tool exited
        self.signal = fields.get("signal")
        self.error = fields.get("error")
        self.denied = fields.get("denied")
        self.canceled = fields.get("canceled", False)
        self.timed_out = fields.get("timed_out", False)
        self.stdout = streamed_stdout + _decode(fields.get("stdout", ""), fields.get("stdout_encoding"))
        self.stderr = streamed_stderr + _decode(fields.get("stderr", ""), fields.get("stderr_encoding"))

    def __repr__(self):
        return f"Result(id={self.id!r}, status={self.status!r}, exit_code={self.exit_code!r})"


def _decode(data, encoding):
    if encoding == "base64":
        return base64.b64decode(data)
    return data.encode("utf-8")


class _Pending:
    __slots__ = ("kind", "line", "id", "future", "on_output", "out", "err")

    def __init__(self, kind, line, rid, on_output=None):
        self.kind, self.line, self.id = kind, line, rid
        self.future = concurrent.futures.Future()
        self.on_output = on_output
        self.out, self.err = [], []


class AgentExec:
    """One `agentexec serve` process. cmd is its argv (default: agentexec serve).

    submit() returns a Future of a Result; the Future fails with ProtocolError when
    the server refused the line, and with ServerGone when the server exited first.
    """

    def __init__(self, cmd=("agentexec", "serve"), stderr=None):
        self._p = subprocess.Popen(list(cmd), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr)
        self._write_lock = threading.Lock()  # line numbers are the order of writes
        self._lock = threading.Lock()  # the tables below
        self._lines = 0
        self._ids = itertools.count(1)
        self._by_line = {}  # line number -> _Pending, until answered
        self._by_id = {}  # request id -> _Pending (run requests and control messages)
        self._gone = None
        self._reader = threading.Thread(target=self._read, name="agentexec-reader", daemon=True)
        self._reader.start()

    # --- requests -------------------------------------------------------------------

    def submit(self, tool, *args, stdin=None, cwd=None, env=None, timeout_ms=None,
               max_output_bytes=None, stream=False, on_output=None, id=None):
        """Send a run request; return a Future of its Result.

        stdin is bytes or str (bytes go as base64). With stream=True the output also
        comes as it is produced: on_output(stream_name, data_bytes) is called on the
        reader thread (keep it short) and the Result's stdout/stderr hold it all.
        """
        rid = id if id is not None else f"r{next(self._ids)}"
        msg = {"id": rid, "tool": tool}
        if args:
            msg["args"] = [str(a) for a in args]
        if cwd is not None:
            msg["cwd"] = cwd
        if env:
            msg["env"] = env
        if stdin is not None:
            if isinstance(stdin, str):
                msg["stdin"] = stdin
            else:
                msg["stdin"], msg["stdin_encoding"] = base64.b64encode(stdin).decode("ascii"), "base64"
        if timeout_ms is not None:
            msg["timeout_ms"] = int(timeout_ms)
        if max_output_bytes is not None:
            msg["max_output_bytes"] = int(max_output_bytes)
        if stream:
            msg["stream"] = True
        return self._send("run", rid, msg, on_output).future

    def run(self, tool, *args, timeout=None, **opts):
        """submit() and wait for the Result (timeout in seconds for the wait)."""
        return self.submit(tool, *args, **opts).result(timeout)

    def cancel(self, rid):
        """Cancel request rid. Its Result (status killed, canceled true) is the answer;
        a cancel that arrives after the result is answered with an unknown_id error,
        which this client drops."""
        self._send("cancel", rid, {"type": "cancel", "id": rid})

    def ping(self):
        return self._control("ping")

    def stats(self):
        return self._control("stats")

    def policy(self):
        return self._control("policy")

    def _control(self, typ):
        rid = f"{typ}{next(self._ids)}"
        return self._send(typ, rid, {"type": typ, "id": rid}).future

    def _send(self, kind, rid, msg, on_output=None):
        data = (json.dumps(msg, ensure_ascii=False) + "\n").encode("utf-8")
        with self._write_lock:
            with self._lock:
                if self._gone is not None:
                    raise self._gone
                if kind != "cancel" and rid in self._by_id:
                    raise ValueError(f"id {rid!r} is in flight in this client")
                self._lines += 1
                p = _Pending(kind, self._lines, rid, on_output)
                self._by_line[p.line] = p
                if kind != "cancel":
                    self._by_id[rid] = p
            try:
                self._p.stdin.write(data)  # may block: the server's backpressure
                self._p.stdin.flush()
            except (BrokenPipeError, ValueError) as e:
                self._fail_all(ServerGone(f"agentexec serve: stdin closed: {e}"))
                raise self._gone from e
        return p

    # --- answers --------------------------------------------------------------------

    def _read(self):
        try:
            for raw in self._p.stdout:  # one JSON object per line
                self._dispatch(json.loads(raw))
        except Exception as e:  # a line that is not JSON: the stream is broken
            self._fail_all(ServerGone(f"agentexec serve: bad output: {e!r}"))
            return
        self._fail_all(ServerGone("agentexec serve exited"))

    def _dispatch(self, m):
        typ = m.get("type")
        with self._lock:
            if typ == "error":
                p = self._by_line.pop(m.get("line"), None)
                if p is not None and self._by_id.get(p.id) is p:
                    del self._by_id[p.id]
            elif typ in ("stdout", "stderr"):
                p = self._by_id.get(m.get("id"))
                if p is not None:
                    data = _decode(m.get("data", ""), m.get("encoding"))
                    (p.out if typ == "stdout" else p.err).append(data)
                    cb = p.on_output
                else:
                    cb = None
            else:  # result, pong, stats, policy
                p = self._by_id.pop(m.get("id"), None)
                if p is not None:
                    self._by_line.pop(p.line, None)
                    if typ == "result":  # pending cancels of this id are answered by it
                        for n, q in list(self._by_line.items()):
                            if q.kind == "cancel" and q.id == p.id:
                                del self._by_line[n]
        if p is None:
            return  # an answer to a dropped cancel, or a chunk of an unknown id
        if typ == "error":
            if p.kind != "cancel":
                p.future.set_exception(ProtocolError(m.get("code"), m.get("error"), m.get("line"), m.get("id")))
        elif typ in ("stdout", "stderr"):
            if cb is not None:
                cb(typ, data)
        elif typ == "result":
            p.future.set_result(Result(m, b"".join(p.out), b"".join(p.err)))
        else:
            p.future.set_result(m)

    def _fail_all(self, exc):
        with self._lock:
            if self._gone is None:
                self._gone = exc
            pending = list(self._by_line.values()) + list(self._by_id.values())
            self._by_line.clear()
            self._by_id.clear()
        for p in pending:
            if not p.future.done():
                p.future.set_exception(exc)

    # --- end ------------------------------------------------------------------------

    def close(self, timeout=None):
        """Close the server's stdin: it finishes the requests in flight, answers them
        and exits. Returns its exit status."""
        with self._write_lock:
            try:
                self._p.stdin.close()
            except BrokenPipeError:
                pass
        code = self._p.wait(timeout)
        self._reader.join(timeout)
        return code

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
