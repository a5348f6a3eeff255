// Package guestcheck holds the VM tier's own smoke tests: run inside a guest booted
// by scripts/vmtest, they prove that the guest is what the tier promises (busybox
// userland, cgroup v2 with the memory, pids and cpu controllers delegated, the
// kernel's Landlock ABI) and that a broken limit would be caught (a process over
// memory.max is OOM-killed). Outside a guest (AGENTEXEC_VM unset) every test skips.
//
// The package has no non-test code.
package guestcheck
