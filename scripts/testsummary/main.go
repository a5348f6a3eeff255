// Command testsummary reads `go test -json` on stdin, prints what `go test` would
// (package ok/FAIL lines, the output of failed tests, build errors), and closes with
// a summary: tests passed, failed and skipped, and every skip with its reason, the
// ones the VM tier runs (make vmtest) marked as such.
//
//	go test -json ./... | testsummary -step unit -state bin/testsummary.json
//
// With -state, the results of earlier runs (make test runs go test three times) are
// kept in that file and the summary covers them all; the last line is
//
//	test: 812 passed, 0 failed, 16 skipped
//
// It exits 1 when the stream had a failure (a test, a package, a build), else 0; the
// caller should still check go test's own status (a crash before any output).
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"regexp"
	"sort"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action     string
	Package    string
	ImportPath string // build-output, build-fail
	Test       string
	Output     string
}

// Result is one test's outcome in one step.
type Result struct {
	Step    string `json:"step"`
	Package string `json:"package"`
	Test    string `json:"test"`
	Action  string `json:"action"` // pass, fail, skip
	Reason  string `json:"reason,omitempty"`
}

// State is what -state keeps between runs.
type State struct {
	Results []Result `json:"results"`
	// Failed lists packages and builds that failed outside any test.
	Failed []string `json:"failed,omitempty"`
}

// vmCovered matches skip reasons of tests the VM tier runs (docs/vmtest.md): cgroup
// controllers the host lacks, older Landlock ABIs, guest-only tests.
var vmCovered = regexp.MustCompile(`VM tier|vmtest|cgroup v2 controller|guest`)

// fileLine is the "file_test.go:12: " prefix t.Log and t.Skip put before a message.
var fileLine = regexp.MustCompile(`^\s+\S+\.go:\d+: `)

type key struct{ pkg, test string }

type collector struct {
	out        io.Writer
	step       string
	buf        map[key][]string // output of tests still running
	results    []Result
	failed     []string
	failedPkgs []string // packages that failed, counted unless a test of theirs did
	sawFail    bool
}

func newCollector(out io.Writer, step string) *collector {
	return &collector{out: out, step: step, buf: map[key][]string{}}
}

// line handles one input line.
func (c *collector) line(b []byte) {
	var e event
	if len(b) == 0 || b[0] != '{' || json.Unmarshal(b, &e) != nil {
		fmt.Fprintf(c.out, "%s\n", b) // not an event (go vet, a crash): as is
		if strings.HasPrefix(string(b), "FAIL") {
			c.sawFail = true
		}
		return
	}
	k := key{e.Package, e.Test}
	switch e.Action {
	case "build-output":
		fmt.Fprint(c.out, e.Output)
	case "build-fail":
		c.sawFail = true
		c.failed = append(c.failed, "build "+e.ImportPath)
	case "output":
		if e.Test == "" {
			// Package lines: "ok  pkg 1.2s", "FAIL pkg", "PASS", coverage, panics.
			if o := strings.TrimSpace(e.Output); o != "PASS" && o != "FAIL" && !strings.HasPrefix(o, "=== ") {
				fmt.Fprint(c.out, e.Output)
			}
			return
		}
		c.buf[k] = append(c.buf[k], e.Output)
	case "pass", "fail", "skip":
		if e.Test == "" {
			if e.Action == "fail" {
				c.sawFail = true
				c.failedPkgs = append(c.failedPkgs, e.Package)
			}
			return
		}
		r := Result{Step: c.step, Package: e.Package, Test: e.Test, Action: e.Action}
		switch e.Action {
		case "fail":
			c.sawFail = true
			for _, o := range c.buf[k] {
				fmt.Fprint(c.out, o)
			}
		case "skip":
			r.Reason = skipReason(c.buf[k])
		}
		c.results = append(c.results, r)
		delete(c.buf, k)
	}
}

func (c *collector) anyFailed(pkg string) bool {
	for _, r := range c.results {
		if r.Package == pkg && r.Action == "fail" {
			return true
		}
	}
	return false
}

// skipReason is the message of t.Skip: the last logged line before "--- SKIP".
func skipReason(lines []string) string {
	var msg []string
	for _, l := range lines {
		t := strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(t, "=== "), strings.HasPrefix(t, "--- SKIP"):
		case fileLine.MatchString(l):
			msg = []string{strings.TrimSpace(fileLine.ReplaceAllString(l, ""))}
		case len(msg) > 0 && t != "":
			msg = append(msg, t) // a message of several lines
		}
	}
	if len(msg) == 0 {
		return "(no reason given)"
	}
	return strings.Join(msg, " ")
}

