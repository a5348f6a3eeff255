package egress

import "strings"

// SSHOptions returns the "-o" options of the launch's ssh command
// (GIT_SSH_COMMAND; docs/network.md, "SSH"): the ProxyCommand through this proxy,
// host keys checked strictly against the policy's known_hosts only (no global
// file, no KnownHostsCommand, never updated), no connection sharing with another
// ssh, no agent forwarding, and the launch's filtering agent or none; then
// Config.SSHOptions. ssh keeps the first value it gets for an option, and
// command-line options come before every configuration file, so neither
// ~/.ssh/config nor /etc/ssh/ssh_config nor Config.SSHOptions can change these.
func (s *Session) SSHOptions() []string {
	kh := s.egress.KnownHosts
	if kh == "" {
		kh = "/dev/null" // nothing verifies: every host key is refused
	}
	opts := []string{
		"ProxyCommand=" + s.p.cfg.SSHProxyCommand,
		"StrictHostKeyChecking=yes",
		"UserKnownHostsFile=" + kh,
		"GlobalKnownHostsFile=/dev/null",
		"KnownHostsCommand=none",
		"UpdateHostKeys=no",
		"CheckHostIP=no",
		"BatchMode=yes",
		"ControlMaster=no",
		"ControlPath=none",
		"ForwardAgent=no",
		"PermitLocalCommand=no",
	}
	s.mu.Lock()
	a := s.agent
	s.mu.Unlock()
	if a != nil {
		opts = append(opts, "IdentityAgent="+a.sock)
	} else {
		opts = append(opts, "IdentityAgent=none")
	}
	return append(opts, s.p.cfg.SSHOptions...)
}

// sshEnv is GIT_SSH_COMMAND, and SSH_AUTH_SOCK when the launch has an agent.
func (s *Session) sshEnv() []string {
	var b strings.Builder
	b.WriteString("ssh")
	for _, o := range s.SSHOptions() {
		b.WriteString(" -o ")
		b.WriteString(shellQuote(o))
	}
	env := []string{"GIT_SSH_COMMAND=" + b.String()}
	s.mu.Lock()
	a := s.agent
	s.mu.Unlock()
	if a != nil {
		env = append(env, "SSH_AUTH_SOCK="+a.sock)
	}
	return env
}
