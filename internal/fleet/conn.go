package fleet

import (
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// Defaults of the subjects' names.
const (
	DefaultService = "agentexec"
	DefaultPool    = "default"
)

// Headers of the messages a worker sends (and of the requests it reads).
const (
	// HeaderWorker names the worker (its micro service instance id) on every
	// message it sends: its subject is SERVICE.worker.ID.
	HeaderWorker = "Agentexec-Worker"
	// HeaderAck, set (to any value) on a run request, asks the worker for an
	// acceptance message (no body, HeaderEvent "accepted") before the result.
	HeaderAck = "Agentexec-Ack"
	// HeaderEvent marks a message without a protocol line: "accepted", or
	// "cancel-applied" (the answer to a cancel that applies, whose request's
	// result follows on that request's own reply subject).
	HeaderEvent = "Agentexec-Event"
	// HeaderInflight, on a ping to a worker's subject, names the reply subject of a
	// request the client still waits for; the pong then carries HeaderRequest, and
	// a worker that already sent that request's final line sends it again (the
	// first one was lost: NATS delivers at most once, and a worker's connection
	// that drops can take a message with it).
	HeaderInflight = "Agentexec-Inflight"
	// HeaderRequest, on such a pong: "running" (accepted, no final line yet),
	// "done" (the final line was sent and has been sent again) or "unknown" (not
	// known to this worker, or finished too long ago to be remembered).
	HeaderRequest = "Agentexec-Request"
	// HeaderResent marks a final line sent again after such a ping: the stdout and
	// stderr lines a streamed request sent before it are not sent again.
	HeaderResent = "Agentexec-Resent"
)

// States of HeaderRequest.
const (
	RequestRunning = "running"
	RequestDone    = "done"
	RequestUnknown = "unknown"
)

// Events of HeaderEvent.
const (
	EventAccepted      = "accepted"
	EventCancelApplied = "cancel-applied"
)

// nameRE is what a service or pool name may be: one NATS subject token, also valid
// in a stream, consumer and micro service name.
var nameRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`) })

// ErrBadName is wrapped by the errors about a service or pool name.
var ErrBadName = errors.New("want 1 to 64 of A-Z a-z 0-9 _ -")

// checkName checks a service or pool name.
func checkName(what, name string) error {
	if !nameRE().MatchString(name) {
		return fmt.Errorf("%s %q: %w", what, name, ErrBadName)
	}
	return nil
}

// PoolSubject is the subject of a pool: any one of its workers answers.
func PoolSubject(service, pool string) string { return service + ".pool." + pool }

// QueueGroup is the queue group of a pool's workers.
func QueueGroup(service, pool string) string { return service + "." + pool }

// WorkerSubject is the subject of one worker (id: its HeaderWorker).
func WorkerSubject(service, id string) string { return service + ".worker." + id }

// JobSubject is the subject CI jobs of a pool are published on (stream JobStream).
func JobSubject(service, pool string) string { return service + ".jobs." + pool }

// ResultSubject is the subject of a CI job's result (stream ResultStream).
func ResultSubject(service, runID string) string { return service + ".results." + runID }

// JobStream and ResultStream name a service's JetStream streams.
func JobStream(service string) string    { return service + "_jobs" }
func ResultStream(service string) string { return service + "_results" }

// ConnOptions are the connection settings: the nats.go options, passed through.
type ConnOptions struct {
	// URL is one or more server URLs, comma-separated (nats://[user:pass@]host:port;
	// tls:// for TLS). The other servers of a cluster are learned from the first.
	URL string
	// Name is the connection's name, shown by the server's monitoring.
	Name string
	// CredsFile is a user JWT and nkey seed file (nats.UserCredentials).
	CredsFile string
	// NKeyFile is an nkey seed file (nats.NkeyOptionFromSeed).
	NKeyFile string
	// TLSCA, TLSCert and TLSKey are PEM files: the CA that signed the servers'
	// certificates, and a client certificate and key (nats.RootCAs, nats.ClientCert).
	TLSCA, TLSCert, TLSKey string
	// Logger receives connection events (default: discarded).
	Logger *slog.Logger
	// Extra are further nats.go options, applied last.
	Extra []nats.Option
}

// Connect connects to NATS with o. The connection reconnects forever (to any
// server of the cluster); buffered publishes are sent after a reconnect.
func Connect(o ConnOptions) (*nats.Conn, error) {
	if o.URL == "" {
		return nil, errors.New("nats: no server URL (--nats URL or $NATS_URL)")
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts := []nats.Option{
		nats.Name(o.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn("nats: disconnected", "err", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats: reconnected", "server", nc.ConnectedUrlRedacted())
		}),
	}
	if o.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(o.CredsFile))
	}
	if o.NKeyFile != "" {
		opt, err := nats.NkeyOptionFromSeed(o.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("nats: nkey file %s: %w", o.NKeyFile, err)
		}
		opts = append(opts, opt)
	}
	if o.TLSCA != "" {
		opts = append(opts, nats.RootCAs(o.TLSCA))
	}
	switch {
	case o.TLSCert != "" && o.TLSKey != "":
		opts = append(opts, nats.ClientCert(o.TLSCert, o.TLSKey))
	case o.TLSCert != "" || o.TLSKey != "":
		return nil, errors.New("nats: a TLS client certificate needs both the certificate and the key file")
	}
	opts = append(opts, o.Extra...)
	nc, err := nats.Connect(o.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("nats: connect: %w", err)
	}
	return nc, nil
}
