// Package peerbench measures sandboxes the way their users call them: one process
// per tool call. Each call of a mix runs through every backend — a direct launch
// (fork+exec+wait4 from this process, what posix_spawn does), bubblewrap and landrun
// when they are installed, and `agentexec run` — in an order that rotates from call
// to call, so that the machine's drift hits every backend alike; the report gives
// medians per call and backend, their ratios to the direct launch of the same run
// and the geometric mean of those ratios. `agentexec bench --peers` and
// scripts/runbench use it (docs/performance.md).
package peerbench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// Call is one entry of the mix: argv[0] is a tool name, looked up in PATH.
type Call struct {
	Name string
	Argv []string
}

// Config is one measurement.
type Config struct {
	// Binary is the agentexec binary (absolute path).
	Binary string
	// Base, when set, is a second agentexec binary: each agentexec backend runs with
	// it too, as base-… (a before/after comparison in one run).
	Base string
	// Workspace is where the calls run (absolute path). The peers get it read-only,
	// or read-write (and a private /tmp) with WritableWorkspace, to match the policy
	// agentexec runs.
	Workspace         string
	WritableWorkspace bool
	// Policy is the policy file of `agentexec run` ("" = its embedded default).
	Policy string
	// Mix are the calls; Calls how many times each runs through every backend.
	Mix   []Call
	Calls int
	// Backends restricts the backends (by name; direct always runs). Nil = all.
	Backends []string
	// Runtime adds `agentexec run` on its Runtime path (AGENTEXEC_RUN_NO_FAST=1).
	Runtime bool
	// Serve adds `agentexec serve`: one serve process per binary for the whole
	// run, started before the measurement, and a client that writes each call's
	// request line and reads its result line (serve.go).
	Serve bool
	// Sketch is the path of llrun (scripts/llrun), landrun's kind of launcher
	// (Landlock and exec), a row when set: a Landlock-only peer where landrun is not
	// installed.
	Sketch string
	// Env is every backend's environment (and PATH is how tools are found).
	Env []string
	// OutputPipe gives every launch a pipe for stdout and stderr, read to the end
	// by the harness as an agent reads a tool's output, instead of /dev/null. Some
	// tools do less when their output is /dev/null (rg stops at the first match),
	// and a tool writing to a pipe competes for the CPUs with its reader.
	OutputPipe bool
}

// Backend is one way of running a call.
type Backend struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// NoCPU: the backend's CPU time per call is not measured (its cells' CPU
	// fields are zero and it has no CPU geometric mean).
	NoCPU bool `json:"no_cpu,omitempty"`
	argv  func(path, name string, args []string) []string
	env   []string
	// serve is the agentexec binary of a serve backend (client, once started).
	serve  string
	client *serveClient
}

// Cell is one call through one backend.
type Cell struct {
	Median    time.Duration `json:"median_ns"`
	CPUMedian time.Duration `json:"cpu_median_ns"`
	// Ratio and CPURatio are the medians divided by the direct launch's.
	Ratio    float64 `json:"ratio"`
	CPURatio float64 `json:"cpu_ratio"`
}

// CallReport is one call of the mix.
type CallReport struct {
	Name  string          `json:"name"`
	Argv  []string        `json:"argv"`
	Cells map[string]Cell `json:"cells"` // by backend name
}

// Report is the result of Run.
type Report struct {
	Calls    int          `json:"calls"`
	Backends []Backend    `json:"backends"`
	Mix      []CallReport `json:"mix"`
	// Geomean and CPUGeomean are, per backend, the geometric means over the mix of
	// the ratios to the direct launch.
	Geomean    map[string]float64 `json:"geomean"`
	CPUGeomean map[string]float64 `json:"cpu_geomean"`
	// Targets are issue 18's targets that the rows of the run can judge.
	Targets []Target `json:"targets,omitempty"`
	// Notes say what was left out and why (a peer not installed, a backend that
	// failed a call in the check before the measurement).
	Notes []string      `json:"notes,omitempty"`
	Took  time.Duration `json:"took_ns"`
}

