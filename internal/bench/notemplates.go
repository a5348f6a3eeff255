package bench

import "github.com/agentexec/agentexec"

// withoutTemplates returns the runtime option for launches without templates (a
// PATH lookup of the bare name at every launch), or ok false with the reason when
// this build of the runtime has no such option.
func withoutTemplates() (opt agentexec.Option, ok bool, reason string) {
	return nil, false, "agentexec.WithoutTemplates is not in this build"
}
