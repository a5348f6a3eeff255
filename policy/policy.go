// Package policy is agentexec's YAML policy language: the schema, strict parsing,
// defaults, validation and the grouping of tools into sandbox profiles.
//
// A policy names the tools an agent may launch and, for each, what it may read,
// write, execute and connect to, and its limits:
//
//	version: 1
//	defaults:
//	  filesystem:
//	    read: [/usr, /lib, /etc, "${WORKSPACE}"]
//	    exec: [/usr/bin, /bin]
//	  limits: {memory: 512MiB, pids: 64, timeout: 30s}
//	tools:
//	  rg: {exec: rg, hot: true}
//	  git:
//	    exec: /usr/bin/git
//	    args:
//	      allow: ["status|diff|log|show"]
//	      deny: ["push", "-c", "--upload-pack*"]
//
// Parse reads and validates a policy without touching the host: the same bytes give
// the same result (or the same errors) on every machine. Resolve then looks bare tool
// names up through the policy's PATH and records what it found; it is the only step
// that reads the filesystem. Load does both.
//
// Everything that depends on the running kernel (Landlock ABI, cgroup controllers,
// spawn templates) is decided later, when the runtime builds its sandbox from a
// resolved policy; see docs/policy.md for what each setting means on each kernel.
//
// It also owns admission (Admit: whether a request may run, decided from the
// policy alone, with a Refusal naming the rule), the per-ABI Landlock feature
// table (landlockabi.go), the egress allow-lists and their presets (egress.go),
// and the hints that say which policy change would allow a denial (hint.go). It
// must not import agentexec's host packages (spawner, cgroup, contain, templates,
// sys, osthread) nor make syscalls: .golangci.yml enforces it.
package policy

import "time"

// CurrentVersion is the policy format version this build reads.
const CurrentVersion = 1

// Enforcement says what happens when the host cannot enforce a rule or limit.
type Enforcement string

const (
	// Require makes a rule the host cannot enforce an error at start.
	Require Enforcement = "require"
	// BestEffort enforces what the host can, warns at start and reports the rest as
	// unenforced in every result.
	BestEffort Enforcement = "best_effort"
)

// KernelDenials says whether results carry the denials the kernel logged
// (docs/denials.md): "off" (the default; only the policy's own refusals), "on"
// (turn the host's audit on if it is off, restore it at Close; unavailable with
// the reason where the host cannot), "require" (an error at start where the host
// cannot).
type KernelDenials string

// KernelDenials settings.
const (
	KernelDenialsOff     KernelDenials = "off"
	KernelDenialsOn      KernelDenials = "on"
	KernelDenialsRequire KernelDenials = "require"
)

// KernelTemplates selects the spawn_template kernel backend.
type KernelTemplates string

const (
	// KernelTemplatesAuto uses kernel templates where the kernel has them.
	KernelTemplatesAuto KernelTemplates = "auto"
	// KernelTemplatesOff always uses the userspace backend.
	KernelTemplatesOff KernelTemplates = "off"
	// KernelTemplatesRequire makes a kernel without spawn templates an error at start.
	KernelTemplatesRequire KernelTemplates = "require"
)

// Policy is a parsed, validated policy. Profiles group the tools whose sandbox rules
// are identical; each profile gets one spawner process and one Landlock ruleset.
type Policy struct {
	// Version is the format version the file declared.
	Version int
	// Source names where the policy came from (a file name, or "default.yaml" for the
	// embedded default); errors are prefixed with it.
	Source string
	// Workspace is the expanded ${WORKSPACE}: the default working directory.
	Workspace string
	// Path is the search path for bare executable names, in order.
	Path []string
	// Tools in the order the file lists them.
	Tools []*Tool
	// Profiles in order of first use by Tools.
	Profiles []*Profile
	// KernelTemplates selects the spawn_template backend.
	KernelTemplates KernelTemplates
	// KernelDenials asks for the kernel's denials in every result (docs/denials.md).
	KernelDenials KernelDenials
	// SpawnTemplateSyscalls overrides the proposed syscall numbers (nil: defaults).
	SpawnTemplateSyscalls *SyscallNumbers
	// Shell is the name of the tool that runs `sh` scripts (agentexec ci); "" if none.
	Shell string
	// TmpDir is what ${TMPDIR} stands for: Options.TmpDir, or, when that was empty
	// (PrivateTmp), TmpDirPlaceholder until a Runtime puts the directory it made in
	// its place (WithTmpDir).
	TmpDir string
	// PrivateTmp says that ${TMPDIR} is a directory of each runtime's own (see
	// TmpDirPlaceholder): Options.TmpDir was empty.
	PrivateTmp bool
	// Secrets are the credentials of the secrets: section, in the order written
	// (secrets.go): where the runtime reads each value, and where it may go.
	Secrets []*Secret
}

// SyscallNumbers overrides the numbers of the spawn_template syscalls, which are
// only proposals in the RFC series.
type SyscallNumbers struct {
	Create int
	Spawn  int
}

// Tool is one launchable tool with its defaults merged in.
type Tool struct {
	// Name is the key under tools: in the policy; requests name tools by it.
	Name string
	// Exec is the executable as written: an absolute path or a bare name.
	Exec string
	// Path is the absolute path Resolve found; "" until resolved or when missing.
	Path string
	// ResolveError says why Path is empty after Resolve (nil when found).
	ResolveError error
	// Required makes a missing executable an error at Resolve.
	Required bool
	// Hot asks for a template prepared at start.
	Hot bool
	// Args are the argv rules.
	Args ArgRules
	// Env is the environment allow-list and fixed values.
	Env Env
	// Timeout is the wall-clock limit per launch (0: none).
	Timeout time.Duration
	// OutputBytes caps each of stdout and stderr (0: unlimited).
	OutputBytes int64
	// Egress lists what the tool may reach through the runtime's egress proxy
	// (network.allow, network.ssh); nil: no proxy for this tool (docs/network.md).
	Egress *Egress
	// Profile is the sandbox profile the tool runs under.
	Profile *Profile
	// Line and Col are where the tool is defined in the source (0 if unknown).
	Line int
	Col  int
}

