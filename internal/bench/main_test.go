package bench

import (
	"os"
	"testing"

	"github.com/agentexec/agentexec"
)

// The test binary serves as the spawner of the runtimes the tests start.
func TestMain(m *testing.M) {
	agentexec.ServeSpawner()
	os.Exit(m.Run())
}
