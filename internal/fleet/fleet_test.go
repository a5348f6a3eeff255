package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentexec/agentexec"
	"github.com/agentexec/agentexec/internal/serve"
	"github.com/agentexec/agentexec/internal/testutil"
)

// TestFleetRequests: a 3-node cluster, 3 workers, 300 requests at 16 in flight;
// mid-run one worker is killed with SIGKILL (while two long requests run on it) and
// one NATS node is stopped. Every request gets exactly one answer: its own result
// with the right output, or one of the documented errors.
func TestFleetRequests(t *testing.T) {
	requireFleet(t)
	c := startCluster(t, 3, false)
	_, pol := writePolicy(t)
	workers := []*workerProc{startWorker(t, c, pol), startWorker(t, c, pol), startWorker(t, c, pol)}
	nc := c.connect(agentUser, agentPass)
	cl := NewClient(nc, ClientOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	const total, inflight = 300, 16
	type answer struct {
		rep *Reply
		err error
	}
	answers := make([]answer, total)
	var answered atomic.Int64
	next := make(chan int)
	var wg sync.WaitGroup
	for range inflight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				line := fmt.Sprintf(`{"id":"r%d","tool":"echo","args":["out-%d"]}`, i, i)
				if i%10 == 0 {
					line = fmt.Sprintf(`{"id":"r%d","tool":"sh","args":["-c","sleep 0.3; echo out-%d"]}`, i, i)
				}
				rep, err := cl.Do(ctx, []byte(line))
				answers[i] = answer{rep, err}
				answered.Add(1)
			}
		}()
	}
	killed := make(chan struct{})
	lostSeen := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-killed
		<-lostSeen
		waitFor(t, time.Minute, "200 answers", func() bool { return answered.Load() >= 200 })
		c.servers[1].Shutdown()
	}()
	// The deterministic part of the kill: two long requests on worker 0, one from a
	// client that probes (ErrWorkerLost) and one from a client that does not (the
	// control: it hears nothing until its deadline). Both are connected to node 0,
	// which stays up.
	victim := workers[0]
	lost := make(chan error, 2)
	cl0 := NewClient(c.connectNode(0, agentUser, agentPass), ClientOptions{})
	go func() {
		_, err := cl0.DoWorker(ctx, victim.id, []byte(`{"id":"long-1","tool":"sleep","args":["60"]}`))
		lost <- err
	}()
	noProbe := NewClient(c.connectNode(0, agentUser, agentPass), ClientOptions{ProbeInterval: time.Hour})
	controlCtx, controlCancel := context.WithCancel(ctx)
	defer controlCancel()
	go func() {
		_, err := noProbe.DoWorker(controlCtx, victim.id, []byte(`{"id":"long-2","tool":"sleep","args":["60"]}`))
		lost <- err
	}()
	go func() {
		for i := range total {
			next <- i
			if i == 100 {
				waitFor(t, time.Minute, "the long requests running on the victim", func() bool {
					rep, err := cl0.DoWorker(ctx, victim.id, []byte(`{"type":"stats"}`))
					if err != nil {
						return false
					}
					var st serve.StatsLine
					return json.Unmarshal(rep.Final, &st) == nil && st.Running >= 2
				})
				victim.kill9(t)
				close(killed)
			}
		}
		close(next)
	}()
	if err := <-lost; !errors.Is(err, ErrWorkerLost) {
		t.Errorf("long request on the killed worker: %v, want ErrWorkerLost", err)
	}
	close(lostSeen)
	// The control has no answer 5s after the probing client gave up.
	go func() { time.Sleep(5 * time.Second); controlCancel() }()
	if err := <-lost; !errors.Is(err, context.Canceled) {
		t.Errorf("control without probes: %v, want no answer until canceled", err)
	}
	wg.Wait()
	<-stopped

	// A pinned session on the dead worker: no responders.
	if _, err := cl.DoWorker(ctx, victim.id, []byte(`{"id":"pinned","tool":"echo"}`)); !errors.Is(err, ErrNoWorkers) {
		t.Errorf("request pinned to the dead worker: %v, want ErrNoWorkers", err)
	}
	results, failures := 0, map[string]int{}
	for i, a := range answers {
		if a.err != nil {
			switch {
			case errors.Is(a.err, ErrWorkerLost), errors.Is(a.err, ErrConnectionLost), errors.Is(a.err, ErrNotAccepted):
				failures[a.err.Error()]++
			default:
				t.Errorf("r%d: unexpected error %v", i, a.err)
			}
			continue
		}
		var res agentexec.ResultJSON
		if err := json.Unmarshal(a.rep.Final, &res); err != nil || res.Type != "result" {
			t.Errorf("r%d: answer %s (%v)", i, a.rep.Final, err)
			continue
		}
		if res.ID != fmt.Sprintf("r%d", i) || res.Status != agentexec.StatusOK || res.Stdout != fmt.Sprintf("out-%d\n", i) {
			t.Errorf("r%d: wrong result %s", i, a.rep.Final)
			continue
		}
		results++
	}
	t.Logf("%d results, errors: %v", results, failures)
	// Only requests in flight at the two events can fail: at most two waves of 16.
	if results < total-4*inflight {
		t.Errorf("only %d of %d requests have a result", results, total)
	}
	// The survivors account for every request they accepted.
	for _, wp := range workers[1:] {
		rep, err := cl.DoWorker(ctx, wp.id, []byte(`{"type":"stats","id":"s"}`))
		if err != nil {
			t.Fatalf("stats of %s: %v", wp.id, err)
		}
		var st serve.StatsLine
		if err := json.Unmarshal(rep.Final, &st); err != nil {
			t.Fatal(err)
		}
		if st.Requests != st.Results || st.InFlight != 0 {
			t.Errorf("worker %s: stats %s", wp.id, rep.Final)
		}
	}
}

