package agent

import (
	"reflect"
	"testing"

	"github.com/nagare/nagare/pkg/sim"
)

// TestDropCounts: the status an agent publishes carries its drop counters
// by reason as its Prometheus registry holds them, the zero ones left out.
func TestDropCounts(t *testing.T) {
	m := newMetrics(&Agent{})
	sim1, agent1 := m.dropCounts()
	if sim1 != nil || agent1 != nil {
		t.Fatalf("a new agent reports drops: %v %v", sim1, agent1)
	}
	for range 3 {
		m.simDrop(sim.DropRuleDrop)
	}
	m.simDrop(sim.DropNoRoute)
	m.drop("queue-full")
	simN, agentN := m.dropCounts()
	if want := map[string]uint64{"rule-drop": 3, "no-route": 1}; !reflect.DeepEqual(simN, want) {
		t.Errorf("simulation drops %v, want %v", simN, want)
	}
	if want := map[string]uint64{"queue-full": 1}; !reflect.DeepEqual(agentN, want) {
		t.Errorf("agent drops %v, want %v", agentN, want)
	}
}
