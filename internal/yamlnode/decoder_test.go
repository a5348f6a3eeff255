package yamlnode

import (
	"testing"

	"gopkg.in/yaml.v3"
)

// A text registered with RegisterParsed is not parsed: Single returns the
// registered tree for exactly that text, and parses any other.
func TestRegisterParsed(t *testing.T) {
	text := "registered: true\n"
	doc := &yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{{Kind: yaml.ScalarNode, Value: "stand-in"}}}
	RegisterParsed(text, doc)
	t.Cleanup(func() { delete(parsed, text) })
	d := &Decoder{File: "x.yaml"}
	if got, err := d.Single([]byte(text), "a test"); err != nil || got != doc {
		t.Errorf("Single(registered text) = %v, %v; want the registered tree", got, err)
	}
	got, err := d.Single([]byte(text+"other: 1\n"), "a test")
	if err != nil || got == doc || got.Kind != yaml.DocumentNode || len(got.Content) != 1 || len(got.Content[0].Content) != 4 {
		t.Errorf("Single(other text) = %v, %v; want its own parse", got, err)
	}
}
