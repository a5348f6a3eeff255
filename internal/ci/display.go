package ci

import (
	"bytes"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// events receive what happens to steps; implementations are safe for concurrent use.
type events interface {
	started(s *Step, at time.Time)
	line(s *Step, stream, text string, at time.Time)
	finished(r *StepResult)
	close()
}

// commandLine renders a step's launch for display.
func commandLine(s *Step) string {
	if s.Sh != "" {
		script := strings.TrimSpace(s.Sh)
		if i := strings.IndexByte(script, '\n'); i >= 0 {
			script = script[:i] + " …"
		}
		return s.Tool + " -c " + script
	}
	return strings.Join(s.Run, " ")
}

// statusText is a result's status with its message.
func statusText(r *StepResult) string {
	if r.Message != "" {
		return string(r.Status) + ": " + r.Message
	}
	return string(r.Status)
}

func fmtDur(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(10 * time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}

// plainDisplay writes timestamped lines prefixed by the step name, for logs and CI
// systems: "12:00:01.234 [build] go: downloading …".
type plainDisplay struct {
	mu sync.Mutex
	w  io.Writer
}

const stampFormat = "15:04:05.000"

func (p *plainDisplay) printf(at time.Time, step, format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "%s [%s] "+format+"\n", append([]any{at.Format(stampFormat), step}, args...)...)
}

func (p *plainDisplay) started(s *Step, at time.Time) {
	p.printf(at, s.Name, "started: %s", commandLine(s))
}

func (p *plainDisplay) line(s *Step, _ string, text string, at time.Time) {
	p.printf(at, s.Name, "%s", text)
}

func (p *plainDisplay) finished(r *StepResult) {
	at := r.End
	if at.IsZero() {
		at = time.Now()
	}
	if r.Start.IsZero() {
		p.printf(at, r.Step.Name, "%s", statusText(r))
	} else {
		p.printf(at, r.Step.Name, "%s (%s)", statusText(r), fmtDur(r.End.Sub(r.Start)))
	}
	if failedStep(r) {
		for _, l := range denialLines(r) {
			p.printf(at, r.Step.Name, "%s", l)
		}
	}
}

// failedStep reports whether a step's display shows why it failed: its output's
// tail and its denials.
func failedStep(r *StepResult) bool {
	return r.Status != StatusPassed && r.Status != StatusSkipped
}

func (p *plainDisplay) close() {}

// ttyDisplay redraws a live region at the bottom of a terminal: one line per running
// step with a spinner, its elapsed time and its last output line. Finished steps are
// printed once above it with their status (and, on failure, their last lines).
type ttyDisplay struct {
	mu      sync.Mutex
	w       io.Writer
	width   int
	color   bool
	total   int
	done    int
	start   time.Time
	running []*liveStep
	pending bytes.Buffer // permanent lines not yet drawn
	drawn   int          // lines of the live region on screen
	frame   int
	stop    chan struct{}
	stopped chan struct{}
}

type liveStep struct {
	s     *Step
	start time.Time
	last  string
}

var spinner = []string{"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"}

func newTTYDisplay(w io.Writer, width, total int, color bool) *ttyDisplay {
	if width < 20 {
		width = 80
	}
	t := &ttyDisplay{w: w, width: width, color: color, total: total, start: time.Now(),
		stop: make(chan struct{}), stopped: make(chan struct{})}
	_, _ = io.WriteString(w, "\x1b[?25l") // hide the cursor while redrawing
	go t.loop()
	return t
}

func (t *ttyDisplay) loop() {
	defer close(t.stopped)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-tick.C:
			t.mu.Lock()
			t.frame++
			t.redraw()
			t.mu.Unlock()
		}
	}
}

func (t *ttyDisplay) paint(code, s string) string {
	if !t.color {
		return s
	}
	return "\x1b[" + code + "m" + s + "\x1b[0m"
}