// summary prints the closing summary of all results.
func summary(w io.Writer, st *State) {
	type skip struct {
		pkg, test, reason string
		steps             []string
	}
	counts := map[string]int{}
	var fails []string
	skips := map[key]*skip{}
	steps := map[string]map[string]int{}
	var stepOrder []string
	for _, r := range st.Results {
		counts[r.Action]++
		if steps[r.Step] == nil {
			steps[r.Step] = map[string]int{}
			stepOrder = append(stepOrder, r.Step)
		}
		steps[r.Step][r.Action]++
		switch r.Action {
		case "fail":
			fails = append(fails, fmt.Sprintf("%s %s (%s)", r.Package, r.Test, r.Step))
		case "skip":
			k := key{r.Package, r.Test}
			if skips[k] == nil {
				skips[k] = &skip{pkg: r.Package, test: r.Test, reason: r.Reason}
			}
			skips[k].steps = append(skips[k].steps, r.Step)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "== test summary")
	for _, s := range stepOrder {
		c := steps[s]
		fmt.Fprintf(w, "  %-8s %d passed, %d failed, %d skipped\n", s+":", c["pass"], c["fail"], c["skip"])
	}
	if len(skips) > 0 {
		var list []*skip
		for _, s := range skips {
			list = append(list, s)
		}
		sort.Slice(list, func(i, j int) bool {
			if list[i].pkg != list[j].pkg {
				return list[i].pkg < list[j].pkg
			}
			return list[i].test < list[j].test
		})
		vm := 0
		fmt.Fprintf(w, "skipped (%d):\n", len(list))
		for _, s := range list {
			tag := ""
			if vmCovered.MatchString(s.reason) {
				tag = " [runs in the VM tier: make vmtest]"
				vm++
			}
			fmt.Fprintf(w, "  %s %s (%s): %s%s\n", strings.TrimPrefix(s.pkg, "github.com/agentexec/agentexec"), s.test, strings.Join(s.steps, ", "), s.reason, tag)
		}
		fmt.Fprintf(w, "  (%d of them run in the VM tier)\n", vm)
	}
	if len(fails) > 0 || len(st.Failed) > 0 {
		fmt.Fprintf(w, "failed (%d):\n", len(fails)+len(st.Failed))
		for _, f := range fails {
			fmt.Fprintf(w, "  %s\n", f)
		}
		for _, f := range st.Failed {
			fmt.Fprintf(w, "  %s\n", f)
		}
	}
	// The closing line, in the form CI readers look for.
	fmt.Fprintf(w, "test: %d passed, %d failed, %d skipped\n", counts["pass"], counts["fail"]+len(st.Failed), counts["skip"])
}

func run(in io.Reader, out io.Writer, step, statePath string) (failed bool, err error) {
	var st State
	if statePath != "" {
		b, err := os.ReadFile(statePath)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return false, err
		default:
			if err := json.Unmarshal(b, &st); err != nil {
				return false, fmt.Errorf("%s: %w", statePath, err)
			}
		}
	}
	c := newCollector(out, step)
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		c.line(sc.Bytes())
	}
	if err := sc.Err(); err != nil {
		return true, fmt.Errorf("read: %w", err)
	}
	// Tests that started and never ended (a crash, a timeout panic).
	for k, lines := range c.buf {
		for _, o := range lines {
			fmt.Fprint(out, o)
		}
		c.results = append(c.results, Result{Step: step, Package: k.pkg, Test: k.test, Action: "fail", Reason: "did not finish"})
		c.sawFail = true
	}
	for _, pkg := range c.failedPkgs {
		if !c.anyFailed(pkg) {
			c.failed = append(c.failed, "package "+pkg+" (outside any test)")
		}
	}
	st.Results = append(st.Results, c.results...)
	st.Failed = append(st.Failed, c.failed...)
	if statePath != "" {
		b, _ := json.Marshal(&st)
		if err := os.WriteFile(statePath, b, 0o644); err != nil {
			return true, err
		}
	}
	summary(out, &st)
	return c.sawFail, nil
}

func main() {
	step := flag.String("step", "test", "name of this go test run in the summary")
	state := flag.String("state", "", "keep results in `FILE` and summarize every run recorded there")
	flag.Parse()
	failed, err := run(os.Stdin, os.Stdout, *step, *state)
	if err != nil {
		fmt.Fprintf(os.Stderr, "testsummary: %v\n", err)
		os.Exit(2)
	}
	if failed {
		os.Exit(1)
	}
}
