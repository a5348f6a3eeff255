//go:build !cgo

package bench

// cgoEnabled records whether the binary was built with cgo (reported; the
// baseline is forkexec either way).
const cgoEnabled = false
