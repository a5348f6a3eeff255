//go:build cgo && linux

// Package cabi declares the spawn_template UAPI structs in C, from the documented
// layout of the RFC series' include/uapi/linux/spawn_template.h, and exposes their
// sizes and field offsets as Go constants. internal/sys compares its hand-written Go
// declarations against these in an ordinary test (Go rejects cgo in _test.go files).
// It is never imported by non-test code.
package cabi

/*
#include <stddef.h>
#include <linux/types.h>
#include <linux/openat2.h>

struct spawn_template_action {
	__u32 type;
	__u32 flags;
	__s32 fd;
	__s32 newfd;
	__aligned_u64 arg;
};

struct spawn_template_open {
	__aligned_u64 path;
	struct open_how how;
};

struct spawn_template_sigset {
	__aligned_u64 sigset;
	__u64 sigsetsize;
};

struct spawn_template_create_args {
	__u64 flags;
	__s32 execfd;
	__u32 exec_flags;
	__aligned_u64 filename;
	__aligned_u64 actions;
	__u64 actions_len;
	__u64 reserved[4];
};

struct spawn_template_spawn_args {
	__u64 flags;
	__aligned_u64 pidfd;
	__aligned_u64 argv;
	__aligned_u64 envp;
	__aligned_u64 actions;
	__u64 actions_len;
	__u64 reserved[4];
};

enum {
	cabi_sizeof_action = sizeof(struct spawn_template_action),
	cabi_off_action_type = offsetof(struct spawn_template_action, type),
	cabi_off_action_flags = offsetof(struct spawn_template_action, flags),
	cabi_off_action_fd = offsetof(struct spawn_template_action, fd),
	cabi_off_action_newfd = offsetof(struct spawn_template_action, newfd),
	cabi_off_action_arg = offsetof(struct spawn_template_action, arg),

	cabi_sizeof_open_how = sizeof(struct open_how),
	cabi_off_open_how_flags = offsetof(struct open_how, flags),
	cabi_off_open_how_mode = offsetof(struct open_how, mode),
	cabi_off_open_how_resolve = offsetof(struct open_how, resolve),

	cabi_sizeof_open = sizeof(struct spawn_template_open),
	cabi_off_open_path = offsetof(struct spawn_template_open, path),
	cabi_off_open_how = offsetof(struct spawn_template_open, how),

	cabi_sizeof_sigset = sizeof(struct spawn_template_sigset),
	cabi_off_sigset_sigset = offsetof(struct spawn_template_sigset, sigset),
	cabi_off_sigset_sigsetsize = offsetof(struct spawn_template_sigset, sigsetsize),

	cabi_sizeof_create = sizeof(struct spawn_template_create_args),
	cabi_off_create_flags = offsetof(struct spawn_template_create_args, flags),
	cabi_off_create_execfd = offsetof(struct spawn_template_create_args, execfd),
	cabi_off_create_exec_flags = offsetof(struct spawn_template_create_args, exec_flags),
	cabi_off_create_filename = offsetof(struct spawn_template_create_args, filename),
	cabi_off_create_actions = offsetof(struct spawn_template_create_args, actions),
	cabi_off_create_actions_len = offsetof(struct spawn_template_create_args, actions_len),
	cabi_off_create_reserved = offsetof(struct spawn_template_create_args, reserved),

	cabi_sizeof_spawn = sizeof(struct spawn_template_spawn_args),
	cabi_off_spawn_flags = offsetof(struct spawn_template_spawn_args, flags),
	cabi_off_spawn_pidfd = offsetof(struct spawn_template_spawn_args, pidfd),
	cabi_off_spawn_argv = offsetof(struct spawn_template_spawn_args, argv),
	cabi_off_spawn_envp = offsetof(struct spawn_template_spawn_args, envp),
	cabi_off_spawn_actions = offsetof(struct spawn_template_spawn_args, actions),
	cabi_off_spawn_actions_len = offsetof(struct spawn_template_spawn_args, actions_len),
	cabi_off_spawn_reserved = offsetof(struct spawn_template_spawn_args, reserved),
};
*/
import "C"

// Sizes and offsets of the C declarations, in bytes.
const (
	SizeofAction     = C.cabi_sizeof_action
	OffActionType    = C.cabi_off_action_type
	OffActionFlags   = C.cabi_off_action_flags
	OffActionFd      = C.cabi_off_action_fd
	OffActionNewfd   = C.cabi_off_action_newfd
	OffActionArg     = C.cabi_off_action_arg
	SizeofOpenHow    = C.cabi_sizeof_open_how
	OffOpenHowFlags  = C.cabi_off_open_how_flags
	OffOpenHowMode   = C.cabi_off_open_how_mode
	OffOpenHowResolv = C.cabi_off_open_how_resolve

	SizeofOpen  = C.cabi_sizeof_open
	OffOpenPath = C.cabi_off_open_path
	OffOpenHow  = C.cabi_off_open_how

	SizeofSigset        = C.cabi_sizeof_sigset
	OffSigsetSigset     = C.cabi_off_sigset_sigset
	OffSigsetSigsetsize = C.cabi_off_sigset_sigsetsize

	SizeofCreateArgs    = C.cabi_sizeof_create
	OffCreateFlags      = C.cabi_off_create_flags
	OffCreateExecfd     = C.cabi_off_create_execfd
	OffCreateExecFlags  = C.cabi_off_create_exec_flags
	OffCreateFilename   = C.cabi_off_create_filename
	OffCreateActions    = C.cabi_off_create_actions
	OffCreateActionsLen = C.cabi_off_create_actions_len
	OffCreateReserved   = C.cabi_off_create_reserved
	SizeofSpawnArgs     = C.cabi_sizeof_spawn
	OffSpawnFlags       = C.cabi_off_spawn_flags
	OffSpawnPidfd       = C.cabi_off_spawn_pidfd
	OffSpawnArgv        = C.cabi_off_spawn_argv
	OffSpawnEnvp        = C.cabi_off_spawn_envp
	OffSpawnActions     = C.cabi_off_spawn_actions
	OffSpawnActionsLen  = C.cabi_off_spawn_actions_len
	OffSpawnReserved    = C.cabi_off_spawn_reserved
)
