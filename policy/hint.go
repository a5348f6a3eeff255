package policy

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Denial layers: which part of the sandbox refused.
const (
	// LayerPolicy is a refusal agentexec made itself before the launch (tool, argv,
	// working directory, environment, limits).
	LayerPolicy = "policy"
	// LayerLandlock is a refusal the kernel's Landlock LSM logged (filesystem, TCP
	// ports, signal and abstract-socket scopes).
	LayerLandlock = "landlock"
	// LayerSeccomp is a syscall the seccomp filter refused and the kernel logged.
	LayerSeccomp = "seccomp"
	// LayerNetwork is a refusal of the network containment (an isolated network
	// namespace, the egress proxy).
	LayerNetwork = "network"
)

// Denial is one kind of refusal a launch met: what was refused (Access), on what
// (Object), how many times, and the smallest policy change that would allow it
// (Hint). Denials with the same layer, access and object are one Denial with a
// Count.
//
// Access names follow the kernel's audit records: Landlock blockers as the kernel
// prints them ("fs.read_file", "fs.make_reg", "net.connect_tcp", "scope.signal",
// "ptrace", …), "seccomp.<syscall>" for seccomp (as "seccomp.socket"), and for the
// policy layer the DeniedError op as "policy.<op>" ("policy.argv", "policy.dir",
// "policy.env", "policy.launch", "policy.limits").
type Denial struct {
	Layer  string       `json:"layer"`
	Access string       `json:"access"`
	Object DeniedObject `json:"object"`
	// Count is how many times the launch met this denial (at least 1).
	Count int   `json:"count"`
	Hint  *Hint `json:"hint,omitempty"`
}

// DeniedObject is what a denial was about; only the fields that apply are set.
type DeniedObject struct {
	// Path is a file or directory as the tool saw it. For creating and removing
	// entries (fs.make_*, fs.remove_*, fs.refer) it is the directory. An abstract
	// unix socket is "@name".
	Path string `json:"path,omitempty"`
	// Port is a TCP port (net.connect_tcp, net.bind_tcp); Addr the address.
	Port uint16 `json:"port,omitempty"`
	Addr string `json:"addr,omitempty"`
	// PID and Comm name the target process of a signal or ptrace.
	PID  int    `json:"pid,omitempty"`
	Comm string `json:"comm,omitempty"`
	// Syscall is the refused syscall's name (seccomp).
	Syscall string `json:"syscall,omitempty"`
	// Name is the tool (policy.launch), variable (policy.env) or limit
	// (policy.limits) refused; Args the arguments (policy.argv); Rule the policy
	// field path that refused (policy layer).
	Name string   `json:"name,omitempty"`
	Args []string `json:"args,omitempty"`
	Rule string   `json:"rule,omitempty"`
}

// String words the object in a few characters: a path, host:port (with the
// address dialled), addr:port, a process, a syscall, a name, the arguments.
func (o DeniedObject) String() string {
	switch {
	case o.Path != "":
		return o.Path
	case o.Name != "" && o.Port != 0:
		s := net.JoinHostPort(o.Name, strconv.Itoa(int(o.Port)))
		if o.Addr != "" && o.Addr != o.Name {
			s += " (" + o.Addr + ")"
		}
		return s
	case o.Port != 0:
		if o.Addr == "" {
			return "port " + strconv.Itoa(int(o.Port))
		}
		return net.JoinHostPort(o.Addr, strconv.Itoa(int(o.Port)))
	case o.PID != 0:
		if o.Comm != "" {
			return fmt.Sprintf("pid %d (%s)", o.PID, o.Comm)
		}
		return fmt.Sprintf("pid %d", o.PID)
	case o.Syscall != "":
		return o.Syscall
	case o.Name != "":
		return o.Name
	case o.Addr != "":
		return o.Addr
	case len(o.Args) > 0:
		return strconv.Quote(strings.Join(o.Args, " "))
	}
	return "-"
}

// Hint is the smallest policy change that would allow a denial, or says that none
// should: ByDesign marks a refusal that protects something the policy must not
// open (another launch, the agent, the sandbox itself, protected repository
// metadata), and Patch is then empty. Text says it in one line.
type Hint struct {
	ByDesign bool     `json:"by_design,omitempty"`
	Patch    []Change `json:"patch,omitempty"`
	Text     string   `json:"text"`
}

