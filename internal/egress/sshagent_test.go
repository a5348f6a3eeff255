package egress

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// checkUserAuth accepts only a user-authentication request of the bound session
// for the key asked; the control is the accepted well-formed request.
func TestCheckUserAuth(t *testing.T) {
	sid, blob, hk := []byte("session-1"), []byte("key-blob"), []byte("host-key")
	req := func(sid []byte, method string, key []byte, rest ...[]byte) []byte {
		b := ssh.Marshal(userAuthRequest{sid, 50, "git", "ssh-connection", method, true, "ssh-ed25519", key, nil})
		for _, r := range rest {
			b = append(b, ssh.Marshal(struct{ B []byte }{r})...)
		}
		return b
	}
	if err := checkUserAuth(req(sid, "publickey", blob), sid, blob, hk); err != nil {
		t.Fatalf("control: a request of the bound session refused: %v", err)
	}
	if err := checkUserAuth(req(sid, "publickey-hostbound-v00@openssh.com", blob, hk), sid, blob, hk); err != nil {
		t.Fatalf("control: a host-bound request of the bound session refused: %v", err)
	}
	for name, tt := range map[string]struct {
		data []byte
		want string
	}{
		"other session":    {req([]byte("session-2"), "publickey", blob), "another session"},
		"other key":        {req(sid, "publickey", []byte("other")), "another key"},
		"other host key":   {req(sid, "publickey-hostbound-v00@openssh.com", blob, []byte("evil")), "another host key"},
		"not userauth":     {[]byte("SSHSIG arbitrary data to sign"), "not an ssh user-authentication request"},
		"other method":     {req(sid, "hostbased", blob), "not public-key"},
		"trailing garbage": {req(sid, "publickey", blob, []byte("x")), "trailing"},
	} {
		if err := checkUserAuth(tt.data, sid, blob, hk); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", name, err, tt.want)
		}
	}
}

// A connection to a launch's agent socket from a process the runtime's Peer
// check refuses (another launch's) is refused before anything is served, with a
// denial; the control is the same connection with the check passing, which
// lists the upstream agent's key.
func TestAgentPeerCheck(t *testing.T) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keyring := agent.NewKeyring()
	if err := keyring.Add(agent.AddedKey{PrivateKey: priv}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	up := filepath.Join(dir, "upstream")
	ln, err := net.Listen("unix", up)
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
	hostPub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	e := newProxy(t, Config{})
	for _, tc := range []struct {
		name  string
		peer  func(pid int) error
		keys  int
		denen int
	}{
		{"refused", func(pid int) error {
			if pid != os.Getpid() {
				t.Errorf("peer pid %d, want this process %d", pid, os.Getpid())
			}
			return errors.New("not a process of this launch")
		}, 0, 1},
		{"control", func(int) error { return nil }, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := e.p.Session("l-"+tc.name, egressOf(t, nil, "git.test"), nil)
			if err != nil {
				t.Fatal(err)
			}
			sock, err := s.ServeSSHAgent(AgentConfig{Upstream: up, Dir: dir, HostKeys: []ssh.PublicKey{hostPub}, UID: -1, GID: -1,
				Rule: "tools.t.network.ssh_agent", Peer: tc.peer})
			if err != nil {
				t.Fatal(err)
			}
			c, err := net.Dial("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			keys, _ := agent.NewClient(c).List()
			c.Close()
			if len(keys) != tc.keys {
				t.Errorf("listed %d keys, want %d", len(keys), tc.keys)
			}
			rep := s.Close()
			if n := len(rep.Denied); n != tc.denen {
				t.Errorf("denials %+v, want %d", rep.Denied, tc.denen)
			} else if n == 1 && !strings.Contains(rep.Denied[0].Reason, "not a process of this launch") {
				t.Errorf("denial %+v does not say why", rep.Denied[0])
			}
		})
	}
}
