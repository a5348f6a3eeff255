package policy

import (
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/agentexec/agentexec/internal/yamlnode"
)

// Options carry the host facts a policy's expansions and defaults depend on. Parse
// never looks them up itself, so the same bytes and Options always give the same
// result. Load fills the empty fields from the host (see HostOptions).
type Options struct {
	// Workspace is ${WORKSPACE} unless the policy sets workspace: (where
	// ${WORKSPACE} means this value). Empty: unset, and a policy that uses
	// ${WORKSPACE} without a workspace: field is an error. Must be absolute.
	Workspace string
	// Home is ${HOME}. Empty: unset, and a policy that uses ${HOME} is an error.
	// Must be absolute.
	Home string
	// TmpDir is ${TMPDIR}. Empty: a directory private to each runtime, which
	// agentexec.New creates (mode 0700, for the tools' uid) and Close removes; the
	// policy then holds TmpDirPlaceholder in its place (Policy.PrivateTmp). Must be
	// absolute.
	TmpDir string
	// CPUs is the host's CPU count; the default concurrency is 2×CPUs. 0 means 1.
	CPUs int
}

// DefaultPath is the search path for bare exec names when the policy has no path:.
var DefaultPath = []string{"/usr/local/bin", "/usr/bin", "/bin"}

// Built-in defaults for settings neither defaults: nor a tool sets.
const (
	// DefaultLandlock: a sandbox whose filesystem rules are not enforced is no sandbox,
	// so a kernel without Landlock is an error unless the policy says best_effort.
	DefaultLandlock = Require
	// DefaultCgroup: cgroup limits protect the host from runaway tools but are not the
	// security boundary, and hybrid or undelegated cgroup hosts are common, so missing
	// controllers only warn unless the policy says require.
	DefaultCgroup = BestEffort
	// DefaultKernelTemplates uses kernel spawn templates where the kernel has them.
	DefaultKernelTemplates = KernelTemplatesAuto
)

// maxConcurrency bounds concurrency: a profile's launches in flight.
const maxConcurrency = 1 << 16

// Parse reads and validates a policy. name is used in error messages (usually the
// file name). Parse never touches the host and never panics; on failure it returns
// every problem it found, joined with errors.Join, each a *FieldError.
func Parse(name string, data []byte, opts Options) (p *Policy, err error) {
	defer func() {
		if r := recover(); r != nil {
			p, err = nil, fmt.Errorf("policy: %s: bug: the parser panicked (please report): %v", name, r)
		}
	}()
	return parse(name, data, opts)
}

func (o *Options) normalize() error {
	for _, f := range []struct{ name, v string }{{"Workspace", o.Workspace}, {"Home", o.Home}, {"TmpDir", o.TmpDir}} {
		if f.v != "" && !filepath.IsAbs(f.v) {
			return fmt.Errorf("policy: Options.%s %q is not an absolute path", f.name, f.v)
		}
	}
	if o.CPUs < 0 {
		return fmt.Errorf("policy: Options.CPUs %d is negative", o.CPUs)
	}
	if o.CPUs == 0 {
		o.CPUs = 1
	}
	o.Workspace, o.Home, o.TmpDir = cleanOrEmpty(o.Workspace), cleanOrEmpty(o.Home), cleanOrEmpty(o.TmpDir)
	return nil
}

func cleanOrEmpty(s string) string {
	if s == "" {
		return ""
	}
	return filepath.Clean(s)
}

// decoder collects problems while walking one policy; the yaml.Node helpers
// (Fail, Mapping, Str, ObjectExt, …) come from internal/yamlnode.
type decoder struct {
	yamlnode.Decoder
	opts Options
	x    expander
	// secrets are the secrets: section's entries by name (secrets.go).
	secrets map[string]*Secret
}

// document parses data into its root node, insisting on exactly one document.
func (d *decoder) document(data []byte) (*yaml.Node, error) {
	root, err := d.Single(data, "a policy")
	if err != nil {
		return nil, err
	}
	if root == nil {
		return nil, &FieldError{File: d.File, Field: "version", Msg: fmt.Sprintf("missing: the policy is empty (this build reads version %d)", CurrentVersion)}
	}
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) != 1 {
			return nil, &FieldError{File: d.File, Line: 1, Col: 1, Field: "version", Msg: fmt.Sprintf("missing: the policy is empty (this build reads version %d)", CurrentVersion)}
		}
		root = root.Content[0]
	}
	root = yamlnode.Deref(root)
	if yamlnode.IsNull(root) {
		return nil, &FieldError{File: d.File, Line: root.Line, Col: root.Column, Field: "version", Msg: fmt.Sprintf("missing: the policy is empty (this build reads version %d)", CurrentVersion)}
	}
	if root.Kind != yaml.MappingNode {
		return nil, &FieldError{File: d.File, Line: root.Line, Col: root.Column, Msg: fmt.Sprintf("a policy is a mapping (version:, defaults:, tools: …), got %s", yamlnode.Describe(root))}
	}
	return root, nil
}

