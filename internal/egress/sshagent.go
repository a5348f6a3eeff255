package egress

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/sys/unix"
)

// CheckAgent names a sign or bind request the launch's ssh-agent refused
// (Denial.Check; Method "AGENT").
const CheckAgent = "agent"

// AgentConfig is what a launch's filtering ssh-agent needs (Session.ServeSSHAgent).
type AgentConfig struct {
	// Upstream is the path of the agent that holds the keys (the runtime's
	// $SSH_AUTH_SOCK). It is dialled once per connection of the tool.
	Upstream string
	// Dir is where the launch's private socket directory is made ("" means
	// os.TempDir()).
	Dir string
	// HostKeys are the host keys sessions may be bound to: the keys of the
	// network.ssh hosts in the policy's known_hosts.
	HostKeys []ssh.PublicKey
	// UID and GID own the socket directory and socket (the tools' identity);
	// -1 leaves the runtime's.
	UID, GID int
	// Rule is the field denials name ("tools.git.network.ssh_agent").
	Rule string
	// Peer, when set, is asked about the process at the other end of each
	// connection (its pid from SO_PEERCRED) before anything is served: an error
	// refuses the connection (a denial). The runtime lets only the launch's own
	// processes in (the socket's directory name is random, but another launch of
	// the same identity that can list its parent could find it).
	Peer func(pid int) error
}

// sshAgent is a launch's agent socket and its connections.
type sshAgent struct {
	dir, sock string
	ln        net.Listener
	mu        sync.Mutex
	conns     map[net.Conn]struct{}
	wg        sync.WaitGroup
}

// ServeSSHAgent serves a filtering ssh-agent for the launch on a new unix socket
// in a directory of its own (mode 0700, owned by cfg.UID), and returns the
// socket's path; Env then sets SSH_AUTH_SOCK and ssh's IdentityAgent to it, and
// Close stops it and removes the directory.
//
// The agent lists the upstream agent's keys and signs only user-authentication
// requests of ssh sessions bound (OpenSSH's session-bind@openssh.com, which ssh
// 8.9 and later send) to one of cfg.HostKeys: the binding's signature by the host
// key over the session identifier must verify, and the data to sign must be a
// SSH_MSG_USERAUTH_REQUEST of that session for the key asked. It refuses
// forwarded bindings (is_forwarding), a second binding on one connection, adding,
// removing, locking and every other extension.
func (s *Session) ServeSSHAgent(cfg AgentConfig) (string, error) {
	if cfg.Upstream == "" {
		return "", fmt.Errorf("egress: ssh agent for launch %s: no upstream agent (is SSH_AUTH_SOCK set?)", s.id)
	}
	if len(cfg.HostKeys) == 0 {
		return "", fmt.Errorf("egress: ssh agent for launch %s: no host keys to bind sessions to", s.id)
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("egress: ssh agent: %w", err)
	}
	parent := cfg.Dir
	if parent == "" {
		parent = os.TempDir()
	}
	dir := filepath.Join(parent, "agentexec-agent-"+hex.EncodeToString(b[:]))
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", fmt.Errorf("egress: ssh agent: %w", err)
	}
	a := &sshAgent{dir: dir, sock: filepath.Join(dir, "agent"), conns: map[net.Conn]struct{}{}}
	fail := func(err error) (string, error) {
		os.RemoveAll(dir)
		return "", fmt.Errorf("egress: ssh agent: %w", err)
	}
	ln, err := net.Listen("unix", a.sock)
	if err != nil {
		return fail(err)
	}
	a.ln = ln
	if cfg.UID >= 0 {
		for _, p := range []string{dir, a.sock} {
			if err := os.Lchown(p, cfg.UID, cfg.GID); err != nil {
				ln.Close()
				return fail(err)
			}
		}
	}
	if err := os.Chmod(a.sock, 0o600); err != nil {
		ln.Close()
		return fail(err)
	}
	s.mu.Lock()
	if s.closed || s.agent != nil {
		s.mu.Unlock()
		ln.Close()
		return fail(errors.New("session closed or agent already served"))
	}
	s.agent = a
	s.mu.Unlock()
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			a.mu.Lock()
			if a.conns == nil {
				a.mu.Unlock()
				c.Close()
				return
			}
			a.conns[c] = struct{}{}
			a.mu.Unlock()
			a.wg.Add(1)
			go func() {
				defer a.wg.Done()
				f := &filterAgent{s: s, cfg: &cfg}
				if err := checkPeer(c, cfg.Peer); err != nil {
					f.mu.Lock()
					_ = f.refuse(err.Error())
					f.mu.Unlock()
				} else {
					_ = agent.ServeAgent(f, c)
				}
				f.close()
				c.Close()
				a.mu.Lock()
				delete(a.conns, c)
				a.mu.Unlock()
			}()
		}
	}()
	return a.sock, nil
}