// TestFleetCIJobs: 6 CI jobs through JetStream on a 3-node cluster (replicas 3)
// and 3 workers; the worker running the slow job is killed with SIGKILL. That job
// is delivered again, runs to its end on another worker, and every job has exactly
// one recorded result whose reports match a local `agentexec ci` run's.
func TestFleetCIJobs(t *testing.T) {
	requireFleet(t)
	c := startCluster(t, 3, true)
	dir, pol := writePolicy(t)
	args := []string{"--jobs", "--js-replicas", "3", "--ack-wait", "4s"}
	workers := map[string]*workerProc{}
	for range 3 {
		wp := startWorker(t, c, pol, args...)
		workers[wp.id] = wp
	}
	const njobs = 6
	files := make([]string, njobs)
	for i := range njobs {
		sleep := "0.2"
		if i == 2 {
			sleep = "3"
		}
		files[i] = filepath.Join(dir, fmt.Sprintf("job%d.yaml", i))
		job := fmt.Sprintf(`name: job%d
policy: policy.yaml
workspace: .
steps:
  - name: hello
    run: [echo, job%d]
  - name: work
    needs: [hello]
    sh: sleep %s; echo done-%d
`, i, i, sleep, i)
		if err := os.WriteFile(files[i], []byte(job), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	nc := c.connect(agentUser, agentPass)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	arts := filepath.Join(dir, "artifacts")
	runIDs := make([]string, njobs)
	for i, f := range files {
		jm := &JobMessage{RunID: fmt.Sprintf("run%d-%d", i, time.Now().UnixNano()), JobFile: f, Jobs: 2, Artifacts: arts}
		if err := SubmitJob(ctx, js, DefaultService, DefaultPool, jm); err != nil {
			t.Fatal(err)
		}
		runIDs[i] = jm.RunID
	}
	// Kill the worker that started the slow job, while it runs.
	startedRE := regexp.MustCompile(`msg="ci job started" run_id=` + regexp.QuoteMeta(runIDs[2]))
	var victim *workerProc
	waitFor(t, time.Minute, "the slow job to start", func() bool {
		for _, wp := range workers {
			if startedRE.MatchString(wp.stderr.String()) {
				victim = wp
				return true
			}
		}
		return false
	})
	victim.kill9(t)

	res := make([]*JobResult, njobs)
	for i, id := range runIDs {
		r, err := WaitResult(ctx, js, DefaultService, id)
		if err != nil {
			t.Fatalf("job%d: %v", i, err)
		}
		res[i] = r
		if r.ExitCode != 0 {
			t.Errorf("job%d: exit %d\n%s%s", i, r.ExitCode, r.Output, r.Errors)
		}
	}
	if res[2].Worker == victim.id || res[2].Delivery < 2 {
		t.Errorf("slow job: ran on %s (killed: %s), delivery %d; want another worker, delivery ≥ 2", res[2].Worker, victim.id, res[2].Delivery)
	}
	// Exactly one recorded result per job.
	stream, err := js.Stream(ctx, ResultStream(DefaultService))
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(DefaultService+".results.>"))
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != njobs || len(info.State.Subjects) != njobs {
		t.Errorf("result stream: %d messages on %d subjects, want %d on %d", info.State.Msgs, len(info.State.Subjects), njobs, njobs)
	}
	for _, id := range runIDs {
		if n := info.State.Subjects[ResultSubject(DefaultService, id)]; n != 1 {
			t.Errorf("run %s: %d results recorded", id, n)
		}
	}
	// A second result for a recorded job is refused (the protection)…
	if _, err := js.Publish(ctx, ResultSubject(DefaultService, runIDs[0]), []byte(`{}`)); err == nil {
		t.Error("a second result for a recorded job was accepted")
	}
	// …which a stream without DiscardNewPerSubject would take (the control).
	ctl, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "control", Subjects: []string{"control.>"}, MaxMsgsPerSubject: 1, Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := js.Publish(ctx, "control.r", []byte(`{}`)); err != nil {
			t.Fatalf("control stream: %v", err)
		}
	}
	if ci, err := ctl.Info(ctx); err != nil || ci.State.LastSeq != 2 {
		t.Errorf("control stream took %v messages (%v), want 2", ci, err)
	}

	// The reports match a local run's, but for times and durations.
	bin := testutil.AgentexecBinary(t)
	for i, f := range files {
		lr, lj := filepath.Join(dir, fmt.Sprintf("local%d.json", i)), filepath.Join(dir, fmt.Sprintf("local%d.xml", i))
		cmd := exec.Command(bin, "ci", f, "--jobs", "2", "--artifacts", arts, "--report", lr, "--junit", lj, "--progress", "plain")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("local run of job%d: %v\n%s", i, err, out)
		}
		wantR, err := os.ReadFile(lr)
		if err != nil {
			t.Fatal(err)
		}
		wantJ, err := os.ReadFile(lj)
		if err != nil {
			t.Fatal(err)
		}
		if a, b := normalizeReport(t, res[i].Report), normalizeReport(t, string(wantR)); a != b {
			t.Errorf("job%d: JSON report differs:\n fleet %s\n local %s", i, a, b)
		}
		if a, b := normalizeJUnit(res[i].JUnit), normalizeJUnit(string(wantJ)); a != b {
			t.Errorf("job%d: JUnit differs:\n fleet %s\n local %s", i, a, b)
		}
		if a, b := normalizeOutput(res[i].Output), normalizeOutput(mustRun(t, bin, dir, f, arts)); a != b {
			t.Errorf("job%d: summary differs:\n fleet %s\n local %s", i, a, b)
		}
	}
}

