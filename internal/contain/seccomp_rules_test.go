package contain

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/agentexec/agentexec/internal/syscalltab"
)

// seccompData lays out struct seccomp_data for x/net/bpf's VM, which loads words
// big-endian: each 32-bit word is stored big-endian at the offset where the
// little-endian kernel keeps it, so the filter's loads see the kernel's values.
func seccompData(auditArch uint32, nr uint32, args ...uint64) []byte {
	b := make([]byte, 64)
	binary.BigEndian.PutUint32(b[0:], nr)
	binary.BigEndian.PutUint32(b[4:], auditArch)
	for i, a := range args {
		binary.BigEndian.PutUint32(b[16+8*i:], uint32(a))
		binary.BigEndian.PutUint32(b[20+8*i:], uint32(a>>32))
	}
	return b
}

func runFilter(t *testing.T, f *Filter, auditArch uint32, name string, args ...uint64) uint32 {
	t.Helper()
	vm, err := bpf.NewVM(f.Instructions())
	if err != nil {
		t.Fatalf("bpf.NewVM: %v", err)
	}
	nr, ok := arch.X86_64.SyscallNames[name]
	if !ok {
		t.Fatalf("unknown syscall %q", name)
	}
	ret, err := vm.Run(seccompData(auditArch, uint32(nr), args...))
	if err != nil {
		t.Fatalf("vm.Run(%s): %v", name, err)
	}
	return uint32(ret)
}

func requireAMD64(t *testing.T) {
	t.Helper()
	if _, err := archInfo(); err != nil || syscalltab.X86_64 != mustArch(t) {
		t.Skip("rule table test is written for x86_64 syscall numbers")
	}
}

func mustArch(t *testing.T) *syscalltab.Arch {
	ai, err := archInfo()
	if err != nil {
		t.Skip(err)
	}
	return ai
}

const spawner = 4242

func neg(v int) uint64 { return uint64(int64(v)) }

