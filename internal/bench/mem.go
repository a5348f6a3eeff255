package bench

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Resident memory of a process tree, counted once per physical page.
//
// Summing VmRSS over serve and its spawners counts every page of the agentexec
// binary that both map twice (they are one file in the page cache), and fault-around
// makes that file part the larger one: in an idle serve most of each process's RSS is
// the same text and read-only data. distinctResidentKiB reads each process's page
// table through /proc/PID/pagemap and counts the distinct physical frames mapped by
// any of them: the memory the tree really holds. It needs CAP_SYS_ADMIN (without it
// the kernel reports every frame number as 0) and returns ok false then.

const (
	pagemapPresent = 1 << 63
	pagemapPFNMask = 1<<55 - 1
)

// distinctResidentKiB returns the KiB of distinct physical pages mapped by pids.
func distinctResidentKiB(pids []int) (kib int64, ok bool) {
	frames := map[uint64]struct{}{}
	pageKiB := int64(os.Getpagesize() / 1024)
	for _, pid := range pids {
		if err := addFrames(pid, frames); err != nil {
			return 0, false
		}
	}
	return int64(len(frames)) * pageKiB, len(frames) > 0
}

// addFrames adds the frames of pid's present pages to frames. A frame number of 0
// for a present page means the caller may not see frame numbers: an error.
func addFrames(pid int, frames map[uint64]struct{}) error {
	maps, err := os.Open("/proc/" + strconv.Itoa(pid) + "/maps")
	if err != nil {
		return err
	}
	defer maps.Close()
	pm, err := os.Open("/proc/" + strconv.Itoa(pid) + "/pagemap")
	if err != nil {
		return err
	}
	defer pm.Close()
	page := uint64(os.Getpagesize())
	var buf []byte
	sc := bufio.NewScanner(maps)
	for sc.Scan() {
		rng, _, _ := strings.Cut(sc.Text(), " ")
		lo, hi, found := strings.Cut(rng, "-")
		if !found {
			return fmt.Errorf("maps line %q", sc.Text())
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			return fmt.Errorf("maps line %q", sc.Text())
		}
		if strings.HasSuffix(sc.Text(), "[vsyscall]") {
			continue // not readable through pagemap
		}
		// Read the mapping's entries in chunks (Go reserves large PROT_NONE areas).
		for addr := start; addr < end; {
			n := min((end-addr)/page, 1<<15)
			if cap(buf) < int(n*8) {
				buf = make([]byte, n*8)
			}
			b := buf[:n*8]
			if _, err := pm.ReadAt(b, int64(addr/page*8)); err != nil {
				return fmt.Errorf("pagemap of %d at %#x: %w", pid, addr, err)
			}
			for i := uint64(0); i < n; i++ {
				e := binary.NativeEndian.Uint64(b[i*8:]) // pagemap entries are native u64s
				if e&pagemapPresent == 0 {
					continue
				}
				pfn := e & pagemapPFNMask
				if pfn == 0 {
					return fmt.Errorf("pagemap of %d: frame numbers hidden (needs CAP_SYS_ADMIN)", pid)
				}
				frames[pfn] = struct{}{}
			}
			addr += n * page
		}
	}
	return sc.Err()
}

// treePids returns pid and its descendants.
func treePids(pid int) []int {
	out := []int{pid}
	for _, c := range childPids(pid) {
		out = append(out, treePids(c)...)
	}
	return out
}
