package audit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentexec/agentexec/internal/sys"
)

// maxParked bounds the events waiting for their syscall record or their end.
const maxParked = 1024

// read is the reader goroutine: one record per datagram of the multicast group.
func (c *Collector) read() {
	defer close(c.done)
	buf := make([]byte, 1<<16)
	for {
		c.mu.Lock()
		pause := c.opts.pauseReader
		if c.markerSeen < c.opts.pauseAfter {
			pause = nil
		}
		c.mu.Unlock()
		if pause != nil {
			<-pause
		}
		n, err := c.mc.Recv(buf)
		if err != nil {
			c.mu.Lock()
			switch {
			case errors.Is(err, unix.ENOBUFS):
				c.enobufs++
				c.mu.Unlock()
				continue
			case errors.Is(err, os.ErrClosed):
			default:
				c.readErr = err
			}
			c.mu.Unlock()
			return
		}
		m, err := sys.ParseRecord(buf[:n])
		if err != nil {
			continue
		}
		c.handle(m.Type, string(m.Data))
	}
}

// handle processes one record in the order the kernel queued it. An event's
// records come together: AUDIT_LANDLOCK_ACCESS, then (for a domain's first logged
// denial) AUDIT_LANDLOCK_DOMAIN allocated, then AUDIT_SYSCALL, AUDIT_PROCTITLE and
// AUDIT_EOE. Records that cannot be placed yet wait for the rest of their event.
func (c *Collector) handle(typ uint16, text string) {
	c.recvd.Add(1)
	switch typ {
	case sys.AuditLandlockAccess, sys.AuditLandlockDomain, sys.AuditSyscall, sys.AuditSeccomp, sys.AuditEOE, sys.AuditUser,
		sys.AuditConfigChange:
	default:
		return
	}
	r, err := ParseRecord(typ, text)
	if err != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch typ {
	case sys.AuditLandlockAccess:
		a, err := r.LandlockAccess()
		if err != nil {
			return
		}
		p := parkedRec{serial: r.Serial, rec: r, domain: a.Domain}
		if l := c.byDomain[a.Domain]; l != nil {
			l.add(p)
			return
		}
		c.park(p)
	case sys.AuditLandlockDomain:
		d, err := r.LandlockDomain()
		if err != nil {
			return
		}
		if !d.Allocated {
			// Every record of the domain came before this one. domainOwner stays:
			// records of a launch not attached yet still need it (it is emptied
			// when no launch is pending).
			delete(c.byDomain, d.Domain)
			delete(c.spawnerDomains, d.Domain)
			return
		}
		if c.opts.CreatorExe != "" && d.Exe != c.opts.CreatorExe {
			return // a domain some program made for itself
		}
		switch l := c.byPID[d.PID]; {
		case l != nil:
			c.byDomain[d.Domain] = l
			l.domains = append(l.domains, d.Domain)
		case c.spawners[d.PID]:
			c.spawnerDomains[d.Domain] = true
		case c.pending > 0:
			if len(c.domainOwner) >= c.opts.MaxPending {
				c.evicted++
				return
			}
			c.domainOwner[d.Domain] = d.PID
		}
		c.settle(r.Serial, false)
	case sys.AuditSyscall:
		s, err := r.Syscall()
		if err != nil {
			return
		}
		ps := c.parked[r.Serial]
		for i := range ps {
			if ps[i].pid == 0 {
				ps[i].pid = s.PID
			}
			ps[i].ppid = s.PPID
		}
		c.settle(r.Serial, false)
	case sys.AuditSeccomp:
		s, err := r.Syscall()
		if err != nil {
			return
		}
		p := parkedRec{serial: r.Serial, rec: r, pid: s.PID}
		if l := c.byPID[s.PID]; l != nil {
			l.add(p)
			return
		}
		c.park(p)
	case sys.AuditEOE:
		c.settle(r.Serial, true)
	case sys.AuditConfigChange:
		c.configChange(r)
	case sys.AuditUser:
		msg, _ := r.Get("msg")
		rest, ok := strings.CutPrefix(msg, "agentexec-sync "+c.nonce+" ")
		if !ok {
			return
		}
		n, err := strconv.ParseUint(rest, 10, 64)
		if err != nil {
			return
		}
		// Records of events that never end (no audit context: no syscall record,
		// no EOE) and were queued before the marker are as complete as they get.
		for s := range c.parked {
			if s < r.Serial {
				c.settle(s, true)
			}
		}
		if n > c.markerSeen {
			c.markerSeen = n
			c.wakeLocked()
		}
	}
}

