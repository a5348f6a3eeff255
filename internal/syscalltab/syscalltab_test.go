package syscalltab

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/elastic/go-seccomp-bpf/arch"
)

// The generated tables hold exactly the source's syscalls, both ways.
func TestTablesMatchSource(t *testing.T) {
	for _, c := range []struct {
		a   *Arch
		src *arch.Info
	}{{X86_64, arch.X86_64}, {AArch64, arch.AARCH64}, {I386, arch.I386}, {ARM, arch.ARM}} {
		if c.a.AuditID != uint32(c.src.ID) || c.a.Name != c.src.Name {
			t.Errorf("%s: audit id %#x name %q, source %#x %q", c.a.Name, c.a.AuditID, c.a.Name, uint32(c.src.ID), c.src.Name)
		}
		if c.a.Len() != len(c.src.SyscallNumbers) || c.a.Len() < 300 {
			t.Errorf("%s: %d syscalls, source %d", c.a.Name, c.a.Len(), len(c.src.SyscallNumbers))
		}
		for nr, name := range c.src.SyscallNumbers {
			if got, ok := c.a.SyscallName(nr); !ok || got != name {
				t.Errorf("%s: SyscallName(%d) = %q, %v; source %q", c.a.Name, nr, got, ok, name)
			}
		}
		for name, nr := range c.src.SyscallNames {
			if got, ok := c.a.Number(name); !ok || got != nr {
				t.Errorf("%s: Number(%q) = %d, %v; source %d", c.a.Name, name, got, ok, nr)
			}
		}
		if ByAuditID(c.a.AuditID) != c.a {
			t.Errorf("ByAuditID(%#x) is not %s", c.a.AuditID, c.a.Name)
		}
	}
	for _, miss := range []string{"", "no_such_call", "zzzz"} {
		if _, ok := X86_64.Number(miss); ok {
			t.Errorf("Number(%q) found", miss)
		}
	}
	if _, ok := X86_64.SyscallName(100000); ok {
		t.Error("SyscallName(100000) found")
	}
	if ByAuditID(0) != nil {
		t.Error("ByAuditID(0) found a table")
	}
}

// zsyscalls.go is what the generator writes today (go generate ./internal/syscalltab).
func TestGeneratedFileIsCurrent(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the generator (go run): not in -short runs")
	}
	dir := t.TempDir()
	gen := filepath.Join(dir, "gen")
	if out, err := exec.Command("go", "build", "-o", gen, "./gen").CombinedOutput(); err != nil {
		t.Fatalf("build the generator: %v\n%s", err, out)
	}
	cmd := exec.Command(gen)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("generator: %v\n%s", err, out)
	}
	want, err := os.ReadFile(filepath.Join(dir, "zsyscalls.go"))
	if err != nil {
		t.Fatal(err)
	}
	have, err := os.ReadFile("zsyscalls.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(have, want) {
		t.Error("zsyscalls.go differs from the generator's output: run go generate ./internal/syscalltab")
	}
}
