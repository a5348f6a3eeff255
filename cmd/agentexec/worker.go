//go:build !agentexec_lean

package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/agentexec/agentexec"
	"github.com/agentexec/agentexec/internal/fleet"
	"github.com/agentexec/agentexec/internal/serve"
)

// cmdWorker is `agentexec worker`: the serve protocol on a NATS pool (docs/fleet.md).
func cmdWorker(args []string) int {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	var pf policyFlags
	pf.register(fs)
	var co fleet.ConnOptions
	fs.StringVar(&co.URL, "nats", os.Getenv("NATS_URL"), "NATS server `URLs`, comma-separated (default $NATS_URL; user:password in the URL or $NATS_URL, not on the command line)")
	fs.StringVar(&co.CredsFile, "creds", "", "NATS user credentials `FILE` (JWT and nkey seed)")
	fs.StringVar(&co.NKeyFile, "nkey", "", "NATS nkey seed `FILE`")
	fs.StringVar(&co.TLSCA, "tls-ca", "", "CA certificate `FILE` the NATS servers' certificates must chain to")
	fs.StringVar(&co.TLSCert, "tls-cert", "", "client certificate `FILE` (with --tls-key)")
	fs.StringVar(&co.TLSKey, "tls-key", "", "client key `FILE` (with --tls-cert)")
	var cfg fleet.WorkerConfig
	fs.StringVar(&cfg.Service, "service", fleet.DefaultService, "micro service `NAME`, the prefix of every subject")
	fs.StringVar(&cfg.Pool, "pool", fleet.DefaultPool, "pool `NAME`: requests to NAME's subject spread over its workers")
	fs.IntVar(&cfg.MaxInflight, "max-inflight", 0, "run requests launched at once (default: the policy's concurrency)")
	fs.IntVar(&cfg.MaxQueued, "max-queued", 0, "accepted requests waiting for a slot (default: max-inflight)")
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", serve.DefaultDrainTimeout, "on SIGTERM, how long requests in flight may finish before they are killed")
	jobs := fs.Bool("jobs", false, "also take the pool's durable CI jobs (JetStream; needs --policy FILE)")
	var jc fleet.JobsConfig
	fs.IntVar(&jc.Replicas, "js-replicas", 1, "replicas of the job and result streams when this worker creates them")
	fs.DurationVar(&jc.AckWait, "ack-wait", 30*time.Second, "how long a CI job may go unacknowledged before another worker gets it")
	fs.IntVar(&jc.MaxDeliver, "max-deliver", 5, "deliveries of a CI job at most")
	grace := fs.Duration("kill-grace", 0, "time between SIGTERM and the kill of a canceled or timed-out launch's tree (default: the runtime's, 1s)")
	level := fs.String("log-level", "info", "stderr log level: debug, info, warn, error")
	format := fs.String("log-format", "text", "stderr log format: text or json")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: agentexec worker --nats URL [--policy FILE] [--service NAME] [--pool NAME] [flags]   (docs/fleet.md)")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "agentexec worker: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if co.URL == "" {
		fmt.Fprintln(os.Stderr, "agentexec worker: --nats URL (or $NATS_URL) is required")
		return 2
	}
	logger, err := stderrLogger(*level, *format)
	if err != nil {
		fmt.Fprintf(os.Stderr, "agentexec worker: %v\n", err)
		return 2
	}
	cfg.Logger, cfg.Version, co.Logger = logger, version, logger
	opts := []agentexec.Option{agentexec.WithLogger(logger)}
	if *grace > 0 {
		opts = append(opts, agentexec.WithKillGrace(*grace))
	}
	if *jobs {
		if pf.file == "" {
			fmt.Fprintln(os.Stderr, "agentexec worker: --jobs needs --policy FILE (a job must name the worker's policy file)")
			return 2
		}
		abs, err := filepath.Abs(pf.file)
		if err != nil {
			fmt.Fprintf(os.Stderr, "agentexec worker: --policy: %v\n", err)
			return 2
		}
		jc.PolicyFile = abs
		jc.RuntimeOptions = opts
		cfg.Jobs = &jc
	}
	p, err := pf.load()
	if err != nil {
		fmt.Fprintf(os.Stderr, "agentexec worker: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second signal takes the default action
	}()
	rt, err := agentexec.New(ctx, p, opts...)
	if err != nil {
		fmt.Fprintf(os.Stderr, "agentexec worker: start runtime: %v\n", err)
		return 1
	}
	defer rt.Close()
	host, _ := os.Hostname()
	co.Name = fmt.Sprintf("agentexec worker %s/%s on %s", cfg.Service, cfg.Pool, host)
	nc, err := fleet.Connect(co)
	if err != nil {
		fmt.Fprintf(os.Stderr, "agentexec worker: %v\n", err)
		return 1
	}
	defer nc.Close()
	w, err := fleet.NewWorker(nc, rt, cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "agentexec worker: %v\n", err)
		return 1
	}
	if err := w.Run(ctx); err != nil {
		logger.Error("worker failed", "err", err)
		return 1
	}
	return 0
}
