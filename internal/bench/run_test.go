package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/agentexec/agentexec/internal/testutil"
)

func requireRuntime(t *testing.T) {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireLandlockABI(t, 6)
}

// sharedWorkspace generates one workspace for the run tests (generation takes
// seconds on a loaded machine).
func sharedWorkspace(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ws")
	if _, err := prepareWorkspace(dir, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	return dir
}

func result(t *testing.T, rep *Report, call, backend string) ToolResult {
	t.Helper()
	for _, tr := range rep.Tools {
		if tr.Name != call {
			continue
		}
		if tr.Skipped != "" {
			t.Fatalf("%s skipped: %s", call, tr.Skipped)
		}
		for _, r := range tr.Results {
			if r.Backend == backend {
				return r
			}
		}
	}
	t.Fatalf("no result for %s through %s", call, backend)
	return ToolResult{}
}

func TestRunSmall(t *testing.T) {
	requireRuntime(t)
	ws := sharedWorkspace(t)
	only := []string{"true", "cat", "sh -c pipe", "git status"}
	rep, err := Run(context.Background(), Config{Calls: 3, Inflight: 4, Workspace: ws, Only: only, SkipExtras: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Tools) != len(only) {
		t.Fatalf("%d tool rows, want %d", len(rep.Tools), len(only))
	}
	for _, name := range only {
		for _, be := range []string{KindUserspace, KindOSExec, rep.Baseline} {
			r := result(t, rep, name, be)
			if r.N != 3 || r.Failures != 0 {
				t.Errorf("%s through %s: %d samples, %d failures; want 3 and 0", name, be, r.N, r.Failures)
			}
			if r.MedianUS <= 0 || r.P99US < r.MedianUS {
				t.Errorf("%s through %s: median %v p99 %v", name, be, r.MedianUS, r.P99US)
			}
			if be == rep.Baseline && r.MedianRatio != 1 {
				t.Errorf("baseline ratio %v, want 1", r.MedianRatio)
			}
		}
	}
	if rep.Startup.FirstNewMS <= 0 {
		t.Errorf("first New not timed: %+v", rep.Startup)
	}
	ua := rep.Backends[0]
	if ua.Name != KindUserspace || !ua.Available || ua.Launch != "userspace" || ua.Template != "hit" {
		t.Errorf("userspace backend: %+v, want launches through hot userspace templates", ua)
	}
	if !slices.ContainsFunc(ua.Containment, func(s string) bool { return strings.HasPrefix(s, "landlock") }) {
		t.Errorf("containment %v lacks Landlock", ua.Containment)
	}
	// The kernel backend is either measured or explained.
	for _, b := range rep.Backends {
		if !b.Available && b.Reason == "" {
			t.Errorf("backend %s unavailable without a reason", b.Name)
		}
	}
	wantBase := KindForkExec
	if cgoEnabled {
		wantBase = KindPosixSpawn
	}
	if rep.Baseline != wantBase || rep.Backends[len(rep.Backends)-1].Name != wantBase {
		t.Errorf("baseline %s (last backend %s), want %s in this build", rep.Baseline, rep.Backends[len(rep.Backends)-1].Name, wantBase)
	}
	if len(rep.Overall) < 3 {
		t.Fatalf("overall rows: %+v", rep.Overall)
	}
	for _, o := range rep.Overall {
		if o.SerialCallsPerSec <= 0 || o.ParallelCallsPerSec <= 0 || o.GeoMeanMedianRatio <= 0 || o.Failures != 0 {
			t.Errorf("overall %+v", o)
		}
	}
	if len(rep.Targets) == 0 {
		t.Error("no targets judged")
	}
	var text, js bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"agentexec-userspace", rep.Baseline, "geomean", "git status", "targets:"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatalf("JSON report does not parse: %v", err)
	}
	if len(back.Tools) != len(rep.Tools) || back.Baseline != rep.Baseline {
		t.Errorf("JSON round trip lost data: %+v", back)
	}
}

// A user policy that lacks tools gets those calls skipped with a note; one that
// refuses what the mix needs gets the call skipped with the runtime's error.
func TestRunUserPolicySkips(t *testing.T) {
	requireRuntime(t)
	ws := sharedWorkspace(t)
	y := PolicyYAML([]string{"true", "cat"}, 4, "off")
	// The policy refuses cat's argument: a denial only the sandboxed backends see.
	y = strings.Replace(y, "  cat: {hot: true}\n", "  cat: {hot: true, args: {deny: [\"pkg*\"]}}\n", 1)
	pf := filepath.Join(t.TempDir(), "p.yaml")
	if err := os.WriteFile(pf, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	rep, err := Run(context.Background(), Config{PolicyFile: pf, Calls: 2, Inflight: 2, Workspace: ws, Only: []string{"true", "cat", "ls"}, SkipExtras: true})
	if err != nil {
		t.Fatal(err)
	}
	skipped := map[string]string{}
	for _, tr := range rep.Tools {
		skipped[tr.Name] = tr.Skipped
	}
	if s := skipped["ls"]; !strings.Contains(s, "not in the policy") {
		t.Errorf("ls: skipped %q, want 'not in the policy'", s)
	}
	if s := skipped["cat"]; !strings.HasPrefix(s, KindUserspace+": ") || !strings.Contains(s, "args.deny") {
		t.Errorf("cat: skipped %q, want the runtime's denial", s)
	}
	if skipped["true"] != "" {
		t.Errorf("true skipped: %s", skipped["true"])
	}
	if !slices.ContainsFunc(rep.Notes, func(n string) bool { return strings.HasPrefix(n, "ls: skipped") }) {
		t.Errorf("notes lack the skipped ls: %q", rep.Notes)
	}
}

// TestRunExtras measures serve overhead, start-up and idle memory through a built
// agentexec binary: AGENTEXEC_BIN (make test sets it).
func TestRunExtras(t *testing.T) {
	requireRuntime(t)
	bin := os.Getenv("AGENTEXEC_BIN")
	if bin == "" {
		if testutil.Strict() {
			t.Fatal("AGENTEXEC_STRICT=1: AGENTEXEC_BIN is not set (make test sets it to the built binary)")
		}
		t.Skip("needs AGENTEXEC_BIN, the path of a built agentexec binary (make test sets it)")
	}
	ws := sharedWorkspace(t)
	rep, err := Run(context.Background(), Config{Binary: bin, Calls: 2, Inflight: 2, Workspace: ws, Only: []string{"true"}})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Serve.Measured || rep.Serve.N != serveCalls || rep.Serve.LibraryUS <= 0 || rep.Serve.ServeUS <= 0 {
		t.Errorf("serve: %+v (notes %q)", rep.Serve, rep.Notes)
	}
	s := rep.Startup
	if s.Runs != startupRuns || s.MedianMS <= 0 || s.HotTools < 15 || s.ServeReadyMS <= 0 {
		t.Errorf("start-up: %+v", s)
	}
	if !strings.HasPrefix(s.MemorySource, "idle `agentexec serve`") || s.MainRSSKiB <= 0 || s.Spawners < 1 || s.SpawnersRSSKiB <= 0 {
		t.Errorf("memory: %+v", s)
	}
	var judged int
	for _, tg := range rep.Targets {
		if tg.Met != nil {
			judged++
		}
	}
	if judged != 6 {
		t.Errorf("%d targets judged, want all 6: %+v", judged, rep.Targets)
	}
}
