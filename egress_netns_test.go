package agentexec_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentexec/agentexec"
	"github.com/agentexec/agentexec/internal/contain"
	"github.com/agentexec/agentexec/internal/testutil"
)

// requireNetNS skips unless this process can create network namespaces.
func requireNetNS(t *testing.T) {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireLandlockABI(t, 4)
	if ok, why := contain.NetNSAvailable(); !ok {
		if testutil.Strict() {
			t.Fatalf("AGENTEXEC_STRICT=1: %s", why)
		}
		t.Skip(why)
	}
}

// toolProxyPort is the port of the HTTP_PROXY a launch of tool gets.
func toolProxyPort(t *testing.T, rt *agentexec.Runtime, tool string) string {
	t.Helper()
	r := run(t, rt, tool, "-helper", "env")
	for _, l := range strings.Split(string(r.Stdout), "\n") {
		if v, ok := strings.CutPrefix(l, "HTTP_PROXY="); ok {
			u, err := url.Parse(v)
			if err != nil || u.Hostname() != "127.0.0.1" {
				t.Fatalf("%s: HTTP_PROXY is not a URL on 127.0.0.1", tool)
			}
			return u.Port()
		}
	}
	t.Fatalf("%s: no HTTP_PROXY in the environment: %q", tool, r.Stderr)
	return ""
}

// toolSpawner is the pid of the spawner that launches tool (the launch's parent)
// and the network namespace it is in.
func toolSpawner(t *testing.T, rt *agentexec.Runtime, tool string) (int, string) {
	t.Helper()
	r := run(t, rt, tool, "-helper", "status")
	sc := bufio.NewScanner(strings.NewReader(string(r.Stdout)))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "PPid:"); ok {
			pid, _ := strconv.Atoi(strings.TrimSpace(v))
			ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
			if err != nil {
				t.Fatalf("%s: spawner %d: %v", tool, pid, err)
			}
			return pid, ns
		}
	}
	t.Fatalf("%s: no PPid in %q", tool, r.Stdout)
	return 0, ""
}

// tcpListeners lists the TCP sockets listening in pid's network namespace
// ("127.0.0.1:PORT", from /proc/PID/net/tcp and tcp6).
func tcpListeners(t *testing.T, pid int) []string {
	t.Helper()
	var out []string
	for _, f := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(l)
			if len(fs) < 4 || fs[3] != "0A" { // TCP_LISTEN
				continue
			}
			addr, port, _ := strings.Cut(fs[1], ":")
			p, _ := strconv.ParseUint(port, 16, 16)
			if f == "tcp" && len(addr) == 8 {
				a, _ := strconv.ParseUint(addr, 16, 32) // little-endian on the hosts we run on
				addr = fmt.Sprintf("%d.%d.%d.%d", a&0xff, a>>8&0xff, a>>16&0xff, a>>24)
			}
			out = append(out, fmt.Sprintf("%s:%d", addr, p))
		}
	}
	return out
}

