package ci

import (
	"bytes"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuf is a bytes.Buffer safe for the display's goroutine.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestPlainDisplay(t *testing.T) {
	var b syncBuf
	d := &plainDisplay{w: &b}
	s := &Step{Name: "build", Tool: "go", Run: []string{"go", "build"}}
	at := time.Date(2026, 1, 2, 12, 0, 1, 234e6, time.UTC)
	d.started(s, at)
	d.line(s, "stderr", "go: downloading x", at)
	d.finished(&StepResult{Step: s, Status: StatusFailed, Message: "exit status 1", Start: at, End: at.Add(1500 * time.Millisecond)})
	want := "12:00:01.234 [build] started: go build\n" +
		"12:00:01.234 [build] go: downloading x\n" +
		"12:00:02.734 [build] failed: exit status 1 (1.5s)\n"
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestTTYDisplay(t *testing.T) {
	var b syncBuf
	d := newTTYDisplay(&b, 60, 2, false)
	a := &Step{Name: "alpha", Tool: "sh", Sh: "sleep 1"}
	z := &Step{Name: "zeta", Tool: "sh", Sh: "exit 1"}
	now := time.Now()
	d.started(a, now)
	d.started(z, now)
	d.line(a, "stdout", "\x1b[31mprogress 50%\r", now)
	d.finished(&StepResult{Step: z, Status: StatusFailed, Message: "exit status 1", Start: now, End: now, Tail: []string{"boom"}})
	d.finished(&StepResult{Step: a, Status: StatusPassed, Start: now, End: now.Add(time.Second)})
	d.close()
	out := b.String()
	for _, want := range []string{
		"\x1b[?25l",                                   // cursor hidden while redrawing
		"alpha  ",                                     // a running line
		"  progress 50%\n",                            // its last output line, escape sequences removed
		"\x1b[3A\r\x1b[J",                             // the live region (two steps + status) redrawn in place
		"✗ zeta  failed: exit status 1", "    │ boom", // a failure with its last lines
		"✓ alpha  passed  1s",
		"2/2 steps done, 0 running",
		"\x1b[?25h", // cursor shown again
	} {
		if !strings.Contains(out, want) {
			t.Errorf("TTY output lacks %q:\n%q", want, out)
		}
	}
	if strings.Contains(out, "[31m") {
		t.Error("a tool's escape sequence reached the terminal")
	}
	if regexp.MustCompile(`(?m)^[^\n]{61,}$`).MatchString(stripANSI(out)) {
		t.Error("a line is wider than the terminal")
	}
}

var ansiRE = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]`)

func stripANSI(s string) string { return ansiRE.ReplaceAllString(s, "") }
