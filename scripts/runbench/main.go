// Command runbench measures `agentexec run`, one process per call as users of
// bubblewrap and landrun call a sandbox, against launching the tool directly
// (fork+exec+wait4 from this process, what posix_spawn does), bubblewrap and
// landrun when they are installed, and `agentexec run` on the Runtime path
// (AGENTEXEC_RUN_NO_FAST=1), on an agent-like tool mix over this repository's
// files; `agentexec version`, which launches nothing, shows the floor of starting
// the binary at all. Two more rows: `agentexec serve` through a client (one serve
// process for the run, a request line written and its result line read per call;
// -serve=false leaves it out), and llrun (scripts/llrun), a Landlock-only launcher
// of landrun's kind, built here with `go build` (-llrun off, or -llrun PATH). Calls are interleaved: each call of the mix runs once through
// every backend, in an order that rotates from call to call, so that the machine's
// drift hits all backends alike; the figures are medians per tool and backend,
// their ratios to the direct launch measured in the same run, and the geometric
// mean of those ratios (docs/performance.md, "agentexec run, one-shot"). The
// engine is internal/peerbench, shared with `agentexec bench --peers`.
//
//	go run ./scripts/runbench -bin bin/agentexec -workspace . -calls 40
//
// With -base OTHER_BINARY, every agentexec backend runs with that binary too (as
// base-…), for a before/after comparison in one interleaved run. With -cpu, a
// second table gives the median CPU time (user + system, from wait4's rusage: the
// process and the descendants it reaped) per call: steadier than wall time on a
// loaded machine for start-up costs such as package initialisation.
//
// Every backend's stdin is /dev/null, and so are its stdout and stderr unless
// -stdout pipe gives each call a pipe that the harness reads to its end (part of
// the call's time), as an agent reads a tool's output: some tools do less when
// their output is /dev/null (rg stops at its first match), and a tool that writes
// to a pipe shares the CPUs with its reader.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/agentexec/agentexec/internal/peerbench"
)

// mix is an agent-like set of short tool calls; paths are relative to the workspace.
var mix = []peerbench.Call{
	{Name: "true", Argv: []string{"true"}},
	{Name: "echo", Argv: []string{"echo", "hello"}},
	{Name: "cat", Argv: []string{"cat", "README.md"}},
	{Name: "ls", Argv: []string{"ls", "-la"}},
	{Name: "head", Argv: []string{"head", "-50", "docs/design.md"}},
	{Name: "wc", Argv: []string{"wc", "-l", "README.md", "go.mod"}},
	{Name: "grep", Argv: []string{"grep", "-c", "func", "runtime.go"}},
	{Name: "rg", Argv: []string{"rg", "-c", "TODO", "internal"}},
}

func main() {
	bin := flag.String("bin", "bin/agentexec", "agentexec `BINARY`")
	ws := flag.String("workspace", ".", "workspace `DIR` (the tools read files in it)")
	calls := flag.Int("calls", 40, "calls per tool and backend")
	only := flag.String("backends", "", "comma-separated backends to run besides direct (default: all available)")
	tools := flag.String("tools", "", "comma-separated calls of the mix to run (default: all)")
	cpu := flag.Bool("cpu", false, "also report the median CPU time (user+sys) per call")
	base := flag.String("base", "", "a second agentexec `BINARY` (e.g. a build of an earlier commit): its backends are added as base-…")
	asJSON := flag.Bool("json", false, "print the report as JSON")
	stdout := flag.String("stdout", "null", "every call's stdout and stderr: null (/dev/null) or pipe (read by the harness to its end)")
	serve := flag.Bool("serve", true, "add `agentexec serve` through a client (agentexec-serve)")
	llrun := flag.String("llrun", "auto", "llrun, the Landlock-only peer (scripts/llrun): auto (built with go build into a temporary directory), off, or its `PATH`")
	flag.Parse()
	if *stdout != "null" && *stdout != "pipe" {
		fatal(fmt.Errorf("-stdout %q: want null or pipe", *stdout))
	}
	if *tools != "" {
		keep := strings.Split(*tools, ",")
		var m []peerbench.Call
		for _, c := range mix {
			for _, k := range keep {
				if c.Name == k {
					m = append(m, c)
				}
			}
		}
		if len(m) == 0 {
			fatal(fmt.Errorf("-tools %q: no such call in the mix", *tools))
		}
		mix = m
	}
	cfg := peerbench.Config{Mix: mix, Calls: *calls, Runtime: true, OutputPipe: *stdout == "pipe", Serve: *serve,
		Env: []string{"PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8"}}
	var err error
	if cfg.Workspace, err = filepath.Abs(*ws); err != nil {
		fatal(err)
	}
	if cfg.Binary, err = filepath.Abs(*bin); err != nil {
		fatal(err)
	}
	if *base != "" {
		if cfg.Base, err = filepath.Abs(*base); err != nil {
			fatal(err)
		}
	}
	if *only != "" {
		cfg.Backends = strings.Split(*only, ",")
	}
	var buildNote string
	switch *llrun {
	case "off":
	case "auto":
		dir, err := os.MkdirTemp("", "runbench-llrun-")
		if err != nil {
			fatal(err)
		}
		defer os.RemoveAll(dir)
		p := filepath.Join(dir, "llrun")
		out, err := exec.Command("go", "build", "-trimpath", "-o", p, "github.com/agentexec/agentexec/scripts/llrun").CombinedOutput()
		if err != nil {
			buildNote = fmt.Sprintf("llrun: not built (%v: %s), no row", err, strings.TrimSpace(string(out)))
			break
		}
		cfg.Sketch = p
	default:
		if cfg.Sketch, err = filepath.Abs(*llrun); err != nil {
			fatal(err)
		}
	}
	rep, err := peerbench.Run(context.Background(), cfg)
	if err != nil {
		fatal(err)
	}
	if buildNote != "" {
		rep.Notes = append(rep.Notes, buildNote)
	}
	if *asJSON {
		err = rep.WriteJSON(os.Stdout)
	} else {
		err = rep.WriteText(os.Stdout, *cpu)
	}
	if err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "runbench:", err)
	os.Exit(1)
}
