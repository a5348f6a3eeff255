package fleet

import (
	"context"
	"slices"
	"testing"
	"time"
)

// Probe (agentexec check --nats) finds the server, says whether JetStream is
// there, and lists the workers of the service that answer a ping; the control is
// the same probe before the worker starts (none) and for another service name.
func TestProbe(t *testing.T) {
	rt, _ := newRuntime(t)
	c := startCluster(t, 1, false)
	nc := c.connect(agentUser, agentPass)
	ctx := context.Background()
	r, err := Probe(ctx, nc, "", 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if r.Server == "" || r.Version == "" || r.JetStream || r.JSError == "" || len(r.Workers) != 0 {
		t.Fatalf("before the worker, without JetStream: %+v", r)
	}
	w := startInProcessWorker(t, rt, c.connect(workerUser, workerPass), WorkerConfig{})
	r, err = Probe(ctx, nc, "", time.Second)
	if err != nil || !slices.Equal(r.Workers, []string{w.ID()}) {
		t.Fatalf("with one worker: %+v %v", r, err)
	}
	if r, err := Probe(ctx, nc, "other", 300*time.Millisecond); err != nil || len(r.Workers) != 0 {
		t.Fatalf("another service: %+v %v", r, err)
	}
}
