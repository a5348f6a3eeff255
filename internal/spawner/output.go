package spawner

import (
	"io"
	"os"
	"sync"
)

// Sink collects one output stream of a child: it keeps up to Limit bytes, reads and
// discards the rest (the child is never blocked by a full pipe) and counts what it
// dropped. With Stream set, chunks go to Stream instead of the buffer, capped the same.
type Sink struct {
	Limit  int64 // 0: unlimited
	Stream io.Writer

	mu      sync.Mutex
	buf     []byte
	kept    int64
	dropped int64
	broken  bool
	done    chan struct{}
}

// chunks are the read buffers of Drain, reused across launches: two 32 KiB buffers
// per launch would otherwise be most of the launch path's garbage.
var chunks = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// Drain reads r until EOF (or an error) in a new goroutine, then closes r.
func (s *Sink) Drain(r *os.File) {
	s.done = make(chan struct{})
	go func() {
		defer close(s.done)
		defer r.Close()
		cp := chunks.Get().(*[]byte)
		defer chunks.Put(cp)
		chunk := *cp
		for {
			n, err := r.Read(chunk)
			if n > 0 {
				s.take(chunk[:n])
			}
			if err != nil {
				if s.Stream != nil {
					if c, ok := s.Stream.(io.Closer); ok {
						c.Close()
					}
				}
				return
			}
		}
	}()
}

func (s *Sink) take(p []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	keep := int64(len(p))
	if s.broken {
		keep = 0
	} else if s.Limit > 0 && s.kept+keep > s.Limit {
		keep = max(s.Limit-s.kept, 0)
	}
	if keep > 0 {
		if s.Stream != nil {
			if _, err := s.Stream.Write(p[:keep]); err != nil {
				// The reader went away: keep draining so the child is not blocked.
				s.broken = true
			}
		} else {
			s.buf = append(s.buf, p[:keep]...)
		}
		s.kept += keep
	}
	s.dropped += int64(len(p)) - keep
}

// Wait blocks until the stream reached EOF.
func (s *Sink) Wait() {
	if s.done != nil {
		<-s.done
	}
}

// Result returns the kept bytes and how many were dropped; call after Wait.
func (s *Sink) Result() ([]byte, int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf, s.dropped
}
