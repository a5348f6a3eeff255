package contain

import (
	"errors"
	"fmt"
	"runtime"
	"strings"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/agentexec/agentexec/internal/sys"
	"github.com/agentexec/agentexec/internal/syscalltab"
)

// NetMode is what socket(2) may create under a profile's filter.
type NetMode int

const (
	// NetNone refuses socket(2) for every family; AF_UNIX is allowed only when
	// SeccompSpec.Unix is set. The zero value.
	NetNone NetMode = iota
	// NetTCP allows AF_INET and AF_INET6 sockets of type SOCK_STREAM (with
	// SOCK_NONBLOCK/SOCK_CLOEXEC) and protocol 0 or IPPROTO_TCP only: no UDP, raw,
	// packet, netlink or MPTCP. Which ports may be used is Landlock's job.
	NetTCP
	// NetAll leaves socket(2) unfiltered (a policy with unrestricted network).
	NetAll
)

func (m NetMode) String() string {
	switch m {
	case NetNone:
		return "none"
	case NetTCP:
		return "tcp"
	case NetAll:
		return "all"
	}
	return fmt.Sprintf("NetMode(%d)", int(m))
}

// SeccompSpec describes one profile's filter.
type SeccompSpec struct {
	Network NetMode
	// Unix allows socket(AF_UNIX, ...). socketpair(AF_UNIX) is always allowed: it
	// connects nothing outside the process tree.
	Unix bool
	// SpawnerPID is the pid of the spawner that installs the filter (required).
	// Signals aimed at it are refused: kill(pid), kill(-pid), kill(-1),
	// tgkill(pid, ...) other than SIGURG, tkill(pid), rt_sigqueueinfo(pid),
	// rt_tgsigqueueinfo(pid, ...), and pidfd_open(pid). pidfd_send_signal is refused
	// entirely (a pidfd or /proc/PID fd cannot be matched to a pid).
	// kill(-pid) covers the spawner's process group when it was started with Setsid
	// (pgid = pid), as it should be.
	SpawnerPID int
	// ProtectTIDs lists further thread ids of the spawner that must not be signalled
	// (for example the long-lived launcher threads). kill(tid) of any thread of a
	// process signals the whole process.
	ProtectTIDs []int
	// ProtectPIDs lists other processes that get the same protection as the
	// spawner, typically the agent's own process: a backstop for kernels whose
	// Landlock cannot scope signals (before ABI 6).
	ProtectPIDs []int
}

// Filter is an assembled seccomp filter for one profile.
type Filter struct {
	rules []rule
	prog  []bpf.Instruction
	raw   []unix.SockFilter
}

// Seccomp return values (include/uapi/linux/seccomp.h).
const (
	retAllow       = uint32(unix.SECCOMP_RET_ALLOW)
	retEPERM       = uint32(unix.SECCOMP_RET_ERRNO) | uint32(unix.EPERM)
	retKillProcess = uint32(unix.SECCOMP_RET_KILL_PROCESS)
)

// sigPerThread is signal 33 (SIGRTMIN+1 as the kernel numbers it): Go's
// sigPerThreadSyscall, libpsx's psx_sig and glibc's SIGSETXID.
const sigPerThread = 33

// FIOSETOWN (include/uapi/asm-generic/sockios.h) and the IOPRIO_WHO_* values
// (include/uapi/linux/ioprio.h), which x/sys/unix lacks.
const (
	fioSetOwn        = 0x8901
	ioprioWhoProcess = 1
	ioprioWhoPgrp    = 2
	ioprioWhoUser    = 3
)

// x32SyscallBit marks x32-ABI syscall numbers on x86_64 (__X32_SYSCALL_BIT).
const x32SyscallBit = 0x40000000

// cmpOp compares the low 32 bits of a syscall argument. Every argument the filter
// inspects is an int or unsigned int in the kernel (or a flags word whose bits of
// interest are all in the low half), and the kernel truncates the register to that
// width: comparing all 64 bits would let a caller slip past a deny rule by setting
// high bits the kernel ignores.
type cmpOp int

