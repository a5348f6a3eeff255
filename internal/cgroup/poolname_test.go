package cgroup

import (
	"regexp"
	"strings"
	"testing"
)

// validPoolName is the hand-written form of the pool name rule; it must accept
// exactly what the regular expression does.
func TestValidPoolName(t *testing.T) {
	re := regexp.MustCompile(`^[A-Za-z0-9_.][A-Za-z0-9_.-]{0,63}$`)
	names := []string{"", "a", "p", "default", "-a", "a-", ".", "..", "_x", "a b", "a/b", "ä", "a\n",
		strings.Repeat("a", 63), strings.Repeat("a", 64), strings.Repeat("a", 65), "x" + strings.Repeat("-", 63), "A.Z_0-9"}
	for c := 0; c < 256; c++ {
		names = append(names, string([]byte{byte(c)}), "a"+string([]byte{byte(c)}))
	}
	for _, n := range names {
		if got, want := validPoolName(n), re.MatchString(n); got != want {
			t.Errorf("validPoolName(%q) = %v, the regexp says %v", n, got, want)
		}
	}
}
