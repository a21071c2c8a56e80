package cli

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/nagare/nagare/pkg/agentstatus"
)

// The agent's flow-state table gets a line of `show datapath`, after the
// tunnels, when the agent reports one.
func TestDatapathFlowStateLine(t *testing.T) {
	st := &agentstatus.Datapath{HostName: "hv1", Datapath: "userspace", FlowState: &agentstatus.FlowState{
		Entries: 104, Zones: 2, MaxEntries: 400, MaxPerZone: 100, RefusedZoneFull: 632, RefusedExists: 1,
		PortsInUse: 3, BlocksLeased: 1, StateSent: 12, StateReceived: 7, StateMalformed: 2}}
	body, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	lines, _, err := datapathLines(body)
	if err != nil {
		t.Fatal(err)
	}
	want := "flow-state entries 104 max 400 zones 2 zone-max 100 refused full 0 zone-full 632 exists 1 nat-ports 3 nat-blocks 1 nat-exhausted 0 state-packets sent 12 received 7 malformed 2"
	if !slices.Contains(lines, want) {
		t.Errorf("no flow-state line:\n%q\nwant %q", lines, want)
	}
	st.FlowState = nil
	body, _ = json.Marshal(st)
	lines, _, _ = datapathLines(body)
	for _, l := range lines {
		if len(l) > 10 && l[:10] == "flow-state" {
			t.Errorf("a flow-state line without flow state: %q", l)
		}
	}
}