const (
	opEq       cmpOp = iota // arg == v
	opNe                    // arg != v
	opBitsAny               // arg & v != 0
	opBitsNone              // arg & v == 0
)

type argCond struct {
	arg uint32
	op  cmpOp
	val uint32
}

// rule says what happens to one syscall: when any of the condition sets matches
// (all conditions in a set hold), return onMatch; else return otherwise. A rule
// without condition sets always returns onMatch.
type rule struct {
	name      string
	nr        uint32
	when      [][]argCond
	onMatch   uint32
	otherwise uint32
	why       string
}

// denied lists syscalls no tool needs, refused with EPERM, with the reason shown by
// Rules.
var denied = []struct {
	why   string
	names []string
}{
	{"tracing and other processes' memory", []string{"ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "process_madvise"}},
	{"signals through pidfds, which cannot be matched to the spawner", []string{"pidfd_send_signal"}},
	{"kernel replacement and reboot", []string{"kexec_load", "kexec_file_load", "reboot"}},
	{"kernel attack surface", []string{"bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register"}},
	{"kernel keyrings", []string{"keyctl", "add_key", "request_key"}},
	{"mounts", []string{"mount", "umount2", "pivot_root", "move_mount", "open_tree", "fsopen", "fsmount", "fsconfig", "fspick", "mount_setattr"}},
	{"joining namespaces", []string{"setns"}},
	{"kernel modules", []string{"init_module", "finit_module", "delete_module"}},
	{"host administration", []string{"swapon", "swapoff", "acct", "settimeofday", "clock_settime", "adjtimex", "clock_adjtime", "iopl", "ioperm", "quotactl", "quotactl_fd", "nfsservctl", "vhangup", "syslog", "lookup_dcookie", "uselib"}},
	{"file handles, which bypass path checks", []string{"open_by_handle_at", "name_to_handle_at"}},
}

// Namespace creation flags (include/uapi/linux/sched.h).
const (
	cloneNewFlagsNoTime = unix.CLONE_NEWNS | unix.CLONE_NEWCGROUP | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC |
		unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET
	// CLONE_NEWTIME (0x80) overlaps clone(2)'s exit-signal byte, so it is only
	// tested for unshare(2).
	cloneNewFlags = cloneNewFlagsNoTime | unix.CLONE_NEWTIME
)

// sockTypeFlags are the flags socket(2) accepts or'ed into its type argument.
const sockTypeFlags = unix.SOCK_NONBLOCK | unix.SOCK_CLOEXEC

// BuildSeccomp assembles the filter for s. It fails when s is inconsistent or the
// architecture is not supported (amd64 and arm64 are).
func BuildSeccomp(s SeccompSpec) (*Filter, error) {
	if s.SpawnerPID <= 0 {
		return nil, fmt.Errorf("seccomp spec: SpawnerPID %d: must be the spawner's pid", s.SpawnerPID)
	}
	if s.Network < NetNone || s.Network > NetAll {
		return nil, fmt.Errorf("seccomp spec: Network %v: unknown mode", s.Network)
	}
	ai, err := archInfo()
	if err != nil {
		return nil, err
	}
	rules, err := buildRules(s, ai)
	if err != nil {
		return nil, err
	}
	prog, err := assemble(rules, ai)
	if err != nil {
		return nil, fmt.Errorf("assemble seccomp filter: %w", err)
	}
	rawInsts, err := bpf.Assemble(prog)
	if err != nil {
		return nil, fmt.Errorf("assemble seccomp filter: %w", err)
	}
	raw := make([]unix.SockFilter, len(rawInsts))
	for i, r := range rawInsts {
		raw[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	return &Filter{rules: rules, prog: prog, raw: raw}, nil
}

// ErrUnsupportedArch reports an architecture the filter is not written for.
var ErrUnsupportedArch = fmt.Errorf("seccomp filter: architecture %s: %w", runtime.GOARCH, errors.ErrUnsupported)

func archInfo() (*syscalltab.Arch, error) {
	switch runtime.GOARCH {
	case "amd64":
		return syscalltab.X86_64, nil
	case "arm64":
		return syscalltab.AArch64, nil
	}
	return nil, ErrUnsupportedArch
}

func buildRules(s SeccompSpec, ai *syscalltab.Arch) ([]rule, error) {
	var rules []rule
	var problems []error
	add := func(r rule, name string) {
		nr, ok := ai.Number(name)
		if !ok {
			// Not every syscall exists on every architecture (iopl on arm64).
			if ai == syscalltab.X86_64 {
				problems = append(problems, fmt.Errorf("syscall %q unknown on %s", name, ai.Name))
			}
			return
		}
		r.name, r.nr = name, uint32(nr)
		if r.otherwise == 0 {
			r.otherwise = retAllow
		}
		rules = append(rules, r)
	}
	// Namespaces: no new ones through clone(2)/unshare(2). clone3(2) takes its flags
	// in memory, out of a filter's reach; it stays allowed (Go's own spawn path needs
	// it for CLONE_INTO_CGROUP) and the gap is documented in docs/security.md.
	add(rule{when: [][]argCond{{{0, opBitsAny, cloneNewFlagsNoTime}}}, onMatch: retEPERM,
		why: "EPERM with namespace flags (CLONE_NEW*)"}, "clone")
	add(rule{when: [][]argCond{{{0, opBitsAny, cloneNewFlags}}}, onMatch: retEPERM,
		why: "EPERM with namespace flags (CLONE_NEW*); CLONE_FILES/FS/SYSVSEM allowed"}, "unshare")
	// personality: only the query (0xffffffff) and PER_LINUX.
	add(rule{when: [][]argCond{{{0, opEq, 0xffffffff}}, {{0, opEq, 0}}}, onMatch: retAllow, otherwise: retEPERM,
		why: "only PER_LINUX and the 0xffffffff query allowed"}, "personality")

	// Sockets.
	switch s.Network {
	case NetNone, NetTCP:
		var allow [][]argCond
		var desc []string
		if s.Unix {
			allow = append(allow, []argCond{{0, opEq, unix.AF_UNIX}})
			desc = append(desc, "AF_UNIX")
		}
		if s.Network == NetTCP {
			for _, fam := range []uint32{unix.AF_INET, unix.AF_INET6} {
				for _, proto := range []uint32{0, unix.IPPROTO_TCP} {
					allow = append(allow, []argCond{
						{0, opEq, fam},
						{1, opBitsAny, unix.SOCK_STREAM},
						{1, opBitsNone, ^uint32(unix.SOCK_STREAM | sockTypeFlags)},
						{2, opEq, proto},
					})
				}
			}
			desc = append(desc, "AF_INET/AF_INET6 SOCK_STREAM with protocol 0 or IPPROTO_TCP (no UDP, raw, MPTCP)")
		}
		why := "no socket family allowed"
		if len(desc) > 0 {
			why = "only " + strings.Join(desc, "; ")
		}
		if len(allow) == 0 {
			add(rule{onMatch: retEPERM, why: why}, "socket")
		} else {
			add(rule{when: allow, onMatch: retAllow, otherwise: retEPERM, why: why}, "socket")
		}
		add(rule{when: [][]argCond{{{0, opEq, unix.AF_UNIX}}}, onMatch: retAllow, otherwise: retEPERM,
			why: "only AF_UNIX pairs"}, "socketpair")
	}

	// Signals aimed at the spawner (and any other protected process).
	procs := []uint32{uint32(int32(s.SpawnerPID))}
	who := fmt.Sprintf("spawner %d", s.SpawnerPID)
	for _, p := range s.ProtectPIDs {
		if p > 0 && p != s.SpawnerPID {
			procs = append(procs, uint32(int32(p)))
			who += fmt.Sprintf(", process %d", p)
		}
	}
	tasks := append([]uint32{}, procs...)
	for _, t := range s.ProtectTIDs {
		if t > 0 && t != s.SpawnerPID {
			tasks = append(tasks, uint32(int32(t)))
			who += fmt.Sprintf(", thread %d", t)
		}
	}
	eachOf := func(arg uint32, vals []uint32, extra ...argCond) [][]argCond {
		var w [][]argCond
		for _, v := range vals {
			w = append(w, append([]argCond{{arg, opEq, v}}, extra...))
		}
		return w
	}
	killTargets := append([]uint32{}, tasks...)
	for _, p := range procs {
		killTargets = append(killTargets, uint32(-int32(p))) // its process group
	}
	killTargets = append(killTargets, 0xffffffff) // -1: every process the caller may signal
	// Thread-directed signals the spawner sends itself must pass: SIGURG is Go's
	// asynchronous preemption, and signal 33 (SIGRTMIN+1) is how Go's
	// AllThreadsSyscall, libpsx (go-landlock's restrict_self, DropCapabilities) and
	// glibc's setxid broadcast reach every thread. Neither does anything when
	// another process sends it (the handlers check for pending work or si_pid).
	internal := func(arg uint32) []argCond {
		return []argCond{{arg, opNe, uint32(unix.SIGURG)}, {arg, opNe, sigPerThread}}
	}
	const spared = " (SIGURG and signal 33 allowed: Go preemption and all-thread syscalls)"
	add(rule{when: eachOf(0, killTargets), onMatch: retEPERM,
		why: "EPERM when aimed at " + who + ", their process groups, or -1 (everyone)"}, "kill")
	add(rule{when: eachOf(0, tasks, internal(1)...), onMatch: retEPERM,
		why: "EPERM when aimed at " + who + spared}, "tkill")
	add(rule{when: eachOf(0, procs, internal(2)...), onMatch: retEPERM,
		why: "EPERM when aimed at " + who + spared}, "tgkill")
	add(rule{when: eachOf(0, tasks), onMatch: retEPERM, why: "EPERM when aimed at " + who}, "rt_sigqueueinfo")
	add(rule{when: eachOf(0, procs), onMatch: retEPERM, why: "EPERM when aimed at " + who}, "rt_tgsigqueueinfo")
	add(rule{when: eachOf(0, tasks), onMatch: retEPERM, why: "EPERM for " + who}, "pidfd_open")

	// Other ways a same-uid process reaches another one. F_SETOWN/FIOSETOWN make
	// I/O readiness signal the owner (any signal, with F_SETSIG); prlimit64 can set
	// RLIMIT_CPU (SIGKILL when exceeded) or RLIMIT_NOFILE; the scheduling calls
	// can starve it.
	owners := append([]uint32{}, tasks...)
	for _, p := range procs {
		owners = append(owners, uint32(-int32(p)))
	}
	add(rule{when: append(eachOf(2, owners, argCond{1, opEq, unix.F_SETOWN}), []argCond{{1, opEq, unix.F_SETOWN_EX}}),
		onMatch: retEPERM, why: "EPERM for F_SETOWN to " + who + " or their groups, and for F_SETOWN_EX (owner in memory)"}, "fcntl")
	add(rule{when: [][]argCond{{{1, opEq, fioSetOwn}}, {{1, opEq, unix.SIOCSPGRP}}}, onMatch: retEPERM,
		why: "EPERM for FIOSETOWN and SIOCSPGRP (owner in memory)"}, "ioctl")
	add(rule{when: eachOf(0, tasks), onMatch: retEPERM, why: "EPERM for " + who + " (pid 0, the caller, allowed)"}, "prlimit64")
	for _, n := range []string{"sched_setparam", "sched_setscheduler", "sched_setattr", "sched_setaffinity"} {
		add(rule{when: eachOf(0, tasks), onMatch: retEPERM, why: "EPERM for " + who}, n)
	}
	prio := [][]argCond{{{0, opEq, unix.PRIO_USER}}}
	prio = append(prio, eachOf(1, tasks, argCond{0, opEq, unix.PRIO_PROCESS})...)
	prio = append(prio, eachOf(1, procs, argCond{0, opEq, unix.PRIO_PGRP})...)
	add(rule{when: prio, onMatch: retEPERM, why: "EPERM for PRIO_USER, and PRIO_PROCESS/PRIO_PGRP of " + who}, "setpriority")
	ioprio := [][]argCond{{{0, opEq, ioprioWhoUser}}}
	ioprio = append(ioprio, eachOf(1, tasks, argCond{0, opEq, ioprioWhoProcess})...)
	ioprio = append(ioprio, eachOf(1, procs, argCond{0, opEq, ioprioWhoPgrp})...)
	add(rule{when: ioprio, onMatch: retEPERM, why: "EPERM for IOPRIO_WHO_USER, and process/group of " + who}, "ioprio_set")

	// The fixed deny-list last: those calls are decided by number alone, so the
	// kernel's action cache answers them without running the program, while the
	// argument-inspecting blocks above run on every call and are cheaper first.
	for _, d := range denied {
		for _, n := range d.names {
			add(rule{onMatch: retEPERM, why: d.why}, n)
		}
	}

	if len(problems) > 0 {
		return nil, fmt.Errorf("seccomp rules: %w", errors.Join(problems...))
	}
	return rules, nil
}

// assemble lays the rules out as classic BPF: an architecture check, then one
// block per syscall number, then allow. Every block ends in a return, so the
// accumulator holds the syscall number whenever control reaches the next block.
// All jumps go forward within one block; a block longer than a jump can skip (255
// instructions) is an error.
func assemble(rules []rule, ai *syscalltab.Arch) ([]bpf.Instruction, error) {
	// struct seccomp_data: int nr at 0, __u32 arch at 4 (include/uapi/linux/seccomp.h).
	prog := []bpf.Instruction{
		bpf.LoadAbsolute{Off: 4, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: ai.AuditID, SkipTrue: 1},
		// A foreign ABI (i386 through int 0x80 on x86_64) would bypass every rule:
		// kill the process rather than answer EPERM to every call including exit.
		bpf.RetConstant{Val: retKillProcess},
		bpf.LoadAbsolute{Off: 0, Size: 4},
	}
	if ai == syscalltab.X86_64 {
		prog = append(prog,
			bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: x32SyscallBit, SkipFalse: 1},
			bpf.RetConstant{Val: retEPERM},
		)
	}
	for _, r := range rules {
		body := ruleBody(r)
		if len(body) > 255 {
			return nil, fmt.Errorf("%s: %d instructions, more than a jump can skip", r.name, len(body))
		}
		prog = append(prog, bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: r.nr, SkipTrue: uint8(len(body))})
		prog = append(prog, body...)
	}
	return append(prog, bpf.RetConstant{Val: retAllow}), nil
}

// ruleBody is a rule's block after its syscall-number test: each condition set
// loads and tests its arguments, jumping past the set's return (to the next set)
// at the first condition that fails, and returns onMatch when all hold; then
// otherwise (or onMatch for a rule without conditions).
func ruleBody(r rule) []bpf.Instruction {
	var body []bpf.Instruction
	for _, set := range r.when {
		for i, c := range set {
			// The low 32 bits of argument c.arg: seccomp_data.args at 16, 8 bytes
			// each, little-endian on both architectures the filter is written for.
			body = append(body, bpf.LoadAbsolute{Off: 16 + 8*c.arg, Size: 4})
			// A failed condition skips the rest of the set: two instructions per
			// condition left, and the set's return.
			skip := uint8(2*(len(set)-1-i) + 1)
			var cond bpf.JumpTest
			switch c.op {
			case opEq:
				cond = bpf.JumpNotEqual
			case opNe:
				cond = bpf.JumpEqual
			case opBitsAny:
				cond = bpf.JumpBitsNotSet
			case opBitsNone:
				cond = bpf.JumpBitsSet
			}
			body = append(body, bpf.JumpIf{Cond: cond, Val: c.val, SkipTrue: skip})
		}
		body = append(body, bpf.RetConstant{Val: r.onMatch})
	}
	if len(r.when) == 0 {
		return append(body, bpf.RetConstant{Val: r.onMatch})
	}
	return append(body, bpf.RetConstant{Val: r.otherwise})
}

// Rules returns the filter's rules, one line each, for `agentexec check`.
func (f *Filter) Rules() []string {
	out := []string{
		fmt.Sprintf("arch: native only; other ABIs (i386 int 0x80) kill the process; x32 syscalls EPERM; %d BPF instructions, all threads (TSYNC)", len(f.raw)),
	}
	byWhy := map[string][]string{}
	var order []string
	for _, r := range f.rules {
		if len(r.when) == 0 {
			if _, ok := byWhy[r.why]; !ok {
				order = append(order, r.why)
			}
			byWhy[r.why] = append(byWhy[r.why], r.name)
			continue
		}
		line := r.name + ": " + r.why
		if r.otherwise != retAllow {
			line += "; else " + retName(r.otherwise)
		}
		out = append(out, line)
	}
	for _, why := range order {
		out = append(out, strings.Join(byWhy[why], ", ")+": EPERM ("+why+")")
	}
	out = append(out, "clone3: allowed, flags not inspectable (CLONE_NEWUSER via clone3 is not blocked by seccomp)",
		"everything else: allowed")
	return out
}

func retName(r uint32) string {
	switch r {
	case retAllow:
		return "allowed"
	case retEPERM:
		return "EPERM"
	case retKillProcess:
		return "kill process"
	}
	return fmt.Sprintf("%#x", r)
}

// Instructions returns the assembled program (for tests and debugging).
func (f *Filter) Instructions() []bpf.Instruction { return f.prog }

// ErrNoNewPrivs reports Install on a thread without no_new_privs.
var ErrNoNewPrivs = errors.New("no_new_privs is not set (call SetNoNewPrivs first)")

// Install loads the filter into every thread of the process
// (SECCOMP_FILTER_FLAG_TSYNC). no_new_privs must be set already (SetNoNewPrivs);
// threads created later inherit the filter, as do all children. It cannot be undone.
func (f *Filter) Install() error { return f.install(0) }

// InstallLogged is Install with SECCOMP_FILTER_FLAG_LOG: the filter's refusals
// are logged to the audit stream (where the host's actions_logged has errno).
func (f *Filter) InstallLogged() error { return f.install(sys.SeccompFilterFlagLog) }

func (f *Filter) install(extra uintptr) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	nnp, err := sys.NoNewPrivs()
	if err != nil {
		return fmt.Errorf("install seccomp filter: prctl PR_GET_NO_NEW_PRIVS: %w", err)
	}
	if !nnp {
		return fmt.Errorf("install seccomp filter: %w", ErrNoNewPrivs)
	}
	// SPEC_ALLOW: on kernels whose speculation mitigations default to "seccomp"
	// (before 5.16 on x86), a filter would otherwise switch on SSBD and STIBP/IBPB
	// for every tool, a cost on each context switch. Those mitigations protect the
	// filtered process from in-process speculation attacks, which is not the
	// threat here; they do not protect the agent from a tool.
	if err := sys.SeccompSetModeFilter(sys.SeccompFilterFlagTSync|sys.SeccompFilterFlagSpecAllow|extra, f.raw); err != nil {
		return fmt.Errorf("install seccomp filter: seccomp(SECCOMP_SET_MODE_FILTER, TSYNC|SPEC_ALLOW): %w", err)
	}
	return nil
}
