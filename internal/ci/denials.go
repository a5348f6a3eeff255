package ci

import (
	"fmt"
	"strings"

	"github.com/agentexec/agentexec"
	"github.com/agentexec/agentexec/policy"
)

// DenialLine words one denial of a launch in one line, as `agentexec run` and
// `agentexec ci` print it: the layer, the access, the object, the count and the
// hint, e.g.
//
//	landlock fs.read_file /etc/shadow (2 times); to allow it: add "/etc/shadow" to tools.cat.filesystem.read
func DenialLine(d policy.Denial) string {
	var b strings.Builder
	b.WriteString(d.Layer + " " + d.Access + " " + DenialObject(d))
	if d.Count > 1 {
		fmt.Fprintf(&b, " (%d times)", d.Count)
	}
	if h := HintText(d.Hint); h != "" {
		b.WriteString("; " + h)
	}
	return b.String()
}

// HintText words a hint for a person: "to allow it: TEXT", or the by-design text
// as it is ("not allowed by design: …"); "" for no hint.
func HintText(h *policy.Hint) string {
	switch {
	case h == nil || h.Text == "":
		return ""
	case h.ByDesign || strings.HasPrefix(h.Text, "not allowed by design"):
		return h.Text
	}
	return "to allow it: " + h.Text
}

// DenialObject words a denial's object (policy.DeniedObject.String).
func DenialObject(d policy.Denial) string { return d.Object.String() }

// EgressLine sums up what a launch did through the egress proxy: the
// connections allowed, the bytes each way, and the refusals (network-layer
// denials, counted with their repeats); "" when the launch had no proxy session.
func EgressLine(e *agentexec.EgressReport, denials []policy.Denial) string {
	if e == nil {
		return ""
	}
	refused := 0
	for _, d := range denials {
		if d.Layer == policy.LayerNetwork {
			refused += max(d.Count, 1)
		}
	}
	allowed := len(e.Allowed) + e.DroppedAllowed
	return fmt.Sprintf("egress: %d %s allowed (%s sent, %s received), %d refused",
		allowed, plural(allowed, "connection", "connections"), fmtBytes(e.Sent), fmtBytes(e.Received), refused)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// StatusNote is what a launch's DenialsStatus adds for a person: that the list
// may be incomplete and why; "" when complete, or when kernel denials are off
// (the policy did not ask). Unavailable for another reason is said when asked.
func StatusNote(st agentexec.DenialsStatus, asked bool) string {
	switch st.State {
	case "incomplete":
		return "the list of kernel denials may be incomplete: " + st.Reason
	case "unavailable":
		if asked && st.Reason != "kernel_denials: off" {
			return "kernel denials unavailable: " + st.Reason
		}
	}
	if st.Omitted > 0 {
		return fmt.Sprintf("%d more kinds of kernel denials left out past the cap", st.Omitted)
	}
	return ""
}

// denialLines are the lines a step's failure shows about refusals: the policy's
// refusal with its hint, or what the sandbox refused while the step ran, and
// the egress summary.
func denialLines(r *StepResult) []string {
	var out []string
	if r.Denied != nil {
		if h := HintText(r.Denied.Hint); h != "" {
			out = append(out, "policy: "+h)
		}
		return out
	}
	for _, d := range r.Result.Denials {
		out = append(out, "denied: "+DenialLine(d))
	}
	if note := StatusNote(r.Result.DenialsStatus, false); note != "" {
		out = append(out, note)
	}
	if e := EgressLine(r.Result.Egress, r.Result.Denials); e != "" {
		out = append(out, e)
	}
	return out
}

// denialsMessage is what the step's message adds for the sandbox's refusals:
// the first one and how many more.
func denialsMessage(ds []policy.Denial) string {
	if len(ds) == 0 {
		return ""
	}
	d := ds[0]
	s := "the sandbox refused " + d.Layer + " " + d.Access + " " + DenialObject(d)
	if len(ds) > 1 {
		s += fmt.Sprintf(" and %d more", len(ds)-1)
	}
	return s
}
