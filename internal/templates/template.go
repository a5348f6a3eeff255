package templates

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// ErrNotRegular is matched by New's error when the path names something other than a
// regular file (a directory, a device).
var ErrNotRegular = errors.New("not a regular file")

// Stats counts what happened to templates. The counters are updated atomically.
type Stats struct {
	// Hits counts revalidations that found the template unchanged.
	Hits uint64
	// Recreations counts templates recreated because the binary changed.
	Recreations uint64
	// Creations counts templates created (first creations and recreations).
	Creations uint64
}

type counters struct{ hits, recreations, creations atomic.Uint64 }

func (c *counters) stats() Stats {
	return Stats{Hits: c.hits.Load(), Recreations: c.recreations.Load(), Creations: c.creations.Load()}
}

// Template is a userspace-backend template: the executable a tool resolves to, pinned
// by an open fd, and the identity key it had when the fd was opened.
//
// The exported fields describe the current binary. Revalidate replaces FD, ID and ELF
// when it recreates the template, so read them directly only where launches and
// Revalidate are serialized by the caller; otherwise use Snapshot (or a Registry).
type Template struct {
	// Path is the absolute path the tool resolves to, as given to New (symlinks are
	// followed by statx and exec, so a switched symlink is detected too).
	Path string
	// FD is an O_RDONLY|O_CLOEXEC fd on the executable (O_PATH when the file is not
	// readable). It pins the inode whose identity ID records.
	FD int
	// ID is the identity key of the file FD refers to.
	ID Identity
	// ELF reports whether the file starts with the ELF magic (false when it could not
	// be read). Only ELF tools can use the kernel backend.
	ELF bool
	// BaseEnv is the pre-built base environment of the tool, set by the owner; the
	// package carries it in Snapshot and does not interpret it.
	BaseEnv []string

	mu     sync.Mutex
	pathz  []byte // Path + NUL, for allocation-free statx
	closed bool
	n      counters
}

// Snapshot is a consistent view of a template for one launch.
type Snapshot struct {
	Path    string
	ID      Identity
	ELF     bool
	BaseEnv []string
}

var elfMagic = [4]byte{0x7f, 'E', 'L', 'F'}

// opened is the result of opening an executable.
type opened struct {
	fd  int
	id  Identity
	elf bool
}

func openExec(path string) (opened, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
	readable := err == nil
	if errors.Is(err, unix.EACCES) {
		// Execute-only binaries (mode 0711) cannot be read; an O_PATH fd still pins them.
		fd, err = unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return opened{}, &os.PathError{Op: "open", Path: path, Err: err}
	}
	id, err := identityOfFD(fd, path)
	if err != nil {
		unix.Close(fd)
		return opened{}, err
	}
	if id.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return opened{}, &os.PathError{Op: "open executable", Path: path, Err: ErrNotRegular}
	}
	o := opened{fd: fd, id: id}
	if readable {
		var magic [4]byte
		n, err := unix.Pread(fd, magic[:], 0)
		if err != nil {
			unix.Close(fd)
			return opened{}, &os.PathError{Op: "pread", Path: path, Err: err}
		}
		o.elf = n == 4 && magic == elfMagic
	}
	return o, nil
}

// New opens the executable at path (which must be absolute), records its identity
// key with one statx on the opened fd, and checks for the ELF magic. It does not check
// execute permission: a later exec reports that (126).
func New(path string) (*Template, error) {
	if !filepath.IsAbs(path) {
		return nil, &os.PathError{Op: "template", Path: path, Err: errors.New("path is not absolute")}
	}
	if strings.IndexByte(path, 0) >= 0 {
		return nil, &os.PathError{Op: "template", Path: path, Err: unix.EINVAL}
	}
	path = filepath.Clean(path)
	o, err := openExec(path)
	if err != nil {
		return nil, err
	}
	t := &Template{Path: path, FD: o.fd, ID: o.id, ELF: o.elf, pathz: append([]byte(path), 0)}
	t.n.creations.Add(1)
	return t, nil
}

// Revalidate compares the identity key of the file now at Path (one statx) with the
// template's. When they differ the binary was replaced or modified: Revalidate opens
// it again, replaces FD, ID and ELF, counts a recreation and returns true. When the
// path no longer names a usable file it returns the error and leaves the template
// as it was (a launch by path then fails with the exec error, 127 or 126).
//
// Revalidate is safe to call concurrently with other Revalidate and Snapshot calls.
// A valid template costs one statx and no allocation.
func (t *Template) Revalidate() (recreated bool, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.revalidateLocked()
}

func (t *Template) revalidateLocked() (bool, error) {
	if t.closed {
		return false, &os.PathError{Op: "revalidate", Path: t.Path, Err: os.ErrClosed}
	}
	var id Identity
	if err := identityOfZ(t.pathz, &id); err != nil {
		return false, &os.PathError{Op: "statx", Path: t.Path, Err: err}
	}
	if id == t.ID {
		t.n.hits.Add(1)
		return false, nil
	}
	o, err := openExec(t.Path)
	if err != nil {
		return false, fmt.Errorf("recreate stale template (was %v, path now %v): %w", t.ID, id, err)
	}
	old := t.FD
	t.FD, t.ID, t.ELF = o.fd, o.id, o.elf
	t.n.recreations.Add(1)
	t.n.creations.Add(1)
	if err := unix.Close(old); err != nil {
		return true, &os.PathError{Op: "close old template fd", Path: t.Path, Err: err}
	}
	return true, nil
}

// Snapshot returns the template's current state.
func (t *Template) Snapshot() Snapshot {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.snapshotLocked()
}

func (t *Template) snapshotLocked() Snapshot {
	return Snapshot{Path: t.Path, ID: t.ID, ELF: t.ELF, BaseEnv: t.BaseEnv}
}

// Stats returns the template's counters.
func (t *Template) Stats() Stats { return t.n.stats() }

// Close releases the executable fd. Closing twice is a no-op.
func (t *Template) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	if err := unix.Close(t.FD); err != nil {
		return &os.PathError{Op: "close template fd", Path: t.Path, Err: err}
	}
	t.FD = -1
	return nil
}