// version checks the version field before anything else: another version may mean
// another schema, so nothing else is reported when it is wrong.
func (d *decoder) version(root *yaml.Node) (int, error) {
	for i := 0; i+1 < len(root.Content); i += 2 {
		k := yamlnode.Deref(root.Content[i])
		if k == nil || k.Kind != yaml.ScalarNode || k.Value != "version" {
			continue
		}
		v := yamlnode.Deref(root.Content[i+1])
		n, ok := d.Integer(v, "version", 0, 1<<31)
		if !ok {
			return 0, d.Err()
		}
		if n != CurrentVersion {
			return 0, &FieldError{File: d.File, Line: v.Line, Col: v.Column, Field: "version",
				Msg: fmt.Sprintf("version %d is not supported by this build (knows %d)", n, CurrentVersion)}
		}
		return int(n), nil
	}
	return 0, &FieldError{File: d.File, Line: root.Line, Col: root.Column, Field: "version",
		Msg: fmt.Sprintf("missing (add \"version: %d\")", CurrentVersion)}
}

func parse(name string, data []byte, opts Options) (*Policy, error) {
	if err := opts.normalize(); err != nil {
		return nil, err
	}
	d := &decoder{Decoder: yamlnode.Decoder{File: name}, opts: opts}
	root, err := d.document(data)
	if err != nil {
		return nil, err
	}
	version, err := d.version(root)
	if err != nil {
		return nil, err
	}
	p := &Policy{Version: version, Source: name, KernelTemplates: DefaultKernelTemplates}

	top := map[string]yamlnode.Pair{}
	d.ObjectExt(root, "", false, []yamlnode.Field{
		{Name: "version", Fn: func(_, _ *yaml.Node, _ string, _ bool) {}},
		{Name: "workspace", Fn: d.keep(top, "workspace")},
		{Name: "path", Fn: d.keep(top, "path")},
		{Name: "kernel_templates", Fn: d.keep(top, "kernel_templates")},
		{Name: "kernel_denials", Fn: d.keep(top, "kernel_denials")},
		{Name: "spawn_template_syscalls", Fn: d.keep(top, "spawn_template_syscalls")},
		{Name: "shell", Fn: d.keep(top, "shell")},
		{Name: "defaults", Fn: d.keep(top, "defaults")},
		{Name: "tools", Fn: d.keep(top, "tools")},
		{Name: "secrets", Fn: d.keep(top, "secrets")},
	})

	// ${TMPDIR} without Options.TmpDir: a placeholder for each runtime's own
	// directory (tmpdir.go).
	p.TmpDir = opts.TmpDir
	if p.TmpDir == "" {
		p.TmpDir, p.PrivateTmp = TmpDirPlaceholder, true
	}
	// workspace first: ${WORKSPACE} everywhere else means its value.
	d.x = expander{
		privateTmp: p.PrivateTmp,
		vars:       map[string]string{"WORKSPACE": opts.Workspace, "HOME": opts.Home, "TMPDIR": p.TmpDir},
		why: map[string]string{
			"WORKSPACE": "Options.Workspace is empty and the policy has no workspace: field",
			"HOME":      "Options.Home is empty",
		},
	}
	p.Workspace = opts.Workspace
	if w, ok := top["workspace"]; ok {
		d.x.why["WORKSPACE"] = "Options.Workspace is empty"
		if s, ok := d.Str(w.V, "workspace"); ok {
			if ws, err := d.x.absPath(s); err != nil {
				d.Fail(yamlnode.Deref(w.V), "workspace", "%v", err)
			} else {
				p.Workspace = ws
			}
		}
		d.x.why["WORKSPACE"] = "the workspace: field is invalid"
	}
	d.x.vars["WORKSPACE"] = p.Workspace

	p.Path = slices.Clone(DefaultPath)
	if v, ok := top["path"]; ok {
		l := d.pathList(v.V, "path", false)
		p.Path = dedup(values(l.items))
	}
	if v, ok := top["kernel_templates"]; ok {
		if s, ok := d.Enum(v.V, "kernel_templates", "auto", "off", "require"); ok {
			p.KernelTemplates = KernelTemplates(s)
		}
	}
	if v, ok := top["kernel_denials"]; ok {
		if s, ok := d.Enum(v.V, "kernel_denials", "off", "on", "require"); ok {
			p.KernelDenials = KernelDenials(s)
		}
	}
	if v, ok := top["spawn_template_syscalls"]; ok {
		p.SpawnTemplateSyscalls = d.syscalls(v.V, "spawn_template_syscalls")
	}

	var defs rules
	if v, ok := top["defaults"]; ok {
		d.ObjectExt(v.V, "defaults", false, d.ruleSpecs(&defs, false))
	}
	p.Secrets = d.secretDefs(top["secrets"]) // secrets.go; before the tools that name them
	tools := d.tools(p, top["tools"], &defs)
	p.Tools = tools

	if v, ok := top["shell"]; ok {
		if s, ok := d.Str(v.V, "shell"); ok {
			if _, found := p.Tool(s); !found {
				d.Fail(yamlnode.Deref(v.V), "shell", "%q is not a tool of this policy", s)
			} else {
				p.Shell = s
			}
		}
	}
	if err := d.Err(); err != nil {
		return nil, err
	}
	p.group(profileOf(&defs, d.opts))
	return p, nil
}

