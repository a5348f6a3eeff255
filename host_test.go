package agentexec

import (
	"os"
	"testing"

	"github.com/agentexec/agentexec/internal/templates"
	"github.com/agentexec/agentexec/internal/testutil"
)

// A conclusive "not available" is remembered for the boot; availability never is.
func TestProbeCache(t *testing.T) {
	testutil.RequireRoot(t)
	file, ok := probeCacheFile(1, 2)
	if !ok {
		t.Skip("no /proc/sys/kernel/random/boot_id")
	}
	defer os.Remove(file)
	os.Remove(file)
	if _, ok := readProbeCache(1, 2); ok {
		t.Fatal("cache hit before any write")
	}
	writeProbeCache(1, 2, templates.Probe{Available: true, Reason: "yes", Conclusive: true})
	if _, ok := readProbeCache(1, 2); ok {
		t.Fatal("a positive probe was cached")
	}
	writeProbeCache(1, 2, templates.Probe{Reason: "kallsyms has no such names", Conclusive: true})
	p, ok := readProbeCache(1, 2)
	if !ok || p.Available || p.Source != "cache" || p.Reason != "kallsyms has no such names (remembered for this boot)" {
		t.Fatalf("cached probe %+v ok %v", p, ok)
	}
	if _, ok := readProbeCache(1, 3); ok {
		t.Fatal("cache hit for other syscall numbers")
	}
}
