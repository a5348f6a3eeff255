package policy

import (
	"errors"
	"strings"
	"testing"
	"time"
)

var testOpts = Options{Workspace: "/work/ws", Home: "/home/u", TmpDir: "/tmp", CPUs: 3}

// base is a valid policy; tests append to it or replace parts.
const base = `version: 1
defaults:
  filesystem:
    read: [/usr, "${WORKSPACE}"]
    exec: [/usr]
tools:
  cat: {}
`

func mustParse(t *testing.T, src string) *Policy {
	t.Helper()
	p, err := Parse("p.yaml", []byte(src), testOpts)
	if err != nil {
		t.Fatalf("Parse: %v\n--- policy:\n%s", err, src)
	}
	return p
}

// TestParseErrors checks that each malformed policy gives exactly the expected
// problems, each located by file:line:col and named by its field path.
func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"issue example: bad size", `version: 1
defaults:
  filesystem: {read: [/usr], exec: [/usr]}
tools:
  git:
    limits:
      memory: 12XB
`, []string{`p.yaml:7:15: tools.git.limits.memory: "12XB" is not a size: unknown unit "XB" (use B, KiB, MiB, GiB, TiB, K, M, G, T, KB, MB, GB or TB)`}},
		{"unknown field with suggestion", base + "  git: {hott: true}\n",
			[]string{`p.yaml:8:9: tools.git.hott: unknown field "hott" (did you mean "hot"?)`}},
		{"unknown top-level field", "version: 1\nflesystem: {}\ntools: {cat: {}}\n",
			[]string{`p.yaml:2:1: flesystem: unknown field "flesystem" (known: version, workspace, path, kernel_templates, kernel_denials, spawn_template_syscalls, shell, defaults, tools, secrets)`}},
		{"wrong type bool", base + "  git: {hot: \"yes\"}\n",
			[]string{`p.yaml:8:14: tools.git.hot: expected true or false, got "yes"`}},
		{"wrong type list", "version: 1\ndefaults:\n  filesystem:\n    read: {a: b}\ntools: {cat: {}}\n",
			[]string{`p.yaml:4:11: defaults.filesystem.read: expected a list, got a mapping`}},
		{"duration without unit", base + "  git:\n    limits: {timeout: 30}\n",
			[]string{`p.yaml:9:23: tools.git.limits.timeout: 30 is not a duration: give a unit, as 30s`}},
		{"bad duration", base + "  git:\n    limits: {timeout: 5 minutes}\n",
			[]string{`p.yaml:9:23: tools.git.limits.timeout: "5 minutes" is not a duration (examples: 30s, 1m30s, 250ms)`}},
		{"bad cpu", base + "  git:\n    limits: {cpu: lots}\n",
			[]string{`p.yaml:9:19: tools.git.limits.cpu: "lots" is not a CPU limit (write cores, as 1.5, or a percentage, as 150%)`}},
		{"cpu too small", base + "  git:\n    limits: {cpu: 0.5%}\n",
			[]string{`p.yaml:9:19: tools.git.limits.cpu: "0.5%": a CPU limit must be at least 0.01 cores (1%)`}},
		{"pids not an int", base + "  git:\n    limits: {pids: many}\n",
			[]string{`p.yaml:9:20: tools.git.limits.pids: expected an integer, got "many"`}},
		{"zero memory", base + "  git:\n    limits: {memory: 0}\n",
			[]string{`p.yaml:9:22: tools.git.limits.memory: "0": a size must be at least 1 byte (write unlimited for no limit)`}},
		{"duplicate tool", base + "  cat: {hot: true}\n",
			[]string{`p.yaml:8:3: tools.cat: duplicate key "cat" (first defined at line 7, column 3)`}},
		{"duplicate nested key", "version: 1\ndefaults:\n  limits: {pids: 1, pids: 2}\n  filesystem: {read: [/usr], exec: [/usr]}\ntools: {cat: {}}\n",
			[]string{`p.yaml:3:21: defaults.limits.pids: duplicate key "pids" (first defined at line 3, column 12)`}},
		{"relative read path", "version: 1\ndefaults:\n  filesystem:\n    read: [/usr, src/lib]\ntools: {cat: {}}\n",
			[]string{`p.yaml:4:18: defaults.filesystem.read[1]: "src/lib" is not an absolute path`}},
		{"relative after expansion is impossible, bare $ is an error", "version: 1\ndefaults:\n  filesystem:\n    read: [$HOME/x]\ntools: {cat: {}}\n",
			[]string{`p.yaml:4:12: defaults.filesystem.read[0]: "$HOME/x": a bare $ is not expanded; write ${WORKSPACE}, ${HOME} or ${TMPDIR} (or $$ for a literal $)`}},
		{"unknown variable", "version: 1\ndefaults:\n  filesystem:\n    read: [\"${PROJECT}/src\"]\ntools: {cat: {}}\n",
			[]string{`p.yaml:4:12: defaults.filesystem.read[0]: "${PROJECT}/src": unknown variable ${PROJECT} (known: ${WORKSPACE}, ${HOME}, ${TMPDIR})`}},
		{"write outside read", "version: 1\ndefaults:\n  filesystem:\n    read: [/usr]\n    write: [/var/tmp]\ntools: {cat: {}, ls: {}}\n",
			[]string{`p.yaml:5:13: defaults.filesystem.write[0]: "/var/tmp" is outside every read root; add it (or a parent) to filesystem.read`}},
		{"tool replaces read roots", "version: 1\ndefaults:\n  filesystem:\n    read: [/usr, /var]\n    write: [/var/tmp]\ntools:\n  cat:\n    filesystem: {read: [/usr]}\n",
			[]string{`p.yaml:5:13: defaults.filesystem.write[0]: "/var/tmp" is outside every read root of tool cat (whose filesystem.read replaces the default read roots)`}},
		{"version missing", "tools: {cat: {}}\n",
			[]string{`p.yaml:1:1: version: missing (add "version: 1")`}},
		{"version unknown", "version: 2\nsomething_new: true\n",
			[]string{`p.yaml:1:10: version: version 2 is not supported by this build (knows 1)`}},
		{"version wrong type", "version: \"1\"\n",
			[]string{`p.yaml:1:10: version: expected an integer, got "1"`}},
		{"empty policy", "",
			[]string{`p.yaml: version: missing: the policy is empty (this build reads version 1)`}},
		{"bad argv patterns", base + "  git:\n    args:\n      allow: [\"status||diff\", \"\"]\n      deny: [push, {x: y}]\n",
			[]string{
				`p.yaml:10:15: tools.git.args.allow[0]: pattern "status||diff": word 1 ("status||diff") has an empty alternative`,
				`p.yaml:10:31: tools.git.args.allow[1]: empty pattern`,
				`p.yaml:11:20: tools.git.args.deny[1]: expected a string, got a mapping`,
			}},
		{"port out of range", base + "  curl:\n    network: {connect_tcp: [443, 0, 65536]}\n",
			[]string{
				`p.yaml:9:34: tools.curl.network.connect_tcp[1]: 0 is out of range (1 to 65535)`,
				`p.yaml:9:37: tools.curl.network.connect_tcp[2]: 65536 is out of range (1 to 65535)`,
			}},
		{"bad enforcement", base + "  git:\n    enforcement: {landlock: maybe}\n",
			[]string{`p.yaml:9:29: tools.git.enforcement.landlock: "maybe" is not one of require, best_effort`}},
		{"bad kernel_templates", "kernel_templates: sometimes\n" + base,
			[]string{`p.yaml:1:19: kernel_templates: "sometimes" is not one of auto, off, require`}},
		{"shell names no tool", "shell: bash\n" + base,
			[]string{`p.yaml:1:8: shell: "bash" is not a tool of this policy`}},
		{"extend in defaults", "version: 1\ndefaults:\n  filesystem:\n    read+: [/usr]\ntools: {cat: {}}\n",
			[]string{`p.yaml:4:5: defaults.filesystem.read+: read+ extends the defaults, which only a tool can do; write read`}},
		{"both read and read+", base + "  git:\n    filesystem: {read: [/a], read+: [/b]}\n",
			[]string{`p.yaml:9:30: tools.git.filesystem.read+: both read and read+ are set; use one`}},
		{"relative exec", base + "  rg: {exec: ./bin/rg}\n",
			[]string{`p.yaml:8:14: tools.rg.exec: "./bin/rg" is a relative path; give an absolute path or a bare name looked up in path:`}},
		{"yaml syntax", "version: 1\ntools:\n  cat: {\n",
			[]string{`p.yaml:3:8: YAML syntax error: did not find expected node content: the '{' here is never closed`}},
		{"two documents", base + "---\nversion: 1\n",
			[]string{`p.yaml:8:1: a policy is a single YAML document; found another one here`}},
		{"user missing gid", base + "  git:\n    user: {uid: 1000}\n",
			[]string{`p.yaml:9:11: tools.git.user: gid is missing`}},
		{"merge keys", "version: 1\nx: &x {hot: true}\ntools:\n  cat: {<<: *x}\n",
			[]string{
				`p.yaml:2:1: x: unknown field "x" (known: version, workspace, path, kernel_templates, kernel_denials, spawn_template_syscalls, shell, defaults, tools, secrets)`,
				`p.yaml:4:9: tools.cat.<<: merge keys (<<) are not supported; use an alias (*name) for a whole value instead`,
			}},
		{"no tools", "version: 1\ntools: {}\n",
			[]string{`p.yaml:2:8: tools: a policy needs at least one tool`}},
		{"bad tool name", base + "  \"-rf\": {}\n",
			[]string{`p.yaml:8:3: tools.-rf: "-rf" is not a valid tool name (letters, digits and . _ + -, not starting with . + -)`}},
		{"bad env names", base + "  git:\n    env:\n      allow: [\"A=B\"]\n      set: {\"1X\": y}\n",
			[]string{
				`p.yaml:10:15: tools.git.env.allow[0]: "A=B" is not a variable name or glob (letters, digits, _, * and ?)`,
				`p.yaml:11:13: tools.git.env.set.1X: "1X" is not a valid variable name`,
			}},
		{"syscall numbers", "spawn_template_syscalls: {create: 470}\n" + base,
			[]string{`p.yaml:1:26: spawn_template_syscalls: spawn is missing`}},
		{"concurrency", base + "  git: {concurrency: 0}\n",
			[]string{`p.yaml:8:22: tools.git.concurrency: 0 is out of range (1 to 65536)`}},
		{"many problems at once", `version: 1
defaults:
  filesystem:
    read: [relative]
  limits: {memory: 1XB, pids: -1}
tools:
  git: {hot: 1, bogus: 2}
`, []string{
			`p.yaml:4:12: defaults.filesystem.read[0]: "relative" is not an absolute path`,
			`p.yaml:5:20: defaults.limits.memory: "1XB" is not a size: unknown unit "XB" (use B, KiB, MiB, GiB, TiB, K, M, G, T, KB, MB, GB or TB)`,
			`p.yaml:5:31: defaults.limits.pids: -1 is out of range (1 to 4194304)`,
			`p.yaml:7:14: tools.git.hot: expected true or false, got the number 1`,
			`p.yaml:7:17: tools.git.bogus: unknown field "bogus" (known: exec, hot, required, args, filesystem, network, ipc, env, limits, enforcement, concurrency, user)`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse("p.yaml", []byte(tt.src), testOpts)
			if err == nil {
				t.Fatalf("Parse succeeded (%d tools), want errors:\n%s", len(p.Tools), strings.Join(tt.want, "\n"))
			}
			if p != nil {
				t.Errorf("Parse returned a policy along with errors")
			}
			got := strings.Split(err.Error(), "\n")
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("errors:\n got: %s\nwant: %s", strings.Join(got, "\n      "), strings.Join(tt.want, "\n      "))
			}
			// Every problem is a *FieldError reachable through the join.
			var fe *FieldError
			if !errors.As(err, &fe) || fe.File != "p.yaml" {
				t.Errorf("errors.As(*FieldError) = %v (%+v)", fe != nil, fe)
			}
			if j, ok := err.(interface{ Unwrap() []error }); ok && len(j.Unwrap()) != len(tt.want) {
				t.Errorf("joined %d errors, want %d", len(j.Unwrap()), len(tt.want))
			}
		})
	}
}

