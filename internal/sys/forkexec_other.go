//go:build linux && !(amd64 || arm64)

package sys

// ForkExecSupported reports whether ForkExec (the vfork path that can restrict a
// child with a Landlock layer of its own) exists on this architecture.
const ForkExecSupported = false
