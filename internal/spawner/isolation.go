package spawner

import (
	"errors"
	"fmt"
	"syscall"

	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/sys/unix"

	"github.com/agentexec/agentexec/internal/sys"
	"github.com/agentexec/agentexec/policy"
)

// launchIsolation keeps launches in flight apart from each other (docs/security.md,
// "Launches in flight"). Two layers, each enough on its own for what it covers:
//
//   - A Landlock domain per launch: every userspace child enforces one more ruleset on
//     itself between clone and exec (sys.ForkExec). Landlock refuses ptrace, and so
//     /proc/PID/{mem,environ,maps,fd/*} opens, across domains, and with ABI 6 it also
//     scopes signals and abstract unix sockets: a launch reaches only its own tree.
//     Measured on Linux 6.18 with tools holding no capabilities (as spawners make
//     them): signal, environ, maps, mem and fd opens between sibling domains all fail.
//     With ABI 1-5 the layer handles only LANDLOCK_ACCESS_FS_MAKE_BLOCK (mknod of
//     block devices, which needs CAP_MKNOD anyway), which still makes it a domain for
//     the ptrace rule; signals between siblings then stay possible (reported).
//   - An unprivileged identity for the tools when the runtime is root (Cred), so
//     that uid 0's DAC power over root-owned files and sockets is gone and the
//     spawner, the agent and other runtimes' tools are another user.
type launchIsolation struct {
	ruleset int // the per-launch layer (-1: none)
	scoped  uint64
	// flags are landlock_restrict_self's: with kernel denials, the per-launch layer
	// logs what it denies to the exec'd tool and mutes sandboxes the tool makes.
	flags  uintptr
	logged bool
	cred   *sys.Cred
	// missing says why there is no per-launch layer ("" when there is one).
	missing string
}

// newLaunchIsolation prepares the per-launch layer from the profile's Landlock plan.
// It runs in the spawner after its own restriction (the ruleset fd is close-on-exec
// and only ever enforced by children).
func newLaunchIsolation(h *hello) (launchIsolation, error) {
	li := launchIsolation{ruleset: -1}
	if c := h.Containment.ToolCred; c != nil {
		li.cred = &sys.Cred{UID: c.UID, GID: c.GID, Groups: c.Groups}
	}
	switch {
	case !sys.ForkExecSupported:
		li.missing = "this architecture has no vfork launch path"
		return li, nil
	case h.Landlock == nil || !h.Landlock.Enabled:
		li.missing = "Landlock is off"
		return li, nil
	case h.NoLaunchLayer:
		li.missing = "turned off (test control)"
		return li, nil
	}
	if h.KernelDenials && h.Landlock.ABI >= policy.LandlockABIAuditFlags {
		return li, li.loggedRuleset(h.Landlock)
	}
	attr := &ll.RulesetAttr{}
	if h.Landlock.ABI >= policy.LandlockABIScope {
		attr.Scoped = ll.ScopeSignal | ll.ScopeAbstractUnixSocket
	} else {
		attr.HandledAccessFS = ll.AccessFSMakeBlock
	}
	fd, err := ll.LandlockCreateRuleset(attr, 0)
	if err != nil {
		return li, fmt.Errorf("per-launch Landlock ruleset: %w", err)
	}
	unix.CloseOnExec(fd)
	li.ruleset, li.scoped = fd, attr.Scoped
	return li, nil
}