func TestFieldErrorFields(t *testing.T) {
	_, err := Parse("agent.yaml", []byte(base+"  git:\n    limits: {memory: 12XB}\n"), testOpts)
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("err = %v, want a *FieldError", err)
	}
	if fe.File != "agent.yaml" || fe.Line != 9 || fe.Col != 22 || fe.Field != "tools.git.limits.memory" {
		t.Errorf("FieldError = %+v", fe)
	}
	if !strings.HasPrefix(fe.Msg, `"12XB" is not a size`) {
		t.Errorf("Msg = %q", fe.Msg)
	}
}

func TestOptionsErrors(t *testing.T) {
	for _, o := range []Options{{Workspace: "rel"}, {Home: "x/y"}, {TmpDir: "tmp"}, {CPUs: -1}} {
		if _, err := Parse("p.yaml", []byte(base), o); err == nil {
			t.Errorf("Parse with %+v succeeded", o)
		}
	}
}

func TestUnsetVariables(t *testing.T) {
	_, err := Parse("p.yaml", []byte(base), Options{})
	want := `p.yaml:4:18: defaults.filesystem.read[1]: "${WORKSPACE}": ${WORKSPACE} is not set (Options.Workspace is empty and the policy has no workspace: field)`
	if err == nil || err.Error() != want {
		t.Errorf("err = %v\nwant %s", err, want)
	}
	_, err = Parse("p.yaml", []byte("version: 1\ndefaults:\n  filesystem: {read: [\"${HOME}/x\"]}\ntools: {cat: {}}\n"), Options{Workspace: "/w"})
	want = `p.yaml:3:23: defaults.filesystem.read[0]: "${HOME}/x": ${HOME} is not set (Options.Home is empty)`
	if err == nil || err.Error() != want {
		t.Errorf("err = %v\nwant %s", err, want)
	}
	// A policy without ${WORKSPACE} parses with zero Options; ${TMPDIR} is then
	// private to each runtime: the placeholder until a runtime replaces it.
	p, err := Parse("p.yaml", []byte("version: 1\ndefaults:\n  filesystem: {read: [\"${TMPDIR}/x\"]}\ntools: {cat: {}}\n"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Profiles[0].FS.Read; len(got) != 1 || got[0] != TmpDirPlaceholder+"/x" || !p.PrivateTmp || p.TmpDir != TmpDirPlaceholder {
		t.Errorf("read = %q, private %v, tmpdir %s; want [%s/x], private", got, p.PrivateTmp, p.TmpDir, TmpDirPlaceholder)
	}
	if p.Profiles[0].Concurrency != 2 {
		t.Errorf("concurrency with CPUs 0 = %d, want 2", p.Profiles[0].Concurrency)
	}
}

func TestDefaultsAndBuiltins(t *testing.T) {
	p := mustParse(t, base)
	if p.Version != 1 || p.Source != "p.yaml" || p.Workspace != "/work/ws" {
		t.Errorf("policy = %+v", p)
	}
	if strings.Join(p.Path, ":") != "/usr/local/bin:/usr/bin:/bin" {
		t.Errorf("Path = %q", p.Path)
	}
	if p.KernelTemplates != KernelTemplatesAuto || p.SpawnTemplateSyscalls != nil || p.Shell != "" {
		t.Errorf("KernelTemplates %q, syscalls %v, shell %q", p.KernelTemplates, p.SpawnTemplateSyscalls, p.Shell)
	}
	cat, ok := p.Tool("cat")
	if !ok {
		t.Fatal("no tool cat")
	}
	if cat.Exec != "cat" || cat.Hot || cat.Required || cat.Line != 7 || cat.Col != 3 {
		t.Errorf("cat = %+v", cat)
	}
	pr := cat.Profile
	if pr.Name != "default" || pr.Enforcement.Landlock != Require || pr.Enforcement.Cgroup != BestEffort {
		t.Errorf("profile = %+v", pr)
	}
	if !pr.IPC.ScopeAbstractUnix || !pr.IPC.ScopeSignals {
		t.Errorf("IPC scopes default off: %+v", pr.IPC)
	}
	if pr.Concurrency != 6 {
		t.Errorf("Concurrency = %d, want 2×3", pr.Concurrency)
	}
	if pr.Network.Unix || pr.Network.Isolated != "" || pr.Network.ConnectTCP != nil || pr.User != nil || pr.Limits != (Limits{}) {
		t.Errorf("network/user/limits not closed by default: %+v %v %+v", pr.Network, pr.User, pr.Limits)
	}
	if _, ok := p.Tool("nope"); ok {
		t.Error("Tool(nope) found")
	}
}

func TestFullPolicy(t *testing.T) {
	p := mustParse(t, `version: 1
workspace: ${HOME}/proj
path: [/opt/bin, "${HOME}/bin", /opt/bin/]
kernel_templates: require
spawn_template_syscalls: {create: 470, spawn: 471}
shell: sh
defaults:
  filesystem:
    read: [/usr, "${WORKSPACE}", /usr/, "${TMPDIR}", /a/../etc]
    write: ["${WORKSPACE}/out", "${TMPDIR}"]
    exec: [/usr]
  network: {connect_tcp: [443, 80, 443], bind_tcp: [8080], unix: true, isolated: best_effort}
  ipc: {scope_abstract_unix: false, scope_signals: true}
  env:
    allow: [LANG, LC_*]
    set: {PATH: /usr/bin, HOME: "${WORKSPACE}", COST: $$5}
  limits: {memory: 1G, pids: 100, cpu: 150%, timeout: 1m30s, output: 4096}
  enforcement: {landlock: best_effort, cgroup: require}
  concurrency: 3
  user: {uid: 1000, gid: 1001, groups: [27, 100]}
tools:
  sh: {exec: /bin/sh, hot: true, required: true}
  py:
    exec: python3
    limits: {memory: unlimited, timeout: max}
    env:
      allow+: [PYTHONPATH]
      set+: {PATH: /opt/bin}
    user: null
`)
	if p.Workspace != "/home/u/proj" || p.KernelTemplates != KernelTemplatesRequire || p.Shell != "sh" {
		t.Errorf("workspace %q templates %q shell %q", p.Workspace, p.KernelTemplates, p.Shell)
	}
	if got := strings.Join(p.Path, ":"); got != "/opt/bin:/home/u/bin" {
		t.Errorf("Path = %q", got)
	}
	if p.SpawnTemplateSyscalls == nil || *p.SpawnTemplateSyscalls != (SyscallNumbers{470, 471}) {
		t.Errorf("syscalls = %v", p.SpawnTemplateSyscalls)
	}
	sh, _ := p.Tool("sh")
	if sh.Exec != "/bin/sh" || !sh.Hot || !sh.Required || sh.Timeout != 90*time.Second || sh.OutputBytes != 4096 {
		t.Errorf("sh = %+v", sh)
	}
	pr := sh.Profile
	if got := strings.Join(pr.FS.Read, " "); got != "/etc /home/u/proj /tmp /usr" {
		t.Errorf("read = %q", got)
	}
	if got := strings.Join(pr.FS.Write, " "); got != "/home/u/proj/out /tmp" {
		t.Errorf("write = %q", got)
	}
	if n := pr.Network; len(n.ConnectTCP) != 2 || n.ConnectTCP[0] != 80 || n.ConnectTCP[1] != 443 || len(n.BindTCP) != 1 || !n.Unix || n.Isolated != BestEffort {
		t.Errorf("network = %+v", n)
	}
	if pr.IPC.ScopeAbstractUnix || !pr.IPC.ScopeSignals {
		t.Errorf("ipc = %+v", pr.IPC)
	}
	if pr.Limits != (Limits{Memory: 1 << 30, Pids: 100, CPU: 1.5}) {
		t.Errorf("limits = %+v", pr.Limits)
	}
	if pr.Enforcement != (EnforcementRules{Landlock: BestEffort, Cgroup: Require}) || pr.Concurrency != 3 {
		t.Errorf("enforcement %+v concurrency %d", pr.Enforcement, pr.Concurrency)
	}
	if pr.User == nil || pr.User.UID != 1000 || pr.User.GID != 1001 || len(pr.User.Groups) != 2 {
		t.Errorf("user = %+v", pr.User)
	}
	if got := envString(sh.Env.Set); got != "PATH=/usr/bin HOME=/home/u/proj COST=$5" {
		t.Errorf("sh env set = %q", got)
	}
	py, _ := p.Tool("py")
	if py.Timeout != 0 || py.OutputBytes != 4096 {
		t.Errorf("py timeout %v output %d", py.Timeout, py.OutputBytes)
	}
	if py.Profile == sh.Profile || py.Profile.Name != "py" || py.Profile.User != nil || py.Profile.Limits.Memory != 0 || py.Profile.Limits.Pids != 100 {
		t.Errorf("py profile = %+v", py.Profile)
	}
	if got := strings.Join(py.Env.Allow, " "); got != "LANG LC_* PYTHONPATH" {
		t.Errorf("py env allow = %q", got)
	}
	if got := envString(py.Env.Set); got != "PATH=/opt/bin HOME=/home/u/proj COST=$5" {
		t.Errorf("py env set = %q", got)
	}
}

func envString(vs []EnvVar) string {
	var s []string
	for _, v := range vs {
		s = append(s, v.Name+"="+v.Value)
	}
	return strings.Join(s, " ")
}

// TestMergeRules checks the merge rule: a field a tool sets replaces the default's,
// a list written "name+" extends it, and unset fields inherit.
func TestMergeRules(t *testing.T) {
	p := mustParse(t, `version: 1
defaults:
  filesystem: {read: [/usr, /etc], write: [/etc/x], exec: [/usr]}
  network: {connect_tcp: [443]}
  limits: {memory: 1GiB, pids: 10}
tools:
  inherit: {}
  replace:
    filesystem: {read: [/etc, /opt]}
    network: {connect_tcp: []}
  extend:
    filesystem: {read+: [/opt], exec+: [/opt/bin]}
    network: {connect_tcp+: [22]}
    limits: {pids: 20}
`)
	get := func(name string) *Profile {
		tl, ok := p.Tool(name)
		if !ok {
			t.Fatalf("no tool %s", name)
		}
		return tl.Profile
	}
	in, re, ex := get("inherit"), get("replace"), get("extend")
	if got := strings.Join(in.FS.Read, " "); got != "/etc /usr" {
		t.Errorf("inherit read = %q", got)
	}
	if got := strings.Join(re.FS.Read, " "); got != "/etc /opt" || len(re.FS.Write) != 1 || len(re.Network.ConnectTCP) != 0 {
		t.Errorf("replace fs %+v net %+v", re.FS, re.Network)
	}
	if got := strings.Join(ex.FS.Read, " "); got != "/etc /opt /usr" {
		t.Errorf("extend read = %q", got)
	}
	if got := strings.Join(ex.FS.Exec, " "); got != "/opt/bin /usr" {
		t.Errorf("extend exec = %q", got)
	}
	if got := ex.Network.ConnectTCP; len(got) != 2 || got[0] != 22 || got[1] != 443 {
		t.Errorf("extend connect = %v", got)
	}
	if ex.Limits.Memory != 1<<30 || ex.Limits.Pids != 20 {
		t.Errorf("extend limits = %+v (memory must be inherited, pids replaced)", ex.Limits)
	}
}

// TestProfileGrouping checks that tools with identical sandbox rules share one
// *Profile, whatever the order their paths are written in, and that env, args,
// timeout and output (per-launch settings) do not split profiles.
func TestProfileGrouping(t *testing.T) {
	p := mustParse(t, `version: 1
defaults:
  filesystem: {read: [/usr, /etc], exec: [/usr]}
  limits: {timeout: 10s}
tools:
  a: {}
  b:
    env: {set: {X: "1"}}
    args: {deny: [push]}
    limits: {timeout: 1m, output: 1MiB}
  c:
    filesystem: {read: [/etc, /usr, /etc]}
  d:
    network: {connect_tcp: [443]}
  e:
    network: {connect_tcp: [443]}
  f:
    limits: {memory: 1G}
  default:
    concurrency: 1
`)
	if len(p.Profiles) != 4 {
		for _, pr := range p.Profiles {
			t.Logf("profile %s: %v", pr.Name, pr.Tools)
		}
		t.Fatalf("%d profiles, want 4", len(p.Profiles))
	}
	prof := func(name string) *Profile { tl, _ := p.Tool(name); return tl.Profile }
	if prof("a") != prof("b") || prof("a") != prof("c") {
		t.Errorf("a, b and c do not share a profile")
	}
	if prof("d") != prof("e") || prof("d") == prof("a") || prof("f") == prof("a") || prof("f") == prof("d") {
		t.Errorf("d/e/f grouped wrongly")
	}
	want := []struct {
		name  string
		tools string
	}{{"default", "a b c"}, {"d", "d e"}, {"f", "f"}, {"default#2", "default"}}
	for i, w := range want {
		pr := p.Profiles[i]
		if pr.Name != w.name || strings.Join(pr.Tools, " ") != w.tools {
			t.Errorf("profile %d = %s %v, want %s [%s]", i, pr.Name, pr.Tools, w.name, w.tools)
		}
	}
	if !prof("d").Equal(prof("e")) || prof("d").Equal(prof("a")) {
		t.Error("Equal disagrees with grouping")
	}
}
