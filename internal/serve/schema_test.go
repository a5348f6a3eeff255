package serve

import (
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/agentexec/agentexec"
)

// The JSON Schema in docs/ must name exactly the fields the code reads and writes.
func TestSchemaMatchesTypes(t *testing.T) {
	b, err := os.ReadFile("../../docs/protocol.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var schema struct {
		Defs map[string]struct {
			Properties           map[string]json.RawMessage `json:"properties"`
			Required             []string                   `json:"required"`
			AdditionalProperties *bool                      `json:"additionalProperties"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal(b, &schema); err != nil {
		t.Fatalf("docs/protocol.schema.json: %v", err)
	}
	cases := []struct {
		def string
		typ any
	}{
		{"run", Message{}},
		{"result", agentexec.ResultJSON{}},
		{"chunk", Chunk{}},
		{"error", ErrorLine{}},
		{"pong", Pong{}},
		{"stats", StatsLine{}},
		{"policy", PolicyLine{}},
		{"denied", agentexec.DeniedJSON{}},
	}
	for _, c := range cases {
		d, ok := schema.Defs[c.def]
		if c.def == "denied" {
			var res struct {
				Properties map[string]json.RawMessage `json:"properties"`
			}
			json.Unmarshal(schema.Defs["result"].Properties["denied"], &res)
			d.Properties, ok = res.Properties, res.Properties != nil
		}
		if !ok {
			t.Errorf("schema has no $defs/%s", c.def)
			continue
		}
		var inSchema []string
		for k := range d.Properties {
			inSchema = append(inSchema, k)
		}
		inCode := jsonFields(reflect.TypeOf(c.typ))
		slices.Sort(inSchema)
		slices.Sort(inCode)
		if !slices.Equal(inSchema, inCode) {
			t.Errorf("$defs/%s: schema properties %v, code fields %v", c.def, inSchema, inCode)
		}
		if c.def != "denied" && (d.AdditionalProperties == nil || *d.AdditionalProperties) {
			t.Errorf("$defs/%s: additionalProperties must be false (decoding is strict)", c.def)
		}
		for _, r := range d.Required {
			if !slices.Contains(inCode, r) {
				t.Errorf("$defs/%s requires %q, which the code does not have", c.def, r)
			}
		}
	}
}

func jsonFields(t reflect.Type) []string {
	var out []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name != "" && name != "-" {
			out = append(out, name)
		}
	}
	return out
}
