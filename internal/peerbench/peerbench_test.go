package peerbench

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentexec/agentexec/internal/testutil"
)

// fakeAgentexec is a stand-in for the agentexec binary: `version` prints, `run …
// -- TOOL ARGS` runs TOOL through PATH, `serve` answers each ping with a pong and
// each request with a result (exit code 1 for tool "false", an error line for
// tool "broken", 0 otherwise) and writes what it read to $FAKE_SERVE_LOG.
const fakeAgentexec = `#!/bin/sh
case "$1" in
version) echo fake; exit 0;;
run) while [ "$1" != "--" ]; do shift; done; shift; exec "$@";;
serve) while IFS= read -r line; do
	[ -n "$FAKE_SERVE_LOG" ] && printf '%s\n' "$line" >> "$FAKE_SERVE_LOG"
	id=$(printf '%s' "$line" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
	case "$line" in
	*'"type":"ping"'*) printf '{"type":"pong","id":"%s"}\n' "$id";;
	*'"tool":"false"'*) printf '{"type":"result","id":"%s","status":"ok","exit_code":1}\n' "$id";;
	*'"tool":"broken"'*) printf '{"type":"error","id":"%s","code":"bad","error":"broken request"}\n' "$id";;
	*) printf '{"type":"stdout","id":"%s","data":"x"}\n{"type":"result","id":"%s","status":"ok","exit_code":0}\n' "$id" "$id";;
	esac
done; exit 0;;
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

// Serve adds a column per binary: one serve process for the run, each call a
// request line and its result line (lines of other types and ids skipped); the
// requests name the call's tool and arguments; its CPU column says n/a. A call
// serve does not answer with status 0 leaves the column out with a note.
func TestRunServe(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "agentexec")
	writeExe(t, bin, fakeAgentexec)
	log := filepath.Join(dir, "serve.log")
	cfg := Config{Binary: bin, Workspace: t.TempDir(), Calls: 2, Serve: true, Backends: []string{"agentexec-serve"},
		Env: []string{"PATH=/usr/bin:/bin", "FAKE_SERVE_LOG=" + log},
		Mix: []Call{{"echo", []string{"echo", "a b"}}, {"true", []string{"true"}}}}
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Backends) != 2 || rep.Backends[1].Name != "agentexec-serve" || !rep.Backends[1].NoCPU {
		t.Fatalf("backends %+v, want direct and agentexec-serve (no CPU)", rep.Backends)
	}
	for _, c := range rep.Mix {
		if s := c.Cells["agentexec-serve"]; s.Median <= 0 || s.Ratio <= 0 || s.CPURatio != 0 {
			t.Errorf("%s: serve cell %+v", c.Name, s)
		}
	}
	if _, ok := rep.CPUGeomean["agentexec-serve"]; ok {
		t.Errorf("serve has a CPU geomean: %v", rep.CPUGeomean)
	}
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(b); !strings.Contains(got, `{"type":"ping","id":"peerbench-ready"}`) ||
		!strings.Contains(got, `"tool":"echo","args":["a b"]`) || !strings.Contains(got, `"tool":"true","args":[]`) {
		t.Errorf("serve read:\n%s", got)
	}
	var text strings.Builder
	if err := rep.WriteText(&text, true); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), "n/a") {
		t.Errorf("CPU table has no n/a for serve:\n%s", text.String())
	}

	// A call that serve answers with exit code 1, or with an error line, leaves
	// serve out (control: the direct launch of each succeeds: the tool found first
	// in PATH is a script that exits 0).
	for _, tool := range []string{"false", "broken"} {
		path := filepath.Join(dir, tool)
		writeExe(t, path, "#!/bin/sh\nexit 0\n")
		cfg.Mix = []Call{{"true", []string{"true"}}, {tool, []string{tool}}}
		cfg.Env = []string{"PATH=" + dir + ":/usr/bin:/bin"}
		if rep, err = Run(context.Background(), cfg); err != nil {
			t.Fatal(err)
		}
		if len(rep.Backends) != 1 || len(rep.Mix) != 2 || !strings.Contains(strings.Join(rep.Notes, "\n"), "agentexec-serve: left out: call "+tool) {
			t.Errorf("%s: backends %+v, calls %d, notes %q; want serve left out", tool, rep.Backends, len(rep.Mix), rep.Notes)
		}
	}

	// A serve that does not start (it exits at once) is left out with the reason;
	// the rest is measured.
	writeExe(t, bin, "#!/bin/sh\n[ \"$1\" = serve ] && { echo 'no policy here' >&2; exit 2; }\n"+strings.TrimPrefix(fakeAgentexec, "#!/bin/sh\n"))
	cfg.Backends = []string{"agentexec-serve", "agentexec-version"}
	cfg.Mix = []Call{{"true", []string{"true"}}}
	if rep, err = Run(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if notes := strings.Join(rep.Notes, "\n"); len(rep.Backends) != 2 || rep.Backends[1].Name != "agentexec-version" ||
		!strings.Contains(notes, "agentexec-serve: left out:") || !strings.Contains(notes, "no policy here") {
		t.Errorf("serve that does not start: backends %+v, notes %q", rep.Backends, notes)
	}
}

// Sketch adds llrun's column, called as landrun is: its path flags, then -- TOOL
// ARGS (a fake that checks the flags and runs the tool).
func TestRunSketch(t *testing.T) {
	dir := t.TempDir()
	ws := t.TempDir()
	sketch := filepath.Join(dir, "llrun")
	writeExe(t, sketch, `#!/bin/sh
