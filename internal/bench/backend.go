package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"

	"github.com/agentexec/agentexec"
)

// target is a mix call made concrete for one policy: what every backend launches.
type target struct {
	Call
	// path is the tool's resolved absolute path; argv[0] is the exec name's base,
	// as the runtime sets it.
	path string
	argv []string
	// env is the environment the policy gives the tool (its env.set values).
	env []string
	dir string
}

// outcome is what one launch produced.
type outcome struct {
	exit           int
	stdout, stderr []byte
	// backend and template are the runtime's Result.Backend and Result.Template
	// (agentexec backends only).
	backend, template string
	containment       []string
	unenforced        []string
}

// Backend kinds, in report order.
const (
	KindUserspace  = "agentexec-userspace"
	KindKernel     = "agentexec-kernel"
	KindNoTemplate = "agentexec-notemplate"
	KindNoCgroup   = "agentexec-nocgroup"
	KindDenials    = "agentexec-denials"
	KindOSExec     = "os/exec"
	KindForkExec   = "forkexec"
	KindPosixSpawn = "posix_spawn"
)

// backend launches targets one way.
type backend interface {
	name() string
	run(ctx context.Context, t *target) (outcome, error)
	close() error
}

// rtBackend runs calls through an agentexec Runtime.
type rtBackend struct {
	kind string
	rt   *agentexec.Runtime
}

func (b *rtBackend) name() string { return b.kind }

func (b *rtBackend) run(ctx context.Context, t *target) (outcome, error) {
	r, err := b.rt.Run(ctx, agentexec.Request{Tool: t.Tool, Args: t.Args, Dir: t.dir})
	if err != nil {
		return outcome{}, err
	}
	exit := r.ExitCode
	if r.Signal != 0 {
		exit = 128 + int(r.Signal)
	}
	return outcome{exit: exit, stdout: r.Stdout, stderr: r.Stderr, backend: string(r.Backend),
		template: string(r.Template), containment: r.Containment, unenforced: r.Unenforced}, nil
}

func (b *rtBackend) close() error { return b.rt.Close() }

// osExecBackend is plain os/exec: exec.Cmd with the resolved path and the output
// collected into buffers (os/exec makes the pipes and copying goroutines).
type osExecBackend struct{}

func (osExecBackend) name() string { return KindOSExec }

func (osExecBackend) run(ctx context.Context, t *target) (outcome, error) {
	cmd := exec.CommandContext(ctx, t.path)
	cmd.Args = t.argv
	cmd.Env = t.env
	cmd.Dir = t.dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	o := outcome{stdout: out.Bytes(), stderr: errb.Bytes()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		o.exit = exitCode(ee.Sys().(syscall.WaitStatus))
		return o, nil
	}
	return o, err
}

func (osExecBackend) close() error { return nil }

// forkExecBackend is the posix_spawn-level baseline: syscall.ForkExec (clone with
// CLONE_VFORK|CLONE_VM, then execve in the child: the same shape as glibc's
// posix_spawn), /dev/null as stdin, two pipes read concurrently, wait4.
type forkExecBackend struct {
	devnull *os.File
}

func newForkExecBackend() (*forkExecBackend, error) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		return nil, fmt.Errorf("forkexec baseline: %w", err)
	}
	return &forkExecBackend{devnull: f}, nil
}

func (*forkExecBackend) name() string { return KindForkExec }

var forkExecInfo = BackendInfo{Name: KindForkExec, Available: true,
	Description: "forkexec (vfork+exec, no sandbox): syscall.ForkExec (CLONE_VFORK|CLONE_VM, as posix_spawn), 2 pipes, wait4"}

func (b *forkExecBackend) run(_ context.Context, t *target) (outcome, error) {
	outR, outW, errR, errW, err := outputPipes()
	if err != nil {
		return outcome{}, err
	}
	pid, err := syscall.ForkExec(t.path, t.argv, &syscall.ProcAttr{
		Dir:   t.dir,
		Env:   t.env,
		Files: []uintptr{b.devnull.Fd(), outW.Fd(), errW.Fd()},
	})
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return outcome{}, fmt.Errorf("forkexec %s: %w", t.path, err)
	}
	return collect(pid, outR, errR)
}

// collect reads both pipes to EOF and reaps pid with wait4.
func collect(pid int, outR, errR *os.File) (outcome, error) {
	var o outcome
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		o.stderr, _ = io.ReadAll(errR)
	}()
	o.stdout, _ = io.ReadAll(outR)
	wg.Wait()
	outR.Close()
	errR.Close()
	var ws syscall.WaitStatus
	var err error
	for {
		_, err = syscall.Wait4(pid, &ws, 0, nil)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		return o, fmt.Errorf("wait4 %d: %w", pid, err)
	}
	o.exit = exitCode(ws)
	return o, nil
}

// exitCode is a shell's $? for a wait status: the exit status, or 128 plus the
// signal that killed the process.
func exitCode(ws syscall.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// outputPipes creates the stdout and stderr pipes of a launch; on error none is
// left open.
func outputPipes() (outR, outW, errR, errW *os.File, err error) {
	outR, outW, err = os.Pipe()
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("pipe: %w", err)
	}
	errR, errW, err = os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, nil, nil, nil, fmt.Errorf("pipe: %w", err)
	}
	return outR, outW, errR, errW, nil
}

func (b *forkExecBackend) close() error { return b.devnull.Close() }
