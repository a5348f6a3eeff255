package oneshot

import (
	"fmt"

	"github.com/agentexec/agentexec/internal/tmpdir"
)

// The private ${TMPDIR} (policy.TmpDirPlaceholder) is made for the launch as a
// Runtime makes it for its tools (agentexec's tmpdir.go): a new directory under
// os.TempDir(), mode 0700, owned by the identity the tool runs as (internal/tmpdir),
// in place of the placeholder in a copy of the policy, and the tool's TMPDIR when it
// may write there (unless the policy sets TMPDIR or lets the request set it). It is
// removed with everything in it when the launch ends (tmpdir.Remove).

// setupTmpDir makes the directory when the tool's profile uses it and admits the
// request again under the policy that names it. uid and gid are the tool's
// identity (ok false: the caller's own).
func (s *session) setupTmpDir(uid, gid uint32, ok bool) error {
	l := s.l
	if !l.req.Hooks.UsesTmpDir(l.req.Policy, l.prof) {
		return nil
	}
	dir, err := tmpdir.Make(int(uid), int(gid), ok)
	s.tmpDir = dir
	if err != nil {
		return err
	}
	q, err := l.req.Policy.WithTmpDir(dir)
	if err != nil {
		return err
	}
	t, _ := q.Tool(l.tool.Name)
	if t == nil || t.Profile == nil {
		return fmt.Errorf("private TMPDIR: tool %s gone from the rewritten policy", l.tool.Name)
	}
	tmpdir.TellTool(t, dir)
	return l.admit(q)
}
