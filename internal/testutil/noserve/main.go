// Command noserve is an embedding program that forgets agentexec.ServeSpawner, for
// the test of the re-exec guard (TestUnservedSpawner in the root package).
//
// Each time its main runs, it appends a line to <executable>.runs, so that the
// test can count every process that ran it. Started as a spawner (by its own
// runtime), it calls agentexec.New like any run, unless <executable>.mode holds
// "sleep": it then sleeps, as a program busy with something else would.
package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/agentexec/agentexec"
	"github.com/agentexec/agentexec/policy"
)

const policyYAML = `version: 1
defaults:
  filesystem:
    read: [/usr, /lib, /lib64, /bin, /etc]
    exec: [/usr, /bin, /lib, /lib64]
  enforcement: {landlock: best_effort, cgroup: best_effort}
tools:
  true: {exec: /bin/true}
`

func main() {
	exe, err := os.Executable()
	if err != nil {
		fail(err)
	}
	f, err := os.OpenFile(exe+".runs", os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		fail(err)
	}
	fmt.Fprintf(f, "%d %q\n", os.Getpid(), os.Args)
	f.Close()
	if mode, _ := os.ReadFile(exe + ".mode"); len(os.Args) > 1 && strings.TrimSpace(string(mode)) == "sleep" {
		time.Sleep(time.Minute)
	}
	p, err := policy.Parse("noserve.yaml", []byte(policyYAML), policy.Options{Workspace: "/", CPUs: 1})
	if err != nil {
		fail(err)
	}
	if err := policy.Resolve(p); err != nil {
		fail(err)
	}
	start := time.Now()
	rt, err := agentexec.New(context.Background(), p, agentexec.WithoutCgroups())
	fmt.Printf("new took %s\n", time.Since(start))
	if err != nil {
		fail(err)
	}
	defer rt.Close()
	r, err := rt.Run(context.Background(), agentexec.Request{Tool: "true"})
	if err != nil {
		fail(err)
	}
	fmt.Printf("exit %d\n", r.ExitCode)
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "noserve: %v\n", err)
	os.Exit(1)
}