// close stops the agent: no new connections, open ones cut, directory removed.
func (a *sshAgent) close() {
	a.ln.Close()
	a.mu.Lock()
	for c := range a.conns {
		c.Close()
	}
	a.conns = nil
	a.mu.Unlock()
	a.wg.Wait()
	os.RemoveAll(a.dir)
}

// filterAgent is the agent one connection of the tool talks to.
type filterAgent struct {
	s   *Session
	cfg *AgentConfig

	mu       sync.Mutex
	upstream agent.ExtendedAgent
	upConn   net.Conn
	// hostKey and sessionID are the connection's binding (nil: none yet).
	hostKey   []byte
	sessionID []byte
	// poisoned: a binding was refused; the connection signs nothing any more.
	poisoned bool
}

var errRefused = errors.New("refused by agentexec's filtering agent")

func (f *filterAgent) up() (agent.ExtendedAgent, error) {
	if f.upstream != nil {
		return f.upstream, nil
	}
	c, err := net.DialTimeout("unix", f.cfg.Upstream, 10*time.Second)
	if err != nil {
		return nil, err
	}
	f.upConn, f.upstream = c, agent.NewClient(c)
	return f.upstream, nil
}

func (f *filterAgent) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.upConn != nil {
		f.upConn.Close()
	}
}

func (f *filterAgent) refuse(reason string) error {
	f.s.deny(&Denial{Time: time.Now(), Rule: f.cfg.Rule, Check: CheckAgent, Method: "AGENT", Reason: reason})
	return fmt.Errorf("%w: %s", errRefused, reason)
}

// List returns the upstream agent's keys (public keys and comments only).
func (f *filterAgent) List() ([]*agent.Key, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	up, err := f.up()
	if err != nil {
		return nil, err
	}
	return up.List()
}

func (f *filterAgent) Sign(key ssh.PublicKey, data []byte) (*ssh.Signature, error) {
	return f.SignWithFlags(key, data, 0)
}

// SignWithFlags signs only a user-authentication request of the bound session.
func (f *filterAgent) SignWithFlags(key ssh.PublicKey, data []byte, flags agent.SignatureFlags) (*ssh.Signature, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case f.poisoned:
		return nil, f.refuse("sign request on a connection whose session binding was refused")
	case f.sessionID == nil:
		return nil, f.refuse("sign request without a session binding (session-bind@openssh.com; ssh 8.9 or later sends it)")
	}
	if err := checkUserAuth(data, f.sessionID, key.Marshal(), f.hostKey); err != nil {
		return nil, f.refuse("sign request: " + err.Error())
	}
	up, err := f.up()
	if err != nil {
		return nil, err
	}
	return up.SignWithFlags(key, data, flags)
}

// userAuthRequest is the data an ssh client signs for public-key authentication:
// the session id, then SSH_MSG_USERAUTH_REQUEST (type 50) with the signature flag,
// the algorithm and the public key; Rest is what follows (the host key of a
// host-bound request).
type userAuthRequest struct {
	SessionID []byte
	Type      byte
	User      string
	Service   string
	Method    string
	HasSig    bool
	Algo      string
	PubKey    []byte
	Rest      []byte `ssh:"rest"`
}

