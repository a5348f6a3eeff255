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

// input reads the server's input on a goroutine of its own, in chunks handed to the
// line reader (through Read). This is what lets a shutdown end reading without
// losing lines: stop makes the reader goroutine's pending Read return at once when
// the input supports read deadlines (an *os.File on a pipe or socket in non-blocking
// mode, a net.Conn), and the lines of every byte it took are still read and
// answered. With an input that has no deadlines, bytes that arrive after stop are
// taken by the goroutine's pending Read and dropped; they were never read as lines.
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
	go in.loop()
	return in
}

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
			if in.deadline != nil {
				in.chunks <- buf[:n] // the line reader takes every chunk (see stop)
			} else {
				select {
				case in.chunks <- buf[:n]:
				case <-in.quit:
					in.err = errInputStopped
					return
				}
			}
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				err = errInputStopped
			}
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

// Read hands out the chunks read, then the input's error (io.EOF at its end).
func (in *input) Read(p []byte) (int, error) {
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
			if in.deadline != nil {
				// The pending Read returns at once (its deadline passed); every chunk
				// it took comes before chunks is closed.
				c, ok = <-in.chunks
			} else {
				// Only what is already here: a Read still pending may never return.
				select {
				case c, ok = <-in.chunks:
				default:
					in.stopped = true
					return 0, errInputStopped
				}
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
