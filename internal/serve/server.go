package serve

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/agentexec/agentexec"
)

// Defaults of Config.
const (
	DefaultMaxInflight     = 64
	DefaultMaxLineBytes    = 8 << 20
	DefaultDrainTimeout    = 30 * time.Second
	DefaultShutdownTimeout = 10 * time.Second
)

// Config tunes a server. Zero fields take the defaults.
type Config struct {
	// MaxInflight bounds the run requests launched at once (default 64).
	MaxInflight int
	// MaxQueued bounds the accepted run requests waiting for one of the MaxInflight
	// slots (default: MaxInflight). While MaxInflight+MaxQueued requests are in
	// flight the server stops reading its input (backpressure); cancel and the other
	// control messages are read and answered as long as fewer are.
	MaxQueued int
	// MaxLineBytes is the longest input line accepted, without its newline (default
	// 8 MiB). A longer line is skipped without being buffered and answered with an
	// error line.
	MaxLineBytes int
	// DrainTimeout bounds how long requests in flight may run after the input ends
	// (default 30s); then they are killed. Negative: kill at once.
	DrainTimeout time.Duration
	// ShutdownTimeout bounds how long killed requests get to report their results
	// (default 10s; it should exceed the runtime's kill grace).
	ShutdownTimeout time.Duration
	// Logger receives the server's diagnostics (default: discarded). Never stdout.
	Logger *slog.Logger
	// Version is reported by pong.
	Version string
}

