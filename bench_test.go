package agentexec_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/agentexec/agentexec"
)

// BenchmarkLaunch compares a sandboxed launch (spawner round trip, Landlock, pooled
// cgroup, pipes, pidfd) with plain os/exec of the same command, in the same run.
// docs/performance.md reports the ratios.
func BenchmarkLaunch(b *testing.B) {
	rg, _ := exec.LookPath("rg")
	extra := ""
	if rg != "" {
		extra = "  rg: {exec: " + rg + ", hot: true}\n"
	}
	p, ws := testPolicy(b, extra)
	for i := range 50 {
		os.WriteFile(filepath.Join(ws, "f"+string(rune('a'+i%26))+".py"), []byte("def f():\n    return 42\n# TODO\n"), 0o644)
	}
	rt := newRuntime(b, p)
	ctx := context.Background()
	cases := []struct {
		name string
		tool string
		path string
		args []string
	}{
		{"true", "true", "/bin/true", nil},
	}
	if rg != "" {
		cases = append(cases, struct {
			name string
			tool string
			path string
			args []string
		}{"rg", "rg", rg, []string{"-n", "TODO", ws}})
	}
	for _, c := range cases {
		b.Run("sandboxed-"+c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				r, err := rt.Run(ctx, agentexec.Request{Tool: c.tool, Args: c.args})
				if err != nil || r.ExitCode != 0 {
					b.Fatalf("%v %+v", err, r)
				}
			}
		})
		b.Run("osexec-"+c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				cmd := exec.Command(c.path, c.args...)
				cmd.Dir = ws
				if _, err := cmd.Output(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkLaunchIsolation measures what the per-launch isolation costs a launch:
// the same policy and tool with the per-launch Landlock layer and the tool
// identity ("isolated", the default) and without them ("shared-domain", the
// isolation tests' control). docs/performance.md has the command and figures.
func BenchmarkLaunchIsolation(b *testing.B) {
	p, _ := testPolicy(b, "")
	rts := []struct {
		name string
		rt   *agentexec.Runtime
	}{
		{"isolated", newRuntime(b, p)},
		{"shared-domain", newRuntime(b, p, agentexec.WithoutLaunchIsolationForTest())},
	}
	ctx := context.Background()
	for _, r := range rts {
		b.Run(r.name, func(b *testing.B) {
			for b.Loop() {
				res, err := r.rt.Run(ctx, agentexec.Request{Tool: "true"})
				if err != nil || res.ExitCode != 0 {
					b.Fatalf("%v %+v", err, res)
				}
			}
		})
	}
}
