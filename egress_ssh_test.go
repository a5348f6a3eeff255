package agentexec_test

import (
	"bufio"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/agentexec/agentexec"
	"github.com/agentexec/agentexec/internal/egress"
	"github.com/agentexec/agentexec/internal/testutil"
	"github.com/agentexec/agentexec/policy"
)

// testSSHD is an ssh server for git: public-key auth for the keys it is given,
// and "exec" requests for git-upload-pack on repositories under root, run by
// /usr/bin/git-upload-pack with the channel as its stdio.
type testSSHD struct {
	ln      net.Listener
	hostKey ssh.Signer
	port    string
	mu      sync.Mutex
	authOK  int // connections that authenticated (a verified signature)
}

func startSSHD(t *testing.T, root string, authorized ...ssh.PublicKey) *testSSHD {
	t.Helper()
	_, hk, _ := ed25519.GenerateKey(rand.Reader)
	signer, err := ssh.NewSignerFromKey(hk)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &testSSHD{ln: ln, hostKey: signer}
	_, d.port, _ = net.SplitHostPort(ln.Addr().String())
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
		for _, a := range authorized {
			if string(a.Marshal()) == string(k.Marshal()) {
				return &ssh.Permissions{}, nil
			}
		}
		return nil, errors.New("unknown key")
	}}
	cfg.AddHostKey(signer)
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				sc, chans, reqs, err := ssh.NewServerConn(c, cfg)
				if err != nil {
					return
				}
				d.mu.Lock()
				d.authOK++ // the handshake includes a verified signature
				d.mu.Unlock()
				defer sc.Close()
				go ssh.DiscardRequests(reqs)
				for nc := range chans {
					if nc.ChannelType() != "session" {
						nc.Reject(ssh.UnknownChannelType, "session only")
						continue
					}
					ch, creqs, err := nc.Accept()
					if err != nil {
						continue
					}
					wg.Add(1)
					go func() {
						defer wg.Done()
						serveGitSession(root, ch, creqs)
					}()
				}
			}()
		}
	}()
	return d
}

func (d *testSSHD) auths() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.authOK
}

// serveGitSession answers one "exec git-upload-pack '/REPO'" and exits with its status.
func serveGitSession(root string, ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	for req := range reqs {
		if req.Type != "exec" {
			req.Reply(req.Type == "env", nil)
			continue
		}
		var cmd struct{ Command string }
		if ssh.Unmarshal(req.Payload, &cmd) != nil {
			req.Reply(false, nil)
			return
		}
		repo, ok := strings.CutPrefix(cmd.Command, "git-upload-pack '")
		repo, ok2 := strings.CutSuffix(repo, "'")
		if !ok || !ok2 || strings.Contains(repo, "..") {
			req.Reply(false, nil)
			return
		}
		req.Reply(true, nil)
		c := exec.Command("/usr/bin/git-upload-pack", filepath.Join(root, repo))
		c.Stdin, c.Stdout, c.Stderr = ch, ch, ch.Stderr()
		status := uint32(0)
		if err := c.Run(); err != nil {
			status = 1
			var ee *exec.ExitError
			if errors.As(err, &ee) && ee.ExitCode() > 0 {
				status = uint32(ee.ExitCode())
			}
		}
		ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{status}))
		return
	}
}

// sshFixture is what the ssh tests share: a bare repository, a client key
// pair, a workspace.
type sshFixture struct {
	root, keyFile string
	key           ed25519.PrivateKey
	pub           ssh.PublicKey
}

func newSSHFixture(t *testing.T) *sshFixture {
	t.Helper()
	testutil.RequireLandlockABI(t, 4)
	for _, p := range []string{"/usr/bin/ssh", "/usr/bin/git-upload-pack"} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("%s not installed (%v); make setup installs git and openssh-client", p, err)
		}
	}
	root := t.TempDir()
	src := filepath.Join(root, "src")
	for _, args := range [][]string{
		{"init", "-q", "-b", "main", src},
		{"-C", src, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "over ssh"},
		{"clone", "-q", "--bare", src, filepath.Join(root, "repo.git")},
	} {
		if out, err := exec.Command("git", args...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	pub, _ := ssh.NewPublicKey(key.Public())
	blk, err := ssh.MarshalPrivateKey(key, "")
	if err != nil {
		t.Fatal(err)
	}
	keyDir := t.TempDir()
	keyFile := filepath.Join(keyDir, "id_ed25519")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(blk), 0o600); err != nil {
		t.Fatal(err)
	}
	return &sshFixture{root: root, keyFile: keyFile, key: key, pub: pub}
}

