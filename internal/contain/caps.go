package contain

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/agentexec/agentexec/internal/sys"
)

// User is the identity a spawner switches to (policy `user:`). Groups replaces the
// supplementary group list (empty means none).
type User struct {
	UID, GID uint32
	Groups   []uint32
}

// CapsSpec says what a spawner keeps of its capabilities.
type CapsSpec struct {
	// Keep lists capability numbers (unix.CAP_*) that stay in the bounding,
	// permitted, effective, inheritable and ambient sets, so that launched tools get
	// them through exec. Keep is a ceiling: a capability the process does not have is
	// not created. None by default.
	Keep []uintptr
	// User, when set, makes every thread switch to this uid, gid and group list after
	// the securebits are locked and before the capability sets are emptied.
	User *User
	// Effective lists capabilities kept in the effective and permitted sets only:
	// dropped from the bounding set and never inheritable or ambient, so that a
	// program exec'd later cannot hold them (a spawner keeps CAP_SETUID and
	// CAP_SETGID to switch each child's identity before its exec). Like Keep, a
	// ceiling.
	Effective []uintptr
}

// Securebits DropCapabilities sets and locks when the process may (CAP_SETPCAP):
// exec as uid 0 grants nothing (NOROOT), uid changes do not touch capability sets
// (NO_SETUID_FIXUP, the sets are emptied explicitly), keep_caps stays off, and no
// capability can be raised into the ambient set afterwards.
const lockedSecurebits = sys.SECBIT_NOROOT | sys.SECBIT_NOROOT_LOCKED |
	sys.SECBIT_NO_SETUID_FIXUP | sys.SECBIT_NO_SETUID_FIXUP_LOCKED |
	sys.SECBIT_KEEP_CAPS_LOCKED |
	sys.SECBIT_NO_CAP_AMBIENT_RAISE | sys.SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED

// CapsError reports a failed step of DropCapabilities.
type CapsError struct {
	Step string // "capget", "capset inheritable", "bounding drop CAP_SYS_ADMIN", ...
	Err  error
}

func (e *CapsError) Error() string { return "drop capabilities: " + e.Step + ": " + e.Err.Error() }
func (e *CapsError) Unwrap() error { return e.Err }

// ErrCannotDropBounding reports that the bounding set holds capabilities that the
// process cannot drop because it lacks CAP_SETPCAP while it runs as uid 0 (where a
// bounding set matters most). Non-root processes without CAP_SETPCAP keep their
// bounding set; no_new_privs, which every spawner sets, makes it unusable.
var ErrCannotDropBounding = errors.New("bounding set cannot be dropped without CAP_SETPCAP")

// LastCap returns the highest capability number the running kernel knows
// (/proc/sys/kernel/cap_last_cap).
func LastCap() (uintptr, error) {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 0, fmt.Errorf("read cap_last_cap: %w", err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 8)
	if err != nil {
		return 0, fmt.Errorf("parse /proc/sys/kernel/cap_last_cap %q: %w", b, err)
	}
	return uintptr(n), nil
}

func capMask(caps []uintptr, last uintptr) (uint64, error) {
	var m uint64
	for _, c := range caps {
		if c > last || c > 63 {
			return 0, fmt.Errorf("CapsSpec.Keep: capability %d is beyond cap_last_cap %d", c, last)
		}
		m |= 1 << c
	}
	return m, nil
}

