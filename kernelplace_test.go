package agentexec

import (
	"bufio"
	"strings"
	"testing"

	"github.com/agentexec/agentexec/internal/templates"
	"github.com/agentexec/agentexec/policy"
)

// placementSlow reads the cgroup2 mount's super options: without favordynmods a
// kernel-template child's placement waits for a grace period; with it, or with
// no cgroup2 mount at all, it does not.
func TestPlacementSlow(t *testing.T) {
	const v1 = "34 25 0:29 / /sys/fs/cgroup/memory rw,nosuid shared:15 - cgroup cgroup rw,memory\n"
	for _, tc := range []struct {
		name, info string
		slow       bool
	}{
		{"default", v1 + "35 25 0:30 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:16 - cgroup2 cgroup2 rw,nsdelegate\n", true},
		{"favordynmods", "35 25 0:30 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate,favordynmods,memory_recursiveprot\n", false},
		{"no cgroup2", v1, false},
	} {
		slow, why := placementSlow(bufio.NewScanner(strings.NewReader(tc.info)))
		if slow != tc.slow {
			t.Errorf("%s: slow %v (%q), want %v", tc.name, slow, why, tc.slow)
		}
		if slow && !strings.Contains(why, "favordynmods") {
			t.Errorf("%s: reason %q does not name the mount option", tc.name, why)
		}
	}
	// off and an unavailable probe never take the kernel backend; require takes it
	// whatever the mount (auto's choice depends on this host's mount: not asserted).
	avail := templates.Probe{Available: true}
	for _, tc := range []struct {
		mode  policy.KernelTemplates
		probe templates.Probe
		want  bool
	}{
		{policy.KernelTemplatesOff, avail, false},
		{policy.KernelTemplatesRequire, avail, true},
		{policy.KernelTemplatesAuto, templates.Probe{}, false},
	} {
		if use, _, err := kernelBackend(tc.mode, tc.probe); use != tc.want || err != nil {
			t.Errorf("%s (available %v): use %v, err %v; want %v", tc.mode, tc.probe.Available, use, err, tc.want)
		}
	}
	if _, _, err := kernelBackend(policy.KernelTemplatesRequire, templates.Probe{Reason: "absent"}); err == nil {
		t.Error("require without the syscalls: no error")
	}
}