[ "$1 $2" = "--rox /usr,/bin,/lib,/lib64" ] || exit 7
[ "$3 $4" = "--ro /etc,/dev/null,`+ws+`" ] || exit 8
while [ "$1" != "--" ]; do shift; done; shift; exec "$@"
`)
	cfg := Config{Binary: "/bin/true", Workspace: ws, Calls: 2, Sketch: sketch, Backends: []string{"llrun"},
		Env: []string{"PATH=/usr/bin:/bin"}, Mix: []Call{{"true", []string{"true"}}}}
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Backends) != 2 || rep.Backends[1].Name != "llrun" || rep.Mix[0].Cells["llrun"].Median <= 0 {
		t.Fatalf("backends %+v, mix %+v, notes %q; want llrun measured", rep.Backends, rep.Mix, rep.Notes)
	}
	// Control: a sketch that refuses the call is left out.
	writeExe(t, sketch, "#!/bin/sh\nexit 1\n")
	if rep, err = Run(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if len(rep.Backends) != 1 {
		t.Fatalf("failing sketch kept: %+v", rep.Backends)
	}
}

// The serve row through a built agentexec (AGENTEXEC_BIN; make test sets it): its
// embedded default policy's tools answer through the client, with their exit
// codes (control: a call the policy refuses leaves the row out with its reason).
func TestRunServeReal(t *testing.T) {
	bin := os.Getenv("AGENTEXEC_BIN")
	if bin == "" {
		if testutil.Strict() {
			t.Fatal("AGENTEXEC_STRICT=1: AGENTEXEC_BIN is not set (make test sets it to the built binary)")
		}
		t.Skip("needs AGENTEXEC_BIN, the path of a built agentexec binary (make test sets it)")
	}
	ws := t.TempDir()
	if err := os.WriteFile(filepath.Join(ws, "f.txt"), []byte("one\ntwo\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Binary: bin, Workspace: ws, Calls: 2, Serve: true, OutputPipe: true, Backends: []string{"agentexec-serve"},
		Env: []string{"PATH=/usr/local/bin:/usr/bin:/bin"},
		Mix: []Call{{"true", []string{"true"}}, {"wc", []string{"wc", "-l", "f.txt"}}}}
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Backends) != 2 || len(rep.Mix) != 2 {
		t.Fatalf("backends %+v, calls %d, notes %q; want serve on both calls", rep.Backends, len(rep.Mix), rep.Notes)
	}
	for _, c := range rep.Mix {
		if s := c.Cells["agentexec-serve"]; s.Median <= 0 {
			t.Errorf("%s: serve cell %+v", c.Name, s)
		}
	}
	cfg.Mix = append(cfg.Mix, Call{"env", []string{"env"}}) // not a tool of the default policy
	if rep, err = Run(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if notes := strings.Join(rep.Notes, "\n"); len(rep.Backends) != 1 || !strings.Contains(notes, "agentexec-serve: left out: call env") {
		t.Errorf("backends %+v, notes %q; want serve left out on env", rep.Backends, notes)
	}
}
