package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/cgroups/v3/cgroup2"
	"golang.org/x/sys/unix"
)

// DefaultPrefix names the cgroups agentexec creates: <prefix>-<pid> for a Manager's
// base directory, <prefix>-<pid>-self for the leaf this process may move into.
const DefaultPrefix = "agentexec"

// DefaultControllers are enabled for the pool when the host offers them.
var DefaultControllers = []string{"memory", "pids", "cpu"}

// LeafPolicy says when NewManager moves this process out of its own cgroup into a
// leaf <Self>/<prefix>-<pid>-self.
type LeafPolicy int

const (
	// LeafAuto moves only when it must: Self is not the root, holds processes, and
	// controllers have to be enabled in its cgroup.subtree_control (the kernel refuses
	// with EBUSY otherwise: the no-internal-processes rule).
	LeafAuto LeafPolicy = iota
	// LeafAlways moves whenever Self is not the root (keeps Self free of processes so
	// that controllers can be enabled later).
	LeafAlways
)

// Options configure a Manager.
type Options struct {
	// Prefix of every directory the Manager creates; DefaultPrefix when empty. Stale
	// directories are recognised by it, so only one prefix per deployment.
	Prefix string
	// Controllers to enable for the pools when available; DefaultControllers when nil.
	// Enabling memory/pids also gives Usage its memory.peak, oom_kill and pids.peak.
	Controllers []string
	// Leaf says when to move this process into a leaf; LeafAuto by default.
	Leaf LeafPolicy
	// DrainTimeout bounds how long a kill waits for a cgroup to become empty (stale
	// cleanup, dirty groups, Close); 10s when zero.
	DrainTimeout time.Duration
}

// Manager owns <Dir>/<prefix>-<pid>: the base of this process's pools. One per
// runtime; safe for concurrent use.
type Manager struct {
	info    Info
	prefix  string
	base    string // absolute path of the base directory
	cg      *cgroup2.Manager
	enabled []string // controllers enabled in base's cgroup.subtree_control
	drain   time.Duration
	moved   bool // this Manager holds a reference on the process leaf

	// Probed once, here, instead of per call (cgroup2.Manager.Kill tries cgroup.kill
	// and logs a warning on every fallback).
	hasKill, hasFreeze bool

	probeOnce          sync.Once
	memPeakResettable  bool // memory.peak accepts the fd-local reset (Linux 6.12)
	pidsPeakResettable bool
	hasSwapMax         bool

	warnings []string

	mu     sync.Mutex
	pools  map[string]*Pool
	closed bool
	bg     sync.WaitGroup // background recycling, replacement and the stale sweep

	// stopSweep, closed by Close, ends the background stale sweep between groups.
	stopSweep chan struct{}
	// staleChecked counts the owner checks NewManager made itself (for tests).
	staleChecked int
}

// leaf is the process-wide state of the move into <Self>/<prefix>-<pid>-self: a
// process is in exactly one cgroup, so Managers share it by reference count.
var leaf struct {
	mu        sync.Mutex
	refs      int
	path      string   // absolute leaf path
	origin    string   // absolute path of the cgroup we left
	enabledIn []string // controllers we enabled in origin's subtree_control
}

