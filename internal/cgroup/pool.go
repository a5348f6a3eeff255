package cgroup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/cgroups/v3/cgroup2"
	"golang.org/x/sys/unix"
)

// Limits are per-launch resource limits; a zero field means no limit.
type Limits struct {
	Memory int64   // bytes: memory.max (and memory.swap.max 0)
	Pids   int64   // pids.max (Go programs need a few pids for runtime threads)
	CPU    float64 // cores: cpu.max "quota period" with a 100ms period
}

// cpuPeriod is the cpu.max period in microseconds (the kernel default).
const cpuPeriod = 100000

// Controllers returns the controllers the non-zero limits need ("memory", "pids",
// "cpu"), in that fixed order; nil when l sets no limit.
func (l Limits) Controllers() []string {
	var c []string
	if l.Memory > 0 {
		c = append(c, "memory")
	}
	if l.Pids > 0 {
		c = append(c, "pids")
	}
	if l.CPU > 0 {
		c = append(c, "cpu")
	}
	return c
}

// Usage is what one launch consumed, measured since Pool.Get handed the group out.
// A Have* flag is false when the host cannot measure that field (its controller is
// not enabled, or the peak cannot be reset on a reused group); the field is then 0.
// A failed read is an error from Group.Usage, never a silent 0.
type Usage struct {
	CPU        time.Duration // cpu.stat usage_usec delta (always available in v2)
	PeakMemory int64         // memory.peak, bytes
	OOMKills   int64         // memory.events oom_kill delta (may exceed the number of processes)
	PidsPeak   int64         // pids.peak
	HaveCPU    bool
	HaveMemory bool // PeakMemory and OOMKills are valid
	HavePids   bool
}

// Pool hands out pre-created cgroups with the same limits, one per launch. Get and
// Release make no mkdir/rmdir in steady state. Safe for concurrent use.
type Pool struct {
	m      *Manager
	name   string
	limits Limits
	res    *cgroup2.Resources // the enforceable part of limits
	max    int
	// freshOnly: memory is measured but memory.peak cannot be reset, so every
	// release replaces the group (in the background) to keep PeakMemory per launch.
	freshOnly bool

	mu      sync.Mutex
	free    []*Group
	all     map[*Group]struct{}
	total   int // groups existing or being created
	seq     int
	closed  bool
	avail   chan struct{} // closed and replaced when a group is returned to waiters
	waiters int           // getters waiting on avail
	pending int           // released groups being drained or replaced in the background
}

// Group is one per-launch cgroup of a Pool.
type Group struct {
	pool *Pool
	path string

	// fds opened once at creation; -1 when the file does not exist here.
	dir       int // O_PATH|O_DIRECTORY: SysProcAttr.CgroupFD
	procs     int // cgroup.procs, write
	events    int // cgroup.events, read (populated)
	cpuStat   int // cpu.stat
	memPeak   int // memory.peak, O_RDWR when resettable: the reset is local to this fd
	memEvents int // memory.events
	pidsPeak  int // pids.peak

	baseCPU, baseOOM int64 // counters when handed out
	uses             int   // launches since creation (1 during the first)
	inUse            bool
	gone             bool // destroyed (Close or replacement)
	// killed is set once cgroup.kill was written: such a group is never reused.
	// Checked on Linux 6.18: after a write to cgroup.kill, every later child placed
	// into the group by clone3(CLONE_INTO_CGROUP) from outside it is SIGKILLed at
	// fork (the kill sequence is compared against the parent's cgroup), so a killed
	// group is replaced instead.
	killed atomic.Bool

	buf [512]byte // scratch for reads; the group has one user at a time
}

