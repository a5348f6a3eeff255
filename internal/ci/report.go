package ci

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentexec/agentexec"
	"github.com/agentexec/agentexec/policy"
)

// ReportVersion is the version of the JSON report format (docs/ci-report.schema.json).
const ReportVersion = 1

// Report is the JSON report of a job run (--report FILE). docs/ci.md documents it and
// docs/ci-report.schema.json is its JSON Schema.
type Report struct {
	ReportVersion int    `json:"report_version"`
	Job           string `json:"job"`
	JobFile       string `json:"job_file"`
	Policy        string `json:"policy"`
	Workspace     string `json:"workspace"`
	// Status is "passed" when every required step passed, else "failed".
	Status     string        `json:"status"`
	ExitCode   int           `json:"exit_code"`
	StartedAt  time.Time     `json:"started_at"`
	FinishedAt time.Time     `json:"finished_at"`
	DurationMS float64       `json:"duration_ms"`
	Options    ReportOptions `json:"options"`
	Summary    ReportSummary `json:"summary"`
	Steps      []ReportStep  `json:"steps"`
}

// ReportOptions are the runner's settings.
type ReportOptions struct {
	Jobs      int    `json:"jobs"`
	KeepGoing bool   `json:"keep_going"`
	Artifacts string `json:"artifacts"`
}

// ReportSummary counts steps by status.
type ReportSummary struct {
	Total    int `json:"total"`
	Passed   int `json:"passed"`
	Failed   int `json:"failed"`
	TimedOut int `json:"timed_out"`
	Denied   int `json:"denied"`
	Skipped  int `json:"skipped"`
	Error    int `json:"error"`
}

// ReportStep is one step's outcome.
type ReportStep struct {
	Name            string   `json:"name"`
	Status          Status   `json:"status"`
	Required        bool     `json:"required"`
	ContinueOnError bool     `json:"continue_on_error"`
	Message         string   `json:"message"`
	Tool            string   `json:"tool"`
	Args            []string `json:"args"`
	Needs           []string `json:"needs"`
	// StartedAt and FinishedAt are null for steps that never started.
	StartedAt  *time.Time `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at"`
	DurationMS float64    `json:"duration_ms"`
	// ExitCode is null unless the step's process exited.
	ExitCode        *int     `json:"exit_code"`
	Signal          string   `json:"signal,omitempty"`
	TimedOut        bool     `json:"timed_out"`
	OOMKilled       bool     `json:"oom_killed"`
	CPUMS           float64  `json:"cpu_ms"`
	UserCPUMS       float64  `json:"user_cpu_ms"`
	SystemCPUMS     float64  `json:"system_cpu_ms"`
	PeakMemoryBytes int64    `json:"peak_memory_bytes"`
	StdoutBytes     int64    `json:"stdout_bytes"`
	StderrBytes     int64    `json:"stderr_bytes"`
	StdoutTruncated bool     `json:"stdout_truncated"`
	StderrTruncated bool     `json:"stderr_truncated"`
	StdoutArtifact  string   `json:"stdout_artifact,omitempty"`
	StderrArtifact  string   `json:"stderr_artifact,omitempty"`
	Unenforced      []string `json:"unenforced"`
	Containment     []string `json:"containment"`
	Denied          *Denial  `json:"denied,omitempty"`
	// Denials are what the sandbox refused the step while it ran (kernel denials
	// under the policy's kernel_denials, the egress proxy's refusals), each with
	// its hint; DenialsStatus says how complete the list is; Egress is what the
	// step did through the egress proxy. Same shapes as in `serve`'s results
	// (docs/denials.md, docs/network.md). Absent for steps that did not launch.
	Denials       []policy.Denial          `json:"denials,omitempty"`
	DenialsStatus *agentexec.DenialsStatus `json:"denials_status,omitempty"`
	Egress        *agentexec.EgressReport  `json:"egress,omitempty"`
}

