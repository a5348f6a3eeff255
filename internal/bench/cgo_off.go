//go:build !cgo

package bench

// cgoEnabled records whether the binary was built with cgo (reported). It also
// picks the baseline: posix_spawn in cgo builds on Linux, forkexec otherwise.
const cgoEnabled = false
