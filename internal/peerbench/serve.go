package peerbench

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"syscall"
	"time"

	"github.com/agentexec/agentexec/internal/serveclient"
)

// serveClient is the client of one `agentexec serve` process (Config.Serve): as an
// agent runtime calls it, one request line written and its result line read per
// call.
type serveClient struct {
	*serveclient.Client
	seq int
}

// serveStartTimeout bounds the start of a serve process (to its first pong).
const serveStartTimeout = 30 * time.Second

// startServe starts `bin serve` on cfg's workspace and policy and waits until it
// answers a ping.
func startServe(ctx context.Context, bin string, cfg Config) (*serveClient, error) {
	args := []string{"serve", "--workspace", cfg.Workspace}
	if cfg.Policy != "" {
		args = append(args, "--policy", cfg.Policy)
	}
	c, err := serveclient.Start(ctx, bin, args, cfg.Workspace, cfg.Env)
	if err != nil {
		return nil, err
	}
	if err := c.Ping("peerbench-ready", serveStartTimeout); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("%s serve did not start: %w (stderr: %s)", bin, err, serveclient.FirstLine(c.Stderr()))
	}
	return &serveClient{Client: c}, nil
}

// call runs one tool call through serve and returns its wall time, from the
// request written to its result read, and its exit status. CPU time is not
// measured (Backend.NoCPU).
func (c *serveClient) call(name string, args []string) (time.Duration, time.Duration, syscall.WaitStatus, error) {
	c.seq++
	id := "p" + strconv.Itoa(c.seq)
	if args == nil {
		args = []string{}
	}
	req, err := json.Marshal(struct {
		ID   string   `json:"id"`
		Tool string   `json:"tool"`
		Args []string `json:"args"`
	}{id, name, args})
	if err != nil {
		return 0, 0, 0, err
	}
	t0 := time.Now()
	r, err := c.RoundTrip(string(req), id)
	wall := time.Since(t0)
	if err != nil {
		return 0, 0, 0, err
	}
	if r.Type == "error" {
		return 0, 0, 0, fmt.Errorf("serve answered an error: %s", r.Error)
	}
	if r.Status != "ok" || r.ExitCode == nil {
		return 0, 0, 0, fmt.Errorf("status %q: %s", r.Status, r.Error)
	}
	return wall, 0, syscall.WaitStatus(*r.ExitCode << 8), nil
}

// describe says how b runs a call, for notes.
func (b Backend) describe(path, name string, args []string) []string {
	if b.serve != "" {
		return append([]string{b.serve, "serve", "<-", name}, args...)
	}
	return b.argv(path, name, args)
}
