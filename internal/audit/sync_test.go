package audit

import (
	"context"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentexec/agentexec/internal/sys"
	"github.com/agentexec/agentexec/policy"
)

// fakeCtl stands in for the control socket of a collector without sockets: it
// records the markers logged (and can hold the first send until released) and
// answers status reads with lost, counting them.
type fakeCtl struct {
	mu      sync.Mutex
	sent    []string
	hold    chan struct{} // the first send waits for it to close
	holding chan struct{} // closed when the first send is held
	lost    uint32
	gets    int
}

func newFakeCollector(t *testing.T, opts Options) (*Collector, *fakeCtl) {
	t.Helper()
	c := newCollector(opts)
	f := &fakeCtl{}
	c.sendUser = func(text string) error {
		f.mu.Lock()
		f.sent = append(f.sent, text)
		first, hold, holding := len(f.sent) == 1, f.hold, f.holding
		f.mu.Unlock()
		if first && hold != nil {
			close(holding)
			<-hold
		}
		return nil
	}
	c.getStatus = func() (sys.AuditStatus, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.gets++
		return sys.AuditStatus{Enabled: 1, BacklogLimit: c.backlogLimit, RateLimit: c.rateLimit, Lost: f.lost}, nil
	}
	c.backlogLimit = 64
	return c, f
}

func (f *fakeCtl) counts() (sent, gets int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.sent), f.gets
}