// keep records a top-level pair for processing in a fixed order.
func (d *decoder) keep(top map[string]yamlnode.Pair, key string) func(_, _ *yaml.Node, _ string, _ bool) {
	return func(_, v *yaml.Node, _ string, _ bool) { top[key] = yamlnode.Pair{Key: key, V: v} }
}

func (d *decoder) syscalls(n *yaml.Node, field string) *SyscallNumbers {
	var s SyscallNumbers
	var have [2]bool
	d.ObjectExt(n, field, false, []yamlnode.Field{
		{Name: "create", Fn: func(_, v *yaml.Node, f string, _ bool) {
			if x, ok := d.Integer(v, f, 1, 4095); ok {
				s.Create, have[0] = int(x), true
			}
		}},
		{Name: "spawn", Fn: func(_, v *yaml.Node, f string, _ bool) {
			if x, ok := d.Integer(v, f, 1, 4095); ok {
				s.Spawn, have[1] = int(x), true
			}
		}},
	})
	n = yamlnode.Deref(n)
	switch {
	case n == nil || n.Kind != yaml.MappingNode:
		return nil
	case !have[0] && !have[1] && len(n.Content) == 0:
		d.Fail(n, field, "set both create and spawn, or leave the field out")
	case !have[0] && !containsKey(n, "create"):
		d.Fail(n, field, "create is missing")
	case !have[1] && !containsKey(n, "spawn"):
		d.Fail(n, field, "spawn is missing")
	case have[0] && have[1] && s.Create == s.Spawn:
		d.Fail(n, field, "create and spawn are both %d", s.Create)
	}
	return &s
}

func containsKey(n *yaml.Node, key string) bool {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := yamlnode.Deref(n.Content[i]); k != nil && k.Value == key {
			return true
		}
	}
	return false
}

// item is one list element with where it was written.
type item[T any] struct {
	v     T
	n     *yaml.Node
	field string
}

// list is a list-valued setting: unset, set (replacing) or extending the defaults.
type list[T any] struct {
	set, extend bool
	items       []item[T]
}

// opt is a scalar setting that may be unset.
type opt[T any] struct {
	set bool
	v   T
	n   *yaml.Node
}

// rules are the settings defaults: and each tool may carry.
type rules struct {
	read, write, exec, protect  list[string]
	connect, bind               list[uint16]
	unix                        opt[bool]
	unixSockets                 list[string]
	isolated                    opt[Enforcement]
	scopeAbstract, scopeSignals opt[bool]
	envAllow                    list[string]
	envSet                      list[EnvVar]
	memory, pids, output        opt[int64] // 0: unlimited
	cpu                         opt[float64]
	timeout                     opt[time.Duration]
	landlock, cgroup            opt[Enforcement]
	concurrency                 opt[int]
	user                        opt[*User]
	egress                      egressRules // egress.go
	// fsSet notes that the filesystem section was written (for messages).
	fsSet bool
}

func values[T any](items []item[T]) []T {
	out := make([]T, len(items))
	for i, it := range items {
		out[i] = it.v
	}
	return out
}

