package bench

import (
	"bytes"
	"strings"
	"testing"
)

func TestProgress(t *testing.T) {
	var nilp *progress
	nilp.add(1, "x") // a nil bar and a bar without a writer draw nothing
	newProgress(nil, 10).add(1, "x")
	var buf bytes.Buffer
	p := newProgress(&buf, 4)
	p.add(1, "latency") // first update draws at once
	p.add(3, "latency") // the last one always draws
	out := buf.String()
	if !strings.Contains(out, "\r[#######") || !strings.Contains(out, " 25% latency") {
		t.Errorf("first draw missing: %q", out)
	}
	if !strings.Contains(out, "[##############################] 100% latency    4/4") {
		t.Errorf("final draw missing: %q", out)
	}
	buf.Reset()
	p.done()
	if strings.Trim(buf.String(), "\r ") != "" {
		t.Errorf("done wrote %q, want only a cleared line", buf.String())
	}
}
