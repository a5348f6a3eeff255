//go:build cgo && linux

package sys

import (
	"testing"
	"unsafe"

	"github.com/agentexec/agentexec/internal/sys/cabi"
)

// TestSpawnTemplateLayoutC compares the Go declarations with the same structs
// declared in C (internal/sys/cabi) from the documented UAPI layout.
func TestSpawnTemplateLayoutC(t *testing.T) {
	var a SpawnTemplateAction
	var h OpenHow
	var o SpawnTemplateOpen
	var s SpawnTemplateSigset
	var c SpawnTemplateCreateArgs
	var p SpawnTemplateSpawnArgs
	for _, r := range []struct {
		name  string
		goVal uintptr
		cVal  uintptr
	}{
		{"sizeof(action)", unsafe.Sizeof(a), cabi.SizeofAction},
		{"action.type", unsafe.Offsetof(a.Type), cabi.OffActionType},
		{"action.flags", unsafe.Offsetof(a.Flags), cabi.OffActionFlags},
		{"action.fd", unsafe.Offsetof(a.Fd), cabi.OffActionFd},
		{"action.newfd", unsafe.Offsetof(a.Newfd), cabi.OffActionNewfd},
		{"action.arg", unsafe.Offsetof(a.Arg), cabi.OffActionArg},
		{"sizeof(open_how)", unsafe.Sizeof(h), cabi.SizeofOpenHow},
		{"open_how.flags", unsafe.Offsetof(h.Flags), cabi.OffOpenHowFlags},
		{"open_how.mode", unsafe.Offsetof(h.Mode), cabi.OffOpenHowMode},
		{"open_how.resolve", unsafe.Offsetof(h.Resolve), cabi.OffOpenHowResolv},
		{"sizeof(open)", unsafe.Sizeof(o), cabi.SizeofOpen},
		{"open.path", unsafe.Offsetof(o.Path), cabi.OffOpenPath},
		{"open.how", unsafe.Offsetof(o.How), cabi.OffOpenHow},
		{"sizeof(sigset)", unsafe.Sizeof(s), cabi.SizeofSigset},
		{"sigset.sigset", unsafe.Offsetof(s.Sigset), cabi.OffSigsetSigset},
		{"sigset.sigsetsize", unsafe.Offsetof(s.Sigsetsize), cabi.OffSigsetSigsetsize},
		{"sizeof(create_args)", unsafe.Sizeof(c), cabi.SizeofCreateArgs},
		{"create.flags", unsafe.Offsetof(c.Flags), cabi.OffCreateFlags},
		{"create.execfd", unsafe.Offsetof(c.Execfd), cabi.OffCreateExecfd},
		{"create.exec_flags", unsafe.Offsetof(c.ExecFlags), cabi.OffCreateExecFlags},
		{"create.filename", unsafe.Offsetof(c.Filename), cabi.OffCreateFilename},
		{"create.actions", unsafe.Offsetof(c.Actions), cabi.OffCreateActions},
		{"create.actions_len", unsafe.Offsetof(c.ActionsLen), cabi.OffCreateActionsLen},
		{"create.reserved", unsafe.Offsetof(c.Reserved), cabi.OffCreateReserved},
		{"sizeof(spawn_args)", unsafe.Sizeof(p), cabi.SizeofSpawnArgs},
		{"spawn.flags", unsafe.Offsetof(p.Flags), cabi.OffSpawnFlags},
		{"spawn.pidfd", unsafe.Offsetof(p.Pidfd), cabi.OffSpawnPidfd},
		{"spawn.argv", unsafe.Offsetof(p.Argv), cabi.OffSpawnArgv},
		{"spawn.envp", unsafe.Offsetof(p.Envp), cabi.OffSpawnEnvp},
		{"spawn.actions", unsafe.Offsetof(p.Actions), cabi.OffSpawnActions},
		{"spawn.actions_len", unsafe.Offsetof(p.ActionsLen), cabi.OffSpawnActionsLen},
		{"spawn.reserved", unsafe.Offsetof(p.Reserved), cabi.OffSpawnReserved},
	} {
		if r.goVal != r.cVal {
			t.Errorf("%s: Go %d, C %d", r.name, r.goVal, r.cVal)
		}
	}
}
