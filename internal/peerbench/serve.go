package peerbench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// serveClient is the client of one `agentexec serve` process (Config.Serve): as an
// agent runtime calls it, one request line written and its result line read per
// call, over the process's stdin and stdout.
type serveClient struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Reader
	seq  int
	done chan error // the process's exit (Wait)
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
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir, cmd.Env = cfg.Workspace, slices.Clone(cfg.Env)
	var stderr strings.Builder
	cmd.Stderr = &limited{w: &stderr, n: 4096}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &serveClient{cmd: cmd, in: in, out: bufio.NewReaderSize(out, 1<<20), done: make(chan error, 1)}
	ready := make(chan error, 1)
	go func() {
		_, err := c.roundTrip(`{"type":"ping","id":"peerbench-ready"}`, "peerbench-ready", "pong")
		ready <- err
	}()
	select {
	case err = <-ready:
	case <-time.After(serveStartTimeout):
		err = fmt.Errorf("no pong within %v", serveStartTimeout)
	}
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("%s serve did not start: %w (stderr: %s)", bin, err, strings.TrimSpace(stderr.String()))
	}
	go func() { c.done <- cmd.Wait() }()
	return c, nil
}

// serveResult is what the client reads of a line of serve's output.
type serveResult struct {
	Type     string `json:"type"`
	ID       string `json:"id"`
	Status   string `json:"status"`
	ExitCode *int   `json:"exit_code"`
	Error    string `json:"error"`
}

// roundTrip writes line and reads serve's output until the line of type typ with
// id, which it returns.
func (c *serveClient) roundTrip(line, id, typ string) (serveResult, error) {
	if _, err := io.WriteString(c.in, line+"\n"); err != nil {
		return serveResult{}, fmt.Errorf("write request: %w", err)
	}
	for {
		b, err := c.out.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A long result (a tool's large output): read the rest of the line.
			rest, err2 := c.out.ReadBytes('\n')
			b, err = append(slices.Clone(b), rest...), err2
		}
		if err != nil {
			return serveResult{}, fmt.Errorf("read result: %w", err)
		}
		var r serveResult
		if err := json.Unmarshal(b, &r); err != nil {
			return serveResult{}, fmt.Errorf("result line: %w", err)
		}
		if r.Type == "error" {
			return r, fmt.Errorf("serve answered an error: %s", r.Error)
		}
		if r.Type == typ && r.ID == id {
			return r, nil
		}
	}
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
	r, err := c.roundTrip(string(req), id, "result")
	wall := time.Since(t0)
	if err != nil {
		return 0, 0, 0, err
	}
	if r.Status != "ok" || r.ExitCode == nil {
		return 0, 0, 0, fmt.Errorf("status %q: %s", r.Status, r.Error)
	}
	return wall, 0, syscall.WaitStatus(*r.ExitCode << 8), nil
}

// stop ends the serve process: end of input, then at most 10 s for it to exit
// before it is killed. It returns how the process ended.
func (c *serveClient) stop() error {
	c.in.Close()
	select {
	case err := <-c.done:
		return err
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Signal(os.Kill)
		return errors.Join(errors.New("serve did not end within 10 s of its input's end: killed"), <-c.done)
	}
}

// describe says how b runs a call, for notes.
func (b Backend) describe(path, name string, args []string) []string {
	if b.serve != "" {
		return append([]string{b.serve, "serve", "<-", name}, args...)
	}
	return b.argv(path, name, args)
}

// limited keeps the first n bytes written to it (a child's stderr for an error).
type limited struct {
	w io.Writer
	n int
}

func (l *limited) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(len(p), l.n)
		_, _ = l.w.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}
