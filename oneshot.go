package agentexec

import "github.com/agentexec/agentexec/policy"

// The one-shot launch of `agentexec run` (internal/oneshot) contains its own
// process and launches one tool without a Runtime. These are the few decisions of
// the engine it must make the same way; they are exported for it alone and are not
// part of the supported API.

// OneShotToolIdentity takes a tool identity for a one-shot launch, as New does
// for a root runtime whose profile sets no user: (tooluser.go): the first free id
// of the range [ToolIDBase, ToolIDBase+ToolIDCount), held by an flock until release
// is called or the process dies. ok is false when prof's tools keep the caller's
// identity (not root, or the profile names a user).
func OneShotToolIdentity(prof *policy.Profile) (uid, gid uint32, release func(), ok bool, err error) {
	if !needsToolIdentity(prof) {
		return 0, 0, func() {}, false, nil
	}
	ti, err := acquireToolIdentity()
	if err != nil {
		return 0, 0, nil, false, err
	}
	return ti.uid, ti.gid, ti.release, true, nil
}

// OneShotUsesTmpDir reports whether prof refers to the policy's private ${TMPDIR}
// (which a Runtime makes and removes).
func OneShotUsesTmpDir(p *policy.Policy, prof *policy.Profile) bool { return usesTmpDir(p, prof) }

// OneShotUnixSocketGap is what a Runtime lists as unenforced when uid-0 tools name
// their unix sockets ("" when it does not apply).
func OneShotUnixSocketGap(prof *policy.Profile, abi int) string {
	return unixSocketGap(prof, abi)
}