// validPoolName reports whether name matches ^[A-Za-z0-9_.][A-Za-z0-9_.-]{0,63}$
// (by hand: the regular expression's counted repetition costs ~0.3 ms to compile,
// on every one-shot `agentexec run`).
func validPoolName(name string) bool {
	if name == "" || len(name) > 64 || name[0] == '-' {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// NewPool creates a pool of cgroups named <base>/<name>-<n> with l written into each:
// memory.max and memory.swap.max=0 (when memory is set and enforceable), pids.max,
// cpu.max. Limits the host cannot enforce are not written (see Unenforced). initial
// groups are created now; Get grows the pool up to max groups.
func (m *Manager) NewPool(name string, l Limits, initial, max int) (*Pool, error) {
	if !validPoolName(name) {
		return nil, fmt.Errorf("cgroup: invalid pool name %q", name)
	}
	if max <= 0 || initial < 0 || initial > max {
		return nil, fmt.Errorf("cgroup: pool %s: need 0 <= initial (%d) <= max (%d), max > 0", name, initial, max)
	}
	if l.Memory < 0 || l.Pids < 0 || l.CPU < 0 {
		return nil, fmt.Errorf("cgroup: pool %s: negative limit %+v", name, l)
	}
	p := &Pool{m: m, name: name, limits: l, max: max, all: map[*Group]struct{}{}, avail: make(chan struct{})}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, ErrClosed
	}
	if _, dup := m.pools[name]; dup {
		m.mu.Unlock()
		return nil, fmt.Errorf("cgroup: pool %q exists", name)
	}
	m.pools[name] = p
	m.mu.Unlock()

	p.total = initial
	for i := 0; i < initial; i++ {
		g, err := p.create()
		if err != nil {
			// Close (destroyAll) sets total to 0 and removes the groups made so far.
			return nil, errors.Join(err, p.Close())
		}
		p.mu.Lock()
		p.free = append(p.free, g)
		p.mu.Unlock()
	}
	return p, nil
}

// Name returns the pool's name.
func (p *Pool) Name() string { return p.name }

// Limits returns the limits asked for (enforced or not).
func (p *Pool) Limits() Limits { return p.limits }

// Size returns how many groups exist and how many of them are free.
func (p *Pool) Size() (total, free int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.total, len(p.free)
}

// resources builds the containerd Resources for the enforceable limits.
func (p *Pool) resources() *cgroup2.Resources {
	m, l := p.m, p.limits
	r := &cgroup2.Resources{}
	if l.Memory > 0 && contains(m.enabled, "memory") {
		max := l.Memory
		r.Memory = &cgroup2.Memory{Max: &max}
		if m.hasSwapMax {
			zero := int64(0)
			r.Memory.Swap = &zero
		}
	}
	if l.Pids > 0 && contains(m.enabled, "pids") {
		r.Pids = &cgroup2.Pids{Max: l.Pids}
	}
	if l.CPU > 0 && contains(m.enabled, "cpu") {
		quota := int64(l.CPU * cpuPeriod)
		if quota < 1000 { // the kernel's minimum quota is 1ms
			quota = 1000
		}
		period := uint64(cpuPeriod)
		r.CPU = &cgroup2.CPU{Max: cgroup2.NewCPUMax(&quota, &period)}
	}
	return r
}

// create makes one group: mkdir, limits, fds, baselines. The caller has counted it
// in p.total.
func (p *Pool) create() (*Group, error) {
	p.mu.Lock()
	p.seq++
	name := p.name + "-" + strconv.Itoa(p.seq)
	p.mu.Unlock()
	// containerd: NewChild is MkdirAll (with nil resources it toggles nothing).
	child, err := p.m.cg.NewChild(name, nil)
	if err != nil {
		return nil, fmt.Errorf("cgroup: pool %s: mkdir %s: %w", p.name, filepath.Join(p.m.base, name), err)
	}
	g := &Group{pool: p, path: filepath.Join(p.m.base, name), dir: -1, procs: -1, events: -1,
		cpuStat: -1, memPeak: -1, memEvents: -1, pidsPeak: -1}
	fail := func(err error) (*Group, error) {
		g.closeFDs()
		_ = unix.Rmdir(g.path)
		return nil, err
	}
	p.m.probe(g)
	p.mu.Lock()
	if p.res == nil {
		p.res = p.resources()
		p.freshOnly = contains(p.m.enabled, "memory") && !p.m.memPeakResettable
	}
	res := p.res
	p.mu.Unlock()
	// containerd: Update writes the limit files with its value formatting.
	if err := child.Update(res); err != nil {
		return fail(fmt.Errorf("cgroup: pool %s: writing limits to %s: %w", p.name, g.path, err))
	}
	if err := g.open(); err != nil {
		return fail(err)
	}
	if err := g.rebase(); err != nil {
		return fail(err)
	}
	p.mu.Lock()
	p.all[g] = struct{}{}
	p.mu.Unlock()
	return g, nil
}

func (g *Group) open() error {
	var err error
	g.dir, err = unix.Open(g.path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: g.path, Err: err}
	}
	m := g.pool.m
	type file struct {
		fd       *int
		name     string
		flags    int
		optional bool
	}
	files := []file{
		{&g.procs, "cgroup.procs", unix.O_WRONLY, false},
		{&g.events, "cgroup.events", unix.O_RDONLY, false},
		{&g.cpuStat, "cpu.stat", unix.O_RDONLY, false},
	}
	if contains(m.enabled, "memory") {
		flags := unix.O_RDONLY
		if m.memPeakResettable {
			flags = unix.O_RDWR
		}
		files = append(files,
			file{&g.memPeak, "memory.peak", flags, true}, // Linux 5.19
			file{&g.memEvents, "memory.events", unix.O_RDONLY, false})
	}
	if contains(m.enabled, "pids") {
		flags := unix.O_RDONLY
		if m.pidsPeakResettable {
			flags = unix.O_RDWR
		}
		files = append(files, file{&g.pidsPeak, "pids.peak", flags, true}) // Linux 6.1
	}
	for _, f := range files {
		fd, err := unix.Openat(g.dir, f.name, f.flags|unix.O_CLOEXEC, 0)
		if err != nil {
			if f.optional && errors.Is(err, unix.ENOENT) {
				continue
			}
			return &os.PathError{Op: "openat", Path: filepath.Join(g.path, f.name), Err: err}
		}
		*f.fd = fd
	}
	return nil
}

