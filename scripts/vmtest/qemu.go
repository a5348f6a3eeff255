package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// guest describes one boot: a kernel, an initramfs and where its logs go.
type guest struct {
	qemu    string
	kernel  kernel
	initrd  string
	dir     string // run directory for console.log, output.log, exit.log, files.tar
	accel   string // "tcg" or "kvm"
	mem     string
	smp     int
	timeout time.Duration
	stream  io.Writer // test output lines go here, prefixed; nil for none
	prefix  string
}

// guestResult is what one boot produced.
type guestResult struct {
	ExitCode int           // the test binary's exit status, -1 when unknown
	Err      error         // non-nil when the run failed for another reason
	Elapsed  time.Duration // qemu start to exit
	Files    string        // directory holding the extracted files.tar, "" if none
}

// Passed reports whether the run passed: the guest reported exit code 0 and nothing
// else went wrong.
func (r guestResult) Passed() bool { return r.Err == nil && r.ExitCode == 0 }

var exitLineRE = regexp.MustCompile(`VMTEST-EXIT (-?[0-9]+)`)

const (
	consoleLog = "console.log"
	outputLog  = "output.log"
	exitLog    = "exit.log"
	filesTar   = "files.tar"
	qemuLog    = "qemu.log"
)

func (g *guest) args() []string {
	accel := "tcg,thread=single"
	var cpu []string
	if g.accel == "kvm" {
		accel = "kvm"
		cpu = []string{"-cpu", "host"}
	}
	a := []string{
		"-nodefaults", "-nographic", "-no-reboot",
		"-accel", accel,
		"-m", g.mem,
		"-smp", strconv.Itoa(g.smp),
	}
	a = append(a, cpu...)
	a = append(a,
		"-kernel", g.kernel.Vmlinuz,
		"-initrd", g.initrd,
		"-append", g.cmdline(),
		// Relative paths: qemu runs in g.dir, and -serial file: would need commas in
		// paths escaped.
		"-serial", "file:"+consoleLog,
		"-serial", "file:"+outputLog,
		"-serial", "file:"+exitLog,
		"-serial", "file:"+filesTar,
	)
	return a
}

// cmdline is the kernel command line: the console, four serial ports, and one
// vmtest.env=NAME=VALUE word per variable of the kernel's Env, which /init exports
// (the kernel ignores dotted words it does not know; /init reads /proc/cmdline).
func (g *guest) cmdline() string {
	c := "console=ttyS0 rdinit=/init panic=-1 quiet loglevel=4 mitigations=off 8250.nr_uarts=4"
	for _, kv := range g.kernel.Env {
		c += " vmtest.env=" + kv
	}
	return c
}

// errTimeout and errInterrupted end a run that did not finish by itself.
var (
	errTimeout     = errors.New("guest timed out")
	errInterrupted = errors.New("interrupted")
)

