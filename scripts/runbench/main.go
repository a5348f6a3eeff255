// Command runbench measures `agentexec run`, one process per call as users of
// bubblewrap and landrun call a sandbox, against launching the tool directly
// (fork+exec+wait4 from this process, what posix_spawn does), bubblewrap and
// landrun when they are installed, and `agentexec run` on the Runtime path
// (AGENTEXEC_RUN_NO_FAST=1), on an agent-like tool mix; `agentexec version`, which
// launches nothing, shows the floor of starting the binary at all. Calls are interleaved:
// each call of the mix runs once through every backend, in an order that rotates
// from call to call, so that the machine's drift hits all backends alike; the
// figures are medians per tool and backend, their ratios to the direct launch
// measured in the same run, and the geometric mean of those ratios
// (docs/performance.md, "agentexec run, one-shot").
//
//	go run ./scripts/runbench -bin bin/agentexec -workspace . -calls 40
//
// Every backend's stdout and stderr go to /dev/null and its stdin is /dev/null.
package main

import (
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

type call struct {
	name string
	argv []string // tool and arguments, as given to `agentexec run`
}

// mix is an agent-like set of short tool calls; paths are relative to the workspace.
var mix = []call{
	{"true", []string{"true"}},
	{"echo", []string{"echo", "hello"}},
	{"cat", []string{"cat", "README.md"}},
	{"ls", []string{"ls", "-la"}},
	{"head", []string{"head", "-50", "docs/design.md"}},
	{"wc", []string{"wc", "-l", "README.md", "go.mod"}},
	{"grep", []string{"grep", "-c", "func", "runtime.go"}},
	{"rg", []string{"rg", "-c", "TODO", "internal"}},
}

type backend struct {
	name string
	// argv builds the command line of one call (path of the tool resolved).
	argv func(tool string, args []string) []string
	env  []string
}

func main() {
	bin := flag.String("bin", "bin/agentexec", "agentexec `BINARY`")
	ws := flag.String("workspace", ".", "workspace `DIR` (the tools read files in it)")
	calls := flag.Int("calls", 40, "calls per tool and backend")
	only := flag.String("backends", "", "comma-separated backends to run besides direct (default: all available)")
	tools := flag.String("tools", "", "comma-separated calls of the mix to run (default: all)")
	flag.Parse()
	if *tools != "" {
		keep := map[string]bool{}
		for _, n := range strings.Split(*tools, ",") {
			keep[n] = true
		}
		var m []call
		for _, c := range mix {
			if keep[c.name] {
				m = append(m, c)
			}
		}
		mix = m
	}
	wsAbs, err := filepath.Abs(*ws)
	if err != nil {
		fatal(err)
	}
	binAbs, err := filepath.Abs(*bin)
	if err != nil {
		fatal(err)
	}
	backends := available(binAbs, wsAbs)
	if *only != "" {
		keep := map[string]bool{}
		for _, n := range strings.Split(*only, ",") {
			keep[n] = true
		}
		var bs []backend
		for _, b := range backends {
			if keep[b.name] || b.name == "direct" {
				bs = append(bs, b)
			}
		}
		backends = bs
	}
	devNull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		fatal(err)
	}
	// Check every backend once on every call: a failing backend would measure
	// nothing.
	for _, c := range mix {
		path, err := exec.LookPath(c.argv[0])
		if err != nil {
			fatal(fmt.Errorf("%s: %w", c.name, err))
		}
		for _, b := range backends {
			_, st, err := launch(b, path, c.argv, wsAbs, devNull)
			if err == nil && st.ExitStatus() != 0 {
				err = fmt.Errorf("exit status %d", st.ExitStatus())
			}
			if err != nil {
				fatal(fmt.Errorf("backend %s, call %s (%q): %w", b.name, c.name, b.argv(path, c.argv), err))
			}
		}
	}
	lat := map[string]map[string][]time.Duration{} // call -> backend -> samples
	for _, c := range mix {
		lat[c.name] = map[string][]time.Duration{}
	}
	start := time.Now()
	for k := 0; k < *calls; k++ {
		for _, c := range mix {
			path, _ := exec.LookPath(c.argv[0])
			for i := range backends {
				b := backends[(i+k)%len(backends)]
				d, _, err := launch(b, path, c.argv, wsAbs, devNull)
				if err != nil {
					fatal(err)
				}
				lat[c.name][b.name] = append(lat[c.name][b.name], d)
			}
		}
	}
	report(backends, lat, *calls, time.Since(start))
}