func (c *Config) setDefaults() {
	if c.MaxInflight <= 0 {
		c.MaxInflight = DefaultMaxInflight
	}
	if c.MaxQueued <= 0 {
		c.MaxQueued = c.MaxInflight
	}
	if c.MaxLineBytes <= 0 {
		c.MaxLineBytes = DefaultMaxLineBytes
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// ErrShutdownTimeout is returned by Serve when killed requests did not report
// within Config.ShutdownTimeout.
var ErrShutdownTimeout = errors.New("serve: launches did not end within the shutdown timeout")

// Serve speaks the protocol of docs/protocol.md: it reads messages from in, one JSON
// object per line, launches run requests on rt, and writes one JSON object per line
// to out. It writes nothing else to out.
//
// Serve returns nil when in ends and every request in flight has been answered
// (after at most DrainTimeout, after which the rest are killed and answered). When
// ctx is done it stops reading, kills every request in flight, writes their results
// and returns nil. It returns an error when reading in fails, when writing out fails
// (then requests in flight are killed) or when killed requests do not end within
// ShutdownTimeout. Serve does not close rt.
func Serve(ctx context.Context, rt *agentexec.Runtime, in io.Reader, out io.Writer, cfg Config) error {
	cfg.setDefaults()
	s := &server{
		rt: rt, cfg: cfg, log: cfg.Logger, start: time.Now(),
		calls:      map[string]*call{},
		admit:      make(chan struct{}, cfg.MaxInflight+cfg.MaxQueued),
		out:        make(chan []byte, 256),
		stop:       make(chan struct{}),
		writerDone: make(chan struct{}),
		writeFail:  make(chan struct{}),
		backends:   map[string]uint64{},
	}
	s.killCtx, s.killAll = context.WithCancel(context.WithoutCancel(ctx))
	defer s.killAll()
	go s.writeLoop(out)

	readCtx, stopReading := context.WithCancel(ctx)
	defer stopReading()
	readDone := make(chan error, 1)
	go func() { readDone <- s.readLoop(readCtx, in) }()

	var errs []error
	select {
	case err := <-readDone:
		if err != nil {
			errs = append(errs, err)
		}
		s.log.Info("input ended; draining requests in flight", "in_flight", s.inFlight())
		s.drain(ctx)
	case <-ctx.Done():
		s.log.Info("stopping: killing requests in flight", "in_flight", s.inFlight(), "cause", context.Cause(ctx))
	case <-s.writeFail:
		s.log.Error("output failed: killing requests in flight", "err", s.writeErr)
	}
	stopReading()
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	s.killAll()
	s.cancelQueued()
	if !waitTimeout(&s.wg, cfg.ShutdownTimeout) {
		errs = append(errs, ErrShutdownTimeout)
	}
	close(s.stop)
	<-s.writerDone
	if s.writeErr != nil {
		errs = append(errs, fmt.Errorf("serve: write output: %w", s.writeErr))
	}
	return errors.Join(errs...)
}

type server struct {
	rt    *agentexec.Runtime
	cfg   Config
	log   *slog.Logger
	start time.Time

	killCtx context.Context // parent of every request's context
	killAll context.CancelFunc

	mu       sync.Mutex
	calls    map[string]*call // in flight, by id
	waiting  []*call          // queued for a slot, oldest first
	nrunning int              // calls holding a slot
	closing  bool
	backends map[string]uint64
	wg       sync.WaitGroup // one per call

	admit chan struct{} // tokens of requests in flight (queued + running)

	out        chan []byte // whole lines, "\n" included
	stop       chan struct{}
	writerDone chan struct{}
	writeFail  chan struct{}
	writeErr   error // set before writeFail is closed

	requests, results, errLines atomic.Uint64
	running, queued             atomic.Int64
}

type call struct {
	id       string
	line     int64
	msg      *Message
	ctx      context.Context
	cancel   context.CancelFunc
	canceled atomic.Bool // by a cancel message or shutdown
	queued   bool        // in s.waiting; guarded by s.mu
}

func (s *server) inFlight() int64 { return s.running.Load() + s.queued.Load() }

// drain waits for the requests in flight after the input ended, up to DrainTimeout.
func (s *server) drain(ctx context.Context) {
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }() // no call is added after the input ended
	if s.cfg.DrainTimeout < 0 {
		return
	}
	t := time.NewTimer(s.cfg.DrainTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		s.log.Warn("drain timeout: killing requests in flight", "timeout", s.cfg.DrainTimeout, "in_flight", s.inFlight())
	case <-ctx.Done():
		s.log.Info("stopping during drain: killing requests in flight", "in_flight", s.inFlight())
	case <-s.writeFail:
	}
}

func waitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// writeLoop is the only writer of out: every line is written whole, in the order
// emitted. It flushes whenever no more lines are waiting.
func (s *server) writeLoop(out io.Writer) {
	defer close(s.writerDone)
	var buf bytes.Buffer
	failed := false
	write := func(b []byte) {
		if failed {
			return
		}
		buf.Write(b)
		if buf.Len() >= 64<<10 {
			flush(out, &buf, &failed, s)
		}
	}
	for {
		select {
		case b := <-s.out:
			write(b)
			for more := true; more; {
				select {
				case b := <-s.out:
					write(b)
				default:
					more = false
				}
			}
			flush(out, &buf, &failed, s)
		case <-s.stop:
			for {
				select {
				case b := <-s.out:
					write(b)
				default:
					flush(out, &buf, &failed, s)
					return
				}
			}
		}
	}
}

func flush(out io.Writer, buf *bytes.Buffer, failed *bool, s *server) {
	if *failed || buf.Len() == 0 {
		buf.Reset()
		return
	}
	_, err := out.Write(buf.Bytes())
	buf.Reset()
	if err != nil {
		*failed = true
		s.writeErr = err
		close(s.writeFail)
	}
}

// emit queues one output line. After the writer has stopped it drops the line.
func (s *server) emit(v any) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		s.log.Error("BUG: encode output line", "err", err)
		return
	}
	select {
	case s.out <- b.Bytes():
	case <-s.writerDone:
	}
}

func (s *server) emitError(line int64, pe *ProtocolError) {
	s.errLines.Add(1)
	s.log.Debug("input line refused", "line", line, "id", pe.ID, "code", pe.Code, "error", pe.Msg)
	s.emit(&ErrorLine{Type: TypeError, Line: line, ID: pe.ID, Code: pe.Code, Error: pe.Msg})
}

// readLoop reads and dispatches input lines until EOF, a read error, or ctx is done.
func (s *server) readLoop(ctx context.Context, in io.Reader) error {
	lr := newLineReader(in, s.cfg.MaxLineBytes)
	for {
		line, num, size, err := lr.next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("serve: read input line %d: %w", num+1, err)
		}
		if ctx.Err() != nil {
			return nil //nolint:nilerr // canceled: a normal end of serving, not the read error
		}
		if size > int64(s.cfg.MaxLineBytes) {
			s.emitError(num, &ProtocolError{Code: CodeLineTooLong, Msg: fmt.Sprintf("line of %d bytes is over the limit of %d bytes; skipped", size, s.cfg.MaxLineBytes)})
			continue
		}
		m, perr := DecodeMessage(line)
		if perr != nil {
			s.emitError(num, perr)
			continue
		}
		switch m.Type {
		case TypeRun:
			s.accept(ctx, num, m)
		case TypeCancel:
			s.cancel(num, m.ID)
		case TypePing:
			s.emit(&Pong{Type: TypePong, ID: m.ID, Version: s.cfg.Version})
		case TypeStats:
			s.emit(s.stats(m.ID))
		case TypePolicy:
			s.emit(&PolicyLine{Type: TypePolicy, ID: m.ID, Report: agentexec.CheckHost(s.rt.Policy(), s.rt.Host())})
		}
	}
}

