package agentexec

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/agentexec/agentexec/internal/contain"
	"github.com/agentexec/agentexec/policy"
)

// Tools of a root runtime run as an unprivileged identity of their own (issue 14,
// docs/security.md "Tool identity"): uid 0 without capabilities still passes every
// DAC check on root-owned files and sockets (docker.sock, systemd's private socket,
// a root tmux server), so a tool that keeps uid 0 can drive root daemons. Each
// runtime takes one uid (and the gid of the same number) from a reserved range, so
// that the tools of two runtimes on one host are different users as well.
const (
	// ToolIDBase is the first uid/gid of the range tools of root runtimes run as;
	// ToolIDCount ids follow it. 0x7e000000 lies above systemd-nspawn's container
	// range (up to 0x6fffffff) and below systemd's foreign range (0x7ffe0000).
	ToolIDBase  = 0x7e000000
	ToolIDCount = 4096
)

// toolIDLockDir holds one lock file per tool id in use; a runtime holds an flock on
// its own for its lifetime (the kernel drops it when the process dies, so a crashed
// runtime never leaks an id).
const toolIDLockDir = probeCacheDir + "/tool-ids"

// toolIdentity is the identity a runtime's tools run as, when it is not the
// runtime's own.
type toolIdentity struct {
	uid, gid uint32
	lock     *os.File // holds the flock on the id
}

// needsToolIdentity reports whether prof's tools switch to the runtime's tool
// identity: the runtime is root and the profile names no user (a `user:`, even
// `user: root`, is taken as written).
func needsToolIdentity(prof *policy.Profile) bool {
	return os.Geteuid() == 0 && prof.User == nil
}

// acquireToolIdentity takes the first free id of the range.
func acquireToolIdentity() (*toolIdentity, error) {
	if err := os.MkdirAll(toolIDLockDir, 0o700); err != nil {
		return nil, fmt.Errorf("tool identity: %w", err)
	}
	for i := range ToolIDCount {
		id := uint32(ToolIDBase + i)
		f, err := os.OpenFile(filepath.Join(toolIDLockDir, strconv.FormatUint(uint64(id), 10)), os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			return nil, fmt.Errorf("tool identity: %w", err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				continue
			}
			return nil, fmt.Errorf("tool identity: flock %s: %w", f.Name(), err)
		}
		return &toolIdentity{uid: id, gid: id, lock: f}, nil
	}
	return nil, fmt.Errorf("tool identity: all %d ids from %d are in use by other runtimes", ToolIDCount, ToolIDBase)
}

func (ti *toolIdentity) release() {
	if ti != nil && ti.lock != nil {
		ti.lock.Close()
		ti.lock = nil
	}
}

// cred is the identity sent to a spawner (no supplementary groups).
func (ti *toolIdentity) cred() *contain.User {
	return &contain.User{UID: ti.uid, GID: ti.gid, Groups: []uint32{}}
}

// toolIDs returns the identity the runtime's tools run as when it is not the
// runtime's own (ok false: they keep the runtime's, or a profile's `user:`).
func (rt *Runtime) toolIDs() (uid, gid int, ok bool) {
	if rt.toolID == nil {
		return 0, 0, false
	}
	return int(rt.toolID.uid), int(rt.toolID.gid), true
}

// unixSocketGap is what stays unenforced when uid-0 tools name their unix sockets:
// parse refuses unix: true for them without names, and named ones are the only
// reachable ones only where Landlock mediates connect(2) on pathname sockets (ABI
// 9, not used by this build). "" when it does not apply.
func unixSocketGap(prof *policy.Profile, abi int) string {
	if !prof.User.RunsAsRoot(os.Geteuid()) || len(prof.Network.UnixSockets) == 0 {
		return ""
	}
	return fmt.Sprintf("landlock: unix socket paths (only %v were named, but tools running as uid 0 can connect to any root-owned socket: Landlock restricts pathname-socket connects only from ABI 9, have %d)",
		prof.Network.UnixSockets, abi)
}
