package agentexec_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentexec/agentexec"
	"github.com/agentexec/agentexec/internal/contain"
	"github.com/agentexec/agentexec/internal/testutil"
)

// netProbe is run inside a launch: it tries one kind of network access.
func netProbe(kind, target string) error {
	switch kind {
	case "tcp", "udp", "unix":
		c, err := net.DialTimeout(kind, target, 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		if kind == "udp" {
			_, err = c.Write([]byte("x"))
		}
		return err
	case "bind":
		l, err := net.Listen("tcp4", "127.0.0.1:"+target)
		if err != nil {
			return err
		}
		return l.Close()
	case "mptcp":
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 262 /* IPPROTO_MPTCP */)
		if err != nil {
			return fmt.Errorf("socket(AF_INET, SOCK_STREAM, IPPROTO_MPTCP): %w", err)
		}
		defer unix.Close(fd)
		port, _ := strconv.Atoi(target)
		return unix.Connect(fd, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}})
	case "raw":
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ICMP)
		if err == nil {
			unix.Close(fd)
		}
		return err
	case "abstract":
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Connect(fd, &unix.SockaddrUnix{Name: "@" + target})
	}
	return fmt.Errorf("unknown probe %q", kind)
}

func TestToolHasNoCapabilities(t *testing.T) {
	p, _ := testPolicy(t, "")
	rt := newRuntime(t, p)
	r := run(t, rt, "self", "-helper", "status")
	st, err := contain.ParseStatus(r.Stdout)
	if err != nil {
		t.Fatal(err)
	}
	if st.CapEff != 0 || st.CapPrm != 0 || st.CapBnd != 0 || st.CapInh != 0 || st.CapAmb != 0 {
		t.Fatalf("launched tool has capabilities: %+v", st)
	}
	if !st.NoNewPrivs || st.Seccomp != 2 {
		t.Errorf("no_new_privs %v seccomp mode %d, want true and 2 (filter)", st.NoNewPrivs, st.Seccomp)
	}
	// A setuid-root copy of a binary grants nothing under no_new_privs.
	dir := t.TempDir()
	exe, _ := os.Executable()
	b, _ := os.ReadFile(exe)
	if err := os.WriteFile(filepath.Join(dir, "suid"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "suid"), 0o755|os.ModeSetuid); err != nil {
		t.Fatal(err)
	}
	p2, _ := testPolicy(t, fmt.Sprintf("  suid: {exec: %s/suid, filesystem: {exec+: [%s]}}\n", dir, dir))
	rt2 := newRuntime(t, p2)
	r = run(t, rt2, "suid", "-helper", "status")
	st, err = contain.ParseStatus(r.Stdout)
	if err != nil {
		t.Fatalf("%v: %q %q", err, r.Stdout, r.Stderr)
	}
	if st.CapEff != 0 || st.CapPrm != 0 {
		t.Fatalf("setuid exec regained capabilities: %+v", st)
	}
}

func TestNetworkNoneRefusesEverything(t *testing.T) {
	p, _ := testPolicy(t, "")
	rt := newRuntime(t, p)
	tcp, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	go testutil.AcceptAll(tcp)
	udp, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	sockDir := t.TempDir()
	unixPath := filepath.Join(sockDir, "agent.sock")
	ul, err := net.Listen("unix", unixPath)
	if err != nil {
		t.Fatal(err)
	}
	defer ul.Close()
	abstract := fmt.Sprintf("agentexec-test-%d", time.Now().UnixNano())
	al, err := net.Listen("unix", "@"+abstract)
	if err != nil {
		t.Fatal(err)
	}
	defer al.Close()
	tcpPort := strconv.Itoa(tcp.Addr().(*net.TCPAddr).Port)
	cases := [][]string{
		{"tcp", tcp.Addr().String()},
		{"udp", udp.LocalAddr().String()},
		{"mptcp", tcpPort},
		{"raw", "-"},
		{"unix", unixPath},
		{"abstract", abstract},
	}
	for _, c := range cases {
		// Outside the sandbox each succeeds (raw needs root)...
		if err := netProbe(c[0], c[1]); err != nil && c[0] != "mptcp" {
			t.Fatalf("%s outside the sandbox: %v", c[0], err)
		}
		// ...inside it fails.
		r := run(t, rt, "self", "-helper", "net", c[0], c[1])
		if r.ExitCode == 0 {
			t.Errorf("%s %s from a network-none launch succeeded: %s", c[0], c[1], r.Stdout)
		}
	}
}

