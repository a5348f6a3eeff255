package sys

import (
	"errors"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// Values from include/uapi/linux/securebits.h.
func TestSecurebitsValues(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want int
	}{
		{"SECBIT_NOROOT", SECBIT_NOROOT, 0x01},
		{"SECBIT_NOROOT_LOCKED", SECBIT_NOROOT_LOCKED, 0x02},
		{"SECBIT_NO_SETUID_FIXUP", SECBIT_NO_SETUID_FIXUP, 0x04},
		{"SECBIT_NO_SETUID_FIXUP_LOCKED", SECBIT_NO_SETUID_FIXUP_LOCKED, 0x08},
		{"SECBIT_KEEP_CAPS", SECBIT_KEEP_CAPS, 0x10},
		{"SECBIT_KEEP_CAPS_LOCKED", SECBIT_KEEP_CAPS_LOCKED, 0x20},
		{"SECBIT_NO_CAP_AMBIENT_RAISE", SECBIT_NO_CAP_AMBIENT_RAISE, 0x40},
		{"SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED", SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED, 0x80},
	} {
		if c.got != c.want {
			t.Errorf("%s = %#x, want %#x", c.name, c.got, c.want)
		}
	}
}

// The read-only capability calls work on this thread.
func TestCapReads(t *testing.T) {
	c, err := Capget()
	if err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 && c.Effective&(1<<unix.CAP_SETPCAP) == 0 {
		t.Errorf("root without CAP_SETPCAP effective: %+v", c)
	}
	if os.Geteuid() != 0 && c.Effective != 0 {
		t.Logf("non-root with capabilities: %+v", c)
	}
	in, err := CapBsetRead(unix.CAP_CHOWN)
	if err != nil {
		t.Fatalf("PR_CAPBSET_READ: %v", err)
	}
	t.Logf("capget %+v, CAP_CHOWN in bounding set: %v", c, in)
	if _, err := CapBsetRead(1000); !errors.Is(err, unix.EINVAL) {
		t.Errorf("PR_CAPBSET_READ 1000: %v, want EINVAL", err)
	}
	if _, err := GetSecurebits(); err != nil {
		t.Errorf("PR_GET_SECUREBITS: %v", err)
	}
	if _, err := NoNewPrivs(); err != nil {
		t.Errorf("PR_GET_NO_NEW_PRIVS: %v", err)
	}
}

func TestSeccompSetModeFilterRejectsEmpty(t *testing.T) {
	if err := SeccompSetModeFilter(SeccompFilterFlagTSync, nil); !errors.Is(err, unix.EINVAL) {
		t.Errorf("empty program: %v, want EINVAL", err)
	}
	e := &TSyncError{TID: 42}
	if e.Error() == "" {
		t.Error("empty TSyncError message")
	}
}