// Backends lists the backends this host has for cfg, and notes for the peers it
// lacks.
func Backends(cfg Config) ([]Backend, []string) {
	ws := cfg.Workspace
	var notes []string
	bs := []Backend{{Name: "direct", Description: "fork+exec+wait4 from the harness (what posix_spawn does); no sandbox",
		argv: func(path, _ string, args []string) []string { return append([]string{path}, args...) }}}
	wsAccess, wsBind := "read-only", []string{"--ro-bind", ws, ws}
	landrunWS := []string{"--ro", "/etc,/dev/null," + ws}
	if cfg.WritableWorkspace {
		wsAccess, wsBind = "read-write, a private /tmp", []string{"--tmpfs", "/tmp", "--bind", ws, ws}
		landrunWS = []string{"--ro", "/etc,/dev/null", "--rw", ws + ",/tmp"}
	}
	if p, err := exec.LookPath("bwrap"); err == nil {
		bs = append(bs, Backend{Name: "bwrap", Description: "bubblewrap: /usr and /etc read-only, the workspace " + wsAccess + ", new namespaces (no network), own session, dies with its parent",
			argv: func(tool, _ string, args []string) []string {
				a := []string{p, "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib",
					"--symlink", "usr/lib64", "/lib64", "--ro-bind", "/etc", "/etc"}
				a = append(a, wsBind...)
				a = append(a, "--dev", "/dev", "--unshare-all", "--die-with-parent", "--new-session", "--chdir", ws, "--", tool)
				return append(a, args...)
			}})
	} else {
		notes = append(notes, "bwrap: not installed (Debian: apt-get install bubblewrap), no row")
	}
	// landrunArgv calls a launcher with landrun's flags: landrun, or llrun.
	landrunArgv := func(bin string) func(tool, _ string, args []string) []string {
		return func(tool, _ string, args []string) []string {
			a := append([]string{bin, "--rox", "/usr,/bin,/lib,/lib64"}, landrunWS...)
			a = append(a, "--env", "PATH", "--env", "LC_ALL", "--", tool)
			return append(a, args...)
		}
	}
	if p, err := exec.LookPath("landrun"); err == nil {
		bs = append(bs, Backend{Name: "landrun", Description: "landrun: Landlock; /usr and the library directories read+exec, /etc read-only, the workspace " + wsAccess,
			argv: landrunArgv(p)})
	} else {
		notes = append(notes, "landrun: not installed (github.com/zouuup/landrun), no row")
	}
	if cfg.Sketch != "" {
		bs = append(bs, Backend{Name: "llrun", Description: "llrun (scripts/llrun), landrun's kind of launcher on go-landlock: Landlock (file system, TCP) and exec, nothing else; the paths of landrun's row",
			argv: landrunArgv(cfg.Sketch)})
	}
	add := func(prefix, bin string) {
		// run names the policy's tool, as a user would.
		run := func(_, tool string, args []string) []string {
			a := []string{bin, "run", "-q", "--workspace", ws}
			if cfg.Policy != "" {
				a = append(a, "--policy", cfg.Policy)
			}
			return append(append(a, "--"), append([]string{tool}, args...)...)
		}
		bs = append(bs,
			Backend{Name: prefix + "-version", Description: "`" + bin + " version`: the floor of starting the binary, launching nothing",
				argv: func(string, string, []string) []string { return []string{bin, "version"} }},
			Backend{Name: prefix + "-run", Description: "`" + bin + " run -- TOOL ARGS`, one process per call (the one-shot path where the policy allows)", argv: run})
		if cfg.Serve {
			bs = append(bs, Backend{Name: prefix + "-serve", NoCPU: true, serve: bin,
				Description: "one `" + bin + " serve` for the whole run, a client writing each call's request line and reading its result line (the tool's output comes back in it: a pipe, whatever the other rows' output is); CPU not measured"})
		}
		if cfg.Runtime {
			bs = append(bs, Backend{Name: prefix + "-run-runtime", Description: "`" + bin + " run` on the Runtime path (AGENTEXEC_RUN_NO_FAST=1: spawner, pools, templates)",
				argv: run, env: []string{"AGENTEXEC_RUN_NO_FAST=1"}})
		}
	}
	add("agentexec", cfg.Binary)
	if cfg.Base != "" {
		add("base", cfg.Base)
	}
	if cfg.Backends != nil {
		keep := func(b Backend) bool {
			return b.Name == "direct" || slices.Contains(cfg.Backends, b.Name) ||
				slices.Contains(cfg.Backends, strings.Replace(b.Name, "base-", "agentexec-", 1))
		}
		bs = slices.DeleteFunc(bs, func(b Backend) bool { return !keep(b) })
	}
	return bs, notes
}

