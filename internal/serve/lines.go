package serve

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// lineReader splits its input into lines of at most max bytes, not counting the
// "\n". A longer line is read and discarded piece by piece, never buffered whole,
// and reported by its length. A "\r" before the "\n" is removed (it counts toward
// the limit).
type lineReader struct {
	r    *bufio.Reader
	max  int
	buf  []byte
	line int64 // number of the last line returned, from 1
	eof  bool
}

func newLineReader(r io.Reader, max int) *lineReader {
	return &lineReader{r: bufio.NewReaderSize(r, 64<<10), max: max}
}

// next returns the next line and its number. The line is valid until the next call.
// When the line is over the limit, line is nil and size is its length in bytes.
// At the end of the input (or once the input is stopped) it returns io.EOF; a last
// line without a newline is returned first.
func (lr *lineReader) next() (line []byte, num int64, size int64, err error) {
	if lr.eof {
		return nil, lr.line, 0, io.EOF
	}
	lr.buf = lr.buf[:0]
	over := false
	terminated := false
	for {
		frag, rerr := lr.r.ReadSlice('\n')
		if n := len(frag); n > 0 && frag[n-1] == '\n' {
			frag = frag[:n-1]
			terminated = true
		}
		size += int64(len(frag))
		if !over {
			if size > int64(lr.max) {
				over = true
			} else {
				lr.buf = append(lr.buf, frag...)
			}
		}
		switch {
		case rerr == nil:
		case errors.Is(rerr, bufio.ErrBufferFull):
			continue
		case errors.Is(rerr, io.EOF) || errors.Is(rerr, errInputStopped):
			lr.eof = true
			if size == 0 && !terminated {
				return nil, lr.line, 0, io.EOF
			}
		default:
			return nil, lr.line, 0, rerr
		}
		lr.line++
		if over {
			return nil, lr.line, size, nil
		}
		line = bytes.TrimSuffix(lr.buf, []byte("\r"))
		return line, lr.line, size, nil
	}
}
