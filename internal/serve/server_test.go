package serve

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentexec/agentexec"
	"github.com/agentexec/agentexec/internal/testutil"
	"github.com/agentexec/agentexec/policy"
)

// The test binary serves as the runtime's spawner.
func TestMain(m *testing.M) {
	agentexec.ServeSpawner()
	code := m.Run()
	testutil.RemoveAgentexecBinary()
	os.Exit(code)
}

// policyYAML is the test policy: a few shell tools, the workspace readable, ws/out
// writable. The e2e test writes it to a file for the binary.
func policyYAML(ws string) string {
	return fmt.Sprintf(`version: 1
workspace: %s
defaults:
  filesystem:
    read: [/usr, /lib, /lib64, /bin, /etc, /proc, /dev/null, "${WORKSPACE}"]
    write: ["${WORKSPACE}/out", /dev/null]
    exec: [/usr, /bin, /lib, /lib64]
  env:
    allow: [FOO, LC_*]
    set:
      PATH: /usr/bin:/bin
  limits:
    timeout: 60s
    output: 1MiB
  enforcement:
    landlock: require
    cgroup: best_effort
tools:
  sh: {exec: /bin/sh, hot: true}
  cat: {exec: /bin/cat, hot: true}
  true: {exec: /bin/true, hot: true}
  echo: {exec: /bin/echo, hot: true}
  sleep: {exec: /bin/sleep}
`, ws)
}

func testPolicy(t testing.TB) *policy.Policy {
	t.Helper()
	ws := t.TempDir()
	if err := os.Mkdir(ws+"/out", 0o755); err != nil {
		t.Fatal(err)
	}
	p, err := policy.Parse("test.yaml", []byte(policyYAML(ws)), policy.Options{Workspace: ws, Home: "/root", CPUs: runtime.NumCPU()})
	if err != nil {
		t.Fatalf("policy: %v", err)
	}
	if err := policy.Resolve(p); err != nil {
		t.Fatalf("resolve: %v", err)
	}
	return p
}

func newRuntime(t testing.TB, opts ...agentexec.Option) *agentexec.Runtime {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireLandlockABI(t, 1)
	rt, err := agentexec.New(context.Background(), testPolicy(t), opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := rt.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return rt
}

// session is a server running in-process on pipes.
type session struct {
	t      testing.TB
	in     *io.PipeWriter
	lines  chan map[string]any
	done   chan error
	cancel context.CancelFunc
	inMu   sync.Mutex
}

func startSession(t testing.TB, rt *agentexec.Runtime, cfg Config) *session {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	s := &session{t: t, in: inW, lines: make(chan map[string]any, 4096), done: make(chan error, 1), cancel: cancel}
	go func() {
		err := Serve(ctx, rt, inR, outW, cfg)
		inR.Close()
		outW.Close()
		s.done <- err
	}()
	go func() {
		sc := bufio.NewScanner(outR)
		sc.Buffer(nil, 64<<20)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Errorf("stdout line is not a JSON object: %q: %v", sc.Text(), err)
				continue
			}
			s.lines <- m
		}
		close(s.lines)
	}()
	t.Cleanup(func() {
		// Stop the server and consume its output, so that a failed test cannot leave
		// it blocked on a full pipe.
		cancel()
		inW.Close()
		for range s.lines {
		}
	})
	return s
}

func (s *session) send(lines ...string) {
	s.t.Helper()
	s.inMu.Lock()
	defer s.inMu.Unlock()
	for _, l := range lines {
		if _, err := io.WriteString(s.in, l+"\n"); err != nil {
			s.t.Fatalf("write input: %v", err)
		}
	}
}

// next returns the next output line.
func (s *session) next(timeout time.Duration) map[string]any {
	s.t.Helper()
	select {
	case m, ok := <-s.lines:
		if !ok {
			s.t.Fatal("output ended")
		}
		return m
	case <-time.After(timeout):
		s.t.Fatalf("no output line within %v", timeout)
	}
	return nil
}

