package mcp

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/agentexec/agentexec"
	"github.com/agentexec/agentexec/policy"
)

// Output is a call's structured content. The exit code comes first; the fields
// after it follow agentexec.ResultJSON (docs/protocol.md) where they share a name.
type Output struct {
	// ExitCode is set when the tool exited (any code: a non-zero exit is the tool's
	// own answer); absent when it was killed, refused or never started.
	ExitCode *int `json:"exit_code,omitempty"`
	// Status is ok, denied, error, timeout or killed (as in `serve`).
	Status string `json:"status"`
	// Tool is the policy tool's name (the MCP tool name may differ: docs/mcp.md).
	Tool   string `json:"tool"`
	Signal string `json:"signal,omitempty"`
	// Stdout and Stderr are text when valid UTF-8, else base64 with the encoding
	// field set to "base64".
	Stdout          string `json:"stdout"`
	StdoutEncoding  string `json:"stdout_encoding,omitempty"`
	Stderr          string `json:"stderr"`
	StderrEncoding  string `json:"stderr_encoding,omitempty"`
	StdoutTruncated bool   `json:"stdout_truncated"`
	StderrTruncated bool   `json:"stderr_truncated"`
	// StdoutDropped and StderrDropped count the bytes beyond the policy's output
	// cap (OutputCapBytes) that were read and dropped.
	StdoutDropped  int64   `json:"stdout_dropped_bytes,omitempty"`
	StderrDropped  int64   `json:"stderr_dropped_bytes,omitempty"`
	OutputCapBytes int64   `json:"output_cap_bytes,omitempty"`
	DurationMS     float64 `json:"duration_ms"`
	TimedOut       bool    `json:"timed_out"`
	// TimeoutMS is the wall-clock limit that applied (the policy's, or timeout_ms
	// when shorter); 0 for none.
	TimeoutMS int64 `json:"timeout_ms,omitempty"`
	Canceled  bool  `json:"canceled,omitempty"`
	OOMKilled bool  `json:"oom_killed,omitempty"`
	// ExecError says why the program could not be executed (exit code 126 or 127).
	ExecError string `json:"exec_error,omitempty"`
	// Error is the launch's or the request's error, or the denial's text.
	Error string `json:"error,omitempty"`
	// Denials say what was refused, by which layer and rule, and what would allow
	// it: the policy's refusal of the call (nothing ran), or what the sandbox
	// refused the tool while it ran (kernel denials, the egress proxy's refusals).
	Denials []Denial `json:"denials,omitempty"`
	// DenialsStatus says how complete the kernel's part of Denials is: complete,
	// incomplete or unavailable, with the reason (docs/denials.md).
	DenialsStatus *agentexec.DenialsStatus `json:"denials_status,omitempty"`
	// Egress is what the tool did through the egress proxy (docs/network.md).
	Egress *agentexec.EgressReport `json:"egress,omitempty"`
	// Unenforced lists what the policy asks for and this host could not enforce.
	Unenforced []string `json:"unenforced,omitempty"`
}

// Denial is one refusal: the rule, the operation, the object and why (as
// agentexec.DeniedError has them), with a hint saying what would allow it.
type Denial struct {
	// Source is who refused: "policy" (agentexec's check before launch, nothing
	// ran), "kernel" (Landlock or seccomp while the tool ran) or "network" (the
	// egress proxy while the tool ran).
	Source string `json:"source"`
	// Layer is the sandbox layer (policy.Denial's): policy, landlock, seccomp or network.
	Layer string `json:"layer,omitempty"`
	// Rule is the policy field that refused, or that the hint would change.
	Rule string `json:"rule"`
	// Op is the refused operation: launch, argv, dir, env, limits for the policy;
	// the access for the others (fs.read_file, net.connect_tcp, seccomp.socket,
	// net.egress.destination, …).
	Op     string `json:"op"`
	Object string `json:"object"`
	Reason string `json:"reason"`
	Hint   string `json:"hint"`
	// Count is how many times the tool met this denial (kernel and network).
	Count int `json:"count,omitempty"`
	// ByDesign marks a refusal no policy change should lift; Patch is otherwise the
	// policy change that would allow it (docs/denials.md).
	ByDesign bool            `json:"by_design,omitempty"`
	Patch    []policy.Change `json:"patch,omitempty"`
}