// Run checks every backend once on every call (a backend that fails one is left
// out, with a note; so is a call the direct launch cannot run with status 0), then
// runs cfg.Calls rounds of the mix, interleaved.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Calls <= 0 {
		return nil, errors.New("peerbench: calls must be positive")
	}
	bs, notes := Backends(cfg)
	rep := &Report{Calls: cfg.Calls, Notes: notes}
	for i := range bs {
		if bs[i].serve == "" {
			continue
		}
		if !cfg.OutputPipe {
			rep.Notes = append(rep.Notes, bs[i].Name+": its tools write to a pipe (their output is in the result line), the other rows' to /dev/null, where some tools do less (rg stops at its first match): compare with output to a pipe (runbench -stdout pipe)")
		}
		c, err := startServe(ctx, bs[i].serve, cfg)
		if err != nil {
			rep.Notes = append(rep.Notes, fmt.Sprintf("%s: left out: %v", bs[i].Name, err))
			continue
		}
		defer func() { _ = c.Close() }() // measured already; how serve ends changes no figure
		bs[i].client = c
	}
	// A serve backend whose serve did not start has no client: left out above.
	bs = slices.DeleteFunc(bs, func(b Backend) bool { return b.serve != "" && b.client == nil })
	devNull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer devNull.Close()
	type resolved struct {
		Call
		path string
	}
	var mix []resolved
	for _, c := range cfg.Mix {
		path, err := lookPath(c.Argv[0], cfg.Env)
		if err != nil {
			rep.Notes = append(rep.Notes, fmt.Sprintf("%s: skipped: %v", c.Name, err))
			continue
		}
		r := resolved{c, path}
		if _, _, st, err := launch(bs[0], r.path, c.Argv[0], c.Argv[1:], cfg, devNull); err != nil || st.ExitStatus() != 0 {
			rep.Notes = append(rep.Notes, fmt.Sprintf("%s: skipped: the direct launch gives %v (status %d)", c.Name, err, st.ExitStatus()))
			continue
		}
		mix = append(mix, r)
	}
	if len(mix) == 0 {
		return nil, fmt.Errorf("peerbench: no call of the mix runs directly: %s", strings.Join(rep.Notes, "; "))
	}
	bs = slices.DeleteFunc(bs, func(b Backend) bool {
		for _, c := range mix {
			_, _, st, err := launch(b, c.path, c.Argv[0], c.Argv[1:], cfg, devNull)
			if err == nil && st.ExitStatus() != 0 {
				err = fmt.Errorf("exit status %d", st.ExitStatus())
			}
			if err != nil {
				rep.Notes = append(rep.Notes, fmt.Sprintf("%s: left out: call %s (%q) failed: %v", b.Name, c.Name, b.describe(c.path, c.Argv[0], c.Argv[1:]), err))
				return true
			}
		}
		return false
	})
	rep.Backends = bs
	for _, b := range bs {
		if strings.HasSuffix(b.Name, "-run") {
			if why := runPath(b, mix[0].path, mix[0].Argv[0], mix[0].Argv[1:], cfg); why != "" {
				rep.Notes = append(rep.Notes, b.Name+": "+why)
			}
		}
	}
	wall := make([]map[string][]time.Duration, len(mix))
	cpu := make([]map[string][]time.Duration, len(mix))
	for i := range mix {
		wall[i], cpu[i] = map[string][]time.Duration{}, map[string][]time.Duration{}
	}
	start := time.Now()
	rot := 0
	for range cfg.Calls {
		for i, c := range mix {
			for k := range bs {
				if err := ctx.Err(); err != nil {
					return nil, err
				}
				b := bs[(k+rot)%len(bs)]
				d, u, _, err := launch(b, c.path, c.Argv[0], c.Argv[1:], cfg, devNull)
				if err != nil {
					return nil, fmt.Errorf("peerbench: %s, call %s: %w", b.Name, c.Name, err)
				}
				wall[i][b.Name] = append(wall[i][b.Name], d)
				cpu[i][b.Name] = append(cpu[i][b.Name], u)
			}
			rot++
		}
	}
	rep.Took = time.Since(start)
	rep.Geomean, rep.CPUGeomean = map[string]float64{}, map[string]float64{}
	logs, cpuLogs := map[string]float64{}, map[string]float64{}
	for i, c := range mix {
		cr := CallReport{Name: c.Name, Argv: c.Argv, Cells: map[string]Cell{}}
		base, cpuBase := median(wall[i]["direct"]), median(cpu[i]["direct"])
		for _, b := range bs {
			m, u := median(wall[i][b.Name]), median(cpu[i][b.Name])
			cell := Cell{Median: m, CPUMedian: u, Ratio: ratio(m, base), CPURatio: ratio(u, cpuBase)}
			cr.Cells[b.Name] = cell
			logs[b.Name] += math.Log(cell.Ratio)
			if b.NoCPU {
				cell.CPURatio = 0
				cr.Cells[b.Name] = cell
			} else {
				cpuLogs[b.Name] += math.Log(cell.CPURatio)
			}
		}
		rep.Mix = append(rep.Mix, cr)
	}
	for _, b := range bs {
		rep.Geomean[b.Name] = math.Exp(logs[b.Name] / float64(len(mix)))
		if !b.NoCPU {
			rep.CPUGeomean[b.Name] = math.Exp(cpuLogs[b.Name] / float64(len(mix)))
		}
	}
	rep.judge()
	return rep, nil
}

