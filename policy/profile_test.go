package policy

import "testing"

func TestLandlockFeatures(t *testing.T) {
	tests := []struct {
		name string
		prof Profile
		want int
	}{
		{"scopes on (the default)", Profile{IPC: IPC{ScopeSignals: true}}, 6},
		{"scopes off", Profile{}, 4},
		{"isolated netns, no ports", Profile{Network: Network{Isolated: Require}}, 3},
		{"isolated best effort", Profile{Network: Network{Isolated: BestEffort}}, 4},
		{"isolated with ports", Profile{Network: Network{Isolated: Require, ConnectTCP: []uint16{443}}}, 4},
		{"write roots need refer, optionally", Profile{FS: FS{Write: []string{"/w"}}, Network: Network{Isolated: Require}}, 3},
	}
	for _, tt := range tests {
		if got := tt.prof.MinLandlockABI(); got != tt.want {
			t.Errorf("%s: MinLandlockABI = %d, want %d (%+v)", tt.name, got, tt.want, tt.prof.LandlockFeatures())
		}
	}
	p := Profile{FS: FS{Write: []string{"/w"}}, IPC: IPC{ScopeAbstractUnix: true, ScopeSignals: true}}
	var names string
	for _, f := range p.LandlockFeatures() {
		names += f.Name + " "
	}
	if names != "fs refer truncate net_tcp ioctl_dev scope_abstract_unix scope_signals " {
		t.Errorf("features: %s", names)
	}
}
