package peerbench

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeAgentexec is a stand-in for the agentexec binary: `version` prints, `run …
// -- TOOL ARGS` runs TOOL through PATH.
const fakeAgentexec = `#!/bin/sh
case "$1" in
version) echo fake; exit 0;;
run) while [ "$1" != "--" ]; do shift; done; shift; exec "$@";;
esac
exit 9
`

func writeExe(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o755); err != nil {
		t.Fatal(err)
	}
}

// The report has a row per call and a column per backend that ran every call; a
// peer that is not installed, or fails a call in the check, has no column and a
// note says why; a call the direct launch fails is skipped with a note.
func TestRun(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "agentexec")
	writeExe(t, bin, fakeAgentexec)
	// A bwrap on PATH that fails every call; no landrun.
	pathDir := filepath.Join(dir, "path")
	if err := os.Mkdir(pathDir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeExe(t, filepath.Join(pathDir, "bwrap"), "#!/bin/sh\nexit 1\n")
	t.Setenv("PATH", pathDir+":/usr/bin:/bin")
	ws := t.TempDir()
	cfg := Config{Binary: bin, Base: bin, Workspace: ws, Calls: 3, Env: []string{"PATH=/usr/bin:/bin"},
		Mix: []Call{{"true", []string{"true"}}, {"echo", []string{"echo", "x"}}, {"false", []string{"false"}}}}
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, b := range rep.Backends {
		names = append(names, b.Name)
	}
	if got, want := strings.Join(names, ","), "direct,agentexec-version,agentexec-run,base-version,base-run"; got != want {
		t.Errorf("backends %s, want %s", got, want)
	}
	notes := strings.Join(rep.Notes, "\n")
	for _, want := range []string{"landrun: not installed", "bwrap: left out: call true", "false: skipped: the direct launch"} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes lack %q:\n%s", want, notes)
		}
	}
	if len(rep.Mix) != 2 {
		t.Fatalf("%d calls reported, want 2 (false skipped)", len(rep.Mix))
	}
	for _, c := range rep.Mix {
		if d := c.Cells["direct"]; d.Ratio != 1 || d.Median <= 0 {
			t.Errorf("%s: direct cell %+v, want ratio 1", c.Name, d)
		}
		if r := c.Cells["agentexec-run"]; r.Median <= 0 || r.Ratio <= 0 {
			t.Errorf("%s: agentexec-run cell %+v", c.Name, r)
		}
	}
	if g := rep.Geomean["direct"]; g != 1 {
		t.Errorf("direct geomean %v, want 1", g)
	}
	var b strings.Builder
	if err := rep.WriteText(&b, true); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "geomean") || !strings.Contains(b.String(), "CPU time") {
		t.Errorf("text report:\n%s", b.String())
	}

	// Restricted to some backends (base-… follows its agentexec-… name).
	cfg.Backends = []string{"agentexec-run"}
	if rep, err = Run(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	names = names[:0]
	for _, b := range rep.Backends {
		names = append(names, b.Name)
	}
	if got, want := strings.Join(names, ","), "direct,agentexec-run,base-run"; got != want {
		t.Errorf("restricted backends %s, want %s", got, want)
	}
}

func TestRunNoCall(t *testing.T) {
	_, err := Run(context.Background(), Config{Binary: "/bin/true", Workspace: t.TempDir(), Calls: 1,
		Env: []string{"PATH=/usr/bin:/bin"}, Mix: []Call{{"nope", []string{"no-such-tool-here"}}}})
	if err == nil || !strings.Contains(err.Error(), "no-such-tool-here") {
		t.Fatalf("Run = %v, want an error naming the missing tool", err)
	}
	if _, err := Run(context.Background(), Config{Calls: 0}); err == nil {
		t.Fatal("Calls 0 accepted")
	}
}

// With OutputPipe every call's stdout is a pipe the harness reads to its end: a
// tool that insists on a pipe runs (control: with /dev/null it fails the direct
// launch and is skipped), and one that writes 4 MiB, more than a pipe holds, ends.
func TestRunOutputPipe(t *testing.T) {
	dir := t.TempDir()
	pipeOnly := filepath.Join(dir, "pipe-only")
	writeExe(t, pipeOnly, "#!/bin/sh\n[ -p /dev/stdout ] || exit 3\necho ok\n")
	mix := []Call{{"pipe-only", []string{pipeOnly}}, {"big", []string{"head", "-c", "4194304", "/dev/zero"}}}
	cfg := Config{Binary: "/bin/true", Workspace: t.TempDir(), Calls: 2, Env: []string{"PATH=/usr/bin:/bin"},
		Backends: []string{}, Mix: mix}
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Mix) != 1 || rep.Mix[0].Name != "big" || !strings.Contains(strings.Join(rep.Notes, "\n"), "pipe-only: skipped") {
		t.Fatalf("/dev/null output: calls %+v, notes %q; want pipe-only skipped", rep.Mix, rep.Notes)
	}
	cfg.OutputPipe = true
	if rep, err = Run(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if len(rep.Mix) != 2 {
		t.Fatalf("pipe output: %d calls, want 2; notes %q", len(rep.Mix), rep.Notes)
	}
}
