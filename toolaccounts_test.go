package agentexec_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/agentexec/agentexec"
	"github.com/agentexec/agentexec/internal/testutil"
	"github.com/agentexec/agentexec/policy"
)

// The tool identity of a root runtime has an account name in its tools' view, so
// that programs that look their user up (ssh, git, whoami) run; the host's
// /etc/passwd is untouched and the tools cannot change their copy. Control:
// without the copies, whoami finds no name for the uid (what ssh's "No user
// exists for uid" is).
func TestToolIdentityHasAnAccount(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireLandlockABI(t, 6)
	hostPasswd, err := os.ReadFile("/etc/passwd")
	if err != nil {
		t.Fatal(err)
	}
	y := `version: 1
defaults:
  filesystem:
    read: [/usr, /lib, /lib64, /bin, /etc]
    exec: [/usr, /bin, /lib, /lib64]
  env: {set: {PATH: /usr/bin:/bin}}
  enforcement: {landlock: require, cgroup: best_effort}
tools:
  sh: {exec: /bin/sh}
`
	script := `id -u; whoami 2>&1; id -gn 2>&1 | tail -n 1; (echo x >> /etc/passwd) 2>&1 | grep -q . && echo read-only || echo appended`
	run := func(t *testing.T, opts ...agentexec.Option) []string {
		t.Helper()
		p, err := policy.Parse("accounts.yaml", []byte(y), policy.Options{Workspace: t.TempDir(), Home: "/root", CPUs: 2})
		if err != nil {
			t.Fatal(err)
		}
		if err := policy.Resolve(p); err != nil {
			t.Fatal(err)
		}
		rt := newRuntime(t, p, opts...)
		res, err := rt.Run(context.Background(), agentexec.Request{Tool: "sh", Dir: "/usr", Args: []string{"-c", script}})
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(res.Stdout)), "\n")
		if len(lines) != 4 {
			t.Fatalf("output %q (stderr %q)", res.Stdout, res.Stderr)
		}
		return lines
	}
	t.Run("named", func(t *testing.T) {
		l := run(t)
		if l[1] != "agentexec-tool" || l[2] != "agentexec-tool" {
			t.Errorf("uid %s: whoami %q, group %q; want agentexec-tool for both", l[0], l[1], l[2])
		}
		if l[3] != "read-only" {
			t.Errorf("a tool appended to its /etc/passwd: %q", l[3])
		}
	})
	t.Run("control", func(t *testing.T) {
		l := run(t, agentexec.WithoutToolAccountsForTest())
		// coreutils: "cannot find name for user ID N"; busybox: "unknown uid N".
		if !strings.Contains(l[1], l[0]) || strings.Contains(l[1], "agentexec-tool") {
			t.Errorf("without the account, whoami said %q; want it to find no name for uid %s", l[1], l[0])
		}
	})
	if after, _ := os.ReadFile("/etc/passwd"); string(after) != string(hostPasswd) {
		t.Errorf("the host's /etc/passwd changed")
	}
	if strings.Contains(string(hostPasswd), "agentexec-tool") {
		t.Errorf("the host's /etc/passwd names %s", "agentexec-tool")
	}
	if m, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(m), " /etc/passwd ") {
		t.Error("/etc/passwd is mounted over in the host's namespace")
	}
}
