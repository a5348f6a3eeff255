package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/agentexec/agentexec"
)

func cmdCheck(args []string) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	var pf policyFlags
	pf.register(fs)
	asJSON := fs.Bool("json", false, "print the report as JSON (schema: docs/check.md)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	p, err := pf.load()
	if err != nil {
		fmt.Fprintf(os.Stderr, "agentexec check: %v\n", err)
		return 1
	}
	r := agentexec.Check(p)
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			fmt.Fprintf(os.Stderr, "agentexec check: %v\n", err)
			return 1
		}
	} else {
		r.WriteText(os.Stdout)
	}
	if !r.OK {
		return 1
	}
	return 0
}
