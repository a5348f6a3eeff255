// Package tmpdir makes and removes the private ${TMPDIR} of a policy
// (policy.TmpDirPlaceholder), for a Runtime (agentexec's tmpdir.go) and for a
// one-shot launch (internal/oneshot) alike: a new directory under os.TempDir(),
// mode 0700, owned by the identity the tools run as, removed with everything in it
// at the end.
package tmpdir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/agentexec/agentexec/policy"
)

// Pattern names the directories (os.MkdirTemp) under the process's temporary
// directory (os.TempDir: $TMPDIR, else /tmp).
const Pattern = "agentexec-tmp-"

// Make creates a directory, absolute (even where $TMPDIR is relative), mode 0700
// whatever the umask, and given to uid:gid when chown is set. On error the
// directory, when it was made, is returned too, for the caller to remove.
func Make(uid, gid int, chown bool) (string, error) {
	dir, err := os.MkdirTemp("", Pattern)
	if err != nil {
		return "", fmt.Errorf("private TMPDIR: %w", err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return dir, fmt.Errorf("private TMPDIR: %w", err)
	}
	if err := os.Chmod(abs, 0o700); err != nil {
		return abs, fmt.Errorf("private TMPDIR: %w", err)
	}
	if chown {
		if err := os.Chown(abs, uid, gid); err != nil {
			return abs, fmt.Errorf("private TMPDIR: give %s to the tools' uid %d: %w", abs, uid, err)
		}
	}
	return abs, nil
}

// TellTool sets TMPDIR=dir in t's environment when its profile may write dir
// (mktemp and the like would use /tmp otherwise), unless the policy sets TMPDIR
// for it or lets its requests set it. t belongs to a policy copy of the caller's.
func TellTool(t *policy.Tool, dir string) {
	if t.Profile == nil || t.Env.Allowed("TMPDIR") || slices.ContainsFunc(t.Env.Set, func(v policy.EnvVar) bool { return v.Name == "TMPDIR" }) {
		return
	}
	if slices.ContainsFunc(t.Profile.FS.Write, func(w string) bool { return policy.Beneath(dir, w) }) {
		t.Env.Set = append(t.Env.Set, policy.EnvVar{Name: "TMPDIR", Value: dir})
	}
}

// Remove removes dir and everything the tools left in it. A tool may have left
// directories without write permission, which stop RemoveAll when the caller is
// not root: those are made writable and the removal retried.
func Remove(dir string) error {
	err := os.RemoveAll(dir)
	if err == nil || !errors.Is(err, fs.ErrPermission) {
		return err
	}
	// WalkDir visits a directory before it reads it: made readable and writable
	// first, it can be read and emptied.
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, _ error) error {
		if d != nil && d.IsDir() {
			_ = os.Chmod(path, 0o700)
		}
		return nil
	})
	return os.RemoveAll(dir)
}
