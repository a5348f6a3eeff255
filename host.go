package agentexec

import (
	"github.com/agentexec/agentexec/internal/cgroup"
	"github.com/agentexec/agentexec/internal/sandbox"
	"github.com/agentexec/agentexec/internal/templates"
	"github.com/agentexec/agentexec/policy"
)

// Host is what this machine offers the sandbox, probed once at start.
type Host struct {
	// LandlockABI is the kernel's Landlock ABI version (0: none); LandlockErr says why
	// when it is 0.
	LandlockABI int
	LandlockErr string
	// Cgroup is the cgroup v2 discovery (nil when discovery failed; see CgroupErr).
	Cgroup    *cgroup.Info
	CgroupErr string
	// KernelTemplates is the spawn_template probe.
	KernelTemplates templates.Probe
}

// ProbeHost probes the kernel features agentexec uses. It changes nothing.
func ProbeHost(p *policy.Policy) *Host {
	h := &Host{}
	abi, err := sandbox.LandlockABI()
	h.LandlockABI = abi
	if err != nil {
		h.LandlockErr = err.Error()
	}
	info, err := cgroup.Discover()
	if err != nil {
		h.CgroupErr = err.Error()
	} else {
		h.Cgroup = info
	}
	var create, spawn int
	if p != nil && p.SpawnTemplateSyscalls != nil {
		create, spawn = p.SpawnTemplateSyscalls.Create, p.SpawnTemplateSyscalls.Spawn
	}
	h.KernelTemplates = templates.ProbeKernel(create, spawn)
	return h
}
