package templates

// Backend says how a launch was made. These are the one set of backend names: the
// spawner's protocol carries them, and the root package re-exports them with its
// own type (agentexec.Backend).
type Backend string

const (
	// BackendUserspace is the userspace template path: clone3 + exec of a
	// revalidated binary.
	BackendUserspace Backend = "userspace"
	// BackendKernel is the spawn_template kernel backend.
	BackendKernel Backend = "kernel"
	// BackendNone means the tool's template could not be prepared: launches go by
	// path and exec reports the problem.
	BackendNone Backend = "none"
)

// State says what happened to a tool's template on a launch (the one set, as for
// Backend; agentexec.TemplateState re-exports them).
type State string

const (
	// StateHit means the prepared template was valid and used.
	StateHit State = "hit"
	// StateCreated means the template was created on first use (a tool not marked hot).
	StateCreated State = "created"
	// StateRecreated means the binary had changed and the template was recreated.
	StateRecreated State = "recreated"
	// StateNone means no template could be used; the launch goes by path.
	StateNone State = "none"
)
