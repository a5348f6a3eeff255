//go:build !(cgo && linux)

package sys

import (
	"testing"

	"github.com/agentexec/agentexec/internal/testutil"
)

func TestSpawnTemplateLayoutC(t *testing.T) {
	if testutil.Strict() {
		t.Fatal("AGENTEXEC_STRICT=1: the C layout comparison needs CGO_ENABLED=1 and a C compiler (the CI machine has both)")
	}
	t.Skip("requires cgo (CGO_ENABLED=1 and a C compiler) to compare the layout with C declarations")
}
