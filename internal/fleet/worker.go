package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/agentexec/agentexec"
	"github.com/agentexec/agentexec/internal/serve"
)

// WorkerConfig tunes a worker. Zero fields take the defaults.
type WorkerConfig struct {
	// Service names the micro service and prefixes every subject (default
	// "agentexec"); Pool names the pool (default "default").
	Service, Pool string
	// MaxInflight bounds the run requests launched at once (default: the policy's
	// concurrency, summed over its profiles). MaxQueued bounds the accepted ones
	// waiting for a slot (default: MaxInflight); while MaxInflight+MaxQueued are in
	// flight the worker reads no further message of that subject (backpressure).
	MaxInflight, MaxQueued int
	// MaxLineBytes is the largest request accepted (default: the connection's max
	// payload).
	MaxLineBytes int
	// DrainTimeout bounds how long requests in flight may run once the worker
	// stops (default serve.DefaultDrainTimeout); then they are killed.
	DrainTimeout time.Duration
	// Logger receives diagnostics (default: discarded); Version is reported by pong
	// and the service's info.
	Logger  *slog.Logger
	Version string
	// Jobs, when set, makes the worker take durable CI jobs of its pool (jobs.go).
	Jobs *JobsConfig
}

// semverRE is what the micro service accepts as a version.
var semverRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)
})

// forever is the per-request server's drain timeout: a request's own timeout (the
// policy's) bounds it, and the worker's DrainTimeout bounds the worker's stop.
const forever = time.Duration(1 << 62)

// Worker serves the protocol on a pool's subject and its own (doc.go).
type Worker struct {
	nc  *nats.Conn
	rt  *agentexec.Runtime
	cfg WorkerConfig
	log *slog.Logger
	svc micro.Service
	id  string
	t0  time.Time

	runCtx  context.Context // parent of every request's context
	killAll context.CancelFunc
	admit   chan struct{} // one token per request in flight (queued + running)
	slots   chan struct{} // one token per running request
	stopCh  chan struct{} // closed when the worker begins to stop
	wg      sync.WaitGroup

	// dropForTest, when set, is asked before each publish whether to lose the
	// message (tests of a lost answer); forgetForTest keeps finals from recent.
	dropForTest   atomic.Pointer[func(*nats.Msg) bool]
	forgetForTest atomic.Bool

	mu                                              sync.Mutex
	calls                                           map[string]*call
	recent                                          recentFinals
	stopping                                        bool
	requests, results, errLines, messages, controls uint64
	running, queued                                 int64
	statuses, backends                              map[string]uint64
}

type call struct {
	id, reply, tool string
	ctx             context.Context
	cancel          context.CancelFunc
	canceled        atomic.Bool
}