// NewManager prepares the base directory for pools under info.Dir. In order: it
// removes stale <prefix>-<pid> directories whose pid is dead (killing what they still
// hold, with cgroup.kill, then rmdir bottom-up; at most StaleChecksAtStart of them
// are checked here, the others in the background, see removeStale); moves this process into a leaf when
// required (see LeafPolicy); enables the wanted and available controllers in Self's
// and the base's cgroup.subtree_control; creates <Dir>/<prefix>-<pid>.
//
// A controller that cannot be enabled is not an error: it is missing from
// Controllers() and reported by Unenforced, and Warnings() says why. Nor is a stale
// group that cannot be removed (Warnings() names it).
func NewManager(info *Info, opts Options) (*Manager, error) {
	if info == nil || info.Mode == ModeNone {
		return nil, &FeatureError{Feature: "cgroup v2", Have: "no cgroup2 mount", Want: "cgroup2 at " + unifiedMount + " or " + hybridMount}
	}
	if !info.CanCreate {
		return nil, fmt.Errorf("%w under %s: %s", ErrCannotCreate, info.Dir, info.Reason)
	}
	m := &Manager{
		info:      *info,
		prefix:    opts.Prefix,
		drain:     opts.DrainTimeout,
		hasKill:   info.HasKill,
		hasFreeze: info.HasFreeze,
		pools:     map[string]*Pool{},
		stopSweep: make(chan struct{}),
	}
	if m.prefix == "" {
		m.prefix = DefaultPrefix
	}
	if strings.ContainsAny(m.prefix, "/\n") || m.prefix == "." || m.prefix == ".." {
		return nil, fmt.Errorf("cgroup: invalid prefix %q", m.prefix)
	}
	if m.drain <= 0 {
		m.drain = 10 * time.Second
	}
	want := opts.Controllers
	if want == nil {
		want = DefaultControllers
	}

	// Stale groups are other, dead runtimes' leftovers: failing to remove one is
	// reported, never a reason to run this runtime's tools without cgroups.
	rest, err := m.removeStale()
	if err != nil {
		m.warnings = append(m.warnings, err.Error())
	}

	var avail []string
	for _, c := range want {
		if info.Has(c) {
			avail = append(avail, c)
		} else {
			m.warnings = append(m.warnings, fmt.Sprintf("controller %s not available: absent from %s/cgroup.controllers", c, info.Dir))
		}
	}
	var toEnable []string
	for _, c := range avail {
		if !contains(info.SubtreeControl, c) {
			toEnable = append(toEnable, c)
		}
	}
	needMove := !info.IsRoot() && (opts.Leaf == LeafAlways || (len(toEnable) > 0 && info.SelfProcs > 0))
	if needMove {
		if err := m.enterLeaf(toEnable); err != nil {
			return nil, err
		}
	} else if len(toEnable) > 0 {
		if err := writeSubtree(info.Dir, toEnable, '+'); err != nil {
			m.warnings = append(m.warnings, err.Error())
		}
	}

	if err := m.makeBase(); err != nil {
		_ = m.exitLeaf() // the makeBase error is the one to report
		return nil, err
	}
	if len(avail) > 0 {
		if err := writeSubtree(m.base, avail, '+'); err != nil {
			m.warnings = append(m.warnings, err.Error())
		}
	}
	enabled, err := readFields(filepath.Join(m.base, "cgroup.subtree_control"))
	if err != nil {
		_ = unix.Rmdir(m.base)
		_ = m.exitLeaf() // the read error is the one to report
		return nil, err
	}
	m.enabled = enabled
	// The base is a non-root cgroup: probe cgroup.kill/freeze where they must exist.
	_, err = os.Stat(filepath.Join(m.base, "cgroup.kill"))
	m.hasKill = err == nil
	_, err = os.Stat(filepath.Join(m.base, "cgroup.freeze"))
	m.hasFreeze = err == nil
	if len(rest) > 0 {
		m.bg.Add(1)
		go m.sweepStale(rest)
	}
	return m, nil
}

// makeBase creates <Dir>/<prefix>-<pid>, or <prefix>-<pid>-<n> when this process
// already has one (several Managers, or a base a previous Close could not remove).
func (m *Manager) makeBase() error {
	pid := os.Getpid()
	for n := 0; n < 1000; n++ {
		name := m.prefix + "-" + strconv.Itoa(pid)
		if n > 0 {
			name += "-" + strconv.Itoa(n)
		}
		p := filepath.Join(m.info.Dir, name)
		err := unix.Mkdir(p, 0o755)
		if errors.Is(err, unix.EEXIST) {
			continue
		}
		if err != nil {
			return fmt.Errorf("cgroup: mkdir %s: %w", p, err)
		}
		m.base = p
		markOwner(p)
		// containerd's Load only records the path; it is used for Update (limits),
		// NewChild (mkdir) and Procs.
		m.cg, err = cgroup2.Load(filepath.Join(m.info.Self, name), cgroup2.WithMountpoint(m.info.Mount))
		if err != nil {
			_ = unix.Rmdir(p)
			return fmt.Errorf("cgroup: load %s: %w", p, err)
		}
		return nil
	}
	return fmt.Errorf("cgroup: no free base name %s-%d-N under %s", m.prefix, pid, m.info.Dir)
}