// As root, a tool with network.allow sits in an empty network namespace of its
// profile whose only listener is the proxy's, on 127.0.0.1 and the proxy's own
// port: it reaches the allowed origin through the proxy, and neither the proxy's
// port on another address of the host nor any other address (no route). The
// control is a profile with a TCP port of its own, which keeps the host's
// network: the same connection to the proxy's port on another address gets
// through. network.isolated with network.allow is valid (a namespace of its
// own), and a spawner restarted after a death lands in the same namespace.
func TestEgressNetNS(t *testing.T) {
	requireNetNS(t)
	port := startOrigin(t, "hello from the origin")
	exe, _ := os.Executable()
	p, _ := testPolicy(t, fmt.Sprintf(`  web:
    exec: %[1]q
    network:
      allow: ["127.0.0.1:%[2]s"]
  webiso:
    exec: %[1]q
    network:
      allow: ["127.0.0.1:%[2]s"]
      isolated: require
  webports:
    exec: %[1]q
    network:
      allow: ["127.0.0.1:%[2]s"]
      connect_tcp: [9]
`, exe, port))
	// What check says of each profile on this host.
	rep := agentexec.Check(p)
	for _, pr := range rep.Profiles {
		want := map[string]string{"web": "netns", "webiso": "netns", "webports": "landlock"}[pr.Tools[0]]
		if want == "" {
			if pr.Egress != nil {
				t.Errorf("check: profile of %v without egress has %+v", pr.Tools, pr.Egress)
			}
			continue
		}
		if pr.Egress == nil || pr.Egress.Mode != want || (want == "landlock") != strings.Contains(pr.Egress.Reach, "every address") {
			t.Errorf("check: profile of %v: egress %+v, want mode %s", pr.Tools, pr.Egress, want)
		}
	}
	if slices.ContainsFunc(rep.Problems, func(s string) bool { return strings.Contains(s, "isolated") }) {
		t.Errorf("check: problems %q: network.isolated with network.allow is valid as root", rep.Problems)
	}
	var text strings.Builder
	rep.WriteText(&text)
	if !strings.Contains(text.String(), "egress proxy: netns: ") || !strings.Contains(text.String(), "egress proxy: landlock: ") {
		t.Errorf("check text does not show the egress confinement:\n%s", text.String())
	}
	rt := newRuntime(t, p)
	hostNS, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}

	for _, tool := range []string{"web", "webiso", "webports"} {
		r := run(t, rt, tool, "-helper", "proxyget", "http://127.0.0.1:"+port+"/")
		if r.ExitCode != 0 || !strings.Contains(string(r.Stdout), "hello from the origin") {
			t.Fatalf("%s: allowed origin through the proxy: exit %d, stdout %q stderr %q", tool, r.ExitCode, r.Stdout, r.Stderr)
		}
		if r.Egress == nil || len(r.Egress.Allowed) != 1 || r.Egress.Received == 0 {
			t.Errorf("%s: egress report %+v", tool, r.Egress)
		}
		if got, want := slices.Contains(r.Containment, "netns"), tool != "webports"; got != want {
			t.Errorf("%s: containment %v, netns %v, want %v", tool, r.Containment, got, want)
		}
	}
	proxyPort := toolProxyPort(t, rt, "web")
	for _, tool := range []string{"webiso", "webports"} {
		if pp := toolProxyPort(t, rt, tool); pp != proxyPort {
			t.Errorf("%s: proxy port %s, web's %s: HTTP_PROXY must be the same URL in and out of a namespace", tool, pp, proxyPort)
		}
	}
	webPid, webNS := toolSpawner(t, rt, "web")
	isoPid, isoNS := toolSpawner(t, rt, "webiso")
	_, portsNS := toolSpawner(t, rt, "webports")
	if webNS == hostNS || isoNS == hostNS || webNS == isoNS || portsNS != hostNS {
		t.Fatalf("network namespaces: host %s, web %s, webiso %s, webports %s; want web and webiso each in one of its own, webports in the host's", hostNS, webNS, isoNS, portsNS)
	}
	for _, pid := range []int{webPid, isoPid} {
		if l := tcpListeners(t, pid); len(l) != 1 || l[0] != "127.0.0.1:"+proxyPort {
			t.Errorf("listeners in spawner %d's namespace: %v, want only the proxy's 127.0.0.1:%s", pid, l, proxyPort)
		}
	}

	// The proxy's port on another address of the host: a listener of the test's.
	other, err := net.Listen("tcp4", "127.0.0.2:"+proxyPort)
	if err != nil {
		t.Fatalf("listen on 127.0.0.2:%s: %v", proxyPort, err)
	}
	defer other.Close()
	accepted := make(chan struct{}, 16)
	go func() {
		for {
			c, err := other.Accept()
			if err != nil {
				return
			}
			c.Close()
			accepted <- struct{}{}
		}
	}()
	for _, tool := range []string{"web", "webiso"} {
		for _, c := range []struct{ addr, want string }{
			{"127.0.0.2:" + proxyPort, "connection refused"},     // nothing listens there in the namespace
			{"192.0.2.1:" + proxyPort, "network is unreachable"}, // TEST-NET-1: no route (nothing is sent)
			{"127.0.0.1:" + port, "permission denied"},           // the origin, around the proxy: Landlock's port rules
		} {
			r := run(t, rt, tool, "-helper", "net", "tcp", c.addr)
			if r.ExitCode == 0 || !strings.Contains(string(r.Stdout), c.want) {
				t.Errorf("%s: direct connection to %s: exit %d, %q; want %q", tool, c.addr, r.ExitCode, r.Stdout, c.want)
			}
		}
	}
	// Control: without the namespace, the proxy's port on another address is open
	// to the tool (Landlock's rules are per port), and the test's listener sees it.
	if r := run(t, rt, "webports", "-helper", "net", "tcp", "127.0.0.2:"+proxyPort); r.ExitCode != 0 {
		t.Fatalf("control: webports could not reach 127.0.0.2:%s: %q %q", proxyPort, r.Stdout, r.Stderr)
	}
	select {
	case <-accepted:
	case <-time.After(10 * time.Second):
		t.Fatal("control: the test's listener on 127.0.0.2 saw no connection")
	}
	if n := len(accepted); n != 0 {
		t.Errorf("the listener on 127.0.0.2 saw %d connections more than the control's", n)
	}

	// A restarted spawner is in the same namespace, with the same listener.
	agentexec.KillSpawnerForTest(rt, "web")
	r := run(t, rt, "web", "-helper", "proxyget", "http://127.0.0.1:"+port+"/")
	if r.ExitCode != 0 || !strings.Contains(string(r.Stdout), "hello from the origin") {
		t.Fatalf("after a spawner restart: exit %d, stdout %q stderr %q", r.ExitCode, r.Stdout, r.Stderr)
	}
	newPid, newNS := toolSpawner(t, rt, "web")
	if newPid == webPid || newNS != webNS {
		t.Errorf("restarted spawner %d (was %d) in %s, want a new process in the same namespace %s", newPid, webPid, newNS, webNS)
	}
}

