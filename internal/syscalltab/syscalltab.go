// Package syscalltab names Linux syscalls by number and numbers them by name for
// the architectures agentexec's seccomp filter is written for (x86_64, aarch64) and
// the compat ABIs its audit collector may see (i386, arm). The tables are sorted
// arrays laid out by the compiler: using the package costs no start-up work, where
// the maps of github.com/elastic/go-seccomp-bpf/arch (the tables' source, through
// gen/main.go) cost every process 0.13 ms and 164 KB at initialisation.
package syscalltab

//go:generate go run ./gen

import (
	"sort"

	"golang.org/x/sys/unix"
)

type entry struct {
	name string
	nr   int
}

// Arch is one architecture's syscall table.
type Arch struct {
	Name    string // the kernel's name: x86_64, aarch64, i386, arm
	AuditID uint32 // its AUDIT_ARCH_* value (seccomp_data.arch, audit records' arch=)
	byNr    []entry
	byName  []entry
}

var (
	X86_64  = &Arch{"x86_64", unix.AUDIT_ARCH_X86_64, x86_64ByNr[:], x86_64ByName[:]}
	AArch64 = &Arch{"aarch64", unix.AUDIT_ARCH_AARCH64, aarch64ByNr[:], aarch64ByName[:]}
	I386    = &Arch{"i386", unix.AUDIT_ARCH_I386, i386ByNr[:], i386ByName[:]}
	ARM     = &Arch{"arm", unix.AUDIT_ARCH_ARM, armByNr[:], armByName[:]}
)

// All is every table, in the order above.
var All = []*Arch{X86_64, AArch64, I386, ARM}

// ByAuditID returns the table of an AUDIT_ARCH_* value, or nil.
func ByAuditID(id uint32) *Arch {
	for _, a := range All {
		if a.AuditID == id {
			return a
		}
	}
	return nil
}

// Number returns the number of the named syscall.
func (a *Arch) Number(name string) (int, bool) {
	i := sort.Search(len(a.byName), func(i int) bool { return a.byName[i].name >= name })
	if i < len(a.byName) && a.byName[i].name == name {
		return a.byName[i].nr, true
	}
	return 0, false
}

// SyscallName returns the name of syscall nr.
func (a *Arch) SyscallName(nr int) (string, bool) {
	i := sort.Search(len(a.byNr), func(i int) bool { return a.byNr[i].nr >= nr })
	if i < len(a.byNr) && a.byNr[i].nr == nr {
		return a.byNr[i].name, true
	}
	return "", false
}

// Len is the number of syscalls in the table.
func (a *Arch) Len() int { return len(a.byNr) }