// checkUserAuth checks that data is an SSH_MSG_USERAUTH_REQUEST (RFC 4252
// section 7, and OpenSSH's publickey-hostbound-v00@openssh.com) of session sid
// for public key blob, bound to hostKey when it names one.
func checkUserAuth(data, sid, blob, hostKey []byte) error {
	var req userAuthRequest
	if err := ssh.Unmarshal(data, &req); err != nil || req.Type != 50 {
		return errors.New("the data is not an ssh user-authentication request")
	}
	if !bytes.Equal(req.SessionID, sid) {
		return errors.New("the request is for another session than the bound one")
	}
	if !req.HasSig || !bytes.Equal(req.PubKey, blob) {
		return errors.New("the request names another key than the one asked to sign")
	}
	switch req.Method {
	case "publickey":
		if len(req.Rest) != 0 {
			return errors.New("trailing data after the request")
		}
	case "publickey-hostbound-v00@openssh.com":
		var hb struct {
			HostKey []byte
		}
		if err := ssh.Unmarshal(req.Rest, &hb); err != nil || !bytes.Equal(hb.HostKey, hostKey) {
			return errors.New("the request is bound to another host key than the session's")
		}
	default:
		return fmt.Errorf("method %q is not public-key authentication", req.Method)
	}
	return nil
}

// Extension handles session-bind@openssh.com and refuses every other extension.
func (f *filterAgent) Extension(kind string, contents []byte) ([]byte, error) {
	if kind != "session-bind@openssh.com" {
		return nil, agent.ErrExtensionUnsupported
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var bind struct {
		HostKey    []byte
		SessionID  []byte
		Signature  []byte
		Forwarding bool
	}
	if err := ssh.Unmarshal(contents, &bind); err != nil {
		f.poisoned = true
		return nil, f.refuse("malformed session binding")
	}
	if f.sessionID != nil || f.poisoned {
		f.poisoned = true
		return nil, f.refuse("a second session binding on one agent connection")
	}
	if bind.Forwarding {
		f.poisoned = true
		return nil, f.refuse("a forwarded session binding (agent forwarding beyond the allowed hosts is not served)")
	}
	pk, err := ssh.ParsePublicKey(bind.HostKey)
	if err != nil {
		f.poisoned = true
		return nil, f.refuse("session binding: bad host key")
	}
	var sig ssh.Signature
	if err := ssh.Unmarshal(bind.Signature, &sig); err != nil || pk.Verify(bind.SessionID, &sig) != nil {
		f.poisoned = true
		return nil, f.refuse("session binding: the host key's signature over the session does not verify")
	}
	allowed := false
	for _, k := range f.cfg.HostKeys {
		if bytes.Equal(k.Marshal(), bind.HostKey) {
			allowed = true
			break
		}
	}
	if !allowed {
		f.poisoned = true
		return nil, f.refuse(fmt.Sprintf("session bound to host key %s, which is not the key of a network.ssh host in the policy's known_hosts", ssh.FingerprintSHA256(pk)))
	}
	f.hostKey, f.sessionID = bind.HostKey, bind.SessionID
	return nil, nil
}

func (f *filterAgent) Add(agent.AddedKey) error       { return f.refuseLocked("adding keys") }
func (f *filterAgent) Remove(ssh.PublicKey) error     { return f.refuseLocked("removing keys") }
func (f *filterAgent) RemoveAll() error               { return f.refuseLocked("removing keys") }
func (f *filterAgent) Lock([]byte) error              { return f.refuseLocked("locking the agent") }
func (f *filterAgent) Unlock([]byte) error            { return f.refuseLocked("unlocking the agent") }
func (f *filterAgent) Signers() ([]ssh.Signer, error) { return nil, errRefused }

func (f *filterAgent) refuseLocked(what string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.refuse(what + " is not served")
}

// checkPeer asks peer about the process connected on c (SO_PEERCRED).
func checkPeer(c net.Conn, peer func(pid int) error) error {
	if peer == nil {
		return nil
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return errors.New("connection refused: not a unix socket")
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		return fmt.Errorf("connection refused: %w", err)
	}
	var cred *unix.Ucred
	var credErr error
	if err := rc.Control(func(fd uintptr) { cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) }); err != nil {
		return fmt.Errorf("connection refused: %w", err)
	}
	if credErr != nil {
		return fmt.Errorf("connection refused: SO_PEERCRED: %w", credErr)
	}
	if err := peer(int(cred.Pid)); err != nil {
		return fmt.Errorf("connection refused: pid %d: %w", cred.Pid, err)
	}
	return nil
}
