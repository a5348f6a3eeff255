package peerbench

import (
	"fmt"
	"io"
)

// Target is one of issue 18's targets judged from a report (docs/performance.md,
// "Peers"): a ratio measured in the run against its bound (Want).
type Target struct {
	Name     string  `json:"name"`
	Want     string  `json:"want"`
	Measured float64 `json:"measured"`
	Met      bool    `json:"met"`
}

// landrunRow is the row that stands for landrun: landrun itself when it ran,
// else llrun (its stand-in), else none.
func (r *Report) landrunRow() (name, label string) {
	for _, want := range []struct{ name, label string }{{"landrun", "landrun"}, {"llrun", "llrun (the landrun stand-in)"}} {
		for _, b := range r.Backends {
			if b.Name == want.name {
				return want.name, want.label
			}
		}
	}
	return "", ""
}

func (r *Report) has(name string) bool {
	for _, b := range r.Backends {
		if b.Name == name {
			return true
		}
	}
	return false
}

// judge fills r.Targets with the targets whose rows ran: a serve client within
// 1.3× a direct launch over the mix; `agentexec run` below bubblewrap and below
// landrun (ratios of the geometric means); rg under serve within 5% of landrun.
func (r *Report) judge() {
	r.Targets = nil
	// atMost: measured <= bound; below: measured < bound.
	atMost := func(name string, measured, bound float64) {
		r.Targets = append(r.Targets, Target{Name: name, Want: fmt.Sprintf("<= %.2fx", bound), Measured: measured, Met: measured <= bound})
	}
	below := func(name string, measured, bound float64) {
		r.Targets = append(r.Targets, Target{Name: name, Want: fmt.Sprintf("< %.2fx", bound), Measured: measured, Met: measured < bound})
	}
	if r.has("agentexec-serve") {
		atMost("agentexec serve through a client vs a direct launch (geomean over the mix)", r.Geomean["agentexec-serve"], 1.30)
	}
	lr, lrLabel := r.landrunRow()
	if r.has("agentexec-run") {
		if r.has("bwrap") {
			below("agentexec run vs bubblewrap (ratio of their geomeans)", r.Geomean["agentexec-run"]/r.Geomean["bwrap"], 1)
		}
		if lr != "" {
			below("agentexec run vs "+lrLabel+" (ratio of their geomeans)", r.Geomean["agentexec-run"]/r.Geomean[lr], 1)
		}
	}
	if lr != "" && r.has("agentexec-serve") {
		for _, c := range r.Mix {
			if c.Name == "rg" && c.Cells[lr].Median > 0 {
				atMost("rg under agentexec serve vs "+lrLabel+" (medians)", ratio(c.Cells["agentexec-serve"].Median, c.Cells[lr].Median), 1.05)
			}
		}
	}
}

// writeTargets prints r.Targets after the tables.
func (r *Report) writeTargets(w io.Writer) {
	if len(r.Targets) == 0 {
		return
	}
	fmt.Fprintln(w, "\ntargets (issue 18):")
	for _, t := range r.Targets {
		verdict := "MISSED"
		if t.Met {
			verdict = "met"
		}
		fmt.Fprintf(w, "  %-7s %s: want %s, measured %.2fx\n", verdict, t.Name, t.Want, t.Measured)
	}
}
