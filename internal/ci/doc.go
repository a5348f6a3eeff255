// Package ci runs a CI job file under an agentexec policy: the engine of
// `agentexec ci JOB.yaml` (docs/ci.md).
//
//	job, pol, err := ci.Load("job.yaml", ci.LoadOptions{})   // strict parse + policy
//	code := ci.Run(ctx, ci.Config{JobFile: "job.yaml", Jobs: 4, Report: "r.json"})
//
// Load parses the job file strictly (every problem as a *policy.FieldError,
// FILE:LINE:COL: FIELD: MESSAGE, joined), loads its policy (a path relative to the
// job file, or inline with errors at the job file's lines) and checks the steps
// against it. Run starts an agentexec.Runtime for the policy and runs the steps in
// dependency order, up to Config.Jobs at once, failing fast unless
// Config.KeepGoing; every step is a launch through the runtime (Landlock, seccomp,
// cgroups), its output streamed to the display and saved as artifacts. At the end
// it prints a summary table and writes the JSON report (docs/ci-report.schema.json)
// and JUnit XML requested.
//
// It owns job files and their runner, reports and display. It uses only the root
// package's exported API, policy and yamlnode; it must not import spawner,
// cgroup, contain, templates or sys.
package ci
