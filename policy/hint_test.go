package policy

import (
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// hintBase is the policy the hint tests start from, as a YAML tree so that a
// hint's patch can be applied to it (applyHint).
func hintBase() map[string]any {
	return map[string]any{
		"version": 1,
		"defaults": map[string]any{
			"filesystem": map[string]any{
				"read":    []any{"/usr", "/etc/passwd", "${WORKSPACE}"},
				"write":   []any{"${WORKSPACE}/out"},
				"exec":    []any{"/usr/bin"},
				"protect": []any{"${WORKSPACE}/.envrc"},
			},
			"network": map[string]any{"connect_tcp": []any{443}},
		},
		"tools": map[string]any{
			"cat":  map[string]any{},
			"git":  map[string]any{"args": map[string]any{"allow": []any{"status|log"}, "deny": []any{"-c"}}},
			"curl": map[string]any{"network": map[string]any{"isolated": "require"}},
		},
	}
}

func parseTree(t *testing.T, tree map[string]any) *Policy {
	t.Helper()
	b, err := yaml.Marshal(tree)
	if err != nil {
		t.Fatal(err)
	}
	return mustParse(t, string(b))
}

// applyHint adds each change of h to tree under its field path, as `list+:` (the
// policy's way to extend the defaults).
func applyHint(t *testing.T, tree map[string]any, h *Hint) {
	t.Helper()
	for _, c := range h.Patch {
		parts := strings.Split(c.Field, ".")
		m := tree
		for _, k := range parts[:len(parts)-1] {
			next, ok := m[k].(map[string]any)
			if !ok {
				next = map[string]any{}
				m[k] = next
			}
			m = next
		}
		last := parts[len(parts)-1]
		if last == "tools" { // a new tool
			m[last].(map[string]any)[c.Add.(string)] = map[string]any{}
			continue
		}
		key := last + "+"
		l, _ := m[key].([]any)
		m[key] = append(l, c.Add)
	}
}

func TestHintLandlock(t *testing.T) {
	p := parseTree(t, hintBase())
	ws := testOpts.Workspace
	tests := []struct {
		name     string
		tool     string
		d        Denial
		byDesign bool
		patch    []Change
		text     string // a substring of Text
	}{
		{name: "read a file outside the roots", tool: "cat",
			d:     Denial{Layer: LayerLandlock, Access: "fs.read_file", Object: DeniedObject{Path: "/root/.ssh/id_ed25519"}},
			patch: []Change{{"tools.cat.filesystem.read", "/root/.ssh/id_ed25519"}},
			text:  `add "/root/.ssh/id_ed25519" to tools.cat.filesystem.read`},
		{name: "list a directory", tool: "cat",
			d:     Denial{Layer: LayerLandlock, Access: "fs.read_dir", Object: DeniedObject{Path: "/root/.ssh"}},
			patch: []Change{{"tools.cat.filesystem.read", "/root/.ssh"}}},
		{name: "create a file in a read root: write only", tool: "cat",
			d:     Denial{Layer: LayerLandlock, Access: "fs.make_reg", Object: DeniedObject{Path: ws + "/src"}},
			patch: []Change{{"tools.cat.filesystem.write", ws + "/src"}}},
		{name: "write outside every root: write and read", tool: "cat",
			d:     Denial{Layer: LayerLandlock, Access: "fs.write_file", Object: DeniedObject{Path: "/var/tmp/x"}},
			patch: []Change{{"tools.cat.filesystem.write", "/var/tmp/x"}, {"tools.cat.filesystem.read", "/var/tmp/x"}},
			text:  `add "/var/tmp/x" to tools.cat.filesystem.write and to tools.cat.filesystem.read`},
		{name: "execute", tool: "cat",
			d:     Denial{Layer: LayerLandlock, Access: "fs.execute", Object: DeniedObject{Path: "/opt/bin/tool"}},
			patch: []Change{{"tools.cat.filesystem.exec", "/opt/bin/tool"}}},
		{name: "connect", tool: "cat",
			d:     Denial{Layer: LayerLandlock, Access: "net.connect_tcp", Object: DeniedObject{Addr: "127.0.0.1", Port: 8080}},
			patch: []Change{{"tools.cat.network.connect_tcp", uint16(8080)}},
			text:  "add 8080 to tools.cat.network.connect_tcp"},
		{name: "bind", tool: "cat",
			d:     Denial{Layer: LayerLandlock, Access: "net.bind_tcp", Object: DeniedObject{Addr: "127.0.0.1", Port: 34567}},
			patch: []Change{{"tools.cat.network.bind_tcp", uint16(34567)}}},
		{name: "bind an ephemeral port", tool: "cat",
			d:        Denial{Layer: LayerLandlock, Access: "net.bind_tcp", Object: DeniedObject{Addr: "127.0.0.1"}},
			byDesign: true, text: "port 0"},
		{name: "already granted: made after start", tool: "cat",
			d:    Denial{Layer: LayerLandlock, Access: "fs.read_file", Object: DeniedObject{Path: ws + "/new.txt"}},
			text: "restart the runtime"},
		{name: "signal to the agent", tool: "cat",
			d:        Denial{Layer: LayerLandlock, Access: "scope.signal", Object: DeniedObject{PID: 1, Comm: "systemd"}},
			byDesign: true, text: "not allowed by design"},
		{name: "abstract socket", tool: "cat",
			d:        Denial{Layer: LayerLandlock, Access: "scope.abstract_unix_socket", Object: DeniedObject{Path: "@x"}},
			byDesign: true},
		{name: "ptrace", tool: "cat", d: Denial{Layer: LayerLandlock, Access: "ptrace", Object: DeniedObject{PID: 7}}, byDesign: true},
		{name: "device node", tool: "cat", d: Denial{Layer: LayerLandlock, Access: "fs.make_char", Object: DeniedObject{Path: ws}}, byDesign: true},
		{name: "git hooks", tool: "cat",
			d:        Denial{Layer: LayerLandlock, Access: "fs.make_reg", Object: DeniedObject{Path: ws + "/.git/hooks"}},
			byDesign: true, text: ".git/hooks"},
		{name: "git config", tool: "cat",
			d:        Denial{Layer: LayerLandlock, Access: "fs.write_file", Object: DeniedObject{Path: ws + "/.git/config"}},
			byDesign: true},
		{name: "git objects are not protected", tool: "cat",
			d:     Denial{Layer: LayerLandlock, Access: "fs.make_reg", Object: DeniedObject{Path: ws + "/.git/objects/ab"}},
			patch: []Change{{"tools.cat.filesystem.write", ws + "/.git/objects/ab"}}},
		{name: "protect list", tool: "cat",
			d:        Denial{Layer: LayerLandlock, Access: "fs.write_file", Object: DeniedObject{Path: ws + "/.envrc"}},
			byDesign: true, text: "filesystem.protect"},
		{name: "runtime state", tool: "cat",
			d:        Denial{Layer: LayerLandlock, Access: "fs.make_reg", Object: DeniedObject{Path: "/run/agentexec"}},
			byDesign: true},
		{name: "cgroup limits", tool: "cat",
			d:        Denial{Layer: LayerLandlock, Access: "fs.write_file", Object: DeniedObject{Path: "/sys/fs/cgroup/x/memory.max"}},
			byDesign: true},
		{name: "seccomp mount", tool: "cat", d: Denial{Layer: LayerSeccomp, Access: "seccomp.mount", Object: DeniedObject{Syscall: "mount"}}, byDesign: true},
		{name: "seccomp socket", tool: "cat",
			d:    Denial{Layer: LayerSeccomp, Access: "seccomp.socket", Object: DeniedObject{Syscall: "socket"}},
			text: "set tools.cat.network.unix: true"},
		{name: "isolated network", tool: "curl", d: Denial{Layer: LayerNetwork, Access: "net.connect_tcp", Object: DeniedObject{Port: 80}}, byDesign: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := p.Hint(tc.tool, tc.d)
			if h == nil {
				t.Fatal("no hint")
			}
			if h.ByDesign != tc.byDesign {
				t.Errorf("ByDesign %v, want %v (%s)", h.ByDesign, tc.byDesign, h.Text)
			}
			if !reflect.DeepEqual(h.Patch, tc.patch) {
				t.Errorf("patch %#v, want %#v", h.Patch, tc.patch)
			}
			if h.ByDesign && (len(h.Patch) > 0 || !strings.HasPrefix(h.Text, "not allowed by design: ")) {
				t.Errorf("by-design hint with a patch or the wrong wording: %+v", h)
			}
			if !strings.Contains(h.Text, tc.text) {
				t.Errorf("text %q, want it to contain %q", h.Text, tc.text)
			}
		})
	}
}