// ruleSpecs are the sections shared by defaults: and tools.
func (d *decoder) ruleSpecs(r *rules, inTool bool) []yamlnode.Field {
	return []yamlnode.Field{
		{Name: "filesystem", Fn: func(_, v *yaml.Node, f string, _ bool) {
			r.fsSet = true
			d.ObjectExt(v, f, inTool, []yamlnode.Field{
				{Name: "read", List: true, Fn: func(_, v *yaml.Node, f string, ext bool) { r.read = d.pathList(v, f, ext) }},
				{Name: "write", List: true, Fn: func(_, v *yaml.Node, f string, ext bool) { r.write = d.pathList(v, f, ext) }},
				{Name: "exec", List: true, Fn: func(_, v *yaml.Node, f string, ext bool) { r.exec = d.pathList(v, f, ext) }},
				{Name: "protect", List: true, Fn: func(_, v *yaml.Node, f string, ext bool) { r.protect = d.pathList(v, f, ext) }},
			})
		}},
		{Name: "network", Fn: func(_, v *yaml.Node, f string, _ bool) {
			d.ObjectExt(v, f, inTool, []yamlnode.Field{
				{Name: "connect_tcp", List: true, Fn: func(_, v *yaml.Node, f string, ext bool) { r.connect = d.ports(v, f, ext) }},
				{Name: "bind_tcp", List: true, Fn: func(_, v *yaml.Node, f string, ext bool) { r.bind = d.ports(v, f, ext) }},
				{Name: "unix", Fn: func(_, v *yaml.Node, f string, _ bool) { r.unix = d.optBool(v, f) }},
				{Name: "unix_sockets", List: true, Fn: func(_, v *yaml.Node, f string, ext bool) { r.unixSockets = d.pathList(v, f, ext) }},
				{Name: "isolated", Fn: func(_, v *yaml.Node, f string, _ bool) { r.isolated = d.isolated(v, f) }},
				d.allowField(&r.egress), d.sshField(&r.egress), // egress.go
				d.knownHostsField(&r.egress), d.sshAgentField(&r.egress), // egress_ssh.go
				d.secretsField(&r.egress), // secrets.go
			})
		}},
		{Name: "ipc", Fn: func(_, v *yaml.Node, f string, _ bool) {
			d.ObjectExt(v, f, inTool, []yamlnode.Field{
				{Name: "scope_abstract_unix", Fn: func(_, v *yaml.Node, f string, _ bool) { r.scopeAbstract = d.optBool(v, f) }},
				{Name: "scope_signals", Fn: func(_, v *yaml.Node, f string, _ bool) { r.scopeSignals = d.optBool(v, f) }},
			})
		}},
		{Name: "env", Fn: func(_, v *yaml.Node, f string, _ bool) {
			d.ObjectExt(v, f, inTool, []yamlnode.Field{
				{Name: "allow", List: true, Fn: func(_, v *yaml.Node, f string, ext bool) { r.envAllow = d.envAllow(v, f, ext) }},
				{Name: "set", List: true, Fn: func(_, v *yaml.Node, f string, ext bool) { r.envSet = d.envSet(v, f, ext) }},
			})
		}},
		{Name: "limits", Fn: func(_, v *yaml.Node, f string, _ bool) {
			d.ObjectExt(v, f, inTool, []yamlnode.Field{
				{Name: "memory", Fn: func(_, v *yaml.Node, f string, _ bool) { r.memory = d.size(v, f) }},
				{Name: "pids", Fn: func(_, v *yaml.Node, f string, _ bool) { r.pids = d.pids(v, f) }},
				{Name: "cpu", Fn: func(_, v *yaml.Node, f string, _ bool) { r.cpu = d.cpu(v, f) }},
				{Name: "timeout", Fn: func(_, v *yaml.Node, f string, _ bool) { r.timeout = d.duration(v, f) }},
				{Name: "output", Fn: func(_, v *yaml.Node, f string, _ bool) { r.output = d.size(v, f) }},
			})
		}},
		{Name: "enforcement", Fn: func(_, v *yaml.Node, f string, _ bool) {
			d.ObjectExt(v, f, inTool, []yamlnode.Field{
				{Name: "landlock", Fn: func(_, v *yaml.Node, f string, _ bool) { r.landlock = d.enforcement(v, f) }},
				{Name: "cgroup", Fn: func(_, v *yaml.Node, f string, _ bool) { r.cgroup = d.enforcement(v, f) }},
			})
		}},
		{Name: "concurrency", Fn: func(_, v *yaml.Node, f string, _ bool) {
			if x, ok := d.Integer(v, f, 1, maxConcurrency); ok {
				r.concurrency = opt[int]{set: true, v: int(x), n: yamlnode.Deref(v)}
			}
		}},
		{Name: "user", Fn: func(_, v *yaml.Node, f string, _ bool) { r.user = d.user(v, f) }},
	}
}

// element is one entry of a list the policy reads: a sequence item (K nil), or a
// mapping pair (K and Key set).
type element struct {
	K, V  *yaml.Node
	Key   string
	Field string
}

