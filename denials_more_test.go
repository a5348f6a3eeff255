package agentexec_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"gopkg.in/yaml.v3"

	"github.com/agentexec/agentexec"
	"github.com/agentexec/agentexec/internal/audit"
	"github.com/agentexec/agentexec/internal/sys"
	"github.com/agentexec/agentexec/internal/testutil"
	"github.com/agentexec/agentexec/policy"
)

// The tests of issue 16 on the engine: each refusal the sandbox makes comes back
// as exactly one denial on the launch that met it, with a hint that, applied to
// the policy, allows the same call; what the sandbox did not refuse (a file's own
// permission bits) is not a denial; a flood is capped; and where the kernel's
// denials cannot be had, results say why.

// requireKernelDenials skips unless this host can give kernel denials: root
// (CAP_AUDIT_*), Landlock ABI 7 (LOG_NEW_EXEC_ON) and a kernel with CONFIG_AUDIT
// (the spawn_template RFC test kernel has none). Under AGENTEXEC_STRICT=1 outside
// the VM tier a kernel without audit fails the test: the CI host has it.
func requireKernelDenials(t testing.TB) {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireLandlockABI(t, 7)
	c, err := sys.OpenAudit(0, 0)
	if errors.Is(err, unix.EPROTONOSUPPORT) {
		msg := fmt.Sprintf("requires a kernel with CONFIG_AUDIT (NETLINK_AUDIT: %v); the spawn_template RFC test kernel has none", err)
		if testutil.Strict() && !testutil.InVM() {
			t.Fatalf("AGENTEXEC_STRICT=1: %s (the CI machine must have it)", msg)
		}
		t.Skip(msg)
	}
	if err != nil {
		t.Fatalf("audit netlink socket: %v", err)
	}
	c.Close()
}

// outsideRoots holds what the denial tests provoke on, in a directory outside
// every root of the test policy that any uid may search, so that only Landlock
// stands in the way: a world-readable file, a world-writable file, and an
// executable (a copy of /bin/true).
type outsideRoots struct {
	dir, readable, writable, prog string
}

