package audit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentexec/agentexec/internal/sys"
	"github.com/agentexec/agentexec/internal/syscalltab"
	"github.com/agentexec/agentexec/policy"
)

// Defaults of Options.
const (
	DefaultBacklogLimit = 8192
	DefaultSyncTimeout  = 2 * time.Second
	DefaultMaxDenials   = 256
	DefaultMaxPending   = 4096
	DefaultRcvBuf       = 8 << 20
)

// Options configure a Collector. The zero value reads the stream only where audit
// is already on.
type Options struct {
	// Enable turns audit on when it is off (a host-wide change: without an audit
	// daemon the kernel also prints records to its log). The previous state is
	// restored at Close, or by the next Open after a crash (StateDir).
	Enable bool
	// StateDir holds the state file that makes the restore survive a crash
	// (DefaultStateDir when "").
	StateDir string
	// BacklogLimit is the kernel queue length the collector raises the backlog
	// limit to when it turns audit on (DefaultBacklogLimit when 0; the kernel's
	// default, 64, loses records of a burst of denials).
	BacklogLimit uint32
	// SyncTimeout bounds Finish's wait for records still in flight
	// (DefaultSyncTimeout when 0).
	SyncTimeout time.Duration
	// MaxDenials caps the distinct denials kept per launch (DefaultMaxDenials when
	// 0); more are counted in Status.Omitted.
	MaxDenials int
	// MaxPending caps the records kept for launches whose pid is not attached yet
	// (DefaultMaxPending when 0); more mark those launches incomplete.
	MaxPending int
	// RcvBuf is the multicast socket's receive buffer (DefaultRcvBuf when 0).
	RcvBuf int
	// CreatorExe, when set, is the executable that creates agentexec's Landlock
	// domains (the spawner binary): a domain whose allocation record names another
	// creator (a sandbox a tool built for itself) is not agentexec's.
	CreatorExe string

	// Tests: the reader waits for pauseReader to close before its next read, once
	// it has handled sync marker pauseAfter (0: at once).
	pauseReader chan struct{}
	pauseAfter  uint64
}

// ErrUnavailable is matched by every *UnavailableError.
var ErrUnavailable = errors.New("kernel denials unavailable")

// UnavailableError says why this host's audit stream cannot be used.
type UnavailableError struct {
	Reason string
	Err    error
}

func (e *UnavailableError) Error() string {
	if e.Err != nil {
		return "kernel denials unavailable: " + e.Reason + ": " + e.Err.Error()
	}
	return "kernel denials unavailable: " + e.Reason
}
func (e *UnavailableError) Unwrap() error        { return e.Err }
func (e *UnavailableError) Is(target error) bool { return target == ErrUnavailable }

// Denials status states.
const (
	Complete    = "complete"
	Incomplete  = "incomplete"
	Unavailable = "unavailable"
)

// Status says how far a launch's denials can be trusted.
type Status struct {
	// State is Complete, Incomplete (records may be missing: Reason says why) or
	// Unavailable (no kernel denials at all: Reason says why).
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
	// Omitted counts the denial records left out past the per-launch cap of
	// distinct denials (each record once, not each distinct kind); they were read
	// and counted, not kept.
	Omitted int `json:"omitted,omitempty"`
}

// Collector reads the audit stream and attributes records to launches.
type Collector struct {
	opts Options
	ctl  *sys.AuditConn // requests: status, markers
	mc   *sys.AuditConn // the readlog multicast group
	// sendUser and getStatus are ctl's SendUser and GetStatus (tests replace them).
	sendUser  func(text string) error
	getStatus func() (sys.AuditStatus, error)
	// awaiting, when set (tests), is called each time await is about to block.
	awaiting func()
	host     hostSwitch
	state    HostState
	nonce    string
	done     chan struct{}
	// reading says the reader goroutine runs (it closes done when it ends).
	reading bool

	mu sync.Mutex
	// Attribution.
	byPID          map[int]*Launch    // attached pids
	byDomain       map[uint64]*Launch // per-launch domains
	spawners       map[int]bool       // pids whose domains are shared by launches
	spawnerDomains map[uint64]bool
	// Records waiting for the rest of their event (serial → records).
	parked map[uint64][]parkedRec
	// While launches are begun but not attached: domain creators seen and records
	// that may be theirs.
	pending     int
	domainOwner map[uint64]int
	unclaimed   []parkedRec
	// Loss epochs: a launch whose window saw one is incomplete.
	enobufs, evicted, unattributed uint64
	readErr                        error
	// Markers (stream.go, mark): markerNext numbers the next one to log,
	// markerWanted the highest a launch waits for, markerSeen the highest read
	// back; sending says a goroutine is logging them. sendFailed is the last
	// marker that could not be logged, sendErr why.
	markerNext, markerWanted, markerSeen uint64
	sending                              bool
	sendFailed                           uint64
	sendErr                              string
	markerCh                             chan struct{}
	// Loss detection without an AUDIT_GET per launch (stream.go, lossPossible):
	// records read from the group (every type), the kernel's limits as the last
	// status and the config-change records since set them, how many such records
	// changed a limit, how many turned audit off, and the kernel's lost count at
	// the last AUDIT_GET.
	recvd                   atomic.Uint64
	rateLimit, backlogLimit uint32
	limitsSet, disabled     uint64
	lost                    uint32
	// Status reads (AUDIT_GET) shared by concurrent Finish calls.
	statusStarted, statusDone uint64
	statusRunning             bool
	statusCh                  chan struct{}
	status                    roundResult
}

