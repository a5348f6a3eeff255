package fleet

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentexec/agentexec"
	"github.com/agentexec/agentexec/internal/testutil"
)

func TestMain(m *testing.M) {
	agentexec.ServeSpawner()
	code := m.Run()
	testutil.RemoveAgentexecBinary()
	os.Exit(code)
}

// The test users. Only agent and worker may publish to the service's subjects;
// outsider may connect but not publish there (docs/fleet.md, "Security").
const (
	agentUser, agentPass       = "agent", "agent-secret-1"
	workerUser, workerPass     = "worker", "worker-secret-2"
	outsiderUser, outsiderPass = "outsider", "outsider-secret-3"
)

func testUsers() []*server.User {
	deny := &server.Permissions{Publish: &server.SubjectPermission{Deny: []string{DefaultService + ".>", "$JS.API.>", "$SRV.>"}}}
	return []*server.User{
		{Username: agentUser, Password: agentPass},
		{Username: workerUser, Password: workerPass},
		{Username: outsiderUser, Password: outsiderPass, Permissions: deny},
	}
}

// requireFleet skips the cluster tests outside `make fleet-test`.
func requireFleet(t *testing.T) {
	t.Helper()
	if os.Getenv("AGENTEXEC_FLEET") != "1" {
		t.Skip("NATS cluster test: run by make fleet-test (AGENTEXEC_FLEET=1)")
	}
	testutil.RequireRoot(t)
	testutil.RequireLandlockABI(t, 1)
}

// cluster is n nats-server nodes embedded in the test binary, on loopback.
type cluster struct {
	t       testing.TB
	servers []*server.Server
}

func startCluster(t testing.TB, n int, withJS bool) *cluster {
	t.Helper()
	c := &cluster{t: t}
	// JetStream in a cluster wants routes configured on every node: cluster ports
	// picked up front (free loopback ports), every node routed to all of them.
	ports := make([]int, n)
	var routes string
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		l.Close()
		routes += fmt.Sprintf(",nats://127.0.0.1:%d", ports[i])
	}
	for i := range n {
		o := &server.Options{
			ServerName: fmt.Sprintf("n%d", i), Host: "127.0.0.1", Port: -1,
			NoLog: true, NoSigs: true, Users: testUsers(),
			JetStream: withJS, StoreDir: t.TempDir(),
		}
		if n > 1 {
			o.Cluster = server.ClusterOpts{Name: "fleet", Host: "127.0.0.1", Port: ports[i], PoolSize: -1}
			o.Routes = server.RoutesFromStr(routes[1:])
		}
		s, err := server.NewServer(o)
		if err != nil {
			t.Fatalf("nats-server %d: %v", i, err)
		}
		go s.Start()
		if !s.ReadyForConnections(20 * time.Second) {
			t.Fatalf("nats-server %d not ready", i)
		}
		c.servers = append(c.servers, s)
	}
	t.Cleanup(func() {
		for _, s := range c.servers {
			s.Shutdown()
			s.WaitForShutdown()
		}
	})
	waitFor(t, 30*time.Second, "a full mesh of routes", func() bool {
		for _, s := range c.servers {
			if s.Running() && s.NumRoutes() < n-1 {
				return false
			}
		}
		return true
	})
	if withJS {
		nc := c.connect(agentUser, agentPass)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, 60*time.Second, "JetStream ready", func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_, err := js.AccountInfo(ctx)
			return err == nil
		})
		nc.Close()
	}
	return c
}

// url is every node's client URL with user's credentials.
func (c *cluster) url(user, pass string) string {
	var urls []string
	for _, s := range c.servers {
		u, err := url.Parse(s.ClientURL())
		if err != nil {
			c.t.Fatal(err)
		}
		u.User = url.UserPassword(user, pass)
		urls = append(urls, u.String())
	}
	return strings.Join(urls, ",")
}

func (c *cluster) connect(user, pass string, extra ...nats.Option) *nats.Conn {
	c.t.Helper()
	return c.connectURL(c.url(user, pass), user, extra...)
}

// connectNode connects to node i only (no other server URL is given, and the
// cluster's gossip is ignored): a client that a stop of another node leaves alone.
func (c *cluster) connectNode(i int, user, pass string) *nats.Conn {
	c.t.Helper()
	return c.connectURL(strings.Split(c.url(user, pass), ",")[i], user, nats.IgnoreDiscoveredServers())
}

func (c *cluster) connectURL(url, user string, extra ...nats.Option) *nats.Conn {
	c.t.Helper()
	nc, err := Connect(ConnOptions{URL: url, Name: "test " + user, Extra: extra})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(nc.Close)
	return nc
}

func waitFor(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// syncBuffer is a worker's stderr, readable while it runs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// workerProc is `agentexec worker` running as a child of the test.
type workerProc struct {
	id     string
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan struct{}
}

var readyRE = regexp.MustCompile(`msg="worker ready" worker=(\S+)`)

// startWorker starts a worker process with the worker user's credentials in
// $NATS_URL (not on its command line).
func startWorker(t *testing.T, c *cluster, pol string, args ...string) *workerProc {
	t.Helper()
	bin := testutil.AgentexecBinary(t)
	cmd := exec.Command(bin, append([]string{"worker", "--policy", pol}, args...)...)
	cmd.Env = append(os.Environ(), "NATS_URL="+c.url(workerUser, workerPass))
	cmd.Dir = filepath.Dir(pol)
	wp := &workerProc{cmd: cmd, stderr: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stderr = wp.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); close(wp.done) }()
	t.Cleanup(func() {
		select {
		case <-wp.done:
			return
		default:
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-wp.done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-wp.done
		}
	})
	waitFor(t, 60*time.Second, "worker ready", func() bool {
		select {
		case <-wp.done:
			t.Fatalf("worker exited:\n%s", wp.stderr)
		default:
		}
		return readyRE.MatchString(wp.stderr.String())
	})
	wp.id = readyRE.FindStringSubmatch(wp.stderr.String())[1]
	return wp
}

// kill9 kills the worker process with SIGKILL and waits for it.
func (wp *workerProc) kill9(t *testing.T) {
	t.Helper()
	if err := wp.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-wp.done
}

// policyYAML is the workers' policy: a few tools inside ws.
func policyYAML(ws string) string {
	return fmt.Sprintf(`version: 1
workspace: %s
shell: sh
defaults:
  filesystem:
    read: [/usr, /lib, /lib64, /bin, /etc, /proc, /dev/null, "${WORKSPACE}"]
    write: ["${WORKSPACE}", /dev/null]
    exec: [/usr, /bin, /lib, /lib64]
  env:
    set:
      PATH: /usr/bin:/bin
  limits:
    timeout: 60s
    output: 64KiB
  enforcement:
    landlock: require
    cgroup: best_effort
tools:
  sh: {exec: /bin/sh, hot: true}
  echo: {exec: /bin/echo, hot: true}
  true: {exec: /bin/true, hot: true}
  sleep: {exec: /bin/sleep}
`, ws)
}

func writePolicy(t *testing.T) (dir, pol string) {
	t.Helper()
	dir = t.TempDir()
	pol = filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(pol, []byte(policyYAML(dir)), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, pol
}

// lines reads the JSON lines of r (for comparisons).
func lines(r io.Reader) []string {
	var out []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 8<<20)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}
