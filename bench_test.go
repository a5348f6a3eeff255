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