// readList reads a sequence (or, with mapping, a mapping) into a list: conv turns
// each element into a value, reporting its own errors, and returns false to leave
// the element out. The list is set even when empty or invalid, so that an explicit
// empty list overrides the defaults.
func readList[T any](d *decoder, n *yaml.Node, field string, extend, mapping bool, conv func(e element) (T, bool)) list[T] {
	l := list[T]{set: true, extend: extend}
	var elems []element
	if mapping {
		pairs, _ := d.Mapping(n, field)
		for _, p := range pairs {
			elems = append(elems, element{K: p.K, V: p.V, Key: p.Key, Field: yamlnode.Join(field, p.Key)})
		}
	} else {
		items, _ := d.Seq(n, field)
		for i, it := range items {
			elems = append(elems, element{V: it, Field: yamlnode.Index(field, i)})
		}
	}
	for _, e := range elems {
		if v, ok := conv(e); ok {
			l.items = append(l.items, item[T]{v: v, n: yamlnode.Deref(e.V), field: e.Field})
		}
	}
	return l
}

func (d *decoder) pathList(n *yaml.Node, field string, extend bool) list[string] {
	return readList(d, n, field, extend, false, func(e element) (string, bool) {
		s, ok := d.Str(e.V, e.Field)
		if !ok {
			return "", false
		}
		p, err := d.x.absPath(s)
		if err != nil {
			d.Fail(yamlnode.Deref(e.V), e.Field, "%v", err)
			return "", false
		}
		return p, true
	})
}

func (d *decoder) ports(n *yaml.Node, field string, extend bool) list[uint16] {
	return readList(d, n, field, extend, false, func(e element) (uint16, bool) {
		x, ok := d.Integer(e.V, e.Field, 1, 65535)
		return uint16(x), ok
	})
}

func (d *decoder) optBool(n *yaml.Node, field string) opt[bool] {
	b, ok := d.Boolean(n, field)
	return opt[bool]{set: ok, v: b, n: yamlnode.Deref(n)}
}

func (d *decoder) isolated(n *yaml.Node, field string) opt[Enforcement] {
	m := yamlnode.Deref(n)
	if m != nil && m.Kind == yaml.ScalarNode && m.Tag == "!!bool" {
		b, _ := d.Boolean(m, field)
		if b {
			return opt[Enforcement]{set: true, v: Require, n: m}
		}
		return opt[Enforcement]{set: true, n: m}
	}
	s, ok := d.Enum(n, field, "off", "require", "best_effort")
	if !ok {
		return opt[Enforcement]{}
	}
	if s == "off" {
		s = ""
	}
	return opt[Enforcement]{set: true, v: Enforcement(s), n: m}
}

func (d *decoder) enforcement(n *yaml.Node, field string) opt[Enforcement] {
	s, ok := d.Enum(n, field, string(Require), string(BestEffort))
	return opt[Enforcement]{set: ok, v: Enforcement(s), n: yamlnode.Deref(n)}
}

var envNameRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`) })
var envGlobRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9_*?]+$`) })

func (d *decoder) envAllow(n *yaml.Node, field string, extend bool) list[string] {
	return readList(d, n, field, extend, false, func(e element) (string, bool) {
		s, ok := d.Str(e.V, e.Field)
		if ok && !envGlobRE().MatchString(s) {
			d.Fail(yamlnode.Deref(e.V), e.Field, "%q is not a variable name or glob (letters, digits, _, * and ?)", s)
			return "", false
		}
		return s, ok
	})
}

func (d *decoder) envSet(n *yaml.Node, field string, extend bool) list[EnvVar] {
	return readList(d, n, field, extend, true, func(e element) (EnvVar, bool) {
		if !envNameRE().MatchString(e.Key) {
			d.Fail(e.K, e.Field, "%q is not a valid variable name", e.Key)
			return EnvVar{}, false
		}
		s, ok := d.Str(e.V, e.Field)
		if !ok {
			return EnvVar{}, false
		}
		v, err := d.x.expand(s)
		if err == nil && strings.IndexByte(v, 0) >= 0 {
			err = fmt.Errorf("%q contains a NUL byte", s)
		}
		if err != nil {
			d.Fail(yamlnode.Deref(e.V), e.Field, "%v", err)
			return EnvVar{}, false
		}
		return EnvVar{Name: e.Key, Value: v}, true
	})
}