func TestFilterRules(t *testing.T) {
	requireAMD64(t)
	x86 := uint32(arch.X86_64.ID)
	stream := uint64(unix.SOCK_STREAM | unix.SOCK_CLOEXEC | unix.SOCK_NONBLOCK)
	type call struct {
		name string
		args []uint64
		want uint32
	}
	cases := []struct {
		spec  SeccompSpec
		calls []call
	}{
		{SeccompSpec{Network: NetNone, SpawnerPID: spawner, ProtectTIDs: []int{777}, ProtectPIDs: []int{100}}, []call{
			{"kill", []uint64{100, 15}, retEPERM},
			{"kill", []uint64{neg(-100), 15}, retEPERM},
			{"tgkill", []uint64{100, 101, 15}, retEPERM},
			{"tgkill", []uint64{100, 101, uint64(unix.SIGURG)}, retAllow},
			{"tkill", []uint64{777, uint64(unix.SIGURG)}, retAllow},
			{"tkill", []uint64{spawner, 33}, retAllow},
			{"tgkill", []uint64{spawner, 4250, 33}, retAllow},
			{"tgkill", []uint64{spawner, 4250, 34}, retEPERM},
			{"rt_tgsigqueueinfo", []uint64{100, 101, 9, 0}, retEPERM},
			{"pidfd_open", []uint64{100, 0}, retEPERM},
			{"read", nil, retAllow},
			{"socket", []uint64{unix.AF_UNIX, unix.SOCK_STREAM, 0}, retEPERM},
			{"socket", []uint64{unix.AF_INET, unix.SOCK_STREAM, 0}, retEPERM},
			{"socket", []uint64{unix.AF_INET, unix.SOCK_DGRAM, 0}, retEPERM},
			{"socket", []uint64{unix.AF_NETLINK, unix.SOCK_RAW, 0}, retEPERM},
			{"socketpair", []uint64{unix.AF_UNIX, unix.SOCK_STREAM, 0, 0}, retAllow},
			{"socketpair", []uint64{unix.AF_INET, unix.SOCK_STREAM, 0, 0}, retEPERM},
			{"ptrace", []uint64{unix.PTRACE_ATTACH, 1}, retEPERM},
			{"io_uring_setup", nil, retEPERM},
			{"mount", nil, retEPERM},
			{"setns", nil, retEPERM},
			{"pidfd_send_signal", []uint64{3, 0}, retEPERM},
			{"kill", []uint64{spawner, 9}, retEPERM},
			{"kill", []uint64{1<<32 | spawner, 9}, retEPERM}, // high bits ignored by the kernel
			{"kill", []uint64{neg(-spawner), 9}, retEPERM},
			{"kill", []uint64{neg(-1), 15}, retEPERM},
			{"kill", []uint64{0xffffffff, 15}, retEPERM},
			{"kill", []uint64{777, 9}, retEPERM},
			{"kill", []uint64{spawner + 1, 9}, retAllow},
			{"kill", []uint64{0, 15}, retAllow},
			{"tgkill", []uint64{spawner, spawner, 9}, retEPERM},
			{"tgkill", []uint64{spawner, 4250, uint64(unix.SIGURG)}, retAllow},
			{"tgkill", []uint64{spawner + 1, spawner + 1, 9}, retAllow},
			{"tkill", []uint64{777, 9}, retEPERM},
			{"tkill", []uint64{spawner, 9}, retEPERM},
			{"tkill", []uint64{9999, 9}, retAllow},
			{"rt_sigqueueinfo", []uint64{spawner, 9, 0}, retEPERM},
			{"rt_tgsigqueueinfo", []uint64{spawner, spawner, 9, 0}, retEPERM},
			{"pidfd_open", []uint64{spawner, 0}, retEPERM},
			{"pidfd_open", []uint64{777, unix.PIDFD_THREAD}, retEPERM},
			{"pidfd_open", []uint64{5000, 0}, retAllow},
			{"clone", []uint64{unix.CLONE_VM | unix.CLONE_VFORK | uint64(unix.SIGCHLD)}, retAllow},
			{"clone", []uint64{unix.CLONE_NEWUSER | uint64(unix.SIGCHLD)}, retEPERM},
			{"clone", []uint64{unix.CLONE_NEWNET}, retEPERM},
			{"clone3", []uint64{0, 88}, retAllow},
			{"unshare", []uint64{unix.CLONE_NEWUSER}, retEPERM},
			{"unshare", []uint64{unix.CLONE_NEWTIME}, retEPERM},
			{"unshare", []uint64{unix.CLONE_FILES | unix.CLONE_FS}, retAllow},
			{"personality", []uint64{0xffffffff}, retAllow},
			{"personality", []uint64{0}, retAllow},
			{"personality", []uint64{0x0040000}, retEPERM}, // ADDR_NO_RANDOMIZE
			{"fcntl", []uint64{3, unix.F_SETOWN, spawner}, retEPERM},
			{"fcntl", []uint64{3, unix.F_SETOWN, neg(-spawner)}, retEPERM},
			{"fcntl", []uint64{3, unix.F_SETOWN, 777}, retEPERM},
			{"fcntl", []uint64{3, unix.F_SETOWN, 100}, retEPERM},
			{"fcntl", []uint64{3, unix.F_SETOWN, 5000}, retAllow},
			{"fcntl", []uint64{3, unix.F_SETOWN_EX, 0}, retEPERM},
			{"fcntl", []uint64{3, unix.F_SETFD, unix.FD_CLOEXEC}, retAllow},
			{"fcntl", []uint64{3, unix.F_GETFL, 0}, retAllow},
			{"ioctl", []uint64{3, 0x8901, 0}, retEPERM},
			{"ioctl", []uint64{3, unix.SIOCSPGRP, 0}, retEPERM},
			{"ioctl", []uint64{1, unix.TCGETS, 0}, retAllow},
			{"prlimit64", []uint64{spawner, unix.RLIMIT_CPU, 0, 0}, retEPERM},
			{"prlimit64", []uint64{777, unix.RLIMIT_CPU, 0, 0}, retEPERM},
			{"prlimit64", []uint64{0, unix.RLIMIT_NOFILE, 0, 0}, retAllow},
			{"prlimit64", []uint64{5000, unix.RLIMIT_NOFILE, 0, 0}, retAllow},
			{"sched_setattr", []uint64{spawner, 0, 0}, retEPERM},
			{"sched_setaffinity", []uint64{100, 8, 0}, retEPERM},
			{"sched_setscheduler", []uint64{0, 5, 0}, retAllow},
			{"setpriority", []uint64{unix.PRIO_USER, 0, 19}, retEPERM},
			{"setpriority", []uint64{unix.PRIO_PROCESS, spawner, 19}, retEPERM},
			{"setpriority", []uint64{unix.PRIO_PGRP, spawner, 19}, retEPERM},
			{"setpriority", []uint64{unix.PRIO_PROCESS, 0, 19}, retAllow},
			{"setpriority", []uint64{unix.PRIO_PROCESS, 5000, 19}, retAllow},
			{"ioprio_set", []uint64{3, 0, 0}, retEPERM},
			{"ioprio_set", []uint64{1, spawner, 0}, retEPERM},
			{"ioprio_set", []uint64{1, 0, 0}, retAllow},
		}},
		{SeccompSpec{Network: NetNone, Unix: true, SpawnerPID: spawner}, []call{
			{"socket", []uint64{unix.AF_UNIX, unix.SOCK_STREAM | unix.SOCK_CLOEXEC, 0}, retAllow},
			{"socket", []uint64{unix.AF_UNIX, unix.SOCK_DGRAM, 0}, retAllow},
			{"socket", []uint64{unix.AF_INET, unix.SOCK_STREAM, 0}, retEPERM},
		}},
		{SeccompSpec{Network: NetTCP, SpawnerPID: spawner}, []call{
			{"socket", []uint64{unix.AF_INET, unix.SOCK_STREAM, 0}, retAllow},
			{"socket", []uint64{unix.AF_INET6, stream, unix.IPPROTO_TCP}, retAllow},
			{"socket", []uint64{unix.AF_INET, unix.SOCK_STREAM, unix.IPPROTO_MPTCP}, retEPERM},
			{"socket", []uint64{unix.AF_INET, unix.SOCK_DGRAM, 0}, retEPERM},
			{"socket", []uint64{unix.AF_INET, unix.SOCK_SEQPACKET, 0}, retEPERM},
			{"socket", []uint64{unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_TCP}, retEPERM},
			{"socket", []uint64{unix.AF_INET, unix.SOCK_STREAM | 0x100, 0}, retEPERM},
			{"socket", []uint64{unix.AF_PACKET, unix.SOCK_RAW, 0}, retEPERM},
			{"socket", []uint64{unix.AF_UNIX, unix.SOCK_STREAM, 0}, retEPERM},
		}},
		{SeccompSpec{Network: NetAll, SpawnerPID: spawner}, []call{
			{"socket", []uint64{unix.AF_INET, unix.SOCK_DGRAM, 0}, retAllow},
			{"ptrace", nil, retEPERM},
		}},
	}
	for _, c := range cases {
		f, err := BuildSeccomp(c.spec)
		if err != nil {
			t.Fatalf("BuildSeccomp(%+v): %v", c.spec, err)
		}
		for _, cl := range c.calls {
			if got := runFilter(t, f, x86, cl.name, cl.args...); got != cl.want {
				t.Errorf("net=%v unix=%v: %s(%#x) = %s, want %s", c.spec.Network, c.spec.Unix, cl.name, cl.args, retName(got), retName(cl.want))
			}
		}
		// Foreign ABI: killed whatever the call; x32 numbers: EPERM.
		if got := runFilter(t, f, uint32(arch.I386.ID), "read"); got != retKillProcess {
			t.Errorf("i386 arch: got %s, want kill process", retName(got))
		}
		vm, _ := bpf.NewVM(f.Instructions())
		ret, err := vm.Run(seccompData(x86, x32SyscallBit|39))
		if err != nil || uint32(ret) != retEPERM {
			t.Errorf("x32 getpid: got %#x %v, want EPERM", ret, err)
		}
	}
}