func newOutsideRoots(t *testing.T) outsideRoots {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "agentexec-denials-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	o := outsideRoots{dir: dir, readable: filepath.Join(dir, "secret"), writable: filepath.Join(dir, "target"), prog: filepath.Join(dir, "prog")}
	truebin, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{{o.readable, []byte("secret\n"), 0o644}, {o.writable, []byte("old\n"), 0o666}, {o.prog, truebin, 0o755}} {
		if err := os.WriteFile(f.path, f.data, f.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(f.path, f.mode); err != nil { // past the umask
			t.Fatal(err)
		}
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return o
}

// denialTools are the tools of the denial tests, as a YAML tree that a hint's
// patch is applied to (as policy/hint_test.go does): "dd" is the test binary,
// with room for 16 bystanders and the provoking launches at once, and one TCP
// port (ddPort) so that its TCP sockets pass the seccomp filter and a connect
// elsewhere is Landlock's refusal; "ddsh" is /bin/sh allowed to read o.dir but
// not to execute from it.
func denialTools(o outsideRoots) map[string]any {
	exe, _ := os.Executable()
	return map[string]any{
		"dd": map[string]any{"exec": exe, "hot": true, "concurrency": 24,
			"network": map[string]any{"connect_tcp": []any{ddPort}}},
		"ddsh": map[string]any{"exec": "/bin/sh", "concurrency": 8, "filesystem": map[string]any{"read+": []any{o.dir}}},
	}
}

// ddPort is the one TCP port "dd" may connect to: outside the flood's ports
// (1..floodPorts) and the ephemeral range the tests' listeners get.
const ddPort = 1023

// applyPatch adds each change of h under its field path ("tools.dd.filesystem.read")
// as `list+:`, the policy's way to extend the defaults (or to the tool's own list).
func applyPatch(t *testing.T, tools map[string]any, h *policy.Hint) {
	t.Helper()
	for _, c := range h.Patch {
		parts := strings.Split(c.Field, ".")
		if len(parts) < 3 || parts[0] != "tools" {
			t.Fatalf("patch field %q: not a tool's list", c.Field)
		}
		m, ok := tools[parts[1]].(map[string]any)
		if !ok {
			t.Fatalf("patch field %q: no tool %q", c.Field, parts[1])
		}
		for _, k := range parts[2 : len(parts)-1] {
			next, ok := m[k].(map[string]any)
			if !ok {
				next = map[string]any{}
				m[k] = next
			}
			m = next
		}
		// A list the tool sets itself is extended as it is.
		key := parts[len(parts)-1]
		if _, own := m[key]; !own {
			key += "+"
		}
		l, _ := m[key].([]any)
		m[key] = append(l, c.Add)
	}
}

// denialPolicy is testPolicyFull with the tools' tree added (kernel denials on).
func denialPolicy(t *testing.T, tools map[string]any) (*policy.Policy, string) {
	t.Helper()
	b, err := yaml.Marshal(tools)
	if err != nil {
		t.Fatal(err)
	}
	var extra strings.Builder
	for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		extra.WriteString("  " + l + "\n")
	}
	return testPolicyFull(t, "kernel_denials: on\n", extra.String(), "require")
}

// provocation is one refusal a launch provokes, and the denial it must produce.
type provocation struct {
	name   string
	tool   string
	args   []string
	layer  string
	access string
	// match says whether a denial is about this provocation's object (any
	// access): no other launch may have one.
	match func(policy.Denial) bool
	// byDesign: the hint must say no policy change should allow it.
	byDesign bool
}

func pathIs(p string) func(policy.Denial) bool {
	return func(d policy.Denial) bool { return d.Object.Path == p }
}

// provocations are the refusals of issue 16's list: a read and a write outside
// the roots, an exec of an unlisted path, a TCP connect to a port the policy does
// not list, a signal to a process outside the launch (victimPID; 0 leaves it out).
func provocations(o outsideRoots, port, victimPID int) []provocation {
	ps := []provocation{
		{name: "read", tool: "dd", args: []string{"-helper", "read", o.readable}, layer: policy.LayerLandlock, access: "fs.read_file", match: pathIs(o.readable)},
		{name: "write", tool: "dd", args: []string{"-helper", "write", o.writable}, layer: policy.LayerLandlock, access: "fs.write_file", match: pathIs(o.writable)},
		{name: "exec", tool: "ddsh", args: []string{"-c", o.prog}, layer: policy.LayerLandlock, access: "fs.execute", match: pathIs(o.prog)},
		{name: "connect", tool: "dd", args: []string{"-helper", "net", "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))},
			layer: policy.LayerLandlock, access: "net.connect_tcp",
			match: func(d policy.Denial) bool { return d.Object.Port == uint16(port) }},
	}
	if victimPID != 0 {
		ps = append(ps, provocation{name: "signal", tool: "dd", args: []string{"-helper", "kill", strconv.Itoa(victimPID)},
			layer: policy.LayerLandlock, access: "scope.signal", byDesign: true,
			match: func(d policy.Denial) bool { return d.Object.PID == victimPID }})
	}
	return ps
}

// checkProvoked asserts that r has exactly one denial about p's object, the
// expected one, met once, with a hint.
func checkProvoked(t *testing.T, p provocation, r agentexec.Result) *policy.Hint {
	t.Helper()
	if r.ExitCode == 0 {
		t.Errorf("%s: the refused call succeeded: stdout %q", p.name, r.Stdout)
	}
	if r.DenialsStatus.State != "complete" {
		t.Errorf("%s: denials status %+v, want complete", p.name, r.DenialsStatus)
	}
	var found []policy.Denial
	for _, d := range r.Denials {
		if p.match(d) {
			found = append(found, d)
		}
	}
	if len(found) != 1 {
		t.Errorf("%s: %d denials about its object, want exactly 1: %+v (all: %+v)", p.name, len(found), found, r.Denials)
		return nil
	}
	d := found[0]
	if d.Layer != p.layer || d.Access != p.access || d.Count != 1 {
		t.Errorf("%s: denial %+v, want layer %s access %s count 1", p.name, d, p.layer, p.access)
	}
	if d.Hint == nil {
		t.Errorf("%s: denial %+v has no hint", p.name, d)
		return nil
	}
	if d.Hint.ByDesign != p.byDesign || (p.byDesign != (len(d.Hint.Patch) == 0)) {
		t.Errorf("%s: hint %+v, want by_design %v with a patch only when not by design", p.name, d.Hint, p.byDesign)
	}
	return d.Hint
}

// Each refusal of issue 16's list is exactly the expected denial on the launch
// that met it, while 16 other launches of the same profile run at the same time
// (they are alive from before the first provocation until after the last) and
// none of them, nor any other provoking launch, shows a denial about that object.
// The signal's target is one of those 16 launches: the denial is the sender's.
func TestKernelDenialsAttributedUnderConcurrency(t *testing.T) {
	requireKernelDenials(t)
	o := newOutsideRoots(t)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	p, ws := denialPolicy(t, denialTools(o))
	rt := newRuntime(t, p)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	const bystanders = 16
	gate := filepath.Join(ws, "out", "gate")
	type bystander struct {
		proc *agentexec.Process
		res  agentexec.Result
		err  error
		done chan struct{}
	}
	var bs []*bystander
	for i := range bystanders {
		proc, err := rt.Start(ctx, agentexec.Request{Tool: "dd", Args: []string{"-helper", "victim", gate}})
		if err != nil {
			t.Fatalf("start bystander %d: %v", i, err)
		}
		b := &bystander{proc: proc, done: make(chan struct{})}
		go func() {
			defer close(b.done)
			_, _ = io.Copy(io.Discard, proc.Stdout())
			b.res, b.err = proc.Wait()
		}()
		bs = append(bs, b)
	}
	victim := bs[0].proc.Pid()
	ps := provocations(o, port, victim)
	results := make([]agentexec.Result, len(ps))
	var wg sync.WaitGroup
	for i, pv := range ps {
		wg.Go(func() {
			r, err := rt.Run(ctx, agentexec.Request{Tool: pv.tool, Args: pv.args})
			if err != nil {
				t.Errorf("%s: %v", pv.name, err)
			}
			results[i] = r
		})
	}
	wg.Wait()
	// Every bystander is still waiting at the gate: none has exited during the
	// provocations (the victim included: the signal did not reach it).
	for i, b := range bs {
		select {
		case <-b.done:
			t.Fatalf("bystander %d ended before the gate opened: %v %+v", i, b.err, b.res)
		default:
		}
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, b := range bs {
		<-b.done
	}

	for i, pv := range ps {
		checkProvoked(t, pv, results[i])
		for j, other := range results {
			if j == i {
				continue
			}
			for _, d := range other.Denials {
				if pv.match(d) {
					t.Errorf("%s's denial shows on launch %q too: %+v", pv.name, ps[j].name, d)
				}
			}
		}
	}
	for i, b := range bs {
		if b.err != nil || b.res.ExitCode != 0 || b.res.DenialsStatus.State != "complete" {
			t.Errorf("bystander %d: err %v, exit %d, status %+v, stderr %q", i, b.err, b.res.ExitCode, b.res.DenialsStatus, b.res.Stderr)
		}
		for _, d := range b.res.Denials {
			for _, pv := range ps {
				if pv.match(d) {
					t.Errorf("bystander %d shows %s's denial: %+v", i, pv.name, d)
				}
			}
		}
	}
}

// Applying each patchable denial's hint to the policy (the YAML re-parsed with
// the patch) makes the same call succeed, with no denial about its object; the
// control is the same call refused, with the denial, before the patch. The
// signal's hint has no patch: it is refused by design.
func TestKernelDenialsHintApplied(t *testing.T) {
	requireKernelDenials(t)
	o := newOutsideRoots(t)
	port := testutil.LoopbackTCP(t)
	tools := denialTools(o)
	p, _ := denialPolicy(t, tools)
	rt := newRuntime(t, p)
	ps := provocations(o, port, 0)
	for _, pv := range ps {
		r := run(t, rt, pv.tool, pv.args...)
		h := checkProvoked(t, pv, r)
		if h == nil || len(h.Patch) == 0 {
			t.Fatalf("%s: no patch to apply (hint %+v)", pv.name, h)
		}
		t.Logf("%s: %s", pv.name, h.Text)
		applyPatch(t, tools, h)
	}
	if err := rt.Close(); err != nil {
		t.Fatal(err)
	}

	p2, _ := denialPolicy(t, tools)
	rt2 := newRuntime(t, p2)
	for _, pv := range ps {
		r := run(t, rt2, pv.tool, pv.args...)
		if r.ExitCode != 0 {
			t.Errorf("%s after the patch: exit %d, stdout %q, stderr %q, denials %+v", pv.name, r.ExitCode, r.Stdout, r.Stderr, r.Denials)
		}
		if r.DenialsStatus.State != "complete" {
			t.Errorf("%s after the patch: status %+v", pv.name, r.DenialsStatus)
		}
		for _, d := range r.Denials {
			if pv.match(d) {
				t.Errorf("%s after the patch: still denied: %+v", pv.name, d)
			}
		}
	}
	if b, err := os.ReadFile(o.writable); err != nil || string(b) != "x" {
		t.Errorf("the patched write did not land: %q, %v", b, err)
	}
}

// A tool that fails for a reason of its own — EACCES on a mode 0600 file of
// another uid, inside a read root — gets no denial: the kernel refused it by the
// file's permission bits, not the sandbox. Controls in the same runtime: the same
// file made 0644 is read (the policy allows it), and a read outside the roots is
// a denial (the collection works in this run).
func TestKernelDenialsNotForDAC(t *testing.T) {
	requireKernelDenials(t)
	o := newOutsideRoots(t)
	p, ws := denialPolicy(t, denialTools(o))
	private := filepath.Join(ws, "private")
	if err := os.WriteFile(private, []byte("mine\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Another uid than root (the workspace's owner, which the tool view maps to
	// the tool identity) and than the tools' own (agentexec.ToolIDBase…).
	if err := os.Chown(private, 4242, 4242); err != nil {
		t.Fatal(err)
	}
	rt := newRuntime(t, p)

	r := run(t, rt, "dd", "-helper", "read", private)
	if r.ExitCode == 0 || !strings.Contains(string(r.Stdout), "permission denied") {
		t.Fatalf("read of a 0600 file of uid 4242: exit %d, stdout %q; want EACCES", r.ExitCode, r.Stdout)
	}
	if r.DenialsStatus.State != "complete" {
		t.Errorf("status %+v, want complete", r.DenialsStatus)
	}
	for _, d := range r.Denials {
		if d.Object.Path == private {
			t.Errorf("a permission-bits refusal is reported as a sandbox denial: %+v", d)
		}
	}

	if err := os.Chmod(private, 0o644); err != nil {
		t.Fatal(err)
	}
	if r := run(t, rt, "dd", "-helper", "read", private); r.ExitCode != 0 {
		t.Errorf("control: the same file made 0644: exit %d, stdout %q; the policy lets the tool read it", r.ExitCode, r.Stdout)
	}
	r = run(t, rt, "dd", "-helper", "read", o.readable)
	checkProvoked(t, provocations(o, 1, 0)[0], r)
}

// The flood tool's refusals are TCP connects to 127.0.0.1 on ports
// 1..floodPorts in turn: floodPorts distinct denials, more than the collector's
// cap (audit.DefaultMaxDenials, which the runtime keeps).
const floodPorts = 1000

// floodEnv opts in to the 100,000-denial flood: while it streams (about a
// second) every audit reader on the host, other runtimes' collectors and other
// packages' kernel-denial tests included, overflows, so their launches of that
// moment say "incomplete". Run it alone (CI does, with make flood-test):
// AGENTEXEC_DENIAL_FLOOD=1 go test -count=1 -run TestKernelDenialsFlood100k .
const floodEnv = "AGENTEXEC_DENIAL_FLOOD"

// denialsHelper is the test binary run as a tool or as an unprivileged program
// for these tests: "flood N" provokes N TCP connects the sandbox refuses;
// "unpriv WS FILE" runs a launch with kernel_denials on as the uid it was
// started with and prints what it got (JSON).
func denialsHelper(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "denials: missing mode")
		return 2
	}
	switch args[0] {
	case "flood":
		n, _ := strconv.Atoi(args[1])
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			fmt.Println("socket:", err)
			return 1
		}
		denied, other := 0, map[string]int{}
		for i := range n {
			err := unix.Connect(fd, &unix.SockaddrInet4{Port: 1 + i%floodPorts, Addr: [4]byte{127, 0, 0, 1}})
			switch {
			case errors.Is(err, unix.EACCES):
				denied++
			case err == nil:
				other["connected"]++
			default:
				other[err.Error()]++
			}
		}
		fmt.Printf("denied %d other %v\n", denied, other)
	case "unpriv":
		return unprivDenials(args[1], args[2])
	default:
		fmt.Fprintln(os.Stderr, "denials: unknown mode", args[0])
		return 2
	}
	return 0
}

// floodCheck runs a tool that meets n refusals over floodPorts distinct ports
// and checks the cap: exactly the collector's cap of distinct denials kept, the
// rest counted in Omitted, and every record counted once (kept counts plus
// omitted add up to n when the list is complete; never more when records were
// lost, which the status says). The runtime's live heap, sampled while the
// records stream in, stays within 16 MiB of where it was: keeping every denial
// would take hundreds of bytes each.
func floodCheck(t *testing.T, n int) {
	requireKernelDenials(t)
	o := newOutsideRoots(t)
	p, _ := denialPolicy(t, denialTools(o))
	rt := newRuntime(t, p)
	// Warm the profile so that the baseline heap holds the runtime's own state.
	run(t, rt, "dd", "-helper", "exit", "0")

	live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/cycles/total:gc-cycles"}}
	runtime.GC()
	metrics.Read(live)
	base, cycles0 := live[0].Value.Uint64(), live[1].Value.Uint64()
	var peak uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				metrics.Read(s)
				peak = max(peak, s[0].Value.Uint64())
			}
		}
	}()
	r := run(t, rt, "dd", "-helper", "denials", "flood", strconv.Itoa(n))
	close(stop)
	<-sampled
	metrics.Read(live)
	cycles := live[1].Value.Uint64() - cycles0

	if want := fmt.Sprintf("denied %d other map[]", n); strings.TrimSpace(string(r.Stdout)) != want {
		t.Fatalf("flood tool: %q (exit %d), want %q", r.Stdout, r.ExitCode, want)
	}
	kept, counted := 0, 0
	for _, d := range r.Denials {
		if d.Access == "net.connect_tcp" {
			kept++
			counted += d.Count
		}
	}
	st := r.DenialsStatus
	t.Logf("%d refusals: %d denials kept (%d connects, counted %d), omitted %d, status %s %s; live heap %d -> peak %d bytes over %d GC cycles",
		n, len(r.Denials), kept, counted, st.Omitted, st.State, st.Reason, base, peak, cycles)
	if len(r.Denials) != audit.DefaultMaxDenials {
		t.Errorf("%d denials kept, want the cap, %d", len(r.Denials), audit.DefaultMaxDenials)
	}
	if st.Omitted == 0 || kept == 0 {
		t.Fatalf("nothing omitted (%d) or no connect kept (%d): the cap did not apply", st.Omitted, kept)
	}
	switch st.State {
	case "complete":
		// The Go runtime's own start-up denials come before the connects and are
		// among the kept: every connect is a kept count or an omitted one.
		if counted+st.Omitted != n {
			t.Errorf("kept counts %d + omitted %d = %d, want %d", counted, st.Omitted, counted+st.Omitted, n)
		}
	case "incomplete":
		if st.Reason == "" || counted+st.Omitted > n {
			t.Errorf("incomplete: reason %q, counted %d + omitted %d (of %d)", st.Reason, counted, st.Omitted, n)
		}
	default:
		t.Errorf("status %+v", st)
	}
	if cycles > 0 && peak > base && peak-base > 16<<20 {
		t.Errorf("live heap grew by %d bytes during the flood (from %d)", peak-base, base)
	}
}