// Denial is the policy rule that refused a step, with the hint: the policy
// change that would allow it, or that none should.
type Denial struct {
	Rule   string       `json:"rule"`
	Op     string       `json:"op"`
	Object string       `json:"object"`
	Reason string       `json:"reason"`
	Hint   *policy.Hint `json:"hint,omitempty"`
}

func ms(d time.Duration) float64 { return agentexec.DurationMS(d) }

// cpuOf is the step's CPU time: the cgroup's (whole tree) when known, else rusage.
func cpuOf(r *StepResult) time.Duration {
	if r.Result.CgroupCPU > 0 {
		return r.Result.CgroupCPU
	}
	return r.Result.UserCPU + r.Result.SystemCPU
}

func signalName(s syscall.Signal) string {
	if n := unix.SignalName(s); n != "" {
		return n
	}
	return fmt.Sprintf("signal %d", int(s))
}

// buildReport assembles the JSON report.
func buildReport(j *Job, policySrc, workspace string, o ReportOptions, start, end time.Time, results []*StepResult, exit int) *Report {
	rep := &Report{
		ReportVersion: ReportVersion, Job: j.Name, JobFile: j.File, Policy: policySrc, Workspace: workspace,
		Status: "passed", ExitCode: exit, StartedAt: start.UTC(), FinishedAt: end.UTC(), DurationMS: ms(end.Sub(start)),
		Options: o, Steps: []ReportStep{},
	}
	if exit != 0 {
		rep.Status = "failed"
	}
	for _, r := range results {
		s := r.Step
		rs := ReportStep{
			Name: s.Name, Status: r.Status, Required: s.Required(), ContinueOnError: s.ContinueOnError,
			Message: r.Message, Tool: s.Tool, Args: nonNil(s.Args), Needs: nonNil(s.Needs),
			Unenforced: nonNil(r.Unenforced), Containment: nonNil(r.Result.Containment),
			StdoutBytes: r.StdoutBytes, StderrBytes: r.StderrBytes,
			StdoutArtifact: r.StdoutFile, StderrArtifact: r.StderrFile,
		}
		if !r.Start.IsZero() {
			st, en := r.Start.UTC(), r.End.UTC()
			rs.StartedAt, rs.FinishedAt, rs.DurationMS = &st, &en, ms(r.End.Sub(r.Start))
		}
		if r.Launched {
			res := r.Result
			if res.Signal == 0 && !res.TimedOut && !res.Canceled && res.ExitCode >= 0 {
				c := res.ExitCode
				rs.ExitCode = &c
			}
			if res.Signal != 0 {
				rs.Signal = signalName(res.Signal)
			}
			rs.TimedOut, rs.OOMKilled = res.TimedOut, res.OOMKilled
			rs.CPUMS, rs.UserCPUMS, rs.SystemCPUMS = ms(cpuOf(r)), ms(res.UserCPU), ms(res.SystemCPU)
			rs.PeakMemoryBytes = res.PeakMemory
			rs.StdoutTruncated, rs.StderrTruncated = res.StdoutTruncated, res.StderrTruncated
			if res.TimedOut && res.Signal == 0 && res.ExitCode >= 0 {
				c := res.ExitCode
				rs.ExitCode = &c
			}
			rs.Denials, rs.Egress = res.Denials, res.Egress
			if res.DenialsStatus.State != "" {
				st := res.DenialsStatus
				rs.DenialsStatus = &st
			}
		}
		if r.Denied != nil {
			rs.Denied = &Denial{Rule: r.Denied.Rule, Op: r.Denied.Op, Object: r.Denied.Object, Reason: r.Denied.Reason, Hint: r.Denied.Hint}
		}
		rep.Steps = append(rep.Steps, rs)
		rep.Summary.Total++
		switch r.Status {
		case StatusPassed:
			rep.Summary.Passed++
		case StatusFailed:
			rep.Summary.Failed++
		case StatusTimedOut:
			rep.Summary.TimedOut++
		case StatusDenied:
			rep.Summary.Denied++
		case StatusSkipped:
			rep.Summary.Skipped++
		case StatusError:
			rep.Summary.Error++
		}
	}
	return rep
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// writeFileAtomic writes data to path through a temporary file and a rename, so that
// readers never see half a report.
func writeFileAtomic(path string, data []byte) error {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(data)
	cerr := tmp.Close()
	if werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Chmod(tmp.Name(), 0o644)
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), path)
	}
	if werr != nil {
		os.Remove(tmp.Name())
		return werr
	}
	return nil
}