// ArgRules restrict a tool's arguments (argv without argv[0]).
//
// A pattern is a space-separated list of words; each word is a set of alternatives
// separated by "|", and each alternative is a glob in which "*" matches any run of
// characters and "?" one character. An allow pattern must match the arguments from
// the first one on (a prefix match); a deny pattern refuses the launch if it matches
// at any position. With no allow patterns every argv not denied is allowed.
type ArgRules struct {
	Allow []Pattern
	Deny  []Pattern
}

// Pattern is one argv pattern with the rule path that names it in errors, such as
// "tools.git.args.deny[1]".
type Pattern struct {
	Rule  string
	Text  string
	Words [][]string
}

// Env is the environment a tool's launches receive: only variables on the allow-list
// (from the caller's request) plus fixed values. Nothing is inherited from the agent.
type Env struct {
	// Allow lists variable names (globs allowed, as "LC_*") that a request may set.
	Allow []string
	// Set holds fixed values, applied after the request's.
	Set []EnvVar
}

// EnvVar is one fixed environment value.
type EnvVar struct{ Name, Value string }

// Profile is a set of sandbox rules shared by one or more tools: one spawner process,
// one Landlock ruleset, one seccomp filter, one pool of cgroups.
type Profile struct {
	// Name identifies the profile in reports: the first tool's name, or "default".
	Name string
	// Tools lists the names of the tools in this profile.
	Tools       []string
	FS          FS
	Network     Network
	IPC         IPC
	Limits      Limits
	Enforcement EnforcementRules
	// Concurrency bounds the launches in flight in this profile's spawner.
	Concurrency int
	// User runs tools as another uid/gid (nil: the runtime's own).
	User *User
}

// FS lists absolute, cleaned paths. A path grants its rights to everything beneath it.
type FS struct {
	// Read roots: read files, list directories.
	Read []string
	// Write roots: create, write, remove, rename, truncate (and read) beneath them.
	Write []string
	// Exec roots: execute files (and read them) beneath them.
	Exec []string
	// Protect are paths kept read-only for tools even beneath a write root (editor
	// and agent configuration, .envrc), like the git metadata of the repositories
	// in the write roots (docs/security.md, "Repository metadata"). Enforced with
	// mounts in the spawner's private mount namespace; paths absent when the runtime
	// starts are skipped (and reported).
	Protect []string
}

// Network is what a profile's tools may do on the network.
type Network struct {
	// ConnectTCP and BindTCP are allowed TCP ports; empty means none.
	ConnectTCP []uint16
	BindTCP    []uint16
	// Unix allows creating AF_UNIX sockets (socketpairs need nothing). Landlock
	// before ABI 9 does not mediate connect(2) on pathname sockets: only permission
	// bits do, which uid 0 passes on every root-owned socket, so tools running as
	// uid 0 (user: root) may have Unix only with UnixSockets named. Abstract sockets
	// are governed by IPC.ScopeAbstractUnix.
	Unix bool
	// UnixSockets names the pathname sockets tools need (absolute paths); a
	// non-empty list implies Unix.
	UnixSockets []string
	// Isolated runs the profile in an empty network namespace: "" (off), require or
	// best_effort.
	Isolated Enforcement
	// Egress says that some tool of the profile reaches the runtime's egress
	// proxy (Tool.Egress is set): the runtime adds the proxy's port to the
	// profile's Landlock connect rules (docs/network.md).
	Egress bool
}

// IPC scopes: when set, tools cannot reach what lies outside their sandbox.
type IPC struct {
	// ScopeAbstractUnix denies connecting to abstract unix sockets created outside
	// the sandbox (Landlock ABI 6).
	ScopeAbstractUnix bool
	// ScopeSignals denies signalling processes outside the sandbox (Landlock ABI 6).
	ScopeSignals bool
}

// Limits are the cgroup limits of a profile's launches. Zero means no limit.
type Limits struct {
	// Memory is memory.max in bytes; memory.swap.max is set to 0 when it is.
	Memory int64
	// Pids is pids.max.
	Pids int64
	// CPU is the cpu.max quota in cores (1.5 = one and a half cores).
	CPU float64
}

// EnforcementRules say, per kernel feature, whether missing support is an error.
type EnforcementRules struct {
	Landlock Enforcement
	Cgroup   Enforcement
}

// User is the identity tools run as.
type User struct {
	UID, GID uint32
	Groups   []uint32
	// Own (`user: root`) keeps the runtime's own identity: uid 0 when the runtime is
	// root (where tools otherwise run as an unprivileged identity of the runtime's),
	// unchanged otherwise. UID, GID and Groups are then unused.
	Own bool
}

// RunsAsRoot reports whether tools with this user setting run as uid 0 under a
// runtime whose effective uid is euid. A nil User (no user:) never does: a root
// runtime gives such tools an unprivileged identity.
func (u *User) RunsAsRoot(euid int) bool {
	if u == nil {
		return false
	}
	if u.Own {
		return euid == 0
	}
	return u.UID == 0
}

// Tool returns the tool with the given name.
func (p *Policy) Tool(name string) (*Tool, bool) {
	for _, t := range p.Tools {
		if t.Name == name {
			return t, true
		}
	}
	return nil, false
}
