package sys

import (
	"errors"
	"fmt"
	"testing"
)

func TestErrNotSupportedMatches(t *testing.T) {
	err := fmt.Errorf("profile x: cgroup: require: %w", ErrNotSupported)
	if !errors.Is(err, ErrNotSupported) || !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("%v does not match ErrNotSupported and errors.ErrUnsupported", err)
	}
	// Control: an unrelated error matches neither.
	if other := errors.New("not supported by this host"); errors.Is(other, ErrNotSupported) || errors.Is(other, errors.ErrUnsupported) {
		t.Errorf("an error with the same text matched: %v", other)
	}
}
