package main

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

//go:embed init.sh
var initScript []byte

// baseFormat changes whenever the layout of the base initramfs changes, so that a
// cached base built by an older harness is not reused.
const baseFormat = "vmtest-base-2"

// baseInitramfs returns the path of the cached base initramfs (busybox tree and
// /init), building it when the cache has none for this busybox and /init.
func baseInitramfs(cache, busybox string) (string, error) {
	bb, err := os.ReadFile(busybox)
	if err != nil {
		return "", fmt.Errorf("read busybox: %w", err)
	}
	h := sha256.New()
	h.Write([]byte(baseFormat))
	h.Write(bb)
	h.Write(initScript)
	key := hex.EncodeToString(h.Sum(nil))[:16]
	dir := filepath.Join(cache, "initramfs")
	path := filepath.Join(dir, "base-"+key+".cpio")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	applets, err := busyboxApplets(busybox)
	if err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, "base-*.tmp")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if err := writeBase(tmp, busybox, applets); err != nil {
		return "", fmt.Errorf("write base initramfs %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", err
	}
	return path, nil
}

// busyboxApplets lists the applet paths busybox installs ("bin/sh", "usr/bin/awk"…).
func busyboxApplets(busybox string) ([]string, error) {
	out, err := exec.Command(busybox, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list-full: %w", busybox, err)
	}
	var applets []string
	for _, l := range strings.Fields(string(out)) {
		l = strings.TrimPrefix(l, "/")
		if strings.Contains(l, "/") && l != "bin/busybox" {
			applets = append(applets, l)
		}
	}
	if len(applets) < 50 {
		return nil, fmt.Errorf("%s --list-full lists only %d applets", busybox, len(applets))
	}
	return applets, nil
}

func writeBase(w io.Writer, busybox string, applets []string) error {
	c := newCPIOWriter(w)
	for _, d := range []string{"bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "dev",
		"proc", "sys", "run", "mnt", "var", "vmtest", "vmtest/pkg"} {
		c.Dir(d, 0o755)
	}
	c.Dir("root", 0o700)
	c.Dir("tmp", 0o1777)
	c.Dir("var/tmp", 0o1777)
	// The kernel opens /dev/console before /init runs and devtmpfs is mounted.
	c.CharDev("dev/console", 0o600, 5, 1)
	c.CharDev("dev/null", 0o666, 1, 3)
	c.FileFrom("bin/busybox", 0o755, busybox)
	sort.Strings(applets)
	for _, a := range applets {
		c.Symlink(a, "/bin/busybox")
	}
	c.File("init", 0o755, initScript)
	c.File("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\n"+
		"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"))
	c.File("etc/group", 0o644, []byte("root:x:0:\ntty:x:5:\nnogroup:x:65534:\n"))
	c.File("etc/hosts", 0o644, []byte("127.0.0.1 localhost vmtest\n::1 localhost\n"))
	c.File("etc/hostname", 0o644, []byte("vmtest\n"))
	return c.Close()
}

// writePackageArchive writes the per-package archive that is appended to the base:
// /vmtest/testbin, /vmtest/args (one argument per line), /vmtest/env (shell export
// lines), the package's testdata directory under /vmtest/pkg, and extra files
// (guest path under /vmtest/bin → host path; executables).
func writePackageArchive(w io.Writer, testbin string, args, env []string, pkgDir string, extra map[string]string) error {
	c := newCPIOWriter(w)
	c.Dir("vmtest", 0o755)
	c.Dir("vmtest/pkg", 0o755)
	c.FileFrom("vmtest/testbin", 0o755, testbin)
	if len(extra) > 0 {
		c.Dir("vmtest/bin", 0o755)
		var names []string
		for g := range extra {
			names = append(names, g)
		}
		sort.Strings(names)
		for _, g := range names {
			rel, ok := strings.CutPrefix(g, "/vmtest/bin/")
			if !ok || rel == "" || strings.Contains(rel, "/") {
				return fmt.Errorf("extra guest file %q is not directly under /vmtest/bin", g)
			}
			c.FileFrom("vmtest/bin/"+rel, 0o755, extra[g])
		}
	}
	var a bytes.Buffer
	for _, s := range args {
		if strings.ContainsAny(s, "\n") {
			return fmt.Errorf("test argument %q contains a newline", s)
		}
		a.WriteString(s + "\n")
	}
	c.File("vmtest/args", 0o644, a.Bytes())
	var e bytes.Buffer
	for _, kv := range env {
		e.WriteString("export " + shellQuote(kv) + "\n")
	}
	c.File("vmtest/env", 0o644, e.Bytes())
	if pkgDir != "" {
		td := filepath.Join(pkgDir, "testdata")
		if st, err := os.Stat(td); err == nil && st.IsDir() {
			err := filepath.WalkDir(td, func(p string, d fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				rel, err := filepath.Rel(pkgDir, p)
				if err != nil {
					return err
				}
				name := "vmtest/pkg/" + filepath.ToSlash(rel)
				info, err := d.Info()
				if err != nil {
					return err
				}
				switch {
				case d.IsDir():
					c.Dir(name, 0o755)
				case info.Mode()&fs.ModeSymlink != 0:
					t, err := os.Readlink(p)
					if err != nil {
						return err
					}
					c.Symlink(name, t)
				case info.Mode().IsRegular():
					c.FileFrom(name, uint32(info.Mode().Perm()), p)
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("copy %s: %w", td, err)
			}
		}
	}
	return c.Close()
}

// shellQuote quotes s for POSIX sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// concatFiles writes the concatenation of srcs to dst.
func concatFiles(dst string, srcs ...string) error {
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	for _, s := range srcs {
		in, err := os.Open(s)
		if err != nil {
			out.Close()
			return err
		}
		_, err = io.Copy(out, in)
		in.Close()
		if err != nil {
			out.Close()
			return fmt.Errorf("append %s to %s: %w", s, dst, err)
		}
	}
	return out.Close()
}
