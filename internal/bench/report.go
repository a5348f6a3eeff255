package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Report is the outcome of a benchmark run. Its JSON form is what --json prints.
type Report struct {
	// Command is the command line that produced the report.
	Command string    `json:"command"`
	Host    HostInfo  `json:"host"`
	Config  RunConfig `json:"config"`
	// Workspace describes the generated workspace.
	Workspace WorkspaceInfo `json:"workspace"`
	// Baseline names the backend every ratio divides by.
	Baseline string        `json:"baseline"`
	Backends []BackendInfo `json:"backends"`
	// Tools holds one row per call of the mix, skipped ones included.
	Tools []ToolReport `json:"tools"`
	// Overall holds one row per measured backend.
	Overall []OverallReport `json:"overall"`
	Serve   ServeReport     `json:"serve"`
	Startup StartupReport   `json:"startup"`
	Targets []Target        `json:"targets"`
	// Notes are things the reader must know: skipped tools, unavailable backends,
	// output mismatches.
	Notes     []string `json:"notes"`
	DurationS float64  `json:"duration_s"`
}

// HostInfo is the machine the run used.
type HostInfo struct {
	CPUs            int    `json:"cpus"`
	Kernel          string `json:"kernel"`
	GoVersion       string `json:"go_version"`
	CGO             bool   `json:"cgo"`
	LandlockABI     int    `json:"landlock_abi"`
	Cgroup          string `json:"cgroup"`
	KernelTemplates string `json:"kernel_templates"`
}

// RunConfig is the run's settings.
type RunConfig struct {
	Calls    int    `json:"calls"`
	Inflight int    `json:"inflight"`
	Policy   string `json:"policy"`
	// ThroughputBlock and ThroughputRounds shape the throughput phase: rounds of one
	// block of calls per backend at 1 and at Inflight in flight.
	ThroughputBlock  int `json:"throughput_block"`
	ThroughputRounds int `json:"throughput_rounds"`
}

// WorkspaceInfo describes the generated workspace.
type WorkspaceInfo struct {
	Dir     string `json:"dir"`
	Kept    bool   `json:"kept"`
	Files   int    `json:"files"`
	Dirs    int    `json:"dirs"`
	Git     bool   `json:"git"`
	Commits int    `json:"commits"`
}

// BackendInfo describes one backend.
type BackendInfo struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Available   bool   `json:"available"`
	// Reason says why an unavailable backend was not run.
	Reason string `json:"reason,omitempty"`
	// Launch and Template are what the runtime reported for the backend's launches
	// (agentexec backends): Result.Backend and Result.Template of the last call.
	Launch      string   `json:"launch,omitempty"`
	Template    string   `json:"template,omitempty"`
	Containment []string `json:"containment,omitempty"`
	Unenforced  []string `json:"unenforced,omitempty"`
}

// ToolReport is one call of the mix.
type ToolReport struct {
	Name string   `json:"name"`
	Tool string   `json:"tool"`
	Args []string `json:"args"`
	// Skipped says why the call was not measured ("" when it was).
	Skipped string       `json:"skipped,omitempty"`
	Results []ToolResult `json:"results,omitempty"`
}

// ToolResult is one backend's latency for one call.
type ToolResult struct {
	Backend string `json:"backend"`
	Summary
	// MedianRatio and P99Ratio divide by the baseline's median and p99.
	MedianRatio float64 `json:"median_ratio"`
	P99Ratio    float64 `json:"p99_ratio"`
	// Failures counts calls whose exit status differed from the warm-up's.
	Failures int `json:"failures"`
}

// OverallReport is one backend over the whole mix.
type OverallReport struct {
	Backend string `json:"backend"`
	// GeoMeanMedianRatio is the geometric mean over the measured calls of the
	// median ratio to the baseline; GeoMeanP99Ratio likewise for p99.
	GeoMeanMedianRatio float64 `json:"geomean_median_ratio"`
	GeoMeanP99Ratio    float64 `json:"geomean_p99_ratio"`
	// SerialCallsPerSec is the rate one call at a time, ParallelCallsPerSec with
	// Inflight calls in flight; Speedup is their quotient. The *Ratio fields divide
	// by the baseline's rate (higher is better).
	SerialCallsPerSec   float64 `json:"serial_calls_per_s"`
	ParallelCallsPerSec float64 `json:"parallel_calls_per_s"`
	Speedup             float64 `json:"speedup"`
	SerialRateRatio     float64 `json:"serial_rate_ratio"`
	ParallelRateRatio   float64 `json:"parallel_rate_ratio"`
	Failures            int     `json:"failures"`
}

