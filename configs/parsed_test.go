package configs

import (
	"reflect"
	"testing"

	"gopkg.in/yaml.v3"
)

// zdefault_node.go is what the generator makes of default.yaml today: the text it
// was generated from is default.yaml's, and its node tree is yaml.v3's parse of it.
// (Were it stale, the tree would only go unused, being registered under the old
// text; this test says to regenerate.)
func TestParsedDefaultIsCurrent(t *testing.T) {
	if defaultText != string(Default) {
		t.Fatal("default.yaml changed since zdefault_node.go was generated: run go generate ./configs")
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(Default, &doc); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&doc, defaultNode) {
		t.Fatal("defaultNode differs from yaml.v3's parse of default.yaml: run go generate ./configs")
	}
}