// run boots the guest and waits for it. ctx is the harness's context (cancelled on
// SIGINT/SIGTERM); the guest's own timeout is added here. qemu is stopped by its pid
// with SIGTERM and then SIGKILL, and dies with the harness (Pdeathsig).
func (g *guest) run(ctx context.Context) guestResult {
	res := guestResult{ExitCode: -1}
	if err := os.MkdirAll(g.dir, 0o755); err != nil {
		res.Err = err
		return res
	}
	for _, f := range []string{consoleLog, outputLog, exitLog, filesTar} {
		os.Remove(filepath.Join(g.dir, f))
	}
	qlog, err := os.Create(filepath.Join(g.dir, qemuLog))
	if err != nil {
		res.Err = err
		return res
	}
	defer qlog.Close()
	fmt.Fprintf(qlog, "+ %s %s\n", g.qemu, strings.Join(g.args(), " "))

	tctx, cancel := context.WithTimeoutCause(ctx, g.timeout, errTimeout)
	defer cancel()
	cmd := exec.Command(g.qemu, g.args()...)
	cmd.Dir = g.dir
	cmd.Stdin = nil // /dev/null
	cmd.Stdout = qlog
	cmd.Stderr = qlog
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:   true, // a terminal's ^C reaches the harness, which stops qemu
		Pdeathsig: syscall.SIGKILL,
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		res.Err = fmt.Errorf("start %s: %w", g.qemu, err)
		return res
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	if g.stream != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tail(filepath.Join(g.dir, outputLog), g.stream, g.prefix, done)
		}()
	}
	waitErr := make(chan error, 1)
	go func() { waitErr <- cmd.Wait() }()
	var stopped error
	select {
	case err = <-waitErr:
	case <-tctx.Done():
		stopped = context.Cause(tctx)
		if errors.Is(stopped, context.Canceled) {
			stopped = errInterrupted
		}
		// Kill qemu by pid: SIGTERM first (qemu exits cleanly), then SIGKILL.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err = <-waitErr:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			err = <-waitErr
		}
	}
	res.Elapsed = time.Since(start)
	close(done)
	wg.Wait()

	if stopped != nil {
		if errors.Is(stopped, errTimeout) {
			res.Err = fmt.Errorf("%w after %s (limit VMTEST_TIMEOUT=%s)", errTimeout, res.Elapsed.Round(time.Second), g.timeout)
		} else {
			res.Err = stopped
		}
		return res
	}
	if err != nil {
		res.Err = fmt.Errorf("qemu failed: %w: %s", err, lastLines(readSmall(filepath.Join(g.dir, qemuLog)), 3))
		// Still look for an exit line: qemu may fail after the guest reported.
	}
	exitText := readSmall(filepath.Join(g.dir, exitLog))
	m := exitLineRE.FindStringSubmatch(exitText)
	if m == nil {
		if res.Err == nil {
			res.Err = fmt.Errorf("guest died without an exit-code line; console: %s", consoleHint(filepath.Join(g.dir, consoleLog)))
		}
		return res
	}
	res.ExitCode, _ = strconv.Atoi(m[1])
	if res.Err != nil {
		return res
	}
	out := readSmallTail(filepath.Join(g.dir, outputLog), 4096)
	if !strings.Contains(out, "VMTEST-END") {
		res.Err = errors.New("test output stream incomplete (no VMTEST-END marker)")
	}
	if st, err := os.Stat(filepath.Join(g.dir, filesTar)); err == nil && st.Size() > 0 {
		dst := filepath.Join(g.dir, "files")
		if err := untar(filepath.Join(g.dir, filesTar), dst); err != nil {
			res.Err = fmt.Errorf("extract guest files: %w", err)
		} else {
			res.Files = dst
		}
	}
	return res
}

// tail copies complete lines appended to path to w, each with prefix, until done is
// closed; then it copies the rest.
func tail(path string, w io.Writer, prefix string, done <-chan struct{}) {
	var off int64
	var partial []byte
	flush := func(final bool) {
		f, err := os.Open(path)
		if err != nil {
			return
		}
		defer f.Close()
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			return
		}
		b, _ := io.ReadAll(f)
		off += int64(len(b))
		partial = append(partial, b...)
		for {
			i := bytes.IndexByte(partial, '\n')
			if i < 0 {
				break
			}
			line := strings.TrimRight(string(partial[:i]), "\r")
			partial = partial[i+1:]
			fmt.Fprintf(w, "%s%s\n", prefix, line)
		}
		if final && len(partial) > 0 {
			fmt.Fprintf(w, "%s%s\n", prefix, partial)
			partial = nil
		}
	}
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-done:
			flush(true)
			return
		case <-t.C:
			flush(false)
		}
	}
}

func readSmall(path string) string {
	return readSmallTail(path, 64<<10)
}

// readSmallTail returns at most the last n bytes of a file ("" if unreadable).
func readSmallTail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > n {
		_, _ = f.Seek(st.Size()-n, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// consoleHint picks the most telling lines of a console log: a panic or oops, else
// the last lines.
func consoleHint(path string) string {
	s := sanitize(readSmall(path))
	if s == "" {
		return "(empty console log)"
	}
	for _, key := range []string{"Kernel panic", "KVM internal error", "BUG:", "Oops", "Attempted to kill init"} {
		if i := strings.Index(s, key); i >= 0 {
			line := s[i:]
			if j := strings.IndexByte(line, '\n'); j >= 0 {
				line = line[:j]
			}
			return strings.TrimSpace(line)
		}
	}
	return lastLines(s, 3)
}

// untar extracts a tar written by the guest into dst, refusing paths that escape it.
func untar(src, dst string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(bufio.NewReader(f))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", src, err)
		}
		name := filepath.Clean(h.Name)
		if name == "." {
			continue
		}
		if filepath.IsAbs(name) || strings.HasPrefix(name, "..") {
			return fmt.Errorf("read %s: entry %q escapes the output directory", src, h.Name)
		}
		p := filepath.Join(dst, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			out, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
			if err != nil {
				return err
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("extract %s: %w", p, err)
			}
		}
	}
}

var ansiRE = regexp.MustCompile(`\x1b(\[[0-9;?]*[A-Za-z]|c)`)

// sanitize drops terminal escape sequences (SeaBIOS clears the screen) and other
// control characters from console text.
func sanitize(s string) string {
	s = ansiRE.ReplaceAllString(s, "")
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\t' || r >= 0x20 && r != 0x7f {
			return r
		}
		return -1
	}, s)
}
