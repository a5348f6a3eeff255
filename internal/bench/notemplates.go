package bench

import "github.com/agentexec/agentexec"

// withoutTemplates returns the runtime option for launches without templates (a
// PATH lookup of the bare name at every launch).
func withoutTemplates() (opt agentexec.Option, ok bool, reason string) {
	return agentexec.WithoutTemplates(), true, ""
}
