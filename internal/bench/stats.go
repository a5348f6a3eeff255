package bench

import (
	"math"
	"slices"
	"time"
)

// Summary describes a sample of call latencies.
type Summary struct {
	// N is the number of samples.
	N int `json:"n"`
	// MedianUS, P99US and MeanUS are microseconds per call; P99 is the nearest-rank
	// 99th percentile (with 100 samples: the second largest).
	MedianUS float64 `json:"median_us"`
	P99US    float64 `json:"p99_us"`
	MeanUS   float64 `json:"mean_us"`
	MinUS    float64 `json:"min_us"`
}

// Summarize computes a Summary; it sorts d in place.
func Summarize(d []time.Duration) Summary {
	if len(d) == 0 {
		return Summary{}
	}
	slices.Sort(d)
	var sum time.Duration
	for _, x := range d {
		sum += x
	}
	us := func(x time.Duration) float64 { return float64(x.Nanoseconds()) / 1e3 }
	return Summary{
		N:        len(d),
		MedianUS: us(Percentile(d, 50)),
		P99US:    us(Percentile(d, 99)),
		MeanUS:   us(sum) / float64(len(d)),
		MinUS:    us(d[0]),
	}
}

// Percentile returns the nearest-rank p-th percentile of sorted d (p in (0, 100]);
// the 50th of an even-sized sample is the mean of the two middle values.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	if p == 50 && n%2 == 0 {
		return (sorted[n/2-1] + sorted[n/2]) / 2
	}
	rank := int(math.Ceil(p / 100 * float64(n)))
	rank = min(max(rank, 1), n)
	return sorted[rank-1]
}

// GeoMean returns the geometric mean of positive values (0 for none).
func GeoMean(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	var s float64
	for _, x := range v {
		s += math.Log(x)
	}
	return math.Exp(s / float64(len(v)))
}

// ratio returns a/b, or 0 when b is 0.
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}