// closeAndCollect ends the input and returns every remaining line and Serve's error.
func (s *session) closeAndCollect(timeout time.Duration) ([]map[string]any, error) {
	s.t.Helper()
	s.in.Close()
	var out []map[string]any
	deadline := time.After(timeout)
	for {
		select {
		case m, ok := <-s.lines:
			if !ok {
				select {
				case err := <-s.done:
					return out, err
				case <-deadline:
					s.t.Fatalf("Serve did not return within %v", timeout)
				}
			}
			out = append(out, m)
		case <-deadline:
			s.t.Fatalf("output did not end within %v", timeout)
		}
	}
}

func byID(lines []map[string]any, typ string) map[string]map[string]any {
	m := map[string]map[string]any{}
	for _, l := range lines {
		if l["type"] == typ {
			id, _ := l["id"].(string)
			m[id] = l
		}
	}
	return m
}

func TestServeRun(t *testing.T) {
	rt := newRuntime(t)
	s := startSession(t, rt, Config{})
	s.send(
		`{"id":"echo","tool":"echo","args":["hello","world"]}`,
		`{"id":"exit","tool":"sh","args":["-c","echo out; echo err >&2; exit 3"]}`,
		`{"id":"stdin","tool":"cat","stdin":"text in"}`,
		`{"id":"stdin64","tool":"cat","stdin":"`+base64.StdEncoding.EncodeToString([]byte{0, 1, 0xff})+`","stdin_encoding":"base64"}`,
		`{"id":"env","tool":"sh","args":["-c","echo $FOO"],"env":{"FOO":"bar"}}`,
		`{"id":"denied","tool":"rm","args":["-rf","/"]}`,
		`{"id":"deniedenv","tool":"cat","env":{"SECRET":"x"}}`,
		`{"id":"signal","tool":"sh","args":["-c","kill -9 $$"]}`,
		`{"id":"timeout","tool":"sleep","args":["10"],"timeout_ms":100}`,
		`{"id":"trunc","tool":"sh","args":["-c","printf 0123456789"],"max_output_bytes":4}`,
		`{"id":"sub","tool":"sh","args":["-c","pwd"],"cwd":"out"}`,
	)
	lines, err := s.closeAndCollect(30 * time.Second)
	if err != nil {
		t.Fatalf("Serve: %v", err)
	}
	res := byID(lines, "result")
	if len(res) != 11 || len(lines) != 11 {
		t.Fatalf("got %d lines, %d results, want 11: %v", len(lines), len(res), lines)
	}
	check := func(id, field string, want any) {
		t.Helper()
		if got := res[id][field]; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: %s = %v, want %v (%v)", id, field, got, want, res[id])
		}
	}
	check("echo", "status", "ok")
	check("echo", "stdout", "hello world\n")
	check("echo", "exit_code", 0)
	check("exit", "exit_code", 3)
	check("exit", "stdout", "out\n")
	check("exit", "stderr", "err\n")
	check("exit", "status", "ok")
	check("stdin", "stdout", "text in")
	check("stdin64", "stdout", base64.StdEncoding.EncodeToString([]byte{0, 1, 0xff}))
	check("stdin64", "stdout_encoding", "base64")
	check("env", "stdout", "bar\n")
	check("denied", "status", "denied")
	check("deniedenv", "status", "denied")
	if d, _ := res["denied"]["denied"].(map[string]any); d["rule"] != "tools" || d["op"] != "launch" {
		t.Errorf("denied: %v", res["denied"])
	}
	if d, _ := res["deniedenv"]["denied"].(map[string]any); d["rule"] != "tools.cat.env.allow" || d["object"] != "SECRET" {
		t.Errorf("deniedenv: %v", res["deniedenv"])
	}
	check("signal", "status", "killed")
	check("signal", "signal", "SIGKILL")
	check("timeout", "status", "timeout")
	check("timeout", "timed_out", true)
	check("trunc", "stdout", "0123")
	check("trunc", "stdout_truncated", true)
	if !strings.HasSuffix(fmt.Sprint(res["sub"]["stdout"]), "/out\n") {
		t.Errorf("cwd: %v", res["sub"])
	}
	for id, r := range res {
		if _, ok := r["duration_ms"]; !ok {
			t.Errorf("%s: no duration_ms", id)
		}
	}
}

