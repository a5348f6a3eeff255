package testutil

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// SleepMarker returns a sleep duration unique to this call ("1000.<9 digits>", about
// 17 minutes), to pass to sleep(1) so that the processes a test started can be found
// in /proc by their command line with ProcsWith.
func SleepMarker() string { return fmt.Sprintf("1000.%09d", time.Now().UnixNano()%1e9) }

// ProcsWith returns the pids whose /proc/<pid>/cmdline contains marker, in the order
// os.ReadDir lists /proc; nil when there is none. Processes that exit during the scan
// and an unreadable /proc are skipped silently.
func ProcsWith(marker string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && bytes.Contains(b, []byte(marker)) {
			pids = append(pids, pid)
		}
	}
	return pids
}
