package serve

import (
	"bytes"
	"io"
	"sync"
)

// maxPendingLines bounds the lines waiting to be written while the output is busy:
// past it, emitters wait (backpressure).
const maxPendingLines = 256

// flushBytes is the size at which pending lines are written out without waiting
// for more.
const flushBytes = 64 << 10

// lineWriter is the only writer of the server's output: every line is written whole,
// one write at a time, in the order emitted (the order in which emit took mu).
//
// A result line is usually written by its request's goroutine itself: when nothing
// is being written and nothing waits, emit writes the line at once (direct), without
// handing it to another goroutine (one wake-up of a sleeping thread fewer per
// request on a busy host; docs/performance.md, "serve overhead"). Otherwise the line
// waits in pending and the write loop (run) writes it, with whatever else waits, in
// one write. The input reader never writes itself (emit with direct false): a
// client that does not read our output can hold a write, and the reader must go on
// reading (cancel and control messages) until maxPendingLines lines wait.
type lineWriter struct {
	out  io.Writer
	kick chan struct{} // the write loop owns the output and has pending lines to write

	mu      sync.Mutex
	cond    sync.Cond // on mu: the output was let go of, or pending shrank
	owned   bool      // a direct write or the write loop holds the output
	pending [][]byte  // lines waiting for the write loop, oldest first
	closing bool      // run is stopping: no direct write any more
	stopped bool      // no line is written any more (Serve ended)
	err     error     // the first write error; lines are dropped from then on
	fail    chan struct{}
	done    chan struct{} // closed when run has returned
}

func newLineWriter(out io.Writer) *lineWriter {
	w := &lineWriter{out: out, kick: make(chan struct{}, 1), fail: make(chan struct{}), done: make(chan struct{})}
	w.cond.L = &w.mu
	return w
}

// emit writes line (whole, "\n" included) or queues it for the write loop. A line
// emitted after the writer stopped or failed is dropped.
func (w *lineWriter) emit(line []byte, direct bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if direct && !w.owned && len(w.pending) == 0 && !w.closing && w.err == nil {
		w.owned = true
		w.mu.Unlock()
		_, err := w.out.Write(line)
		w.mu.Lock()
		w.wrote(err)
		if len(w.pending) > 0 {
			w.kick <- struct{}{} // lines came meanwhile: the loop takes the output over
		} else {
			w.owned = false
		}
		w.cond.Broadcast()
		return
	}
	for len(w.pending) >= maxPendingLines && !w.stopped && w.err == nil {
		w.cond.Wait()
	}
	if w.stopped || w.err != nil {
		return
	}
	w.pending = append(w.pending, line)
	if !w.owned {
		w.owned = true
		w.kick <- struct{}{} // empty: a kick is taken before the loop lets go of the output
	}
}

// wrote records the outcome of a write. w.mu is held.
func (w *lineWriter) wrote(err error) {
	if err != nil && w.err == nil {
		w.err = err
		w.pending = nil
		close(w.fail)
	}
}

// run is the write loop: it writes the pending lines whenever it is handed the
// output, until stop is closed; then it waits for a direct write in progress,
// writes what is still pending, and from then on drops every line.
func (w *lineWriter) run(stop <-chan struct{}) {
	defer close(w.done)
	var buf bytes.Buffer
	for {
		select {
		case <-w.kick:
			w.flush(&buf)
		case <-stop:
			w.mu.Lock()
			w.closing = true // no direct write from now on
			for w.owned {
				select {
				case <-w.kick: // handed over by a direct write
					w.mu.Unlock()
					w.flush(&buf)
					w.mu.Lock()
				default:
					w.cond.Wait() // a direct write is in progress
				}
			}
			w.stopped = true
			lines := w.pending
			w.pending = nil
			failed := w.err != nil
			w.cond.Broadcast()
			w.mu.Unlock()
			if !failed && len(lines) > 0 {
				err := w.write(&buf, lines)
				w.mu.Lock()
				w.wrote(err)
				w.mu.Unlock()
			}
			return
		}
	}
}

// flush writes the pending lines until none wait, then lets go of the output. The
// write loop calls it when it holds the output.
func (w *lineWriter) flush(buf *bytes.Buffer) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(w.pending) > 0 && w.err == nil {
		lines := w.pending
		w.pending = nil
		w.cond.Broadcast()
		w.mu.Unlock()
		err := w.write(buf, lines)
		w.mu.Lock()
		w.wrote(err)
	}
	w.owned = false
	w.cond.Broadcast()
}

// write writes lines in writes of about flushBytes.
func (w *lineWriter) write(buf *bytes.Buffer, lines [][]byte) error {
	defer buf.Reset()
	for i, l := range lines {
		buf.Write(l)
		if buf.Len() >= flushBytes || i == len(lines)-1 {
			if _, err := w.out.Write(buf.Bytes()); err != nil {
				return err
			}
			buf.Reset()
		}
	}
	return nil
}

// failed is closed at the first write error.
func (w *lineWriter) failed() <-chan struct{} { return w.fail }

// failure is the first write error, once failed is closed or run has returned.
func (w *lineWriter) failure() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}
