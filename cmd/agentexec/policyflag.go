package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

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

// load reads, validates and resolves the policy. ${WORKSPACE} is --workspace or the
// current directory; ${HOME} comes from the host; ${TMPDIR} is a directory private
// to the runtime (policy.TmpDirPlaceholder until it starts).
func (pf *policyFlags) load() (*policy.Policy, error) {
	name, data, opts, err := pf.source()
	if err != nil {
		return nil, err
	}
	return policy.LoadBytes(name, data, opts)
}

// loadFor is load with only tool (and the policy's required tools) resolved
// (policy.ResolveTools): run's one-shot path runs that one tool and need not look
// up the others' executables. The whole policy is still read and validated.
func (pf *policyFlags) loadFor(tool string) (*policy.Policy, error) {
	name, data, opts, err := pf.source()
	if err != nil {
		return nil, err
	}
	p, err := policy.Parse(name, data, opts)
	if err != nil {
		return nil, err
	}
	return p, policy.ResolveTools(p, tool)
}

// source is the policy's name and bytes (--policy's file, or the embedded default)
// and the options to parse it with.
func (pf *policyFlags) source() (string, []byte, policy.Options, error) {
	opts := policy.HostOptions()
	if pf.workspace != "" {
		ws, err := filepath.Abs(pf.workspace)
		if err != nil {
			return "", nil, opts, fmt.Errorf("workspace: %w", err)
		}
		opts.Workspace = ws
	}
	if pf.file == "" {
		return configs.DefaultName, configs.Default, opts, nil
	}
	data, err := os.ReadFile(pf.file)
	if err != nil {
		return "", nil, opts, fmt.Errorf("policy: %w", err)
	}
	return pf.file, data, opts, nil
}