func writeJSONReport(path string, rep *Report) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("report %s: %w", path, err)
	}
	if err := writeFileAtomic(path, append(b, '\n')); err != nil {
		return fmt.Errorf("report %s: %w", path, err)
	}
	return nil
}

// JUnit XML (the de-facto schema Jenkins, GitLab, GitHub reporters and others read).

type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Skipped    int             `xml:"skipped,attr"`
	Time       string          `xml:"time,attr"`
	Timestamp  string          `xml:"timestamp,attr"`
	Properties []junitProperty `xml:"properties>property,omitempty"`
	Cases      []junitCase     `xml:"testcase"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitProblem `xml:"failure,omitempty"`
	Error     *junitProblem `xml:"error,omitempty"`
	Skipped   *junitSkipped `xml:"skipped,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
	SystemErr string        `xml:"system-err,omitempty"`
}

type junitProblem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

type junitSkipped struct {
	Message string `xml:"message,attr"`
}

// maxJUnitOutput bounds each of system-out and system-err per test case; the full
// output is in the artifacts.
const maxJUnitOutput = 1 << 20

func secs(d time.Duration) string { return fmt.Sprintf("%.3f", d.Seconds()) }

// readCapped returns up to max bytes from the end of a file, noting what was cut.
func readCapped(path string, max int64) string {
	if path == "" {
		return ""
	}
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	prefix := ""
	if st.Size() > max {
		if _, err := f.Seek(st.Size()-max, io.SeekStart); err != nil {
			return ""
		}
		prefix = fmt.Sprintf("[… %d earlier bytes in %s]\n", st.Size()-max, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, max))
	if err != nil {
		return ""
	}
	return prefix + strings.ToValidUTF8(string(b), "\uFFFD")
}