func ratio(a, b time.Duration) float64 {
	if b <= 0 {
		b = 1 // a CPU time below the clock's resolution
	}
	if a <= 0 {
		a = 1
	}
	return float64(a) / float64(b)
}

// lookPath finds tool in the PATH of env (the backends' environment).
func lookPath(tool string, env []string) (string, error) {
	if strings.Contains(tool, "/") {
		return tool, nil
	}
	for _, e := range env {
		if p, ok := strings.CutPrefix(e, "PATH="); ok {
			for _, dir := range strings.Split(p, ":") {
				c := dir + "/" + tool
				if st, err := os.Stat(c); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
					return c, nil
				}
			}
			return "", fmt.Errorf("%s not found in PATH=%s", tool, p)
		}
	}
	return exec.LookPath(tool)
}

// launch runs one call through b and returns its wall time, from fork to reaped,
// and the CPU time (user + system) wait4 reports for it: the process and the
// descendants reaped along its wait chain (not a sandbox's tool that is reaped by
// a pid-namespace init that does not wait for it, as under bwrap: that CPU time is
// an undercount, comparable only between agentexec binaries).
func launch(b Backend, path, name string, args []string, cfg Config, devNull *os.File) (time.Duration, time.Duration, syscall.WaitStatus, error) {
	if b.client != nil {
		return b.client.call(name, args)
	}
	argv := b.argv(path, name, args)
	env := append(slices.Clone(cfg.Env), b.env...)
	fds := []uintptr{devNull.Fd(), devNull.Fd(), devNull.Fd()}
	t0 := time.Now()
	var out *outputPipe
	if cfg.OutputPipe {
		var err error
		if out, err = newOutputPipe(); err != nil {
			return 0, 0, 0, err
		}
		fds[1], fds[2] = out.w.Fd(), out.w.Fd()
	}
	pid, err := syscall.ForkExec(argv[0], argv, &syscall.ProcAttr{Dir: cfg.Workspace, Env: env, Files: fds})
	if out != nil {
		out.w.Close() // the child has its own copy
	}
	if err != nil {
		if out != nil {
			<-out.drained
		}
		return 0, 0, 0, fmt.Errorf("%s: %w", argv[0], err)
	}
	var ws syscall.WaitStatus
	var ru syscall.Rusage
	for {
		_, err = syscall.Wait4(pid, &ws, 0, &ru)
		if err != syscall.EINTR {
			break
		}
	}
	if out != nil {
		<-out.drained // the output read to its end is part of the call
	}
	wall := time.Since(t0)
	return wall, time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), ws, err
}

