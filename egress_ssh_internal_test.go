package agentexec

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/agentexec/agentexec/policy"
)

// sshHostKeys decides which host keys the launch's ssh-agent may sign sessions
// for: each way of writing a known_hosts line is tried with its control (the same
// key written plainly for the same host is taken), so that a matching bug that
// let a refused line through would fail here.
func TestSSHHostKeys(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	pub, _ := ssh.NewPublicKey(priv.Public())
	key := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
	hashed := func(host string) string {
		salt := make([]byte, 20)
		_, _ = rand.Read(salt)
		m := hmac.New(sha1.New, salt)
		m.Write([]byte(host))
		return "|1|" + base64.StdEncoding.EncodeToString(salt) + "|" + base64.StdEncoding.EncodeToString(m.Sum(nil))
	}
	dir := t.TempDir()
	for _, tc := range []struct {
		name, line, ssh string
		want            bool // the key is taken
	}{
		{"plain", "h.test " + key, "h.test", true},
		{"other host", "g.test " + key, "h.test", false},
		{"revoked", "h.test " + key + "\n@revoked * " + key, "h.test", false},
		{"negated", "h.test,!h.test " + key, "h.test", false},
		{"glob", "*.test " + key, "h.test", true},
		{"glob negated", "*.test,!h.test " + key, "h.test", false},
		{"hashed", hashed("h.test") + " " + key, "h.test", true},
		{"hashed other", hashed("g.test") + " " + key, "h.test", false},
		{"port", "[h.test]:2222 " + key, "h.test:2222", true},
		{"port 22 entry for 2222", "h.test " + key, "h.test:2222", false},
		{"port entry for 22", "[h.test]:2222 " + key, "h.test", false},
		{"cert authority", "@cert-authority h.test " + key, "h.test", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_"))
			if err := os.WriteFile(f, []byte(tc.line+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			hosts, err := policy.ParseAllow("tools.t.network.ssh[0]", tc.ssh, policy.DefaultSSHPorts)
			if err != nil {
				t.Fatal(err)
			}
			keys, err := sshHostKeys(&policy.Egress{SSH: hosts, KnownHosts: f, KnownHostsField: "tools.t.network.known_hosts"})
			got := err == nil && len(keys) == 1 && string(keys[0].Marshal()) == string(pub.Marshal())
			if got != tc.want {
				t.Errorf("%q for ssh %s: keys %d, err %v; want taken %v", tc.line, tc.ssh, len(keys), err, tc.want)
			}
			if !tc.want && err == nil {
				t.Errorf("no key taken but no error naming the field")
			}
		})
	}
}