// clip cuts s to n display cells (runes; wide characters are rare in logs).
func clip(s string, n int) string {
	if n <= 0 {
		return ""
	}
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

var csiRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`\x1b\[[0-9;?]*[ -/]*[@-~]`) })

// sanitize drops escape sequences and control characters (escape sequences from tools would break the
// redraw).
func sanitize(s string) string {
	s = csiRE().ReplaceAllString(s, "")
	return strings.Map(func(r rune) rune {
		if r == '\t' {
			return ' '
		}
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
}

func (t *ttyDisplay) started(s *Step, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.running = append(t.running, &liveStep{s: s, start: at})
	t.redraw()
}

func (t *ttyDisplay) line(s *Step, _ string, text string, _ time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, l := range t.running {
		if l.s == s {
			if txt := strings.TrimSpace(sanitize(text)); txt != "" {
				l.last = txt
			}
		}
	}
}

func (t *ttyDisplay) finished(r *StepResult) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, l := range t.running {
		if l.s == r.Step {
			t.running = append(t.running[:i], t.running[i+1:]...)
			break
		}
	}
	t.done++
	var mark, code string
	switch r.Status {
	case StatusPassed:
		mark, code = "✓", "32"
	case StatusSkipped:
		mark, code = "-", "33"
	default:
		mark, code = "✗", "31"
		if r.Step.ContinueOnError {
			code = "33"
		}
	}
	dur := ""
	if !r.Start.IsZero() {
		dur = "  " + fmtDur(r.End.Sub(r.Start))
	}
	line := fmt.Sprintf("%s %s  %s%s", mark, r.Step.Name, statusText(r), dur)
	t.pending.WriteString(t.paint(code, clip(sanitize(line), t.width-1)) + "\n")
	if r.Status != StatusPassed && r.Status != StatusSkipped && r.Status != StatusDenied {
		tail := r.Tail
		if len(tail) > 10 {
			tail = tail[len(tail)-10:]
		}
		for _, l := range tail {
			t.pending.WriteString(t.paint("2", clip("    │ "+sanitize(l), t.width-1)) + "\n")
		}
	}
	if failedStep(r) {
		for _, l := range denialLines(r) {
			// Not clipped: a hint is read in full (a long line wraps above the live region).
			t.pending.WriteString(t.paint("33", "    ! "+sanitize(l)) + "\n")
		}
	}
	t.redraw()
}

// redraw replaces the live region: finished lines go above it for good.
func (t *ttyDisplay) redraw() {
	var b bytes.Buffer
	if t.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA\r\x1b[J", t.drawn)
	}
	b.Write(t.pending.Bytes())
	t.pending.Reset()
	now := time.Now()
	t.drawn = 0
	for _, l := range t.running {
		head := fmt.Sprintf("%s %s  %s", spinner[t.frame%len(spinner)], l.s.Name, fmtDur(now.Sub(l.start).Truncate(100*time.Millisecond)))
		rest := l.last
		if rest == "" {
			rest = commandLine(l.s)
		}
		room := t.width - 1 - utf8.RuneCountInString(head) - 2
		line := t.paint("36", head)
		if room > 8 {
			line += "  " + t.paint("2", clip(sanitize(rest), room))
		}
		b.WriteString(line + "\n")
		t.drawn++
	}
	status := fmt.Sprintf("%d/%d steps done, %d running, %s", t.done, t.total, len(t.running), fmtDur(now.Sub(t.start).Truncate(100*time.Millisecond)))
	b.WriteString(t.paint("1", clip(status, t.width-1)) + "\n")
	t.drawn++
	_, _ = t.w.Write(b.Bytes()) // a terminal that went away: nothing to do
}

func (t *ttyDisplay) close() {
	close(t.stop)
	<-t.stopped
	t.mu.Lock()
	defer t.mu.Unlock()
	t.redraw()
	// Leave the final status line; show the cursor again.
	_, _ = io.WriteString(t.w, "\x1b[?25h")
}
