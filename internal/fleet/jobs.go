package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentexec/agentexec"
	"github.com/agentexec/agentexec/internal/ci"
)

// JobsConfig makes a worker take its pool's durable CI jobs.
type JobsConfig struct {
	// PolicyFile is the worker's policy file. A job runs only when its job file
	// names this file as its policy (fail closed: an inline policy, or another
	// file, is refused), so that publishing a job cannot widen what the worker's
	// launches may do.
	PolicyFile string
	// Replicas of the two streams when a worker creates them (default 1; 3 on a
	// three-node cluster survives the loss of a node).
	Replicas int
	// AckWait is how long a job may go unacknowledged before JetStream hands it to
	// another worker (default 30s); a worker running a job says it is in progress
	// every AckWait/4. MaxDeliver bounds the deliveries of a job (default 5).
	AckWait    time.Duration
	MaxDeliver int
	// ResultMaxAge is how long results are kept (default 7 days).
	ResultMaxAge time.Duration
	// RuntimeOptions are passed to agentexec.New for each job.
	RuntimeOptions []agentexec.Option
}

// JobMessage is a durable CI job: the message on JobSubject. Its paths are
// absolute, on a filesystem the submitter and the workers share (docs/fleet.md).
type JobMessage struct {
	// RunID names this submission (unique; its result's subject).
	RunID string `json:"run_id"`
	// JobFile is the job file; Workspace overrides its workspace (optional).
	JobFile   string `json:"job_file"`
	Workspace string `json:"workspace,omitempty"`
	// Jobs, KeepGoing and Artifacts are `agentexec ci`'s --jobs, --keep-going and
	// --artifacts.
	Jobs      int    `json:"jobs"`
	KeepGoing bool   `json:"keep_going"`
	Artifacts string `json:"artifacts"`
}

// JobResult is a job's one recorded result: the message on ResultSubject.
type JobResult struct {
	RunID string `json:"run_id"`
	// Worker and Host ran the job; Delivery is which delivery of the job message it
	// was (1: the first; more when a worker died or stopped during an earlier one).
	Worker   string `json:"worker"`
	Host     string `json:"host"`
	Delivery uint64 `json:"delivery"`
	// ExitCode is `agentexec ci`'s exit status; Output and Errors what it printed on
	// stdout (progress and summary) and stderr.
	ExitCode int    `json:"exit_code"`
	Output   string `json:"output"`
	Errors   string `json:"errors"`
	// Report and JUnit are the JSON report and the JUnit XML, byte for byte.
	Report string `json:"report"`
	JUnit  string `json:"junit"`
}

func (c *JobsConfig) setDefaults() {
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.AckWait <= 0 {
		c.AckWait = 30 * time.Second
	}
	if c.MaxDeliver <= 0 {
		c.MaxDeliver = 5
	}
	if c.ResultMaxAge <= 0 {
		c.ResultMaxAge = 7 * 24 * time.Hour
	}
}

// EnsureStreams creates or updates a service's job and result streams. The result
// stream keeps at most one message per subject and refuses a second one
// (DiscardNewPerSubject): a job's result, once recorded, stays the only one.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, service string, replicas int, resultMaxAge time.Duration) error {
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: JobStream(service), Subjects: []string{service + ".jobs.>"},
		Retention: jetstream.WorkQueuePolicy, Replicas: replicas, Duplicates: 10 * time.Minute,
		Description: "agentexec CI jobs (docs/fleet.md)",
	}); err != nil {
		return fmt.Errorf("fleet: stream %s: %w", JobStream(service), err)
	}
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: ResultStream(service), Subjects: []string{service + ".results.>"},
		Retention: jetstream.LimitsPolicy, MaxMsgsPerSubject: 1,
		Discard: jetstream.DiscardNew, DiscardNewPerSubject: true,
		MaxAge: resultMaxAge, Replicas: replicas, Duplicates: 10 * time.Minute,
		Description: "agentexec CI results, one per job run (docs/fleet.md)",
	}); err != nil {
		return fmt.Errorf("fleet: stream %s: %w", ResultStream(service), err)
	}
	return nil
}

type jobRunner struct {
	w       *Worker
	cfg     JobsConfig
	js      jetstream.JetStream
	cons    jetstream.Consumer
	results jetstream.Stream
	host    string
}

