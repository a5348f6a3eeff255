package bench

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// progress draws a one-line bar on a terminal: "[#####-----]  45% latency 1234/5000".
// A nil writer draws nothing; all methods are safe for concurrent use.
type progress struct {
	w     io.Writer
	total int

	mu   sync.Mutex
	n    int
	last time.Time
}

func newProgress(w io.Writer, total int) *progress { return &progress{w: w, total: max(total, 1)} }

func (p *progress) add(n int, phase string) {
	if p == nil || p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n += n
	if now := time.Now(); now.Sub(p.last) >= 100*time.Millisecond || p.n >= p.total {
		p.last = now
		p.draw(phase)
	}
}

func (p *progress) draw(phase string) {
	const width = 30
	filled := min(width, p.n*width/p.total)
	fmt.Fprintf(p.w, "\r[%s%s] %3d%% %-10s %d/%d", strings.Repeat("#", filled), strings.Repeat("-", width-filled),
		min(100, p.n*100/p.total), phase, p.n, p.total)
}

// done clears the bar's line.
func (p *progress) done() {
	if p == nil || p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "\r%s\r", strings.Repeat(" ", 70))
}
