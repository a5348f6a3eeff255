// Command benchfmt turns `agentexec bench -json` reports into Go benchmark lines,
// so that benchstat can compare runs (docs/performance.md, "Before and after"):
//
//	agentexec bench -json -skip-extras > run1.json
//	go run ./scripts/benchfmt run1.json run2.json ... > runs.txt
//	benchstat before.txt after.txt
//
// Per mix call and backend it prints the median latency (ns/op) and its ratio to
// the run's baseline (x-baseline), and per backend the geometric mean of those
// ratios (BenchmarkMix/geomean).
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

type report struct {
	Baseline string `json:"baseline"`
	Tools    []struct {
		Name    string `json:"name"`
		Results []struct {
			Backend     string  `json:"backend"`
			N           int     `json:"n"`
			MedianUS    float64 `json:"median_us"`
			MedianRatio float64 `json:"median_ratio"`
			Failures    int     `json:"failures"`
		} `json:"results"`
	} `json:"tools"`
	Overall []struct {
		Backend     string  `json:"backend"`
		GeomeanMed  float64 `json:"geomean_median_ratio"`
		ParallelCPS float64 `json:"parallel_calls_per_s"`
	} `json:"overall"`
}

// name makes a benchmark name element of s (no spaces or slashes).
func name(s string) string {
	return strings.NewReplacer(" ", "_", "/", "-").Replace(s)
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: benchfmt REPORT.json...")
		os.Exit(2)
	}
	for _, path := range os.Args[1:] {
		b, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		var r report
		if err := json.Unmarshal(b, &r); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", path, err)
			os.Exit(1)
		}
		for _, t := range r.Tools {
			for _, res := range t.Results {
				if res.N == 0 || res.Failures > 0 {
					continue
				}
				fmt.Printf("BenchmarkMix/%s/%s %d %.0f ns/op %.4f x-%s\n",
					name(t.Name), name(res.Backend), res.N, res.MedianUS*1000, res.MedianRatio, name(r.Baseline))
			}
		}
		for _, o := range r.Overall {
			fmt.Printf("BenchmarkMix/geomean/%s 1 %.4f x-%s %.1f calls/s\n", name(o.Backend), o.GeomeanMed, name(r.Baseline), o.ParallelCPS)
		}
	}
}
