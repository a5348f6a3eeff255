package spawner

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// The tool identity of a root runtime (a uid and gid of a reserved range) has no
// account on the host, and programs that look their user up refuse to run
// without one: ssh ("No user exists for uid …"), git ("unable to look up current
// user in the passwd file"), whoami, Python's getpass. So its tools see, in their
// private mount namespace, read-only copies of /etc/passwd and /etc/group with
// one account added for it. The host's files never change.

// ToolAccountName is the tool identity's user and group name in its tools' view.
const ToolAccountName = "agentexec-tool"

// AccountFile is the content of one account file in a tool's view: the host file
// with the tool identity's entry added.
type AccountFile struct {
	Host string // /etc/passwd or /etc/group
	Data []byte
}

// AccountFiles returns the copies of /etc/passwd and /etc/group that add the
// account of uid and gid. A host file that is absent or already names the id is
// left out (it needs no copy).
func AccountFiles(uid, gid uint32) ([]AccountFile, error) {
	files := []struct {
		host, line string
		id         uint32
	}{
		{"/etc/passwd", fmt.Sprintf("%s:x:%d:%d:agentexec tool identity:/nonexistent:/usr/sbin/nologin", ToolAccountName, uid, gid), uid},
		{"/etc/group", fmt.Sprintf("%s:x:%d:", ToolAccountName, gid), gid},
	}
	var out []AccountFile
	for _, f := range files {
		data, err := os.ReadFile(f.host)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if namesID(data, f.id) {
			continue
		}
		if len(data) > 0 && data[len(data)-1] != '\n' {
			data = append(data, '\n')
		}
		out = append(out, AccountFile{Host: f.host, Data: append(data, f.line+"\n"...)})
	}
	return out, nil
}

// AccountBind is the read-only bind of an account file's copy at src over the host
// file, for a mount plan.
func AccountBind(src string, f AccountFile) MountOp {
	return MountOp{Kind: MountBind, Source: src, Target: f.Host, AttrSet: unix.MOUNT_ATTR_RDONLY, Optional: true}
}

// AccountBinds writes into dir (which must exist) copies of /etc/passwd and
// /etc/group that add the account of uid and gid (AccountFiles), and returns the
// read-only binds of the copies over the originals, for a mount plan.
func AccountBinds(dir string, uid, gid uint32) ([]MountOp, error) {
	files, err := AccountFiles(uid, gid)
	if err != nil {
		return nil, err
	}
	var ops []MountOp
	for _, f := range files {
		cp := filepath.Join(dir, filepath.Base(f.Host))
		if err := os.WriteFile(cp, f.Data, 0o444); err != nil {
			return nil, err
		}
		if err := os.Chmod(cp, 0o444); err != nil { // whatever the umask
			return nil, err
		}
		ops = append(ops, AccountBind(cp, f))
	}
	return ops, nil
}

// namesID reports whether a passwd or group listing has an entry whose third
// field (the uid or gid) is id.
func namesID(data []byte, id uint32) bool {
	want := strconv.FormatUint(uint64(id), 10)
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if fields := strings.Split(sc.Text(), ":"); len(fields) > 2 && fields[2] == want {
			return true
		}
	}
	return false
}
