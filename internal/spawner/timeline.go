package spawner

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// TimelineEnv, set to 1 in the main process's environment, makes every spawner
// start print its steps to the spawner's stderr (SpawnerConfig.Stderr): the main
// process's (StartSpawner: fork and exec, hello sent, ack, ready) and the
// spawner's own (package initialisation reached, main, hello read, then each step
// of its setup up to ready), one line each, as
//
//	agentexec timeline: PID SIDE UNIX_MICROSECONDS +MS_SINCE_PREVIOUS STEP
//
// with wall-clock times, so that the two processes' lines sort into one timeline
// (`sort -k5 -n`). It is how docs/performance.md ("Start-up") found where New's
// time goes; nothing is recorded when it is unset.
const TimelineEnv = "AGENTEXEC_SPAWNER_TIMELINE"

// timelineFlag passes TimelineEnv on to the spawner, whose environment is empty.
const timelineFlag = "--timeline"

// initTime is when this package was initialised: in a spawner, how long the
// binary took to reach it after its exec.
var initTime = time.Now()

// timeline records the steps of one start when on (nil otherwise; its methods
// then do nothing).
type timeline struct {
	side  string
	mu    sync.Mutex
	lines []string
	last  time.Time
}

func newTimeline(side string) *timeline { return &timeline{side: side} }

// mark records step at time t (now when zero).
func (tl *timeline) mark(step string, t ...time.Time) {
	if tl == nil {
		return
	}
	now := time.Now()
	if len(t) > 0 {
		now = t[0]
	}
	tl.mu.Lock()
	defer tl.mu.Unlock()
	since := 0.0
	if !tl.last.IsZero() {
		since = float64(now.Sub(tl.last).Microseconds()) / 1000
	}
	tl.last = now
	tl.lines = append(tl.lines, fmt.Sprintf("agentexec timeline: %d %s %d +%.2f %s", os.Getpid(), tl.side, now.UnixMicro(), since, step))
}

// flush writes what was recorded to w (nothing when w is nil) and forgets it.
func (tl *timeline) flush(w io.Writer) {
	if tl == nil {
		return
	}
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if w != nil && len(tl.lines) > 0 {
		_, _ = io.WriteString(w, strings.Join(tl.lines, "\n")+"\n")
	}
	tl.lines = nil
}

// spawnerTimeline is the spawner process's timeline (nil unless started with
// timelineFlag).
var spawnerTimeline *timeline