// writeJUnit writes one testsuite (the job) with a testcase per step. failed and
// timed_out steps are failures, denied and error steps are errors, skipped steps
// are skipped; a failure of a continue_on_error step is still reported as a failure
// (with "allowed to fail" in its message).
func writeJUnit(path string, rep *Report) error {
	suite := junitSuite{Name: rep.Job, Time: secs(time.Duration(rep.DurationMS * float64(time.Millisecond))),
		Timestamp:  rep.StartedAt.Format("2006-01-02T15:04:05"),
		Properties: []junitProperty{{"job_file", rep.JobFile}, {"policy", rep.Policy}, {"workspace", rep.Workspace}}}
	for _, s := range rep.Steps {
		c := junitCase{Name: s.Name, Classname: rep.Job, Time: secs(time.Duration(s.DurationMS * float64(time.Millisecond)))}
		msg := s.Message
		if s.ContinueOnError && s.Status != StatusPassed && s.Status != StatusSkipped {
			msg += " (continue_on_error: allowed to fail)"
		}
		body := ""
		// What the sandbox refused comes first: it explains a "Permission denied"
		// in the output below.
		denials := reportDenialText(s)
		if s.Status != StatusPassed && s.Status != StatusSkipped {
			body = denials + readCapped(s.StderrArtifact, 64<<10)
		}
		switch s.Status {
		case StatusFailed, StatusTimedOut:
			c.Failure = &junitProblem{Message: msg, Type: string(s.Status), Text: body}
			suite.Failures++
		case StatusDenied, StatusError:
			if s.Denied != nil {
				body = fmt.Sprintf("rule %s: %s %s: %s\n", s.Denied.Rule, s.Denied.Op, s.Denied.Object, s.Denied.Reason)
				if h := HintText(s.Denied.Hint); h != "" {
					body += h + "\n"
				}
			}
			c.Error = &junitProblem{Message: msg, Type: string(s.Status), Text: body}
			suite.Errors++
		case StatusSkipped:
			c.Skipped = &junitSkipped{Message: msg}
			suite.Skipped++
		}
		c.SystemOut = readCapped(s.StdoutArtifact, maxJUnitOutput)
		c.SystemErr = readCapped(s.StderrArtifact, maxJUnitOutput)
		if denials != "" {
			// A step that passed may have met refusals too (a tool that tolerates them).
			if c.SystemErr != "" && !strings.HasSuffix(c.SystemErr, "\n") {
				c.SystemErr += "\n"
			}
			c.SystemErr += "[agentexec] " + strings.ReplaceAll(strings.TrimSuffix(denials, "\n"), "\n", "\n[agentexec] ") + "\n"
		}
		suite.Cases = append(suite.Cases, c)
		suite.Tests++
	}
	all := junitSuites{Name: rep.Job, Tests: suite.Tests, Failures: suite.Failures, Errors: suite.Errors,
		Skipped: suite.Skipped, Time: suite.Time, Suites: []junitSuite{suite}}
	b, err := xml.MarshalIndent(all, "", "  ")
	if err != nil {
		return fmt.Errorf("junit %s: %w", path, err)
	}
	out := append([]byte(xml.Header), b...)
	if err := writeFileAtomic(path, append(out, '\n')); err != nil {
		return fmt.Errorf("junit %s: %w", path, err)
	}
	return nil
}

// writeSummary prints the table of steps: status, duration, CPU, peak memory and
// the limits not enforced.
func writeSummary(w io.Writer, rep *Report, results []*StepResult) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tSTATUS\tDURATION\tCPU\tPEAK MEM\tUNENFORCED")
	for i, s := range rep.Steps {
		dur, cpu, mem := "-", "-", "-"
		if s.StartedAt != nil {
			dur = fmtDur(results[i].End.Sub(results[i].Start))
		}
		if results[i].Launched {
			cpu = fmtDur(cpuOf(results[i]))
			if s.PeakMemoryBytes > 0 {
				mem = fmtBytes(s.PeakMemoryBytes)
			}
		}
		status := string(s.Status)
		if s.ContinueOnError && s.Status != StatusPassed && s.Status != StatusSkipped {
			status += " (allowed)"
		}
		un := "-"
		if len(s.Unenforced) > 0 {
			un = strings.Join(s.Unenforced, "; ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, status, dur, cpu, mem, un)
	}
	tw.Flush()
	sm := rep.Summary
	fmt.Fprintf(w, "job %s %s in %s: %d passed, %d failed, %d timed out, %d denied, %d error, %d skipped\n",
		rep.Job, rep.Status, fmtDur(time.Duration(rep.DurationMS*float64(time.Millisecond))),
		sm.Passed, sm.Failed, sm.TimedOut, sm.Denied, sm.Error, sm.Skipped)
}

// reportDenialText is a step's refusals in the JUnit texts: one line per denial
// with its hint, the completeness note and the egress summary ("" for none).
func reportDenialText(s ReportStep) string {
	var b strings.Builder
	for _, d := range s.Denials {
		b.WriteString("denied: " + DenialLine(d) + "\n")
	}
	if s.DenialsStatus != nil {
		if note := StatusNote(*s.DenialsStatus, false); note != "" {
			b.WriteString(note + "\n")
		}
	}
	if e := EgressLine(s.Egress, s.Denials); e != "" {
		b.WriteString(e + "\n")
	}
	return b.String()
}