func (g *Group) closeFDs() {
	for _, fd := range []*int{&g.dir, &g.procs, &g.events, &g.cpuStat, &g.memPeak, &g.memEvents, &g.pidsPeak} {
		if *fd >= 0 {
			unix.Close(*fd)
			*fd = -1
		}
	}
}

// rebase records the counters Usage subtracts and resets the resettable peaks. The
// group is empty, so the counters do not move until the next launch.
func (g *Group) rebase() error {
	buf := g.buf[:]
	v, err := readKeyFD(g.cpuStat, buf, "usage_usec")
	if err != nil {
		return fmt.Errorf("cgroup: %s/cpu.stat: %w", g.path, err)
	}
	g.baseCPU = v
	if g.memEvents >= 0 {
		if g.baseOOM, err = readKeyFD(g.memEvents, buf, "oom_kill"); err != nil {
			return fmt.Errorf("cgroup: %s/memory.events: %w", g.path, err)
		}
	}
	m := g.pool.m
	if g.memPeak >= 0 && m.memPeakResettable {
		// Any non-empty write resets the peak seen through this fd to the current usage.
		if _, err := unix.Pwrite(g.memPeak, resetValue, 0); err != nil {
			return &os.PathError{Op: "write (reset)", Path: g.path + "/memory.peak", Err: err}
		}
	}
	if g.pidsPeak >= 0 && m.pidsPeakResettable {
		if _, err := unix.Pwrite(g.pidsPeak, resetValue, 0); err != nil {
			return &os.PathError{Op: "write (reset)", Path: g.path + "/pids.peak", Err: err}
		}
	}
	return nil
}

// Get hands out a free group, ready for a launch. Steady state costs a mutex and a
// slice pop. When no group is free and fewer than max exist, Get creates one (mkdir
// and limit writes, the only slow path). When released groups are being drained or
// replaced in the background, Get waits for the first of them to come back (that is
// bounded by Options.DrainTimeout). When max groups are in use it returns
// ErrPoolExhausted at once; GetContext waits instead.
func (p *Pool) Get() (*Group, error) {
	return p.get(nil) //nolint:staticcheck // a nil ctx means "never wait" (see get)
}

// GetContext is Get that also waits, until ctx is done, while max groups are in use.
func (p *Pool) GetContext(ctx context.Context) (*Group, error) { return p.get(ctx) }

func (p *Pool) get(ctx context.Context) (*Group, error) {
	p.mu.Lock()
	for {
		if p.closed {
			p.mu.Unlock()
			return nil, ErrClosed
		}
		if n := len(p.free); n > 0 {
			g := p.free[n-1]
			p.free = p.free[:n-1]
			g.inUse = true
			g.uses++
			p.mu.Unlock()
			return g, nil
		}
		if p.total < p.max {
			break
		}
		if p.pending == 0 && ctx == nil {
			p.mu.Unlock()
			return nil, fmt.Errorf("%w: %s has %d groups in use", ErrPoolExhausted, p.name, p.max)
		}
		p.waiters++
		avail := p.avail
		p.mu.Unlock()
		var done <-chan struct{}
		if ctx != nil {
			done = ctx.Done()
		}
		var err error
		select {
		case <-avail:
		case <-done:
			err = fmt.Errorf("cgroup: pool %s: waiting for a free group: %w", p.name, ctx.Err())
		}
		p.mu.Lock()
		p.waiters--
		if err != nil {
			p.mu.Unlock()
			return nil, err
		}
	}
	p.total++
	p.mu.Unlock()
	g, err := p.create()
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.total--
		p.wake()
		return nil, err
	}
	if p.closed {
		p.total--
		delete(p.all, g)
		g.closeFDs()
		_ = unix.Rmdir(g.path)
		return nil, ErrClosed
	}
	g.inUse = true
	g.uses++
	return g, nil
}

