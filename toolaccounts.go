package agentexec

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/agentexec/agentexec/internal/spawner"
)

// The tool identity (tooluser.go) is a uid and gid of a reserved range that no
// account on the host has. Programs that look their user up refuse to run
// without one: ssh ("No user exists for uid …"), git ("unable to look up current
// user in the passwd file"), whoami, Python's getpass. A root runtime therefore
// gives the tools of such profiles, in their spawner's private mount namespace,
// read-only copies of /etc/passwd and /etc/group that add one account for the
// identity (toolAccountName, home /nonexistent, no login shell). The host's files
// are never changed; the copies are taken once per runtime, at New (a later
// change to the host's accounts is not seen by tools until the next runtime).

// toolAccountName is the identity's user and group name in the tools' view.
const toolAccountName = "agentexec-tool"

// accountsDirPattern names the runtime's directory of those copies under
// os.TempDir() (mode 0755, files 0444, owned by root), removed at Close.
const accountsDirPattern = "agentexec-accounts-"

// toolAccounts adds the binds of the account files to the profile's mount plan
// when its tools run as the tool identity and the spawner gets a private mount
// namespace. Without one (no CLONE_NEWNS on this host) the identity stays
// nameless, which is reported as unenforced.
func (rt *Runtime) toolAccounts(prt *profileRT, cfg *spawner.SpawnerConfig) error {
	if cfg.Containment.ToolCred == nil || rt.opts.noToolAccounts {
		return nil
	}
	ok, why := spawner.MountNSAvailable()
	if rt.opts.noMountNS != "" {
		ok, why = false, rt.opts.noMountNS
	}
	if !ok {
		prt.gap(rt, "not as the policy asks on this host", "what",
			fmt.Sprintf("account name of the tool identity (uid %d): no private mount namespace (%s); ssh, git and whoami refuse to run without one", rt.toolID.uid, why))
		return nil
	}
	files, err := rt.accountFiles()
	if err != nil {
		return fmt.Errorf("profile %s: tool identity account: %w", prt.p.Name, err)
	}
	if len(files) == 0 {
		return nil
	}
	if cfg.Mounts == nil {
		host, err := spawner.CurrentMountNS()
		if err != nil {
			return fmt.Errorf("profile %s: tool identity account: %w", prt.p.Name, err)
		}
		cfg.Mounts = &spawner.MountPlan{HostNS: host}
	}
	for _, f := range files {
		cfg.Mounts.Ops = append(cfg.Mounts.Ops, spawner.MountOp{Kind: spawner.MountBind, Source: f[1], Target: f[0],
			AttrSet: unix.MOUNT_ATTR_RDONLY, Optional: true})
	}
	return nil
}

// accountFiles writes, once per runtime, the copies of /etc/passwd and
// /etc/group with the identity's account and returns them as (host path, copy)
// pairs. A host file that is absent or already names the id is left alone.
func (rt *Runtime) accountFiles() ([][2]string, error) {
	rt.accountsOnce.Do(func() {
		uid, gid := rt.toolID.uid, rt.toolID.gid
		files := []struct {
			host string
			line string
			id   uint32
			col  int // the field of the numeric id (passwd: uid; group: gid)
		}{
			{"/etc/passwd", fmt.Sprintf("%s:x:%d:%d:agentexec tool identity:/nonexistent:/usr/sbin/nologin", toolAccountName, uid, gid), uid, 2},
			{"/etc/group", fmt.Sprintf("%s:x:%d:", toolAccountName, gid), gid, 2},
		}
		var out [][2]string
		for _, f := range files {
			data, err := os.ReadFile(f.host)
			if os.IsNotExist(err) {
				continue
			}
			if err != nil {
				rt.accountsErr = err
				return
			}
			if namesID(data, f.col, f.id) {
				continue
			}
			if rt.accountsDir == "" {
				dir, err := os.MkdirTemp("", accountsDirPattern)
				if err == nil {
					err = os.Chmod(dir, 0o755)
				}
				if err != nil {
					rt.accountsErr = err
					return
				}
				rt.accountsDir = dir
			}
			if len(data) > 0 && data[len(data)-1] != '\n' {
				data = append(data, '\n')
			}
			data = append(data, f.line+"\n"...)
			copyPath := filepath.Join(rt.accountsDir, filepath.Base(f.host))
			if err := os.WriteFile(copyPath, data, 0o444); err != nil {
				rt.accountsErr = err
				return
			}
			out = append(out, [2]string{f.host, copyPath})
		}
		rt.accounts = out
	})
	return rt.accounts, rt.accountsErr
}

// namesID reports whether a passwd or group listing has an entry whose field col
// (from 0) is id.
func namesID(data []byte, col int, id uint32) bool {
	want := strconv.FormatUint(uint64(id), 10)
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) > col && fields[col] == want {
			return true
		}
	}
	return false
}
