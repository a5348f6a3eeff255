package policy_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/agentexec/agentexec/configs"
	"github.com/agentexec/agentexec/policy"
)

// TestConfigs loads every example policy on this machine: each must parse, validate
// and resolve (tools absent here are reported on the tool, not fatal).
func TestConfigs(t *testing.T) {
	names, err := fs.Glob(configs.FS, "*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"agent.yaml", "ci.yaml", "default.yaml", "readonly.yaml"} {
		if !slices.Contains(names, want) {
			t.Errorf("configs.FS lacks %s (has %v)", want, names)
		}
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			data, err := configs.FS.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			p, err := policy.LoadBytes(name, data, policy.Options{})
			if err != nil {
				t.Fatalf("LoadBytes: %v", err)
			}
			if len(p.Tools) == 0 || len(p.Profiles) == 0 {
				t.Fatalf("%d tools, %d profiles", len(p.Tools), len(p.Profiles))
			}
			found := 0
			for _, tl := range p.Tools {
				if tl.ResolveError != nil {
					t.Logf("%s: %v", tl.Name, tl.ResolveError)
					continue
				}
				found++
			}
			// The core tools exist on every machine this project supports.
			for _, core := range []string{"cat", "ls", "sh", "grep"} {
				if tl, ok := p.Tool(core); ok && tl.Path == "" {
					t.Errorf("core tool %s unresolved: %v", core, tl.ResolveError)
				}
			}
			for _, pr := range p.Profiles {
				if pr.Enforcement.Landlock != policy.Require {
					t.Errorf("profile %s: landlock %q, the examples all require Landlock", pr.Name, pr.Enforcement.Landlock)
				}
				if pr.Limits.Memory == 0 || pr.Limits.Pids == 0 {
					t.Errorf("profile %s has no memory or pids limit: %+v", pr.Name, pr.Limits)
				}
				if !pr.IPC.ScopeSignals || !pr.IPC.ScopeAbstractUnix {
					t.Errorf("profile %s: IPC scopes off", pr.Name)
				}
			}
			t.Logf("%d tools (%d found here), %d profiles", len(p.Tools), found, len(p.Profiles))
		})
	}
}

// TestDefaultPolicy checks what the embedded default promises: read-only tools,
// nothing writable but /dev/null, no network, the workspace readable.
func TestDefaultPolicy(t *testing.T) {
	ws := t.TempDir()
	p, err := policy.Parse(configs.DefaultName, configs.Default, policy.Options{Workspace: ws, Home: "/home/x", CPUs: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Profiles) != 1 || p.Profiles[0].Name != "default" {
		t.Fatalf("profiles: %d, first %q", len(p.Profiles), p.Profiles[0].Name)
	}
	pr := p.Profiles[0]
	if !slices.Equal(pr.FS.Write, []string{"/dev/null"}) {
		t.Errorf("write roots %q", pr.FS.Write)
	}
	if !slices.Contains(pr.FS.Read, ws) || slices.Contains(pr.FS.Read, "/etc") || slices.Contains(pr.FS.Read, "/proc") {
		t.Errorf("read roots %q", pr.FS.Read)
	}
	if len(pr.Network.ConnectTCP)+len(pr.Network.BindTCP) != 0 || pr.Network.Unix {
		t.Errorf("network %+v", pr.Network)
	}
	if pr.Limits.Memory != 512<<20 || pr.Limits.Pids != 128 || pr.Concurrency != 4 {
		t.Errorf("limits %+v concurrency %d", pr.Limits, pr.Concurrency)
	}
	for _, tool := range []string{"cat", "head", "tail", "ls", "grep", "find", "stat", "wc", "sed", "rg", "git", "true", "echo"} {
		tl, ok := p.Tool(tool)
		if !ok {
			t.Errorf("default policy lacks %s", tool)
			continue
		}
		if tl.Required {
			t.Errorf("%s is required; tools absent on a host must not be fatal", tool)
		}
		if tl.Timeout.Seconds() != 30 || tl.OutputBytes != 16<<20 {
			t.Errorf("%s: timeout %v output %d", tool, tl.Timeout, tl.OutputBytes)
		}
	}
	sed, _ := p.Tool("sed")
	for _, args := range [][]string{{"-i", "s/a/b/", "f"}, {"--in-place", "s/a/b/"}, {"-ni", "p"}} {
		if sed.Args.Check(args) == nil {
			t.Errorf("sed %q allowed", args)
		}
	}
	if d := sed.Args.Check([]string{"-n", "s/a/b/p", "f"}); d != nil {
		t.Errorf("sed -n denied: %v", d)
	}
	git, _ := p.Tool("git")
	for args, ok := range map[string]bool{"status": true, "log --oneline -5": true, "diff HEAD": true,
		"push": false, "commit -m x": false, "-c core.pager=x log": false, "diff --output=/tmp/x": false, "": false} {
		if got := git.Args.Check(strings.Fields(args)) == nil; got != ok {
			t.Errorf("git %q allowed = %v, want %v", args, got, ok)
		}
	}
	if !git.Env.Allowed("LANG") || git.Env.Allowed("HOME") || git.Env.Allowed("GIT_DIR") {
		t.Errorf("git env allow-list %q", git.Env.Allow)
	}
	// Test files load the repository's files too, as a user would.
	for _, name := range []string{"default.yaml", "agent.yaml", "ci.yaml", "readonly.yaml"} {
		file := filepath.Join("..", "configs", name)
		if _, err := os.Stat(file); err != nil {
			t.Errorf("%s: %v", file, err)
			continue
		}
		if _, err := policy.Load(file, policy.Options{Workspace: ws}); err != nil {
			t.Errorf("Load(%s): %v", file, err)
		}
	}
}
