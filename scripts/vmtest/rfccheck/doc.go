// Package rfccheck holds the VM tier's end-to-end tests of the kernel spawn_template
// backend: run inside a guest booted from the test kernel that carries the RFC
// series (make vmtest-rfc), they drive the static agentexec binary the harness
// brings ($AGENTEXEC_BIN) the way a user would, `agentexec check` and `agentexec run
// --json` under a policy with `kernel_templates: require`, and assert that launches
// really take the kernel backend. Outside such a guest every test skips with the
// reason; with AGENTEXEC_REQUIRE_SPAWN_TEMPLATE=1 (set in RFC guests) a missing
// backend fails them.
//
// The package has no non-test code.
package rfccheck
