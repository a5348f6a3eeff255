package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/agentexec/agentexec"
	"github.com/agentexec/agentexec/internal/serve"
	"github.com/agentexec/agentexec/internal/testutil"
	"github.com/agentexec/agentexec/policy"
)

// newRuntime starts a runtime for the test policy in this process.
func newRuntime(t testing.TB) (*agentexec.Runtime, string) {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireLandlockABI(t, 1)
	dir := t.TempDir()
	p, err := policy.LoadBytes("policy.yaml", []byte(policyYAML(dir)), policy.Options{Workspace: dir})
	if err != nil {
		t.Fatalf("policy: %v", err)
	}
	rt, err := agentexec.New(context.Background(), p)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := rt.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return rt, dir
}

// startInProcessWorker runs a worker on a one-node server in this process.
func startInProcessWorker(t testing.TB, rt *agentexec.Runtime, nc *nats.Conn, cfg WorkerConfig) *Worker {
	t.Helper()
	w, err := NewWorker(nc, rt, cfg)
	if err != nil {
		t.Fatal(err)
	}
	runWorker(t, w)
	return w
}

// runWorker runs w until the test's cleanup, which checks Run's error.
func runWorker(t testing.TB, w *Worker) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker Run: %v", err)
		}
	})
}

// serveLines answers input through serve.Serve, as `agentexec serve` on stdin.
func serveLines(t testing.TB, rt *agentexec.Runtime, input string) []string {
	t.Helper()
	var out bytes.Buffer
	if err := serve.Serve(context.Background(), rt, strings.NewReader(input), &out, serve.Config{}); err != nil {
		t.Fatal(err)
	}
	return lines(&out)
}

