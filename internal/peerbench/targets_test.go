package peerbench

import (
	"strings"
	"testing"
	"time"
)

func report(backends []string, geo map[string]float64, rg map[string]time.Duration) *Report {
	r := &Report{Geomean: geo}
	for _, b := range backends {
		r.Backends = append(r.Backends, Backend{Name: b})
	}
	if rg != nil {
		c := CallReport{Name: "rg", Cells: map[string]Cell{}}
		for b, d := range rg {
			c.Cells[b] = Cell{Median: d}
		}
		r.Mix = append(r.Mix, c)
	}
	return r
}

// Issue 18's targets are judged from the rows that ran, each met or missed by its
// bound; landrun's own row stands for landrun when present, llrun otherwise.
func TestJudge(t *testing.T) {
	ms := time.Millisecond
	r := report([]string{"direct", "bwrap", "llrun", "agentexec-run", "agentexec-serve"},
		map[string]float64{"direct": 1, "bwrap": 3.4, "llrun": 2.9, "agentexec-run": 5.3, "agentexec-serve": 1.2},
		map[string]time.Duration{"direct": 19 * ms, "llrun": 28 * ms, "agentexec-serve": 20 * ms})
	r.judge()
	type v struct {
		met  bool
		meas float64
	}
	got := map[string]v{}
	for _, tg := range r.Targets {
		got[tg.Name] = v{tg.Met, tg.Measured}
	}
	want := map[string]v{
		"agentexec serve through a client vs a direct launch (geomean over the mix)": {true, 1.2},
		"agentexec run vs bubblewrap (ratio of their geomeans)":                      {false, 5.3 / 3.4},
		"agentexec run vs llrun (the landrun stand-in) (ratio of their geomeans)":    {false, 5.3 / 2.9},
		"rg under agentexec serve vs llrun (the landrun stand-in) (medians)":         {true, 20.0 / 28},
	}
	if len(got) != len(want) {
		t.Fatalf("targets %+v, want %d", r.Targets, len(want))
	}
	for name, w := range want {
		g, ok := got[name]
		if !ok || g.met != w.met || g.meas < w.meas-1e-9 || g.meas > w.meas+1e-9 {
			t.Errorf("%s: %+v, want %+v", name, g, w)
		}
	}

	// Bounds: serve at exactly 1.30 is met, above is not; rg 6% over is missed;
	// run at parity with bubblewrap is not below it.
	r = report([]string{"direct", "bwrap", "landrun", "llrun", "agentexec-run", "agentexec-serve"},
		map[string]float64{"direct": 1, "bwrap": 3, "landrun": 3, "llrun": 3, "agentexec-run": 3, "agentexec-serve": 1.31},
		map[string]time.Duration{"landrun": 100 * ms, "llrun": 10 * ms, "agentexec-serve": 106 * ms})
	r.judge()
	var text strings.Builder
	r.writeTargets(&text)
	for _, line := range []string{
		"MISSED  agentexec serve through a client vs a direct launch (geomean over the mix): want <= 1.30x, measured 1.31x",
		"MISSED  agentexec run vs bubblewrap (ratio of their geomeans): want < 1.00x, measured 1.00x",
		"MISSED  agentexec run vs landrun (ratio of their geomeans)",
		"MISSED  rg under agentexec serve vs landrun (medians): want <= 1.05x, measured 1.06x",
	} {
		if !strings.Contains(text.String(), line) {
			t.Errorf("targets text lacks %q:\n%s", line, text.String())
		}
	}
	if strings.Contains(text.String(), "llrun") {
		t.Errorf("llrun judged although landrun ran:\n%s", text.String())
	}
	r.Geomean["agentexec-serve"] = 1.30
	r.judge()
	if !r.Targets[0].Met {
		t.Errorf("serve at 1.30x: %+v, want met", r.Targets[0])
	}

	// No rows to judge: no targets, no section.
	r = report([]string{"direct", "agentexec-version"}, map[string]float64{"direct": 1, "agentexec-version": 3}, nil)
	r.judge()
	text.Reset()
	r.writeTargets(&text)
	if len(r.Targets) != 0 || text.Len() != 0 {
		t.Errorf("targets %+v, text %q; want none", r.Targets, text.String())
	}
}
