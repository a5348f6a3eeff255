//go:build !agentexec_lean

package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/agentexec/agentexec/internal/ci"
	"github.com/agentexec/agentexec/internal/fleet"
)

// This file, mcp.go and worker.go are the full build's: the commands that link the
// MCP SDK and the NATS client. The lean build (-tags agentexec_lean, bin/agentexec
// of make build) hands those commands to the full binary instead (lean.go).

const leanBuild = false

// natsReport is what check --nats adds to the report.
type natsReport = *fleet.ProbeReport

// probeNATS connects to urls and reports on the connection (fleet.Probe).
func probeNATS(urls, service string) (natsReport, error) {
	nc, err := fleet.Connect(fleet.ConnOptions{URL: urls, Name: "agentexec check"})
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return fleet.Probe(ctx, nc, service, 500*time.Millisecond)
}

// natsLine is check's text line for a NATS report ("" for none).
func natsLine(nr natsReport) string {
	if nr == nil {
		return ""
	}
	js := "jetstream: yes"
	if !nr.JetStream {
		js = "jetstream: no (" + nr.JSError + "): no durable ci jobs"
	}
	return fmt.Sprintf("nats: %s, server %s %s, cluster %q; %s; service %s: %d worker(s) answered: %s",
		nr.URL, nr.Server, nr.Version, nr.Cluster, js, nr.Service, len(nr.Workers), strings.Join(nr.Workers, ", "))
}

// submitCI is ci --nats: the job goes to a worker pool instead of running here.
func submitCI(ctx context.Context, urls string, s ciSubmission) int {
	nc, err := fleet.Connect(fleet.ConnOptions{URL: urls, Name: "agentexec ci"})
	if err != nil {
		fmt.Fprintf(os.Stderr, "agentexec ci: --nats %s: %v\n", redactURLs(urls), err)
		return ci.ExitFailed
	}
	defer nc.Close()
	return fleet.SubmitCI(ctx, nc, fleet.SubmitConfig{Service: s.service, Pool: s.pool, JobFile: s.jobFile,
		Workspace: s.workspace, Artifacts: s.artifacts, Jobs: s.jobs, KeepGoing: s.keepGoing,
		Report: s.report, JUnit: s.junit, Stdout: os.Stdout, Stderr: os.Stderr})
}