// Change adds one value to one list field of the policy. Field is the field path
// ("tools.cat.filesystem.read"); in YAML, `read+: [...]` under the tool adds to
// the defaults without replacing them. Add is a string (a path, a variable or
// tool name, an argv pattern) or, for ports, a number (uint16).
type Change struct {
	Field string `json:"field"`
	Add   any    `json:"add"`
}

// Hint computes the hint for one denial of a launch of the named tool. It is pure:
// it reads only the policy and the denial, never the host. It returns nil when the
// tool is not in the policy (except for the policy layer's refusal of an unknown
// tool, whose hint is to add it).
func (p *Policy) Hint(tool string, d Denial) *Hint {
	if d.Layer == LayerPolicy {
		return policyHint(tool, d)
	}
	t, ok := p.Tool(tool)
	if !ok || t.Profile == nil {
		return nil
	}
	switch d.Layer {
	case LayerLandlock:
		return landlockHint(t, d)
	case LayerSeccomp:
		return seccompHint(t, d)
	case LayerNetwork:
		if t.Profile.Network.Isolated != "" {
			return byDesign("tools.%s runs in an isolated network namespace (network.isolated): only the egress proxy leads out", t.Name)
		}
		return &Hint{Text: fmt.Sprintf("no policy field of tools.%s covers %s", t.Name, d.Access)}
	}
	return &Hint{Text: fmt.Sprintf("unknown layer %q", d.Layer)}
}

func byDesign(format string, args ...any) *Hint {
	return &Hint{ByDesign: true, Text: "not allowed by design: " + fmt.Sprintf(format, args...)}
}

// patch builds a hint adding v to each field, worded "add V to F1 and to F2".
func patchHint(v any, fields ...string) *Hint {
	h := &Hint{}
	var to []string
	for _, f := range fields {
		h.Patch = append(h.Patch, Change{Field: f, Add: v})
		to = append(to, "to "+f)
	}
	var vs string
	switch x := v.(type) {
	case string:
		vs = strconv.Quote(x)
	default:
		vs = fmt.Sprint(x)
	}
	h.Text = "add " + vs + " " + strings.Join(to, " and ")
	return h
}

// Filesystem rights, by the list that grants them.
var (
	readAccess  = []string{"fs.read_file", "fs.read_dir"}
	execAccess  = []string{"fs.execute"}
	writeAccess = []string{"fs.write_file", "fs.truncate", "fs.remove_dir", "fs.remove_file",
		"fs.make_dir", "fs.make_reg", "fs.make_sock", "fs.make_fifo", "fs.make_sym", "fs.refer"}
)

func oneOf(s string, set []string) bool {
	for _, x := range set {
		if x == s {
			return true
		}
	}
	return false
}

func rootOf(path string, roots []string) (string, bool) {
	for _, r := range roots {
		if Beneath(path, r) {
			return r, true
		}
	}
	return "", false
}

// gitMetadata are the entries of a git directory that the runtime keeps read-only
// for tools (docs/security.md, "Repository metadata"): git takes code to run from
// them.
var gitMetadata = []string{"config", "config.worktree", "commondir", "hooks", "info"}

// protectedPath says why path must stay out of the tools' write reach ("" when
// it need not): a filesystem.protect path, git metadata, the runtime's own state or
// the cgroup tree that holds the launches' limits.
func protectedPath(prof *Profile, path string) string {
	if r, ok := rootOf(path, prof.FS.Protect); ok {
		return fmt.Sprintf("%s is protected (filesystem.protect %s)", path, r)
	}
	parts := strings.Split(path, "/")
	for i, part := range parts {
		if part == ".git" && i+1 < len(parts) && oneOf(parts[i+1], gitMetadata) {
			return fmt.Sprintf("%s is repository metadata git runs code from (.git/%s), kept read-only for tools", path, parts[i+1])
		}
	}
	for _, r := range []string{"/run/agentexec", "/sys/fs/cgroup", "/proc"} {
		if Beneath(path, r) {
			return fmt.Sprintf("%s belongs to the runtime or the kernel (%s), never the tools", path, r)
		}
	}
	return ""
}

