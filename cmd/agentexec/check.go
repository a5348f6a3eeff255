package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/agentexec/agentexec"
)

func cmdCheck(args []string) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	var pf policyFlags
	pf.register(fs)
	asJSON := fs.Bool("json", false, "print the report as JSON (schema: docs/check.md)")
	natsURL := fs.String("nats", "", "also report the NATS connection at `URLS`: server, JetStream, the service's workers (docs/fleet.md)")
	service := fs.String("service", defaultService, "the workers' service `NAME` (with --nats)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if pf.workspace != "" {
		// A workspace that is not there would make every root under it unusable.
		if fi, err := os.Stat(pf.workspace); err != nil {
			fmt.Fprintf(os.Stderr, "agentexec check: --workspace %s: %v\n", pf.workspace, errors.Unwrap(err))
			return 1
		} else if !fi.IsDir() {
			fmt.Fprintf(os.Stderr, "agentexec check: --workspace %s: not a directory\n", pf.workspace)
			return 1
		}
	}
	p, err := pf.load()
	if err != nil {
		fmt.Fprintf(os.Stderr, "agentexec check: %v\n", err)
		return 1
	}
	r := agentexec.Check(p)
	var nr natsReport
	if *natsURL != "" {
		if nr, err = probeNATS(*natsURL, *service); err != nil {
			r.Problems = append(r.Problems, fmt.Sprintf("nats: --nats %s: %v", redactURLs(*natsURL), err))
			r.OK = false
		}
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		out := struct {
			*agentexec.Report
			NATS natsReport `json:"nats,omitempty"`
		}{r, nr}
		if err := enc.Encode(out); err != nil {
			fmt.Fprintf(os.Stderr, "agentexec check: %v\n", err)
			return 1
		}
	} else {
		text := *r
		text.Warnings = withoutListedUnenforced(r)
		text.WriteText(os.Stdout)
		if line := natsLine(nr); line != "" {
			fmt.Println(line)
		}
		if !r.Cgroup.CanCreate && os.Geteuid() != 0 {
			fmt.Print(noCgroupNote)
		}
	}
	if !r.OK {
		return 1
	}
	return 0
}

// withoutListedUnenforced returns r's warnings without the "profile P: not enforced:
// X" ones whose X the text already lists under profile P as NOT ENFORCED (the JSON
// report keeps both: warnings and each profile's unenforced list).
func withoutListedUnenforced(r *agentexec.Report) []string {
	var out []string
	for _, w := range r.Warnings {
		listed := false
		for _, p := range r.Profiles {
			if u, ok := strings.CutPrefix(w, "profile "+p.Name+": not enforced: "); ok && slices.Contains(p.Unenforced, u) {
				listed = true
				break
			}
		}
		if !listed {
			out = append(out, w)
		}
	}
	return out
}

// noCgroupNote is what a user without cgroup delegation needs to know.
const noCgroupNote = `note: this user cannot create cgroups, so tools get no cgroup at all: no memory, pids
  or cpu limit, no peak-memory figures, and a timed-out tool's tree is killed by its
  process group only. For a delegated subtree, run agentexec in a systemd scope or
  service that has one:
    systemd-run --user --scope -p Delegate=yes agentexec ...
  (or Delegate=yes in the unit of a service that runs it), or run it as root.
  docs/cgroups.md has the details.
`
