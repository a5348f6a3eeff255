// Package sys holds agentexec's raw syscalls and unsafe kernel structs: the
// spawn_template RFC's syscalls and structs, clone3 and the vfork-safe child of
// ForkExec, seccomp, capabilities, statx, signals, and the audit netlink
// structs. Every struct has a layout test (cross-checked against the C headers
// with cgo where they exist), and ErrNotSupported, the one error every "this
// host lacks a feature" error of agentexec matches, lives here.
//
// It is the only package that may import unsafe or call unix.Syscall and its
// kin (.golangci.yml enforces it). It imports only the standard library and
// golang.org/x/sys.
package sys