type parkedRec struct {
	serial uint64
	rec    Record
	domain uint64 // 1423
	pid    int    // 1326, or once the event's syscall record is seen
	ppid   int
}

type roundResult struct {
	ok     bool
	reason string
	lost   uint32
}

// Open opens the audit stream. Where it cannot be used (no CONFIG_AUDIT, no
// CAP_AUDIT_READ/CONTROL/WRITE, not in the initial namespaces, audit off and
// Enable unset) it returns an *UnavailableError with the reason.
func Open(opts Options) (*Collector, error) {
	c := newCollector(opts)
	opts = c.opts
	ctl, err := sys.OpenAudit(0, 0)
	if err != nil {
		if errors.Is(err, unix.EPROTONOSUPPORT) {
			return nil, &UnavailableError{Reason: "this kernel has no audit (CONFIG_AUDIT off)", Err: err}
		}
		return nil, &UnavailableError{Reason: "cannot open the audit netlink socket", Err: err}
	}
	st, err := ctl.GetStatus(ctlTimeout)
	if err != nil {
		ctl.Close()
		return nil, unavailableFor("read the audit status (AUDIT_GET)", "CAP_AUDIT_CONTROL", err)
	}
	// Join the multicast group before anything can be logged on our behalf.
	mc, err := sys.OpenAudit(1<<(sys.AuditNlgrpReadlog-1), opts.RcvBuf)
	if err != nil {
		ctl.Close()
		return nil, unavailableFor("join the audit log multicast group", "CAP_AUDIT_READ", err)
	}
	c.ctl, c.mc = ctl, mc
	c.sendUser = func(text string) error { return ctl.SendUser(text, ctlTimeout) }
	c.getStatus = func() (sys.AuditStatus, error) { return ctl.GetStatus(ctlTimeout) }
	if st.Enabled == 0 && !opts.Enable {
		c.close()
		return nil, &UnavailableError{Reason: "audit is off on this host (enabled 0) and agentexec was not asked to turn it on"}
	}
	start, err := procStart(os.Getpid())
	if err != nil {
		c.close()
		return nil, &UnavailableError{Reason: "cannot identify this process for the audit state file", Err: err}
	}
	c.host = hostSwitch{dir: opts.StateDir, self: holder{PID: os.Getpid(), Start: start}}
	c.state, err = c.host.acquire(ctl, opts.Enable, opts.BacklogLimit)
	if err != nil {
		c.close()
		return nil, unavailableFor("turn audit on", "CAP_AUDIT_CONTROL", err)
	}
	if c.state.Enabled == 0 {
		c.Close()
		return nil, &UnavailableError{Reason: "audit is off on this host (enabled 0)"}
	}
	c.reading = true
	go c.read()
	// One round end to end: the marker (CAP_AUDIT_WRITE) must come back through
	// the multicast group. Then the status: the lost count and the limits that
	// the config-change records read from now on keep up to date.
	if ok, reason := c.await(context.Background(), c.mark(false)); !ok {
		c.Close()
		return nil, &UnavailableError{Reason: "the audit stream does not deliver: " + reason}
	}
	if r := c.readStatus(context.Background()); !r.ok {
		c.Close()
		return nil, &UnavailableError{Reason: "the audit stream does not deliver: " + r.reason}
	}
	return c, nil
}

