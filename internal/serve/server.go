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
		calls:    map[string]*call{},
		admit:    make(chan struct{}, cfg.MaxInflight+cfg.MaxQueued),
		out:      newLineWriter(out),
		stopping: make(chan struct{}),
		spare:    make(chan *lineReader),
		quit:     make(chan struct{}),
		backends: map[string]uint64{},
		statuses: map[string]uint64{},
	}
	s.killCtx, s.killAll = context.WithCancel(context.WithoutCancel(ctx))
	defer s.killAll()
	defer close(s.quit)
	stopWriter := make(chan struct{})
	go s.out.run(stopWriter)

	src := startInput(in)
	readDone := make(chan error, 1)
	go s.read(ctx, newLineReader(src, s.cfg.MaxLineBytes), readDone)

	var errs []error
	readEnded := false
	select {
	case err := <-readDone:
		readEnded = true
		if err != nil {
			errs = append(errs, err)
		}
		s.log.Info("input ended; draining requests in flight", "in_flight", s.inFlight())
		s.drain(ctx)
	case <-ctx.Done():
		s.log.Info("stopping: killing requests in flight", "in_flight", s.inFlight(), "cause", context.Cause(ctx))
	case <-s.out.failed():
		s.log.Error("output failed: killing requests in flight", "err", s.out.failure())
	}
	// From here on every line read is answered with shutting_down (readLoop), until
	// the results of the requests in flight are written; then the lines already
	// received are answered too, and reading stops.
	s.beginStop()
	s.killAll()
	s.cancelQueued()
	if !WaitTimeout(&s.wg, cfg.ShutdownTimeout) {
		errs = append(errs, ErrShutdownTimeout)
	}
	src.stop()
	if !readEnded {
		select {
		case err := <-readDone:
			if err != nil {
				errs = append(errs, err)
			}
		case <-time.After(cfg.ShutdownTimeout):
			errs = append(errs, fmt.Errorf("serve: the input reader did not stop within %v", cfg.ShutdownTimeout))
		}
	}
	close(stopWriter)
	<-s.out.done
	if err := s.out.failure(); err != nil {
		errs = append(errs, fmt.Errorf("serve: write output: %w", err))
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

	// mu guards the calls and every counter of stats, so that one stats line is one
	// consistent snapshot: requests = results + in_flight, in_flight = running +
	// queued, lines = requests + errors + controls.
	mu       sync.Mutex
	calls    map[string]*call // in flight, by id
	waiting  []*call          // queued for a slot, oldest first
	nrunning int              // calls holding a slot
	closing  bool             // the server began to stop (stopping is closed)
	backends map[string]uint64
	statuses map[string]uint64
	requests uint64         // run requests accepted
	results  uint64         // result lines
	errLines uint64         // error lines
	lines    uint64         // input lines read
	controls uint64         // ping, stats, policy answered; cancels applied
	wg       sync.WaitGroup // one per call

	admit chan struct{} // tokens of requests in flight (queued + running)

	out      *lineWriter
	stopping chan struct{} // closed by beginStop

	spare  chan *lineReader // to a parked runner: read on from here (read)
	nspare atomic.Int32     // runners parked
	quit   chan struct{}    // closed when Serve returns: parked runners end
}

type call struct {
	id       string
	line     int64
	msg      *Message
	ctx      context.Context
	cancel   context.CancelFunc
	canceled atomic.Bool // by a cancel message or shutdown
	queued   bool        // in s.waiting; guarded by s.mu
	// accepted is when the request was accepted, started when it got a slot: the
	// server's part of the request's queue time (queue_ms).
	accepted, started time.Time
}

// serverQueue is the time c waited for one of the MaxInflight slots (so far, when
// it never got one).
func (c *call) serverQueue() time.Duration {
	if c.started.IsZero() {
		return time.Since(c.accepted)
	}
	return c.started.Sub(c.accepted)
}

func (s *server) inFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nrunning + len(s.waiting)
}

// beginStop marks the server as stopping: no run request is accepted any more.
func (s *server) beginStop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closing {
		s.closing = true
		close(s.stopping)
	}
}

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
	case <-s.out.failed():
	}
}

// WaitTimeout waits for wg up to d and reports whether it finished; the fleet
// worker drains with it too (internal/fleet).
func WaitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
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

// emit writes one output line, or queues it while the output is busy (lineWriter);
// direct is false on the input reader's goroutine, which must not wait for the
// output. After the writer has stopped it drops the line.
func (s *server) emit(v any, direct bool) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		s.log.Error("BUG: encode output line", "err", err)
		return
	}
	s.out.emit(b.Bytes(), direct)
}

func (s *server) emitError(line int64, pe *ProtocolError) {
	s.mu.Lock()
	s.errLines++
	s.mu.Unlock()
	s.log.Debug("input line refused", "line", line, "id", pe.ID, "code", pe.Code, "error", pe.Msg)
	s.emit(&ErrorLine{Type: TypeError, Line: line, ID: pe.ID, Code: pe.Code, Error: pe.Msg}, false)
}