func landlockHint(t *Tool, d Denial) *Hint {
	fs := &t.Profile.FS
	field := func(list string) string { return "tools." + t.Name + "." + list }
	path := d.Object.Path
	switch {
	case strings.HasPrefix(d.Access, "scope.signal"):
		return byDesign("a launch may signal only its own processes, not the agent, the runtime or other launches")
	case strings.HasPrefix(d.Access, "scope.abstract_unix_socket"):
		return byDesign("a launch may connect only to abstract unix sockets made inside it")
	case d.Access == "ptrace":
		return byDesign("a launch may not trace or read the memory of processes outside it")
	case d.Access == "fs.change_topology":
		return byDesign("tools may not mount or change the filesystem topology")
	case d.Access == "fs.make_char" || d.Access == "fs.make_block":
		return byDesign("tools may not create device files")
	case d.Access == "fs.ioctl_dev":
		return byDesign("device ioctls are not granted by path")
	case d.Access == "net.connect_tcp" || d.Access == "net.bind_tcp":
		list := "network.connect_tcp"
		if d.Access == "net.bind_tcp" {
			list = "network.bind_tcp"
		}
		if d.Object.Port == 0 {
			if d.Access == "net.bind_tcp" {
				return byDesign("binding port 0 (an ephemeral port) cannot be granted: %s takes ports 1-65535", field(list))
			}
			return &Hint{Text: "the record names no port"}
		}
		return patchHint(d.Object.Port, field(list))
	}
	if path == "" || !strings.HasPrefix(path, "/") {
		return &Hint{Text: fmt.Sprintf("the record names no path for %s", d.Access)}
	}
	// /proc/PID/… names one process, which the next launch will not be: the
	// change that would allow the same access again is /proc itself.
	if rest, ok := strings.CutPrefix(path, "/proc/"); ok {
		if pid, _, _ := strings.Cut(rest, "/"); pid != "" && strings.Trim(pid, "0123456789") == "" {
			path = "/proc"
		}
	}
	switch {
	case oneOf(d.Access, readAccess):
		if r, ok := rootOf(path, append(append(append([]string(nil), fs.Read...), fs.Write...), fs.Exec...)); ok {
			return alreadyAllowed(path, r)
		}
		return patchHint(path, field("filesystem.read"))
	case oneOf(d.Access, execAccess):
		if r, ok := rootOf(path, fs.Exec); ok {
			return alreadyAllowed(path, r)
		}
		return patchHint(path, field("filesystem.exec"))
	case oneOf(d.Access, writeAccess):
		if why := protectedPath(t.Profile, path); why != "" {
			return byDesign("%s", why)
		}
		if r, ok := rootOf(path, fs.Write); ok {
			return alreadyAllowed(path, r)
		}
		// Write roots must lie inside a read root (policy validation).
		if _, ok := rootOf(path, fs.Read); ok {
			return patchHint(path, field("filesystem.write"))
		}
		return patchHint(path, field("filesystem.write"), field("filesystem.read"))
	}
	return &Hint{Text: fmt.Sprintf("no policy field of tools.%s covers %s", t.Name, d.Access)}
}

// alreadyAllowed words a denial the policy's lists already grant: Landlock rules
// hold the inodes found when the runtime started, so a path made, replaced or
// mounted over since is outside them.
func alreadyAllowed(path, root string) *Hint {
	return &Hint{Text: fmt.Sprintf("%s is already granted (beneath %s) but did not exist, or was another file, when the runtime started: Landlock rules hold the files found at start; restart the runtime", path, root)}
}

// seccompByDesign are the syscalls the seccomp filter refuses whatever the policy.
var seccompByDesign = map[string]string{
	"ptrace": "tracing", "process_vm_readv": "tracing", "process_vm_writev": "tracing", "pidfd_getfd": "tracing",
	"process_madvise": "tracing", "pidfd_send_signal": "signals through pidfds",
	"kexec_load": "kernel replacement", "kexec_file_load": "kernel replacement", "reboot": "reboot",
	"bpf": "kernel attack surface", "perf_event_open": "kernel attack surface", "userfaultfd": "kernel attack surface",
	"io_uring_setup": "kernel attack surface", "io_uring_enter": "kernel attack surface", "io_uring_register": "kernel attack surface",
	"keyctl": "kernel keyrings", "add_key": "kernel keyrings", "request_key": "kernel keyrings",
	"mount": "mounts", "umount2": "mounts", "pivot_root": "mounts", "move_mount": "mounts", "open_tree": "mounts",
	"fsopen": "mounts", "fsmount": "mounts", "fsconfig": "mounts", "fspick": "mounts", "mount_setattr": "mounts",
	"setns": "joining namespaces", "unshare": "new namespaces", "clone": "new namespaces", "clone3": "new namespaces",
	"init_module": "kernel modules", "finit_module": "kernel modules", "delete_module": "kernel modules",
	"kill": "signals to the spawner", "tkill": "signals to the spawner", "tgkill": "signals to the spawner",
	"open_by_handle_at": "file handles bypass path checks", "name_to_handle_at": "file handles bypass path checks",
}

