package main

import (
	"flag"
	"fmt"
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
	opts := policy.HostOptions()
	if pf.workspace != "" {
		ws, err := filepath.Abs(pf.workspace)
		if err != nil {
			return nil, fmt.Errorf("workspace: %w", err)
		}
		opts.Workspace = ws
	}
	if pf.file == "" {
		return policy.LoadBytes(configs.DefaultName, configs.Default, opts)
	}
	return policy.Load(pf.file, opts)
}
