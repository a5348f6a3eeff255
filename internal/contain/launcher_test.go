package contain

import (
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentexec/agentexec/internal/testutil"
)

func TestLauncherRunsOnOneThread(t *testing.T) {
	testutil.RequireLandlockABI(t, 6)
	l, err := StartLauncher(func() error {
		// Only this thread: it ends with the launcher.
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return err
		}
		return ScopeSignalsThisThread()
	})
	if err != nil {
		t.Fatal(err)
	}
	if l.TID() == os.Getpid() {
		t.Errorf("launcher on the main thread")
	}
	for i := 0; i < 20; i++ {
		var tid int
		l.Do(func() { tid = unix.Gettid() })
		if tid != l.TID() {
			t.Fatalf("Do %d ran on thread %d, want %d", i, tid, l.TID())
		}
	}
	l.Close()
	task := fmt.Sprintf("/proc/self/task/%d", l.TID())
	for i := 0; ; i++ {
		if _, err := os.Stat(task); err != nil {
			break
		}
		if i == 1000 {
			t.Fatalf("launcher thread %d still alive after Close", l.TID())
		}
		time.Sleep(time.Millisecond)
	}
}

func TestLauncherSetupError(t *testing.T) {
	boom := errors.New("boom")
	if _, err := StartLauncher(func() error { return boom }); !errors.Is(err, boom) {
		t.Errorf("StartLauncher: %v, want boom", err)
	}
}