// wake tells waiting getters that the pool changed. p.mu is held.
func (p *Pool) wake() {
	if p.waiters > 0 {
		close(p.avail)
		p.avail = make(chan struct{})
	}
}

// put returns a clean, empty group to the free list.
func (p *Pool) put(g *Group) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || g.gone {
		return // destroyAll takes care of it
	}
	p.free = append(p.free, g)
	p.wake()
}

// FD returns the group directory's O_PATH|O_DIRECTORY|O_CLOEXEC fd, opened once at
// creation, for syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: g.FD()}. It stays
// owned by the group: do not close it.
func (g *Group) FD() int { return g.dir }

// ProcsFD returns the fd of the group's cgroup.procs, opened once at creation with
// O_WRONLY|O_CLOEXEC (Place writes through it), for backends that move a process in
// themselves: write the decimal pid to it. It stays owned by the group: do not close it.
func (g *Group) ProcsFD() int { return g.procs }

// Path returns the group's absolute path in the v2 mount.
func (g *Group) Path() string { return g.path }

// Place moves pid into the group (a write to cgroup.procs through a kept fd); for
// backends that cannot spawn into the cgroup directly.
func (g *Group) Place(pid int) error {
	if _, err := unix.Pwrite(g.procs, strconv.AppendInt(g.buf[:0], int64(pid), 10), 0); err != nil {
		return &os.PathError{Op: "write pid " + strconv.Itoa(pid), Path: g.path + "/cgroup.procs", Err: err}
	}
	return nil
}

// Kill kills every process in the group, including daemonized descendants: one write
// to cgroup.kill, or the freeze+SIGKILL+thaw fallback where the kernel lacks it. It
// does not wait; see WaitEmpty.
func (g *Group) Kill() error {
	if g.dir < 0 {
		return ErrClosed
	}
	m := g.pool.m
	if m.hasKill {
		// The freeze+SIGKILL fallback leaves the kill sequence alone; only a write
		// to cgroup.kill makes the group unusable for later launches.
		g.killed.Store(true)
	}
	return m.killDir(g.path)
}

// Populated reports whether any process is in the group (cgroup.events populated).
func (g *Group) Populated() (bool, error) {
	v, err := readKeyFD(g.events, g.buf[:], "populated")
	if err != nil {
		return false, fmt.Errorf("cgroup: %s/cgroup.events: %w", g.path, err)
	}
	return v != 0, nil
}

// WaitEmpty waits until the group holds no process (cgroup.events populated 0),
// sleeping in poll(2) on cgroup.events rather than spinning.
func (g *Group) WaitEmpty(timeout time.Duration) error {
	if err := waitEventFD(g.events, "populated", 0, timeout); err != nil {
		return fmt.Errorf("cgroup: %s: %w", g.path, err)
	}
	return nil
}

// Usage returns what the group consumed since Get. Call it after the launch's
// processes exited and before Release.
func (g *Group) Usage() (Usage, error) {
	var u Usage
	buf := g.buf[:]
	m := g.pool.m
	v, err := readKeyFD(g.cpuStat, buf, "usage_usec")
	if err != nil {
		return u, fmt.Errorf("cgroup: %s/cpu.stat: %w", g.path, err)
	}
	u.CPU, u.HaveCPU = time.Duration(v-g.baseCPU)*time.Microsecond, true
	if g.memPeak >= 0 && (m.memPeakResettable || g.uses == 1) {
		n, err := unix.Pread(g.memPeak, buf, 0)
		if err != nil {
			return u, &os.PathError{Op: "read", Path: g.path + "/memory.peak", Err: err}
		}
		if u.PeakMemory, err = parseInt(buf[:n]); err != nil {
			return u, fmt.Errorf("cgroup: %s/memory.peak: %w", g.path, err)
		}
		oom, err := readKeyFD(g.memEvents, buf, "oom_kill")
		if err != nil {
			return u, fmt.Errorf("cgroup: %s/memory.events: %w", g.path, err)
		}
		u.OOMKills, u.HaveMemory = oom-g.baseOOM, true
	}
	if g.pidsPeak >= 0 && (m.pidsPeakResettable || g.uses == 1) {
		n, err := unix.Pread(g.pidsPeak, buf, 0)
		if err != nil {
			return u, &os.PathError{Op: "read", Path: g.path + "/pids.peak", Err: err}
		}
		if u.PidsPeak, err = parseInt(buf[:n]); err != nil {
			return u, fmt.Errorf("cgroup: %s/pids.peak: %w", g.path, err)
		}
		u.HavePids = true
	}
	return u, nil
}

