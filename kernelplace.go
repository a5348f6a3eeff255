package agentexec

import (
	"bufio"
	"os"
	"strings"

	"github.com/agentexec/agentexec/internal/templates"
	"github.com/agentexec/agentexec/policy"
)

// A kernel-template child cannot be born in its cgroup: the spawn_template RFC
// has no action that places it, so the spawner writes its pid into the launch
// group's cgroup.procs right after the spawn (docs/templates.md). Moving a task
// between cgroups waits for an RCU grace period unless the cgroup2 hierarchy is
// mounted with favordynmods: 12–15 ms per launch in the RFC guest, more than the
// launch itself, and for that long the child runs outside its limits. So
// `kernel_templates: auto` takes the kernel backend only where placement is
// cheap (favordynmods) or where there is no cgroup2 hierarchy to place children
// in; `require` takes it regardless (check says what it costs).

// cgroupPlacementSlow reports whether moving a task into a cgroup of this host's
// cgroup2 hierarchy waits for a grace period (mounted without favordynmods), and
// why in words. No cgroup2 mount: not slow (nothing is placed).
func cgroupPlacementSlow() (bool, string) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, ""
	}
	defer f.Close()
	return placementSlow(bufio.NewScanner(f))
}

func placementSlow(sc *bufio.Scanner) (bool, string) {
	for sc.Scan() {
		// mountinfo: ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [TAGS...] - FSTYPE SOURCE SUPEROPTS
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		fields := strings.Fields(post)
		if len(fields) < 3 || fields[0] != "cgroup2" {
			continue
		}
		for _, o := range strings.Split(fields[2], ",") {
			if o == "favordynmods" {
				return false, ""
			}
		}
		if pf := strings.Fields(pre); len(pf) >= 5 {
			return true, "the cgroup2 hierarchy at " + pf[4] + " is mounted without favordynmods: placing each kernel-template child in its cgroup after the spawn waits for an RCU grace period (milliseconds, with the child outside its limits meanwhile)"
		}
	}
	return false, ""
}

// kernelBackend decides whether launches use kernel templates, for New and
// check alike: the policy's kernel_templates against the probe
// (templates.UseKernel), then auto's placement rule. note says why auto takes the
// userspace backend although the syscalls are there, or under require what the
// kernel backend costs on this host ("" otherwise).
func kernelBackend(mode policy.KernelTemplates, probe templates.Probe) (use bool, note string, err error) {
	if use, err = templates.UseKernel(string(mode), probe); err != nil || !use {
		return false, "", err
	}
	slow, reason := cgroupPlacementSlow()
	switch {
	case !slow:
		return true, "", nil
	case mode == policy.KernelTemplatesRequire:
		return true, "kernel_templates: require: " + reason, nil
	default:
		return false, "kernel_templates: auto uses the userspace backend: " + reason + "; remount it with -o remount,favordynmods or set kernel_templates: require", nil
	}
}
