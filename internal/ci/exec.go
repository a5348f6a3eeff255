package ci

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/agentexec/agentexec"
	"github.com/agentexec/agentexec/policy"
)

// tailLines is how many of a step's last output lines results keep.
const tailLines = 20

// maxLine bounds a displayed line; longer lines are split.
const maxLine = 4096

// stepRunner launches steps through the runtime and streams their output.
type stepRunner struct {
	rt       *agentexec.Runtime
	job      *Job
	artifact string // directory for <step>.stdout / .stderr
	ev       events
}

// request builds the step's launch request.
func (sr *stepRunner) request(s *Step) agentexec.Request {
	env := map[string]string{}
	for _, v := range sr.job.Env {
		env[v.Name] = v.Value
	}
	for _, v := range s.Env {
		env[v.Name] = v.Value
	}
	if len(env) == 0 {
		env = nil
	}
	req := agentexec.Request{
		Tool: s.Tool, Args: s.Args, Dir: s.Cwd, Env: env,
		Timeout: s.Limits.Timeout, MaxOutputBytes: s.Limits.Output,
	}
	if s.Limits.Memory > 0 || s.Limits.Pids > 0 || s.Limits.CPU > 0 {
		req.Limits = &policy.Limits{Memory: s.Limits.Memory, Pids: s.Limits.Pids, CPU: s.Limits.CPU}
	}
	return req
}

// run launches one step and waits for it. It never returns nil.
func (sr *stepRunner) run(ctx context.Context, s *Step) *StepResult {
	r := &StepResult{Step: s}
	tail := &tailBuf{}
	outF, errF, err := sr.openArtifacts(s, r)
	if err != nil {
		r.Status, r.Message = StatusError, err.Error()
		return r
	}
	defer outF.Close()
	defer errF.Close()

	r.Start = time.Now()
	sr.ev.started(s, r.Start)
	p, err := sr.rt.Start(ctx, sr.request(s))
	if err != nil {
		r.End = time.Now()
		var de *agentexec.DeniedError
		if errors.As(err, &de) {
			r.Status, r.Denied = StatusDenied, de
		} else {
			r.Status = StatusError
		}
		r.Message = err.Error()
		tail.add(err.Error())
		fmt.Fprintf(errF, "agentexec ci: %v\n", err)
		r.Tail = tail.lines()
		return r
	}
	r.Launched = true
	var wg sync.WaitGroup
	wg.Add(2)
	var outErr, errErr error
	go func() { defer wg.Done(); r.StdoutBytes, outErr = sr.pump(s, "stdout", p.Stdout(), outF, tail) }()
	go func() { defer wg.Done(); r.StderrBytes, errErr = sr.pump(s, "stderr", p.Stderr(), errF, tail) }()
	// Wait before the streams end: when the step's process exits, Wait kills what it
	// left behind (a background child holding the pipes open), and only then do the
	// streams reach EOF.
	res, werr := p.Wait()
	wg.Wait()
	r.End = time.Now()
	r.Result = res
	r.Unenforced = append(r.Unenforced, res.Unenforced...)
	r.Tail = tail.lines()
	switch {
	case werr != nil:
		r.Status, r.Message = StatusError, werr.Error()
	case res.TimedOut:
		r.Status, r.Message = StatusTimedOut, "timed out after "+fmtDur(res.Wall)
		if s.Limits.Timeout > 0 {
			r.Message += " (step limit " + s.Limits.Timeout.String() + ")"
		}
	case res.Canceled:
		r.Status, r.Message = StatusError, "canceled"
	case res.OOMKilled:
		r.Status, r.Message = StatusFailed, "killed by the OOM killer (memory limit)"
	case res.Signal != 0:
		r.Status, r.Message = StatusFailed, "killed by signal "+signalName(res.Signal)
	case res.ExitCode != 0:
		r.Status, r.Message = StatusFailed, fmt.Sprintf("exit status %d", res.ExitCode)
		if res.ExecError != "" {
			r.Message += ": " + res.ExecError
		}
	default:
		r.Status = StatusPassed
	}
	if err := errors.Join(outErr, errErr); err != nil && r.Status == StatusPassed {
		r.Status, r.Message = StatusError, "saving output: "+err.Error()
	}
	if m := denialsMessage(res.Denials); m != "" && r.Status != StatusPassed {
		if r.Message != "" {
			m = r.Message + "; " + m
		}
		r.Message = m
	}
	if res.StdoutTruncated || res.StderrTruncated {
		note := fmt.Sprintf("output truncated at the cap (%d stdout, %d stderr bytes dropped)", res.StdoutDropped, res.StderrDropped)
		if r.Message != "" {
			r.Message += "; " + note
		} else {
			r.Message = note
		}
	}
	return r
}

// openArtifacts creates (truncating) the step's two artifact files.
func (sr *stepRunner) openArtifacts(s *Step, r *StepResult) (*os.File, *os.File, error) {
	if err := os.MkdirAll(sr.artifact, 0o755); err != nil {
		return nil, nil, fmt.Errorf("artifacts: %w", err)
	}
	r.StdoutFile = filepath.Join(sr.artifact, s.Name+".stdout")
	r.StderrFile = filepath.Join(sr.artifact, s.Name+".stderr")
	outF, err := os.OpenFile(r.StdoutFile, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		r.StdoutFile, r.StderrFile = "", ""
		return nil, nil, fmt.Errorf("artifacts: %w", err)
	}
	errF, err := os.OpenFile(r.StderrFile, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		outF.Close()
		r.StdoutFile, r.StderrFile = "", ""
		return nil, nil, fmt.Errorf("artifacts: %w", err)
	}
	return outF, errF, nil
}

// pump copies a stream to its artifact file and hands complete lines to the display.
// It reads to EOF even when the file fails, so that the child is never blocked.
func (sr *stepRunner) pump(s *Step, stream string, src io.Reader, dst io.Writer, tail *tailBuf) (int64, error) {
	buf := make([]byte, 32<<10)
	var line []byte
	var n int64
	var werr error
	emit := func(b []byte) {
		text := string(bytes.TrimRight(b, "\r"))
		if i := strings.LastIndexByte(text, '\r'); i >= 0 {
			text = text[i+1:] // a progress bar redrawn with \r: its last state
		}
		tail.add(text)
		sr.ev.line(s, stream, text, time.Now())
	}
	for {
		k, err := src.Read(buf)
		if k > 0 {
			n += int64(k)
			if werr == nil {
				if _, e := dst.Write(buf[:k]); e != nil {
					werr = fmt.Errorf("%s: %w", stream, e)
				}
			}
			chunk := buf[:k]
			for len(chunk) > 0 {
				i := bytes.IndexByte(chunk, '\n')
				if i < 0 {
					line = append(line, chunk...)
					if len(line) >= maxLine {
						emit(line)
						line = line[:0]
					}
					break
				}
				line = append(line, chunk[:i]...)
				emit(line)
				line = line[:0]
				chunk = chunk[i+1:]
			}
		}
		if err != nil {
			if len(line) > 0 {
				emit(line)
			}
			if !errors.Is(err, io.EOF) && werr == nil {
				werr = fmt.Errorf("read %s: %w", stream, err)
			}
			return n, werr
		}
	}
}

// tailBuf keeps the last lines written to it.
type tailBuf struct {
	mu sync.Mutex
	l  []string
}

func (t *tailBuf) add(s string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.l) == tailLines {
		copy(t.l, t.l[1:])
		t.l = t.l[:tailLines-1]
	}
	t.l = append(t.l, s)
}

func (t *tailBuf) lines() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.l...)
}