// accept registers a run request and starts it, or queues it while MaxInflight
// requests run. It waits first (and so pauses the input) while
// MaxInflight+MaxQueued requests are in flight.
func (s *server) accept(ctx context.Context, num int64, m *Message) {
	select {
	case s.admit <- struct{}{}:
	case <-ctx.Done():
		return
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		<-s.admit
		s.emitError(num, &ProtocolError{Code: CodeShuttingDown, ID: m.ID, Msg: "the server is shutting down"})
		return
	}
	if old, dup := s.calls[m.ID]; dup {
		s.mu.Unlock()
		<-s.admit
		s.emitError(num, &ProtocolError{Code: CodeDuplicateID, ID: m.ID, Msg: fmt.Sprintf("id %q is in flight (the request of line %d)", m.ID, old.line)})
		return
	}
	c := &call{id: m.ID, line: num, msg: m}
	c.ctx, c.cancel = context.WithCancel(s.killCtx)
	s.calls[m.ID] = c
	s.wg.Add(1)
	s.requests.Add(1)
	if s.nrunning < s.cfg.MaxInflight {
		s.nrunning++
		s.running.Add(1)
		go s.execute(c)
	} else {
		c.queued = true
		s.waiting = append(s.waiting, c)
		s.queued.Add(1)
	}
	s.mu.Unlock()
}

// cancel kills the request in flight with the given id.
func (s *server) cancel(num int64, id string) {
	s.mu.Lock()
	c := s.calls[id]
	var unqueued bool
	if c != nil {
		c.canceled.Store(true)
		unqueued = s.unqueue(c)
	}
	s.mu.Unlock()
	if c == nil {
		s.emitError(num, &ProtocolError{Code: CodeUnknownID, ID: id, Msg: fmt.Sprintf("cancel: no request with id %q in flight", id)})
		return
	}
	s.log.Debug("cancel", "id", id, "line", num, "queued", unqueued)
	if unqueued {
		s.finish(c, agentexec.Result{Tool: c.msg.Tool}, errCanceledBeforeLaunch)
		s.wg.Done()
		return
	}
	c.cancel()
}

var errCanceledBeforeLaunch = errors.New("canceled before launch")

// unqueue removes c from the waiting queue; it reports whether c was there.
// s.mu is held.
func (s *server) unqueue(c *call) bool {
	if !c.queued {
		return false
	}
	for i, w := range s.waiting {
		if w == c {
			s.waiting = append(s.waiting[:i], s.waiting[i+1:]...)
			c.queued = false
			s.queued.Add(-1)
			return true
		}
	}
	return false
}

// cancelQueued answers every queued request as canceled (at shutdown).
func (s *server) cancelQueued() {
	s.mu.Lock()
	q := s.waiting
	s.waiting = nil
	for _, c := range q {
		c.queued = false
		c.canceled.Store(true)
		s.queued.Add(-1)
	}
	s.mu.Unlock()
	for _, c := range q {
		s.finish(c, agentexec.Result{Tool: c.msg.Tool}, errCanceledBeforeLaunch)
		s.wg.Done()
	}
}

// execute runs c in one of the MaxInflight slots, then hands the slot to the
// oldest queued request.
func (s *server) execute(c *call) {
	for c != nil {
		var res agentexec.Result
		var err error
		if c.msg.Stream {
			res, err = s.stream(c)
		} else {
			res, err = s.rt.Run(c.ctx, c.msg.Request())
		}
		if s.killCtx.Err() != nil && (res.Canceled || errors.Is(err, context.Canceled)) {
			c.canceled.Store(true) // killed by the shutdown
		}
		s.finish(c, res, err)
		s.mu.Lock()
		c = nil
		if len(s.waiting) > 0 {
			c = s.waiting[0]
			s.waiting = s.waiting[1:]
			c.queued = false
			s.queued.Add(-1)
		} else {
			s.nrunning--
			s.running.Add(-1)
		}
		s.mu.Unlock()
		s.wg.Done() // after the hand-over: a drain never sees a queued call without a runner
	}
}

