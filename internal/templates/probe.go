package templates

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/agentexec/agentexec/internal/sys"
)

// SyscallNumbersEnv overrides the spawn_template syscall numbers: "CREATE,SPAWN",
// for example "472,473". Numbers passed to ProbeKernel take precedence.
const SyscallNumbersEnv = "AGENTEXEC_SPAWN_TEMPLATE_SYSCALLS"

// kallsymsPath lists kernel symbols; names are readable by anyone.
const kallsymsPath = "/proc/kallsyms"

// Kernel symbol suffixes of the two syscalls (x86_64 lists __x64_sys_…, arm64
// __arm64_sys_…, other architectures sys_…).
const (
	symCreate = "sys_spawn_template_create"
	symSpawn  = "sys_spawn_template_spawn"
)

// SyscallNumbers are the numbers the kernel backend calls.
type SyscallNumbers struct{ Create, Spawn int }

// Probe is the result of looking for the spawn_template syscalls.
type Probe struct {
	// Available reports that the syscalls were found by name and confirmed by a
	// bad-fd call (EBADF).
	Available bool
	// Reason says what the probe found, as one line for `agentexec check`.
	Reason string
	// Numbers are the syscall numbers probed (and to be used when Available).
	Numbers SyscallNumbers
	// Source says where the numbers came from: "default", "env" (SyscallNumbersEnv)
	// or "override" (ProbeKernel's arguments).
	Source string
	// Conclusive is false when the answer may change on a later probe (EPERM from a
	// seccomp filter, an unreadable /proc/kallsyms); such results are not cached.
	Conclusive bool
}

// String formats the probe for logs: "available (…)" or "not available: …".
func (p Probe) String() string {
	if p.Available {
		return fmt.Sprintf("available (syscalls %d,%d from %s): %s", p.Numbers.Create, p.Numbers.Spawn, p.Source, p.Reason)
	}
	return "not available: " + p.Reason
}

// Syscalls returns the real syscall implementation for an available probe.
func (p Probe) Syscalls() (KernelSys, error) {
	if !p.Available {
		return nil, &UnavailableError{Reason: p.Reason}
	}
	return sys.SpawnTemplateSyscalls{CreateNr: uintptr(p.Numbers.Create), SpawnNr: uintptr(p.Numbers.Spawn)}, nil
}

// UnavailableError reports that the kernel backend cannot be used. It matches
// sys.ErrNotSupported (agentexec.ErrNotSupported) and errors.ErrUnsupported.
type UnavailableError struct{ Reason string }

func (e *UnavailableError) Error() string {
	return "kernel spawn templates not available: " + e.Reason
}

// Is matches sys.ErrNotSupported and errors.ErrUnsupported.
func (e *UnavailableError) Is(target error) bool {
	return target == sys.ErrNotSupported || target == errors.ErrUnsupported
}

// UseKernel applies the policy switch kernel_templates ("auto", "off", "require"; ""
// means auto) to a probe: whether to use the kernel backend, or, for "require" on a
// kernel without it, an *UnavailableError.
func UseKernel(mode string, p Probe) (bool, error) {
	switch mode {
	case "off":
		return false, nil
	case "", "auto":
		return p.Available, nil
	case "require":
		if !p.Available {
			return false, &UnavailableError{Reason: p.Reason + " (kernel_templates: require)"}
		}
		return true, nil
	default:
		return false, fmt.Errorf("kernel_templates: unknown mode %q (want auto, off or require)", mode)
	}
}

var probeCache sync.Map // SyscallNumbers → Probe (conclusive results only)

// ProbeKernel looks for the spawn_template syscalls. create and spawn override the
// numbers (0 means: SyscallNumbersEnv if set, else the RFC's 472 and 473).
//
// It never calls an unknown number blind: first /proc/kallsyms must list both
// syscalls by name; only then a spawn_template_spawn call with fd -1 confirms the
// number (EBADF: present; ENOSYS: absent; EPERM: a seccomp filter, inconclusive).
// When /proc/kallsyms cannot be read at all, numbers given explicitly (override or
// environment) are probed with the bad-fd call; the default numbers are not.
// Conclusive results are cached per number pair; the final confirmation of each
// template fd (its anon_inode:spawn_template link) is made by NewKernel.
func ProbeKernel(create, spawn int) Probe {
	nums, source, err := probeNumbers(create, spawn, os.Getenv(SyscallNumbersEnv))
	if err != nil {
		return Probe{Reason: err.Error(), Source: "env", Conclusive: false}
	}
	if p, ok := probeCache.Load(nums); ok {
		return p.(Probe)
	}
	p := probeWith(nums, source, openKallsyms, badFDSpawn)
	if p.Conclusive {
		probeCache.Store(nums, p)
	}
	return p
}