// knownHosts writes a known_hosts file with one line per (host, key).
func knownHosts(t *testing.T, lines map[string]ssh.PublicKey) string {
	t.Helper()
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	var b strings.Builder
	for h, k := range lines {
		fmt.Fprintf(&b, "%s %s", h, ssh.MarshalAuthorizedKey(k))
	}
	f := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(f, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// git over ssh through the proxy: a real `git clone ssh://…` from an allowed
// sshd works with its host key in the policy's known_hosts; with another key
// there for that host ssh refuses it (the control is the first clone); an ssh
// host that is not in network.ssh is refused by the proxy with a network denial.
func TestEgressGitSSH(t *testing.T) {
	fx := newSSHFixture(t)
	good := startSSHD(t, fx.root, fx.pub)
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	otherPub, _ := ssh.NewPublicKey(otherKey.Public())
	hostName := "[127.0.0.1]:" + good.port
	khGood := knownHosts(t, map[string]ssh.PublicKey{hostName: good.hostKey.PublicKey()})
	khWrong := knownHosts(t, map[string]ssh.PublicKey{hostName: otherPub})
	khOther := knownHosts(t, map[string]ssh.PublicKey{"[127.0.0.1]:1": otherPub})
	p, ws := testPolicy(t, fmt.Sprintf(`  gitssh:
    exec: /usr/bin/git
    user: root
    filesystem: {read+: [/dev/urandom, %[2]q]}
    network:
      ssh: ["127.0.0.1:%[1]s"]
      known_hosts: %[3]q
  gitwrongkey:
    exec: /usr/bin/git
    user: root
    filesystem: {read+: [/dev/urandom, %[2]q]}
    network:
      ssh: ["127.0.0.1:%[1]s"]
      known_hosts: %[4]q
  gitotherhost:
    exec: /usr/bin/git
    user: root
    filesystem: {read+: [/dev/urandom, %[2]q]}
    network:
      ssh: ["127.0.0.1:1"]
      known_hosts: %[5]q
`, good.port, filepath.Dir(fx.keyFile), khGood, khWrong, khOther))
	rt := newRuntime(t, p, agentexec.WithEgressConfigForTest(func(c *egress.Config) {
		c.SSHOptions = append(c.SSHOptions, "IdentityFile="+fx.keyFile, "IdentitiesOnly=yes")
	}))
	url := "ssh://git@127.0.0.1:" + good.port + "/repo.git"

	r := run(t, rt, "gitssh", "clone", "-q", url, filepath.Join(ws, "out", "clone"))
	if r.ExitCode != 0 {
		t.Fatalf("git clone over ssh through the proxy: exit %d\n%s", r.ExitCode, r.Stderr)
	}
	if out, err := exec.Command("git", "-C", filepath.Join(ws, "out", "clone"), "log", "--format=%s").Output(); err != nil || strings.TrimSpace(string(out)) != "over ssh" {
		t.Errorf("clone's log = %q, %v", out, err)
	}
	if r.Egress == nil || len(r.Egress.Allowed) != 1 || fmt.Sprint(r.Egress.Allowed[0].Port) != good.port || r.Egress.Received == 0 {
		t.Errorf("egress report %+v, want the one ssh tunnel", r.Egress)
	}
	if good.auths() == 0 {
		t.Error("the sshd saw no public-key authentication")
	}

	// A key in known_hosts that is not the server's: ssh refuses the host.
	r = run(t, rt, "gitwrongkey", "clone", "-q", url, filepath.Join(ws, "out", "clone2"))
	if r.ExitCode == 0 || !strings.Contains(string(r.Stderr), "HOST IDENTIFICATION HAS CHANGED") {
		t.Errorf("host key not in known_hosts: exit %d, stderr %s", r.ExitCode, r.Stderr)
	}

	// An ssh host not in network.ssh: the proxy refuses the tunnel.
	r = run(t, rt, "gitotherhost", "clone", "-q", url, filepath.Join(ws, "out", "clone3"))
	i := slices.IndexFunc(r.Denials, func(d policy.Denial) bool { return d.Layer == policy.LayerNetwork })
	if r.ExitCode == 0 || i < 0 {
		t.Fatalf("unlisted ssh host: exit %d, denials %+v, stderr %s", r.ExitCode, r.Denials, r.Stderr)
	}
	if d := r.Denials[i]; fmt.Sprint(d.Object.Port) != good.port || d.Access != "net.egress.destination" {
		t.Errorf("denial %+v: want the sshd's port refused as a destination", d)
	}
}

// The session's ssh options pin what the issue asks and come before anything a
// configuration file or Config.SSHOptions can say (ssh keeps the first value).
func TestEgressSSHOptions(t *testing.T) {
	p, err := egress.New(egress.Config{SSHProxyCommand: "/x/agentexec __egress_connect %h %p", SSHOptions: []string{"StrictHostKeyChecking=no"}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	a, _ := policy.ParseAllow("tools.git.network.ssh[0]", "git.test", policy.DefaultSSHPorts)
	s, err := p.Session("l1", &policy.Egress{SSH: a, KnownHosts: "/p/known_hosts", KnownHostsField: "tools.git.network.known_hosts"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	opts := s.SSHOptions()
	idx := func(o string) int { return slices.Index(opts, o) }
	for _, o := range []string{"ProxyCommand=/x/agentexec __egress_connect %h %p", "StrictHostKeyChecking=yes", "UserKnownHostsFile=/p/known_hosts",
		"GlobalKnownHostsFile=/dev/null", "ControlPath=none", "IdentityAgent=none", "ForwardAgent=no"} {
		if i := idx(o); i < 0 || i > idx("StrictHostKeyChecking=no") {
			t.Errorf("option %q missing or after Config.SSHOptions: %q", o, opts)
		}
	}
	var env string
	for _, kv := range s.Env() {
		if v, ok := strings.CutPrefix(kv, "GIT_SSH_COMMAND="); ok {
			env = v
		}
	}
	if !strings.Contains(env, "-o 'UserKnownHostsFile=/p/known_hosts'") || strings.Contains(env, "SSH_AUTH_SOCK") {
		t.Errorf("GIT_SSH_COMMAND = %q", env)
	}
}

// A missing known_hosts file stops New with an error naming the field; a file
// without a key for the ssh hosts too (a launch checks again: the file may change
// after New).
func TestEgressSSHKnownHostsMissing(t *testing.T) {
	testutil.RequireLandlockABI(t, 4)
	dir := t.TempDir()
	_, k, _ := ed25519.GenerateKey(rand.Reader)
	pub, _ := ssh.NewPublicKey(k.Public())
	other := knownHosts(t, map[string]ssh.PublicKey{"elsewhere.test": pub})
	p, _ := testPolicy(t, fmt.Sprintf(`  gitmissing:
    exec: /usr/bin/git
    network:
      ssh: ["git.test"]
      known_hosts: %q
  gitnokey:
    exec: /usr/bin/git
    network:
      ssh: ["git.test"]
      known_hosts: %q
`, filepath.Join(dir, "nope"), other))
	// check says what New will refuse.
	probs := strings.Join(agentexec.Check(p).Problems, "\n")
	for _, want := range []string{"tool gitmissing: tools.gitmissing.network.known_hosts", "tool gitnokey: tools.gitnokey.network.known_hosts"} {
		if !strings.Contains(probs, want) {
			t.Errorf("check's problems %q do not name %q", probs, want)
		}
	}
	testutil.RequireRoot(t)
	rt, err := agentexec.New(t.Context(), p)
	if err == nil {
		rt.Close()
		t.Fatal("New accepted a policy whose known_hosts files are missing or name no key for the ssh hosts")
	}
	for _, want := range []string{
		"tools.gitmissing.network.known_hosts: " + filepath.Join(dir, "nope") + ": open",
		"tools.gitnokey.network.known_hosts: " + other + ": no key for the network.ssh hosts (git.test:22)",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("New: %v, want %q", err, want)
		}
	}
}

// The launch's agent socket signs for a session bound to an allowed host (the
// key is only in the runtime's agent, never on disk in the tool's view) and
// refuses the same key to a second sshd whose host key is not allowed; the
// control shows the host's own agent signs for that sshd.
func TestEgressSSHAgent(t *testing.T) {
	fx := newSSHFixture(t)
	exe, _ := os.Executable()
	keyring := agent.NewKeyring()
	if err := keyring.Add(agent.AddedKey{PrivateKey: fx.key, Comment: "agent-only"}); err != nil {
		t.Fatal(err)
	}
	agentDir := t.TempDir()
	rawSock := filepath.Join(agentDir, "agent.sock")
	ln, err := net.Listen("unix", rawSock)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); agent.ServeAgent(keyring, c); c.Close() }()
		}
	}()
	t.Setenv("SSH_AUTH_SOCK", rawSock)

	good := startSSHD(t, fx.root, fx.pub)
	rogue := startSSHD(t, fx.root, fx.pub)
	kh := knownHosts(t, map[string]ssh.PublicKey{"[127.0.0.1]:" + good.port: good.hostKey.PublicKey()})
	p, _ := testPolicy(t, fmt.Sprintf(`  gitagent:
    exec: /usr/bin/git
    user: root
    enforcement: {landlock: best_effort}
    filesystem: {read+: [/dev/urandom]}
    network:
      ssh: ["127.0.0.1:%[1]s"]
      known_hosts: %[3]q
      ssh_agent: true
      unix: true
      unix_sockets: [%[4]q]
  sshagent:
    exec: /usr/bin/ssh
    user: root
    enforcement: {landlock: best_effort}
    network:
      ssh: ["127.0.0.1:%[1]s", "127.0.0.1:%[2]s"]
      known_hosts: %[3]q
      ssh_agent: true
      unix: true
      unix_sockets: [%[4]q]
`, good.port, rogue.port, kh, os.TempDir()))
	rt := newRuntime(t, p)

	r := run(t, rt, "gitagent", "ls-remote", "ssh://git@127.0.0.1:"+good.port+"/repo.git")
	if r.ExitCode != 0 || !strings.Contains(string(r.Stdout), "refs/heads/main") {
		t.Fatalf("git ls-remote with the launch's agent: exit %d, stdout %q\n%s", r.ExitCode, r.Stdout, r.Stderr)
	}
	if good.auths() == 0 {
		t.Error("the allowed sshd saw no public-key authentication")
	}

	// The tool's own ssh to the second sshd, host key checking off: the tunnel is
	// allowed (network.ssh lists it), the filtering agent refuses to sign.
	r = run(t, rt, "sshagent", "-o", "ProxyCommand="+exe+" __egress_connect %h %p", "-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=no",
		"-p", rogue.port, "git@127.0.0.1", "git-upload-pack '/repo.git'")
	if r.ExitCode == 0 || rogue.auths() != 0 {
		t.Errorf("rogue sshd: exit %d, %d authentications; stderr %s", r.ExitCode, rogue.auths(), r.Stderr)
	}
	if !slices.ContainsFunc(r.Denials, func(d policy.Denial) bool { return d.Access == "net.egress.agent" }) {
		t.Errorf("rogue sshd: denials %+v, want the agent's refusal", r.Denials)
	}

	// Control: the host's agent itself signs for the rogue sshd.
	raw, err := net.Dial("unix", rawSock)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	c, err := ssh.Dial("tcp", "127.0.0.1:"+rogue.port, &ssh.ClientConfig{User: "git",
		Auth:            []ssh.AuthMethod{ssh.PublicKeysCallback(agent.NewClient(raw).Signers)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey()})
	if err != nil {
		t.Fatalf("control: the raw agent did not authenticate to the rogue sshd: %v", err)
	}
	c.Close()
	// The server counts once its side of the handshake returns, which may be
	// after the client's.
	for deadline := time.Now().Add(5 * time.Second); rogue.auths() < 1 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if rogue.auths() != 1 {
		t.Errorf("control: rogue sshd authentications %d, want 1", rogue.auths())
	}
}

// A launch's agent socket serves only that launch's processes: another launch of
// the same tool identity that learns the socket's path (here from the first
// launch's output) and connects to it gets nothing from it, and the first launch's
// result records the refusal. The control is the same connection with the peer
// check off, which lists the agent's key, as the first launch itself does.
func TestEgressSSHAgentPeer(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireLandlockABI(t, 4)
	if _, err := os.Stat("/usr/bin/ssh-add"); err != nil {
		t.Skipf("/usr/bin/ssh-add not installed (%v); make setup installs openssh-client", err)
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	keyring := agent.NewKeyring()
	if err := keyring.Add(agent.AddedKey{PrivateKey: priv, Comment: "agent-peer-key"}); err != nil {
		t.Fatal(err)
	}
	rawSock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", rawSock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _ = agent.ServeAgent(keyring, c); c.Close() }()
		}
	}()
	t.Setenv("SSH_AUTH_SOCK", rawSock)
	_, hk, _ := ed25519.GenerateKey(rand.Reader)
	hpub, _ := ssh.NewPublicKey(hk.Public())
	kh := knownHosts(t, map[string]ssh.PublicKey{"[127.0.0.1]:1": hpub})
	p, _ := testPolicy(t, fmt.Sprintf(`  holder:
    exec: /bin/sh
    network:
      ssh: ["127.0.0.1:1"]
      known_hosts: %q
      ssh_agent: true
      unix: true
  intruder:
    exec: /usr/bin/ssh-add
    network: {unix: true}
    env: {allow: [SSH_AUTH_SOCK]}
`, kh))
	for _, tc := range []struct {
		name    string
		opts    []agentexec.Option
		refused bool
	}{
		{"peer check", nil, true},
		{"control", []agentexec.Option{agentexec.WithoutAgentPeerCheckForTest()}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := newRuntime(t, p, tc.opts...)
			release, stdin := io.Pipe()
			defer stdin.Close()
			holder, err := rt.Start(t.Context(), agentexec.Request{Tool: "holder", Stdin: release, Args: []string{"-c",
				`echo "$SSH_AUTH_SOCK"; /usr/bin/ssh-add -l; echo listed; read x`}})
			if err != nil {
				t.Fatal(err)
			}
			out := bufio.NewReader(holder.Stdout())
			go io.Copy(io.Discard, holder.Stderr())
			sock, _ := out.ReadString('\n')
			sock = strings.TrimSpace(sock)
			own, _ := out.ReadString('\n')
			if !strings.Contains(own, "agent-peer-key") {
				t.Fatalf("the launch's own ssh-add -l: %q (socket %q)", own, sock)
			}
			intr, err := rt.Run(t.Context(), agentexec.Request{Tool: "intruder", Args: []string{"-l"}, Env: map[string]string{"SSH_AUTH_SOCK": sock}})
			if err != nil {
				t.Fatal(err)
			}
			stdin.Close()
			go io.Copy(io.Discard, out)
			res, err := holder.Wait()
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Contains(string(intr.Stdout), "agent-peer-key")
			refusal := slices.ContainsFunc(res.Denials, func(d policy.Denial) bool {
				return d.Access == "net.egress.agent" && d.Hint != nil && strings.Contains(d.Hint.Text, "not a process of this launch")
			})
			if tc.refused && (got || !refusal) {
				t.Errorf("another launch's ssh-add -l on the socket: exit %d, stdout %q; refusal in the holder's result %v (%+v)", intr.ExitCode, intr.Stdout, refusal, res.Denials)
			}
			if !tc.refused && !got {
				t.Errorf("control: another launch's ssh-add -l without the peer check: exit %d, stdout %q, stderr %q", intr.ExitCode, intr.Stdout, intr.Stderr)
			}
		})
	}
}
