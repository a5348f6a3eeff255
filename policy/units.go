package policy

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

var sizeRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?) ?([A-Za-z]*)$`) })

// sizeUnits maps size suffixes to multipliers. K, M, G, T and the IEC forms KiB… are
// powers of 1024 (as cgroup files and most container tools read them); KB, MB, GB, TB
// are powers of 1000.
var sizeUnits = map[string]float64{
	"": 1, "B": 1,
	"K": 1 << 10, "k": 1 << 10, "KiB": 1 << 10, "KB": 1e3, "kB": 1e3,
	"M": 1 << 20, "MiB": 1 << 20, "MB": 1e6,
	"G": 1 << 30, "GiB": 1 << 30, "GB": 1e9,
	"T": 1 << 40, "TiB": 1 << 40, "TB": 1e12,
}

// ParseSize parses a byte size: "4096", "512MiB", "1G", "1.5GiB", "100MB".
// K/M/G/T and KiB/MiB/GiB/TiB are binary (1024-based), KB/MB/GB/TB decimal.
// Fractions are rounded down to whole bytes. The result is positive; zero, negative
// and out-of-range sizes are errors.
func ParseSize(s string) (int64, error) {
	m := sizeRE().FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("%q is not a size (examples: 4096, 512MiB, 1G)", s)
	}
	mult, ok := sizeUnits[m[2]]
	if !ok {
		return 0, fmt.Errorf("%q is not a size: unknown unit %q (use B, KiB, MiB, GiB, TiB, K, M, G, T, KB, MB, GB or TB)", s, m[2])
	}
	if strings.Contains(m[1], ".") && mult == 1 {
		return 0, fmt.Errorf("%q is not a size: a byte count is a whole number", s)
	}
	if !strings.Contains(m[1], ".") {
		n, err := strconv.ParseInt(m[1], 10, 64)
		if err == nil {
			if n == 0 {
				return 0, fmt.Errorf("%q: a size must be at least 1 byte (write unlimited for no limit)", s)
			}
			if n > math.MaxInt64/int64(mult) {
				return 0, fmt.Errorf("%q is too large", s)
			}
			return n * int64(mult), nil
		}
	}
	f, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, fmt.Errorf("%q is too large", s)
	}
	v := f * mult
	if v >= math.MaxInt64 {
		return 0, fmt.Errorf("%q is too large", s)
	}
	if v < 1 {
		return 0, fmt.Errorf("%q: a size must be at least 1 byte (write unlimited for no limit)", s)
	}
	return int64(v), nil
}

var cpuRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)(%?)$`) })

// minCPU is the smallest quota cpu.max accepts with the default 100ms period (1ms).
const minCPU = 0.01

// maxCPU bounds cpu limits to something a host can have.
const maxCPU = 1 << 16

// ParseCPU parses a CPU limit in cores: "1.5" (one and a half cores) or "150%".
// The result lies between 0.01 and 65536 cores.
func ParseCPU(s string) (float64, error) {
	m := cpuRE().FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("%q is not a CPU limit (write cores, as 1.5, or a percentage, as 150%%)", s)
	}
	f, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a CPU limit: %w", s, err)
	}
	if m[2] == "%" {
		f /= 100
	}
	if f < minCPU {
		return 0, fmt.Errorf("%q: a CPU limit must be at least 0.01 cores (1%%)", s)
	}
	if f > maxCPU {
		return 0, fmt.Errorf("%q: a CPU limit must be at most %d cores", s, maxCPU)
	}
	return f, nil
}

// ParseDuration parses a positive Go duration: "30s", "1m30s", "250ms".
func ParseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (examples: 30s, 1m30s, 250ms)", s)
	}
	if d <= 0 {
		return 0, fmt.Errorf("%q: a duration must be positive (write unlimited for no limit)", s)
	}
	return d, nil
}

// isUnlimited reports whether s spells "no limit".
func isUnlimited(s string) bool { return s == "unlimited" || s == "max" }