// outputPipe is a launch's stdout and stderr (Config.OutputPipe): a pipe whose read
// end a goroutine reads to EOF, as an agent reads a tool's output.
type outputPipe struct {
	w       *os.File
	drained chan struct{}
}

func newOutputPipe() (*outputPipe, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	o := &outputPipe{w: w, drained: make(chan struct{})}
	go func() {
		_, _ = io.Copy(io.Discard, r)
		r.Close()
		close(o.drained)
	}()
	return o, nil
}

// runPath runs one call through an `agentexec run` backend with
// AGENTEXEC_RUN_DEBUG=1 and returns what it says about the path it took ("" when it
// took the one-shot path).
func runPath(b Backend, path, name string, args []string, cfg Config) string {
	argv := b.argv(path, name, args)
	c := exec.Command(argv[0], argv[1:]...)
	c.Dir, c.Env = cfg.Workspace, append(append(slices.Clone(cfg.Env), b.env...), "AGENTEXEC_RUN_DEBUG=1")
	out, _ := c.CombinedOutput()
	for _, l := range strings.Split(string(out), "\n") {
		if _, why, ok := strings.Cut(l, "agentexec run: Runtime path: "); ok {
			return "took the Runtime path (spawner, pools, templates), not the one-shot path: " + why
		}
	}
	return ""
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// WriteText prints the wall-time table, and the CPU-time table when cpu is set.
func (r *Report) WriteText(w io.Writer, cpu bool) error {
	table := func(what string, pick func(Cell) (time.Duration, float64), geo map[string]float64, cpuTable bool) error {
		fmt.Fprintf(w, "# %d calls per tool and backend, interleaved, %d tools, %s; %s (ratio to direct)\n",
			r.Calls, len(r.Mix), r.Took.Round(time.Second), what)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		head := "call\t"
		for _, b := range r.Backends {
			head += b.Name + "\t"
		}
		fmt.Fprintln(tw, head)
		for _, c := range r.Mix {
			line := c.Name + "\t"
			for _, b := range r.Backends {
				if b.NoCPU && cpuTable {
					line += "n/a\t"
					continue
				}
				d, x := pick(c.Cells[b.Name])
				line += fmt.Sprintf("%.2f ms (%.2f×)\t", float64(d.Microseconds())/1000, x)
			}
			fmt.Fprintln(tw, line)
		}
		line := "geomean\t"
		for _, b := range r.Backends {
			if b.NoCPU && cpuTable {
				line += "n/a\t"
				continue
			}
			line += fmt.Sprintf("%.2f×\t", geo[b.Name])
		}
		fmt.Fprintln(tw, line)
		return tw.Flush()
	}
	if err := table("median wall time per call", func(c Cell) (time.Duration, float64) { return c.Median, c.Ratio }, r.Geomean, false); err != nil {
		return err
	}
	if cpu {
		fmt.Fprintln(w)
		if err := table("median CPU time (user+sys, wait4) per call", func(c Cell) (time.Duration, float64) { return c.CPUMedian, c.CPURatio }, r.CPUGeomean, true); err != nil {
			return err
		}
	}
	r.writeTargets(w)
	fmt.Fprintln(w, "\nbackends:")
	for _, b := range r.Backends {
		fmt.Fprintf(w, "  %-22s %s\n", b.Name, b.Description)
	}
	if len(r.Notes) > 0 {
		fmt.Fprintln(w, "notes:")
		for _, n := range r.Notes {
			fmt.Fprintln(w, "  - "+n)
		}
	}
	return nil
}

// WriteJSON prints the report as JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(r)
}