// TestHintApplied applies each patch to the policy and checks that the same
// denial is then granted by the policy's lists (its hint says so, with no patch),
// while the other tools are unchanged: the patch is enough and touches only the
// denied tool.
func TestHintApplied(t *testing.T) {
	ws := testOpts.Workspace
	for _, d := range []Denial{
		{Layer: LayerLandlock, Access: "fs.read_file", Object: DeniedObject{Path: "/root/.ssh/id_ed25519"}},
		{Layer: LayerLandlock, Access: "fs.make_reg", Object: DeniedObject{Path: ws + "/src"}},
		{Layer: LayerLandlock, Access: "fs.write_file", Object: DeniedObject{Path: "/var/tmp/x"}},
		{Layer: LayerLandlock, Access: "fs.execute", Object: DeniedObject{Path: "/opt/bin/tool"}},
		{Layer: LayerLandlock, Access: "net.connect_tcp", Object: DeniedObject{Port: 8080}},
		{Layer: LayerLandlock, Access: "net.bind_tcp", Object: DeniedObject{Port: 34567}},
	} {
		tree := hintBase()
		p := parseTree(t, tree)
		h := p.Hint("cat", d)
		if h == nil || len(h.Patch) == 0 {
			t.Fatalf("%s %+v: no patch: %+v", d.Access, d.Object, h)
		}
		applyHint(t, tree, h)
		p2 := parseTree(t, tree)
		cat, _ := p2.Tool("cat")
		switch {
		case strings.HasPrefix(d.Access, "net.connect"):
			if !containsPort(cat.Profile.Network.ConnectTCP, d.Object.Port) {
				t.Errorf("%s: port %d not granted after the patch: %v", d.Access, d.Object.Port, cat.Profile.Network.ConnectTCP)
			}
		case strings.HasPrefix(d.Access, "net.bind"):
			if !containsPort(cat.Profile.Network.BindTCP, d.Object.Port) {
				t.Errorf("%s: port %d not granted after the patch", d.Access, d.Object.Port)
			}
		default:
			if h2 := p2.Hint("cat", d); len(h2.Patch) != 0 || !strings.Contains(h2.Text, "already granted") {
				t.Errorf("%s %s: after the patch the hint is still %+v", d.Access, d.Object.Path, h2)
			}
		}
		// The defaults still hold for cat (read+ extends, not replaces).
		if h3 := p2.Hint("cat", Denial{Layer: LayerLandlock, Access: "fs.read_file", Object: DeniedObject{Path: "/etc/passwd"}}); len(h3.Patch) != 0 {
			t.Errorf("%s: the patch dropped the default read roots: %+v", d.Access, h3)
		}
		git, _ := p2.Tool("git")
		if g := git.Profile; reflect.DeepEqual(g.FS, cat.Profile.FS) && reflect.DeepEqual(g.Network, cat.Profile.Network) {
			t.Errorf("%s: the patch reached tool git too", d.Access)
		}
	}
}

