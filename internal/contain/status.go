package contain

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Status is the containment state of a process as /proc/PID/status shows it.
type Status struct {
	CapInh, CapPrm, CapEff, CapBnd, CapAmb uint64
	NoNewPrivs                             bool
	// Seccomp is 0 (off), 1 (strict) or 2 (filter).
	Seccomp int
	// SeccompFilters is the number of filters attached ("Seccomp_filters").
	SeccompFilters int
	// UID and GID are the real, effective, saved and filesystem ids.
	UID, GID [4]uint32
}

// ReadStatus parses a /proc/PID/status file ("/proc/self/status",
// "/proc/thread-self/status", ...).
func ReadStatus(path string) (Status, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Status{}, fmt.Errorf("read process status: %w", err)
	}
	st, err := ParseStatus(b)
	if err != nil {
		return Status{}, fmt.Errorf("%s: %w", path, err)
	}
	return st, nil
}

// ParseStatus parses the text of a /proc/PID/status file.
func ParseStatus(b []byte) (Status, error) {
	var st Status
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		var err error
		hex := func(dst *uint64) { *dst, err = strconv.ParseUint(val, 16, 64) }
		switch key {
		case "CapInh":
			hex(&st.CapInh)
		case "CapPrm":
			hex(&st.CapPrm)
		case "CapEff":
			hex(&st.CapEff)
		case "CapBnd":
			hex(&st.CapBnd)
		case "CapAmb":
			hex(&st.CapAmb)
		case "NoNewPrivs":
			st.NoNewPrivs = val == "1"
		case "Seccomp":
			st.Seccomp, err = strconv.Atoi(val)
		case "Seccomp_filters":
			st.SeccompFilters, err = strconv.Atoi(val)
		case "Uid", "Gid":
			dst := &st.UID
			if key == "Gid" {
				dst = &st.GID
			}
			f := strings.Fields(val)
			if len(f) != 4 {
				err = fmt.Errorf("want 4 ids, got %q", val)
				break
			}
			for i, s := range f {
				var n uint64
				n, err = strconv.ParseUint(s, 10, 32)
				if err != nil {
					break
				}
				dst[i] = uint32(n)
			}
		}
		if err != nil {
			return Status{}, fmt.Errorf("field %s: %w", key, err)
		}
	}
	return st, sc.Err()
}
