package agentexec

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/agentexec/agentexec/internal/cgroup"
	"github.com/agentexec/agentexec/internal/spawner"
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
	abi, err := spawner.LandlockABI()
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
	if p != nil && p.KernelTemplates == policy.KernelTemplatesOff {
		// No /proc/kallsyms scan (tens of milliseconds) for a backend the policy
		// turned off.
		h.KernelTemplates = templates.Probe{Reason: "not probed: kernel_templates: off"}
		return h
	}
	var create, spawn int
	if p != nil && p.SpawnTemplateSyscalls != nil {
		create, spawn = p.SpawnTemplateSyscalls.Create, p.SpawnTemplateSyscalls.Spawn
	}
	if cached, ok := readProbeCache(create, spawn); ok {
		h.KernelTemplates = cached
		return h
	}
	h.KernelTemplates = templates.ProbeKernel(create, spawn)
	writeProbeCache(create, spawn, h.KernelTemplates)
	return h
}

// The spawn_template probe scans /proc/kallsyms, which costs tens of milliseconds. A
// kernel cannot gain syscalls without a reboot, so a conclusive "not available" is
// remembered for the current boot (keyed by /proc/sys/kernel/random/boot_id and the
// syscall numbers) in a root-only directory. Positive answers are never cached: the
// probe that precedes any use of the syscalls always runs.
const probeCacheDir = "/run/agentexec"

func probeCacheFile(create, spawn int) (string, bool) {
	id, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", false
	}
	return filepath.Join(probeCacheDir, fmt.Sprintf("spawn-template-%s-%d-%d", strings.TrimSpace(string(id)), create, spawn)), true
}

func readProbeCache(create, spawn int) (templates.Probe, bool) {
	file, ok := probeCacheFile(create, spawn)
	if !ok || os.Getenv(templates.SyscallNumbersEnv) != "" {
		return templates.Probe{}, false
	}
	st, err := os.Stat(probeCacheDir)
	if err != nil || !st.IsDir() || st.Mode().Perm() != 0o700 || st.Sys().(*syscall.Stat_t).Uid != uint32(os.Geteuid()) {
		return templates.Probe{}, false
	}
	b, err := os.ReadFile(file)
	if err != nil || len(b) == 0 {
		return templates.Probe{}, false
	}
	return templates.Probe{Reason: string(b) + " (remembered for this boot)", Source: "cache", Conclusive: true}, true
}

func writeProbeCache(create, spawn int, p templates.Probe) {
	if p.Available || !p.Conclusive || os.Getenv(templates.SyscallNumbersEnv) != "" {
		return
	}
	file, ok := probeCacheFile(create, spawn)
	if !ok {
		return
	}
	if err := os.Mkdir(probeCacheDir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return
	}
	tmp := file + ".tmp"
	if os.WriteFile(tmp, []byte(p.Reason), 0o600) == nil {
		_ = os.Rename(tmp, file)
	}
}
