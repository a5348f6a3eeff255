package oneshot

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/agentexec/agentexec/policy"
)

// The private ${TMPDIR} (policy.TmpDirPlaceholder) is made for the launch as a
// Runtime makes it for its tools (agentexec's tmpdir.go): a new directory under
// os.TempDir(), mode 0700, owned by the identity the tool runs as, in place of the
// placeholder in a copy of the policy, and the tool's TMPDIR when it may write
// there (unless the policy sets TMPDIR or lets the request set it). It is removed
// with everything in it when the launch ends.

// tmpDirPattern names the directories, as a Runtime's.
const tmpDirPattern = "agentexec-tmp-"

// setupTmpDir makes the directory when the tool's profile uses it and admits the
// request again under the policy that names it. uid and gid are the tool's
// identity (ok false: the caller's own).
func (s *session) setupTmpDir(uid, gid uint32, ok bool) error {
	l := s.l
	if !l.req.Hooks.UsesTmpDir(l.req.Policy, l.prof) {
		return nil
	}
	dir, err := os.MkdirTemp("", tmpDirPattern)
	if err != nil {
		return fmt.Errorf("private TMPDIR: %w", err)
	}
	s.tmpDir = dir
	if dir, err = filepath.Abs(dir); err != nil {
		return fmt.Errorf("private TMPDIR: %w", err)
	}
	s.tmpDir = dir
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("private TMPDIR: %w", err)
	}
	if ok {
		if err := os.Chown(dir, int(uid), int(gid)); err != nil {
			return fmt.Errorf("private TMPDIR: give %s to the tool's uid %d: %w", dir, uid, err)
		}
	}
	q, err := l.req.Policy.WithTmpDir(dir)
	if err != nil {
		return err
	}
	t, _ := q.Tool(l.tool.Name)
	if t == nil || t.Profile == nil {
		return fmt.Errorf("private TMPDIR: tool %s gone from the rewritten policy", l.tool.Name)
	}
	if !t.Env.Allowed("TMPDIR") && !slices.ContainsFunc(t.Env.Set, func(v policy.EnvVar) bool { return v.Name == "TMPDIR" }) &&
		slices.ContainsFunc(t.Profile.FS.Write, func(w string) bool { return policy.Beneath(dir, w) }) {
		t.Env.Set = append(t.Env.Set, policy.EnvVar{Name: "TMPDIR", Value: dir})
	}
	return l.admit(q)
}

// removeTmpDir removes the directory and everything the tool left in it; a tool
// may have left directories without write permission, which are made writable
// and the removal retried.
func removeTmpDir(dir string) {
	err := os.RemoveAll(dir)
	if err == nil || !errors.Is(err, fs.ErrPermission) {
		return
	}
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, _ error) error {
		if d != nil && d.IsDir() {
			_ = os.Chmod(path, 0o700)
		}
		return nil
	})
	_ = os.RemoveAll(dir)
}
