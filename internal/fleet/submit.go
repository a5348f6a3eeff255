package fleet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/agentexec/agentexec/internal/ci"
)

// SubmitConfig is `agentexec ci --nats URL JOB.yaml`: ci's flags, and where to send.
type SubmitConfig struct {
	Service, Pool string
	// JobFile, Workspace and Artifacts are made absolute here; they must be on a
	// filesystem the workers share.
	JobFile, Workspace, Artifacts string
	Jobs                          int
	KeepGoing                     bool
	// Report and JUnit are written here, from the worker's result ("" for none).
	Report, JUnit string
	// Stdout receives the job's progress and summary as the worker's `ci` printed
	// them, Stderr the errors and where the job ran.
	Stdout, Stderr io.Writer
}

// ErrNoJobStream is returned when no worker has created the service's job stream.
var ErrNoJobStream = errors.New("fleet: no job stream: start a worker with --jobs first")

// SubmitCI submits the job, waits for its one result and prints and writes it as
// a local `agentexec ci` run would; it returns ci's exit status.
func SubmitCI(ctx context.Context, nc *nats.Conn, cfg SubmitConfig) int {
	if cfg.Stdout == nil {
		cfg.Stdout = os.Stdout
	}
	if cfg.Stderr == nil {
		cfg.Stderr = os.Stderr
	}
	fail := func(code int, format string, args ...any) int {
		fmt.Fprintf(cfg.Stderr, "agentexec ci: "+format+"\n", args...)
		return code
	}
	jm, err := cfg.message()
	if err != nil {
		return fail(ci.ExitUsage, "%v", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return fail(ci.ExitFailed, "jetstream: %v", err)
	}
	if err := SubmitJob(ctx, js, cfg.Service, cfg.Pool, jm); err != nil {
		return fail(ci.ExitFailed, "%v", err)
	}
	fmt.Fprintf(cfg.Stderr, "agentexec ci: %s submitted to pool %s as run %s\n", jm.JobFile, cfg.Pool, jm.RunID)
	res, err := WaitResult(ctx, js, cfg.Service, jm.RunID)
	if err != nil {
		return fail(ci.ExitFailed, "run %s: %v", jm.RunID, err)
	}
	fmt.Fprintf(cfg.Stderr, "agentexec ci: run %s ran on worker %s (host %s), delivery %d\n", res.RunID, res.Worker, res.Host, res.Delivery)
	fmt.Fprint(cfg.Stdout, res.Output)
	fmt.Fprint(cfg.Stderr, res.Errors)
	code := res.ExitCode
	for _, f := range []struct{ path, data, what string }{{cfg.Report, res.Report, "JSON report"}, {cfg.JUnit, res.JUnit, "JUnit report"}} {
		if f.path == "" {
			continue
		}
		if f.data == "" {
			code = fail(ci.ExitFailed, "the worker sent no %s", f.what)
			continue
		}
		if err := writeFileAtomic(f.path, []byte(f.data)); err != nil {
			code = fail(ci.ExitFailed, "%s: %v", f.what, err)
		}
	}
	return code
}

// message checks the job file (parse only: the workers resolve the policy) and
// makes the job message.
func (cfg *SubmitConfig) message() (*JobMessage, error) {
	if cfg.Service == "" {
		cfg.Service = DefaultService
	}
	if cfg.Pool == "" {
		cfg.Pool = DefaultPool
	}
	if err := errors.Join(checkName("service", cfg.Service), checkName("pool", cfg.Pool)); err != nil {
		return nil, err
	}
	if cfg.Artifacts == "" {
		cfg.Artifacts = "agentexec-artifacts"
	}
	if cfg.Jobs < 1 {
		cfg.Jobs = 1
	}
	jm := &JobMessage{RunID: nuid.Next(), Jobs: cfg.Jobs, KeepGoing: cfg.KeepGoing}
	var err error
	for _, p := range []struct {
		dst *string
		src string
	}{{&jm.JobFile, cfg.JobFile}, {&jm.Artifacts, cfg.Artifacts}, {&jm.Workspace, cfg.Workspace}} {
		if p.src == "" {
			continue
		}
		if *p.dst, err = filepath.Abs(p.src); err != nil {
			return nil, err
		}
	}
	data, err := os.ReadFile(jm.JobFile)
	if err != nil {
		return nil, fmt.Errorf("job file: %w", err)
	}
	if _, err := ci.Parse(jm.JobFile, data); err != nil {
		return nil, err
	}
	return jm, nil
}

// SubmitJob publishes jm on the pool's job subject (deduplicated by its run id).
func SubmitJob(ctx context.Context, js jetstream.JetStream, service, pool string, jm *JobMessage) error {
	if _, err := js.Stream(ctx, JobStream(service)); err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("%w (stream %s)", ErrNoJobStream, JobStream(service))
		}
		return fmt.Errorf("fleet: stream %s: %w", JobStream(service), err)
	}
	if _, err := js.Publish(ctx, JobSubject(service, pool), mustJSON(jm), jetstream.WithMsgID(jm.RunID)); err != nil {
		return fmt.Errorf("fleet: submit the job: %w", err)
	}
	return nil
}

var errBadResult = errors.New("fleet: bad result message")

// WaitResult waits for the result of run runID, until ctx is done.
func WaitResult(ctx context.Context, js jetstream.JetStream, service, runID string) (*JobResult, error) {
	subject := ResultSubject(service, runID)
	for {
		res, err := nextResult(ctx, js, service, subject)
		if res != nil || ctx.Err() != nil || errors.Is(err, errBadResult) {
			return res, err
		}
		if err != nil {
			// A node went away, a leader is being elected: look again.
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(500 * time.Millisecond):
			}
		}
	}
}

func nextResult(ctx context.Context, js jetstream.JetStream, service, subject string) (*JobResult, error) {
	cons, err := js.OrderedConsumer(ctx, ResultStream(service), jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		return nil, err
	}
	for ctx.Err() == nil {
		fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		msg, err := cons.Next(jetstream.FetchContext(fctx))
		cancel()
		if err == nil {
			var res JobResult
			if err := decodeStrict(msg.Data(), &res); err != nil {
				return nil, fmt.Errorf("%w on %s: %w", errBadResult, subject, err)
			}
			return &res, nil
		}
		if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, jetstream.ErrNoMessages) {
			return nil, err
		}
	}
	return nil, ctx.Err()
}

// writeFileAtomic writes data to path through a temporary file in its directory.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return err
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		os.Remove(f.Name())
		return err
	}
	return os.Rename(f.Name(), path)
}