func TestTCPPortRules(t *testing.T) {
	l443, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l443.Close()
	other, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	allowed := l443.Addr().(*net.TCPAddr).Port
	exe, _ := os.Executable()
	p, _ := testPolicy(t, fmt.Sprintf("  netself: {exec: %q, network: {connect_tcp: [%d]}}\n", exe, allowed))
	rt := newRuntime(t, p)
	if r := run(t, rt, "netself", "-helper", "net", "tcp", l443.Addr().String()); r.ExitCode != 0 {
		t.Errorf("connect to the allowed port %d failed: %s", allowed, r.Stdout)
	}
	if r := run(t, rt, "netself", "-helper", "net", "tcp", other.Addr().String()); r.ExitCode == 0 {
		t.Errorf("connect to another port %s succeeded", other.Addr())
	}
	if r := run(t, rt, "netself", "-helper", "net", "mptcp", strconv.Itoa(allowed)); r.ExitCode == 0 {
		t.Errorf("MPTCP connect succeeded under a TCP-only policy")
	}
	// No bind_tcp ports: binding any port fails, inside; outside it works.
	probe, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	free := probe.Addr().(*net.TCPAddr).Port
	probe.Close()
	if r := run(t, rt, "netself", "-helper", "net", "bind", strconv.Itoa(free)); r.ExitCode == 0 {
		t.Errorf("bind to port %d succeeded without bind_tcp", free)
	}
}

// A tool cannot kill, stop or trace its own spawner, and the launch running beside
// it finishes normally.
func TestToolCannotHarmItsSpawner(t *testing.T) {
	p, _ := testPolicy(t, "")
	rt := newRuntime(t, p)
	ctx := context.Background()
	// With several launcher threads every one of them must be out of reach.
	if n := agentexec.SpawnerLaunchersForTest(rt); len(n) == 0 || n[0] < 2 {
		t.Fatalf("launcher threads per spawner: %v, want at least 2 (the policy's concurrency is %d)", n, p.Profiles[0].Concurrency)
	}
	for _, attack := range [][]string{{"killparent", "KILL"}, {"killparent", "STOP"}, {"killparent", "TERM"}, {"ptraceparent"}, {"killparenttasks"}} {
		beside, err := rt.Start(ctx, agentexec.Request{Tool: "sh", Args: []string{"-c", "sleep 0.3; echo beside"}})
		if err != nil {
			t.Fatal(err)
		}
		out := make(chan []byte, 1)
		go func() { b, _ := readAll(beside); out <- b }()
		r := run(t, rt, "self", append([]string{"-helper"}, attack...)...)
		if r.ExitCode == 0 {
			t.Errorf("%v: the tool reached its spawner: %s", attack, r.Stdout)
		}
		if !strings.Contains(string(r.Stdout), "operation not permitted") {
			t.Errorf("%v: %q, want EPERM", attack, r.Stdout)
		}
		got := <-out
		br, err := beside.Wait()
		if err != nil || br.ExitCode != 0 || string(got) != "beside\n" {
			t.Errorf("%v: the launch beside it: %v exit %d out %q", attack, err, br.ExitCode, got)
		}
	}
	if rt.Stats().SpawnerRestarts != 0 {
		t.Errorf("a spawner died")
	}
}
