package agentexec

import (
	"errors"
	"path/filepath"

	"github.com/agentexec/agentexec/policy"
)

// admission is a request the policy allowed (policy.Admit) and this host can
// launch: its tool's executable was found, and the profile's runtime state.
type admission struct {
	*policy.Admission
	prt *profileRT
	// asked is the request's own limits (nil: none), for the gaps they add.
	asked *policy.Limits
}

// admit is the first stop of a launch: the policy's decision, wrapped in a
// DeniedError when it refuses, then the one host question the policy cannot
// answer (whether the tool's executable exists here). A relative StdinFile is
// made relative to the working directory.
func (rt *Runtime) admit(req *Request) (*admission, error) {
	a, refused := rt.pol.Admit(policy.LaunchRequest{Tool: req.Tool, Args: req.Args, Dir: req.Dir, Env: req.Env, Limits: req.Limits})
	if refused != nil {
		rt.stats.denied.Add(1)
		return nil, (*DeniedError)(refused)
	}
	t := a.Tool
	if t.Path == "" {
		reason := "executable not found on this host"
		if t.ResolveError != nil {
			reason = t.ResolveError.Error()
		}
		return nil, &LaunchError{Tool: t.Name, Op: "resolve", Err: errors.New(reason)}
	}
	if req.StdinFile != "" && !filepath.IsAbs(req.StdinFile) {
		req.StdinFile = filepath.Join(a.Dir, req.StdinFile)
	}
	return &admission{Admission: a, prt: rt.profiles[t.Profile], asked: req.Limits}, nil
}