// enterLeaf moves this process into <Dir>/<prefix>-<pid>-self (shared by all Managers
// of the process) and then enables toEnable in Dir's subtree_control.
func (m *Manager) enterLeaf(toEnable []string) error {
	leaf.mu.Lock()
	defer leaf.mu.Unlock()
	if leaf.refs > 0 {
		leaf.refs++
		m.moved = true
		return nil
	}
	p := filepath.Join(m.info.Dir, m.prefix+"-"+strconv.Itoa(os.Getpid())+"-self")
	if err := unix.Mkdir(p, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("cgroup: mkdir leaf %s: %w", p, err)
	}
	markOwner(p)
	if err := writeFile(filepath.Join(p, "cgroup.procs"), strconv.Itoa(os.Getpid())); err != nil {
		_ = unix.Rmdir(p)
		return fmt.Errorf("cgroup: moving this process into leaf: %w", err)
	}
	leaf.refs, leaf.path, leaf.origin, leaf.enabledIn = 1, p, m.info.Dir, nil
	m.moved = true
	if len(toEnable) > 0 {
		if err := writeSubtree(m.info.Dir, toEnable, '+'); err != nil {
			// EBUSY here: other processes remain in Dir.
			m.warnings = append(m.warnings, err.Error())
		} else {
			leaf.enabledIn = toEnable
		}
	}
	return nil
}

// exitLeaf drops this Manager's reference on the leaf; the last one disables what it
// enabled in the origin, moves the leaf's processes back and removes the leaf.
func (m *Manager) exitLeaf() error {
	if !m.moved {
		return nil
	}
	m.moved = false
	leaf.mu.Lock()
	defer leaf.mu.Unlock()
	leaf.refs--
	if leaf.refs > 0 {
		return nil
	}
	var errs []error
	if len(leaf.enabledIn) > 0 {
		if err := writeSubtree(leaf.origin, leaf.enabledIn, '-'); err != nil {
			errs = append(errs, err)
		}
	}
	pids, err := readPids(filepath.Join(leaf.path, "cgroup.procs"))
	if err != nil {
		errs = append(errs, err)
	}
	for _, pid := range pids {
		if err := writeFile(filepath.Join(leaf.origin, "cgroup.procs"), strconv.Itoa(pid)); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("cgroup: moving pid %d back to %s: %w", pid, leaf.origin, err))
		}
	}
	if err := unix.Rmdir(leaf.path); err != nil {
		errs = append(errs, fmt.Errorf("cgroup: rmdir leaf %s: %w", leaf.path, err))
	}
	leaf.path, leaf.origin, leaf.enabledIn = "", "", nil
	return errors.Join(errs...)
}

// parseStaleName parses <prefix>-<pid>, <prefix>-<pid>-<n> and <prefix>-<pid>-self
// (pid and n decimal digits); ok is false for any other name.
func parseStaleName(prefix, name string) (pid int, self, ok bool) {
	rest, found := strings.CutPrefix(name, prefix+"-")
	if !found {
		return 0, false, false
	}
	digits, suffix, hasSuffix := strings.Cut(rest, "-")
	if !allDigits(digits) || hasSuffix && suffix != "self" && !allDigits(suffix) {
		return 0, false, false
	}
	pid, err := strconv.Atoi(digits)
	if err != nil {
		return 0, false, false
	}
	return pid, suffix == "self", true
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// StaleChecksAtStart bounds the candidate directories (named <prefix>-<pid>…, pid
// not this process's) whose owner NewManager checks before it returns: each check
// costs a kill(pid, 0), a getxattr and a read of /proc/<pid>/stat, and a host with a
// few hundred runtimes has a few hundred candidates, nearly all of them live. The
// candidates are taken in random order, so that the stale ones among them are
// reached by some start even when every process is short-lived; the rest are
// checked by a background goroutine of the Manager, which Close stops.
const StaleChecksAtStart = 8

// staleBudget is StaleChecksAtStart; benchmarks raise it to measure the unbounded
// scan.
var staleBudget = StaleChecksAtStart

// staleCandidate is a directory of Dir that may be a stale base or leaf.
type staleCandidate struct {
	name string
	pid  int
	self bool // <prefix>-<pid>-self
}

// removeStale removes directories left in Dir by an earlier process with the same
// prefix that no longer runs: its pid is gone, or (where the trusted.agentexec.owner
// xattr could be written) the pid now belongs to a process with another start time.
// It checks at most StaleChecksAtStart candidates, chosen at random, and returns the
// others for sweepStale.
func (m *Manager) removeStale() (rest []staleCandidate, err error) {
	entries, err := os.ReadDir(m.info.Dir) // names and types only: no call per entry
	if err != nil {
		return nil, fmt.Errorf("cgroup: scanning for stale cgroups: %w", err)
	}
	var cands []staleCandidate
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		pid, self, ok := parseStaleName(m.prefix, e.Name())
		if !ok || pid == os.Getpid() {
			continue
		}
		cands = append(cands, staleCandidate{name: e.Name(), pid: pid, self: self})
	}
	rand.Shuffle(len(cands), func(i, j int) { cands[i], cands[j] = cands[j], cands[i] })
	n := min(len(cands), staleBudget)
	var errs []error
	for _, c := range cands[:n] {
		m.staleChecked++
		errs = append(errs, m.removeIfStale(c))
	}
	return cands[n:], errors.Join(errs...)
}

