package configs_test

import (
	"reflect"
	"testing"

	"github.com/agentexec/agentexec/configs"
	"github.com/agentexec/agentexec/policy"
)

// Loading the embedded default (its parse registered at build time) gives the same
// policy as parsing the same text: the control is the text with a comment line
// appended, which nothing has registered, so yaml.v3 parses it. Done twice, so a
// first load that changed the shared tree would show in the second.
func TestDefaultFromParsedTree(t *testing.T) {
	opts := policy.Options{Workspace: t.TempDir(), Home: "/root", TmpDir: "/tmp", CPUs: 2}
	control, err := policy.Parse(configs.DefaultName, append(append([]byte{}, configs.Default...), "# control\n"...), opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		p, err := policy.Parse(configs.DefaultName, configs.Default, opts)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(p, control) {
			t.Fatalf("load %d: the default from its parsed tree differs from the parsed text", i+1)
		}
	}
}