// A tool that meets 2,000 refusals over 1,000 ports (four times the cap of
// distinct denials, a burst the collector keeps up with) gets the capped list,
// counted exactly when complete.
func TestKernelDenialsCapped(t *testing.T) {
	floodCheck(t, 2*floodPorts)
}

// A tool that meets 100,000 refusals (1,000 ports, 100 times each) gets a capped
// list; the records the collector could not read in time make it "incomplete",
// with the reason. Opt-in (floodEnv): the flood overflows every audit reader on
// the host for a moment.
func TestKernelDenialsFlood100k(t *testing.T) {
	if os.Getenv(floodEnv) != "1" {
		t.Skipf("run alone by make flood-test (%s=1): 100,000 audit events overflow every audit reader on the host (other packages' kernel-denial tests would see \"incomplete\")", floodEnv)
	}
	floodCheck(t, 100_000)
}

// Without kernel denials asked for (kernel_denials: off, audit left as it is),
// results say "unavailable" with that reason and list none; the control is the
// same call with kernel_denials: on, which lists the denial.
func TestKernelDenialsOffUnavailable(t *testing.T) {
	requireKernelDenials(t)
	o := newOutsideRoots(t)
	pOff, _ := testPolicy(t, "")
	rt := newRuntime(t, pOff)
	r := run(t, rt, "self", "-helper", "read", o.readable)
	if r.ExitCode == 0 {
		t.Errorf("kernel_denials off: the read outside the roots succeeded")
	}
	if r.DenialsStatus.State != "unavailable" || r.DenialsStatus.Reason != "kernel_denials: off" || len(r.Denials) != 0 {
		t.Errorf("kernel_denials off: status %+v, denials %+v; want unavailable (kernel_denials: off) and none", r.DenialsStatus, r.Denials)
	}
	pOn, _ := denialPolicy(t, denialTools(o))
	rtOn := newRuntime(t, pOn)
	checkProvoked(t, provocations(o, 1, 0)[0], run(t, rtOn, "dd", "-helper", "read", o.readable))
}