// newCollector sets the defaults and the maps; Open adds the sockets.
func newCollector(opts Options) *Collector {
	if opts.StateDir == "" {
		opts.StateDir = DefaultStateDir
	}
	if opts.BacklogLimit == 0 {
		opts.BacklogLimit = DefaultBacklogLimit
	}
	if opts.SyncTimeout == 0 {
		opts.SyncTimeout = DefaultSyncTimeout
	}
	if opts.MaxDenials == 0 {
		opts.MaxDenials = DefaultMaxDenials
	}
	if opts.MaxPending == 0 {
		opts.MaxPending = DefaultMaxPending
	}
	if opts.RcvBuf == 0 {
		opts.RcvBuf = DefaultRcvBuf
	}
	c := &Collector{
		opts: opts, done: make(chan struct{}),
		byPID: map[int]*Launch{}, byDomain: map[uint64]*Launch{}, spawners: map[int]bool{},
		spawnerDomains: map[uint64]bool{}, parked: map[uint64][]parkedRec{}, domainOwner: map[uint64]int{},
		markerNext: 1, markerCh: make(chan struct{}), statusCh: make(chan struct{}),
	}
	var nb [6]byte
	rand.Read(nb[:])
	c.nonce = hex.EncodeToString(nb[:])
	return c
}

func unavailableFor(what, capName string, err error) error {
	switch {
	case errors.Is(err, unix.EPERM):
		return &UnavailableError{Reason: fmt.Sprintf("cannot %s: needs %s", what, capName), Err: err}
	case errors.Is(err, unix.ECONNREFUSED):
		return &UnavailableError{Reason: fmt.Sprintf("cannot %s: only from the initial user and pid namespaces", what), Err: err}
	}
	return &UnavailableError{Reason: "cannot " + what, Err: err}
}

// Host returns the host's audit state as Open found and set it.
func (c *Collector) Host() HostState { return c.state }

func (c *Collector) close() {
	c.mc.Close()
	c.ctl.Close()
}

// Close stops reading and, when this collector held audit on and is the last
// agentexec runtime to do so, restores the state Open found. It returns what it
// did to the host's switch ("" when nothing).
func (c *Collector) Close() (string, error) {
	c.mc.Close()
	if c.reading {
		select {
		case <-c.done:
		case <-time.After(ctlTimeout):
		}
	}
	msg, err := c.host.release(c.ctl)
	c.ctl.Close()
	return msg, err
}

// AddSpawner declares pid a process whose Landlock domains are shared by several
// launches (a spawner, whose kernel-template children cannot add a layer of their
// own): its denials are attributed by the pid of the process that met them.
func (c *Collector) AddSpawner(pid int) {
	c.mu.Lock()
	c.spawners[pid] = true
	c.mu.Unlock()
}

// RemoveSpawner forgets a spawner (after it exited).
func (c *Collector) RemoveSpawner(pid int) {
	c.mu.Lock()
	delete(c.spawners, pid)
	c.mu.Unlock()
}

// Launch collects the denials of one launch.
type Launch struct {
	c        *Collector
	pid      int
	attached bool
	finished bool
	domains  []uint64
	denials  []policy.Denial
	index    map[denialKey]int
	omitted  int
	// Loss epochs at Begin.
	enobufs, evicted, unattributed uint64
	lostAt                         uint32
	recvd, limitsSet, disabled     uint64
	// marker is the sync marker Ended logged for the launch (0: none yet).
	marker uint64
}

type denialKey struct {
	layer, access string
	obj           string
}

// Begin starts a launch's collection; call it before the launch is sent to the
// spawner, so that no record of it can come before the collector knows of it.
func (c *Collector) Begin() *Launch {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pending++
	return &Launch{c: c, index: map[denialKey]int{}, enobufs: c.enobufs, evicted: c.evicted,
		unattributed: c.unattributed, lostAt: c.lost, recvd: c.recvd.Load(), limitsSet: c.limitsSet,
		disabled: c.disabled}
}

// Attach gives the launch's pid (the process whose per-launch Landlock layer was
// made in it, or the kernel-template child): records of its domain and of its pid
// are its own from then on, those that came before are claimed now.
func (l *Launch) Attach(pid int) {
	c := l.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if l.attached || l.finished {
		return
	}
	l.attached, l.pid = true, pid
	c.pending--
	c.byPID[pid] = l
	for d, owner := range c.domainOwner {
		if owner == pid {
			c.byDomain[d] = l
			l.domains = append(l.domains, d)
			delete(c.domainOwner, d)
		}
	}
	keep := c.unclaimed[:0]
	for _, p := range c.unclaimed {
		if c.resolve(p) == l {
			l.add(p)
		} else {
			keep = append(keep, p)
		}
	}
	c.unclaimed = keep
	if c.pending == 0 {
		clear(c.domainOwner)
		c.unclaimed = nil
	}
}