// ServeReport compares a request through `agentexec serve` with a library Run.
type ServeReport struct {
	Measured bool   `json:"measured"`
	Reason   string `json:"reason,omitempty"`
	Call     string `json:"call,omitempty"`
	N        int    `json:"n,omitempty"`
	// LibraryUS and ServeUS are medians in µs per call; OverheadUS their difference.
	LibraryUS  float64 `json:"library_median_us,omitempty"`
	ServeUS    float64 `json:"serve_median_us,omitempty"`
	OverheadUS float64 `json:"overhead_us,omitempty"`
	// LibraryP99US and ServeP99US are the p99s.
	LibraryP99US float64 `json:"library_p99_us,omitempty"`
	ServeP99US   float64 `json:"serve_p99_us,omitempty"`
}

// StartupReport is the start-up time and idle memory of a policy with HotTools hot
// tools.
type StartupReport struct {
	HotTools int `json:"hot_tools"`
	Runs     int `json:"runs"`
	// FirstNewMS is the first agentexec.New of the process (the one-time host probe
	// included: a cold start), with the 20-tool policy; 0 when not measured (--policy).
	FirstNewMS float64 `json:"first_new_ms,omitempty"`
	// MedianMS and MaxMS are later agentexec.New calls until they return (spawners
	// restricted, templates prepared, cgroup pool made; host probe cached).
	MedianMS float64 `json:"new_median_ms"`
	MaxMS    float64 `json:"new_max_ms"`
	// ServeReadyMS is the time from starting `agentexec serve` to its first pong
	// (process start, policy load, New), when measured.
	ServeReadyMS float64 `json:"serve_ready_ms,omitempty"`
	// RSS is the idle resident memory: of an idle `agentexec serve` process and its
	// spawners when MemorySource is "serve", else of the spawners only.
	MainRSSKiB     int64 `json:"main_rss_kib"`
	SpawnersRSSKiB int64 `json:"spawners_rss_kib"`
	Spawners       int   `json:"spawners"`
	// DistinctKiB is the memory the serve process and its spawners hold, each
	// physical page counted once (the binary's pages are shared between them); 0
	// when it could not be counted (/proc/PID/pagemap frame numbers need
	// CAP_SYS_ADMIN).
	DistinctKiB  int64  `json:"distinct_kib,omitempty"`
	MemorySource string `json:"memory_source"`
	MemoryNote   string `json:"memory_note,omitempty"`
}

