package mcp

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/agentexec/agentexec/policy"
)

// describe is the MCP description of a policy tool: what it runs, and what the
// policy lets it read, write, execute and connect to, and its limits, so that the
// model knows before it calls what will be refused.
func describe(pol *policy.Policy, t *policy.Tool, shell bool) string {
	var b strings.Builder
	exe := t.Path
	if exe == "" {
		exe = t.Exec + ", not found on this host: calls fail"
	}
	if shell {
		fmt.Fprintf(&b, "Runs a shell script as `%s -c SCRIPT` (policy tool %q, %s) inside the agentexec sandbox.", t.Name, t.Name, exe)
	} else {
		fmt.Fprintf(&b, "Runs `%s` (%s) inside the agentexec sandbox, without a shell: each element of args is one argument.", t.Name, exe)
	}
	fmt.Fprintf(&b, " cwd is relative to the workspace %s.", pathText(pol, pol.Workspace))
	p := t.Profile
	if p != nil {
		fmt.Fprintf(&b, "\nMay read: %s.", pathList(pol, p.FS.Read))
		fmt.Fprintf(&b, "\nMay write: %s.", pathList(pol, p.FS.Write))
		if len(p.FS.Protect) > 0 {
			fmt.Fprintf(&b, " Read-only even there: %s and repositories' .git metadata.", pathList(pol, p.FS.Protect))
		}
		fmt.Fprintf(&b, "\nMay execute: %s.", pathList(pol, p.FS.Exec))
		fmt.Fprintf(&b, "\nNetwork: %s.", network(p.Network))
	}
	fmt.Fprintf(&b, "\nLimits per call: %s.", limits(t))
	if rules := argRules(t.Args); rules != "" {
		fmt.Fprintf(&b, "\n%s", rules)
	}
	if !shell {
		b.WriteString("\nA non-zero exit code is the tool's own answer (grep and rg exit 1 when nothing matched), not an error.")
	}
	return b.String()
}

// pathText names a policy path, with the runtime's private temporary directory
// (not made yet when the tools are listed) named as such.
func pathText(pol *policy.Policy, p string) string {
	if pol.PrivateTmp && policy.Beneath(p, policy.TmpDirPlaceholder) {
		rest := strings.TrimPrefix(p, policy.TmpDirPlaceholder)
		return "$TMPDIR (a private temporary directory)" + rest
	}
	return p
}

func pathList(pol *policy.Policy, ps []string) string {
	if len(ps) == 0 {
		return "nothing"
	}
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = pathText(pol, p)
	}
	return strings.Join(out, ", ")
}

func network(n policy.Network) string {
	var parts []string
	if len(n.ConnectTCP) > 0 {
		parts = append(parts, "TCP connect to ports "+ports(n.ConnectTCP))
	}
	if len(n.BindTCP) > 0 {
		parts = append(parts, "TCP bind on ports "+ports(n.BindTCP))
	}
	if len(n.UnixSockets) > 0 {
		parts = append(parts, "unix sockets "+strings.Join(n.UnixSockets, ", "))
	} else if n.Unix {
		parts = append(parts, "unix sockets")
	}
	if len(parts) == 0 {
		return "none (no TCP connect or bind, no unix sockets)"
	}
	s := strings.Join(parts, "; ")
	if n.Isolated != "" {
		s += " (inside an empty network namespace)"
	}
	return s
}

func ports(ps []uint16) string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = strconv.Itoa(int(p))
	}
	return strings.Join(out, ", ")
}

func limits(t *policy.Tool) string {
	var parts []string
	if t.Timeout > 0 {
		parts = append(parts, "timeout "+t.Timeout.String()+" (timeout_ms may only shorten it)")
	} else {
		parts = append(parts, "no timeout unless timeout_ms sets one")
	}
	if t.OutputBytes > 0 {
		parts = append(parts, "output "+sizeText(t.OutputBytes)+" per stream (the rest is dropped and counted)")
	}
	if p := t.Profile; p != nil {
		if p.Limits.Memory > 0 {
			parts = append(parts, "memory "+sizeText(p.Limits.Memory))
		}
		if p.Limits.Pids > 0 {
			parts = append(parts, fmt.Sprintf("%d processes", p.Limits.Pids))
		}
		if p.Limits.CPU > 0 {
			parts = append(parts, strconv.FormatFloat(p.Limits.CPU, 'g', -1, 64)+" CPUs")
		}
		if p.Concurrency > 0 {
			parts = append(parts, fmt.Sprintf("at most %d such calls at once", p.Concurrency))
		}
	}
	return strings.Join(parts, ", ")
}

func sizeText(n int64) string {
	for _, u := range []struct {
		unit string
		size int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.size && n%u.size == 0 {
			return fmt.Sprintf("%d %s", n/u.size, u.unit)
		}
	}
	return fmt.Sprintf("%d bytes", n)
}

func argRules(r policy.ArgRules) string {
	var parts []string
	if len(r.Allow) > 0 {
		parts = append(parts, "Arguments must begin with one of: "+patterns(r.Allow)+".")
	}
	if len(r.Deny) > 0 {
		parts = append(parts, "Arguments refused anywhere: "+patterns(r.Deny)+".")
	}
	return strings.Join(parts, " ")
}

func patterns(ps []policy.Pattern) string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = strconv.Quote(p.Text)
	}
	return strings.Join(out, ", ")
}

// durationText prints a duration the way the text results do.
func durationText(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%d µs", d.Microseconds())
	case d < time.Second:
		return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000)
	case d < time.Minute:
		return fmt.Sprintf("%.2f s", d.Seconds())
	default:
		return d.Round(time.Second).String()
	}
}