// finish frees the request's id, then writes its result.
func (s *server) finish(c *call, res agentexec.Result, err error) {
	rj := agentexec.NewResultJSON(c.id, res, err)
	if c.canceled.Load() {
		// A canceled request is "killed" whatever the child made of its SIGTERM, and
		// also when it was canceled before it launched.
		rj.Canceled = true
		switch {
		case rj.Status == agentexec.StatusOK:
			rj.Status = agentexec.StatusKilled
		case rj.Status == agentexec.StatusError && (errors.Is(err, context.Canceled) || errors.Is(err, errCanceledBeforeLaunch)):
			rj.Status = agentexec.StatusKilled
			rj.Error = errCanceledBeforeLaunch.Error()
		}
	}
	c.cancel()
	s.mu.Lock()
	delete(s.calls, c.id)
	if rj.Backend != "" {
		s.backends[rj.Backend]++
	}
	s.mu.Unlock()
	s.results.Add(1)
	// The result line is queued before the slot is given back, so that a line read
	// once the slot is free (a ping behind a full queue) is answered after it.
	s.emit(rj)
	<-s.admit
}

// stream runs a request with its output sent as chunk lines while it runs.
func (s *server) stream(c *call) (agentexec.Result, error) {
	p, err := s.rt.Start(c.ctx, c.msg.Request())
	if err != nil {
		return agentexec.Result{Tool: c.msg.Tool}, err
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.pump(c.id, TypeStdout, p.Stdout()) }()
	go func() { defer wg.Done(); s.pump(c.id, TypeStderr, p.Stderr()) }()
	wg.Wait()
	return p.Wait()
}

// pump sends r's data as chunk lines until EOF. A UTF-8 sequence split between two
// reads is held back and sent with the next chunk, so that text stays text.
func (s *server) pump(id, typ string, r io.Reader) {
	buf := make([]byte, 32<<10)
	held := 0
	for {
		n, err := r.Read(buf[held:])
		n += held
		held = 0
		if n > 0 {
			send := buf[:n]
			if err == nil {
				if k := partialRune(send); k > 0 && utf8.Valid(send[:n-k]) {
					send, held = send[:n-k], k
				}
			}
			if len(send) > 0 {
				ch := &Chunk{Type: typ, ID: id}
				ch.Data, ch.Encoding = agentexec.EncodeOutput(send)
				s.emit(ch)
			}
			copy(buf, buf[n-held:n])
		}
		if err != nil {
			return
		}
	}
}

// partialRune returns the length of an incomplete UTF-8 sequence at the end of b.
func partialRune(b []byte) int {
	for i := 1; i <= utf8.UTFMax-1 && i <= len(b); i++ {
		c := b[len(b)-i]
		if c < 0x80 {
			return 0
		}
		if utf8.RuneStart(c) {
			if utf8.FullRune(b[len(b)-i:]) {
				return 0
			}
			return i
		}
	}
	return 0
}

func (s *server) stats(id string) *StatsLine {
	rs := s.rt.Stats()
	st := &StatsLine{
		Type: TypeStats, ID: id,
		Requests: s.requests.Load(), Results: s.results.Load(), Errors: s.errLines.Load(),
		Running: s.running.Load(), Queued: s.queued.Load(), MaxInflight: s.cfg.MaxInflight,
		UptimeMS: time.Since(s.start).Milliseconds(),
		Launches: rs.Launches, LaunchFailures: rs.Failures, Denied: rs.Denied, LaunchesInFlight: rs.InFlight,
		TemplateHits: rs.TemplateHits, TemplatesCreated: rs.TemplatesCreated,
		TemplateRecreations: rs.TemplateRecreations, SpawnerRestarts: rs.SpawnerRestarts,
		Backends: map[string]uint64{},
	}
	st.InFlight = st.Running + st.Queued
	s.mu.Lock()
	for k, v := range s.backends {
		st.Backends[k] = v
	}
	s.mu.Unlock()
	return st
}
