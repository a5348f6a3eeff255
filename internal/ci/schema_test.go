package ci

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// A validator for the JSON Schema subset docs/ci-report.schema.json uses: type
// (a name or a list), enum, required, properties, additionalProperties: false,
// items, minimum, $ref to #/$defs/…, and format date-time.

func loadReportSchema(t *testing.T) map[string]any {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	b, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "docs", "ci-report.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s map[string]any
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("schema: %v", err)
	}
	return s
}

// validateReportSchema fails the test for every place the report breaks the schema.
func validateReportSchema(t *testing.T, report []byte) {
	t.Helper()
	root := loadReportSchema(t)
	var v any
	if err := json.Unmarshal(report, &v); err != nil {
		t.Fatalf("report is not JSON: %v", err)
	}
	for _, e := range validate(root, root, v, "$") {
		t.Errorf("report breaks docs/ci-report.schema.json: %s", e)
	}
}

func jsonType(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	case float64:
		if x == math.Trunc(x) {
			return "integer"
		}
		return "number"
	}
	return fmt.Sprintf("%T", v)
}

func validate(root, s map[string]any, v any, path string) []string {
	var errs []string
	if ref, ok := s["$ref"].(string); ok {
		name, found := strings.CutPrefix(ref, "#/$defs/")
		def, _ := root["$defs"].(map[string]any)[name].(map[string]any)
		if !found || def == nil {
			return []string{path + ": unsupported $ref " + ref}
		}
		return validate(root, def, v, path)
	}
	if ty, ok := s["type"]; ok {
		var allowed []string
		switch x := ty.(type) {
		case string:
			allowed = []string{x}
		case []any:
			for _, a := range x {
				allowed = append(allowed, a.(string))
			}
		}
		got := jsonType(v)
		if !slices.Contains(allowed, got) && !(got == "integer" && slices.Contains(allowed, "number")) {
			return []string{fmt.Sprintf("%s: type %s, want %v", path, got, allowed)}
		}
	}
	if en, ok := s["enum"].([]any); ok {
		found := false
		for _, e := range en {
			if fmt.Sprint(e) == fmt.Sprint(v) {
				found = true
			}
		}
		if !found {
			errs = append(errs, fmt.Sprintf("%s: %v is not one of %v", path, v, en))
		}
	}
	if m, ok := s["minimum"].(float64); ok {
		if f, isNum := v.(float64); isNum && f < m {
			errs = append(errs, fmt.Sprintf("%s: %v < minimum %v", path, f, m))
		}
	}
	if s["format"] == "date-time" {
		if str, ok := v.(string); ok {
			if _, err := time.Parse(time.RFC3339Nano, str); err != nil {
				errs = append(errs, fmt.Sprintf("%s: %q is not a date-time", path, str))
			}
		}
	}
	if obj, ok := v.(map[string]any); ok {
		props, _ := s["properties"].(map[string]any)
		if req, ok := s["required"].([]any); ok {
			for _, r := range req {
				if _, have := obj[r.(string)]; !have {
					errs = append(errs, fmt.Sprintf("%s: missing required %q", path, r))
				}
			}
		}
		for k, val := range obj {
			ps, ok := props[k].(map[string]any)
			if !ok {
				if s["additionalProperties"] == false {
					errs = append(errs, fmt.Sprintf("%s: property %q is not in the schema", path, k))
				}
				continue
			}
			errs = append(errs, validate(root, ps, val, path+"."+k)...)
		}
	}
	if arr, ok := v.([]any); ok {
		if items, ok := s["items"].(map[string]any); ok {
			for i, it := range arr {
				errs = append(errs, validate(root, items, it, fmt.Sprintf("%s[%d]", path, i))...)
			}
		}
	}
	return errs
}

// TestSchemaValidatorCatches proves the validator can fail: a report that breaks the
// schema in several ways is caught each time.
func TestSchemaValidatorCatches(t *testing.T) {
	root := loadReportSchema(t)
	good := buildReport(&Job{Name: "j", File: "j.yaml"}, "p.yaml", "/ws", ReportOptions{Jobs: 1, Artifacts: "/a"},
		time.Now(), time.Now(), []*StepResult{
			{Step: &Step{Name: "a", Tool: "sh"}, Status: StatusPassed, Start: time.Now(), End: time.Now(), Launched: true},
			{Step: &Step{Name: "b", Tool: "sh", Needs: []string{"a"}}, Status: StatusSkipped, Message: "x"},
		}, 0)
	b, _ := json.Marshal(good)
	var v map[string]any
	json.Unmarshal(b, &v)
	if errs := validate(root, root, v, "$"); len(errs) != 0 {
		t.Fatalf("a built report fails the schema: %v", errs)
	}
	mutations := map[string]func(m map[string]any){
		"bad status":    func(m map[string]any) { m["steps"].([]any)[0].(map[string]any)["status"] = "ok" },
		"missing field": func(m map[string]any) { delete(m, "summary") },
		"extra field":   func(m map[string]any) { m["surprise"] = 1 },
		"wrong type":    func(m map[string]any) { m["steps"].([]any)[1].(map[string]any)["exit_code"] = "3" },
		"bad time":      func(m map[string]any) { m["started_at"] = "yesterday" },
		"negative":      func(m map[string]any) { m["duration_ms"] = -1.0 },
	}
	for name, mut := range mutations {
		var m map[string]any
		json.Unmarshal(b, &m)
		mut(m)
		if errs := validate(root, root, m, "$"); len(errs) == 0 {
			t.Errorf("%s: not caught", name)
		}
	}
}
