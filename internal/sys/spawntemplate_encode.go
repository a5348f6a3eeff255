package sys

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrSpawnTemplateArg is matched (errors.Is) by every encoding error: a field the
// kernel would reject with EINVAL or E2BIG, caught before the call.
var ErrSpawnTemplateArg = errors.New("invalid spawn_template argument")

// SpawnTemplateArgError names the argument field an encoding refused.
type SpawnTemplateArgError struct {
	Field  string // e.g. "argv[2]", "actions_len", "filename"
	Reason string
	Errno  unix.Errno // what the kernel would have said: EINVAL or E2BIG
}

func (e *SpawnTemplateArgError) Error() string {
	return fmt.Sprintf("spawn_template: field %s: %s (%s)", e.Field, e.Reason, e.Errno)
}

// Is matches ErrSpawnTemplateArg and the errno the kernel would have returned.
func (e *SpawnTemplateArgError) Is(target error) bool {
	if target == ErrSpawnTemplateArg {
		return true
	}
	var errno unix.Errno
	if errors.As(target, &errno) {
		return errno == e.Errno
	}
	return false
}

// addr returns the user address of Go heap memory for a u64 pointer field. The memory
// must stay referenced by the owning call object until the syscall returns.
func addr[T any](p *T) uint64 { return uint64(uintptr(unsafe.Pointer(p))) }

// SpawnTemplateCreateCall owns the argument block of one spawn_template_create call
// and the memory it points to. Create it with NewSpawnTemplateCreateCall and keep it
// reachable until the syscall has returned.
type SpawnTemplateCreateCall struct {
	Args     SpawnTemplateCreateArgs
	filename []byte
}

// NewSpawnTemplateCreateCall encodes a create by absolute path (execfd -1). flags is
// a set of SPAWN_TEMPLATE_CREATE_* bits.
func NewSpawnTemplateCreateCall(path string, flags uint64) (*SpawnTemplateCreateCall, error) {
	if !filepath.IsAbs(path) {
		return nil, &SpawnTemplateArgError{Field: "filename", Reason: fmt.Sprintf("%q is not absolute", path), Errno: unix.EINVAL}
	}
	if strings.IndexByte(path, 0) >= 0 {
		return nil, &SpawnTemplateArgError{Field: "filename", Reason: "contains a NUL byte", Errno: unix.EINVAL}
	}
	c := &SpawnTemplateCreateCall{filename: append([]byte(path), 0)}
	c.Args.Flags = flags
	c.Args.Execfd = -1
	c.Args.Filename = addr(&c.filename[0])
	return c, nil
}

// Filename returns the path the call encodes (without the NUL).
func (c *SpawnTemplateCreateCall) Filename() string {
	if len(c.filename) == 0 {
		return ""
	}
	return string(c.filename[:len(c.filename)-1])
}

// SpawnTemplateSpawnCall owns the argument block of one spawn_template_spawn call and
// everything it points to: the argv/envp strings and pointer arrays, the action array,
// OPEN paths and open_how blocks, sigsets and the pidfd slot. All of it lives in Go
// heap memory referenced from this object, so keeping the object reachable until the
// syscall returns keeps every address valid (the Go heap does not move objects).
//
// Build it with NewSpawnTemplateSpawnCall, add actions in the order the child must run
// them, then Seal it.
type SpawnTemplateSpawnCall struct {
	Args  SpawnTemplateSpawnArgs
	PidFD int32 // the kernel stores the child's pidfd here

	strs    []byte   // argv then envp strings, each NUL-terminated
	argv    []uint64 // addresses into strs, 0-terminated
	envp    []uint64 // addresses into strs, 0-terminated
	actions []SpawnTemplateAction
	opens   []*spawnTemplateOpenBox
	sigsets []*spawnTemplateSigsetBox
	sealed  bool
}

type spawnTemplateOpenBox struct {
	arg  SpawnTemplateOpen
	path []byte
}

type spawnTemplateSigsetBox struct {
	arg SpawnTemplateSigset
	set uint64
}

