package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"

	"github.com/agentexec/agentexec/configs"
	"github.com/agentexec/agentexec/policy"
)

// policyFlags are the flags every command that loads a policy shares.
type policyFlags struct {
	file      string
	workspace string
}

func (pf *policyFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&pf.file, "policy", "", "policy `FILE` (default: the embedded default policy)")
	fs.StringVar(&pf.workspace, "workspace", "", "workspace `DIR` for ${WORKSPACE} (default: the current directory)")
}

// load reads, validates and resolves the policy.
func (pf *policyFlags) load() (*policy.Policy, error) {
	ws := pf.workspace
	if ws == "" {
		wd, err := os.Getwd()
		if err != nil {
			return nil, fmt.Errorf("workspace: %w", err)
		}
		ws = wd
	}
	opts := policy.Options{Workspace: ws, Home: os.Getenv("HOME"), TmpDir: os.Getenv("TMPDIR"), CPUs: runtime.NumCPU()}
	if opts.Home == "" {
		opts.Home = "/root"
	}
	if pf.file == "" {
		return policy.LoadBytes("default.yaml", configs.Default, opts)
	}
	return policy.Load(pf.file, opts)
}