// NewWorker registers a worker for rt on nc: a micro service named cfg.Service
// with the pool's endpoint (queue group) and the worker's own. It serves until Run
// returns. The caller closes rt and nc after Run.
func NewWorker(nc *nats.Conn, rt *agentexec.Runtime, cfg WorkerConfig) (*Worker, error) {
	if cfg.Service == "" {
		cfg.Service = DefaultService
	}
	if cfg.Pool == "" {
		cfg.Pool = DefaultPool
	}
	if err := errors.Join(checkName("service", cfg.Service), checkName("pool", cfg.Pool)); err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	if cfg.MaxInflight <= 0 {
		for _, p := range rt.Policy().Profiles {
			cfg.MaxInflight += p.Concurrency
		}
		if cfg.MaxInflight <= 0 {
			cfg.MaxInflight = serve.DefaultMaxInflight
		}
	}
	if cfg.MaxQueued <= 0 {
		cfg.MaxQueued = cfg.MaxInflight
	}
	if max := int(nc.MaxPayload()); cfg.MaxLineBytes <= 0 || cfg.MaxLineBytes > max {
		cfg.MaxLineBytes = max
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = serve.DefaultDrainTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	w := &Worker{
		nc: nc, rt: rt, cfg: cfg, log: cfg.Logger, t0: time.Now(),
		admit:  make(chan struct{}, cfg.MaxInflight+cfg.MaxQueued),
		slots:  make(chan struct{}, cfg.MaxInflight),
		stopCh: make(chan struct{}),
		calls:  map[string]*call{}, statuses: map[string]uint64{}, backends: map[string]uint64{},
	}
	w.runCtx, w.killAll = context.WithCancel(context.Background())
	host, _ := os.Hostname()
	version := cfg.Version
	if !semverRE().MatchString(version) {
		version = "0.0.0"
	}
	svc, err := micro.AddService(nc, micro.Config{
		Name: cfg.Service, Version: version,
		Description:  "agentexec worker: the serve protocol (docs/protocol.md) over NATS (docs/fleet.md)",
		Metadata:     map[string]string{"pool": cfg.Pool, "host": host},
		QueueGroup:   QueueGroup(cfg.Service, cfg.Pool),
		StatsHandler: func(*micro.Endpoint) any { return w.stats("") },
	})
	if err != nil {
		w.killAll()
		return nil, fmt.Errorf("fleet: register the micro service: %w", err)
	}
	w.svc = svc
	w.id = svc.Info().ID
	h := micro.HandlerFunc(w.handle)
	if err := svc.AddEndpoint("pool", h, micro.WithEndpointSubject(PoolSubject(cfg.Service, cfg.Pool))); err != nil {
		return nil, w.fail(fmt.Errorf("fleet: pool endpoint: %w", err))
	}
	if err := svc.AddEndpoint("worker", h, micro.WithEndpointSubject(WorkerSubject(cfg.Service, w.id)), micro.WithEndpointQueueGroupDisabled()); err != nil {
		return nil, w.fail(fmt.Errorf("fleet: worker endpoint: %w", err))
	}
	// The subscriptions are in place at the server once the flush returns: from
	// then on the pool's requests may come here.
	if err := nc.Flush(); err != nil {
		return nil, w.fail(fmt.Errorf("fleet: flush subscriptions: %w", err))
	}
	return w, nil
}

func (w *Worker) fail(err error) error {
	w.killAll()
	if serr := w.svc.Stop(); serr != nil {
		err = errors.Join(err, serr)
	}
	return err
}

// ID is the worker's id: its subject is WorkerSubject(service, ID).
func (w *Worker) ID() string { return w.id }

// Run serves until ctx is done (and runs the pool's CI jobs when configured),
// then stops: new messages are refused with shutting_down, requests in flight get
// DrainTimeout to finish and are then killed (their results still sent), and
// buffered messages are flushed.
func (w *Worker) Run(ctx context.Context) error {
	var jobsDone chan error
	jobCtx, stopJobs := context.WithCancel(context.Background())
	defer stopJobs()
	if w.cfg.Jobs != nil {
		jr, err := newJobRunner(ctx, w)
		if err != nil {
			return errors.Join(err, w.shutdown())
		}
		jobsDone = make(chan error, 1)
		go func() { jobsDone <- jr.loop(jobCtx) }()
	}
	w.log.Info("worker ready", "worker", w.id, "pool", PoolSubject(w.cfg.Service, w.cfg.Pool),
		"subject", WorkerSubject(w.cfg.Service, w.id), "max_inflight", w.cfg.MaxInflight, "jobs", w.cfg.Jobs != nil)
	var errs []error
	select {
	case <-ctx.Done():
	case err := <-jobsDone:
		jobsDone = nil
		if err != nil {
			errs = append(errs, err)
		}
	}
	stopJobs()
	if jobsDone != nil {
		if err := <-jobsDone; err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, w.shutdown())
	return errors.Join(errs...)
}

func (w *Worker) shutdown() error {
	w.mu.Lock()
	if !w.stopping {
		w.stopping = true
		close(w.stopCh)
	}
	w.mu.Unlock()
	var errs []error
	if err := w.svc.Stop(); err != nil {
		errs = append(errs, fmt.Errorf("fleet: stop the micro service: %w", err))
	}
	if !serve.WaitTimeout(&w.wg, w.cfg.DrainTimeout) {
		w.log.Warn("drain timeout: killing requests in flight", "timeout", w.cfg.DrainTimeout)
	}
	w.killAll()
	if !serve.WaitTimeout(&w.wg, serve.DefaultShutdownTimeout) {
		errs = append(errs, serve.ErrShutdownTimeout)
	}
	if err := w.nc.Flush(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		errs = append(errs, fmt.Errorf("fleet: flush: %w", err))
	}
	return errors.Join(errs...)
}

// handle answers one message of either endpoint. It blocks (and so pauses its
// subscription) while MaxInflight+MaxQueued requests are in flight.
func (w *Worker) handle(r micro.Request) {
	data, reply := r.Data(), r.Reply()
	w.mu.Lock()
	w.messages++
	w.mu.Unlock()
	if len(data) > w.cfg.MaxLineBytes {
		w.replyError(reply, &serve.ProtocolError{Code: serve.CodeLineTooLong,
			Msg: fmt.Sprintf("line of %d bytes is over the limit of %d bytes; skipped", len(data), w.cfg.MaxLineBytes)})
		return
	}
	m, perr := serve.DecodeMessage(data)
	if perr != nil {
		w.replyError(reply, perr)
		return
	}
	if m.Type == serve.TypeCancel {
		w.cancel(reply, m.ID)
		return
	}
	if reply == "" {
		w.mu.Lock()
		w.errLines++
		w.mu.Unlock()
		w.log.Warn("message without a reply subject dropped", "subject", r.Subject(), "type", m.Type, "id", m.ID)
		return
	}
	switch m.Type {
	case serve.TypeRun:
		w.accept(r, m, data)
	case serve.TypePing:
		var hdr nats.Header
		if inbox := r.Headers().Get(HeaderInflight); inbox != "" {
			hdr = nats.Header{HeaderRequest: []string{w.requestState(inbox)}}
		}
		w.controlMsg(&nats.Msg{Subject: reply, Header: hdr, Data: mustJSON(&serve.Pong{Type: serve.TypePong, ID: m.ID, Version: w.cfg.Version})})
	case serve.TypeStats:
		w.control(reply, w.stats(m.ID))
	case serve.TypePolicy:
		w.control(reply, &serve.PolicyLine{Type: serve.TypePolicy, ID: m.ID, Report: agentexec.CheckHost(w.rt.Policy(), w.rt.Host())})
	default:
		// DecodeMessage accepted a type this worker does not know (a newer protocol).
		w.replyError(reply, &serve.ProtocolError{Code: serve.CodeUnknownType, ID: m.ID, Msg: fmt.Sprintf("field \"type\": message type %q is not served over NATS", m.Type)})
	}
}

// requestState says what the worker knows of the request whose reply subject is
// inbox, and sends its final line again when it was already sent.
func (w *Worker) requestState(inbox string) string {
	w.mu.Lock()
	for _, c := range w.calls {
		if c.reply == inbox {
			w.mu.Unlock()
			return RequestRunning
		}
	}
	final, ok := w.recent.get(inbox)
	w.mu.Unlock()
	if !ok {
		return RequestUnknown
	}
	w.publish(&nats.Msg{Subject: inbox, Data: final, Header: nats.Header{HeaderResent: []string{"1"}}})
	return RequestDone
}

func (w *Worker) control(reply string, v any) {
	w.controlMsg(&nats.Msg{Subject: reply, Data: mustJSON(v)})
}

// controlMsg counts and sends the answer to a control message.
func (w *Worker) controlMsg(m *nats.Msg) {
	w.mu.Lock()
	w.controls++
	w.mu.Unlock()
	w.publish(m)
}

// replyError answers a message that was not acted on with serve's error line (line
// 1: a message is an input of one line).
func (w *Worker) replyError(reply string, pe *serve.ProtocolError) {
	w.mu.Lock()
	w.errLines++
	w.mu.Unlock()
	w.log.Debug("message refused", "id", pe.ID, "code", pe.Code, "error", pe.Msg)
	w.publishJSON(reply, &serve.ErrorLine{Type: serve.TypeError, Line: 1, ID: pe.ID, Code: pe.Code, Error: pe.Msg})
}

// accept registers a run request and starts it; it waits first while
// MaxInflight+MaxQueued requests are in flight.
func (w *Worker) accept(r micro.Request, m *serve.Message, data []byte) {
	reply := r.Reply()
	shutting := &serve.ProtocolError{Code: serve.CodeShuttingDown, ID: m.ID, Msg: "the worker is shutting down; the request was not run"}
	select {
	case w.admit <- struct{}{}:
	case <-w.stopCh:
		w.replyError(reply, shutting)
		return
	}
	w.mu.Lock()
	if w.stopping {
		w.mu.Unlock()
		<-w.admit
		w.replyError(reply, shutting)
		return
	}
	if _, dup := w.calls[m.ID]; dup {
		w.mu.Unlock()
		<-w.admit
		w.replyError(reply, &serve.ProtocolError{Code: serve.CodeDuplicateID, ID: m.ID, Msg: fmt.Sprintf("id %q is in flight on worker %s", m.ID, w.id)})
		return
	}
	c := &call{id: m.ID, reply: reply, tool: m.Tool}
	c.ctx, c.cancel = context.WithCancel(w.runCtx)
	w.calls[m.ID] = c
	w.requests++
	w.queued++
	w.wg.Add(1)
	w.mu.Unlock()
	if r.Headers().Get(HeaderAck) != "" {
		w.publish(&nats.Msg{Subject: reply, Header: nats.Header{HeaderEvent: []string{EventAccepted}}})
	}
	go w.execute(c, data)
}

var errCanceledBeforeLaunch = errors.New("canceled before launch")

// execute runs c through serve.Serve on an input of its one line, once a slot is
// free, and sends the lines it writes.
func (w *Worker) execute(c *call, data []byte) {
	defer w.wg.Done()
	defer func() { <-w.admit }()
	out := &lineWriter{w: w, c: c}
	gotSlot := false
	select {
	case w.slots <- struct{}{}:
		gotSlot = true
	case <-c.ctx.Done():
	}
	if !gotSlot {
		// Canceled (or killed by the stop) while queued: serve's answer for that.
		w.mu.Lock()
		w.queued--
		w.mu.Unlock()
		out.line(canceledLine(c))
		w.finish(c, out)
		return
	}
	w.mu.Lock()
	w.queued--
	w.running++
	w.mu.Unlock()
	in := bytes.NewReader(append(append(make([]byte, 0, len(data)+1), data...), '\n'))
	err := serve.Serve(c.ctx, w.rt, in, out, serve.Config{
		MaxInflight: 1, MaxLineBytes: w.cfg.MaxLineBytes, DrainTimeout: forever,
		Logger: w.log, Version: w.cfg.Version,
	})
	<-w.slots
	w.mu.Lock()
	w.running--
	w.mu.Unlock()
	if err != nil {
		w.log.Error("serve", "id", c.id, "err", err)
	}
	if !out.final {
		out.line(mustJSON(agentexec.NewResultJSON(c.id, agentexec.Result{Tool: c.tool}, fmt.Errorf("fleet: the request ended without a result: %w", err))))
	}
	w.finish(c, out)
}

// canceledLine is the result of a request canceled before it launched, as serve
// writes it.
func canceledLine(c *call) []byte {
	rj := agentexec.NewResultJSON(c.id, agentexec.Result{Tool: c.tool}, errCanceledBeforeLaunch)
	rj.Status, rj.Canceled = agentexec.StatusKilled, true
	return mustJSON(rj)
}

func (w *Worker) finish(c *call, out *lineWriter) {
	c.cancel()
	w.mu.Lock()
	delete(w.calls, c.id)
	if out.sent != nil && !w.forgetForTest.Load() {
		w.recent.add(c.reply, out.sent)
	}
	if out.isResult {
		w.results++
		w.statuses[out.status]++
		if out.backend != "" {
			w.backends[out.backend]++
		}
	} else {
		w.errLines++
	}
	w.mu.Unlock()
}

// cancel kills the request in flight with the given id.
func (w *Worker) cancel(reply, id string) {
	w.mu.Lock()
	c := w.calls[id]
	if c != nil {
		w.controls++
	}
	w.mu.Unlock()
	if c == nil {
		w.replyError(reply, &serve.ProtocolError{Code: serve.CodeUnknownID, ID: id, Msg: fmt.Sprintf("cancel: no request with id %q in flight on worker %s", id, w.id)})
		return
	}
	c.canceled.Store(true)
	c.cancel()
	if reply != "" {
		w.publish(&nats.Msg{Subject: reply, Header: nats.Header{HeaderEvent: []string{EventCancelApplied}}})
	}
}

// lineWriter is a request's serve output: it sends each line as one message.
type lineWriter struct {
	w       *Worker
	c       *call
	pending []byte
	// set by the final line (result or error); sent is that line as published
	final, isResult bool
	status, backend string
	sent            []byte
}

func (lw *lineWriter) Write(p []byte) (int, error) {
	lw.pending = append(lw.pending, p...)
	for {
		i := bytes.IndexByte(lw.pending, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := lw.pending[:i]
		lw.line(line)
		lw.pending = lw.pending[i+1:]
	}
}

// lineHead is what the worker reads of a line it sends.
type lineHead struct {
	Type    string `json:"type"`
	Code    string `json:"code"`
	Status  string `json:"status"`
	Backend string `json:"backend"`
}

func (lw *lineWriter) line(line []byte) {
	if len(line) == 0 || lw.final {
		return
	}
	var h lineHead
	if err := json.Unmarshal(line, &h); err != nil {
		lw.w.log.Error("BUG: serve wrote a line that is not JSON", "err", err)
		return
	}
	switch h.Type {
	case "result":
		lw.final, lw.isResult, lw.status, lw.backend = true, true, h.Status, h.Backend
	case serve.TypeError:
		if h.Code == serve.CodeShuttingDown && lw.c.ctx.Err() != nil {
			// Canceled in the instant between its slot and serve's read: the same
			// answer as a cancel while queued.
			lw.line(canceledLine(lw.c))
			return
		}
		lw.final = true
	}
	if max := int(lw.w.nc.MaxPayload()) - 1024; len(line) > max && lw.isResult {
		line = mustJSON(agentexec.NewResultJSON(lw.c.id, agentexec.Result{Tool: lw.c.tool},
			fmt.Errorf("fleet: the result line of %d bytes is over the NATS max payload of %d bytes; ask for less output (max_output_bytes)", len(line), lw.w.nc.MaxPayload())))
		lw.status, lw.backend = agentexec.StatusError, ""
	}
	data := bytes.Clone(line)
	if lw.final {
		lw.sent = data
	}
	lw.w.publish(&nats.Msg{Subject: lw.c.reply, Data: data})
}

// Bounds of the final lines a worker keeps to send again (recentFinals).
const (
	recentMaxLines = 4096
	recentMaxBytes = 16 << 20
)

// recentFinals keeps the final lines of the latest finished requests by reply
// subject, oldest evicted first past recentMaxLines or recentMaxBytes, so that a
// client whose answer was lost gets it again (HeaderInflight).
type recentFinals struct {
	byInbox map[string][]byte
	order   []string // insertion order, oldest first
	bytes   int
}

func (r *recentFinals) add(inbox string, final []byte) {
	if r.byInbox == nil {
		r.byInbox = map[string][]byte{}
	}
	if old, ok := r.byInbox[inbox]; ok {
		r.bytes -= len(old)
	} else {
		r.order = append(r.order, inbox)
	}
	r.byInbox[inbox] = final
	r.bytes += len(final)
	for len(r.byInbox) > recentMaxLines || r.bytes > recentMaxBytes {
		victim := r.order[0]
		r.order = r.order[1:] // append reallocates, dropping the evicted prefix
		r.bytes -= len(r.byInbox[victim])
		delete(r.byInbox, victim)
	}
}

func (r *recentFinals) get(inbox string) ([]byte, bool) {
	b, ok := r.byInbox[inbox]
	return b, ok
}

func mustJSON(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(fmt.Sprintf("BUG: encode %T: %v", v, err))
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

func (w *Worker) publishJSON(reply string, v any) {
	if reply == "" {
		return
	}
	w.publish(&nats.Msg{Subject: reply, Data: mustJSON(v)})
}

// publish sends m with the worker's header. While the connection is down, nats.go
// buffers it and sends it after the reconnect.
func (w *Worker) publish(m *nats.Msg) {
	if m.Header == nil {
		m.Header = nats.Header{}
	}
	m.Header.Set(HeaderWorker, w.id)
	if drop := w.dropForTest.Load(); drop != nil && (*drop)(m) {
		return
	}
	if err := w.nc.PublishMsg(m); err != nil {
		w.log.Error("publish", "subject", m.Subject, "err", err)
	}
}

// stats is the worker's stats line: serve's fields, counted over the worker.
func (w *Worker) stats(id string) *serve.StatsLine {
	rs := w.rt.Stats()
	st := &serve.StatsLine{
		Type: serve.TypeStats, ID: id, MaxInflight: w.cfg.MaxInflight,
		UptimeMS: time.Since(w.t0).Milliseconds(),
		Launches: rs.Launches, LaunchFailures: rs.Failures, Denied: rs.Denied, LaunchesInFlight: rs.InFlight,
		TemplateHits: rs.TemplateHits, TemplatesCreated: rs.TemplatesCreated,
		TemplateRecreations: rs.TemplateRecreations, SpawnerRestarts: rs.SpawnerRestarts,
		Backends: map[string]uint64{}, Statuses: map[string]uint64{},
	}
	w.mu.Lock()
	st.Requests, st.Results, st.Errors = w.requests, w.results, w.errLines
	st.Lines, st.Controls = w.messages, w.controls
	st.Running, st.Queued = w.running, w.queued
	for k, v := range w.backends {
		st.Backends[k] = v
	}
	for k, v := range w.statuses {
		st.Statuses[k] = v
	}
	w.mu.Unlock()
	st.InFlight = st.Running + st.Queued
	return st
}