func newJobRunner(ctx context.Context, w *Worker) (*jobRunner, error) {
	jr := &jobRunner{w: w, cfg: *w.cfg.Jobs}
	jr.cfg.setDefaults()
	if jr.cfg.PolicyFile == "" {
		return nil, errors.New("fleet: CI jobs need the worker's policy file (--policy FILE)")
	}
	jr.host, _ = os.Hostname()
	js, err := jetstream.New(w.nc)
	if err != nil {
		return nil, fmt.Errorf("fleet: jetstream: %w", err)
	}
	jr.js = js
	svc, pool := w.cfg.Service, w.cfg.Pool
	if err := EnsureStreams(ctx, js, svc, jr.cfg.Replicas, jr.cfg.ResultMaxAge); err != nil {
		return nil, err
	}
	if jr.results, err = js.Stream(ctx, ResultStream(svc)); err != nil {
		return nil, fmt.Errorf("fleet: stream %s: %w", ResultStream(svc), err)
	}
	jr.cons, err = js.CreateOrUpdateConsumer(ctx, JobStream(svc), jetstream.ConsumerConfig{
		Durable: pool, FilterSubject: JobSubject(svc, pool),
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: jr.cfg.AckWait, MaxDeliver: jr.cfg.MaxDeliver,
		Description: "the CI jobs of pool " + pool,
	})
	if err != nil {
		return nil, fmt.Errorf("fleet: consumer %s of stream %s: %w", pool, JobStream(svc), err)
	}
	return jr, nil
}

// loop takes one job at a time until ctx is done.
func (jr *jobRunner) loop(ctx context.Context) error {
	for ctx.Err() == nil {
		fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		msg, err := jr.cons.Next(jetstream.FetchContext(fctx))
		cancel()
		switch {
		case err == nil:
			jr.run(ctx, msg)
		case ctx.Err() != nil:
		case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, jetstream.ErrNoMessages) || errors.Is(err, jetstream.ErrNoHeartbeat):
		default:
			// The cluster is electing a leader, a node went away: try again.
			jr.w.log.Warn("ci: fetch a job", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
	return nil
}

// run runs one job message and records its result, unless one is recorded already.
func (jr *jobRunner) run(ctx context.Context, msg jetstream.Msg) {
	log := jr.w.log
	delivery := uint64(1)
	if meta, err := msg.Metadata(); err == nil {
		delivery = meta.NumDelivered
	}
	var jm JobMessage
	if err := decodeStrict(msg.Data(), &jm); err != nil {
		// Nothing to run and no run id to answer under: drop it for good.
		log.Error("ci: bad job message dropped", "err", err)
		if err := msg.TermWithReason("bad job message: " + err.Error()); err != nil {
			log.Error("ci: term", "err", err)
		}
		return
	}
	subject := ResultSubject(jr.w.cfg.Service, jm.RunID)
	if jr.recorded(ctx, subject) {
		log.Info("ci: job already has its result; acknowledged", "run_id", jm.RunID)
		jr.ack(ctx, msg)
		return
	}
	res := &JobResult{RunID: jm.RunID, Worker: jr.w.id, Host: jr.host, Delivery: delivery}
	if err := jr.checkJob(&jm); err != nil {
		res.ExitCode = ci.ExitUsage
		res.Errors = fmt.Sprintf("agentexec ci: %v\n", err)
	} else {
		stopHB := jr.heartbeat(msg)
		ok := jr.runCI(ctx, &jm, res)
		stopHB()
		if !ok || ctx.Err() != nil {
			// The worker stops: no result; another worker runs the job again.
			log.Info("ci: job interrupted; handed back", "run_id", jm.RunID)
			if err := msg.Nak(); err != nil {
				log.Error("ci: nak", "err", err)
			}
			return
		}
	}
	data := mustJSON(res)
	if max := int(jr.w.nc.MaxPayload()) - 1024; len(data) > max {
		res.Report, res.JUnit = "", ""
		res.Output = cutText(res.Output, max/4)
		res.Errors += fmt.Sprintf("agentexec ci: the job's result (%d bytes) is over the NATS max payload of %d bytes: reports left out\n", len(data), jr.w.nc.MaxPayload())
		res.ExitCode = ci.ExitFailed
		data = mustJSON(res)
	}
	if _, err := jr.js.Publish(ctx, subject, data, jetstream.WithMsgID(jm.RunID)); err != nil && !jr.recorded(ctx, subject) {
		log.Error("ci: record the result; the job will run again", "run_id", jm.RunID, "err", err)
		if err := msg.Nak(); err != nil {
			log.Error("ci: nak", "err", err)
		}
		return
	}
	log.Info("ci job finished", "run_id", jm.RunID, "exit", res.ExitCode, "delivery", delivery)
	jr.ack(ctx, msg)
}

func (jr *jobRunner) ack(ctx context.Context, msg jetstream.Msg) {
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := msg.DoubleAck(actx); err != nil {
		jr.w.log.Warn("ci: ack (the job may be delivered again; its result stays the one recorded)", "err", err)
	}
}

// recorded reports whether subject has its result.
func (jr *jobRunner) recorded(ctx context.Context, subject string) bool {
	_, err := jr.results.GetLastMsgForSubject(ctx, subject)
	return err == nil
}

// heartbeat tells JetStream the job is in progress every AckWait/4, until stop.
func (jr *jobRunner) heartbeat(msg jetstream.Msg) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(jr.cfg.AckWait / 4)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if err := msg.InProgress(); err != nil {
					jr.w.log.Warn("ci: in-progress ack", "err", err)
				}
			}
		}
	}()
	return func() { close(done) }
}