// callInfo is what the text rendering needs besides the result.
type callInfo struct {
	mcpName string
	tool    string
	cap     int64
	timeout time.Duration
}

// render turns the outcome of Run into the structured content, its text form and
// whether it is an isError result: denials, launch failures, exec failures,
// timeouts, kills and cancellations are; any exit of the tool itself is not.
func render(ci callInfo, res agentexec.Result, err error) (*Output, string, bool) {
	rj := agentexec.NewResultJSON("", res, err)
	out := &Output{
		ExitCode: rj.ExitCode, Status: rj.Status, Tool: ci.tool, Signal: rj.Signal,
		Stdout: rj.Stdout, StdoutEncoding: rj.StdoutEncoding, Stderr: rj.Stderr, StderrEncoding: rj.StderrEncoding,
		StdoutTruncated: rj.StdoutTruncated, StderrTruncated: rj.StderrTruncated,
		StdoutDropped: rj.StdoutDropped, StderrDropped: rj.StderrDropped,
		DurationMS: rj.DurationMS, TimedOut: rj.TimedOut, Canceled: rj.Canceled, OOMKilled: rj.OOMKilled,
		ExecError: rj.ExecError, Error: rj.Error, Unenforced: rj.Unenforced,
		TimeoutMS: ci.timeout.Milliseconds(),
	}
	if rj.StdoutTruncated || rj.StderrTruncated {
		out.OutputCapBytes = ci.cap
	}
	out.Denials = denials(res, err)
	out.DenialsStatus, out.Egress = rj.DenialsStatus, rj.Egress
	if len(out.Unenforced) == 0 {
		out.Unenforced = nil
	}
	if errors.Is(err, errCanceled) {
		out.Status, out.Canceled = agentexec.StatusKilled, true
	}

	var b strings.Builder
	isError := true
	switch {
	case rj.Status == agentexec.StatusDenied:
		b.WriteString("denied by the policy, nothing was run:\n")
		for _, d := range out.Denials {
			fmt.Fprintf(&b, "- rule %s refused %s %s: %s\n  to allow it: %s\n", d.Rule, d.Op, d.Object, d.Reason, d.Hint)
		}
	case err != nil:
		fmt.Fprintf(&b, "launch failed, nothing was run: %s\n", out.Error)
	case out.ExecError != "":
		fmt.Fprintf(&b, "exit code %d: %s could not be executed: %s\n", *out.ExitCode, ci.tool, out.ExecError)
	case out.TimedOut:
		fmt.Fprintf(&b, "timed out: %s was killed (its whole process tree) after the %s limit\n", ci.tool, ci.timeout)
	case out.Canceled:
		fmt.Fprintf(&b, "canceled: %s was killed (its whole process tree) after %s\n", ci.tool, durationText(res.Wall))
	case out.Signal != "":
		why := ""
		if out.OOMKilled {
			why = " (out of memory: the policy's memory limit)"
		}
		fmt.Fprintf(&b, "killed by %s%s after %s\n", out.Signal, why, durationText(res.Wall))
	default:
		isError = false
		fmt.Fprintf(&b, "exit code %d (%s, %s)\n", *out.ExitCode, ci.tool, durationText(res.Wall))
	}
	if err == nil {
		sandboxDenials(&b, out)
		stream(&b, "stdout", out.Stdout, out.StdoutEncoding, out.StdoutTruncated, out.StdoutDropped, ci.cap)
		stream(&b, "stderr", out.Stderr, out.StderrEncoding, out.StderrTruncated, out.StderrDropped, ci.cap)
	}
	if len(out.Unenforced) > 0 {
		fmt.Fprintf(&b, "not enforced on this host: %s\n", strings.Join(out.Unenforced, ", "))
	}
	return out, strings.TrimRight(b.String(), "\n"), isError
}

func stream(b *strings.Builder, name, text, enc string, truncated bool, dropped, limit int64) {
	if text == "" && !truncated {
		fmt.Fprintf(b, "--- %s: empty ---\n", name)
		return
	}
	var notes []string
	if enc == "base64" {
		notes = append(notes, "not UTF-8, shown as base64")
	}
	if truncated {
		notes = append(notes, fmt.Sprintf("truncated at the policy's output cap of %s: %d more bytes were dropped", sizeText(limit), dropped))
	}
	if len(notes) > 0 {
		fmt.Fprintf(b, "--- %s (%s) ---\n", name, strings.Join(notes, "; "))
	} else {
		fmt.Fprintf(b, "--- %s ---\n", name)
	}
	b.WriteString(text)
	if !strings.HasSuffix(text, "\n") {
		b.WriteByte('\n')
	}
}

