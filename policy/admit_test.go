package policy

import (
	"slices"
	"testing"
)

const admitPolicy = `version: 1
workspace: /ws
defaults:
  filesystem:
    read: [/usr, "${WORKSPACE}"]
    write: ["${WORKSPACE}/out"]
  env:
    allow: [FOO, LC_*, PATH]
    set:
      PATH: /usr/bin:/bin
  limits:
    memory: 64MiB
    pids: 32
tools:
  cat: {exec: /bin/cat}
  git:
    exec: /usr/bin/git
    args:
      allow: ["status|log"]
      deny: ["push"]
`

func TestAdmit(t *testing.T) {
	p, err := Parse("admit.yaml", []byte(admitPolicy), Options{Workspace: "/ws", Home: "/root", CPUs: 2})
	if err != nil {
		t.Fatal(err)
	}
	refused := []struct {
		name string
		req  LaunchRequest
		rule string
		op   string
	}{
		{"unknown tool", LaunchRequest{Tool: "rm"}, "tools", "launch"},
		{"denied argv", LaunchRequest{Tool: "git", Args: []string{"push"}}, "tools.git.args.deny[0]", "argv"},
		{"no allow pattern", LaunchRequest{Tool: "git", Args: []string{"gc"}}, "tools.git.args.allow", "argv"},
		{"dir outside", LaunchRequest{Tool: "cat", Dir: "/etc"}, "tools.cat.filesystem", "dir"},
		{"dir escapes by ..", LaunchRequest{Tool: "cat", Dir: "../etc"}, "tools.cat.filesystem", "dir"},
		{"env not allowed", LaunchRequest{Tool: "cat", Env: map[string]string{"LD_PRELOAD": "/x.so"}}, "tools.cat.env.allow", "env"},
		{"memory above", LaunchRequest{Tool: "cat", Limits: &Limits{Memory: 128 << 20}}, "tools.cat.limits.memory", "limits"},
		{"pids above", LaunchRequest{Tool: "cat", Limits: &Limits{Pids: 33}}, "tools.cat.limits.pids", "limits"},
	}
	for _, c := range refused {
		a, r := p.Admit(c.req)
		if r == nil {
			t.Errorf("%s: admitted %+v", c.name, a)
			continue
		}
		if r.Rule != c.rule || r.Op != c.op {
			t.Errorf("%s: refused by %s (%s), want %s (%s): %v", c.name, r.Rule, r.Op, c.rule, c.op, r)
		}
	}

	// The controls: the same requests within the rules are admitted.
	a, r := p.Admit(LaunchRequest{Tool: "git", Args: []string{"status"}, Dir: "out",
		Env: map[string]string{"LC_ALL": "C", "FOO": "1", "PATH": "/evil"}, Limits: &Limits{Memory: 32 << 20}})
	if r != nil {
		t.Fatalf("admit: %v", r)
	}
	if a.Dir != "/ws/out" {
		t.Errorf("dir %q, want /ws/out", a.Dir)
	}
	// Sorted request variables, then the fixed ones, which win over the request's.
	if want := []string{"FOO=1", "LC_ALL=C", "PATH=/usr/bin:/bin"}; !slices.Equal(a.Env, want) {
		t.Errorf("env %q, want %q", a.Env, want)
	}
	if !a.LimitsAsked || a.Limits.Memory != 32<<20 || a.Limits.Pids != 32 {
		t.Errorf("limits %+v asked %v, want memory lowered to 32MiB and pids kept", a.Limits, a.LimitsAsked)
	}
	if a, r := p.Admit(LaunchRequest{Tool: "cat"}); r != nil || a.Dir != "/ws" || a.LimitsAsked || a.Limits != a.Tool.Profile.Limits {
		t.Errorf("plain request: %+v, %v", a, r)
	}
}
