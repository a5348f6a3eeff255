package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
)

// ProbeReport is what `agentexec check --nats` says of a NATS connection: the
// server it reached, whether JetStream (durable ci jobs) is there, and the
// workers of the service that answered a ping.
type ProbeReport struct {
	URL       string   `json:"url"`
	Server    string   `json:"server"`
	Version   string   `json:"version"`
	Cluster   string   `json:"cluster,omitempty"`
	JetStream bool     `json:"jetstream"`
	JSError   string   `json:"jetstream_error,omitempty"`
	Service   string   `json:"service"`
	Workers   []string `json:"workers"`
}

// Probe reports on nc: the server, JetStream, and the workers of service that
// answer the micro service ping ($SRV.PING.SERVICE) within wait.
func Probe(ctx context.Context, nc *nats.Conn, service string, wait time.Duration) (*ProbeReport, error) {
	if service == "" {
		service = DefaultService
	}
	r := &ProbeReport{URL: nc.ConnectedUrlRedacted(), Server: nc.ConnectedServerName(), Version: nc.ConnectedServerVersion(),
		Cluster: nc.ConnectedClusterName(), Service: service, Workers: []string{}}
	if js, err := jetstream.New(nc); err != nil {
		r.JSError = err.Error()
	} else if _, err := js.AccountInfo(ctx); err != nil {
		r.JSError = err.Error()
	} else {
		r.JetStream = true
	}
	inbox := nats.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return r, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	subject, err := micro.ControlSubject(micro.PingVerb, service, "")
	if err != nil {
		return r, err
	}
	if err := nc.PublishRequest(subject, inbox, nil); err != nil {
		return r, err
	}
	deadline := time.Now().Add(wait)
	for {
		m, err := sub.NextMsg(time.Until(deadline))
		if errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders) || time.Now().After(deadline) {
			break // no (more) workers: the server answers "no responders" when none listen
		}
		if err != nil {
			return r, err
		}
		var ping micro.Ping
		if json.Unmarshal(m.Data, &ping) == nil && ping.ID != "" {
			r.Workers = append(r.Workers, ping.ID)
		}
	}
	sort.Strings(r.Workers)
	return r, nil
}
