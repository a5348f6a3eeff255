package oneshot

import (
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// stdio decides the child's fds 0, 1 and 2. A descriptor is inherited as it is
// (the tool writes straight to the caller's file or pipe, nothing is copied) unless
// the Runtime path would show the tool something else: a terminal is passed through
// a pipe (a Runtime's tools never get the caller's terminal: no TIOCSTI, no job
// control, and isatty(3) answers as it does there), and so are stdout and stderr
// when the tool has an output cap (the cap holds, and the excess is counted).
func (s *session) stdio() error {
	r := s.l.req
	in, out, errf := r.Stdin, r.Stdout, r.Stderr
	if in == nil {
		in = os.Stdin
	}
	if out == nil {
		out = os.Stdout
	}
	if errf == nil {
		errf = os.Stderr
	}
	limit := s.l.tool.OutputBytes
	if s.exited == nil {
		s.exited = make(chan struct{})
	}
	// stdin
	if usable(in) && !isTerminal(in) {
		s.files[0] = int(in.Fd())
	} else {
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			return err
		}
		s.files[0] = p[0]
		s.childEnds = append(s.childEnds, p[0])
		w := os.NewFile(uintptr(p[1]), "|stdin")
		if usable(in) {
			s.stdinFeeder = w
			go func() {
				_, _ = io.Copy(w, in)
				w.Close()
			}()
		} else {
			w.Close() // no stdin: the tool reads EOF, as from a Runtime's empty pipe
		}
	}
	for i, f := range []*os.File{out, errf} {
		if usable(f) && !isTerminal(f) && limit == 0 {
			s.files[i+1] = int(f.Fd())
			continue
		}
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			return err
		}
		s.files[i+1] = p[1]
		s.childEnds = append(s.childEnds, p[1])
		c := &capped{r: os.NewFile(uintptr(p[0]), "|out"), w: f, limit: limit, exited: s.exited}
		s.outs[i] = c
		s.copies.Add(1)
		go func() {
			defer s.copies.Done()
			c.run()
		}()
	}
	return nil
}

// usable reports whether f is an open descriptor.
func usable(f *os.File) bool {
	var st unix.Stat_t
	return f != nil && unix.Fstat(int(f.Fd()), &st) == nil
}

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// readPause is how long the copier lets output gather after a short read.
const readPause = time.Millisecond

// chattyReads is how many short reads in a row make the copier pause.
const chattyReads = 4

// capped copies the tool's output to w up to limit bytes (0: no limit), then
// reads on and counts what it drops, so that the tool never blocks for long.
//
// After chattyReads reads in a row that each found the pipe less than half as
// full as the buffer (a tool writing in many small pieces), it waits readPause (or
// until the tool has exited: exited closed) before each read. A tool that writes
// its output in a few pieces is read as it comes: pausing there only delayed the
// end (0.2-0.45 ms more for cat README.md, whose 7 KB came in two reads). A
// copier that read every write as it came woke once per write, on a 2-core host
// competing for a CPU with the tool's own threads: rg with 37 KB of output in
// small writes ran 12-17% longer than with its stdout on a file (docs/performance.md).
// A tool that fills the pipe (64 KiB) during a pause waits for its end, and from
// then on finds the copier reading full buffers, which it does without pausing.
type capped struct {
	r       *os.File
	w       io.Writer
	limit   int64
	written int64
	dropped int64
	exited  <-chan struct{} // closed once the tool has exited: no more pauses
}

func (c *capped) run() {
	defer c.r.Close()
	buf := make([]byte, 64<<10)
	var pause *time.Timer
	shortReads := 0 // in a row
	defer func() {
		if pause != nil {
			pause.Stop()
		}
	}()
	for {
		n, err := c.r.Read(buf)
		if n > 0 {
			keep := int64(n)
			if c.limit > 0 && c.written+keep > c.limit {
				keep = max(c.limit-c.written, 0)
			}
			if keep > 0 {
				_, _ = c.w.Write(buf[:keep])
				c.written += keep
			}
			c.dropped += int64(n) - keep
		}
		if err != nil {
			return
		}
		if n < len(buf)/2 {
			shortReads++
		} else {
			shortReads = 0
		}
		if shortReads >= chattyReads && c.exited != nil {
			if pause == nil {
				pause = time.NewTimer(readPause)
			} else {
				pause.Reset(readPause)
			}
			select {
			case <-pause.C:
			case <-c.exited:
				c.exited = nil // drain at full speed from now on
			}
		}
	}
}