func TestServeBadLines(t *testing.T) {
	rt := newRuntime(t)
	s := startSession(t, rt, Config{MaxLineBytes: 1 << 10})
	s.send(
		`{"id":"a","tool":"echo","args":["a"]}`, // 1
		`not json`,                              // 2
		``,                                      // 3
		`{"id":"b","tool":"echo","bogus":true}`, // 4
		`{"id":5,"tool":"echo"}`,                // 5
		`{"tool":"echo"}`,                       // 6
		`{"id":"x","tool":"echo","args":["`+strings.Repeat("y", 4<<10)+`"]}`, // 7
		`{"id":"c","tool":"echo","args":["c"]}`,                              // 8
		`{"type":"cancel","id":"nope"}`,                                      // 9
		`{"type":"frobnicate","id":"f"}`,                                     // 10
		`{"id":"d","tool":"echo","timeout_ms":"1"}`,                          // 11
	)
	lines, err := s.closeAndCollect(30 * time.Second)
	if err != nil {
		t.Fatalf("Serve: %v", err)
	}
	want := map[int64]struct{ code, id string }{
		2: {CodeInvalidJSON, ""}, 3: {CodeInvalidJSON, ""}, 4: {CodeUnknownField, "b"}, 5: {CodeWrongType, ""},
		6: {CodeMissingField, ""}, 7: {CodeLineTooLong, ""}, 9: {CodeUnknownID, "nope"}, 10: {CodeUnknownType, "f"},
		11: {CodeWrongType, "d"},
	}
	got := map[int64]map[string]any{}
	for _, l := range lines {
		if l["type"] == "error" {
			n := int64(l["line"].(float64))
			if got[n] != nil {
				t.Errorf("line %d answered twice", n)
			}
			got[n] = l
		}
	}
	for n, w := range want {
		g := got[n]
		if g == nil {
			t.Errorf("line %d: no error line", n)
			continue
		}
		id, _ := g["id"].(string)
		if g["code"] != w.code || id != w.id || g["error"] == "" {
			t.Errorf("line %d: got %v, want code %s id %q", n, g, w.code, w.id)
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %d error lines, want %d: %v", len(got), len(want), got)
	}
	res := byID(lines, "result")
	if len(res) != 2 || res["a"]["stdout"] != "a\n" || res["c"]["stdout"] != "c\n" {
		t.Errorf("good requests: %v", res)
	}
}

func waitGone(t *testing.T, marker string) {
	t.Helper()
	for range 100 {
		if len(testutil.ProcsWith(marker)) == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("processes with %q still running: %v", marker, testutil.ProcsWith(marker))
}

func waitRunning(t *testing.T, marker string) { t.Helper(); waitRunningN(t, marker, 1) }

// waitRunningN waits until n sleep processes with marker run (not only a shell whose
// command line holds the marker: it may not have run its trap yet).
func waitRunningN(t *testing.T, marker string, n int) {
	t.Helper()
	for range 250 {
		if len(testutil.SleepersWith(marker)) >= n {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("fewer than %d processes with %q started", n, marker)
}

func TestServeCancelAndDuplicateID(t *testing.T) {
	rt := newRuntime(t, agentexec.WithKillGrace(200*time.Millisecond))
	s := startSession(t, rt, Config{})
	m := testutil.SleepMarker()
	s.send(`{"id":"long","tool":"sh","args":["-c","trap '' TERM; sleep ` + m + `"]}`)
	waitRunning(t, m)
	s.send(`{"id":"long","tool":"echo"}`)
	l := s.next(5 * time.Second)
	if l["type"] != "error" || l["code"] != CodeDuplicateID || l["id"] != "long" || l["line"] != 2.0 {
		t.Fatalf("duplicate id: got %v", l)
	}
	start := time.Now()
	s.send(`{"type":"cancel","id":"long"}`)
	l = s.next(10 * time.Second)
	if l["type"] != "result" || l["id"] != "long" || l["status"] != "killed" || l["canceled"] != true || l["signal"] == nil {
		t.Fatalf("canceled request: got %v", l)
	}
	t.Logf("cancel to result: %v", time.Since(start))
	waitGone(t, m)
	// The id is free again.
	s.send(`{"id":"long","tool":"echo","args":["again"]}`)
	if l = s.next(5 * time.Second); l["type"] != "result" || l["stdout"] != "again\n" {
		t.Fatalf("id reuse: %v", l)
	}
	if _, err := s.closeAndCollect(10 * time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestServeCancelQueued(t *testing.T) {
	rt := newRuntime(t, agentexec.WithKillGrace(100*time.Millisecond))
	s := startSession(t, rt, Config{MaxInflight: 1, MaxQueued: 4})
	m := testutil.SleepMarker()
	s.send(`{"id":"running","tool":"sleep","args":["`+m+`"]}`, `{"id":"queued","tool":"echo","args":["never"]}`)
	waitRunning(t, m)
	s.send(`{"type":"stats","id":"s"}`)
	st := s.next(5 * time.Second)
	if st["type"] != "stats" || st["running"] != 1.0 || st["queued"] != 1.0 || st["in_flight"] != 2.0 || st["requests"] != 2.0 {
		t.Fatalf("stats: %v", st)
	}
	s.send(`{"type":"cancel","id":"queued"}`)
	l := s.next(5 * time.Second)
	if l["id"] != "queued" || l["status"] != "killed" || l["canceled"] != true || l["stdout"] != "" || l["backend"] != nil {
		t.Fatalf("queued request canceled: %v", l)
	}
	s.send(`{"type":"cancel","id":"running"}`)
	if l = s.next(5 * time.Second); l["id"] != "running" || l["status"] != "killed" {
		t.Fatalf("running request canceled: %v", l)
	}
	waitGone(t, m)
	if _, err := s.closeAndCollect(10 * time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestServeStream(t *testing.T) {
	rt := newRuntime(t)
	s := startSession(t, rt, Config{})
	// 200 KiB of multi-byte text, written in pieces that split runes, then binary.
	script := `i=0; while [ $i -lt 20000 ]; do printf 'héllo€ '; i=$((i+1)); done; printf 'E' >&2; printf '\377\376'`
	s.send(`{"id":"s","tool":"sh","args":["-c",` + strconv.Quote(script) + `],"stream":true}`)
	var stdout, stderr bytes.Buffer
	chunks := 0
	for {
		l := s.next(20 * time.Second)
		if l["id"] != "s" {
			t.Fatalf("foreign line %v", l)
		}
		if l["type"] == "result" {
			if l["status"] != "ok" || l["stdout"] != "" {
				t.Fatalf("result %v", l)
			}
			break
		}
		data := l["data"].(string)
		var b []byte
		if l["encoding"] == "base64" {
			var err error
			if b, err = base64.StdEncoding.DecodeString(data); err != nil {
				t.Fatal(err)
			}
		} else {
			b = []byte(data)
		}
		switch l["type"] {
		case "stdout":
			stdout.Write(b)
			chunks++
		case "stderr":
			stderr.Write(b)
		default:
			t.Fatalf("unexpected line %v", l)
		}
	}
	want := strings.Repeat("héllo€ ", 20000) + "\xff\xfe"
	if stdout.String() != want || stderr.String() != "E" {
		t.Fatalf("streamed %d stdout bytes (want %d), stderr %q", stdout.Len(), len(want), stderr.String())
	}
	if chunks < 2 {
		t.Errorf("200 KiB came in %d chunk(s)", chunks)
	}
	if _, err := s.closeAndCollect(10 * time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestServeControl(t *testing.T) {
	rt := newRuntime(t)
	s := startSession(t, rt, Config{Version: "test-1"})
	s.send(`{"id":"t","tool":"true"}`)
	if l := s.next(10 * time.Second); l["status"] != "ok" {
		t.Fatal(l)
	}
	s.send(`{"type":"ping","id":"p1"}`)
	if l := s.next(5 * time.Second); l["type"] != "pong" || l["id"] != "p1" || l["version"] != "test-1" {
		t.Fatalf("pong: %v", l)
	}
	s.send(`{"type":"stats"}`)
	st := s.next(5 * time.Second)
	if st["type"] != "stats" || st["requests"] != 1.0 || st["results"] != 1.0 || st["launches"] != 1.0 || st["in_flight"] != 0.0 || st["max_inflight"] != 64.0 {
		t.Fatalf("stats: %v", st)
	}
	if b, _ := st["backends"].(map[string]any); b["userspace"] != 1.0 {
		t.Errorf("stats backends: %v", st["backends"])
	}
	s.send(`{"type":"policy","id":"pol"}`)
	pl := s.next(5 * time.Second)
	rep, _ := pl["report"].(map[string]any)
	if pl["type"] != "policy" || pl["id"] != "pol" || rep == nil || rep["ok"] != true {
		t.Fatalf("policy: %v", pl)
	}
	tools, _ := rep["tools"].([]any)
	if len(tools) != 5 {
		t.Errorf("policy report lists %d tools, want 5", len(tools))
	}
	if ll, _ := rep["landlock"].(map[string]any); ll["abi"] == 0.0 {
		t.Errorf("policy report: no Landlock ABI: %v", rep["landlock"])
	}
	if _, err := s.closeAndCollect(10 * time.Second); err != nil {
		t.Fatal(err)
	}
}

// At the end of the input, requests in flight finish and are answered.
func TestServeEOFDrains(t *testing.T) {
	rt := newRuntime(t)
	s := startSession(t, rt, Config{})
	for i := range 8 {
		s.send(fmt.Sprintf(`{"id":"%d","tool":"sh","args":["-c","sleep 0.3; echo %d"]}`, i, i))
	}
	start := time.Now()
	lines, err := s.closeAndCollect(20 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	res := byID(lines, "result")
	for i := range 8 {
		r := res[strconv.Itoa(i)]
		if r["status"] != "ok" || r["stdout"] != fmt.Sprintf("%d\n", i) {
			t.Errorf("request %d: %v", i, r)
		}
	}
	if time.Since(start) < 250*time.Millisecond {
		t.Errorf("Serve returned after %v, before the requests could finish", time.Since(start))
	}
}

func TestServeDrainTimeoutKills(t *testing.T) {
	rt := newRuntime(t, agentexec.WithKillGrace(100*time.Millisecond))
	s := startSession(t, rt, Config{DrainTimeout: 300 * time.Millisecond})
	m := testutil.SleepMarker()
	s.send(`{"id":"slow","tool":"sleep","args":["`+m+`"]}`, `{"id":"fast","tool":"echo","args":["x"]}`)
	waitRunning(t, m)
	start := time.Now()
	lines, err := s.closeAndCollect(20 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	res := byID(lines, "result")
	if res["fast"]["status"] != "ok" || res["slow"]["status"] != "killed" || res["slow"]["canceled"] != true {
		t.Fatalf("results: %v", res)
	}
	if d := time.Since(start); d < 250*time.Millisecond || d > 5*time.Second {
		t.Errorf("drain took %v with a 300ms drain timeout", d)
	}
	waitGone(t, m)
}

// When the context ends (SIGTERM in the command), launches are killed, their results
// written, and Serve returns.
func TestServeContextKills(t *testing.T) {
	rt := newRuntime(t, agentexec.WithKillGrace(100*time.Millisecond))
	s := startSession(t, rt, Config{MaxInflight: 2})
	m := testutil.SleepMarker()
	for i := range 4 { // 2 running, 2 queued
		s.send(fmt.Sprintf(`{"id":"%d","tool":"sleep","args":["%s"]}`, i, m))
	}
	// Both running ones started (a request read after the first launched may
	// not be yet: one goroutine reads and launches, another takes the input over).
	waitRunningN(t, m, 2)
	s.cancel()
	var lines []map[string]any
	timeout := time.After(10 * time.Second)
collect:
	for {
		select {
		case l, ok := <-s.lines:
			if !ok {
				break collect
			}
			lines = append(lines, l)
		case <-timeout:
			t.Fatal("output did not end")
		}
	}
	if err := <-s.done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	res, errs := byID(lines, "result"), byID(lines, "error")
	for i := range 4 {
		r := res[strconv.Itoa(i)]
		if r["status"] == "killed" && r["canceled"] == true {
			continue
		}
		// A queued request the stop reached before it was admitted (or a line
		// not read yet) is answered shutting_down instead (docs/protocol.md,
		// "Lifecycle"); the two running ones are always killed.
		if e := errs[strconv.Itoa(i)]; i >= 2 && r == nil && e["code"] == CodeShuttingDown {
			continue
		}
		t.Errorf("request %d: result %v, error %v", i, r, errs[strconv.Itoa(i)])
	}
	waitGone(t, m)
}

// While MaxInflight+MaxQueued requests are in flight, the server reads no further.
func TestServeBackpressure(t *testing.T) {
	rt := newRuntime(t)
	s := startSession(t, rt, Config{MaxInflight: 1, MaxQueued: 1})
	s.send(
		`{"id":"1","tool":"sh","args":["-c","sleep 0.5"]}`,
		`{"id":"2","tool":"sh","args":["-c","sleep 0.5"]}`,
		`{"id":"3","tool":"true"}`,
		`{"type":"ping","id":"p"}`,
	)
	var order []string
	for range 4 {
		l := s.next(10 * time.Second)
		order = append(order, fmt.Sprint(l["type"], ":", l["id"]))
	}
	// The ping sits behind request 3, which waits for request 1 to end.
	if order[0] != "result:1" || order[1] != "pong:p" {
		t.Errorf("order %v: ping answered before the first slot was free", order)
	}
	if _, err := s.closeAndCollect(10 * time.Second); err != nil {
		t.Fatal(err)
	}
}

type failWriter struct{}

func (w *failWriter) Write(p []byte) (int, error) { return 0, errors.New("broken pipe") }

// A failing output kills the requests in flight and Serve reports the write error.
func TestServeOutputFailure(t *testing.T) {
	rt := newRuntime(t, agentexec.WithKillGrace(100*time.Millisecond))
	m := testutil.SleepMarker()
	in := strings.NewReader(`{"type":"ping"}` + "\n" + `{"id":"x","tool":"sleep","args":["` + m + `"]}` + "\n")
	done := make(chan error, 1)
	go func() { done <- Serve(context.Background(), rt, in, &failWriter{}, Config{}) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "broken pipe") {
			t.Fatalf("Serve: %v, want the write error", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Serve did not return after its output failed")
	}
	waitGone(t, m)
}

// Many concurrent requests: each answered once, with its own output.
func TestServeConcurrent(t *testing.T) {
	rt := newRuntime(t)
	s := startSession(t, rt, Config{MaxInflight: 16})
	const n = 300
	go func() {
		for i := range n {
			s.send(fmt.Sprintf(`{"id":"r%d","tool":"echo","args":["out-%d"]}`, i, i))
		}
	}()
	seen := map[string]bool{}
	for range n {
		l := s.next(30 * time.Second)
		id := l["id"].(string)
		if seen[id] {
			t.Fatalf("%s answered twice", id)
		}
		seen[id] = true
		if l["status"] != "ok" || l["stdout"] != "out-"+strings.TrimPrefix(id, "r")+"\n" {
			t.Fatalf("%s: %v", id, l)
		}
	}
	if _, err := s.closeAndCollect(10 * time.Second); err != nil {
		t.Fatal(err)
	}
}

// Requests in flight run at the same time: 4 sleeps of 0.5s, with 4 slots and a
// profile concurrency of 2×CPUs (at least 2), take well under 4×0.5s.
func TestServeRunsConcurrently(t *testing.T) {
	rt := newRuntime(t)
	s := startSession(t, rt, Config{MaxInflight: 4})
	start := time.Now()
	for i := range 4 {
		s.send(fmt.Sprintf(`{"id":"%d","tool":"sh","args":["-c","sleep 0.5"]}`, i))
	}
	for range 4 {
		if l := s.next(10 * time.Second); l["status"] != "ok" {
			t.Fatalf("result %v", l)
		}
	}
	if d := time.Since(start); d > 1600*time.Millisecond {
		t.Errorf("4 concurrent 0.5s requests took %v: launches are serialized (want < 1.6s)", d)
	}
	if _, err := s.closeAndCollect(10 * time.Second); err != nil {
		t.Fatal(err)
	}
}
