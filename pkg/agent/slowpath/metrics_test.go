package slowpath

import (
	"reflect"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nagare/nagare/pkg/sim"
)

// TestDropCounts: the status an agent publishes carries its drop counters
// by reason as its Prometheus registry holds them, the zero ones left out.
func TestDropCounts(t *testing.T) {
	h, err := New(Config{Registerer: prometheus.NewRegistry(), Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	sim1, agent1 := h.DropCounts()
	if sim1 != nil || agent1 != nil {
		t.Fatalf("a new agent reports drops: %v %v", sim1, agent1)
	}
	for range 3 {
		h.met.simDrop(sim.DropRuleDrop)
	}
	h.met.simDrop(sim.DropNoRoute)
	h.met.drop("queue-full")
	simN, agentN := h.DropCounts()
	if want := map[string]uint64{"rule-drop": 3, "no-route": 1}; !reflect.DeepEqual(simN, want) {
		t.Errorf("simulation drops %v, want %v", simN, want)
	}
	if want := map[string]uint64{"queue-full": 1}; !reflect.DeepEqual(agentN, want) {
		t.Errorf("agent drops %v, want %v", agentN, want)
	}
}