// DropCapabilities takes away, on every thread of the process, every capability
// not in s.Keep, in this order:
//
//  1. inheritable set reduced to Keep (while CAP_SETPCAP may still be effective);
//  2. ambient set cleared, then Keep raised into it (launched tools receive Keep);
//  3. securebits set and locked (NOROOT, NO_SETUID_FIXUP, KEEP_CAPS off,
//     NO_CAP_AMBIENT_RAISE), when CAP_SETPCAP is effective;
//  4. bounding set: PR_CAPBSET_DROP of every capability up to cap_last_cap not in
//     Keep, when CAP_SETPCAP is effective;
//  5. setgroups/setresgid/setresuid to s.User, when set;
//  6. capset: effective, permitted and inheritable = Keep; Effective is added to
//     the effective and permitted sets only.
//
// As non-root without capabilities every step that needs a privilege finds nothing
// to do and is skipped; the call then only clears the ambient set. As uid 0 without
// CAP_SETPCAP (a container that withheld it), the bounding set and securebits
// cannot be set: every other step is still carried out, and the call returns a
// *CapsError wrapping ErrCannotDropBounding, which a caller may choose to report
// and accept (no_new_privs keeps the bounding set from granting anything).
//
// Call it first thing in the spawner, before no_new_privs and seccomp (the filter
// does not list capset/prctl, but order keeps the reasoning simple).
func DropCapabilities(s CapsSpec) error {
	// Capability state is per thread; all threads are kept equal through psx, and
	// the reads below are taken on one locked thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	last, err := LastCap()
	if err != nil {
		return &CapsError{Step: "cap_last_cap", Err: err}
	}
	keep, err := capMask(s.Keep, last)
	if err != nil {
		return err
	}
	eff, err := capMask(s.Effective, last)
	if err != nil {
		return err
	}
	cur, err := sys.Capget()
	if err != nil {
		return &CapsError{Step: "capget", Err: err}
	}
	keep &= cur.Permitted
	eff &= cur.Permitted
	setpcap := cur.Effective&(1<<unix.CAP_SETPCAP) != 0

	// 1. Inheritable: shrink to Keep. Raising is allowed from permitted; the kernel
	// refuses bits outside old inheritable|bounding, so do it before step 4.
	if cur.Inheritable != keep {
		next := cur
		next.Inheritable = keep
		if err := sys.CapsetAllThreads(next); err != nil {
			return &CapsError{Step: fmt.Sprintf("capset inheritable=%#x", keep), Err: err}
		}
		cur = next
	}

	// 2. Ambient: clear, then raise what is kept so it survives exec.
	if err := sys.AmbientClearAllThreads(); err != nil && !errors.Is(err, unix.EINVAL) {
		return &CapsError{Step: "prctl PR_CAP_AMBIENT_CLEAR_ALL", Err: err}
	}
	for c := uintptr(0); c <= last; c++ {
		if keep&(1<<c) == 0 {
			continue
		}
		if err := sys.AmbientRaiseAllThreads(c); err != nil {
			return &CapsError{Step: "prctl PR_CAP_AMBIENT_RAISE " + CapName(c), Err: err}
		}
	}

	// 3. Securebits.
	bits, err := sys.GetSecurebits()
	if err != nil {
		return &CapsError{Step: "prctl PR_GET_SECUREBITS", Err: err}
	}
	if bits&lockedSecurebits != lockedSecurebits {
		if setpcap {
			if err := sys.SetSecurebitsAllThreads(bits | lockedSecurebits); err != nil {
				return &CapsError{Step: fmt.Sprintf("prctl PR_SET_SECUREBITS %#x", bits|lockedSecurebits), Err: err}
			}
		}
		// Without CAP_SETPCAP the securebits stay as they are: they matter for
		// uid 0, where step 4 reports the missing privilege; no_new_privs covers
		// exec either way.
	}

	// 4. Bounding set.
	var incomplete error
	for c := uintptr(0); c <= last; c++ {
		if keep&(1<<c) != 0 {
			continue
		}
		in, err := sys.CapBsetRead(c)
		if err != nil {
			return &CapsError{Step: "prctl PR_CAPBSET_READ " + CapName(c), Err: err}
		}
		if !in {
			continue
		}
		if !setpcap {
			if os.Geteuid() == 0 {
				// Finish every other step first, so that a caller that chooses to
				// go on without a bounding-set drop is as contained as possible.
				incomplete = &CapsError{Step: "prctl PR_CAPBSET_DROP " + CapName(c), Err: ErrCannotDropBounding}
			}
			break // the bounding set is out of reach; no_new_privs makes it inert
		}
		if err := sys.CapBsetDropAllThreads(c); err != nil {
			return &CapsError{Step: "prctl PR_CAPBSET_DROP " + CapName(c), Err: err}
		}
	}

	// 5. Identity. NO_SETUID_FIXUP (when set) keeps the sets untouched by the uid
	// change; step 6 empties them explicitly either way.
	if u := s.User; u != nil && !isIdentity(u) {
		groups := u.Groups
		if groups == nil {
			groups = []uint32{}
		}
		if err := sys.SetgroupsAllThreads(groups); err != nil {
			return &CapsError{Step: fmt.Sprintf("setgroups %v", groups), Err: err}
		}
		if err := sys.SetresgidAllThreads(u.GID); err != nil {
			return &CapsError{Step: fmt.Sprintf("setresgid %d", u.GID), Err: err}
		}
		if err := sys.SetresuidAllThreads(u.UID); err != nil {
			return &CapsError{Step: fmt.Sprintf("setresuid %d", u.UID), Err: err}
		}
		// Without NO_SETUID_FIXUP a change away from uid 0 has already cleared the
		// permitted set; re-read so step 6 asks for nothing the thread lost.
		if cur, err = sys.Capget(); err != nil {
			return &CapsError{Step: "capget", Err: err}
		}
		keep &= cur.Permitted
		eff &= cur.Permitted
	}

	// 6. Effective, permitted, inheritable = Keep (plus Effective in the first two).
	want := sys.CapSets{Effective: keep | eff, Permitted: keep | eff, Inheritable: keep}
	if cur != want {
		if err := sys.CapsetAllThreads(want); err != nil {
			return &CapsError{Step: fmt.Sprintf("capset effective=permitted=inheritable=%#x", keep), Err: err}
		}
	}
	return incomplete
}