// Ended says the launch's whole tree has exited (its cgroup is empty): every
// record of the launch is queued in the kernel by now, so the sync marker Finish
// waits for can be logged at once, and the wait overlaps the rest of the
// launch's teardown. Optional (Finish logs the marker itself when Ended was not
// called); calls after the first, or on a launch never attached, do nothing.
func (l *Launch) Ended() {
	c := l.c
	c.mu.Lock()
	if !l.attached || l.finished || l.marker != 0 {
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	n := c.mark(true)
	c.mu.Lock()
	if l.marker == 0 {
		l.marker = n
	}
	c.mu.Unlock()
}

// Finish waits, at most Options.SyncTimeout (or until ctx ends), for the records
// still in flight, then returns the launch's denials (without hints: the engine
// adds policy.Policy.Hint) and their status. Call it once the launch's whole tree
// has exited (its cgroup empty): every record of the launch was queued before then,
// and a marker record logged now (or at Ended) comes after all of them.
func (l *Launch) Finish(ctx context.Context) ([]policy.Denial, Status) {
	c := l.c
	c.mu.Lock()
	if l.finished {
		c.mu.Unlock()
		return l.denials, Status{State: Incomplete, Reason: "Finish called twice"}
	}
	if !l.attached {
		l.finished = true
		c.pending--
		if c.pending == 0 {
			clear(c.domainOwner)
			c.unclaimed = nil
		}
		c.mu.Unlock()
		return nil, Status{State: Complete}
	}
	n := l.marker
	c.mu.Unlock()
	if n == 0 {
		n = c.mark(false)
	}
	var r roundResult
	if ok, reason := c.await(ctx, n); !ok {
		r.reason = reason
	} else if c.lossPossible(l) {
		r = c.readStatus(ctx)
	} else {
		r = roundResult{ok: true, lost: l.lostAt}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	l.finished = true
	delete(c.byPID, l.pid)
	for _, d := range l.domains {
		delete(c.byDomain, d)
	}
	st := Status{State: Complete, Omitted: l.omitted}
	var why []string
	if !r.ok {
		why = append(why, r.reason)
	}
	if r.ok && r.lost != l.lostAt {
		why = append(why, fmt.Sprintf("the kernel lost %d audit records (backlog or rate limit) while the launch ran", r.lost-l.lostAt))
	}
	if c.disabled != l.disabled {
		why = append(why, "the host's audit was turned off while the launch ran")
	}
	if c.enobufs > l.enobufs {
		why = append(why, "the audit socket's receive buffer overflowed (ENOBUFS) while the launch ran")
	}
	if c.evicted > l.evicted {
		why = append(why, "records waiting for a launch's pid were dropped past the pending cap")
	}
	if c.unattributed > l.unattributed {
		why = append(why, "a record of a shared spawner domain could not be tied to a pid")
	}
	if c.readErr != nil {
		why = append(why, "reading the audit stream failed: "+c.readErr.Error())
	}
	if len(why) > 0 {
		st.State, st.Reason = Incomplete, strings.Join(why, "; ")
	}
	return l.denials, st
}

// add records one denial of the launch (c.mu held).
func (l *Launch) add(p parkedRec) {
	if l.finished {
		return
	}
	for _, d := range denialsOf(p.rec) {
		k := denialKey{d.Layer, d.Access, fmt.Sprintf("%+v", d.Object)}
		if i, ok := l.index[k]; ok {
			l.denials[i].Count++
			continue
		}
		if len(l.denials) >= l.c.opts.MaxDenials {
			l.omitted++
			continue
		}
		l.index[k] = len(l.denials)
		l.denials = append(l.denials, d)
	}
}

// denialsOf turns a record into denials (one per blocker of a Landlock record).
func denialsOf(r Record) []policy.Denial {
	switch r.Type {
	case sys.AuditLandlockAccess:
		a, err := r.LandlockAccess()
		if err != nil {
			return nil
		}
		obj := policy.DeniedObject{Path: a.Path, Addr: a.Addr, Port: a.Port, PID: a.OPID, Comm: a.OComm}
		if strings.HasPrefix(obj.Path, "\x00") { // abstract unix socket
			obj.Path = "@" + obj.Path[1:]
		}
		var out []policy.Denial
		for _, b := range a.Blockers {
			out = append(out, policy.Denial{Layer: policy.LayerLandlock, Access: b, Object: obj, Count: 1})
		}
		return out
	case sys.AuditSeccomp:
		s, err := r.Syscall()
		if err != nil {
			return nil
		}
		name := SyscallName(s.Arch, s.Nr)
		return []policy.Denial{{Layer: policy.LayerSeccomp, Access: "seccomp." + name, Object: policy.DeniedObject{Syscall: name}, Count: 1}}
	}
	return nil
}

// SyscallName names syscall nr of the audit architecture arch ("syscall_NR" when
// unknown).
func SyscallName(auditArch uint32, nr int) string {
	if a := syscalltab.ByAuditID(auditArch); a != nil {
		if n, ok := a.SyscallName(nr); ok {
			return n
		}
	}
	return "syscall_" + strconv.Itoa(nr)
}
