// Package broken does not compile (a type error, so gofmt still accepts it): the
// harness self-test checks that a test binary that fails to build fails the run.
package broken

import "testing"

func TestBroken(t *testing.T) {
	var n int = "not an int"
	_ = n
}
