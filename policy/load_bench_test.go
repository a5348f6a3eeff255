package policy_test

import (
	"os"
	"testing"

	"github.com/agentexec/agentexec/configs"
	"github.com/agentexec/agentexec/policy"
)

// BenchmarkLoadDefault loads the embedded default policy as `agentexec run` does
// (docs/performance.md, "Evening of 2026-12-03"): "all" resolves every tool
// (policy.LoadBytes), "one" only the tool run runs (Parse and ResolveTools, the
// one-shot path).
func BenchmarkLoadDefault(b *testing.B) {
	opts := policy.Options{Workspace: b.TempDir(), Home: os.Getenv("HOME"), TmpDir: os.TempDir(), CPUs: 2}
	b.Run("all", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := policy.LoadBytes(configs.DefaultName, configs.Default, opts); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("one", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			p, err := policy.Parse(configs.DefaultName, configs.Default, opts)
			if err != nil {
				b.Fatal(err)
			}
			if err := policy.ResolveTools(p, "cat"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
