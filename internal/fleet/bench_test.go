package fleet

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/agentexec/agentexec/internal/serve"
)

// BenchmarkAddedLatency measures what NATS adds to a request: each iteration runs
// /bin/true once through a local serve.Serve (pipes, in process: the baseline) and
// once through a worker on a one-node NATS server on loopback (Client.Do: publish,
// acceptance, result), both on the same runtime, one request at a time,
// interleaved. Metrics: serve_ns/req and nats_ns/req (the mean of each path) and
// nats/serve (their ratio). docs/fleet.md has the command and figures.
func BenchmarkAddedLatency(b *testing.B) {
	rt, _ := newRuntime(b)
	c := startCluster(b, 1, false)
	startInProcessWorker(b, rt, c.connect(workerUser, workerPass), WorkerConfig{})
	cl := NewClient(c.connect(agentUser, agentPass), ClientOptions{})

	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- serve.Serve(context.Background(), rt, inR, outW, serve.Config{}); outW.Close() }()
	out := bufio.NewReader(outR)
	ctx := context.Background()
	var local, remote time.Duration
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		i++
		line := fmt.Sprintf(`{"id":"%d","tool":"true"}`, i)
		t0 := time.Now()
		if _, err := io.WriteString(inW, line+"\n"); err != nil {
			b.Fatal(err)
		}
		got, err := out.ReadBytes('\n')
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		rep, err := cl.Do(ctx, []byte(line))
		if err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		local += t1.Sub(t0)
		remote += t2.Sub(t1)
		for _, l := range [][]byte{got, rep.Final} {
			var h lineHead
			if err := json.Unmarshal(l, &h); err != nil || h.Status != "ok" {
				b.Fatalf("result %s (%v)", l, err)
			}
		}
	}
	b.StopTimer()
	inW.Close()
	if _, err := io.Copy(io.Discard, out); err != nil {
		b.Fatal(err)
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	n := float64(i)
	b.ReportMetric(float64(local.Nanoseconds())/n, "serve_ns/req")
	b.ReportMetric(float64(remote.Nanoseconds())/n, "nats_ns/req")
	b.ReportMetric(float64(remote)/float64(local), "nats/serve")
}
