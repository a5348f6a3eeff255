package yamlnode

import (
	"testing"

	"gopkg.in/yaml.v3"
)

// Lines counts what the parser counts: a node on the last line Lines gives is
// reported there by yaml.v3 itself, for each kind of line break.
func TestLinesAsTheParserCounts(t *testing.T) {
	for _, c := range []struct {
		name string
		text string
		want int
	}{
		{"empty", "", 1},
		{"no final break", "a", 1},
		{"LF", "a: 1\nb: 2", 2},
		{"CRLF", "a: 1\r\nb: 2", 2},
		{"lone CR", "a: 1\rb: 2", 2},
		{"NEL", "\u0085\u00850", 3},
		{"LS", "\u2028x", 2},
		{"PS", "\u2029x", 2},
		{"final LF", "a\n", 2},
	} {
		if got := Lines([]byte(c.text)); got != c.want {
			t.Errorf("%s: Lines(%q) = %d, want %d", c.name, c.text, got, c.want)
		}
	}
	// The parser agrees: the last scalar of each of these is on line Lines().
	for _, text := range []string{"a", "x: 1\ny: 2", "x: 1\r\ny: 2", "\u0085\u00850", "\u2028x", "\u2029x", "a: 1\rb: 2"} {
		var doc yaml.Node
		if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
			t.Fatalf("%q: %v", text, err)
		}
		last := &doc
		for len(last.Content) > 0 {
			last = last.Content[len(last.Content)-1]
		}
		if last.Line != Lines([]byte(text)) {
			t.Errorf("%q: the parser puts its last node on line %d, Lines says %d", text, last.Line, Lines([]byte(text)))
		}
	}
}