// NewSpawnTemplateSpawnCall encodes argv and envp. A string holding a NUL byte is an
// error naming it (argv[i] or envp[i]).
func NewSpawnTemplateSpawnCall(argv, envp []string) (*SpawnTemplateSpawnCall, error) {
	n := 0
	for i, s := range argv {
		if strings.IndexByte(s, 0) >= 0 {
			return nil, &SpawnTemplateArgError{Field: fmt.Sprintf("argv[%d]", i), Reason: "contains a NUL byte", Errno: unix.EINVAL}
		}
		n += len(s) + 1
	}
	for i, s := range envp {
		if strings.IndexByte(s, 0) >= 0 {
			return nil, &SpawnTemplateArgError{Field: fmt.Sprintf("envp[%d]", i), Reason: "contains a NUL byte", Errno: unix.EINVAL}
		}
		n += len(s) + 1
	}
	c := &SpawnTemplateSpawnCall{
		strs: make([]byte, 0, n+1), // +1: never empty, so &strs[0] exists
		argv: make([]uint64, len(argv)+1),
		envp: make([]uint64, len(envp)+1),
	}
	// strs never grows past its capacity, so the addresses taken below stay valid.
	put := func(s string) uint64 {
		off := len(c.strs)
		c.strs = append(c.strs, s...)
		c.strs = append(c.strs, 0)
		return addr(&c.strs[off])
	}
	for i, s := range argv {
		c.argv[i] = put(s)
	}
	for i, s := range envp {
		c.envp[i] = put(s)
	}
	c.Args.Argv = addr(&c.argv[0])
	c.Args.Envp = addr(&c.envp[0])
	c.Args.Pidfd = addr(&c.PidFD)
	c.PidFD = -1
	return c, nil
}

func (c *SpawnTemplateSpawnCall) add(a SpawnTemplateAction) {
	if c.sealed {
		panic("sys: bug: action added to a sealed SpawnTemplateSpawnCall")
	}
	c.actions = append(c.actions, a)
}

// Close adds CLOSE(fd).
func (c *SpawnTemplateSpawnCall) Close(fd int) {
	c.add(SpawnTemplateAction{Type: SPAWN_TEMPLATE_ACTION_CLOSE, Fd: int32(fd)})
}

// Dup2 adds DUP2(fd → newfd); flags is 0 or O_CLOEXEC. With fd == newfd the kernel
// only checks that fd is open (it does not clear FD_CLOEXEC).
func (c *SpawnTemplateSpawnCall) Dup2(fd, newfd int, flags uint32) {
	c.add(SpawnTemplateAction{Type: SPAWN_TEMPLATE_ACTION_DUP2, Flags: flags, Fd: int32(fd), Newfd: int32(newfd)})
}

// Fchdir adds FCHDIR(fd).
func (c *SpawnTemplateSpawnCall) Fchdir(fd int) {
	c.add(SpawnTemplateAction{Type: SPAWN_TEMPLATE_ACTION_FCHDIR, Fd: int32(fd)})
}

// Open adds OPEN: open path relative to dirfd (or AT_FDCWD) with how and install the
// result at newfd (close-on-exec only if how.Flags has O_CLOEXEC).
func (c *SpawnTemplateSpawnCall) Open(dirfd, newfd int, path string, how OpenHow) error {
	field := fmt.Sprintf("actions[%d].arg.path", len(c.actions))
	if strings.IndexByte(path, 0) >= 0 {
		return &SpawnTemplateArgError{Field: field, Reason: "contains a NUL byte", Errno: unix.EINVAL}
	}
	if path == "" {
		return &SpawnTemplateArgError{Field: field, Reason: "empty path", Errno: unix.EINVAL}
	}
	b := &spawnTemplateOpenBox{path: append([]byte(path), 0)}
	b.arg.Path = addr(&b.path[0])
	b.arg.How = how
	c.opens = append(c.opens, b)
	c.add(SpawnTemplateAction{Type: SPAWN_TEMPLATE_ACTION_OPEN, Fd: int32(dirfd), Newfd: int32(newfd), Arg: addr(&b.arg)})
	return nil
}

// SpawnTemplateCloseRangeMax is the "up to the last fd" bound for CloseRange. The
// kernel rejects a negative newfd (the -1 of close_range's ~0U does not pass its
// validation), so the largest s32 stands in for it.
const SpawnTemplateCloseRangeMax = 1<<31 - 1

// CloseRange adds CLOSE_RANGE(first..last, flags); flags is a set of
// CLOSE_RANGE_UNSHARE and CLOSE_RANGE_CLOEXEC.
func (c *SpawnTemplateSpawnCall) CloseRange(first, last int, flags uint32) {
	c.add(SpawnTemplateAction{Type: SPAWN_TEMPLATE_ACTION_CLOSE_RANGE, Flags: flags, Fd: int32(first), Newfd: int32(last)})
}

