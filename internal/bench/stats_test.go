package bench

import (
	"math"
	"testing"
	"time"
)

func us(v ...int) []time.Duration {
	d := make([]time.Duration, len(v))
	for i, x := range v {
		d[i] = time.Duration(x) * time.Microsecond
	}
	return d
}

func TestPercentile(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Microsecond
	}
	cases := []struct {
		name string
		d    []time.Duration
		p    float64
		want time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one", us(7), 99, 7 * time.Microsecond},
		{"odd median", us(1, 2, 9), 50, 2 * time.Microsecond},
		{"even median is the mean of the middle two", us(1, 2, 4, 9), 50, 3 * time.Microsecond},
		{"p99 of 100 is the 99th value", hundred, 99, 99 * time.Microsecond},
		{"p99 of 10 is the largest", us(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 99, 10 * time.Microsecond},
		{"p100", us(1, 5), 100, 5 * time.Microsecond},
	}
	for _, c := range cases {
		if got := Percentile(c.d, c.p); got != c.want {
			t.Errorf("%s: Percentile(%v, %v) = %v, want %v", c.name, c.d, c.p, got, c.want)
		}
	}
}

func TestSummarize(t *testing.T) {
	s := Summarize(us(30, 10, 20, 40))
	want := Summary{N: 4, MedianUS: 25, P99US: 40, MeanUS: 25, MinUS: 10}
	if s != want {
		t.Errorf("Summarize = %+v, want %+v", s, want)
	}
	if (Summarize(nil) != Summary{}) {
		t.Error("Summarize(nil) is not zero")
	}
}

func TestGeoMean(t *testing.T) {
	cases := []struct {
		v    []float64
		want float64
	}{
		{nil, 0},
		{[]float64{2}, 2},
		{[]float64{1, 4}, 2},
		{[]float64{0.5, 2, 1}, 1},
	}
	for _, c := range cases {
		if got := GeoMean(c.v); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("GeoMean(%v) = %v, want %v", c.v, got, c.want)
		}
	}
}

func TestSameLines(t *testing.T) {
	if !sameLines([]byte("b\na\n"), []byte("a\nb\n")) {
		t.Error("reordered lines differ")
	}
	if sameLines([]byte("a\n"), []byte("a\na\n")) || sameLines([]byte("a\n"), []byte("b\n")) {
		t.Error("different outputs compare equal")
	}
}