func probeNumbers(create, spawn int, env string) (SyscallNumbers, string, error) {
	switch {
	case create != 0 || spawn != 0:
		if create <= 0 || spawn <= 0 {
			return SyscallNumbers{}, "", fmt.Errorf("spawn_template syscall override %d,%d: both numbers must be positive", create, spawn)
		}
		return SyscallNumbers{create, spawn}, "override", nil
	case env != "":
		c, s, ok := strings.Cut(env, ",")
		cn, err1 := strconv.Atoi(strings.TrimSpace(c))
		sn, err2 := strconv.Atoi(strings.TrimSpace(s))
		if !ok || err1 != nil || err2 != nil || cn <= 0 || sn <= 0 {
			return SyscallNumbers{}, "", fmt.Errorf("%s=%q: want two positive numbers CREATE,SPAWN such as 472,473", SyscallNumbersEnv, env)
		}
		return SyscallNumbers{cn, sn}, "env", nil
	default:
		return SyscallNumbers{sys.SPAWN_TEMPLATE_CREATE_NR_DEFAULT, sys.SPAWN_TEMPLATE_SPAWN_NR_DEFAULT}, "default", nil
	}
}

func openKallsyms() (io.ReadCloser, error) { return os.Open(kallsymsPath) }

// badFDSpawn calls spawn_template_spawn(-1, zeroed args, 80): a kernel with the
// syscall fails the fd lookup with EBADF before reading the arguments.
func badFDSpawn(nr int) error {
	var args sys.SpawnTemplateSpawnArgs
	_, err := sys.SpawnTemplateSpawn(uintptr(nr), -1, &args)
	if err == nil {
		return errors.New("succeeded")
	}
	return err
}

// kallsymsHas scans a kallsyms listing for both syscall symbols.
func kallsymsHas(r io.Reader) (create, spawn bool, lines int, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	marker := []byte("spawn_template_")
	for sc.Scan() {
		lines++
		line := sc.Bytes()
		if !bytes.Contains(line, marker) { // fast path: ~all of the >100k lines
			continue
		}
		// "ffffffff81234567 T __x64_sys_spawn_template_create" (+ "\t[module]")
		f := strings.Fields(string(line))
		if len(f) < 3 {
			continue
		}
		name := f[2]
		if name == symCreate || strings.HasSuffix(name, "_"+symCreate) {
			create = true
		}
		if name == symSpawn || strings.HasSuffix(name, "_"+symSpawn) {
			spawn = true
		}
		if create && spawn {
			return
		}
	}
	return create, spawn, lines, sc.Err()
}

func probeWith(nums SyscallNumbers, source string, kallsyms func() (io.ReadCloser, error), call func(nr int) error) Probe {
	p := Probe{Numbers: nums, Source: source}
	explicit := source != "default"
	byName := ""
	f, err := kallsyms()
	if err == nil {
		create, spawn, lines, rerr := kallsymsHas(f)
		f.Close()
		switch {
		case rerr != nil:
			err = rerr
		case lines == 0:
			err = errors.New("empty listing")
		case !create || !spawn:
			missing := symCreate
			if create {
				missing = symSpawn
			}
			if runtime.GOARCH == "amd64" {
				missing = "__x64_" + missing
			}
			p.Reason = fmt.Sprintf("the kernel lacks the spawn_template syscalls: %s has no %s (the RFC series is not applied)", kallsymsPath, missing)
			p.Conclusive = true
			return p
		default:
			byName = kallsymsPath + " lists " + symCreate + " and " + symSpawn
		}
	}
	if err != nil {
		if !explicit {
			p.Reason = fmt.Sprintf("cannot confirm the spawn_template syscalls by name (%s: %v); set %s=CREATE,SPAWN to probe the numbers anyway", kallsymsPath, err, SyscallNumbersEnv)
			p.Conclusive = !errors.Is(err, os.ErrPermission)
			return p
		}
		byName = fmt.Sprintf("%s unreadable (%v), numbers given explicitly", kallsymsPath, err)
	}

	cerr := call(nums.Spawn)
	switch {
	case errors.Is(cerr, unix.EBADF):
		p.Available = true
		p.Conclusive = true
		p.Reason = fmt.Sprintf("%s; spawn_template_spawn(%d) with fd -1 gave EBADF", byName, nums.Spawn)
	case errors.Is(cerr, unix.ENOSYS):
		p.Conclusive = true
		p.Reason = fmt.Sprintf("%s, but syscall %d gives ENOSYS: the numbers differ on this kernel; set %s", byName, nums.Spawn, SyscallNumbersEnv)
	case errors.Is(cerr, unix.EPERM), errors.Is(cerr, unix.EACCES):
		p.Reason = fmt.Sprintf("%s, but syscall %d gave %v (a seccomp filter?): inconclusive", byName, nums.Spawn, cerr)
	default:
		p.Reason = fmt.Sprintf("%s, but spawn_template_spawn(%d) with fd -1 gave %v instead of EBADF: the number may belong to another syscall", byName, nums.Spawn, cerr)
	}
	return p
}
