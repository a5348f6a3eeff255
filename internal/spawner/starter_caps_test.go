package spawner

import (
	"fmt"
	"os"
	"testing"

	"github.com/agentexec/agentexec/internal/contain"
	"github.com/agentexec/agentexec/internal/testutil"
)

// A root runtime's starter thread hands the spawner only setupCaps and no bounding
// set (Containment.prepareStarter); the spawner still ends with nothing, and no
// other thread of the main process changes. The control, a spawner that keeps its
// capabilities, leaves the starter thread as it was.
func TestStarterCaps(t *testing.T) {
	testutil.RequireRoot(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	self, err := contain.ReadStatus("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	if self.CapBnd == 0 {
		t.Skip("this process has an empty bounding set: nothing to narrow")
	}
	var setup uint64
	for _, c := range setupCaps {
		setup |= 1 << c
	}
	start := func(c Containment) (*Spawner, contain.Status) {
		s, err := StartSpawner(SpawnerConfig{Binary: exe, Profile: "test", Launchers: 1, KernelTemplates: "off",
			Containment: c, Tools: []ToolSpec{{Name: "true", Path: "/bin/true", Hot: true}}, Stderr: os.Stderr})
		if err != nil {
			t.Fatalf("StartSpawner: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		launchTrue(t, s)
		st, err := contain.ReadStatus(fmt.Sprintf("/proc/self/task/%d/status", s.starter.TID()))
		if err != nil {
			t.Fatal(err)
		}
		return s, st
	}

	s, starter := start(Containment{DropCaps: true})
	if starter.CapBnd != 0 || starter.CapInh != self.CapInh|setup&self.CapBnd {
		t.Errorf("starter thread: bounding %#x inheritable %#x, want 0 and %#x", starter.CapBnd, starter.CapInh, self.CapInh|setup&self.CapBnd)
	}
	sp, err := contain.ReadStatus(fmt.Sprintf("/proc/%d/status", s.Pid()))
	if err != nil {
		t.Fatal(err)
	}
	if sp.CapBnd != 0 || sp.CapInh != 0 || sp.CapPrm != 0 || sp.CapEff != 0 || sp.CapAmb != 0 {
		t.Errorf("spawner after its drop: %+v, want every set empty", sp)
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		if task.Name() == fmt.Sprint(s.starter.TID()) {
			continue
		}
		st, err := contain.ReadStatus("/proc/self/task/" + task.Name() + "/status")
		if err != nil {
			continue // the thread ended
		}
		if st.CapBnd != self.CapBnd || st.CapInh != self.CapInh || st.CapPrm != self.CapPrm {
			t.Errorf("thread %s of the main process changed: %+v, was %+v", task.Name(), st, self)
		}
	}

	// Control: a spawner that does not drop its capabilities.
	_, starter = start(Containment{})
	if starter.CapBnd != self.CapBnd || starter.CapInh != self.CapInh {
		t.Errorf("control: starter thread bounding %#x inheritable %#x, want the process's %#x and %#x",
			starter.CapBnd, starter.CapInh, self.CapBnd, self.CapInh)
	}
}
