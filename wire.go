package agentexec

import (
	"encoding/base64"
	"errors"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/agentexec/agentexec/policy"
)

// Result statuses in the JSON form.
const (
	StatusOK      = "ok"      // the tool ran and exited (any exit code, 126/127 included)
	StatusDenied  = "denied"  // the policy refused the request
	StatusError   = "error"   // the request was bad or the launch failed
	StatusTimeout = "timeout" // the wall-clock limit killed the tool
	StatusKilled  = "killed"  // the tool died by a signal (canceled, OOM, or its own)
)

// DurationMS is a duration in the milliseconds of the JSON forms (results, ci
// reports), to the microsecond.
func DurationMS(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// ResultJSON is the JSON form of a Result, shared by `agentexec serve` (one per line)
// and `agentexec run --json`. docs/protocol.md has its JSON Schema.
type ResultJSON struct {
	Type   string `json:"type"`
	ID     string `json:"id"`
	Status string `json:"status"`
	Tool   string `json:"tool,omitempty"`
	// ExitCode is set when the tool exited; Signal (e.g. "SIGKILL") when it died by one.
	ExitCode  *int   `json:"exit_code,omitempty"`
	Signal    string `json:"signal,omitempty"`
	ExecError string `json:"exec_error,omitempty"`
	// Stdout and Stderr are text when valid UTF-8, else base64 with the encoding field
	// set to "base64".
	Stdout          string  `json:"stdout"`
	StdoutEncoding  string  `json:"stdout_encoding,omitempty"`
	Stderr          string  `json:"stderr"`
	StderrEncoding  string  `json:"stderr_encoding,omitempty"`
	StdoutTruncated bool    `json:"stdout_truncated"`
	StderrTruncated bool    `json:"stderr_truncated"`
	StdoutDropped   int64   `json:"stdout_dropped_bytes,omitempty"`
	StderrDropped   int64   `json:"stderr_dropped_bytes,omitempty"`
	DurationMS      float64 `json:"duration_ms"`
	// QueueMS is how long the request waited for a slot of its profile before it
	// launched (its deadline counts it).
	QueueMS          float64  `json:"queue_ms"`
	CPUMS            float64  `json:"cpu_ms"`
	UserCPUMS        float64  `json:"user_cpu_ms"`
	SystemCPUMS      float64  `json:"system_cpu_ms"`
	CgroupCPUMS      float64  `json:"cgroup_cpu_ms,omitempty"`
	PeakMemoryBytes  int64    `json:"peak_memory_bytes"`
	PidsPeak         int64    `json:"pids_peak,omitempty"`
	OOMKilled        bool     `json:"oom_killed"`
	TimedOut         bool     `json:"timed_out"`
	Canceled         bool     `json:"canceled,omitempty"`
	Backend          string   `json:"backend,omitempty"`
	Template         string   `json:"template,omitempty"`
	PlacementDelayUS float64  `json:"placement_delay_us,omitempty"`
	Cgroup           string   `json:"cgroup,omitempty"`
	Unenforced       []string `json:"unenforced"`
	Containment      []string `json:"containment,omitempty"`
	// Denials are what the sandbox refused the launch, each with a hint
	// (docs/denials.md); DenialsStatus how complete the list is.
	Denials       []policy.Denial `json:"denials,omitempty"`
	DenialsStatus *DenialsStatus  `json:"denials_status,omitempty"`
	// Egress is what the launch did through the egress proxy (docs/network.md).
	Egress *EgressReport `json:"egress,omitempty"`
	// Error is the launch or request error (status error), or the denial's text.
	Error string `json:"error,omitempty"`
	// Denied says which rule refused what (status denied).
	Denied *DeniedJSON `json:"denied,omitempty"`
}

// DeniedJSON is a DeniedError in JSON, with its hint (the policy change that
// would allow the request, or that none should).
type DeniedJSON struct {
	Rule   string       `json:"rule"`
	Op     string       `json:"op"`
	Object string       `json:"object"`
	Reason string       `json:"reason"`
	Hint   *policy.Hint `json:"hint,omitempty"`
}

// NewResultJSON converts the outcome of Run (its Result and error) for request id.
func NewResultJSON(id string, r Result, err error) *ResultJSON {
	out := &ResultJSON{Type: "result", ID: id, Tool: r.Tool, Unenforced: nz(r.Unenforced)}
	if err != nil {
		var d *DeniedError
		if errors.As(err, &d) {
			out.Status = StatusDenied
			out.Denied = &DeniedJSON{Rule: d.Rule, Op: d.Op, Object: d.Object, Reason: d.Reason, Hint: d.Hint}
		} else {
			out.Status = StatusError
		}
		out.Error = err.Error()
		return out
	}
	out.Stdout, out.StdoutEncoding = EncodeOutput(r.Stdout)
	out.Stderr, out.StderrEncoding = EncodeOutput(r.Stderr)
	out.StdoutTruncated, out.StderrTruncated = r.StdoutTruncated, r.StderrTruncated
	out.StdoutDropped, out.StderrDropped = r.StdoutDropped, r.StderrDropped
	out.ExecError = r.ExecError
	ms := DurationMS
	out.DurationMS = ms(r.Wall)
	out.QueueMS = ms(r.Queued)
	out.UserCPUMS, out.SystemCPUMS = ms(r.UserCPU), ms(r.SystemCPU)
	out.CPUMS = out.UserCPUMS + out.SystemCPUMS
	out.CgroupCPUMS = ms(r.CgroupCPU)
	if out.CgroupCPUMS > out.CPUMS {
		out.CPUMS = out.CgroupCPUMS // the whole tree, when the cgroup saw more
	}
	out.PeakMemoryBytes, out.PidsPeak, out.OOMKilled = r.PeakMemory, r.PidsPeak, r.OOMKilled
	out.TimedOut, out.Canceled = r.TimedOut, r.Canceled
	out.Backend, out.Template = string(r.Backend), string(r.Template)
	out.PlacementDelayUS = float64(r.PlacementDelay.Microseconds())
	out.Cgroup, out.Containment = r.Cgroup, r.Containment
	out.Denials, out.Egress = r.Denials, r.Egress
	if r.DenialsStatus.State != "" {
		ds := r.DenialsStatus
		out.DenialsStatus = &ds
	}
	switch {
	case r.TimedOut:
		out.Status = StatusTimeout
	case r.Canceled, r.Signal != 0:
		out.Status = StatusKilled
	default:
		out.Status = StatusOK
	}
	if r.Signal != 0 {
		out.Signal = unix.SignalName(r.Signal)
	} else if r.ExitCode >= 0 {
		c := r.ExitCode
		out.ExitCode = &c
	}
	return out
}

// EncodeOutput is how output bytes travel in JSON (results, serve's stream chunks):
// the text itself when it is valid UTF-8 (encoding ""), else base64 (encoding
// "base64").
func EncodeOutput(b []byte) (text, encoding string) {
	if utf8.Valid(b) {
		return string(b), ""
	}
	return base64.StdEncoding.EncodeToString(b), "base64"
}