// unprivReport is what the unprivileged helper prints.
type unprivReport struct {
	NewError      string                  `json:"new_error,omitempty"`
	ExitCode      int                     `json:"exit_code"`
	Stdout        string                  `json:"stdout"`
	Denials       []policy.Denial         `json:"denials"`
	Status        agentexec.DenialsStatus `json:"status"`
	RequireError  string                  `json:"require_error"`
	RequireNotSup bool                    `json:"require_not_supported"`
	Check         agentexec.KernelDenialsReport
}

// unprivDenials runs, as whatever uid it was started with, a launch reading file
// under a policy with kernel_denials: on, then tries New with require.
func unprivDenials(ws, file string) int {
	exe, _ := os.Executable()
	policyFor := func(setting string) (*policy.Policy, error) {
		y := fmt.Sprintf(`version: 1
kernel_denials: %s
workspace: %s
defaults:
  filesystem:
    read: [/usr, /lib, /lib64, /bin, /etc, /proc, /dev/null, "${WORKSPACE}", %q]
    exec: [/usr, /bin, /lib, /lib64, %q]
  limits: {timeout: 20s}
  enforcement: {landlock: require, cgroup: best_effort}
tools:
  self: {exec: %q}
`, setting, ws, filepath.Dir(exe), filepath.Dir(exe), exe)
		p, err := policy.Parse("unpriv.yaml", []byte(y), policy.Options{Workspace: ws, Home: ws, CPUs: runtime.NumCPU()})
		if err == nil {
			err = policy.Resolve(p)
		}
		return p, err
	}
	var rep unprivReport
	p, err := policyFor("on")
	if err != nil {
		fmt.Fprintln(os.Stderr, "policy:", err)
		return 3
	}
	rep.Check = agentexec.Check(p).KernelDenials
	ctx := context.Background()
	rt, err := agentexec.New(ctx, p)
	if err != nil {
		rep.NewError = err.Error()
	} else {
		r, err := rt.Run(ctx, agentexec.Request{Tool: "self", Args: []string{"-helper", "read", file}})
		if err != nil {
			rep.NewError = "run: " + err.Error()
		}
		rep.ExitCode, rep.Stdout, rep.Denials, rep.Status = r.ExitCode, string(r.Stdout), r.Denials, r.DenialsStatus
		rt.Close()
	}
	if p, err = policyFor("require"); err != nil {
		fmt.Fprintln(os.Stderr, "policy:", err)
		return 3
	}
	if rt, err := agentexec.New(ctx, p); err != nil {
		rep.RequireError, rep.RequireNotSup = err.Error(), errors.Is(err, agentexec.ErrNotSupported)
	} else {
		rt.Close()
	}
	json.NewEncoder(os.Stdout).Encode(rep)
	return 0
}

