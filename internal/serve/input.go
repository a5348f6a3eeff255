package serve

import (
	"errors"
	"io"
	"os"
	"sync"
	"time"
)

// errInputStopped ends the line reader once input.stop has been called and every
// byte already taken from the input has been handed on.
var errInputStopped = errors.New("serve: input stopped")

// input is the server's input as the line reader reads it, with a stop that ends
// reading without losing lines.
//
// When the input supports read deadlines (an *os.File on a pipe or socket in
// non-blocking mode, as `agentexec serve` makes its stdin; a net.Conn), Read reads
// it directly, on the line reader's goroutine: stop moves the deadline to now, so a
// pending Read returns at once and later ones read nothing, and every byte taken off
// the input has been handed to the line reader. No goroutine sits between the input
// and the line reader: a request line costs no hand-off from one goroutine to another
// (one wake-up of a sleeping thread each on a busy host; docs/performance.md, "serve
// overhead").
//
// Otherwise a goroutine of its own reads the input in chunks that Read hands out, so
// that stop can end reading while that goroutine's Read is still pending (it may
// never return): bytes that arrive after stop are taken by that Read and dropped;
// they were never read as lines.
type input struct {
	r        io.Reader
	deadline interface{ SetReadDeadline(time.Time) error }

	chunks chan []byte // closed after err is set
	free   chan []byte
	err    error
	quit   chan struct{}
	once   sync.Once

	cur     []byte // the chunk being handed out by Read
	curBuf  []byte // its buffer, for free
	stopped bool
}

const inputChunk = 64 << 10

func startInput(r io.Reader) *input {
	in := &input{r: r, chunks: make(chan []byte, 1), free: make(chan []byte, 2), quit: make(chan struct{})}
	in.deadline, _ = r.(interface{ SetReadDeadline(time.Time) error })
	if in.deadline != nil && in.deadline.SetReadDeadline(time.Time{}) != nil {
		in.deadline = nil // e.g. an *os.File that is not pollable
	}
	if in.deadline == nil {
		go in.loop()
	}
	return in
}

// direct reports whether Read reads the input itself (it has read deadlines).
func (in *input) direct() bool { return in.deadline != nil }

// loop reads an input without deadlines into chunks.
func (in *input) loop() {
	defer close(in.chunks)
	for {
		var buf []byte
		select {
		case buf = <-in.free:
		default:
			buf = make([]byte, inputChunk)
		}
		n, err := in.r.Read(buf)
		if n > 0 {
			select {
			case in.chunks <- buf[:n]:
			case <-in.quit:
				in.err = errInputStopped
				return
			}
		}
		if err != nil {
			in.err = err
			return
		}
	}
}

// stop ends reading: Read hands out what was already read, then errInputStopped.
// It must be called once the line reader's goroutine may stop (it reads on until
// then; see Serve).
func (in *input) stop() {
	in.once.Do(func() {
		close(in.quit)
		if in.deadline != nil {
			_ = in.deadline.SetReadDeadline(time.Now())
		}
	})
}

// Read reads the input (direct) or hands out the chunks read, then the input's error
// (io.EOF at its end, errInputStopped after stop).
func (in *input) Read(p []byte) (int, error) {
	if in.direct() {
		select {
		case <-in.quit:
			return 0, errInputStopped
		default:
		}
		n, err := in.r.Read(p)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			err = errInputStopped
		}
		return n, err
	}
	for len(in.cur) == 0 {
		if in.curBuf != nil {
			select {
			case in.free <- in.curBuf[:cap(in.curBuf)]:
			default:
			}
			in.curBuf = nil
		}
		if in.stopped {
			return 0, errInputStopped
		}
		var c []byte
		var ok bool
		select {
		case c, ok = <-in.chunks:
		case <-in.quit:
			// Only what is already here: a Read still pending may never return.
			select {
			case c, ok = <-in.chunks:
			default:
				in.stopped = true
				return 0, errInputStopped
			}
		}
		if !ok {
			return 0, in.err
		}
		in.cur, in.curBuf = c, c
	}
	n := copy(p, in.cur)
	in.cur = in.cur[n:]
	return n, nil
}
