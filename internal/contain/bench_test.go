package contain

import (
	"os/exec"
	"sort"
	"testing"

	"github.com/agentexec/agentexec/internal/testutil"
)

// BenchmarkForkExec times syscall.ForkExec + wait4 of /bin/true from a spawner
// helper, without and with the containment layers, in the same run. The helper
// times only the launches, so "ns/op" is the per-launch cost; process start-up of
// the helper is excluded.
func BenchmarkForkExec(b *testing.B) {
	truePath, err := exec.LookPath("true")
	if err != nil {
		b.Skipf("requires true(1): %v", err)
	}
	run := []launch{{Argv: []string{truePath}}}
	cg := testutil.Cgroup2Mount()
	for _, bc := range []struct {
		name string
		cfg  spawnerConfig
		root bool
	}{
		{"plain", spawnerConfig{Runs: run}, false},
		{"nnp+seccomp", spawnerConfig{NNP: true, Seccomp: &SeccompSpec{Network: NetNone}, Runs: run}, false},
		{"caps+nnp+seccomp", spawnerConfig{DropCaps: true, NNP: true, Seccomp: &SeccompSpec{Network: NetNone}, Runs: run}, true},
		{"plain+cgroupfd", spawnerConfig{Runs: run, CgroupDir: cg}, true},
		{"caps+nnp+seccomp+cgroupfd", spawnerConfig{DropCaps: true, NNP: true, Seccomp: &SeccompSpec{Network: NetNone}, Runs: run, CgroupDir: cg}, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			if bc.root {
				testutil.RequireRoot(b)
			}
			if bc.cfg.CgroupDir == "" && cg == "" && bc.name != "plain" && bc.name != "nnp+seccomp" && bc.name != "caps+nnp+seccomp" {
				b.Skip("requires a cgroup v2 mount")
			}
			cfg := bc.cfg
			cfg.Bench = b.N
			rep := runSpawner(b, cfg, "", nil)
			b.ReportMetric(rep.BenchNs, "ns/op")
			b.ReportMetric(rep.BenchCPUNs, "cpu-ns/launch") // spawner + child CPU time per launch
		})
	}
}

// BenchmarkForkExecPaired alternates an unrestricted helper and a fully restricted
// one (caps dropped, no_new_privs, seccomp) in rounds, so that load from elsewhere
// on the machine hits both alike, and reports the median per-launch time of each
// and their ratio. ns/op is the restricted launch.
func BenchmarkForkExecPaired(b *testing.B) {
	testutil.RequireRoot(b)
	truePath, err := exec.LookPath("true")
	if err != nil {
		b.Skipf("requires true(1): %v", err)
	}
	run := []launch{{Argv: []string{truePath}}}
	const rounds = 7
	per := b.N/rounds + 1
	var plain, filtered, plainCPU, filteredCPU []float64
	for range rounds {
		p := runSpawner(b, spawnerConfig{Runs: run, Bench: per}, "", nil)
		f := runSpawner(b, spawnerConfig{DropCaps: true, NNP: true, Seccomp: &SeccompSpec{Network: NetNone}, Runs: run, Bench: per}, "", nil)
		plain = append(plain, p.BenchNs)
		plainCPU = append(plainCPU, p.BenchCPUNs)
		filteredCPU = append(filteredCPU, f.BenchCPUNs)
		filtered = append(filtered, f.BenchNs)
	}
	mp, mf := median(plain), median(filtered)
	b.ReportMetric(mf, "ns/op")
	b.ReportMetric(mp, "plain-ns/launch")    // median per-launch time without containment
	b.ReportMetric(mf, "filtered-ns/launch") // median per-launch time with caps+nnp+seccomp
	b.ReportMetric(mf/mp, "filtered/plain")
	cp, cf := median(plainCPU), median(filteredCPU)
	b.ReportMetric(cp, "plain-cpu-ns/launch")    // CPU time (spawner + child) per launch, unrestricted
	b.ReportMetric(cf, "filtered-cpu-ns/launch") // the same with caps+nnp+seccomp
	b.ReportMetric(cf/cp, "filtered/plain-cpu")
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

// BenchmarkSyscallUnderFilter measures the filter's cost per system call: getppid
// (decided by syscall number alone, so the kernel's seccomp action cache answers
// without running the filter) and kill (its pid argument is inspected, so the BPF
// program runs), without a filter, with a one-instruction allow-all filter (the
// fixed cost of seccomp's syscall-entry path) and with the profile's filter,
// alternating in rounds.
func BenchmarkSyscallUnderFilter(b *testing.B) {
	const rounds = 5
	per := b.N/rounds + 1
	var g0, g1, gt, k0, k1, kt []float64
	for range rounds {
		p := runSpawner(b, spawnerConfig{BenchSyscalls: per}, "", nil)
		tr := runSpawner(b, spawnerConfig{NNP: true, TrivialFilter: true, BenchSyscalls: per}, "", nil)
		f := runSpawner(b, spawnerConfig{NNP: true, Seccomp: &SeccompSpec{Network: NetNone}, BenchSyscalls: per}, "", nil)
		g0, gt, g1 = append(g0, p.GetppidNs), append(gt, tr.GetppidNs), append(g1, f.GetppidNs)
		k0, kt, k1 = append(k0, p.KillNs), append(kt, tr.KillNs), append(k1, f.KillNs)
	}
	b.ReportMetric(median(g1), "ns/op")
	b.ReportMetric(median(g0), "getppid-plain-ns")
	b.ReportMetric(median(gt), "getppid-trivial-ns") // with a one-instruction allow-all filter
	b.ReportMetric(median(g1), "getppid-filtered-ns")
	b.ReportMetric(median(k0), "kill-plain-ns")
	b.ReportMetric(median(kt), "kill-trivial-ns")
	b.ReportMetric(median(k1), "kill-filtered-ns")
}
