package sys

import (
	"errors"
	"os"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// CapsetThread and CapBsetDropThread change the calling thread and no other: on a
// locked thread that then ends, the other threads' sets stay as they were.
func TestCapsThreadOnly(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_SETPCAP) to change the bounding set")
	}
	before, err := Capget()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		done <- func() error {
			cur, err := Capget()
			if err != nil {
				return err
			}
			cur.Inheritable = 1 << unix.CAP_SYS_ADMIN
			if err := CapsetThread(cur); err != nil {
				return err
			}
			if err := CapBsetDropThread(unix.CAP_SYS_ADMIN); err != nil {
				return err
			}
			if in, err := CapBsetRead(unix.CAP_SYS_ADMIN); err != nil || in {
				return errors.New("CAP_SYS_ADMIN still in this thread's bounding set")
			}
			if got, err := Capget(); err != nil || got.Inheritable != 1<<unix.CAP_SYS_ADMIN {
				return errors.New("inheritable set not changed on this thread")
			}
			return nil
		}()
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	in, err := CapBsetRead(unix.CAP_SYS_ADMIN)
	if err != nil {
		t.Fatal(err)
	}
	after, err := Capget()
	if err != nil {
		t.Fatal(err)
	}
	if !in || after != before {
		t.Errorf("this thread changed too: CAP_SYS_ADMIN in bounding %v, sets %+v, were %+v", in, after, before)
	}
}
