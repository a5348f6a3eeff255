package spawner

import (
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/agentexec/agentexec/internal/templates"
)

// launchSpec is a launch of tool with stdout and stderr on a pipe whose read end
// the test closes.
func launchSpec(t *testing.T, tool, dir string, argv ...string) *LaunchSpec {
	t.Helper()
	p := make([]int, 2)
	if err := unix.Pipe2(p, unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(p[0]); unix.Close(p[1]) })
	return &LaunchSpec{Tool: tool, Argv: argv, Dir: dir, Stdin: -1, Stdout: p[1], Stderr: p[1], CgroupFD: -1}
}

// The spawner process's own answers to requests it cannot serve: each is a failed
// reply that names what was wrong, and the spawner goes on serving.
func TestSpawnerProcRefusals(t *testing.T) {
	s := startTestSpawner(t, 1, "off")
	_, err := s.Launch(launchSpec(t, "rm", "/", "rm"))
	var le *LaunchError
	if !errors.As(err, &le) || le.Exec || !strings.Contains(le.Msg, `tool "rm" is not in this spawner's profile`) {
		t.Errorf("unknown tool: %v, want a failure naming the tool", err)
	}
	// A working directory that does not exist is named as such, not as a missing
	// binary (the child's chdir fails before exec).
	_, err = s.Launch(launchSpec(t, "true", "/nonexistent-dir", "true"))
	if !errors.As(err, &le) || !strings.Contains(le.Msg, "/nonexistent-dir") {
		t.Errorf("missing cwd: %v, want a failure naming the directory", err)
	}
	// A stdin file the spawner cannot open.
	spec := launchSpec(t, "true", "/", "true")
	spec.StdinPath = "/nonexistent-stdin"
	if _, err = s.Launch(spec); !errors.As(err, &le) || !strings.Contains(le.Msg, "open stdin /nonexistent-stdin") {
		t.Errorf("missing stdin file: %v, want a failure naming it", err)
	}
	// Control: after all that, the same spawner launches.
	launchTrue(t, s)
	if n := s.Restarts(); n != 0 {
		t.Errorf("spawner restarted %d times: refusals must not end it", n)
	}
}

// The spawner reports each tool's template in ready: a tool whose path is not an
// executable file gets backend "none" with the reason, and launches of it fail as
// exec failures (the shell's 126/127), not as spawner errors.
func TestSpawnerProcTemplateStatus(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	s, err := StartSpawner(SpawnerConfig{Binary: exe, Profile: "test", KernelTemplates: "off", Stderr: os.Stderr,
		Tools: []ToolSpec{{Name: "true", Path: "/bin/true", Hot: true}, {Name: "gone", Path: "/nonexistent/tool", Hot: true}}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got := map[string]TemplateStatus{}
	for _, ts := range s.Ready().Templates {
		got[ts.Name] = ts
	}
	if ts := got["true"]; ts.Backend != templates.BackendUserspace || ts.Err != "" {
		t.Errorf("true: %+v, want the userspace backend", ts)
	}
	if ts := got["gone"]; ts.Backend != templates.BackendNone || ts.Err == "" {
		t.Errorf("gone: %+v, want backend none with the reason", ts)
	}
	_, err = s.Launch(launchSpec(t, "gone", "/", "gone"))
	var le *LaunchError
	if !errors.As(err, &le) || !le.Exec || le.Errno != unix.ENOENT {
		t.Errorf("launch of a missing binary: %v, want an exec failure with ENOENT", err)
	}
}

// exitReply turns a reaped child's status into the reply: exits and signals as is,
// and a kernel-template child's raw launch-failure statuses decoded.
func TestExitReply(t *testing.T) {
	ru := &unix.Rusage{Utime: unix.Timeval{Sec: 1}, Stime: unix.Timeval{Usec: 5}, Maxrss: 1234}
	exited := unix.WaitStatus(3 << 8)
	r := exitReply(9, 100, false, exited, ru, nil)
	if r.Kind != replyExited || r.ID != 9 || r.Pid != 100 || syscall.WaitStatus(r.Status).ExitStatus() != 3 ||
		r.UtimeNS != 1e9 || r.StimeNS != 5000 || r.MaxRSS != 1234 || r.Exec {
		t.Errorf("exit 3: %+v", r)
	}
	killed := unix.WaitStatus(unix.SIGKILL)
	if r := exitReply(1, 2, false, killed, ru, nil); !syscall.WaitStatus(r.Status).Signaled() || syscall.WaitStatus(r.Status).Signal() != syscall.SIGKILL {
		t.Errorf("SIGKILL: %+v", r)
	}
	if r := exitReply(1, 2, false, 0, ru, unix.ECHILD); r.Kind != replyFailed || r.Errno != int(unix.ECHILD) || !strings.Contains(r.Err, "wait4(2)") {
		t.Errorf("wait error: %+v", r)
	}
	// A kernel-template child whose exec failed dies by CLD_KILLED with 127 in the
	// signal field (ABI quirk): reported as an exec failure with exit status 127.
	// Control: a userspace child with the same raw status is a plain signal death.
	raw := unix.WaitStatus(templates.ExitNotFound)
	if r := exitReply(1, 2, true, raw, ru, nil); !r.Exec || syscall.WaitStatus(r.Status).ExitStatus() != templates.ExitNotFound {
		t.Errorf("kernel child, raw 127: %+v, want an exec failure exiting 127", r)
	}
	if r := exitReply(1, 2, false, raw, ru, nil); r.Exec || r.Status != uint32(raw) {
		t.Errorf("userspace child, raw 127: %+v, want the status passed on undecoded", r)
	}
}