// denials lists the refusals of a launch: the policy's (a *agentexec.DeniedError
// before launch), or those of the launch that ran (Result.Denials: the kernel's,
// under the policy's kernel_denials, and the egress proxy's).
func denials(res agentexec.Result, err error) []Denial {
	var d *agentexec.DeniedError
	if errors.As(err, &d) {
		return []Denial{{Source: "policy", Layer: policy.LayerPolicy, Rule: d.Rule, Op: d.Op, Object: d.Object, Reason: d.Reason, Hint: hint(d)}}
	}
	var out []Denial
	for _, rd := range res.Denials {
		out = append(out, sandboxDenial(rd))
	}
	return out
}

// sandboxDenial converts a denial of a launch that ran.
func sandboxDenial(d policy.Denial) Denial {
	out := Denial{Source: "kernel", Layer: d.Layer, Op: d.Access, Object: d.Object.String(), Count: d.Count}
	switch d.Layer {
	case policy.LayerLandlock:
		out.Reason = "refused by Landlock while the tool ran"
	case policy.LayerSeccomp:
		out.Reason = "refused by the seccomp filter while the tool ran"
	case policy.LayerNetwork:
		out.Source, out.Rule = "network", d.Object.Rule
		out.Reason = "refused by the egress proxy while the tool ran"
	case policy.LayerPolicy:
		out.Source, out.Rule = "policy", d.Object.Rule
		out.Reason = "refused by the policy"
	default:
		out.Reason = "refused by the " + d.Layer + " layer"
	}
	if d.Hint != nil {
		out.Hint, out.ByDesign, out.Patch = d.Hint.Text, d.Hint.ByDesign, d.Hint.Patch
		if len(d.Hint.Patch) > 0 && out.Rule == "" {
			out.Rule = d.Hint.Patch[0].Field
		}
	}
	if out.Hint == "" {
		out.Hint = "no hint: the policy has no field for this"
	}
	return out
}

// sandboxDenials lists in the text what the sandbox refused the tool while it
// ran, so that the model does not take a "Permission denied" for the file's own.
func sandboxDenials(b *strings.Builder, out *Output) {
	if len(out.Denials) > 0 {
		fmt.Fprintf(b, "the sandbox refused the tool %d kind(s) of access while it ran:\n", len(out.Denials))
		for _, d := range out.Denials {
			times := ""
			if d.Count > 1 {
				times = fmt.Sprintf(" (%d times)", d.Count)
			}
			fmt.Fprintf(b, "- %s %s %s%s\n  %s\n", d.Layer, d.Op, d.Object, times, hintLine(d))
		}
	}
	if st := out.DenialsStatus; st != nil && st.State == "incomplete" {
		fmt.Fprintf(b, "(the sandbox's list of refusals may be incomplete: %s)\n", st.Reason)
	}
}

func hintLine(d Denial) string {
	if d.ByDesign || strings.HasPrefix(d.Hint, "not allowed by design") {
		return d.Hint
	}
	return "to allow it: " + d.Hint
}

// hint says what would allow a refused request.
func hint(d *agentexec.DeniedError) string {
	switch d.Op {
	case "launch":
		return "only the tools of this server's list can run; a new one must be added under tools: in the policy"
	case "argv":
		if strings.Contains(d.Rule, ".deny[") {
			return fmt.Sprintf("the policy forbids these arguments; leave them out (allowing them means changing %s in the policy)", d.Rule)
		}
		return fmt.Sprintf("the arguments must begin as one of the patterns of %s does (the tool's description lists them)", d.Rule)
	case "dir":
		return "give a cwd inside the workspace (or another root the tool's description lists); widening the roots means changing the policy's filesystem rules"
	case "env":
		return fmt.Sprintf("the variable must be on %s in the policy", d.Rule)
	case "limits":
		return fmt.Sprintf("ask for at most what %s allows", d.Rule)
	default:
		return "the policy must allow it: see " + d.Rule
	}
}

// errCanceled is the error of a call the client canceled before it launched.
var errCanceled = errors.New("canceled by the client before launch")
