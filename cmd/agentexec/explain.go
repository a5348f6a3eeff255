package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/agentexec/agentexec"
	"github.com/agentexec/agentexec/policy"
)

// cmdExplain prints the denials of results, and what would allow each, for a
// person (docs/denials.md, "explain"). The input is what `run --json` and
// `serve` print: one result object (pretty-printed or not) or a stream of JSON
// values, one per line; serve's other messages (stdout and stderr chunks, errors,
// pong, stats, policy) are skipped.
func cmdExplain(args []string) int {
	fs := flag.NewFlagSet("explain", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: agentexec explain RESULT.json
       agentexec explain -        (read stdin)

Prints each denial of each result (what the sandbox refused, how many times) and
the smallest policy change that would allow it, or why none should. RESULT.json
is what 'agentexec run --json' or 'agentexec serve' prints: one result, or JSON
lines (serve's stdout/stderr chunks and other messages are skipped).
`)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "agentexec explain: want one RESULT.json, or - for stdin (-h for help)")
		return 2
	}
	name := fs.Arg(0)
	var in io.Reader = os.Stdin
	if name == "-" {
		name = "stdin"
	} else {
		f, err := os.Open(name)
		if err != nil {
			fmt.Fprintf(os.Stderr, "agentexec explain: %v\n", err)
			return 1
		}
		defer f.Close()
		in = f
	}
	w := bufio.NewWriter(os.Stdout)
	err := explain(w, in, name)
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "agentexec explain: %v\n", err)
		return 1
	}
	return 0
}

// lineCounter passes its reader through and notes where the newlines are, so
// that an offset of the JSON decoder can be told as a line.
type lineCounter struct {
	r   io.Reader
	off int64
	nl  []int64
}

func (c *lineCounter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	for i, b := range p[:n] {
		if b == '\n' {
			c.nl = append(c.nl, c.off+int64(i))
		}
	}
	c.off += int64(n)
	return n, err
}

// line is the 1-based line of byte offset off.
func (c *lineCounter) line(off int64) int {
	return 1 + sort.Search(len(c.nl), func(i int) bool { return c.nl[i] >= off })
}

// explain reads the JSON values of in (named name in errors) and writes an
// explanation of each result to w. A value that is not an object with a "type",
// or a result that does not decode, is an error naming the value and its line;
// input without any result is an error too.
func explain(w io.Writer, in io.Reader, name string) error {
	lc := &lineCounter{r: in}
	dec := json.NewDecoder(lc)
	values, results := 0, 0
	for dec.More() {
		values++
		start := dec.InputOffset() // More skipped the whitespace: the value starts here
		where := func() string { return fmt.Sprintf("%s: value %d (line %d)", name, values, lc.line(start)) }
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			var se *json.SyntaxError
			if errors.As(err, &se) {
				return fmt.Errorf("%s: line %d: not JSON: %w", name, lc.line(se.Offset), err)
			}
			return fmt.Errorf("%s: %w", where(), err)
		}
		var head struct {
			Type *string `json:"type"`
		}
		if err := json.Unmarshal(raw, &head); err != nil {
			return fmt.Errorf("%s: not a JSON object (a result is one): %s", where(), kindOf(raw))
		}
		if head.Type == nil {
			return fmt.Errorf("%s: not an agentexec result: it has no \"type\" field (results have \"type\": \"result\")", where())
		}
		if *head.Type != "result" {
			continue // serve's chunks, errors, pong, stats, policy
		}
		var r agentexec.ResultJSON
		if err := json.Unmarshal(raw, &r); err != nil {
			return fmt.Errorf("%s: not a valid result: %w", where(), err)
		}
		if results > 0 {
			fmt.Fprintln(w)
		}
		results++
		writeExplanation(w, &r)
	}
	if values == 0 {
		return fmt.Errorf("%s: empty: want a result (agentexec run --json, or serve's output)", name)
	}
	if results == 0 {
		return fmt.Errorf("%s: no result among its %d JSON values (want \"type\": \"result\")", name, values)
	}
	return nil
}

// kindOf names the JSON kind of a value that is not an object.
func kindOf(raw json.RawMessage) string {
	switch s := strings.TrimSpace(string(raw)); {
	case strings.HasPrefix(s, "["):
		return "an array"
	case strings.HasPrefix(s, `"`):
		return "a string"
	case s == "null":
		return "null"
	case s == "true" || s == "false":
		return "a boolean"
	}
	return "a number"
}

// writeExplanation writes one result: a heading (id, tool, outcome, how
// complete its list of denials is), then one block per denial.
func writeExplanation(w io.Writer, r *agentexec.ResultJSON) {
	head := "result"
	if r.ID != "" {
		head += " " + strconv.Quote(r.ID)
	}
	if r.Tool != "" {
		head += " (tool " + r.Tool + ")"
	}
	fmt.Fprintf(w, "%s: %s\n", head, outcome(r))

	n := len(r.Denials)
	if r.Denied != nil {
		n++
	}
	switch n {
	case 0:
		fmt.Fprint(w, "no denials")
	case 1:
		fmt.Fprint(w, "1 denial")
	default:
		fmt.Fprintf(w, "%d denials", n)
	}
	fmt.Fprintf(w, "; %s\n", statusText(r))

	i := 0
	if d := r.Denied; d != nil {
		i++
		fmt.Fprintf(w, "\n%d. policy %s %s\n", i, d.Op, d.Object)
		fmt.Fprintf(w, "   what:  agentexec's policy refused the request before launch: %s (rule %s)\n", d.Reason, d.Rule)
		writeHint(w, d.Hint)
	}
	for _, d := range r.Denials {
		i++
		fmt.Fprintf(w, "\n%d. %s %s %s\n", i, d.Layer, d.Access, d.Object.String())
		fmt.Fprintf(w, "   what:  %s\n", whatText(d))
		if d.Count > 1 {
			fmt.Fprintf(w, "   count: %d times\n", d.Count)
		}
		writeHint(w, d.Hint)
	}
}

// outcome words a result's status.
func outcome(r *agentexec.ResultJSON) string {
	switch r.Status {
	case agentexec.StatusOK:
		s := "ran"
		if r.ExitCode != nil {
			s += fmt.Sprintf(", exit %d", *r.ExitCode)
		}
		if r.ExecError != "" {
			s += " (" + r.ExecError + ")"
		}
		return s
	case agentexec.StatusDenied:
		return "refused by the policy before launch"
	case agentexec.StatusError:
		return "failed: " + r.Error
	case agentexec.StatusTimeout:
		return "killed at its time limit"
	case agentexec.StatusKilled:
		if r.Signal != "" {
			return "killed by " + r.Signal
		}
		return "killed"
	}
	return "status " + strconv.Quote(r.Status)
}

// statusText says how far the list can be trusted (denials_status).
func statusText(r *agentexec.ResultJSON) string {
	st := r.DenialsStatus
	if st == nil {
		if r.Status == agentexec.StatusDenied || r.Status == agentexec.StatusError {
			return "the tool did not run"
		}
		return "kernel denials not reported (a result of an agentexec without them)"
	}
	var s string
	switch st.State {
	case "complete":
		s = "kernel denials complete"
	case "incomplete":
		s = "kernel denials incomplete (some refusals may be missing): " + st.Reason
	case "unavailable":
		s = "kernel denials unavailable (" + st.Reason + "): only the policy's and the egress proxy's refusals are listed"
	default:
		s = "kernel denials " + st.State
		if st.Reason != "" {
			s += ": " + st.Reason
		}
	}
	if st.Omitted > 0 {
		s += fmt.Sprintf("; %d more refusals of other kinds were counted but not listed (the per-launch cap)", st.Omitted)
	}
	return s
}

// accessText words the Landlock accesses (the kernel's blocker names).
var accessText = map[string]string{
	"fs.execute":                 "executing this file",
	"fs.write_file":              "writing to this file",
	"fs.read_file":               "reading this file",
	"fs.read_dir":                "listing this directory",
	"fs.remove_dir":              "removing a directory from this directory",
	"fs.remove_file":             "removing a file from this directory",
	"fs.make_char":               "creating a character device in this directory",
	"fs.make_dir":                "creating a directory in this directory",
	"fs.make_reg":                "creating a file in this directory",
	"fs.make_sock":               "creating a unix socket in this directory",
	"fs.make_fifo":               "creating a named pipe in this directory",
	"fs.make_block":              "creating a block device in this directory",
	"fs.make_sym":                "creating a symbolic link in this directory",
	"fs.refer":                   "linking or renaming a file into or out of this directory",
	"fs.truncate":                "truncating this file",
	"fs.ioctl_dev":               "an ioctl on this device",
	"fs.change_topology":         "mounting or changing the filesystem topology here",
	"net.bind_tcp":               "binding this TCP port",
	"net.connect_tcp":            "connecting to this TCP port",
	"scope.signal":               "sending a signal to this process, which is outside the launch",
	"scope.abstract_unix_socket": "connecting to this abstract unix socket, made outside the launch",
	"ptrace":                     "tracing this process, which is outside the launch",
}

// whatText says in a sentence who refused what.
func whatText(d policy.Denial) string {
	switch d.Layer {
	case policy.LayerLandlock:
		if s, ok := accessText[d.Access]; ok {
			return "the kernel (Landlock) refused " + s
		}
		return "the kernel (Landlock) refused " + d.Access
	case policy.LayerSeccomp:
		sc := d.Object.Syscall
		if sc == "" {
			sc = strings.TrimPrefix(d.Access, "seccomp.")
		}
		return "the seccomp filter refused the system call " + sc + " (its arguments are not logged)"
	case policy.LayerNetwork:
		if check, ok := strings.CutPrefix(d.Access, "net.egress."); ok {
			s := "the egress proxy refused this connection (" + check + " check)"
			if d.Object.Rule != "" {
				s += "; the list that decides is " + d.Object.Rule
			}
			return s
		}
		return "the network containment refused " + d.Access
	case policy.LayerPolicy:
		s := "agentexec's policy refused the request before launch (" + strings.TrimPrefix(d.Access, "policy.") + ")"
		if d.Object.Rule != "" {
			s += ", rule " + d.Object.Rule
		}
		return s
	}
	return d.Layer + " refused " + d.Access
}

// writeHint writes what would allow a denial: the hint's text, and its patch as
// the lines to add to a policy file; or that nothing should.
func writeHint(w io.Writer, h *policy.Hint) {
	switch {
	case h == nil || h.Text == "":
		fmt.Fprintln(w, "   allow: no hint (the tool is not in the policy this result came from)")
		return
	case h.ByDesign:
		fmt.Fprintf(w, "   allow: no policy change should: %s\n", strings.TrimPrefix(h.Text, "not allowed by design: "))
		return
	}
	fmt.Fprintf(w, "   allow: %s\n", h.Text)
	if y := patchYAML(h.Patch); y != "" {
		fmt.Fprintln(w, "   in the policy file (`list+:` adds to the defaults; or add to the tool's own list):")
		for _, l := range strings.Split(strings.TrimRight(y, "\n"), "\n") {
			fmt.Fprintln(w, "     "+l)
		}
	}
}

// patchYAML renders a patch as the YAML to add: each field path as nested keys,
// the list as `name+: [values]`. A new tool (field "tools") has no lines of its
// own: its text says what to add.
func patchYAML(patch []policy.Change) string {
	type node struct {
		key    string
		kids   []*node
		values []string
	}
	root := &node{}
	for _, c := range patch {
		parts := strings.Split(c.Field, ".")
		if len(parts) < 2 {
			continue
		}
		n := root
		for _, k := range parts {
			var next *node
			for _, kid := range n.kids {
				if kid.key == k {
					next = kid
				}
			}
			if next == nil {
				next = &node{key: k}
				n.kids = append(n.kids, next)
			}
			n = next
		}
		n.values = append(n.values, yamlScalar(c.Add))
	}
	var b strings.Builder
	var walk func(n *node, depth int)
	walk = func(n *node, depth int) {
		for _, kid := range n.kids {
			ind := strings.Repeat("  ", depth)
			if len(kid.kids) == 0 {
				fmt.Fprintf(&b, "%s%s+: [%s]\n", ind, kid.key, strings.Join(kid.values, ", "))
				continue
			}
			fmt.Fprintf(&b, "%s%s:\n", ind, kid.key)
			walk(kid, depth+1)
		}
	}
	walk(root, 0)
	return b.String()
}

// yamlScalar writes a patch value as YAML: numbers as they are, strings
// double-quoted (a JSON string is a valid YAML double-quoted scalar).
func yamlScalar(v any) string {
	if f, ok := v.(float64); ok {
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Sprint(v)
	}
	return strings.TrimSuffix(b.String(), "\n")
}