// fdTargets lists what this process's file descriptors point at.
func fdTargets(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		l, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err != nil {
			continue // the directory's own descriptor, closed by now
		}
		out = append(out, l)
	}
	slices.Sort(out)
	return out
}

// Two runtimes, each with two profiles in egress namespaces: every profile has
// a namespace and listener of its own, and Close leaves no descriptor behind (no
// listener, no namespace file) and no process in those namespaces.
func TestEgressNetNSClose(t *testing.T) {
	requireNetNS(t)
	port := startOrigin(t, "hello")
	exe, _ := os.Executable()
	p, _ := testPolicy(t, fmt.Sprintf(`  web:
    exec: %[1]q
    network:
      allow: ["127.0.0.1:%[2]s"]
  web2:
    exec: %[1]q
    network:
      allow: ["127.0.0.1:%[2]s"]
      isolated: best_effort
`, exe, port))
	start := func() *agentexec.Runtime {
		rt, err := agentexec.New(context.Background(), p)
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		return rt
	}
	// Warm up: what the first runtime of a process opens once and keeps.
	warm := start()
	run(t, warm, "web", "-helper", "proxyget", "http://127.0.0.1:"+port+"/")
	warm.Close()

	before := fdTargets(t)
	rts := []*agentexec.Runtime{start(), start()}
	seen := map[string]bool{}
	for i, rt := range rts {
		for _, tool := range []string{"web", "web2"} {
			if r := run(t, rt, tool, "-helper", "proxyget", "http://127.0.0.1:"+port+"/"); r.ExitCode != 0 {
				t.Fatalf("runtime %d %s: exit %d %q", i, tool, r.ExitCode, r.Stdout)
			}
			pid, ns := toolSpawner(t, rt, tool)
			if seen[ns] {
				t.Errorf("runtime %d %s: namespace %s shared with another profile", i, tool, ns)
			}
			seen[ns] = true
			if l := tcpListeners(t, pid); len(l) != 1 {
				t.Errorf("runtime %d %s: listeners %v, want the proxy's only", i, tool, l)
			}
		}
	}
	for _, rt := range rts {
		if err := rt.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
	after := fdTargets(t)
	if !slices.Equal(before, after) {
		t.Errorf("descriptors before %d, after Close %d:\nbefore %v\nafter  %v", len(before), len(after), before, after)
	}
	for _, l := range after {
		if strings.HasPrefix(l, "net:[") {
			t.Errorf("a network namespace descriptor is left: %s", l)
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/ns/net")
	for _, f := range procs {
		if l, err := os.Readlink(f); err == nil && seen[l] {
			t.Errorf("%s is still in an egress namespace (%s) after Close", f, l)
		}
	}
}