// isIdentity reports whether every id of the calling thread already is u's, so that
// an unprivileged spawner may name its own identity as `user:`.
func isIdentity(u *User) bool {
	r, e, sv := unix.Getresuid()
	rg, eg, sg := unix.Getresgid()
	if uint32(r) != u.UID || uint32(e) != u.UID || uint32(sv) != u.UID ||
		uint32(rg) != u.GID || uint32(eg) != u.GID || uint32(sg) != u.GID {
		return false
	}
	have, err := unix.Getgroups()
	if err != nil || len(have) != len(u.Groups) {
		return false
	}
	want := map[uint32]bool{}
	for _, g := range u.Groups {
		want[g] = true
	}
	for _, g := range have {
		if !want[uint32(g)] {
			return false
		}
	}
	return true
}

// SetNoNewPrivs sets no_new_privs on every thread: from then on exec never grants
// privileges (setuid bits and file capabilities are ignored), and an unprivileged
// process may install seccomp filters.
func SetNoNewPrivs() error {
	if err := sys.SetNoNewPrivsAllThreads(); err != nil {
		return fmt.Errorf("prctl PR_SET_NO_NEW_PRIVS: %w", err)
	}
	return nil
}

var capNames = [...]string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
	"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
	"CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
	"CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
	"CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
	"CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
	"CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
	"CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
	"CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
}

// CapName returns the CAP_* name of capability c ("cap_41" for numbers newer than
// this table).
func CapName(c uintptr) string {
	if c < uintptr(len(capNames)) {
		return capNames[c]
	}
	return "cap_" + strconv.FormatUint(uint64(c), 10)
}

// CapByName returns the number of a capability named "CAP_NET_RAW" or "net_raw"
// (case-insensitive).
func CapByName(name string) (uintptr, bool) {
	n := strings.ToUpper(name)
	if !strings.HasPrefix(n, "CAP_") {
		n = "CAP_" + n
	}
	for i, s := range capNames {
		if s == n {
			return uintptr(i), true
		}
	}
	return 0, false
}
