package bench

import (
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/agentexec/agentexec/policy"
)

// PolicyYAML is the benchmark's own policy: the workspace readable and writable,
// every tool in tools hot, no TCP (Landlock's net rules with empty port lists), the
// read roots a coding agent needs, and concurrency high enough for inflight
// launches at once. kernelTemplates is "auto", "off" or "require".
func PolicyYAML(tools []string, inflight int, kernelTemplates string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `# agentexec bench policy (generated).
version: 1
workspace: ${WORKSPACE}
path: [/usr/local/bin, /usr/bin, /bin]
kernel_templates: %s
defaults:
  filesystem:
    read:
      - /usr
      - /lib
      - /lib64
      - /bin
      - /etc/ld.so.cache
      - /etc/ld.so.conf
      - /etc/ld.so.conf.d
      - /etc/localtime
      - /etc/nsswitch.conf
      - /etc/passwd
      - /etc/group
      - /etc/locale.alias
      - /etc/gitconfig
      - /etc/alternatives
      - /etc/python3
      - /etc/python3.11
      - /dev/null
      - /dev/zero
      - /dev/urandom
      - ${WORKSPACE}
      - ${TMPDIR}
    write: [/dev/null, "${WORKSPACE}", "${TMPDIR}"]
    exec: [/usr, /bin, /lib, /lib64]
  network:
    connect_tcp: []
    bind_tcp: []
    unix: true
  ipc:
    scope_abstract_unix: true
    scope_signals: true
  env:
    allow: [LANG, LC_*]
    set:
      PATH: /usr/local/bin:/usr/bin:/bin
      LC_ALL: C
  limits:
    memory: 1GiB
    pids: 256
    timeout: 2m
    output: 64MiB
  enforcement:
    landlock: require
    cgroup: best_effort
  concurrency: %d
tools:
`, kernelTemplates, max(inflight, 2*runtime.NumCPU()))
	for _, t := range tools {
		fmt.Fprintf(&b, "  %s: {hot: true}\n", t)
	}
	return b.String()
}

// loadPolicy parses and resolves the benchmark policy (file "" = PolicyYAML with
// StartupTools) for workspace ws, with kernel templates set to kt.
func loadPolicy(file, ws string, inflight int, kt policy.KernelTemplates) (*policy.Policy, error) {
	// ${TMPDIR} is a directory of the runtime's own (Options.TmpDir empty), as for
	// `run` and `serve`: with the host's shared /tmp writable, the runtime would scan
	// it for git repositories to protect and make hooks/ and info/ in those that lack
	// them, other programs' included.
	opts := policy.Options{Workspace: ws, Home: os.Getenv("HOME"), CPUs: runtime.NumCPU()}
	if opts.Home == "" {
		opts.Home = "/root"
	}
	var p *policy.Policy
	var err error
	if file == "" {
		p, err = policy.LoadBytes("bench.yaml", []byte(PolicyYAML(StartupTools, inflight, "auto")), opts)
	} else {
		p, err = policy.Load(file, opts)
	}
	if err != nil {
		return nil, err
	}
	p.KernelTemplates = kt
	return p, nil
}