func TestBuildSeccompErrors(t *testing.T) {
	if _, err := BuildSeccomp(SeccompSpec{}); err == nil || !strings.Contains(err.Error(), "SpawnerPID") {
		t.Errorf("zero spec: err = %v, want SpawnerPID error", err)
	}
	if _, err := BuildSeccomp(SeccompSpec{SpawnerPID: 1, Network: 9}); err == nil {
		t.Error("bad network mode accepted")
	}
}

func TestFilterRulesText(t *testing.T) {
	f, err := BuildSeccomp(SeccompSpec{Network: NetTCP, Unix: true, SpawnerPID: spawner})
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(f.Rules(), "\n")
	for _, want := range []string{"socket: only AF_UNIX; AF_INET/AF_INET6 SOCK_STREAM", "ptrace", "clone3: allowed", "kill: EPERM when aimed at spawner 4242"} {
		if !strings.Contains(text, want) {
			t.Errorf("Rules() lacks %q:\n%s", want, text)
		}
	}
	t.Logf("rules:\n%s", text)
}

// The rule table resolves and assembles for every supported architecture, whatever
// the build's GOARCH; only syscalls an architecture lacks are left out.
func TestRulesAssembleForEachArch(t *testing.T) {
	spec := SeccompSpec{Network: NetTCP, Unix: true, SpawnerPID: spawner, ProtectPIDs: []int{1}, ProtectTIDs: []int{2}}
	for _, ai := range []*syscalltab.Arch{syscalltab.X86_64, syscalltab.AArch64} {
		rules, err := buildRules(spec, ai)
		if err != nil {
			t.Fatalf("%s: %v", ai.Name, err)
		}
		prog, err := assemble(rules, ai)
		if err != nil {
			t.Fatalf("%s: assemble: %v", ai.Name, err)
		}
		if _, err := bpf.NewVM(prog); err != nil {
			t.Fatalf("%s: program rejected: %v", ai.Name, err)
		}
		var skipped []string
		for _, d := range denied {
			for _, n := range d.names {
				if _, ok := ai.Number(n); !ok {
					skipped = append(skipped, n)
				}
			}
		}
		t.Logf("%s: %d rules, %d instructions; not on this arch: %v", ai.Name, len(rules), len(prog), skipped)
		if len(prog) > 4096 {
			t.Errorf("%s: %d instructions, over the kernel's 4096", ai.Name, len(prog))
		}
	}
}