// TestMarkerBatching: while one marker is being logged, launches that end meanwhile
// are not covered by it (it may have reached the kernel before they ended) and do
// not log one each: the goroutine logging it logs exactly one more for all of
// them. A marker covers the launches waiting for it and those before, never one
// numbered after it.
func TestMarkerBatching(t *testing.T) {
	c, f := newFakeCollector(t, Options{})
	f.hold, f.holding = make(chan struct{}), make(chan struct{})
	first := make(chan uint64)
	go func() { first <- c.mark(false) }()
	<-f.holding // marker 1 is being logged
	b, a := c.mark(false), c.mark(true)
	if b != 2 || a != 2 {
		t.Fatalf("launches ended while marker 1 was logged wait for %d and %d, want 2 and 2", b, a)
	}
	if sent, _ := f.counts(); sent != 1 {
		t.Fatalf("%d markers logged while the first was held, want 1 (the others are left to its goroutine)", sent)
	}
	close(f.hold)
	if n := <-first; n != 1 {
		t.Errorf("the first caller's marker is %d, want 1", n)
	}
	f.mu.Lock()
	sent := slicesClone(f.sent)
	f.mu.Unlock()
	want := []string{"agentexec-sync " + c.nonce + " 1", "agentexec-sync " + c.nonce + " 2"}
	if strings.Join(sent, "|") != strings.Join(want, "|") {
		t.Fatalf("markers logged %q, want %q", sent, want)
	}
	// Marker 2 read back covers 1 and 2.
	marker(c, 2)
	for _, n := range []uint64{1, 2} {
		if ok, why := c.await(context.Background(), n); !ok {
			t.Errorf("await %d after marker 2: %s", n, why)
		}
	}
	// Control: marker 3 was never read back; waiting for it ends with the reason.
	if n := c.mark(false); n != 3 {
		t.Fatalf("next marker %d, want 3", n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if ok, why := c.await(ctx, 3); ok || !strings.Contains(why, "gave up") {
		t.Errorf("await 3 with only marker 2 read: ok %v %q, want a failure", ok, why)
	}
}

func slicesClone(s []string) []string { return append([]string(nil), s...) }

// denialRecords feeds the records of one fs.read_file denial of pid in domain, as
// the kernel logs a domain's first denial.
func denialRecords(c *Collector, serial, pid int, domain, path string) {
	st := "audit(1.0:" + strconv.Itoa(serial) + "): "
	c.handle(sys.AuditLandlockAccess, st+"domain="+domain+` blockers=fs.read_file path="`+path+`" dev="vda" ino=1`)
	c.handle(sys.AuditLandlockDomain, st+"domain="+domain+" status=allocated mode=enforcing pid="+strconv.Itoa(pid)+` uid=0 exe="/x" comm="x"`)
	c.handle(sys.AuditEOE, st)
}

// TestFinishWaitsForLateRecords: a denial read only after Finish logged its marker
// and began to wait (the reader behind, or the kernel slow to deliver) is still
// the launch's. Control: a record read after the launch's marker came back is not
// waited for (the marker is the end of what a launch gets).
func TestFinishWaitsForLateRecords(t *testing.T) {
	type result struct {
		ds []policy.Denial
		st Status
	}
	run := func(recordFirst bool) result {
		c, _ := newFakeCollector(t, Options{})
		waiting := make(chan struct{})
		c.awaiting = sync.OnceFunc(func() { close(waiting) })
		l := c.Begin()
		l.Attach(100)
		done := make(chan result)
		go func() {
			ds, st := l.Finish(context.Background())
			done <- result{ds, st}
		}()
		<-waiting // Finish logged its marker and waits for it
		if recordFirst {
			denialRecords(c, 10, 100, "a1", "/late")
			marker(c, 1)
			return <-done
		}
		marker(c, 1)
		r := <-done
		denialRecords(c, 10, 100, "a1", "/late")
		return r
	}
	if r := run(true); r.st.State != Complete || len(r.ds) != 1 || r.ds[0].Object.Path != "/late" {
		t.Errorf("late record: denials %+v status %+v, want the /late denial, complete", r.ds, r.st)
	}
	if r := run(false); len(r.ds) != 0 {
		t.Errorf("record after the marker: denials %+v, want none", r.ds)
	}
}

// TestLossDetection: the kernel's lost count is read only when a record of the
// launch may have been dropped (a burst of more records than half the backlog
// limit in its window, a rate limit, a limit changed), and a rise of it makes the
// launch incomplete; a quiet window needs no status read and is complete.
func TestLossDetection(t *testing.T) {
	c, f := newFakeCollector(t, Options{})
	finish := func(window func(), lost uint32) (Status, int) {
		t.Helper()
		f.mu.Lock()
		f.lost = lost
		f.mu.Unlock()
		_, gets0 := f.counts()
		l := c.Begin()
		l.Attach(300)
		window()
		l.Ended()
		marker(c, int(l.marker))
		_, st := l.Finish(context.Background())
		_, gets := f.counts()
		return st, gets - gets0
	}
	other := func(k int) func() {
		return func() {
			for i := range k {
				c.handle(sys.AuditSyscall, "audit(2.0:"+strconv.Itoa(1000+i)+"): arch=c000003e syscall=0 pid=1 ppid=0")
			}
		}
	}
	// Quiet: a few records of other programs.
	if st, gets := finish(other(5), 7); st.State != Complete || gets != 0 {
		t.Errorf("quiet window: %+v, %d status reads, want complete and none", st, gets)
	}
	// A burst past half the backlog limit (64): the status is read; lost rose.
	if st, gets := finish(other(40), 9); st.State != Incomplete || !strings.Contains(st.Reason, "lost 9 audit records") || gets != 1 {
		t.Errorf("burst with records lost: %+v, %d status reads, want incomplete (lost 9) after one", st, gets)
	}
	// Control: the same burst, nothing lost since.
	if st, gets := finish(other(40), 9); st.State != Complete || gets != 1 {
		t.Errorf("burst without loss: %+v, %d status reads, want complete after one", st, gets)
	}
	// A rate limit set (the kernel's config-change record, as captured on Linux
	// 6.18) drops records at any queue length: read, and lost rose.
	rate := func() {
		c.handle(sys.AuditConfigChange, "audit(1796313811.378:235862): op=set audit_rate_limit=100 old=0 auid=4294967295 ses=4294967295 res=1")
	}
	if st, gets := finish(rate, 10); st.State != Incomplete || gets != 1 {
		t.Errorf("rate limit set: %+v, %d status reads, want incomplete after one", st, gets)
	}
	// While it is set, every launch reads the status.
	if st, gets := finish(other(1), 10); st.State != Complete || gets != 1 {
		t.Errorf("rate limit in force: %+v, %d status reads, want complete after one", st, gets)
	}
	// Back to 0, then a limit change refused (res=0) is no change.
	c.handle(sys.AuditConfigChange, "audit(1796313811.379:235863): op=set audit_rate_limit=0 old=100 auid=4294967295 ses=4294967295 res=1")
	refused := func() {
		c.handle(sys.AuditConfigChange, "audit(1796313811.380:235864): op=set audit_backlog_limit=1 old=64 auid=4294967295 ses=4294967295 res=0")
	}
	if st, gets := finish(refused, 10); st.State != Complete || gets != 0 || c.backlogLimit != 64 {
		t.Errorf("refused change: %+v, %d status reads, backlog %d, want complete, none, 64", st, gets, c.backlogLimit)
	}
	// The backlog limit lowered: read.
	lower := func() {
		c.handle(sys.AuditConfigChange, "audit(1796313811.381:235865): op=set audit_backlog_limit=8 old=64 auid=4294967295 ses=4294967295 res=1")
	}
	if st, gets := finish(lower, 11); st.State != Incomplete || gets != 1 {
		t.Errorf("backlog limit lowered, records lost: %+v, %d status reads, want incomplete after one", st, gets)
	}
	// Audit turned off and on again during a launch: the kernel logged nothing
	// meanwhile and counted nothing lost.
	off := func() {
		c.handle(sys.AuditConfigChange, "audit(1796313811.382:235866): op=set audit_enabled=0 old=1 auid=4294967295 ses=4294967295 res=1")
	}
	if st, _ := finish(off, 11); st.State != Incomplete || !strings.Contains(st.Reason, "turned off") {
		t.Errorf("audit turned off during the launch: %+v, want incomplete", st)
	}
}

// TestKernelLateRecords: with the reader held, a denial made by the launch has not
// been read when Finish starts waiting; Finish returns it once the reader goes on.
func TestKernelLateRecords(t *testing.T) {
	s := newSandbox(t)
	c := openEnabled(t, Options{})
	cat, err := exec.LookPath("cat")
	if err != nil {
		t.Skipf("requires cat: %v", err)
	}
	// Hold the reader: it stops before its next read once it has handled the
	// marker logged next. (Paused at once, it could stop before reading that
	// marker when other programs' records kept it busy: then the marker never
	// came back, which made this test fail under a loaded host.)
	release := make(chan struct{})
	c.mu.Lock()
	c.opts.pauseReader = release
	c.opts.pauseAfter = c.markerNext
	c.mu.Unlock()
	if ok, why := c.await(context.Background(), c.mark(false)); !ok {
		t.Fatal(why)
	}
	l := c.Begin()
	pid := s.start(t, sys.LandlockLogNewExecOn, cat, filepath.Join(s.denied, "file"))
	l.Attach(pid)
	wait(t, pid)
	l.Ended()
	waiting := make(chan struct{})
	c.mu.Lock()
	c.awaiting = sync.OnceFunc(func() { close(waiting) })
	c.mu.Unlock()
	done := make(chan []policy.Denial)
	var st Status
	go func() {
		var ds []policy.Denial
		ds, st = l.Finish(context.Background())
		done <- ds
	}()
	<-waiting // Finish waits for its marker
	c.mu.Lock()
	n := len(l.denials)
	c.opts.pauseReader = nil
	c.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d denials read while the reader was held: the records were not late", n)
	}
	close(release)
	ds := <-done
	if st.State != Complete || len(ds) != 1 || ds[0].Object.Path != filepath.Join(s.denied, "file") {
		t.Errorf("denials %+v status %+v, want the one read denial, complete", ds, st)
	}
}

// TestKernelLimitChange: a config-change record in a launch's window (here the
// backlog limit set to the value it has: the host's state is unchanged) makes
// Finish read the kernel's status; a quiet window does not (control).
func TestKernelLimitChange(t *testing.T) {
	s := newSandbox(t)
	c := openEnabled(t, Options{})
	var gets int
	var mu sync.Mutex
	get := c.getStatus
	c.getStatus = func() (sys.AuditStatus, error) {
		mu.Lock()
		gets++
		mu.Unlock()
		return get()
	}
	// run launches true and returns its status, the status reads Finish made and
	// whether its window held more records than half the backlog limit (another
	// program's burst on a busy host: then a read is due anyway).
	run := func(change bool) (Status, int, bool) {
		mu.Lock()
		gets = 0
		mu.Unlock()
		l := c.Begin()
		pid := s.start(t, sys.LandlockLogNewExecOn, "/bin/true")
		l.Attach(pid)
		if change {
			st, err := get()
			if err != nil {
				t.Fatal(err)
			}
			if err := c.ctl.SetStatus(sys.AuditStatus{Mask: sys.AuditStatusBacklog, BacklogLimit: st.BacklogLimit}, 5*time.Second); err != nil {
				t.Fatal(err)
			}
		}
		wait(t, pid)
		_, st := l.Finish(context.Background())
		c.mu.Lock()
		burst := c.rateLimit != 0 || c.recvd.Load()-l.recvd > uint64(c.backlogLimit/2)
		c.mu.Unlock()
		mu.Lock()
		defer mu.Unlock()
		return st, gets, burst
	}
	quiet, quietGets, burst := run(false)
	if quiet.State != Complete || quietGets != 0 && !burst {
		t.Errorf("quiet launch: %+v after %d status reads, want complete after none", quiet, quietGets)
	}
	changed, changedGets, _ := run(true)
	if changedGets != 1 {
		t.Errorf("backlog limit set during the launch: %d status reads, want 1", changedGets)
	}
	// Complete unless the kernel lost records meanwhile (another program's flood).
	if changed.State != Complete && !strings.Contains(changed.Reason, "lost") {
		t.Errorf("backlog limit set during the launch: %+v", changed)
	}
}
