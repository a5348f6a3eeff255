package cgroup

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// ErrNotEmpty is returned when a cgroup still holds processes after the drain timeout.
var ErrNotEmpty = errors.New("cgroup: still populated")

// killDir kills every process in dir and its sub-cgroups. With
// cgroup.kill (probed once) this is one write, which the kernel applies to the whole
// subtree, including processes that fork meanwhile. Without it: freeze (when
// cgroup.freeze exists, so nothing forks while we look), SIGKILL every pid in
// cgroup.procs, thaw; repeated until the procs files are empty or 100 rounds pass.
// This is hand-written rather than cgroup2.Manager.Kill, which retries cgroup.kill and
// logs on every call, freezes without a time bound, and reaps the pids it killed.
func (m *Manager) killDir(dir string) error {
	if m.hasKill {
		return writeFile(filepath.Join(dir, "cgroup.kill"), "1")
	}
	for round := 0; round < 100; round++ {
		n, err := m.signalTree(dir)
		if err != nil || n == 0 {
			return err
		}
		time.Sleep(time.Millisecond)
	}
	return fmt.Errorf("%w: %s: processes survive SIGKILL rounds", ErrNotEmpty, dir)
}

// signalTree is one fallback round; it returns how many processes it signalled.
func (m *Manager) signalTree(dir string) (int, error) {
	var dirs []string
	if err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	}); err != nil {
		return 0, fmt.Errorf("cgroup: walking %s: %w", dir, err)
	}
	total := 0
	var errs []error
	for _, d := range dirs {
		frozen := false
		if m.hasFreeze {
			if err := writeFile(filepath.Join(d, "cgroup.freeze"), "1"); err == nil {
				frozen = true
				// Best effort: a group that is not frozen in time is signalled anyway.
				_ = waitEventPath(d, "frozen", 1, 100*time.Millisecond)
			}
		}
		pids, err := readPids(filepath.Join(d, "cgroup.procs"))
		if err != nil && !removed(err) { // removed meanwhile: nothing left to signal
			errs = append(errs, err)
		}
		for _, pid := range pids {
			// A frozen task still dies of SIGKILL in cgroup v2.
			if err := unix.Kill(pid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
				errs = append(errs, os.NewSyscallError("kill "+strconv.Itoa(pid), err))
			}
		}
		total += len(pids)
		if frozen {
			if err := writeFile(filepath.Join(d, "cgroup.freeze"), "0"); err != nil && !removed(err) {
				errs = append(errs, err)
			}
		}
	}
	return total, errors.Join(errs...)
}

// waitEventPath waits up to timeout for "key value" in dir's cgroup.events, opened by
// path for this one wait. A missing directory counts as reached (nothing is left in it
// to wait for): for "populated 0", a removed group is an empty one. So does one
// removed while we open or wait (kernfs then answers ENODEV, to open(2) or on the
// open file): another runtime removing the same stale group at the same moment
// does that.
func waitEventPath(dir, key string, value int64, timeout time.Duration) error {
	p := filepath.Join(dir, "cgroup.events")
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if removed(err) {
		return nil
	}
	if err != nil {
		return &os.PathError{Op: "open", Path: p, Err: err}
	}
	defer unix.Close(fd)
	if err := waitEventFD(fd, key, value, timeout); err != nil {
		if removed(err) {
			return nil
		}
		return fmt.Errorf("%s: %w", dir, err)
	}
	return nil
}

// waitEventFD waits for "key value" in the cgroup.events file open at fd. kernfs
// signals a change of the file with POLLPRI|POLLERR to poll(2) after a read, so this
// sleeps in the kernel instead of spinning. It does not signal the group's removal,
// so each sleep is at most removalCheck: a removed group's file then reads ENODEV.
func waitEventFD(fd int, key string, value int64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var buf [256]byte
	for {
		v, err := readKeyFD(fd, buf[:], key)
		if err != nil {
			return err
		}
		if v == value {
			return nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("%w: cgroup.events %s=%d after %v", ErrNotEmpty, key, v, timeout)
		}
		ms := int(min(left, removalCheck) / time.Millisecond)
		if ms == 0 {
			ms = 1
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLPRI}}
		if _, err := unix.Poll(fds, ms); err != nil && !errors.Is(err, unix.EINTR) {
			return os.NewSyscallError("poll cgroup.events", err)
		}
	}
}

// removalCheck bounds one sleep of waitEventFD (see there).
const removalCheck = 50 * time.Millisecond

// readKeyFD preads a flat-keyed cgroup file ("key value" lines) at fd and returns key's
// value. A missing key is an error (never a silent zero).
func readKeyFD(fd int, buf []byte, key string) (int64, error) {
	n, err := unix.Pread(fd, buf, 0)
	if err != nil {
		return 0, os.NewSyscallError("pread", err)
	}
	return parseKey(buf[:n], key)
}

func parseKey(b []byte, key string) (int64, error) {
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		if len(line) > len(key) && line[len(key)] == ' ' && string(line[:len(key)]) == key {
			return parseInt(line[len(key)+1:])
		}
	}
	return 0, fmt.Errorf("cgroup: key %q not found", key)
}

// parseInt parses a decimal value without allocating ("max" is not accepted here).
func parseInt(b []byte) (int64, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return 0, errors.New("cgroup: empty value")
	}
	var v int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("cgroup: bad number %q", b)
		}
		v = v*10 + int64(c-'0')
	}
	return v, nil
}
