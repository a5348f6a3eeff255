package oneshot

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentexec/agentexec/internal/spawner"
)

// accountCacheDir keeps the tool identity's account files between one-shot runs
// (addAccounts). /run/agentexec is the root runtime's state directory, next to the
// tool identities' locks. A variable for tests.
var accountCacheDir = "/run/agentexec/accounts"

// accountCacheMax bounds the files accountCacheDir keeps: one pair per tool uid and
// version of the host's files, so a handful in practice.
const accountCacheMax = 64

// cachedAccountBinds is spawner.AccountBinds with the copies kept in
// accountCacheDir, named by a hash of their content: a run whose copies exist
// already (the same host files and tool identity as an earlier run) writes
// nothing, where a fresh directory per run cost a mkdir, two file creations and
// their removal on the host's /tmp (0.15-0.3 ms on ext4 here; docs/performance.md).
// The directory must be root's and writable by no one else, or it is not used
// (ok false: the caller writes a directory of its own).
func cachedAccountBinds(uid, gid uint32) (ops []spawner.MountOp, ok bool, err error) {
	files, err := spawner.AccountFiles(uid, gid)
	if err != nil || len(files) == 0 {
		return nil, err == nil, err
	}
	if !usableCacheDir() {
		return nil, false, nil
	}
	wrote := false
	for _, f := range files {
		sum := sha256.Sum256(f.Data)
		path := filepath.Join(accountCacheDir, filepath.Base(f.Host)+"-"+hex.EncodeToString(sum[:12]))
		if !validCopy(path, len(f.Data)) {
			if err := writeCopy(path, f.Data); err != nil {
				return nil, false, fmt.Errorf("account file %s: %w", path, err)
			}
			wrote = true
		}
		ops = append(ops, spawner.AccountBind(path, f))
	}
	if wrote {
		trimAccountCache(ops)
	}
	return ops, true, nil
}

// usableCacheDir makes accountCacheDir if needed and reports whether it may be
// used: a directory (not a link) of root's that no one else may write.
func usableCacheDir() bool {
	if os.MkdirAll(accountCacheDir, 0o755) != nil {
		return false
	}
	var st unix.Stat_t
	return unix.Lstat(accountCacheDir, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR &&
		st.Uid == 0 && st.Mode&0o022 == 0
}

// validCopy reports whether path is a copy this code wrote: a regular file of
// root's, mode 0444, of the expected size (its name is its content's hash).
func validCopy(path string, size int) bool {
	var st unix.Stat_t
	return unix.Lstat(path, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG && st.Uid == 0 &&
		st.Mode&0o7777 == 0o444 && st.Size == int64(size)
}

// tmpInfix is in the name of a copy being written (path + tmpInfix + pid).
const tmpInfix = ".tmp-"

// writeCopy writes data to path atomically: a private temporary file, then rename.
func writeCopy(path string, data []byte) error {
	tmp := path + tmpInfix + strconv.Itoa(os.Getpid())
	_ = os.Remove(tmp) // left by a process of the same pid that died mid-write
	fd, err := unix.Open(tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o444)
	if err != nil {
		return err
	}
	if err := unix.Fchmod(fd, 0o444); err != nil { // whatever the umask
		unix.Close(fd)
		return errors.Join(err, os.Remove(tmp))
	}
	for b := data; len(b) > 0; {
		n, err := unix.Write(fd, b)
		if err != nil {
			unix.Close(fd)
			return errors.Join(err, os.Remove(tmp))
		}
		b = b[n:]
	}
	if err := unix.Close(fd); err != nil {
		return errors.Join(err, os.Remove(tmp))
	}
	return os.Rename(tmp, path)
}

// trimAccountCache removes the oldest files beyond accountCacheMax, never those in
// keep nor another run's temporary file younger than a minute (its rename would
// fail). A run that found its copy a moment before another run removed it sees its
// optional bind fail (the tool then runs without the account, as on a host where
// the bind is impossible); with accountCacheMax versions that takes more host-file
// versions and tool ids than a machine has.
func trimAccountCache(keep []spawner.MountOp) {
	ents, err := os.ReadDir(accountCacheDir)
	if err != nil || len(ents) <= accountCacheMax {
		return
	}
	type aged struct {
		path  string
		mtime int64
	}
	var all []aged
	for _, e := range ents {
		p := filepath.Join(accountCacheDir, e.Name())
		if slices.ContainsFunc(keep, func(op spawner.MountOp) bool { return op.Source == p }) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		if strings.Contains(e.Name(), tmpInfix) && time.Since(info.ModTime()) < time.Minute {
			continue // another run's copy being written (writeCopy renames it)
		}
		all = append(all, aged{p, info.ModTime().UnixNano()})
	}
	slices.SortFunc(all, func(a, b aged) int { return cmp.Compare(a.mtime, b.mtime) })
	for i := 0; i < len(ents)-accountCacheMax && i < len(all); i++ {
		_ = os.Remove(all[i].path)
	}
}