// available lists the backends this host has: direct, bwrap, landrun, agentexec
// run (one-shot) and agentexec run (Runtime path).
func available(bin, ws string) []backend {
	bs := []backend{{name: "direct", argv: func(tool string, args []string) []string {
		return append([]string{tool}, args[1:]...)
	}}}
	if p, err := exec.LookPath("bwrap"); err == nil {
		bs = append(bs, backend{name: "bwrap", argv: func(tool string, args []string) []string {
			// The policy's roots, read-only; new namespaces (no network), its own
			// session, killed with its parent.
			a := []string{p, "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib",
				"--symlink", "usr/lib64", "/lib64", "--ro-bind", "/etc", "/etc", "--ro-bind", ws, ws,
				"--dev", "/dev", "--unshare-all", "--die-with-parent", "--new-session", "--chdir", ws, "--", tool}
			return append(a, args[1:]...)
		}})
	}
	if p, err := exec.LookPath("landrun"); err == nil {
		bs = append(bs, backend{name: "landrun", argv: func(tool string, args []string) []string {
			a := []string{p, "--rox", "/usr,/bin,/lib,/lib64", "--ro", "/etc," + ws + ",/dev/null", "--", tool}
			return append(a, args[1:]...)
		}})
	}
	run := func(tool string, args []string) []string {
		return append([]string{bin, "run", "-q", "--workspace", ws, "--"}, args...)
	}
	// The floor: the agentexec binary started and ended, launching nothing.
	floor := func(string, []string) []string { return []string{bin, "version"} }
	bs = append(bs, backend{name: "agentexec-version", argv: floor},
		backend{name: "agentexec-run", argv: run},
		backend{name: "agentexec-run-runtime", argv: run, env: []string{"AGENTEXEC_RUN_NO_FAST=1"}})
	return bs
}

// launch runs one call through b and returns its wall time, from fork to reaped.
func launch(b backend, tool string, args []string, dir string, devNull *os.File) (time.Duration, syscall.WaitStatus, error) {
	argv := b.argv(tool, args)
	env := append([]string{"PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8"}, b.env...)
	fds := []uintptr{devNull.Fd(), devNull.Fd(), devNull.Fd()}
	t0 := time.Now()
	pid, err := syscall.ForkExec(argv[0], argv, &syscall.ProcAttr{Dir: dir, Env: env, Files: fds})
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %w", argv[0], err)
	}
	var ws syscall.WaitStatus
	for {
		_, err = syscall.Wait4(pid, &ws, 0, nil)
		if err != syscall.EINTR {
			break
		}
	}
	return time.Since(t0), ws, err
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func report(backends []backend, lat map[string]map[string][]time.Duration, calls int, took time.Duration) {
	fmt.Printf("# runbench: %d calls per tool and backend, interleaved, %d tools, %s; median per call (ratio to direct)\n",
		calls, len(mix), took.Round(time.Second))
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := "call\t"
	for _, b := range backends {
		head += b.name + "\t"
	}
	fmt.Fprintln(tw, head)
	logSum := map[string]float64{}
	for _, c := range mix {
		base := median(lat[c.name]["direct"])
		line := c.name + "\t"
		for _, b := range backends {
			m := median(lat[c.name][b.name])
			r := float64(m) / float64(base)
			logSum[b.name] += math.Log(r)
			line += fmt.Sprintf("%.2f ms (%.2f×)\t", float64(m.Microseconds())/1000, r)
		}
		fmt.Fprintln(tw, line)
	}
	line := "geomean\t"
	for _, b := range backends {
		line += fmt.Sprintf("%.2f×\t", math.Exp(logSum[b.name]/float64(len(mix))))
	}
	fmt.Fprintln(tw, line)
	tw.Flush()
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "runbench:", err)
	os.Exit(1)
}