// loggedRuleset makes the per-launch layer for kernel denials (docs/denials.md):
// the profile's own filesystem and TCP rules again, with the scopes, enforced with
// LANDLOCK_RESTRICT_SELF_LOG_NEW_EXEC_ON and LOG_SUBDOMAINS_OFF. Landlock logs a
// denial under the youngest layer that refused it, so with the same rules as the
// spawner's layer this launch's own domain is named in every record of it and its
// tree, and nothing a tool may do changes: the rules are the ones already in force.
func (li *launchIsolation) loggedRuleset(pl *LandlockPlan) error {
	attr := &ll.RulesetAttr{HandledAccessFS: pl.HandledFS, HandledAccessNet: pl.HandledNet,
		Scoped: ll.ScopeSignal | ll.ScopeAbstractUnixSocket}
	fd, err := ll.LandlockCreateRuleset(attr, 0)
	if err != nil {
		return fmt.Errorf("per-launch Landlock ruleset (logged): %w", err)
	}
	unix.CloseOnExec(fd)
	rights, _, err := pl.pathRights()
	if err != nil {
		unix.Close(fd)
		return err
	}
	for _, pr := range rights {
		pfd, err := unix.Open(pr.path, unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			continue // gone since the spawner's own restriction: no access either way
		}
		err = ll.LandlockAddPathBeneathRule(fd, &ll.PathBeneathAttr{AllowedAccess: pr.access & pl.HandledFS, ParentFd: pfd}, 0)
		unix.Close(pfd)
		if err != nil {
			unix.Close(fd)
			return fmt.Errorf("per-launch Landlock rule for %s: %w", pr.path, err)
		}
	}
	for _, ports := range []struct {
		access uint64
		list   []uint16
	}{{ll.AccessNetConnectTCP, pl.ConnectTCP}, {ll.AccessNetBindTCP, pl.BindTCP}} {
		for _, port := range ports.list {
			if pl.HandledNet&ports.access == 0 {
				continue
			}
			if err := ll.LandlockAddNetPortRule(fd, &ll.NetPortAttr{AllowedAccess: ports.access, Port: uint64(port)}, 0); err != nil {
				unix.Close(fd)
				return fmt.Errorf("per-launch Landlock rule for port %d: %w", port, err)
			}
		}
	}
	li.ruleset, li.scoped, li.logged = fd, attr.Scoped, true
	li.flags = sys.LandlockLogNewExecOn | unix.LANDLOCK_RESTRICT_SELF_LOG_SUBDOMAINS_OFF
	return nil
}

// layers names what is in force, for ready.Layers.
func (li *launchIsolation) layers() []string {
	var l []string
	if li.logged {
		l = append(l, "landlock-per-launch-logged")
	}
	if li.ruleset >= 0 {
		if li.scoped != 0 {
			l = append(l, "landlock-per-launch")
		} else {
			l = append(l, "landlock-per-launch-ptrace-only")
		}
	}
	if li.cred != nil {
		l = append(l, fmt.Sprintf("tool-uid-%d", li.cred.UID))
	}
	return l
}

// forkExec starts one userspace child: its own session, SIGKILL when the launcher
// thread dies, its cgroup from birth, its own Landlock layer and identity.
func (li *launchIsolation) forkExec(path string, argv []string, dir string, env []string, files []uintptr, cgroupFD int) (pid, pidfd int, err error) {
	if !sys.ForkExecSupported {
		return li.forkExecGo(path, argv, dir, env, files, cgroupFD)
	}
	fds := make([]int, len(files))
	for i, f := range files {
		fds[i] = int(f)
	}
	return sys.ForkExec(path, argv, &sys.SpawnAttr{
		Dir: dir, Env: env, Files: fds,
		Setsid:          true,
		Pdeathsig:       syscall.SIGKILL,
		CgroupFD:        cgroupFD,
		LandlockRuleset: li.ruleset,
		LandlockFlags:   li.flags,
		Cred:            li.cred,
	})
}

// forkExecGo is the launch path where sys.ForkExec does not exist: Go's own, without
// a per-launch Landlock layer (check reports it).
func (li *launchIsolation) forkExecGo(path string, argv []string, dir string, env []string, files []uintptr, cgroupFD int) (pid, pidfd int, err error) {
	pidfd = -1
	sp := &syscall.SysProcAttr{
		Setsid:      true,
		Pdeathsig:   syscall.SIGKILL,
		PidFD:       &pidfd,
		UseCgroupFD: cgroupFD >= 0,
		CgroupFD:    cgroupFD,
	}
	if c := li.cred; c != nil {
		sp.Credential = &syscall.Credential{Uid: c.UID, Gid: c.GID, Groups: c.Groups}
	}
	pid, err = syscall.ForkExec(path, argv, &syscall.ProcAttr{Dir: dir, Env: env, Files: files, Sys: sp})
	return pid, pidfd, err
}

// describeForkError says whether a failed launch counts as the tool's own failure
// (exec: reported as exit 126/127 by errno) and words it. sys.ForkExec names the
// step; Go's ForkExec (the fallback) cannot tell chdir from execve, so its errors
// stay the tool's, as before.
func describeForkError(path, dir string, err error) (exec bool, msg string) {
	fe, ok := errors.AsType[*sys.ForkError](err)
	if !ok {
		return true, fmt.Sprintf("%s: %v", path, err)
	}
	switch fe.Step {
	case sys.StepExec:
		return true, fmt.Sprintf("%s: %v", path, fe.Errno)
	case sys.StepChdir:
		return false, fmt.Sprintf("working directory %s: %v", dir, fe.Errno)
	default:
		return false, fmt.Sprintf("launch %s: %v", path, fe)
	}
}