func (c *Collector) park(p parkedRec) {
	if len(c.parked) >= maxParked {
		oldest := p.serial
		for s := range c.parked {
			oldest = min(oldest, s)
		}
		c.settle(oldest, true)
	}
	c.parked[p.serial] = append(c.parked[p.serial], p)
}

// resolve returns the launch a record belongs to, nil when none is known (yet).
func (c *Collector) resolve(p parkedRec) *Launch {
	if p.rec.Type == sys.AuditLandlockAccess {
		if l := c.byDomain[p.domain]; l != nil {
			return l
		}
		if !c.spawnerDomains[p.domain] {
			return nil
		}
	}
	if l := c.byPID[p.pid]; l != nil && p.pid != 0 {
		return l
	}
	if l := c.byPID[p.ppid]; l != nil && p.ppid != 0 {
		return l
	}
	return nil
}

// settle places the records waiting in event serial. With final (the event
// ended) the rest are kept for launches not attached yet, counted when they belong
// to a shared spawner domain yet to no launch, or dropped as other programs'.
func (c *Collector) settle(serial uint64, final bool) {
	ps, ok := c.parked[serial]
	if !ok {
		return
	}
	keep := ps[:0]
	for _, p := range ps {
		if l := c.resolve(p); l != nil {
			l.add(p)
			continue
		}
		if !final {
			keep = append(keep, p)
			continue
		}
		mine := p.rec.Type == sys.AuditSeccomp || c.spawnerDomains[p.domain]
		_, owned := c.domainOwner[p.domain]
		switch {
		case c.pending > 0 && (owned || mine):
			if len(c.unclaimed) >= c.opts.MaxPending {
				c.evicted++
				continue
			}
			c.unclaimed = append(c.unclaimed, p)
		case c.spawnerDomains[p.domain]:
			c.unattributed++
		}
	}
	if final || len(keep) == 0 {
		delete(c.parked, serial)
	} else {
		c.parked[serial] = keep
	}
}

// mark returns the number of a marker record logged after the call, for await.
// One goroutine at a time logs markers (sendMarkers): a call while it is busy
// leaves the next marker to it (the one being logged may have reached the kernel
// before the call), so one marker covers every launch that ended while the
// previous one was being logged. With async the caller never logs one itself: a
// new goroutine does, and the caller goes on (Launch.Ended, whose wait comes
// later, in Finish).
func (c *Collector) mark(async bool) uint64 {
	c.mu.Lock()
	n := c.markerNext
	c.markerWanted = max(c.markerWanted, n)
	if c.sending {
		c.mu.Unlock()
		return n
	}
	c.sending = true
	c.mu.Unlock()
	if async {
		go c.sendMarkers()
	} else {
		c.sendMarkers()
	}
	return n
}

// sendMarkers logs markers until none is wanted (c.sending is set for it).
func (c *Collector) sendMarkers() {
	for {
		c.mu.Lock()
		if c.markerWanted < c.markerNext {
			c.sending = false
			c.mu.Unlock()
			return
		}
		n := c.markerNext
		c.markerNext++
		c.mu.Unlock()
		err := c.sendUser("agentexec-sync " + c.nonce + " " + strconv.FormatUint(n, 10))
		if err != nil {
			c.mu.Lock()
			c.sendFailed, c.sendErr = n, "cannot log the sync marker: "+err.Error()
			if errors.Is(err, unix.EPERM) {
				c.sendErr = "cannot log the sync marker: needs CAP_AUDIT_WRITE"
			}
			c.wakeLocked()
			c.mu.Unlock()
		}
	}
}

// wakeLocked wakes the goroutines waiting in await (c.mu held).
func (c *Collector) wakeLocked() {
	close(c.markerCh)
	c.markerCh = make(chan struct{})
}

