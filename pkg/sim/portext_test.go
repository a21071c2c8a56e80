package sim

import (
	"fmt"
	"strings"
	"testing"

	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/model"
)

func actionsText(acts []flow.Action) string {
	var out []string
	for _, a := range acts {
		s := a.Type.String()
		switch a.Type {
		case flow.ActOutput:
			s += " " + a.PortID
		case flow.ActEncap:
			s += fmt.Sprintf(" %s key %d", a.HostID, a.TunnelKey)
		case flow.ActPushVLAN:
			s += fmt.Sprint(" ", a.VLAN)
		case flow.ActSetDSCP:
			s += fmt.Sprint(" ", a.DSCP)
		case flow.ActMirror:
			s += fmt.Sprintf(" %s %s key %d", a.Tunnel, a.Underlay, a.TunnelKey)
		}
		out = append(out, s)
	}
	return strings.Join(out, ", ")
}

// TestTrunkSubports: a frame tagged with a subport's VLAN on the parent's
// interface enters the subport's bridge untagged; what the bridge sends
// the subport leaves by the parent's interface (or its host's tunnel key)
// tagged; an unknown VLAN is dropped; replies go back tagged.
func TestTrunkSubports(t *testing.T) {
	sub := bport("sub-b", "bridge-b")
	sub.ParentID, sub.ParentVLAN = "pa1", 100
	remote := bport("sub-r", "bridge-b")
	remote.ParentID, remote.ParentVLAN = "pa2", 200
	e := newEnv(t, append(baseObjects(), sub, remote), Config{})
	e.learned("bridge-b", 0, macVM4, "pb1")
	e.learned("bridge-b", 0, macVM3, "sub-b")
	e.learned("bridge-b", 0, macVM5, "sub-r")

	in := udp(macVM3, macVM4, "10.0.2.50", "10.0.2.11")
	in.vlan = 100
	if got := actionsText(e.run("pa1", in.bytes()).Actions()); got != "pop-vlan, output pb1" {
		t.Errorf("subport ingress: %s", got)
	}
	out := udp(macVM4, macVM3, "10.0.2.11", "10.0.2.50")
	if got := actionsText(e.run("pb1", out.bytes()).Actions()); got != "push-vlan 100, output pa1" {
		t.Errorf("subport egress: %s", got)
	}
	toRemote := udp(macVM4, macVM5, "10.0.2.11", "10.0.2.60")
	if got := actionsText(e.run("pb1", toRemote.bytes()).Actions()); got != "push-vlan 200, encap h2 key 102" {
		t.Errorf("remote subport egress: %s", got)
	}
	in.vlan = 101
	if r := e.run("pa1", in.bytes()); r.Verdict != Drop || r.Reason != DropVLANMismatch {
		t.Errorf("unknown VLAN: %v %v", r.Verdict, r.Reason)
	}
	// Untagged frames stay on the parent's network.
	plain := udp(macVM1, macVM2, "10.0.1.11", "10.0.1.12")
	e.learned("bridge-a", 0, macVM2, "pa2")
	if got := actionsText(e.run("pa1", plain.bytes()).Actions()); got != "encap h2 key 102" {
		t.Errorf("parent's own traffic: %s", got)
	}
}

// TestMirrorsAndDSCP: a port's out-mirror copies what it sends before any
// change, its in-mirror what it receives as delivered, to a tap port or a
// remote GRE/ERSPAN endpoint (VLAN filters apply); a QoS policy with a
// DSCP mark rewrites what the port sends.
func TestMirrorsAndDSCP(t *testing.T) {
	objs := append(baseObjects(),
		&model.Mirror{Meta: meta("m-out"), PortID: "pa1", Direction: "out", RemoteIP: ip("192.0.2.99"), Encap: "erspan", Key: 7},
		&model.Mirror{Meta: meta("m-in"), PortID: "pa1", Direction: "in", DestPortID: "pa2"},
		&model.Mirror{Meta: meta("m-vlan"), PortID: "pa1", Direction: "both", RemoteIP: ip("192.0.2.98"), Encap: "gre", Key: 8, VLANs: "10-20"},
		&model.QoSPolicy{Meta: meta("gold"), MarkDSCP: true, DSCPMark: 46},
	)
	for _, o := range objs {
		if p, ok := o.(*model.Port); ok && p.ID == "pa1" {
			p.QoSPolicyID = "gold"
		}
	}
	e := newEnv(t, objs, Config{})
	e.learned("bridge-a", 0, macVM1, "pa1")
	e.learned("bridge-a", 0, macVM3, "pa4")
	sent := udp(macVM1, macVM3, "10.0.1.11", "10.0.1.13")
	r := e.run("pa1", sent.bytes())
	if got := actionsText(r.Actions()); got != "mirror erspan 192.0.2.99 key 7, set-dscp 46, output pa4" {
		t.Errorf("sent by the mirrored port: %s", got)
	}
	if !r.HasTag(ObjectTag(model.QoSPolicyKind, "gold")) || !r.HasTag(ObjectTag(model.MirrorKind, "m-out")) {
		t.Error("the flow does not carry the policy's and the mirror's tags")
	}
	recv := udp(macVM3, macVM1, "10.0.1.13", "10.0.1.11")
	if got := actionsText(e.run("pa4", recv.bytes()).Actions()); got != "output pa1, encap h2 key 102" {
		t.Errorf("received by the mirrored port: %s", got)
	}
	// A topology change to a mirror invalidates the mirrored port's flows.
	tags := e.topo.ChangeTags(&model.Mirror{Meta: meta("m-in"), PortID: "pa1"})
	found := false
	for _, tg := range tags {
		found = found || tg == ObjectTag(model.PortKind, "pa1")
	}
	if !found {
		t.Error("a mirror's change does not invalidate its port's flows")
	}
}