// Release gives the group back. An empty group (populated 0) goes straight back to
// the free list after its counters are re-read (a few preads, no mkdir). A group that
// still holds processes, or was killed through cgroup.kill (see Group.killed), or
// whose peak memory cannot be reset, is killed, drained, removed and replaced in the
// background; after the freeze+SIGKILL fallback an emptied group is reused. Do not
// use g after Release.
func (g *Group) Release() {
	p := g.pool
	p.mu.Lock()
	if g.gone || !g.inUse || p.closed {
		// After Close the group belongs to destroyAll.
		p.mu.Unlock()
		return
	}
	g.inUse = false
	p.mu.Unlock()
	if !p.freshOnly && !g.killed.Load() {
		populated, err := g.Populated()
		if err == nil && !populated && g.rebase() == nil {
			p.put(g)
			return
		}
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	// Under p.mu, ordered before markClosed and so before Manager.Close's bg.Wait.
	p.pending++
	p.m.bg.Add(1)
	p.mu.Unlock()
	go p.recycle(g)
}

// recycle drains a dirty group and reuses or replaces it. The replacement is created
// before the old group is removed, so a waiting Get is served as soon as possible.
func (p *Pool) recycle(g *Group) {
	defer p.m.bg.Done()
	defer func() {
		p.mu.Lock()
		p.pending--
		p.wake()
		p.mu.Unlock()
	}()
	if !p.freshOnly && !g.killed.Load() {
		if populated, err := g.Populated(); err == nil && populated {
			_ = g.Kill()
		}
		if !g.killed.Load() && g.WaitEmpty(p.m.drain) == nil && !hasSubgroups(g.path) && g.rebase() == nil {
			p.put(g)
			return
		}
	}
	p.mu.Lock()
	g.gone = true
	delete(p.all, g)
	closed := p.closed
	p.mu.Unlock()
	if !closed {
		ng, err := p.create()
		p.mu.Lock()
		if err == nil && !p.closed {
			p.mu.Unlock()
			p.put(ng)
			ng = nil
		} else {
			closed = true // give up the slot
			if ng != nil {
				delete(p.all, ng)
			}
			p.mu.Unlock()
		}
		if ng != nil {
			_ = ng.destroy(p.m)
		}
	}
	if closed {
		p.mu.Lock()
		p.total--
		p.mu.Unlock()
	}
	_ = g.destroy(p.m)
}

func hasSubgroups(dir string) bool {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return true
	}
	for _, e := range entries {
		if e.IsDir() {
			return true
		}
	}
	return false
}

// destroy kills, drains and removes the group and closes its fds.
func (g *Group) destroy(m *Manager) error {
	var errs []error
	if populated, err := g.Populated(); err != nil || populated {
		if err := m.killDir(g.path); err != nil {
			errs = append(errs, err)
		}
		if err := waitEventPath(g.path, "populated", 0, m.drain); err != nil {
			errs = append(errs, err)
		}
	}
	g.closeFDs()
	errs = append(errs, rmdirTree(g.path))
	return errors.Join(errs...)
}

func (p *Pool) markClosed() {
	p.mu.Lock()
	p.closed = true
	close(p.avail)
	p.avail = make(chan struct{})
	p.mu.Unlock()
}

// destroyAll removes every group of a closed pool.
func (p *Pool) destroyAll() error {
	p.mu.Lock()
	groups := make([]*Group, 0, len(p.all))
	for g := range p.all {
		g.gone = true
		groups = append(groups, g)
	}
	p.all = map[*Group]struct{}{}
	p.free = nil
	p.total = 0
	p.mu.Unlock()
	var errs []error
	for _, g := range groups {
		errs = append(errs, g.destroy(p.m))
	}
	return errors.Join(errs...)
}

// Close removes the pool and all its groups (killing what they hold).
func (p *Pool) Close() error {
	p.markClosed()
	p.m.mu.Lock()
	if p.m.pools[p.name] == p {
		delete(p.m.pools, p.name)
	}
	p.m.mu.Unlock()
	return p.destroyAll()
}

// resetValue is written to memory.peak/pids.peak to reset them (any non-empty string).
var resetValue = []byte("0")
