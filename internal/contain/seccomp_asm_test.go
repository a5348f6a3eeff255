package contain

import (
	"reflect"
	"testing"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"

	"github.com/agentexec/agentexec/internal/syscalltab"
)

// libraryAssemble is how the filter was assembled up to issue 18, with
// go-seccomp-bpf's label assembler and arch tables (now a test-only dependency):
// the reference the hand-written assembler must match instruction for instruction.
func libraryAssemble(rules []rule, ai *arch.Info) ([]bpf.Instruction, error) {
	p := seccomp.NewProgram()
	for _, r := range rules {
		next := p.NewLabel()
		p.JmpIfTrue(bpf.JumpNotEqual, r.nr, next)
		for _, set := range r.when {
			miss := p.NewLabel()
			for _, c := range set {
				p.LdLo(c.arg)
				switch c.op {
				case opEq:
					p.JmpIfTrue(bpf.JumpNotEqual, c.val, miss)
				case opNe:
					p.JmpIfTrue(bpf.JumpEqual, c.val, miss)
				case opBitsAny:
					p.JmpIfTrue(bpf.JumpBitsNotSet, c.val, miss)
				case opBitsNone:
					p.JmpIfTrue(bpf.JumpBitsSet, c.val, miss)
				}
			}
			p.Ret(seccomp.Action(r.onMatch))
			p.SetLabel(miss)
		}
		if len(r.when) == 0 {
			p.Ret(seccomp.Action(r.onMatch))
		} else {
			p.Ret(seccomp.Action(r.otherwise))
		}
		p.SetLabel(next)
	}
	p.Ret(seccomp.ActionAllow)
	body, err := p.Assemble()
	if err != nil {
		return nil, err
	}
	head := []bpf.Instruction{
		bpf.LoadAbsolute{Off: 4, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(ai.ID), SkipTrue: 1},
		bpf.RetConstant{Val: retKillProcess},
		bpf.LoadAbsolute{Off: 0, Size: 4},
	}
	if ai == arch.X86_64 {
		head = append(head,
			bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: x32SyscallBit, SkipFalse: 1},
			bpf.RetConstant{Val: retEPERM},
		)
	}
	return append(head, body...), nil
}

// The filter's raw program is the same as the library-assembled one for every
// network mode, with and without protected pids, on both architectures; and the
// return values are the kernel's.
func TestAssembleMatchesLibrary(t *testing.T) {
	if retAllow != uint32(seccomp.ActionAllow) || retKillProcess != uint32(seccomp.ActionKillProcess) ||
		retEPERM != uint32(seccomp.ActionErrno)|1 {
		t.Fatalf("return values %#x %#x %#x differ from the library's", retAllow, retEPERM, retKillProcess)
	}
	specs := []SeccompSpec{
		{SpawnerPID: spawner},
		{SpawnerPID: spawner, Network: NetTCP},
		{SpawnerPID: spawner, Network: NetTCP, Unix: true, ProtectPIDs: []int{1, 77}, ProtectTIDs: []int{2, 3, 4}},
		{SpawnerPID: spawner, Network: NetAll, Unix: true},
	}
	for _, a := range []struct {
		ours *syscalltab.Arch
		lib  *arch.Info
	}{{syscalltab.X86_64, arch.X86_64}, {syscalltab.AArch64, arch.AARCH64}} {
		for _, spec := range specs {
			rules, err := buildRules(spec, a.ours)
			if err != nil {
				t.Fatal(err)
			}
			got, err := assemble(rules, a.ours)
			if err != nil {
				t.Fatal(err)
			}
			want, err := libraryAssemble(rules, a.lib)
			if err != nil {
				t.Fatal(err)
			}
			gotRaw, err1 := bpf.Assemble(got)
			wantRaw, err2 := bpf.Assemble(want)
			if err1 != nil || err2 != nil {
				t.Fatal(err1, err2)
			}
			if !reflect.DeepEqual(gotRaw, wantRaw) {
				t.Errorf("%s %+v: %d instructions, the library's %d; they differ", a.ours.Name, spec, len(gotRaw), len(wantRaw))
			}
			// The rule numbers are the library's for the same names.
			for _, r := range rules {
				if nr, ok := a.lib.SyscallNames[r.name]; !ok || uint32(nr) != r.nr {
					t.Errorf("%s: %s is %d here, %d (%v) in the library", a.ours.Name, r.name, r.nr, nr, ok)
				}
			}
		}
	}
}