// checkJob checks the message's paths and that the job's policy is the worker's.
func (jr *jobRunner) checkJob(jm *JobMessage) error {
	for _, p := range []struct{ field, path string }{{"job_file", jm.JobFile}, {"artifacts", jm.Artifacts}, {"workspace", jm.Workspace}} {
		if p.path != "" && !filepath.IsAbs(p.path) {
			return fmt.Errorf("job message: field %q: %q is not an absolute path", p.field, p.path)
		}
	}
	if jm.JobFile == "" || jm.Artifacts == "" || jm.RunID == "" {
		return errors.New(`job message: fields "run_id", "job_file" and "artifacts" are required`)
	}
	if jm.Jobs < 1 {
		return fmt.Errorf("job message: field \"jobs\": %d, want at least 1", jm.Jobs)
	}
	data, err := os.ReadFile(jm.JobFile)
	if err != nil {
		return fmt.Errorf("job file: %w", err)
	}
	job, err := ci.Parse(jm.JobFile, data)
	if err != nil {
		return err // ci.Run would say the same
	}
	if job.PolicyInline != nil {
		return fmt.Errorf("%s: policy: an inline policy is refused by this worker: a job must name the worker's policy file %s", jm.JobFile, jr.cfg.PolicyFile)
	}
	pf := job.PolicyPath
	if !filepath.IsAbs(pf) {
		pf = filepath.Join(filepath.Dir(jm.JobFile), pf)
	}
	same, err := samePath(pf, jr.cfg.PolicyFile)
	if err != nil {
		return fmt.Errorf("%s: policy: %w", jm.JobFile, err)
	}
	if !same {
		return fmt.Errorf("%s: policy: %s is not this worker's policy %s: refused", jm.JobFile, pf, jr.cfg.PolicyFile)
	}
	return nil
}

func samePath(a, b string) (bool, error) {
	ra, err := filepath.EvalSymlinks(a)
	if err != nil {
		return false, err
	}
	rb, err := filepath.EvalSymlinks(b)
	if err != nil {
		return false, err
	}
	ra, _ = filepath.Abs(ra)
	rb, _ = filepath.Abs(rb)
	return ra == rb, nil
}

// runCI runs the job as `agentexec ci` would, its reports into a private directory.
// It reports false when the job could not be run to its end here.
func (jr *jobRunner) runCI(ctx context.Context, jm *JobMessage, res *JobResult) bool {
	tmp, err := os.MkdirTemp("", "agentexec-fleet-job-")
	if err != nil {
		jr.w.log.Error("ci: temporary directory", "err", err)
		return false
	}
	defer os.RemoveAll(tmp)
	report, junit := filepath.Join(tmp, "report.json"), filepath.Join(tmp, "junit.xml")
	var out, errb bytes.Buffer
	jr.w.log.Info("ci job started", "run_id", jm.RunID, "job_file", jm.JobFile, "delivery", res.Delivery)
	res.ExitCode = ci.Run(ctx, ci.Config{
		JobFile: jm.JobFile, Load: ci.LoadOptions{Workspace: jm.Workspace},
		Jobs: jm.Jobs, KeepGoing: jm.KeepGoing, Artifacts: jm.Artifacts,
		JUnit: junit, Report: report, Progress: ci.ProgressPlain,
		Stdout: &out, Stderr: &errb, RuntimeOptions: jr.cfg.RuntimeOptions,
	})
	if ctx.Err() != nil {
		return false
	}
	res.Output, res.Errors = out.String(), errb.String()
	if b, err := os.ReadFile(report); err == nil {
		res.Report = string(b)
	}
	if b, err := os.ReadFile(junit); err == nil {
		res.JUnit = string(b)
	}
	return true
}

// decodeStrict decodes one JSON object into v: no unknown field, no key twice,
// nothing after it.
func decodeStrict(data []byte, v any) error {
	if err := checkDuplicateKeys(data); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("trailing data after the JSON object at byte %d", dec.InputOffset())
	}
	return nil
}

// checkDuplicateKeys reports a key that appears twice in one object.
func checkDuplicateKeys(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	type frame struct {
		obj    bool
		keys   map[string]bool
		expKey bool
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.obj && top.expKey {
			if k, ok := tok.(string); ok {
				if top.keys[k] {
					return fmt.Errorf("duplicate key %q", k)
				}
				top.keys[k] = true
				top.expKey = false
				continue
			}
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &frame{obj: true, keys: map[string]bool{}, expKey: true})
			continue
		case json.Delim('['):
			stack = append(stack, &frame{})
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		// A value ended: the enclosing object expects a key again.
		if len(stack) > 0 && stack[len(stack)-1].obj {
			stack[len(stack)-1].expKey = true
		}
	}
}

// cutText cuts s to at most max bytes.
func cutText(s string, max int) string {
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}