// sweepStale checks the candidates NewManager left, until done or Close. Failures
// are reported by Warnings.
func (m *Manager) sweepStale(cands []staleCandidate) {
	defer m.bg.Done()
	for _, c := range cands {
		select {
		case <-m.stopSweep:
			return
		default:
		}
		if err := m.removeIfStale(c); err != nil {
			m.mu.Lock()
			m.warnings = append(m.warnings, err.Error())
			m.mu.Unlock()
		}
	}
}

// removeIfStale removes the candidate if its owner no longer runs.
func (m *Manager) removeIfStale(c staleCandidate) error {
	dir := filepath.Join(m.info.Dir, c.name)
	if ownerAlive(dir, c.pid) {
		return nil
	}
	if c.self {
		// The dead process's leaf: it may hold that process's other children, which
		// are not ours to kill. Remove it only when empty.
		if err := unix.Rmdir(dir); err != nil && !errors.Is(err, unix.EBUSY) && !removed(err) {
			return fmt.Errorf("cgroup: rmdir stale leaf %s: %w", dir, err)
		}
		return nil
	}
	if err := m.destroyTree(dir); err != nil {
		return fmt.Errorf("cgroup: removing stale %s: %w", dir, err)
	}
	return nil
}

func pidAlive(pid int) bool {
	err := unix.Kill(pid, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}

// ownerXattr records on a base directory "<pid> <starttime>" of the process that made
// it, so that a reused pid is not taken for the owner. cgroupfs keeps trusted.*
// xattrs (root only); without it, ownership falls back to the pid alone.
const ownerXattr = "trusted.agentexec.owner"

// ownerAlive reports whether the process that created dir still runs: pid exists and,
// when dir carries ownerXattr, has the recorded start time.
func ownerAlive(dir string, pid int) bool {
	if !pidAlive(pid) {
		return false
	}
	var buf [64]byte
	n, err := unix.Getxattr(dir, ownerXattr, buf[:])
	if err != nil {
		return true // no record: trust the pid
	}
	start, ok := startTime(pid)
	return !ok || string(buf[:n]) == strconv.Itoa(pid)+" "+start
}

// startTime returns field 22 (starttime, in clock ticks since boot) of /proc/PID/stat.
func startTime(pid int) (string, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", false
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return "", false
	}
	f := strings.Fields(string(b[i+1:])) // f[0] is field 3 (state)
	if len(f) < 20 {
		return "", false
	}
	return f[19], true
}

// markOwner writes ownerXattr on dir; failure only weakens stale detection.
func markOwner(dir string) {
	if start, ok := startTime(os.Getpid()); ok {
		_ = unix.Setxattr(dir, ownerXattr, []byte(strconv.Itoa(os.Getpid())+" "+start), 0)
	}
}

// destroyTree kills every process in dir's subtree, waits until it is empty and
// removes its directories bottom-up.
//
// Another runtime may remove the same group at the same moment (two runtimes sweeping
// one dead runtime's groups): a group removed between opening one of its files and
// writing or reading it answers ENODEV, which counts as done, like ENOENT.
func (m *Manager) destroyTree(dir string) error {
	if err := m.killDir(dir); err != nil && !removed(err) {
		return err
	}
	if err := waitEventPath(dir, "populated", 0, m.drain); err != nil {
		return err
	}
	return rmdirTree(dir)
}

// removed reports whether err says the cgroup is gone: ENOENT by path, ENODEV on a
// file opened before its group was removed.
func removed(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENODEV)
}

