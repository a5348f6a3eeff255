// Package serveclient drives an `agentexec serve` process as an agent runtime
// does: request lines written to its stdin, one at a time, and the answer to each
// read from its stdout by id (docs/protocol.md). The benchmarks use it: the serve
// row of `agentexec bench` (internal/bench) and the serve peer of internal/peerbench.
package serveclient

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// Line is the part of a line of serve's output the client reads.
type Line struct {
	Type     string `json:"type"`
	ID       string `json:"id"`
	Status   string `json:"status"`
	ExitCode *int   `json:"exit_code"`
	Error    string `json:"error"`
}

// Client is one serve process and its pipes. Its methods are for one goroutine
// at a time.
type Client struct {
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Reader
	stderr *headBuffer
}

// stopGrace bounds how long Close waits for serve to end after its input's end.
const stopGrace = 10 * time.Second

// Start starts `bin args…` (args naming `serve` and its flags) in dir ("" = this
// process's) with env (nil = this process's).
func Start(ctx context.Context, bin string, args []string, dir string, env []string) (*Client, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir, cmd.Env = dir, env
	c := &Client{cmd: cmd, stderr: &headBuffer{n: 4096}}
	cmd.Stderr = c.stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	c.in, c.out = in, bufio.NewReaderSize(out, 1<<16)
	return c, nil
}

// Pid is the serve process's pid.
func (c *Client) Pid() int { return c.cmd.Process.Pid }

// RoundTrip writes line (without its newline) and reads serve's output up to the
// answer with id (a result or pong, say), or to an error line (serve's answer to a
// line it could not take), which it returns. Lines of other ids and streamed
// output chunks are skipped.
func (c *Client) RoundTrip(line, id string) (Line, error) {
	if _, err := io.WriteString(c.in, line+"\n"); err != nil {
		return Line{}, fmt.Errorf("serve input: %w", err)
	}
	for {
		b, err := c.out.ReadBytes('\n')
		if err != nil {
			return Line{}, fmt.Errorf("serve output: %w (stderr: %s)", err, FirstLine(c.stderr.String()))
		}
		var l Line
		if err := json.Unmarshal(b, &l); err != nil {
			return Line{}, fmt.Errorf("serve output line %q: %w", FirstLine(string(b)), err)
		}
		if l.Type == "stdout" || l.Type == "stderr" {
			continue
		}
		if l.ID == id || l.Type == "error" {
			return l, nil
		}
	}
}

// Ping sends a ping with id and waits for its pong (serve is ready then): at most
// timeout when it is positive. A serve that does not answer in time is killed, so
// that Close returns.
func (c *Client) Ping(id string, timeout time.Duration) error {
	type answer struct {
		l   Line
		err error
	}
	ch := make(chan answer, 1)
	go func() {
		l, err := c.RoundTrip(`{"type":"ping","id":"`+id+`"}`, id)
		ch <- answer{l, err}
	}()
	var expired <-chan time.Time
	if timeout > 0 {
		expired = time.After(timeout)
	}
	select {
	case a := <-ch:
		if a.err != nil {
			return a.err
		}
		if a.l.Type != "pong" {
			return fmt.Errorf("serve answered ping with %q: %s", a.l.Type, a.l.Error)
		}
		return nil
	case <-expired:
		// Killed, serve's output ends at Close (Wait closes the pipe), and so
		// does the read still waiting for the pong.
		_ = c.cmd.Process.Kill()
		return fmt.Errorf("no pong within %v (stderr: %s)", timeout, FirstLine(c.stderr.String()))
	}
}

// Stderr returns the start of what serve wrote to its stderr (the first 4 KiB).
func (c *Client) Stderr() string { return c.stderr.String() }

// Close ends serve: end of input, then at most 10 s for it to exit before it is
// killed. It returns how the process ended.
func (c *Client) Close() error {
	c.in.Close()
	done := make(chan error, 1)
	go func() { done <- c.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(stopGrace):
		_ = c.cmd.Process.Kill()
		return errors.Join(fmt.Errorf("serve did not end within %v of its input's end: killed", stopGrace), <-done)
	}
}

// FirstLine is the first line of s, trimmed, at most 200 bytes.
func FirstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// headBuffer keeps the first n bytes written to it; it may be read while the
// process's stderr is still being copied into it.
type headBuffer struct {
	mu sync.Mutex
	b  strings.Builder
	n  int
}

func (h *headBuffer) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if k := min(len(p), h.n-h.b.Len()); k > 0 {
		h.b.Write(p[:k])
	}
	return len(p), nil
}

func (h *headBuffer) String() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.b.String()
}