func (c *SpawnTemplateSpawnCall) sigAction(typ uint32, set uint64) {
	b := &spawnTemplateSigsetBox{set: set}
	b.arg.Sigset = addr(&b.set)
	b.arg.Sigsetsize = SPAWN_TEMPLATE_SIGSETSIZE
	c.sigsets = append(c.sigsets, b)
	c.add(SpawnTemplateAction{Type: typ, Arg: addr(&b.arg)})
}

// Sigmask adds SIGMASK: the child's blocked set becomes set (bit sig-1; the kernel
// drops SIGKILL and SIGSTOP).
func (c *SpawnTemplateSpawnCall) Sigmask(set uint64) { c.sigAction(SPAWN_TEMPLATE_ACTION_SIGMASK, set) }

// Sigdefault adds SIGDEFAULT: the signals in set are reset to SIG_DFL.
func (c *SpawnTemplateSpawnCall) Sigdefault(set uint64) {
	c.sigAction(SPAWN_TEMPLATE_ACTION_SIGDEFAULT, set)
}

// Actions returns the encoded action array (shared, not a copy).
func (c *SpawnTemplateSpawnCall) Actions() []SpawnTemplateAction { return c.actions }

// Seal fills the action pointer, length and flags and returns the argument block. More
// than SPAWN_TEMPLATE_MAX_ACTIONS actions is an error naming actions_len (E2BIG).
func (c *SpawnTemplateSpawnCall) Seal(flags uint64) (*SpawnTemplateSpawnArgs, error) {
	if len(c.actions) > SPAWN_TEMPLATE_MAX_ACTIONS {
		return nil, &SpawnTemplateArgError{
			Field:  "actions_len",
			Reason: fmt.Sprintf("%d actions, the kernel accepts at most %d", len(c.actions), SPAWN_TEMPLATE_MAX_ACTIONS),
			Errno:  unix.E2BIG,
		}
	}
	if flags&^SPAWN_TEMPLATE_SPAWN_INHERIT_FDS != 0 {
		return nil, &SpawnTemplateArgError{Field: "flags", Reason: fmt.Sprintf("unknown bits %#x", flags), Errno: unix.EINVAL}
	}
	c.sealed = true
	c.Args.Flags = flags
	c.Args.ActionsLen = uint64(len(c.actions))
	if len(c.actions) > 0 {
		c.Args.Actions = addr(&c.actions[0])
	}
	return &c.Args, nil
}

// SpawnTemplateSyscalls calls the real syscalls under the given numbers. Use numbers
// from a probe that found the syscalls by name.
type SpawnTemplateSyscalls struct {
	CreateNr, SpawnNr uintptr
}

// Create calls spawn_template_create with the call's arguments.
func (s SpawnTemplateSyscalls) Create(c *SpawnTemplateCreateCall) (int, error) {
	fd, err := SpawnTemplateCreate(s.CreateNr, &c.Args)
	runtime.KeepAlive(c)
	return fd, err
}

// Spawn calls spawn_template_spawn on fd with the sealed call's arguments and returns
// the child's pid and pidfd.
func (s SpawnTemplateSyscalls) Spawn(fd int, c *SpawnTemplateSpawnCall) (pid, pidfd int, err error) {
	if !c.sealed {
		return -1, -1, fmt.Errorf("sys: bug: spawn_template_spawn with an unsealed call")
	}
	pid, err = SpawnTemplateSpawn(s.SpawnNr, fd, &c.Args)
	runtime.KeepAlive(c)
	if err != nil {
		return -1, -1, err
	}
	return pid, int(c.PidFD), nil
}

// FDLink returns the /proc/self/fd/N link target of fd, for example
// "anon_inode:spawn_template".
func (s SpawnTemplateSyscalls) FDLink(fd int) (string, error) {
	return FDLinkName(fd)
}

// Close closes a template fd.
func (s SpawnTemplateSyscalls) Close(fd int) error { return unix.Close(fd) }

// Gettid returns the calling thread's id.
func (s SpawnTemplateSyscalls) Gettid() int { return unix.Gettid() }

// FDLinkName returns the /proc/self/fd/N link target of fd.
func FDLinkName(fd int) (string, error) {
	p := fmt.Sprintf("/proc/self/fd/%d", fd)
	buf := make([]byte, 256)
	n, err := unix.Readlink(p, buf)
	if err != nil {
		return "", &os.PathError{Op: "readlink", Path: p, Err: err}
	}
	return string(buf[:n]), nil
}