func seccompHint(t *Tool, d Denial) *Hint {
	sc := d.Object.Syscall
	if sc == "" {
		sc = strings.TrimPrefix(d.Access, "seccomp.")
	}
	switch sc {
	case "socket", "socketpair":
		n := &t.Profile.Network
		// The record carries no arguments: the family is unknown. AF_UNIX and TCP
		// are the families policy fields grant; a tool without TCP ports (or an
		// egress allow-list) has no TCP socket at all.
		tcp := ""
		if len(n.ConnectTCP)+len(n.BindTCP) == 0 && !n.Egress {
			tcp = fmt.Sprintf("if it was a TCP socket: add the port to tools.%s.network.connect_tcp (or the host to network.allow); ", t.Name)
		}
		if !n.Unix {
			if runsAsUID0(t.Profile.User) {
				return &Hint{Text: fmt.Sprintf("%sif it was an AF_UNIX socket: name the sockets in tools.%s.network.unix_sockets (tools running as uid 0 may not have network.unix alone); other families (UDP, raw, netlink) are refused by design", tcp, t.Name)}
			}
			return &Hint{Text: fmt.Sprintf("%sif it was an AF_UNIX socket: set tools.%s.network.unix: true; other families (UDP, raw, netlink) are refused by design", tcp, t.Name)}
		}
		if tcp != "" {
			return &Hint{Text: tcp + "other families (UDP, raw, netlink) are refused by design"}
		}
		return byDesign("the seccomp filter allows only AF_UNIX and TCP sockets the policy grants (no UDP, raw or netlink)")
	}
	if why, ok := seccompByDesign[sc]; ok {
		return byDesign("%s (%s) is refused to every tool by the seccomp filter", sc, why)
	}
	return byDesign("%s is refused to every tool by the seccomp filter", sc)
}

// runsAsUID0 reports whether network.unix alone is refused for tools running with
// user u, as the policy's validation refuses it (checkRootUnix): as uid 0 a tool
// would reach every root-owned socket.
func runsAsUID0(u *User) bool {
	return u != nil && (u.Own || u.UID == 0)
}

// policyHint words a refusal agentexec made before the launch (DeniedError).
func policyHint(toolName string, d Denial) *Hint {
	op := strings.TrimPrefix(d.Access, "policy.")
	tool := "tools." + toolName
	switch op {
	case "launch":
		name := d.Object.Name
		if name == "" {
			name = toolName
		}
		return &Hint{Patch: []Change{{Field: "tools", Add: name}}, Text: fmt.Sprintf("add a tool %q to tools", name)}
	case "argv":
		if strings.Contains(d.Object.Rule, ".args.deny") {
			return byDesign("the policy denies these arguments explicitly (%s)", d.Object.Rule)
		}
		pat := strings.Join(quoteWords(d.Object.Args), " ")
		return patchHint(pat, tool+".args.allow")
	case "dir":
		if d.Object.Path == "" {
			return &Hint{Text: "the denial names no directory"}
		}
		return patchHint(d.Object.Path, tool+".filesystem.read")
	case "env":
		return patchHint(d.Object.Name, tool+".env.allow")
	case "limits":
		return &Hint{Text: fmt.Sprintf("raise %s (the request asked for more than the tool's limit)", d.Object.Rule)}
	}
	return &Hint{Text: fmt.Sprintf("no hint for %s", d.Access)}
}

// quoteWords escapes glob and alternative characters so that a pattern matches the
// arguments literally.
func quoteWords(args []string) []string {
	out := make([]string, len(args))
	r := strings.NewReplacer("*", "?", "|", "?", " ", "?")
	for i, a := range args {
		out[i] = r.Replace(a)
	}
	return out
}
