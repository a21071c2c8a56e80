package sim

import "strings"

// StepKind classifies a trace step. The String forms are stable: the
// `nagare trace` command and scripts parsing its JSON output rely on them.
type StepKind uint8

const (
	StepIngress  StepKind = iota + 1 // the packet enters a port
	StepEgress                       // the packet leaves a device by a port
	StepChain                        // a chain's rule decided, or the chain ended
	StepBridge                       // a bridge decision: learning, lookup, flood, ARP suppression
	StepRouter                       // a router decision: route, TTL, next hop, local answer
	StepOutput                       // output to a local interface or encapsulation to a host
	StepGenerate                     // a packet was generated (reply, error, request)
	StepDrop                         // the walk (or this branch of a flood) ended in a drop
	StepTrack                        // a connection-tracking lookup or creation
	StepNAT                          // a NAT rule translated (or could not translate) the packet
	StepLB                           // a load balancer picked a member (or could not), or translated a member's reply
)

var stepNames = [...]string{0: "none", StepIngress: "ingress", StepEgress: "egress", StepChain: "chain", StepBridge: "bridge",
	StepRouter: "router", StepOutput: "output", StepGenerate: "generate", StepDrop: "drop", StepTrack: "conntrack", StepNAT: "nat", StepLB: "lb"}

func (k StepKind) String() string {
	if int(k) < len(stepNames) {
		return stepNames[k]
	}
	return "invalid"
}

// Step is one line of a trace: which object acted (a device, port or chain
// by name, or id when unnamed), what kind of step, and what happened, in
// operator words. Depth is the flood nesting: steps of a flood's branches
// are one deeper than the flood.
type Step struct {
	Depth   int
	Object  string
	Kind    StepKind
	Message string
}

// Tracer records the steps of a walk, like ovn-trace. Set Input.Trace to
// one to trace a packet; leave it nil on the fast path, where every trace
// site is a single nil test and the messages are never formatted.
type Tracer struct {
	Steps []Step
	depth int
}

func (t *Tracer) add(kind StepKind, object, msg string) {
	t.Steps = append(t.Steps, Step{Depth: t.depth, Object: object, Kind: kind, Message: msg})
}

// String renders the steps one per line, indented by depth:
//
//	ingress   bridge0:p1: ingress port bridge0:p1 (vm1)
func (t *Tracer) String() string {
	var b strings.Builder
	for _, s := range t.Steps {
		b.WriteString(strings.Repeat("  ", s.Depth))
		b.WriteString(s.Kind.String())
		b.WriteString(strings.Repeat(" ", max(1, 9-len(s.Kind.String()))))
		b.WriteString(s.Object)
		b.WriteString(": ")
		b.WriteString(s.Message)
		b.WriteByte('\n')
	}
	return b.String()
}
