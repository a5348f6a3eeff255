package spawner

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// syncBuffer is a bytes.Buffer safe for the logger's goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A spawner that dies is logged in one line: profile, pid, cause and the launches
// in flight that failed with it (issue 19). Control: a spawner ended by Close
// logs nothing.
func TestSpawnerDeathLogged(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var logBuf syncBuffer
	logger := slog.New(slog.NewTextHandler(&logBuf, nil))
	s, err := StartSpawner(SpawnerConfig{Binary: exe, Profile: "deathtest", KernelTemplates: "off", Logger: logger,
		Tools: []ToolSpec{{Name: "sleep", Path: "/bin/sleep"}, {Name: "true", Path: "/bin/true"}}, Stderr: os.Stderr})
	if err != nil {
		t.Fatalf("StartSpawner: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	pid := s.Pid()

	// One launch in flight when the spawner dies.
	p := make([]int, 2)
	if err := unix.Pipe2(p, unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	ch, err := s.Launch(&LaunchSpec{Tool: "sleep", Argv: []string{"sleep", "60"}, Dir: "/", Stdin: -1, Stdout: p[1], Stderr: p[1], CgroupFD: -1})
	unix.Close(p[1])
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Release()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.Wait(); !errors.Is(err, ErrSpawnerDied) {
		t.Errorf("the launch in flight: %v, want ErrSpawnerDied", err)
	}
	// The line is written once the process has been waited for.
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(logBuf.String(), "spawner died") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	out := logBuf.String()
	if n := strings.Count(out, "\n"); n != 1 {
		t.Fatalf("want one log line, got %d:\n%s", n, out)
	}
	for _, want := range []string{"level=WARN", "spawner died", "profile=deathtest", "pid=" + strconv.Itoa(pid), `cause="signal: killed"`, "launches_failed=1"} {
		if !strings.Contains(out, want) {
			t.Errorf("log line lacks %s:\n%s", want, out)
		}
	}

	// The next launch starts a new spawner; closing it is not a death.
	if err := runTrue(s); err != nil {
		t.Fatal(err)
	}
	if s.Pid() == pid || s.Restarts() != 1 {
		t.Errorf("after the death: pid %d (was %d), restarts %d", s.Pid(), pid, s.Restarts())
	}
	s.Close()
	if got := logBuf.String(); got != out {
		t.Errorf("Close logged a death:\n%s", strings.TrimPrefix(got, out))
	}
}