// control counts an answered control message (or an applied cancel) and emits its
// reply, if any.
func (s *server) control(reply any) {
	s.mu.Lock()
	s.controls++
	s.mu.Unlock()
	if reply != nil {
		s.emit(reply, false)
	}
}

// shuttingDown answers a line read after the server began to stop.
func (s *server) shuttingDown(num int64, line []byte) {
	var id string
	if m, perr := DecodeMessage(line); perr == nil {
		id = m.ID
	} else {
		id = perr.ID
	}
	s.emitError(num, &ProtocolError{Code: CodeShuttingDown, ID: id, Msg: "the server is shutting down; the line was not acted on"})
}

// read is the input reader: it reads lines (readLoop) until the input ends, then
// sends readLoop's error to done. A run request that gets a slot at once is run
// on the reader's own goroutine, with no hand-off to another one before its launch:
// the reader hands the input over to a successor, which goes on reading from where
// it stopped, and becomes the request's runner (execute). There is one reader at a
// time, and lines are read in order: a request is accepted (its id is in flight, a
// cancel finds it) before the next line is read.
//
// The successor is a goroutine parked by an earlier runner when there is one (a
// spare, up to maxSpares): its stack has grown already; a new goroutine's would
// grow from 2 KiB again in the decoding of its next line, a few copies that cost
// tens of µs a request on a busy host (docs/performance.md, "serve overhead").
func (s *server) read(ctx context.Context, lr *lineReader, done chan<- error) {
	for {
		c, err := s.readLoop(ctx, lr)
		if c == nil {
			done <- err
			return
		}
		select {
		case s.spare <- lr:
		default:
			go s.read(ctx, lr, done)
		}
		s.execute(c)
		if s.nspare.Add(1) > maxSpares {
			s.nspare.Add(-1)
			return
		}
		select {
		case lr = <-s.spare:
			s.nspare.Add(-1)
		case <-s.quit:
			s.nspare.Add(-1)
			return
		}
	}
}

// maxSpares bounds the runners parked to read next (read).
const maxSpares = 4

// readLoop reads and dispatches input lines until the input ends, a read fails, the
// input is stopped (src.stop, at the end of a shutdown), or a run request got a
// slot: then it returns that request, for its goroutine to run (read). Every line it
// reads is answered by exactly one line: a result (run), pong, stats or policy, an
// error line, or, for a cancel that applies, the canceled request's result. Lines
// read after the server began to stop are answered with shutting_down.
func (s *server) readLoop(ctx context.Context, lr *lineReader) (*call, error) {
	for {
		line, num, size, err := lr.next()
		if errors.Is(err, io.EOF) || errors.Is(err, errInputStopped) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("serve: read input line %d: %w", num+1, err)
		}
		s.mu.Lock()
		s.lines++
		closing := s.closing
		s.mu.Unlock()
		if closing || ctx.Err() != nil {
			s.shuttingDown(num, line) // line is nil when too long: no id
			continue
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
			if c := s.accept(ctx, num, m); c != nil {
				return c, nil
			}
		case TypeCancel:
			s.cancel(num, m.ID)
		case TypePing:
			s.control(&Pong{Type: TypePong, ID: m.ID, Version: s.cfg.Version})
		case TypeStats:
			s.control(nil)
			s.emit(s.stats(m.ID), false)
		case TypePolicy:
			s.control(&PolicyLine{Type: TypePolicy, ID: m.ID, Report: agentexec.CheckHost(s.rt.Policy(), s.rt.Host())})
		}
	}
}

// accept registers a run request and returns it when it got one of the MaxInflight
// slots, for the caller to run (execute); it queues it while MaxInflight requests
// run, and returns nil then or when it refused it. It waits first (and so pauses the
// input) while MaxInflight+MaxQueued requests are in flight.
func (s *server) accept(ctx context.Context, num int64, m *Message) *call {
	refuse := func(pe *ProtocolError) { s.emitError(num, pe) }
	shutting := &ProtocolError{Code: CodeShuttingDown, ID: m.ID, Msg: "the server is shutting down; the request was not run"}
	select {
	case s.admit <- struct{}{}:
	case <-ctx.Done():
		refuse(shutting)
		return nil
	case <-s.stopping:
		refuse(shutting)
		return nil
	}
	s.mu.Lock()
	if s.closing || ctx.Err() != nil {
		s.mu.Unlock()
		<-s.admit
		refuse(shutting)
		return nil
	}
	if old, dup := s.calls[m.ID]; dup {
		s.mu.Unlock()
		<-s.admit
		refuse(&ProtocolError{Code: CodeDuplicateID, ID: m.ID, Msg: fmt.Sprintf("id %q is in flight (the request of line %d)", m.ID, old.line)})
		return nil
	}
	c := &call{id: m.ID, line: num, msg: m, accepted: time.Now()}
	c.ctx, c.cancel = context.WithCancel(s.killCtx)
	s.calls[m.ID] = c
	s.wg.Add(1)
	s.requests++
	if s.nrunning < s.cfg.MaxInflight {
		s.nrunning++
		c.started = c.accepted
		s.mu.Unlock()
		return c
	}
	c.queued = true
	s.waiting = append(s.waiting, c)
	s.mu.Unlock()
	return nil
}

