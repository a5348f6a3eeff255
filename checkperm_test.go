package agentexec_test

import (
	"strings"
	"testing"

	"github.com/agentexec/agentexec"
	"github.com/agentexec/agentexec/internal/cgroup"
)

// A host whose cgroup hierarchy exists but where this process may not create
// cgroups (an unprivileged user without a delegated subtree) is told so, and how
// to get one; a host without the controller is not.
func TestCheckCgroupPermission(t *testing.T) {
	p, _ := testPolicy(t, "  strict: {exec: /bin/true, limits: {memory: 64MiB}, enforcement: {cgroup: require}}\n")
	denied := &agentexec.Host{LandlockABI: 7, Cgroup: &cgroup.Info{Mode: cgroup.ModeUnified, Mount: "/sys/fs/cgroup", Dir: "/sys/fs/cgroup/user.slice",
		CanCreate: false, Reason: "no write access to /sys/fs/cgroup/user.slice: permission denied"}}
	r := agentexec.CheckHost(p, denied)
	if !problem(r, "permission denied creating cgroups", "Delegate=yes") {
		t.Errorf("no permission: problems %q, want permission denied and the delegation hint", r.Problems)
	}
	// Control: allowed to create, only the controller missing: no permission text.
	missing := &agentexec.Host{LandlockABI: 7, Cgroup: &cgroup.Info{Mode: cgroup.ModeUnified, Mount: "/sys/fs/cgroup", Dir: "/sys/fs/cgroup/x", CanCreate: true}}
	r = agentexec.CheckHost(p, missing)
	if !problem(r, "memory cannot be enforced") || problem(r, "permission denied") {
		t.Errorf("missing controller: problems %q", r.Problems)
	}
}

func problem(r *agentexec.Report, parts ...string) bool {
	for _, pr := range r.Problems {
		ok := true
		for _, s := range parts {
			ok = ok && strings.Contains(pr, s)
		}
		if ok {
			return true
		}
	}
	return false
}
