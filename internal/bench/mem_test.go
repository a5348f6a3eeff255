package bench

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentexec/agentexec/internal/testutil"
)

// distinctResidentKiB counts a page mapped by two processes once: two processes of
// one binary hold less than their VmRSS summed, and at least the larger of the two.
// Control: one process alone is counted as its VmRSS.
func TestDistinctResidentSharedPages(t *testing.T) {
	testutil.RequireRoot(t) // pagemap frame numbers need CAP_SYS_ADMIN
	var pids []int
	for range 2 {
		cmd := exec.Command("sleep", testutil.SleepMarker())
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		pids = append(pids, cmd.Process.Pid)
	}
	// Wait until both sit in their sleep (clock_nanosleep or nanosleep): their pages
	// no longer change.
	asleep := func(pid int) bool {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/syscall")
		nr, _, _ := strings.Cut(string(b), " ")
		return nr == "230" || nr == "35"
	}
	for i := 0; !asleep(pids[0]) || !asleep(pids[1]); i++ {
		if i == 500 {
			t.Fatal("the sleeps did not reach their sleep")
		}
		time.Sleep(10 * time.Millisecond)
	}
	one, ok := distinctResidentKiB(pids[:1])
	if !ok {
		t.Fatal("frames not countable as root")
	}
	r0, r1 := rssKiB(pids[0]), rssKiB(pids[1])
	if one != r0 {
		t.Errorf("control: one process counted as %d KiB, its VmRSS is %d KiB", one, r0)
	}
	both, ok := distinctResidentKiB(pids)
	if !ok {
		t.Fatal("frames not countable as root")
	}
	if both >= r0+r1 || both < max(r0, r1) {
		t.Errorf("two sleeps: distinct %d KiB, VmRSS %d + %d KiB: want below the sum and at least the larger", both, r0, r1)
	}
	t.Logf("sleep VmRSS %d + %d KiB, distinct %d KiB", r0, r1, both)
}