// Target is one of the targets with its measured value.
type Target struct {
	Name     string `json:"name"`
	Want     string `json:"want"`
	Measured string `json:"measured"`
	// Met is nil when the target could not be measured.
	Met  *bool  `json:"met"`
	Note string `json:"note,omitempty"`
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// backendNames returns the measured backends in report order.
func (r *Report) backendNames() []string {
	var names []string
	for _, b := range r.Backends {
		if b.Available {
			names = append(names, b.Name)
		}
	}
	return names
}

// WriteText writes the report as tables for people.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "agentexec bench: %d CPUs, kernel %s, %s, Landlock ABI %d, cgroup %s\n",
		r.Host.CPUs, r.Host.Kernel, r.Host.GoVersion, r.Host.LandlockABI, r.Host.Cgroup)
	fmt.Fprintf(&b, "workspace %s: %d files in %d dirs, git %v (%d commits)%s\n", r.Workspace.Dir, r.Workspace.Files,
		r.Workspace.Dirs, r.Workspace.Git, r.Workspace.Commits, map[bool]string{true: " (kept)", false: " (removed)"}[r.Workspace.Kept])
	fmt.Fprintf(&b, "calls per tool per backend: %d, interleaved; policy: %s\n\nbackends:\n", r.Config.Calls, r.Config.Policy)
	for _, be := range r.Backends {
		state := ""
		if !be.Available {
			state = "  [not available: " + be.Reason + "]"
		}
		fmt.Fprintf(&b, "  %-22s %s%s\n", be.Name, be.Description, state)
		if be.Available && be.Launch != "" {
			fmt.Fprintf(&b, "  %-22s launch %s, template %s, containment %s", "", be.Launch, be.Template, strings.Join(be.Containment, " "))
			if len(be.Unenforced) > 0 {
				fmt.Fprintf(&b, "; unenforced here: %s", strings.Join(be.Unenforced, ", "))
			}
			b.WriteString("\n")
		}
	}
	names := r.backendNames()
	b.WriteString("\nper call: median µs / p99 µs (median ratio to " + r.Baseline + ")\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "call\t")
	for _, n := range names {
		fmt.Fprintf(tw, "%s\t", n)
	}
	fmt.Fprintln(tw)
	var skipped []string
	for _, t := range r.Tools {
		if t.Skipped != "" {
			skipped = append(skipped, fmt.Sprintf("  %s: skipped: %s\n", t.Name, t.Skipped))
			continue
		}
		fmt.Fprintf(tw, "%s\t", t.Name)
		for _, n := range names {
			cell := "-"
			for _, res := range t.Results {
				if res.Backend == n {
					cell = fmt.Sprintf("%.0f / %.0f (%.2fx)", res.MedianUS, res.P99US, res.MedianRatio)
					if res.Failures > 0 {
						cell += fmt.Sprintf(" %d FAILED", res.Failures)
					}
				}
			}
			fmt.Fprintf(tw, "%s\t", cell)
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	b.WriteString(strings.Join(skipped, ""))
	fmt.Fprintf(&b, "\noverall (ratios to %s; rates in calls/s, %d in flight vs one at a time):\n", r.Baseline, r.Config.Inflight)
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "backend\tgeomean median\tgeomean p99\tserial/s\tparallel/s\tspeedup\tparallel ratio\t")
	for _, o := range r.Overall {
		fmt.Fprintf(tw, "%s\t%.3fx\t%.3fx\t%.0f\t%.0f\t%.2fx\t%.3fx\t\n", o.Backend, o.GeoMeanMedianRatio, o.GeoMeanP99Ratio,
			o.SerialCallsPerSec, o.ParallelCallsPerSec, o.Speedup, o.ParallelRateRatio)
	}
	tw.Flush()
	b.WriteString("\nserve: ")
	if r.Serve.Measured {
		fmt.Fprintf(&b, "%s: library Run %.0f µs, serve %.0f µs (median of %d, interleaved): overhead %.0f µs/request\n",
			r.Serve.Call, r.Serve.LibraryUS, r.Serve.ServeUS, r.Serve.N, r.Serve.OverheadUS)
	} else {
		fmt.Fprintf(&b, "not measured: %s\n", r.Serve.Reason)
	}
	s := r.Startup
	if s.Runs == 0 {
		b.WriteString("start-up and idle memory: not measured")
	} else {
		fmt.Fprintf(&b, "start-up, %d hot tools: ", s.HotTools)
		if s.FirstNewMS > 0 {
			fmt.Fprintf(&b, "first New in the process (cold host probe) %.1f ms; ", s.FirstNewMS)
		}
		fmt.Fprintf(&b, "later New median %.1f ms, max %.1f ms over %d runs", s.MedianMS, s.MaxMS, s.Runs)
		if s.ServeReadyMS > 0 {
			fmt.Fprintf(&b, "; serve ready (exec to first pong) %.1f ms", s.ServeReadyMS)
		}
		fmt.Fprintf(&b, "\nidle memory (%s): main %.1f MiB + %d spawner(s) %.1f MiB = %.1f MiB", s.MemorySource,
			float64(s.MainRSSKiB)/1024, s.Spawners, float64(s.SpawnersRSSKiB)/1024, float64(s.MainRSSKiB+s.SpawnersRSSKiB)/1024)
		if s.DistinctKiB > 0 {
			fmt.Fprintf(&b, "; distinct pages %.1f MiB", float64(s.DistinctKiB)/1024)
		}
		if s.MemoryNote != "" {
			fmt.Fprintf(&b, " (%s)", s.MemoryNote)
		}
	}
	b.WriteString("\n\ntargets:\n")
	for _, t := range r.Targets {
		verdict := "not measured"
		if t.Met != nil {
			verdict = map[bool]string{true: "met", false: "MISSED"}[*t.Met]
		}
		fmt.Fprintf(&b, "  %-12s %s: want %s, measured %s", verdict, t.Name, t.Want, t.Measured)
		if t.Note != "" {
			fmt.Fprintf(&b, " (%s)", t.Note)
		}
		b.WriteString("\n")
	}
	if len(r.Notes) > 0 {
		b.WriteString("\nnotes:\n")
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "  - %s\n", n)
		}
	}
	fmt.Fprintf(&b, "\n%.0f s\n", r.DurationS)
	_, err := io.WriteString(w, b.String())
	return err
}
