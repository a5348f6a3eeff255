package agentexec

import (
	"io"
	"os"
	"syscall"
	"time"

	"github.com/agentexec/agentexec/internal/templates"
	"github.com/agentexec/agentexec/policy"
)

// Request is one launch of a policy tool.
type Request struct {
	// Tool names a tool of the policy.
	Tool string
	// Args are the arguments, without argv[0] (agentexec sets argv[0] to the base
	// name of the tool's executable).
	Args []string
	// Dir is the working directory; "" means the policy's workspace. It must lie
	// inside the profile's read, write or exec roots.
	Dir string
	// Env holds per-request variables; each must be on the tool's allow-list.
	Env map[string]string
	// Stdin is fed to the child (nil: /dev/null, unless StdinFile is set).
	Stdin io.Reader
	// StdinFile is a path opened read-only as the child's stdin.
	StdinFile string
	// Timeout overrides the tool's wall-clock limit when non-zero and shorter.
	Timeout time.Duration
	// MaxOutputBytes overrides the tool's per-stream output cap when non-zero and smaller.
	MaxOutputBytes int64
	// ExtraFiles are passed to the child as fds 3, 4, … (nothing else is inherited).
	ExtraFiles []*os.File
	// Limits, when set, lowers the profile's cgroup limits for this launch: each
	// non-zero field must be at most the profile's (where the profile sets one), or
	// the request is denied. Launches with the same limits share a pool of cgroups,
	// created on first use. A limit the host cannot enforce is listed in the Result's
	// Unenforced under `cgroup: best_effort`, and fails the launch (an error matching
	// ErrNotSupported) under `cgroup: require`.
	Limits *policy.Limits
}

// Backend names how a launch was made.
type Backend string

const (
	// BackendUserspace is the userspace template path: clone3 + exec of a revalidated binary.
	BackendUserspace = Backend(templates.BackendUserspace)
	// BackendKernel is the kernel spawn_template path.
	BackendKernel = Backend(templates.BackendKernel)
	// BackendNone is a launch without a template (path looked up per launch).
	BackendNone = Backend(templates.BackendNone)
)

// TemplateState says what happened to the tool's template on a launch.
type TemplateState string

const (
	// TemplateHit means a prepared template was valid and used.
	TemplateHit = TemplateState(templates.StateHit)
	// TemplateCreated means the template was created on first use (a tool not marked hot).
	TemplateCreated = TemplateState(templates.StateCreated)
	// TemplateRecreated means the binary had changed and the template was recreated.
	TemplateRecreated = TemplateState(templates.StateRecreated)
	// TemplateNone means no template was used.
	TemplateNone = TemplateState(templates.StateNone)
)

// Result is the outcome of a launch that started (or was attempted by the spawner).
type Result struct {
	// Tool is the tool's name.
	Tool string
	// Pid is the child's process id.
	Pid int
	// ExitCode is the exit status, or -1 when the child died by a signal.
	// Exec failures follow the shell convention: 127 not found, 126 not executable.
	ExitCode int
	// Signal is the signal that killed the child (0 if it exited).
	Signal syscall.Signal
	// ExecError describes an exec failure (ExitCode 126 or 127), "" otherwise.
	ExecError string
	// Stdout and Stderr hold what the child wrote, up to the output cap.
	Stdout, Stderr []byte
	// StdoutTruncated and StderrTruncated report output beyond the cap; the excess
	// was read and discarded (the child was never blocked), and counted here.
	StdoutTruncated, StderrTruncated bool
	StdoutDropped, StderrDropped     int64
	// TimedOut is set when the wall-clock limit killed the launch; Canceled when the
	// context did.
	TimedOut, Canceled bool
	// Wall is the time from spawn to exit.
	Wall time.Duration
	// UserCPU and SystemCPU come from the child's rusage.
	UserCPU, SystemCPU time.Duration
	// CgroupCPU is the cgroup's CPU usage (the whole tree), when a cgroup was used.
	CgroupCPU time.Duration
	// PeakMemory is the cgroup's memory.peak in bytes (0 if unknown).
	PeakMemory int64
	// OOMKilled is set when the kernel's OOM killer acted inside the launch's cgroup.
	OOMKilled bool
	// PidsPeak is the most processes the launch's cgroup held (0 if unknown).
	PidsPeak int64
	// Cgroup is the cgroup path the child ran in ("" without cgroup placement).
	Cgroup string
	// Queued is how long the request waited for a slot of its profile (its
	// concurrency) before it launched; the wall-clock limit counts it.
	Queued time.Duration
	// Backend is how the child was launched, Template what happened to its template.
	Backend  Backend
	Template TemplateState
	// PlacementDelay is the time between spawn and cgroup placement (kernel backend
	// only: the userspace path places the child before its first instruction).
	PlacementDelay time.Duration
	// Unenforced lists limits and rules the policy asked for that this host could
	// not enforce (best-effort policies only), e.g. "cgroup: memory", "landlock: net.connect_tcp".
	Unenforced []string
	// Containment lists the layers in force for this launch, e.g. "landlock-abi-7",
	// "seccomp", "no-caps", "cgroup", "netns".
	Containment []string
	// Denials lists what the sandbox refused the launch: kernel denials
	// (policy kernel_denials) and the egress proxy's refusals, each with a hint
	// saying which policy change would allow it, or that none should
	// (docs/denials.md). DenialsStatus says how complete the list is.
	Denials       []policy.Denial
	DenialsStatus DenialsStatus
	// Egress is what the launch did through the egress proxy (nil when its tool
	// has no network.allow or network.ssh; docs/network.md).
	Egress *EgressReport
}

// DenialsStatus says how far a Result's Denials can be trusted: State is
// "complete", "incomplete" (records may be missing; Reason says why) or
// "unavailable" (no kernel denials: Reason says why, such as kernel_denials: off);
// Omitted counts the denial records left out past the per-launch cap of distinct
// denials (each record once).
type DenialsStatus struct {
	State   string `json:"state"`
	Reason  string `json:"reason,omitempty"`
	Omitted int    `json:"omitted,omitempty"`
}

// EgressReport is what a launch did through the egress proxy: the connections
// it allowed (destination, the rule that matched, bytes each way) and the totals.
// Its refusals are in Result.Denials (layer "network").
type EgressReport struct {
	Allowed []EgressConn `json:"allowed,omitempty"`
	// DroppedAllowed counts allowed connections past the report's cap (counted in
	// Sent and Received, not listed).
	DroppedAllowed int   `json:"dropped_allowed,omitempty"`
	Sent           int64 `json:"sent"`
	Received       int64 `json:"received"`
}

// EgressConn is one allowed connection (a tunnel, or a plain HTTP request).
type EgressConn struct {
	Method      string  `json:"method"`
	Host        string  `json:"host"`
	Port        uint16  `json:"port"`
	Addr        string  `json:"addr"`
	Rule        string  `json:"rule"`
	Sent        int64   `json:"sent"`
	Received    int64   `json:"received"`
	Intercepted bool    `json:"intercepted,omitempty"`
	Error       string  `json:"error,omitempty"`
	DurationMS  float64 `json:"duration_ms"`
}

// Success reports whether the child exited with status 0, not killed by a signal or limit.
func (r *Result) Success() bool {
	return r.ExitCode == 0 && r.Signal == 0 && !r.TimedOut && !r.Canceled
}