// varying are the report fields that differ between any two runs.
var varying = map[string]bool{"started_at": true, "finished_at": true, "duration_ms": true, "cpu_ms": true,
	"user_cpu_ms": true, "system_cpu_ms": true, "peak_memory_bytes": true}

func normalizeReport(t *testing.T, s string) string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("report %q: %v", s, err)
	}
	var walk func(any) any
	walk = func(v any) any {
		switch x := v.(type) {
		case map[string]any:
			for k := range x {
				if varying[k] {
					x[k] = "-"
				} else {
					x[k] = walk(x[k])
				}
			}
		case []any:
			for i := range x {
				x[i] = walk(x[i])
			}
		}
		return v
	}
	b, err := json.Marshal(walk(v))
	if err != nil {
		t.Fatal(err)
	}
	return toolUID.ReplaceAllString(string(b), "tool-uid-N")
}

var (
	junitVarying  = regexp.MustCompile(`(time|timestamp|hostname)="[^"]*"`)
	outputVarying = regexp.MustCompile(`\d+(\.\d+)?(ms|s|µs|m|KiB|MiB|B)\b|\d\d:\d\d:\d\d(\.\d+)?`)
	// A root runtime's tools run as a uid of their own, picked per runtime (like a
	// host name, it differs from run to run).
	toolUID = regexp.MustCompile(`tool-uid-\d+`)
	spaces  = regexp.MustCompile(`[ \t]+`)
)

func normalizeJUnit(s string) string {
	return toolUID.ReplaceAllString(junitVarying.ReplaceAllString(s, `$1="-"`), "tool-uid-N")
}

// normalizeOutput blanks times and sizes, and so the widths of the summary's columns.
func normalizeOutput(s string) string {
	s = toolUID.ReplaceAllString(outputVarying.ReplaceAllString(s, "-"), "tool-uid-N")
	return strings.TrimSpace(spaces.ReplaceAllString(s, " "))
}

func mustRun(t *testing.T, bin, dir, file, arts string) string {
	t.Helper()
	cmd := exec.Command(bin, "ci", file, "--jobs", "2", "--artifacts", arts, "--progress", "plain")
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("local run: %v\n%s", err, out)
	}
	return string(out)
}