// Under an unprivileged user (the test binary run as uid 65534, without
// capabilities), kernel_denials: on gives "unavailable" with the missing
// capability as the reason, the sandbox still refuses, `check` says why once, and
// `require` is an error matching ErrNotSupported. The control: the same read as
// root lists the denial.
func TestKernelDenialsUnprivilegedUnavailable(t *testing.T) {
	requireKernelDenials(t)
	o := newOutsideRoots(t)
	// The test binary and a workspace that uid 65534 can reach (the build's own
	// directory is mode 0700).
	dir, err := os.MkdirTemp("/tmp", "agentexec-unpriv-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ws := filepath.Join(dir, "ws")
	for _, d := range []string{dir, ws} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	exe, _ := os.Executable()
	bin := filepath.Join(dir, filepath.Base(exe))
	if err := os.Link(exe, bin); err != nil {
		b, rerr := os.ReadFile(exe)
		if rerr != nil {
			t.Fatal(rerr)
		}
		if err := os.WriteFile(bin, b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	const nobody = 65534
	cmd := exec.Command(bin, "-helper", "denials", "unpriv", ws, o.readable)
	cmd.Dir = ws
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + ws, "TMPDIR=" + ws}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody, Groups: []uint32{}}}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("unprivileged helper: %v\nstdout %s\nstderr %s", err, out, stderr.String())
	}
	var rep unprivReport
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("unprivileged helper printed %q: %v (stderr %s)", out, err, stderr.String())
	}
	t.Logf("as uid %d: %+v", nobody, rep)
	if rep.NewError != "" {
		t.Fatalf("as uid %d, kernel_denials: on: %s (want a runtime, denials unavailable)", nobody, rep.NewError)
	}
	if rep.ExitCode == 0 || !strings.Contains(rep.Stdout, "permission denied") {
		t.Errorf("as uid %d: the read outside the roots: exit %d, %q; the sandbox must still refuse it", nobody, rep.ExitCode, rep.Stdout)
	}
	if rep.Status.State != "unavailable" || !strings.Contains(rep.Status.Reason, "CAP_AUDIT") || len(rep.Denials) != 0 {
		t.Errorf("as uid %d: status %+v, denials %+v; want unavailable naming the missing CAP_AUDIT_* and none", nobody, rep.Status, rep.Denials)
	}
	if rep.Check.Available || rep.Check.Reason == "" {
		t.Errorf("as uid %d: check says %+v; want unavailable with the reason", nobody, rep.Check)
	}
	if !rep.RequireNotSup || !strings.Contains(rep.RequireError, "kernel_denials: require") {
		t.Errorf("as uid %d, kernel_denials: require: %q (ErrNotSupported %v); want an error at New", nobody, rep.RequireError, rep.RequireNotSup)
	}

	// The control: as root, the same call lists the denial.
	p, _ := denialPolicy(t, denialTools(o))
	rt := newRuntime(t, p)
	checkProvoked(t, provocations(o, 1, 0)[0], run(t, rt, "dd", "-helper", "read", o.readable))
}