// await waits until marker n (or a later one) has come back through the
// multicast group: the kernel's queue keeps its order, so every record queued
// before the marker was logged has been handled. It gives up after
// Options.SyncTimeout, when ctx ends, or when the marker could not be logged.
func (c *Collector) await(ctx context.Context, n uint64) (ok bool, reason string) {
	var timer *time.Timer
	c.mu.Lock()
	for c.markerSeen < n {
		switch {
		case c.sendFailed >= n:
			reason = c.sendErr
		case c.readErr != nil:
			reason = "reading the audit stream failed: " + c.readErr.Error()
		}
		if reason != "" {
			c.mu.Unlock()
			return false, reason
		}
		ch, hook := c.markerCh, c.awaiting
		c.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(c.opts.SyncTimeout)
			defer timer.Stop()
		}
		if hook != nil {
			hook()
		}
		select {
		case <-ch:
		case <-c.done:
			return false, "the audit reader stopped"
		case <-timer.C:
			return false, fmt.Sprintf("records still in flight after %v (the sync marker did not come back)", c.opts.SyncTimeout)
		case <-ctx.Done():
			return false, "gave up waiting for records in flight: " + ctx.Err().Error()
		}
		c.mu.Lock()
	}
	c.mu.Unlock()
	return true, ""
}

// lossPossible says whether the kernel may have dropped a record of launch l,
// whose marker has come back, so that its lost count must be read (AUDIT_GET,
// which the kernel answers from a thread it creates per reply: the largest part
// of the cost of a launch when done every time). Without a rate limit, the kernel
// drops a record only when its queue holds more than the backlog limit; every
// record in the queue then is multicast before the launch's marker (the queue
// keeps its order), so it is read (or its loss is an ENOBUFS, counted apart)
// between Begin and the marker. Fewer records read in that window than half
// the limit, with no rate limit and no change of either since Begin, mean no
// record was dropped. docs/denials.md ("Records in flight, lost records") says
// what this leaves out.
func (c *Collector) lossPossible(l *Launch) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rateLimit != 0 || c.limitsSet != l.limitsSet {
		return true
	}
	return c.backlogLimit != 0 && c.recvd.Load()-l.recvd > uint64(c.backlogLimit/2)
}

// readStatus reads the kernel's audit status (its lost count and limits).
// Concurrent callers share reads: each waits for one that started after it
// called.
func (c *Collector) readStatus(ctx context.Context) roundResult {
	c.mu.Lock()
	want := c.statusStarted + 1
	for c.statusDone < want {
		if !c.statusRunning {
			c.statusRunning = true
			c.statusStarted++
			gen := c.statusStarted
			c.mu.Unlock()
			st, err := c.getStatus()
			c.mu.Lock()
			if err != nil {
				c.status = roundResult{reason: "AUDIT_GET after the sync marker: " + err.Error()}
			} else {
				c.status = roundResult{ok: true, lost: st.Lost}
				c.lost, c.rateLimit, c.backlogLimit = st.Lost, st.RateLimit, st.BacklogLimit
			}
			c.statusDone, c.statusRunning = gen, false
			close(c.statusCh)
			c.statusCh = make(chan struct{})
			continue
		}
		ch := c.statusCh
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return roundResult{reason: "gave up waiting for the audit status: " + ctx.Err().Error()}
		}
		c.mu.Lock()
	}
	r := c.status
	c.mu.Unlock()
	return r
}

// configChange follows the kernel's settings from its AUDIT_CONFIG_CHANGE
// records (logged, in the queue's order, before each change takes effect; "res=1"
// when it does): a rate or backlog limit set, or audit turned off (c.mu held).
func (c *Collector) configChange(r Record) {
	if res, _ := r.Get("res"); res != "1" {
		return
	}
	for _, f := range r.Fields {
		var v uint64
		var err error
		switch f.Key {
		case "audit_rate_limit", "audit_backlog_limit", "audit_enabled":
			v, err = strconv.ParseUint(f.Value, 10, 32)
		default:
			continue
		}
		if err != nil {
			// Unreadable: assume the worst of it.
			c.limitsSet++
			continue
		}
		switch f.Key {
		case "audit_rate_limit":
			c.rateLimit = uint32(v)
			c.limitsSet++
		case "audit_backlog_limit":
			c.backlogLimit = uint32(v)
			c.limitsSet++
		case "audit_enabled":
			if v == 0 {
				c.disabled++
			}
		}
	}
}
