package serve

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentexec/agentexec"
	"github.com/agentexec/agentexec/internal/testutil"
)

// BenchmarkServeBinaries compares `agentexec serve` builds end to end, as the
// serve row of `agentexec bench` measures one: each binary in AGENTEXEC_SERVE_BINS
// (";"-separated, each "[K=V …] PATH": environment variables for it, then its path) runs as a child on a pipe pair, and every iteration makes,
// in a rotating order, one library rt.Run of `true`, one `true` request through each
// serve child, one ping through each, and one line echoed through `cat` (the floor:
// two wake-ups of a process across a pipe pair). All share one client (a 64 KiB
// bufio.Reader and json.Unmarshal into a small struct, as internal/bench does), so
// the medians are of the same run and their differences and ratios compare.
//
//	AGENTEXEC_SERVE_BINS='/tmp/ax-old;/tmp/ax-new' go test -run '^$' \
//	    -bench BenchmarkServeBinaries -benchtime 400x ./internal/serve
//
// Metrics per binary i (b0, b1, …): bI_run_us, bI_ping_us (medians), bI_over_us
// (bI_run_us - lib_us); lib_us and echo_us. With a tool's run time in it, a median
// of whole calls moves by tens of µs between runs on a loaded host; the time of a
// call outside its launch's wall time (Result.Wall, duration_ms: from the request to
// the spawner to the tool's exit) does not have that spread: lib_out_us is its
// median for library calls, bI_over_out_us the median for binary i minus lib_out_us,
// the serve overhead without the launch's noise.
func BenchmarkServeBinaries(b *testing.B) {
	env := os.Getenv("AGENTEXEC_SERVE_BINS")
	if env == "" {
		b.Skip("AGENTEXEC_SERVE_BINS is not set (comma-separated agentexec binaries to compare)")
	}
	rt := newRuntime(b)
	ws := rt.Policy().Workspace
	pol := filepath.Join(b.TempDir(), "policy.yaml")
	if err := os.WriteFile(pol, []byte(policyYAML(ws)), 0o644); err != nil {
		b.Fatal(err)
	}
	var clients []*lineClient
	for _, spec := range strings.Split(env, ";") {
		// "K=V … /path": environment variables for that child, then the binary.
		f := strings.Fields(spec)
		c := startLineClient(b, f[len(f)-1], f[:len(f)-1], "serve", "--policy", pol, "--log-level", "error")
		clients = append(clients, c)
	}
	echo := startLineClient(b, "cat", nil)
	for i, c := range clients {
		if _, err := c.roundTrip(`{"type":"ping","id":"warm"}`, "warm"); err != nil {
			b.Fatalf("b%d: %v", i, err)
		}
	}
	ctx := context.Background()
	req := agentexec.Request{Tool: "true", Dir: ws}
	const warm = 10
	var lib, libOut, ech []time.Duration
	run := make([][]time.Duration, len(clients))
	out := make([][]time.Duration, len(clients))
	ping := make([][]time.Duration, len(clients))
	n := 0
	steps := 2 + 2*len(clients)
	for b.Loop() {
		for k := range steps {
			step := (k + n) % steps
			t0 := time.Now()
			switch {
			case step == 0:
				r, err := rt.Run(ctx, req)
				if err != nil || r.ExitCode != 0 {
					b.Fatalf("Run: %v %+v", err, r)
				}
				if n >= warm {
					lib = append(lib, time.Since(t0))
					libOut = append(libOut, time.Since(t0)-r.Wall)
				}
			case step == 1:
				if _, err := echo.roundTrip(`{"id":"e"}`, ""); err != nil {
					b.Fatal(err)
				}
				if n >= warm {
					ech = append(ech, time.Since(t0))
				}
			default:
				i := (step - 2) / 2
				id := "r" + strconv.Itoa(n)
				line := fmt.Sprintf(`{"id":%q,"tool":"true","cwd":%q}`, id, ws)
				dst := &run[i]
				if step%2 == 1 {
					line, dst = fmt.Sprintf(`{"type":"ping","id":%q}`, id), &ping[i]
				}
				r, err := clients[i].roundTrip(line, id)
				if err != nil {
					b.Fatalf("b%d: %v", i, err)
				}
				if (r.Type == "result" && r.Status != agentexec.StatusOK) || (r.Type != "result" && r.Type != "pong") {
					b.Fatalf("b%d: %+v", i, r)
				}
				if n >= warm {
					d := time.Since(t0)
					*dst = append(*dst, d)
					if r.Type == "result" {
						out[i] = append(out[i], d-time.Duration(r.DurationMS*1e6))
					}
				}
			}
		}
		n++
	}
	if len(lib) == 0 {
		return
	}
	l := medianUS(lib)
	b.ReportMetric(l, "lib_us")
	lo := medianUS(libOut)
	b.ReportMetric(lo, "lib_out_us")
	b.ReportMetric(medianUS(ech), "echo_us")
	for i := range clients {
		r := medianUS(run[i])
		b.ReportMetric(r, fmt.Sprintf("b%d_run_us", i))
		b.ReportMetric(r-l, fmt.Sprintf("b%d_over_us", i))
		b.ReportMetric(medianUS(ping[i]), fmt.Sprintf("b%d_ping_us", i))
		b.ReportMetric(medianUS(out[i])-lo, fmt.Sprintf("b%d_over_out_us", i))
	}
}

func medianUS(d []time.Duration) float64 {
	s := slices.Clone(d)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return float64(m.Nanoseconds()) / 1e3
}

// lineClient is a child process spoken to one line at a time over a pipe pair.
type lineClient struct {
	in  io.WriteCloser
	out *bufio.Reader
}

type lineReply struct {
	Type   string `json:"type"`
	ID     string `json:"id"`
	Status string `json:"status"`
	// DurationMS is the launch's wall time as the runtime measured it.
	DurationMS float64 `json:"duration_ms"`
}

func startLineClient(b *testing.B, name string, env []string, args ...string) *lineClient {
	b.Helper()
	if name != "cat" {
		testutil.RequireRoot(b)
	}
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		in.Close()
		_ = cmd.Wait()
	})
	return &lineClient{in: in, out: bufio.NewReaderSize(out, 1<<16)}
}

// roundTrip writes line and reads lines up to the one with id ("": the first).
func (c *lineClient) roundTrip(line, id string) (lineReply, error) {
	if _, err := io.WriteString(c.in, line+"\n"); err != nil {
		return lineReply{}, err
	}
	for {
		l, err := c.out.ReadBytes('\n')
		if err != nil {
			return lineReply{}, err
		}
		var r lineReply
		if err := json.Unmarshal(l, &r); err != nil {
			return lineReply{}, fmt.Errorf("line %q: %w", l, err)
		}
		if r.ID == id || id == "" {
			return r, nil
		}
	}
}