// scalarText returns a scalar's text for unit parsing, or reports a type error.
func (d *decoder) scalarText(n *yaml.Node, field, what string) (*yaml.Node, bool) {
	n = yamlnode.Deref(n)
	if n == nil || n.Kind != yaml.ScalarNode || yamlnode.IsNull(n) {
		d.Fail(n, field, "expected %s, got %s", what, yamlnode.Describe(n))
		return n, false
	}
	return n, true
}

func (d *decoder) size(v *yaml.Node, field string) opt[int64] {
	n, ok := d.scalarText(v, field, "a size (as 512MiB)")
	if !ok {
		return opt[int64]{}
	}
	if isUnlimited(n.Value) {
		return opt[int64]{set: true, n: n}
	}
	if n.Tag != "!!str" && n.Tag != "!!int" {
		d.Fail(n, field, "%q is not a size (examples: 4096, 512MiB, 1G)", n.Value)
		return opt[int64]{}
	}
	b, err := ParseSize(n.Value)
	if err != nil {
		d.Fail(n, field, "%v", err)
		return opt[int64]{}
	}
	return opt[int64]{set: true, v: b, n: n}
}

// maxPids is the kernel's largest pid_max (PID_MAX_LIMIT on 64-bit).
const maxPids = 1 << 22

func (d *decoder) pids(v *yaml.Node, field string) opt[int64] {
	n, ok := d.scalarText(v, field, "a process count")
	if !ok {
		return opt[int64]{}
	}
	if isUnlimited(n.Value) {
		return opt[int64]{set: true, n: n}
	}
	x, ok := d.Integer(n, field, 1, maxPids)
	return opt[int64]{set: ok, v: x, n: n}
}

func (d *decoder) cpu(v *yaml.Node, field string) opt[float64] {
	n, ok := d.scalarText(v, field, "a CPU limit (as 1.5 or 150%)")
	if !ok {
		return opt[float64]{}
	}
	if isUnlimited(n.Value) {
		return opt[float64]{set: true, n: n}
	}
	if n.Tag != "!!str" && n.Tag != "!!int" && n.Tag != "!!float" {
		d.Fail(n, field, "%q is not a CPU limit (write cores, as 1.5, or a percentage, as 150%%)", n.Value)
		return opt[float64]{}
	}
	c, err := ParseCPU(n.Value)
	if err != nil {
		d.Fail(n, field, "%v", err)
		return opt[float64]{}
	}
	return opt[float64]{set: true, v: c, n: n}
}

func (d *decoder) duration(v *yaml.Node, field string) opt[time.Duration] {
	n, ok := d.scalarText(v, field, "a duration (as 30s)")
	if !ok {
		return opt[time.Duration]{}
	}
	if isUnlimited(n.Value) {
		return opt[time.Duration]{set: true, n: n}
	}
	if n.Tag == "!!int" || n.Tag == "!!float" {
		d.Fail(n, field, "%s is not a duration: give a unit, as %ss", n.Value, n.Value)
		return opt[time.Duration]{}
	}
	t, err := ParseDuration(n.Value)
	if err != nil {
		d.Fail(n, field, "%v", err)
		return opt[time.Duration]{}
	}
	return opt[time.Duration]{set: true, v: t, n: n}
}

// maxID is the largest valid uid/gid ((uid_t)-1 means "no change" to the kernel).
const maxID = 1<<32 - 2

func (d *decoder) user(v *yaml.Node, field string) opt[*User] {
	n := yamlnode.Deref(v)
	if yamlnode.IsNull(n) {
		return opt[*User]{set: true, n: n}
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!str" {
		// `user: root` keeps tools as uid 0 when the runtime is root (by default a
		// root runtime runs them as an unprivileged identity of its own).
		if n.Value != "root" {
			d.Fail(n, field, "%q: want root, null or {uid: N, gid: N, groups: [...]}", n.Value)
			return opt[*User]{}
		}
		return opt[*User]{set: true, v: &User{Own: true}, n: n}
	}
	u := &User{}
	var haveUID, haveGID, bad bool
	before := len(d.Errs)
	d.ObjectExt(n, field, false, []yamlnode.Field{
		{Name: "uid", Fn: func(_, v *yaml.Node, f string, _ bool) {
			x, ok := d.Integer(v, f, 0, maxID)
			u.UID, haveUID = uint32(x), ok
		}},
		{Name: "gid", Fn: func(_, v *yaml.Node, f string, _ bool) {
			x, ok := d.Integer(v, f, 0, maxID)
			u.GID, haveGID = uint32(x), ok
		}},
		{Name: "groups", Fn: func(_, v *yaml.Node, f string, _ bool) {
			items, _ := d.Seq(v, f)
			for i, it := range items {
				if x, ok := d.Integer(it, yamlnode.Index(f, i), 0, maxID); ok {
					u.Groups = append(u.Groups, uint32(x))
				}
			}
		}},
	})
	bad = len(d.Errs) > before
	if n.Kind == yaml.MappingNode && !bad {
		if !haveUID {
			d.Fail(n, field, "uid is missing")
		}
		if !haveGID {
			d.Fail(n, field, "gid is missing")
		}
	}
	if len(d.Errs) > before {
		return opt[*User]{}
	}
	return opt[*User]{set: true, v: u, n: n}
}

var toolNameRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._+-]*$`) })

// rawTool is a tool as written, before merging.
type rawTool struct {
	name        string
	k           *yaml.Node
	exec        opt[string]
	hot, req    opt[bool]
	allow, deny []Pattern
	r           rules
}

func (d *decoder) tools(p *Policy, tp yamlnode.Pair, defs *rules) []*Tool {
	if tp.V == nil {
		d.Fail(nil, "tools", "missing: a policy needs at least one tool")
		return nil
	}
	pairs, ok := d.Mapping(tp.V, "tools")
	if !ok {
		return nil
	}
	if len(pairs) == 0 {
		d.Fail(yamlnode.Deref(tp.V), "tools", "a policy needs at least one tool")
		return nil
	}
	var out []*Tool
	for _, pr := range pairs {
		f := yamlnode.Join("tools", pr.Key)
		if !toolNameRE().MatchString(pr.Key) {
			d.Fail(pr.K, f, "%q is not a valid tool name (letters, digits and . _ + -, not starting with . + -)", pr.Key)
			continue
		}
		rt := &rawTool{name: pr.Key, k: pr.K}
		specs := append([]yamlnode.Field{
			{Name: "exec", Fn: func(_, v *yaml.Node, f string, _ bool) {
				if s, ok := d.Str(v, f); ok {
					rt.exec = opt[string]{set: true, v: s, n: yamlnode.Deref(v)}
				}
			}},
			{Name: "hot", Fn: func(_, v *yaml.Node, f string, _ bool) { rt.hot = d.optBool(v, f) }},
			{Name: "required", Fn: func(_, v *yaml.Node, f string, _ bool) { rt.req = d.optBool(v, f) }},
			{Name: "args", Fn: func(_, v *yaml.Node, f string, _ bool) {
				d.ObjectExt(v, f, false, []yamlnode.Field{
					{Name: "allow", Fn: func(_, v *yaml.Node, f string, _ bool) { rt.allow = d.patterns(v, f) }},
					{Name: "deny", Fn: func(_, v *yaml.Node, f string, _ bool) { rt.deny = d.patterns(v, f) }},
				})
			}},
		}, d.ruleSpecs(&rt.r, true)...)
		d.ObjectExt(pr.V, f, true, specs)
		if t := d.buildTool(rt, defs); t != nil {
			out = append(out, t)
		}
	}
	return out
}

func (d *decoder) patterns(n *yaml.Node, field string) []Pattern {
	items, _ := d.Seq(n, field)
	var out []Pattern
	for i, it := range items {
		f := yamlnode.Index(field, i)
		s, ok := d.Str(it, f)
		if !ok {
			continue
		}
		pat, err := ParsePattern(f, s)
		if err != nil {
			d.Fail(yamlnode.Deref(it), f, "%v", err)
			continue
		}
		out = append(out, pat)
	}
	return out
}

func mergeList[T any](def, t list[T]) list[T] {
	switch {
	case !t.set:
		return def
	case t.extend:
		return list[T]{set: true, items: append(slices.Clip(def.items), t.items...)}
	}
	return t
}

func mergeOpt[T any](def, t opt[T]) opt[T] {
	if t.set {
		return t
	}
	return def
}

func merge(def, t *rules) rules {
	return rules{
		read: mergeList(def.read, t.read), write: mergeList(def.write, t.write), exec: mergeList(def.exec, t.exec),
		protect: mergeList(def.protect, t.protect),
		connect: mergeList(def.connect, t.connect), bind: mergeList(def.bind, t.bind),
		unix: mergeOpt(def.unix, t.unix), unixSockets: mergeList(def.unixSockets, t.unixSockets), isolated: mergeOpt(def.isolated, t.isolated),
		scopeAbstract: mergeOpt(def.scopeAbstract, t.scopeAbstract), scopeSignals: mergeOpt(def.scopeSignals, t.scopeSignals),
		envAllow: mergeList(def.envAllow, t.envAllow), envSet: mergeList(def.envSet, t.envSet),
		memory: mergeOpt(def.memory, t.memory), pids: mergeOpt(def.pids, t.pids), output: mergeOpt(def.output, t.output),
		cpu: mergeOpt(def.cpu, t.cpu), timeout: mergeOpt(def.timeout, t.timeout),
		landlock: mergeOpt(def.landlock, t.landlock), cgroup: mergeOpt(def.cgroup, t.cgroup),
		concurrency: mergeOpt(def.concurrency, t.concurrency), user: mergeOpt(def.user, t.user),
		fsSet: def.fsSet || t.fsSet,
	}
}

func (d *decoder) buildTool(rt *rawTool, defs *rules) *Tool {
	f := yamlnode.Join("tools", rt.name)
	t := &Tool{Name: rt.name, Exec: rt.name, Hot: rt.hot.v, Required: rt.req.v, Line: rt.k.Line, Col: rt.k.Column}
	t.Args = ArgRules{Allow: rt.allow, Deny: rt.deny}
	if rt.exec.set {
		t.Exec = rt.exec.v
		e, err := d.x.expand(t.Exec)
		switch {
		case err != nil:
			d.Fail(rt.exec.n, f+".exec", "%v", err)
		case strings.Contains(e, "/"):
			if !filepath.IsAbs(e) {
				d.Fail(rt.exec.n, f+".exec", "%q is a relative path; give an absolute path or a bare name looked up in path:", t.Exec)
			} else if p, err := d.x.absPath(t.Exec); err != nil {
				d.Fail(rt.exec.n, f+".exec", "%v", err)
			} else {
				t.Exec = p
			}
		case e == "" || e == "." || e == ".." || strings.IndexByte(e, 0) >= 0:
			d.Fail(rt.exec.n, f+".exec", "%q is not an executable name", t.Exec)
		default:
			t.Exec = e
		}
	}
	m := merge(defs, &rt.r)
	d.checkWriteBeneathRead(rt, defs, &m)
	d.checkRootUnix(rt, &m)
	t.Env = Env{Allow: dedup(values(m.envAllow.items)), Set: envVars(m.envSet.items)}
	t.Timeout = m.timeout.v
	t.OutputBytes = m.output.v
	prof := profileOf(&m, d.opts)
	t.Profile = &prof
	d.egress(t, rt, defs, &m) // egress.go
	return t
}

// envVars flattens fixed values; a later value for the same name (a tool's set+
// over the defaults') replaces the earlier one in place.
func envVars(items []item[EnvVar]) []EnvVar {
	var out []EnvVar
	at := map[string]int{}
	for _, it := range items {
		if i, ok := at[it.v.Name]; ok {
			out[i] = it.v
			continue
		}
		at[it.v.Name] = len(out)
		out = append(out, it.v)
	}
	return out
}

// checkWriteBeneathRead reports write roots that lie outside every read root.
func (d *decoder) checkWriteBeneathRead(rt *rawTool, defs *rules, m *rules) {
	for _, w := range m.write.items {
		inside := false
		for _, r := range m.read.items {
			if Beneath(w.v, r.v) {
				inside = true
				break
			}
		}
		if inside {
			continue
		}
		fromDefaults := strings.HasPrefix(w.field, "defaults.")
		if fromDefaults && rt.r.read.set {
			d.Fail(w.n, w.field, "%q is outside every read root of tool %s (whose filesystem.read replaces the default read roots)", w.v, rt.name)
		} else {
			d.Fail(w.n, w.field, "%q is outside every read root; add it (or a parent) to filesystem.read", w.v)
		}
	}
}

// checkRootUnix refuses `network.unix: true` for tools that run as uid 0 unless the
// sockets are named: connecting to a pathname socket is a permission-bit check that
// uid 0 passes on every root-owned socket (docker.sock, systemd's private socket, a
// root tmux server), capabilities or not, and Landlock mediates it only from ABI 9.
func (d *decoder) checkRootUnix(rt *rawTool, m *rules) {
	if u := m.user.v; u == nil || (!u.Own && u.UID != 0) || !m.unix.v || len(m.unixSockets.items) > 0 {
		return
	}
	field := "defaults.network.unix"
	if rt.r.unix.set {
		field = yamlnode.Join("tools", rt.name) + ".network.unix"
	}
	d.Fail(m.unix.n, field, "true while the tools run as uid 0 would let them connect to every root-owned unix socket (docker.sock, systemd's private socket); name the sockets they need in network.unix_sockets, or drop user: so that a root runtime runs them as its unprivileged tool identity")
}

// dedup removes repeated values, keeping the first occurrence.
func dedup[T comparable](in []T) []T {
	seen := make(map[T]bool, len(in))
	out := in[:0:0]
	for _, v := range in {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}
