//go:build !agentexec_lean

package main

import (
	"testing"

	"github.com/agentexec/agentexec/internal/fleet"
)

// The lean build's copies of the fleet's defaults (it cannot import the package).
func TestLeanDefaultsMatchFleet(t *testing.T) {
	if defaultService != fleet.DefaultService || defaultPool != fleet.DefaultPool {
		t.Errorf("defaultService %q, defaultPool %q; fleet has %q, %q", defaultService, defaultPool, fleet.DefaultService, fleet.DefaultPool)
	}
}