// TestBadInputSameErrors: a bad message over NATS gets the error line that the same
// line gets on serve's stdin (both are the first line of their input).
func TestBadInputSameErrors(t *testing.T) {
	rt, _ := newRuntime(t)
	c := startCluster(t, 1, false)
	startInProcessWorker(t, rt, c.connect(workerUser, workerPass), WorkerConfig{Version: "1.2.3"})
	cl := NewClient(c.connect(agentUser, agentPass), ClientOptions{})
	bad := []string{
		`not json`,
		`[1,2]`,
		`{"id":"a","tool":"echo"} {"id":"b"}`,
		`{"id":"a","tool":"echo","bogus":1}`,
		`{"id":"a","Tool":"echo"}`,
		`{"id":"a","tool":"echo","tool":"sh"}`,
		`{"id":"a","tool":"echo","args":"x"}`,
		`{"id":"a"}`,
		`{"tool":"echo"}`,
		`{"id":"a","tool":"echo","timeout_ms":-1}`,
		`{"id":"a","tool":"echo","stdin":"@@","stdin_encoding":"base64"}`,
		`{"id":"a","type":"launch"}`,
		`{"id":"a","type":"ping","tool":"echo"}`,
		"{\"id\":\"a\",\"tool\":\"ec\xffho\"}",
		`{"id":"zz","type":"cancel"}`,
	}
	for _, line := range bad {
		want := serveLines(t, rt, line+"\n")
		if len(want) != 1 {
			t.Fatalf("serve answered %q with %d lines: %q", line, len(want), want)
		}
		rep, err := cl.Do(context.Background(), []byte(line))
		if err != nil {
			t.Fatalf("%q over NATS: %v", line, err)
		}
		got := string(rep.Final)
		if line == `{"id":"zz","type":"cancel"}` {
			// Only the worker's id is added to what the error says.
			got = strings.Replace(got, " on worker "+rep.Worker, "", 1)
		}
		if got != want[0] {
			t.Errorf("%q:\n over NATS %s\n on stdin  %s", line, got, want[0])
		}
		if rep.Type != serve.TypeError {
			t.Errorf("%q: answer of type %q, want error", line, rep.Type)
		}
	}

	// The control: good requests are run, streamed ones in chunks.
	rep, err := cl.Do(context.Background(), []byte(`{"id":"ok","tool":"echo","args":["hi"]}`))
	if err != nil {
		t.Fatal(err)
	}
	var res agentexec.ResultJSON
	if err := json.Unmarshal(rep.Final, &res); err != nil || res.Status != agentexec.StatusOK || res.Stdout != "hi\n" || res.ID != "ok" {
		t.Fatalf("result %s (%v)", rep.Final, err)
	}
	rep, err = cl.Do(context.Background(), []byte(`{"id":"s","tool":"sh","args":["-c","echo one; echo two >&2"],"stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Chunks) < 2 || rep.Type != "result" {
		t.Fatalf("streamed: %d chunks, final %s", len(rep.Chunks), rep.Final)
	}
	rep, err = cl.Do(context.Background(), []byte(`{"type":"ping","id":"p"}`))
	if err != nil || string(rep.Final) != `{"type":"pong","id":"p","version":"1.2.3"}` {
		t.Fatalf("ping: %s %v", rep.Final, err)
	}
	rep, err = cl.Do(context.Background(), []byte(`{"type":"stats","id":"st"}`))
	if err != nil {
		t.Fatal(err)
	}
	var st serve.StatsLine
	if err := json.Unmarshal(rep.Final, &st); err != nil {
		t.Fatal(err)
	}
	if st.Requests != 2 || st.Results != 2 || st.InFlight != 0 || st.Errors != uint64(len(bad)) || st.Statuses["ok"] != 2 {
		t.Errorf("stats: %s", rep.Final)
	}
}

// TestCancelOverNATS: a cancel on the worker's subject kills the request; its
// result says so, as on stdin.
func TestCancelOverNATS(t *testing.T) {
	rt, _ := newRuntime(t)
	c := startCluster(t, 1, false)
	w := startInProcessWorker(t, rt, c.connect(workerUser, workerPass), WorkerConfig{})
	cl := NewClient(c.connect(agentUser, agentPass), ClientOptions{})
	done := make(chan *Reply, 1)
	go func() {
		rep, err := cl.Do(context.Background(), []byte(`{"id":"long","tool":"sleep","args":["30"]}`))
		if err != nil {
			t.Error(err)
		}
		done <- rep
	}()
	waitFor(t, 20*time.Second, "the request running", func() bool { return w.stats("").Running == 1 })
	rep, err := cl.DoWorker(context.Background(), w.ID(), []byte(`{"type":"cancel","id":"long"}`))
	if err != nil || rep.Type != EventCancelApplied {
		t.Fatalf("cancel: %+v %v", rep, err)
	}
	rep = <-done
	var res agentexec.ResultJSON
	if err := json.Unmarshal(rep.Final, &res); err != nil || res.Status != agentexec.StatusKilled || !res.Canceled {
		t.Fatalf("canceled result: %s (%v)", rep.Final, err)
	}
}

// TestOnlyCredentialedPublish: the outsider user may connect but not publish to
// the pool; the agent user (the control) is answered.
func TestOnlyCredentialedPublish(t *testing.T) {
	rt, _ := newRuntime(t)
	c := startCluster(t, 1, false)
	startInProcessWorker(t, rt, c.connect(workerUser, workerPass), WorkerConfig{})
	asyncErr := make(chan error, 4)
	out := c.connect(outsiderUser, outsiderPass, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { asyncErr <- err }))
	_, err := NewClient(out, ClientOptions{AcceptTimeout: 2 * time.Second}).Do(context.Background(), []byte(`{"id":"x","tool":"echo","args":["pwned"]}`))
	if !errors.Is(err, ErrNotAccepted) {
		t.Fatalf("outsider's request: %v, want ErrNotAccepted", err)
	}
	select {
	case err := <-asyncErr:
		if !errors.Is(err, nats.ErrPermissionViolation) {
			t.Errorf("outsider's async error: %v, want a permissions violation", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("no permissions violation reported to the outsider")
	}
	if _, err := nats.Connect(c.url(agentUser, "wrong-password")); err == nil {
		t.Error("a wrong password connected")
	}
	rep, err := NewClient(c.connect(agentUser, agentPass), ClientOptions{}).Do(context.Background(), []byte(`{"id":"x","tool":"echo","args":["ok"]}`))
	if err != nil || !strings.Contains(string(rep.Final), `"stdout":"ok\n"`) {
		t.Fatalf("agent's request: %s %v", rep.Final, err)
	}
}

// TestLostAnswerResent: a worker's final line that NATS loses (at most once: a
// worker whose connection drops can take a message with it) reaches the client all
// the same: its probe names the request, and the worker sends the line again. The
// controls: a client that does not probe hears nothing until its deadline (the
// hang this prevents), and a worker that no longer remembers the line makes the
// client fail with ErrWorkerLost instead of waiting.
func TestLostAnswerResent(t *testing.T) {
	rt, _ := newRuntime(t)
	c := startCluster(t, 1, false)
	w, err := NewWorker(c.connect(workerUser, workerPass), rt, WorkerConfig{Version: "1.2.3"})
	if err != nil {
		t.Fatal(err)
	}
	var dropped atomic.Int64
	drop := func(m *nats.Msg) bool {
		// Every first result line of a request is lost; resent ones pass.
		if m.Header.Get(HeaderResent) == "" && bytes.Contains(m.Data, []byte(`"type":"result"`)) {
			dropped.Add(1)
			return true
		}
		return false
	}
	w.dropForTest.Store(&drop)
	runWorker(t, w)
	nc := c.connect(agentUser, agentPass)
	cl := NewClient(nc, ClientOptions{ProbeInterval: 100 * time.Millisecond})
	rctx, rcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer rcancel()

	rep, err := cl.Do(rctx, []byte(`{"id":"a","tool":"echo","args":["hello"]}`))
	if err != nil {
		t.Fatalf("request whose result was lost: %v, want the result sent again", err)
	}
	var res agentexec.ResultJSON
	if err := json.Unmarshal(rep.Final, &res); err != nil || res.ID != "a" || res.Stdout != "hello\n" || !rep.Resent {
		t.Errorf("answer %s (resent %v, %v), want a's result, resent", rep.Final, rep.Resent, err)
	}
	if n := dropped.Load(); n != 1 {
		t.Errorf("%d result lines lost, want 1", n)
	}

	// Control: without probes the lost line is never asked for.
	noProbe := NewClient(nc, ClientOptions{ProbeInterval: time.Hour})
	cctx, ccancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer ccancel()
	if _, err := noProbe.Do(cctx, []byte(`{"id":"b","tool":"echo","args":["hello"]}`)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("control without probes: %v, want no answer until the deadline", err)
	}

	// A worker that no longer has the line: a clear error, not a wait.
	w.forgetForTest.Store(true)
	start := time.Now()
	_, err = cl.Do(rctx, []byte(`{"id":"c","tool":"echo","args":["hello"]}`))
	if !errors.Is(err, ErrWorkerLost) || !strings.Contains(err.Error(), "no longer knows the request") {
		t.Errorf("forgotten answer: %v, want ErrWorkerLost saying the worker no longer knows the request", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("forgotten answer took %v to report", d)
	}
}

// recentFinals stays within its bounds, evicting the oldest first.
func TestRecentFinalsBounded(t *testing.T) {
	var r recentFinals
	for i := range recentMaxLines + 10 {
		r.add(fmt.Sprintf("inbox.%d", i), []byte("x"))
	}
	if len(r.byInbox) != recentMaxLines {
		t.Errorf("%d lines kept, want %d", len(r.byInbox), recentMaxLines)
	}
	if _, ok := r.get("inbox.0"); ok {
		t.Error("the oldest line was kept")
	}
	if b, ok := r.get(fmt.Sprintf("inbox.%d", recentMaxLines+9)); !ok || string(b) != "x" {
		t.Error("the newest line was not kept")
	}
	big := make([]byte, recentMaxBytes/3)
	for i := range 5 {
		r.add(fmt.Sprintf("big.%d", i), big)
	}
	if r.bytes > recentMaxBytes {
		t.Errorf("%d bytes kept, over %d", r.bytes, recentMaxBytes)
	}
	if _, ok := r.get("big.4"); !ok {
		t.Error("the newest big line was not kept")
	}
	if len(r.order) != len(r.byInbox) {
		t.Errorf("order holds %d entries, map %d", len(r.order), len(r.byInbox))
	}
}
