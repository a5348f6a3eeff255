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
// and an unreadable /proc are skipped silently, and so is a process in the middle of
// an execve (its command line reads empty until the new program's arguments are in
// place): poll, never conclude from one empty scan that a process died.
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

// SleepersWith returns the pids of sleep(1) processes (argv[0] named sleep) whose
// command line contains marker. Wait with it, not ProcsWith, for a shell that sets a
// SIGTERM trap and then runs sleep MARKER: the shell's own command line holds the
// marker from its exec on, before it has run its trap, so a signal sent when
// ProcsWith first finds it may still kill the shell.
func SleepersWith(marker string) []int {
	var pids []int
	for _, pid := range ProcsWith(marker) {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		if err != nil {
			continue
		}
		argv0, _, _ := bytes.Cut(b, []byte{0})
		if string(argv0) == "sleep" || bytes.HasSuffix(argv0, []byte("/sleep")) {
			pids = append(pids, pid)
		}
	}
	return pids
}