// cancel kills the request in flight with the given id; a queued one is answered
// at once.
func (s *server) cancel(num int64, id string) {
	s.mu.Lock()
	c := s.calls[id]
	if c == nil {
		s.mu.Unlock()
		s.emitError(num, &ProtocolError{Code: CodeUnknownID, ID: id, Msg: fmt.Sprintf("cancel: no request with id %q in flight", id)})
		return
	}
	c.canceled.Store(true)
	s.controls++
	var rj *agentexec.ResultJSON
	if c.queued {
		s.unqueue(c)
		rj = s.resultLine(c, agentexec.Result{Tool: c.msg.Tool}, errCanceledBeforeLaunch)
		s.account(c, rj)
	}
	s.mu.Unlock()
	s.log.Debug("cancel", "id", id, "line", num, "queued", rj != nil)
	if rj != nil {
		s.writeResult(c, rj, false)
		s.wg.Done()
		return
	}
	c.cancel()
}

var errCanceledBeforeLaunch = errors.New("canceled before launch")

// unqueue removes c from the waiting queue. s.mu is held.
func (s *server) unqueue(c *call) {
	for i, w := range s.waiting {
		if w == c {
			s.waiting = append(s.waiting[:i], s.waiting[i+1:]...)
			break
		}
	}
	c.queued = false
}

// cancelQueued answers every queued request as canceled (at shutdown).
func (s *server) cancelQueued() {
	s.mu.Lock()
	q := s.waiting
	s.waiting = nil
	rjs := make([]*agentexec.ResultJSON, len(q))
	for i, c := range q {
		c.queued = false
		c.canceled.Store(true)
		rjs[i] = s.resultLine(c, agentexec.Result{Tool: c.msg.Tool}, errCanceledBeforeLaunch)
		s.account(c, rjs[i])
	}
	s.mu.Unlock()
	for i, c := range q {
		s.writeResult(c, rjs[i], false)
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
		rj := s.resultLine(c, res, err)
		done := c
		s.mu.Lock()
		s.account(done, rj)
		// The slot goes to the oldest queued request, before the result is written:
		// a stats line that follows the result counts neither as in flight.
		c = nil
		if len(s.waiting) > 0 {
			c = s.waiting[0]
			s.waiting = s.waiting[1:]
			c.queued = false
			c.started = time.Now()
		} else {
			s.nrunning--
		}
		s.mu.Unlock()
		s.writeResult(done, rj, true)
		s.wg.Done() // after the hand-over: a drain never sees a queued call without a runner
	}
}

// resultLine is the result line of c: the runtime's result, as the protocol writes
// it (docs/protocol.md, "Results").
func (s *server) resultLine(c *call, res agentexec.Result, err error) *agentexec.ResultJSON {
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
	boundResult(rj)
	return rj
}

// account counts c's result and frees its id. s.mu is held; the caller writes the
// result line after it lets go of s.mu.
func (s *server) account(c *call, rj *agentexec.ResultJSON) {
	delete(s.calls, c.id)
	s.results++
	s.statuses[rj.Status]++
	if rj.Backend != "" {
		s.backends[rj.Backend]++
	}
}

// writeResult writes c's result line, accounted for, and frees its admission token.
func (s *server) writeResult(c *call, rj *agentexec.ResultJSON, direct bool) {
	c.cancel()
	s.log.Debug("result", "id", c.id, "status", rj.Status, "server_queue", c.serverQueue())
	// The result line is queued before the token is given back, so that a line read
	// once the token is free (a ping behind a full queue) is answered after it.
	s.emit(rj, direct)
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
				ch.Data, ch.Encoding = encodeOutput(send)
				s.emit(ch, true)
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
		Type: TypeStats, ID: id, MaxInflight: s.cfg.MaxInflight,
		UptimeMS: time.Since(s.start).Milliseconds(),
		Launches: rs.Launches, LaunchFailures: rs.Failures, Denied: rs.Denied, LaunchesInFlight: rs.InFlight,
		LaunchesQueued: rs.Queued, EgressAllowed: rs.EgressAllowed, EgressDenied: rs.EgressDenied,
		TemplateHits: rs.TemplateHits, TemplatesCreated: rs.TemplatesCreated,
		TemplateRecreations: rs.TemplateRecreations, SpawnerRestarts: rs.SpawnerRestarts,
		Backends: map[string]uint64{}, Statuses: map[string]uint64{},
	}
	s.mu.Lock()
	st.Requests, st.Results, st.Errors = s.requests, s.results, s.errLines
	st.Lines, st.Controls = s.lines, s.controls
	st.Running, st.Queued = int64(s.nrunning), int64(len(s.waiting))
	for k, v := range s.backends {
		st.Backends[k] = v
	}
	for k, v := range s.statuses {
		st.Statuses[k] = v
	}
	s.mu.Unlock()
	st.InFlight = st.Running + st.Queued
	return st
}