// rmdirTree removes dir and its sub-cgroups, children first.
func rmdirTree(dir string) error {
	entries, err := os.ReadDir(dir)
	if removed(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cgroup: %w", err)
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := rmdirTree(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	if err := unix.Rmdir(dir); err != nil && !removed(err) {
		return fmt.Errorf("cgroup: rmdir %s: %w", dir, err)
	}
	return nil
}

// Info returns what Discover reported (a copy).
func (m *Manager) Info() Info { return m.info }

// Base returns the absolute path of the Manager's base directory.
func (m *Manager) Base() string { return m.base }

// Controllers returns the controllers enabled for the pools' cgroups.
func (m *Manager) Controllers() []string { return append([]string(nil), m.enabled...) }

// HasKill reports whether Kill uses cgroup.kill (probed once in NewManager).
func (m *Manager) HasKill() bool { return m.hasKill }

// Moved reports whether this process moved into a leaf for the Manager.
func (m *Manager) Moved() bool { return m.moved }

// Warnings lists what NewManager could not set up (controllers not enabled, and why).
// Failures of the background stale sweep (see StaleChecksAtStart) are added as they
// happen.
func (m *Manager) Warnings() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.warnings...)
}

// Unenforced returns the names of the limits in l that cannot be enforced here:
// exactly those asked for ("memory" for Memory > 0, "pids" for Pids > 0, "cpu" for
// CPU > 0) whose controller is not enabled for the pools. Empty when all are enforced.
func (m *Manager) Unenforced(l Limits) []string {
	var out []string
	for _, c := range l.Controllers() {
		if !contains(m.enabled, c) {
			out = append(out, c)
		}
	}
	return out
}

// Require returns an *UnenforcedError when some limit of l cannot be enforced, for
// policies that say `cgroup: require`.
func (m *Manager) Require(l Limits) error {
	if u := m.Unenforced(l); len(u) > 0 {
		return &UnenforcedError{Limits: u, Dir: m.info.Dir}
	}
	return nil
}

// Close kills every process left in the Manager's cgroups, removes all pools and the
// base directory, and moves this process back if it moved into a leaf. Groups still
// held by callers are killed and removed too; using them afterwards returns errors.
// Close is meant for shutdown: do not call Group methods concurrently with it.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	pools := make([]*Pool, 0, len(m.pools))
	for _, p := range m.pools {
		pools = append(pools, p)
	}
	m.mu.Unlock()

	var errs []error
	for _, p := range pools {
		p.markClosed()
	}
	close(m.stopSweep)
	m.bg.Wait()
	if err := m.killDir(m.base); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	for _, p := range pools {
		errs = append(errs, p.destroyAll())
	}
	errs = append(errs, m.destroyTree(m.base))
	errs = append(errs, m.exitLeaf())
	return errors.Join(errs...)
}

// probe learns, on the first group created, what the pools' groups offer.
func (m *Manager) probe(g *Group) {
	m.probeOnce.Do(func() {
		_, err := os.Stat(filepath.Join(g.path, "memory.swap.max"))
		m.hasSwapMax = err == nil
		m.memPeakResettable = openResettable(filepath.Join(g.path, "memory.peak"))
		m.pidsPeakResettable = openResettable(filepath.Join(g.path, "pids.peak"))
	})
}

// openResettable reports whether the peak file at path accepts the fd-local reset
// (memory.peak since Linux 6.12): it opens it read-write and writes a reset, which
// only affects reads through that fd. Checked in the VM tier: 6.1 lets root open
// memory.peak O_RDWR and fails the write with EINVAL, and 6.12's pids.peak does the
// same, so the write itself is the probe.
func openResettable(path string) bool {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	_, err = unix.Write(fd, resetValue)
	return err == nil
}

// writeSubtree writes "+c1 +c2" (or '-') to dir's cgroup.subtree_control, by hand:
// cgroup2.Manager.ToggleControllers writes every ancestor from the mount root down,
// which is both needless here and wrong in a delegated subtree.
func writeSubtree(dir string, controllers []string, sign byte) error {
	var b strings.Builder
	for i, c := range controllers {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteByte(sign)
		b.WriteString(c)
	}
	p := filepath.Join(dir, "cgroup.subtree_control")
	if err := writeFile(p, b.String()); err != nil {
		return fmt.Errorf("cgroup: writing %q to %s: %w", b.String(), p, err)
	}
	return nil
}

// writeFile writes s to an existing cgroup interface file in one write(2).
func writeFile(path, s string) error {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	if _, err := unix.Write(fd, []byte(s)); err != nil {
		return &os.PathError{Op: "write", Path: path, Err: err}
	}
	return nil
}
