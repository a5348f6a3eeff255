package sys

import (
	"structs"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Declarations for the spawn_template RFC ("exec: add spawn templates for repeated
// executable startup", May 2026, not in any released kernel). They are written from
// the documented UAPI layout (include/uapi/linux/spawn_template.h of the series);
// spawntemplate_test.go pins every size and offset, and the cgo package
// internal/sys/cabi declares the same structs in C for a second check.

// Proposed syscall numbers (x86_64 and asm-generic). They are not upstream
// assignments: callers must confirm the syscalls by name before using them and keep
// the numbers overridable.
const (
	SPAWN_TEMPLATE_CREATE_NR_DEFAULT = 472
	SPAWN_TEMPLATE_SPAWN_NR_DEFAULT  = 473
)

// Flags and action types. Matches Linux [include/uapi/linux/spawn_template.h].
const (
	SPAWN_TEMPLATE_CREATE_CLOEXEC    = 1 << 0 // create flags: O_CLOEXEC on the template fd
	SPAWN_TEMPLATE_SPAWN_INHERIT_FDS = 1 << 0 // spawn flags: keep fds above 2

	SPAWN_TEMPLATE_ACTION_CLOSE       = 0
	SPAWN_TEMPLATE_ACTION_DUP2        = 1
	SPAWN_TEMPLATE_ACTION_FCHDIR      = 2
	SPAWN_TEMPLATE_ACTION_OPEN        = 3
	SPAWN_TEMPLATE_ACTION_CLOSE_RANGE = 4
	SPAWN_TEMPLATE_ACTION_SIGMASK     = 5
	SPAWN_TEMPLATE_ACTION_SIGDEFAULT  = 6

	SPAWN_TEMPLATE_CREATE_ARGS_SIZE_VER0 = 72
	SPAWN_TEMPLATE_SPAWN_ARGS_SIZE_VER0  = 80

	// SPAWN_TEMPLATE_MAX_ACTIONS is the kernel's limit on actions_len; more gives E2BIG.
	SPAWN_TEMPLATE_MAX_ACTIONS = 256

	// SPAWN_TEMPLATE_SIGSETSIZE is the kernel's sizeof(sigset_t) on 64-bit targets.
	SPAWN_TEMPLATE_SIGSETSIZE = 8
)

// SpawnTemplateFDLinkName is the /proc/self/fd/N link name of a template fd.
const SpawnTemplateFDLinkName = "anon_inode:spawn_template"

// SpawnTemplateAction matches Linux [include/uapi/linux/spawn_template.h]:struct
// spawn_template_action (24 bytes). Fields an action type does not use must be 0.
type SpawnTemplateAction struct {
	_     structs.HostLayout
	Type  uint32
	Flags uint32
	Fd    int32
	Newfd int32
	Arg   uint64 // user address: *SpawnTemplateOpen or *SpawnTemplateSigset
}

// OpenHow matches Linux [include/uapi/linux/openat2.h]:struct open_how (24 bytes).
type OpenHow struct {
	_       structs.HostLayout
	Flags   uint64
	Mode    uint64
	Resolve uint64
}

// SpawnTemplateOpen matches Linux [include/uapi/linux/spawn_template.h]:struct
// spawn_template_open (32 bytes), the argument of an OPEN action.
type SpawnTemplateOpen struct {
	_    structs.HostLayout
	Path uint64 // user address of a NUL-terminated path
	How  OpenHow
}

// SpawnTemplateSigset matches Linux [include/uapi/linux/spawn_template.h]:struct
// spawn_template_sigset (16 bytes), the argument of SIGMASK and SIGDEFAULT.
type SpawnTemplateSigset struct {
	_          structs.HostLayout
	Sigset     uint64 // user address of a kernel sigset (one uint64, bit sig-1)
	Sigsetsize uint64 // must be SPAWN_TEMPLATE_SIGSETSIZE
}

// SpawnTemplateCreateArgs matches Linux [include/uapi/linux/spawn_template.h]:struct
// spawn_template_create_args (72 bytes).
type SpawnTemplateCreateArgs struct {
	_          structs.HostLayout
	Flags      uint64
	Execfd     int32 // -1 when Filename is given
	ExecFlags  uint32
	Filename   uint64 // user address of an absolute NUL-terminated path
	Actions    uint64 // reserved, must be 0
	ActionsLen uint64 // reserved, must be 0
	Reserved   [4]uint64
}

// SpawnTemplateSpawnArgs matches Linux [include/uapi/linux/spawn_template.h]:struct
// spawn_template_spawn_args (80 bytes).
type SpawnTemplateSpawnArgs struct {
	_          structs.HostLayout
	Flags      uint64
	Pidfd      uint64 // user address of an int32 receiving the child's pidfd (required)
	Argv       uint64 // user address of a NULL-terminated array of string addresses
	Envp       uint64 // likewise
	Actions    uint64 // user address of an array of SpawnTemplateAction
	ActionsLen uint64 // at most SPAWN_TEMPLATE_MAX_ACTIONS
	Reserved   [4]uint64
}

// SpawnTemplateCreate calls spawn_template_create(args, sizeof(*args)) as syscall nr
// and returns the template fd or the raw errno. Memory that args points to must stay
// alive until the call returns (keep the owning SpawnTemplateCreateCall alive).
//
// nr must come from a probe that found the syscall by name: the number is a
// proposal and may belong to another syscall on some kernel.
func SpawnTemplateCreate(nr uintptr, args *SpawnTemplateCreateArgs) (int, error) {
	r, _, errno := unix.Syscall(nr, uintptr(unsafe.Pointer(args)), unsafe.Sizeof(*args), 0)
	if errno != 0 {
		return -1, errno
	}
	return int(r), nil
}

// SpawnTemplateSpawn calls spawn_template_spawn(fd, args, sizeof(*args)) as syscall
// nr and returns the child's pid or the raw errno. On success the kernel has stored
// the child's pidfd at args.Pidfd. The same caveats as for SpawnTemplateCreate apply.
func SpawnTemplateSpawn(nr uintptr, fd int, args *SpawnTemplateSpawnArgs) (int, error) {
	r, _, errno := unix.Syscall(nr, uintptr(fd), uintptr(unsafe.Pointer(args)), unsafe.Sizeof(*args))
	if errno != 0 {
		return -1, errno
	}
	return int(r), nil
}
