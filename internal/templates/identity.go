package templates

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/agentexec/agentexec/internal/sys"
)

// Identity is the identity key of an executable: the fields the kernel backend
// rechecks at every spawn. Two Identity values are equal (==) exactly when the path
// still names the same, unmodified file.
type Identity struct {
	Dev, Ino     uint64
	Size         int64
	Mode         uint32 // file type and permission bits (stx_mode)
	UID, GID     uint32
	Ctime, Mtime int64 // nanoseconds since the epoch
}

// String formats the key for logs and errors.
func (id Identity) String() string {
	return fmt.Sprintf("dev=%d:%d ino=%d size=%d mode=%#o uid=%d gid=%d ctime=%d mtime=%d",
		unix.Major(id.Dev), unix.Minor(id.Dev), id.Ino, id.Size, id.Mode, id.UID, id.GID, id.Ctime, id.Mtime)
}

// identityMask is the statx mask for the Identity fields.
const identityMask = unix.STATX_TYPE | unix.STATX_MODE | unix.STATX_UID | unix.STATX_GID |
	unix.STATX_INO | unix.STATX_SIZE | unix.STATX_MTIME | unix.STATX_CTIME

// identityFlags: never force a sync with a remote server for a key we recheck anyway.
const identityFlags = unix.AT_STATX_DONT_SYNC

func identityFromStatx(st *unix.Statx_t) Identity {
	return Identity{
		Dev:   unix.Mkdev(st.Dev_major, st.Dev_minor),
		Ino:   st.Ino,
		Size:  int64(st.Size),
		Mode:  uint32(st.Mode),
		UID:   st.Uid,
		GID:   st.Gid,
		Ctime: st.Ctime.Sec*1e9 + int64(st.Ctime.Nsec),
		Mtime: st.Mtime.Sec*1e9 + int64(st.Mtime.Nsec),
	}
}

// IdentityOf returns the identity key of the file path names (following symlinks),
// with one statx.
func IdentityOf(path string) (Identity, error) {
	var st unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, path, identityFlags, identityMask, &st); err != nil {
		return Identity{}, &os.PathError{Op: "statx", Path: path, Err: err}
	}
	return identityFromStatx(&st), nil
}

// identityOfFD returns the identity key of an open fd.
func identityOfFD(fd int, path string) (Identity, error) {
	var st unix.Statx_t
	if err := unix.Statx(fd, "", identityFlags|unix.AT_EMPTY_PATH, identityMask, &st); err != nil {
		return Identity{}, &os.PathError{Op: "statx", Path: path, Err: err}
	}
	return identityFromStatx(&st), nil
}

// identityOfZ is IdentityOf on a NUL-terminated path without allocating.
func identityOfZ(pathz []byte, id *Identity) error {
	var st unix.Statx_t
	if err := sys.StatxZ(unix.AT_FDCWD, pathz, identityFlags, identityMask, &st); err != nil {
		return err
	}
	*id = identityFromStatx(&st)
	return nil
}