func containsPort(ps []uint16, p uint16) bool {
	for _, x := range ps {
		if x == p {
			return true
		}
	}
	return false
}

func TestHintPolicyLayer(t *testing.T) {
	p := parseTree(t, hintBase())
	for _, tc := range []struct {
		tool     string
		d        Denial
		byDesign bool
		patch    []Change
	}{
		{"jq", Denial{Layer: LayerPolicy, Access: "policy.launch", Object: DeniedObject{Name: "jq", Rule: "tools"}}, false,
			[]Change{{"tools", "jq"}}},
		{"git", Denial{Layer: LayerPolicy, Access: "policy.argv", Object: DeniedObject{Rule: "tools.git.args.deny[0]", Args: []string{"-c"}}}, true, nil},
		{"git", Denial{Layer: LayerPolicy, Access: "policy.argv", Object: DeniedObject{Rule: "tools.git.args.allow", Args: []string{"show", "HEAD"}}}, false,
			[]Change{{"tools.git.args.allow", "show HEAD"}}},
		{"cat", Denial{Layer: LayerPolicy, Access: "policy.dir", Object: DeniedObject{Path: "/srv"}}, false,
			[]Change{{"tools.cat.filesystem.read", "/srv"}}},
		{"cat", Denial{Layer: LayerPolicy, Access: "policy.env", Object: DeniedObject{Name: "HOME"}}, false,
			[]Change{{"tools.cat.env.allow", "HOME"}}},
	} {
		h := p.Hint(tc.tool, tc.d)
		if h == nil || h.ByDesign != tc.byDesign || !reflect.DeepEqual(h.Patch, tc.patch) {
			t.Errorf("%s %s: %+v, want by_design=%v patch=%v", tc.tool, tc.d.Access, h, tc.byDesign, tc.patch)
		}
	}
	// A landlock denial of a tool the policy does not have has no hint.
	if h := p.Hint("nope", Denial{Layer: LayerLandlock, Access: "fs.read_file", Object: DeniedObject{Path: "/x"}}); h != nil {
		t.Errorf("unknown tool: %+v", h)
	}
}

// A denial under /proc/PID/… hints at /proc: the pid is the launch's own and
// will differ next time. Control: another path is hinted as it is.
func TestHintProcPID(t *testing.T) {
	p, err := Parse("p.yaml", []byte("version: 1\nworkspace: /ws\ntools:\n  sh: {exec: /bin/sh}\n"), Options{Workspace: "/ws", Home: "/root", CPUs: 2})
	if err != nil {
		t.Fatal(err)
	}
	h := p.Hint("sh", Denial{Layer: LayerLandlock, Access: "fs.read_file", Object: DeniedObject{Path: "/proc/15895/mounts"}, Count: 1})
	if h == nil || len(h.Patch) != 1 || h.Patch[0].Add != "/proc" {
		t.Errorf("hint %+v, want /proc added", h)
	}
	h = p.Hint("sh", Denial{Layer: LayerLandlock, Access: "fs.read_file", Object: DeniedObject{Path: "/procfoo/1"}, Count: 1})
	if h == nil || len(h.Patch) != 1 || h.Patch[0].Add != "/procfoo/1" {
		t.Errorf("control hint %+v", h)
	}
}
