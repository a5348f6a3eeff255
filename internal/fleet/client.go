package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
)

// Errors of Client: each means the request's outcome is unknown (it ran at most
// once); retry it under a new id if it may run twice.
var (
	// ErrNoWorkers: no worker subscribes to the subject (NATS answered "no
	// responders"), so the request was not run.
	ErrNoWorkers = errors.New("fleet: no worker serves the subject (no responders); the request was not run")
	// ErrNotAccepted: no worker acknowledged the request within AcceptTimeout.
	ErrNotAccepted = errors.New("fleet: no worker accepted the request in time; it may or may not have run")
	// ErrWorkerLost: the worker that accepted the request stopped answering on its
	// subject (it died, or lost its NATS connection) before the result came.
	ErrWorkerLost = errors.New("fleet: the worker died or lost its connection during the request; it may or may not have run")
	// ErrConnectionLost: this client's connection to NATS dropped while the request
	// was in flight, so its answer may have been lost.
	ErrConnectionLost = errors.New("fleet: the NATS connection dropped during the request; its answer may be lost")
)

// ClientOptions tune a Client. Zero fields take the defaults.
type ClientOptions struct {
	Service, Pool string
	// AcceptTimeout bounds the wait for a worker's acceptance (default 5s).
	AcceptTimeout time.Duration
	// ProbeInterval is how often the worker of a request in flight is pinged on its
	// subject (default 1s); ProbeMisses consecutive "no responders" answers mean it
	// is gone (default 2).
	ProbeInterval time.Duration
	ProbeMisses   int
}

// Client sends serve protocol lines to a pool or a worker and waits for their
// answers, turning a lost worker or connection into an error (at most once).
type Client struct {
	nc  *nats.Conn
	opt ClientOptions
}

// NewClient returns a client of the pool on nc.
func NewClient(nc *nats.Conn, opt ClientOptions) *Client {
	if opt.Service == "" {
		opt.Service = DefaultService
	}
	if opt.Pool == "" {
		opt.Pool = DefaultPool
	}
	if opt.AcceptTimeout <= 0 {
		opt.AcceptTimeout = 5 * time.Second
	}
	if opt.ProbeInterval <= 0 {
		opt.ProbeInterval = time.Second
	}
	if opt.ProbeMisses <= 0 {
		opt.ProbeMisses = 2
	}
	return &Client{nc: nc, opt: opt}
}

// Reply is the answer to one message: the lines a worker sent for it, the last
// one final (result, error, pong, stats or policy).
type Reply struct {
	// Worker is the worker that answered (its id; WorkerSubject names its subject).
	Worker string
	// Chunks are the stdout and stderr lines of a streamed request, in order.
	Chunks [][]byte
	// Final is the result line (or error, pong, stats, policy line).
	Final []byte
	// Type is Final's "type".
	Type string
	// Resent says Final was sent again because the first one was lost
	// (HeaderResent); the chunks streamed before it may be missing.
	Resent bool
}

// Do sends one protocol line to the pool.
func (c *Client) Do(ctx context.Context, line []byte) (*Reply, error) {
	return c.do(ctx, PoolSubject(c.opt.Service, c.opt.Pool), line)
}

// DoWorker sends one protocol line to the worker with the given id (a pinned
// session, or a cancel). ErrNoWorkers then means that worker is gone.
func (c *Client) DoWorker(ctx context.Context, worker string, line []byte) (*Reply, error) {
	return c.do(ctx, WorkerSubject(c.opt.Service, worker), line)
}

func (c *Client) do(ctx context.Context, subject string, line []byte) (*Reply, error) {
	reconnects := c.nc.Stats().Reconnects
	inbox := c.nc.NewRespInbox()
	sub, err := c.nc.SubscribeSync(inbox)
	if err != nil {
		return nil, fmt.Errorf("fleet: subscribe: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	msg := &nats.Msg{Subject: subject, Reply: inbox, Data: line, Header: nats.Header{HeaderAck: []string{"1"}}}
	if err := c.nc.PublishMsg(msg); err != nil {
		return nil, fmt.Errorf("fleet: publish: %w", err)
	}
	rep := &Reply{}
	accepted := false
	start := time.Now()
	lastProbe, misses := time.Now(), 0
	for {
		m, err := sub.NextMsg(100 * time.Millisecond)
		if err == nil {
			if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
				return nil, ErrNoWorkers
			}
			if rep.Worker == "" {
				rep.Worker = m.Header.Get(HeaderWorker)
			}
			switch m.Header.Get(HeaderEvent) {
			case EventAccepted:
				accepted = true
				lastProbe = time.Now()
				continue
			case EventCancelApplied:
				rep.Type = EventCancelApplied
				return rep, nil
			}
			var h lineHead
			if err := json.Unmarshal(m.Data, &h); err != nil {
				return nil, fmt.Errorf("fleet: worker %s sent a line that is not JSON: %w", rep.Worker, err)
			}
			if h.Type == "stdout" || h.Type == "stderr" {
				accepted = true
				rep.Chunks = append(rep.Chunks, m.Data)
				continue
			}
			rep.Final, rep.Type = m.Data, h.Type
			rep.Resent = m.Header.Get(HeaderResent) != ""
			return rep, nil
		}
		if errors.Is(err, nats.ErrNoResponders) {
			return nil, ErrNoWorkers
		}
		if !errors.Is(err, nats.ErrTimeout) {
			return nil, fmt.Errorf("fleet: read the answer: %w", err)
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if c.nc.Stats().Reconnects != reconnects || !c.nc.IsConnected() {
			return nil, ErrConnectionLost
		}
		if !accepted {
			if time.Since(start) > c.opt.AcceptTimeout {
				return nil, ErrNotAccepted
			}
			continue
		}
		if time.Since(lastProbe) < c.opt.ProbeInterval {
			continue
		}
		lastProbe = time.Now()
		switch c.probe(ctx, rep.Worker, inbox) {
		case probeAlive:
			misses = 0
		case probeUnknown:
			// The worker is there but does not know the request: it sent the final
			// line so long ago that it forgot it, and that line never came.
			return nil, fmt.Errorf("%w (worker %s: it no longer knows the request; its answer was lost)", ErrWorkerLost, rep.Worker)
		case probeGone:
			if misses++; misses >= c.opt.ProbeMisses {
				return nil, fmt.Errorf("%w (worker %s)", ErrWorkerLost, rep.Worker)
			}
		}
	}
}

type probeResult int

const (
	probeAlive   probeResult = iota // answered, or busy (a timeout proves nothing)
	probeGone                       // NATS says nobody listens on the worker's subject
	probeUnknown                    // the worker answered that it does not know the request
)

// probe pings a worker on its subject, naming the reply subject of the request
// in flight (HeaderInflight). A worker that already sent that request's final
// line sends it again (the first was lost), and one that never knew it, or no
// longer does, says so. Workers that predate the header answer a plain pong.
func (c *Client) probe(ctx context.Context, worker, inbox string) probeResult {
	pctx, cancel := context.WithTimeout(ctx, c.opt.ProbeInterval)
	defer cancel()
	m, err := c.nc.RequestMsgWithContext(pctx, &nats.Msg{Subject: WorkerSubject(c.opt.Service, worker),
		Data: []byte(`{"type":"ping"}`), Header: nats.Header{HeaderInflight: []string{inbox}}})
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return probeGone
	case err == nil && m.Header.Get(HeaderRequest) == RequestUnknown:
		return probeUnknown
	}
	return probeAlive
}
