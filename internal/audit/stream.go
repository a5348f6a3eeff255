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
	switch typ {
	case sys.AuditLandlockAccess, sys.AuditLandlockDomain, sys.AuditSyscall, sys.AuditSeccomp, sys.AuditEOE, sys.AuditUser:
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
			close(c.markerCh)
			c.markerCh = make(chan struct{})
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

// syncRound makes sure every record queued before it started has been handled:
// it logs a marker record and waits for it to come back (the kernel's queue keeps
// its order), then reads the kernel's lost-record count. Concurrent callers share
// rounds: each waits for a round that started after it called.
func (c *Collector) syncRound(ctx context.Context) roundResult {
	c.mu.Lock()
	want := c.roundsStarted + 1
	for c.roundsDone < want {
		if !c.roundRunning {
			c.roundRunning = true
			c.roundsStarted++
			gen := c.roundsStarted
			c.mu.Unlock()
			r := c.runRound()
			c.mu.Lock()
			c.round, c.roundsDone, c.roundRunning = r, gen, false
			close(c.roundCh)
			c.roundCh = make(chan struct{})
			continue
		}
		ch := c.roundCh
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return roundResult{reason: "gave up waiting for records in flight: " + ctx.Err().Error()}
		}
		c.mu.Lock()
	}
	r := c.round
	c.mu.Unlock()
	return r
}

func (c *Collector) runRound() roundResult {
	c.mu.Lock()
	c.markerSent++
	n := c.markerSent
	c.mu.Unlock()
	if err := c.ctl.SendUser(fmt.Sprintf("agentexec-sync %s %d", c.nonce, n), ctlTimeout); err != nil {
		if errors.Is(err, unix.EPERM) {
			return roundResult{reason: "cannot log the sync marker: needs CAP_AUDIT_WRITE"}
		}
		return roundResult{reason: "cannot log the sync marker: " + err.Error()}
	}
	timer := time.NewTimer(c.opts.SyncTimeout)
	defer timer.Stop()
	c.mu.Lock()
	for c.markerSeen < n {
		if c.readErr != nil {
			c.mu.Unlock()
			return roundResult{reason: "reading the audit stream failed: " + c.readErr.Error()}
		}
		ch := c.markerCh
		c.mu.Unlock()
		select {
		case <-ch:
		case <-c.done:
			return roundResult{reason: "the audit reader stopped"}
		case <-timer.C:
			return roundResult{reason: fmt.Sprintf("records still in flight after %v (the sync marker did not come back)", c.opts.SyncTimeout)}
		}
		c.mu.Lock()
	}
	c.mu.Unlock()
	st, err := c.ctl.GetStatus(ctlTimeout)
	if err != nil {
		return roundResult{reason: "AUDIT_GET after the sync marker: " + err.Error()}
	}
	return roundResult{ok: true, lost: st.Lost}
}
