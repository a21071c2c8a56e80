package packet

// Datapath echoes: probes (ProbeTunnelKey) that the receiving host's
// datapath answers by itself, without its agent, so that a peer can tell
// a host whose datapath forwards (its agent dead or restarting, the
// kernel datapath still pinned) from one whose datapath is gone too. The
// kernel datapath answers them in its program (bpf/datapath.c, echo);
// the userspace one, which dies with its agent, in its tunnel receiver.
//
// The payload is 8 bytes, shaped like the gateways' probes
// (pkg/agent/gateway/wire.go), which use types 1 and 2:
//
//	0  version (1)
//	1  type: 3 request, 4 reply
//	2  0
//	3  0
//	4  identifier (opaque; the reply carries the request's)
//
// A reply is the request with its type changed, sent back over the
// tunnel it came by.
const (
	// EchoLen is the length of an echo's payload.
	EchoLen = 8

	echoVersion = 1
	echoRequest = 3
	echoReply   = 4
)

// AppendEchoRequest appends an echo request carrying id.
func AppendEchoRequest(b []byte, id uint32) []byte {
	b = append(b, echoVersion, echoRequest, 0, 0, 0, 0, 0, 0)
	put32(b[len(b)-4:], id)
	return b
}

// IsEchoRequest reports whether a probe's payload is an echo request,
// which the datapath answers (AnswerEcho) instead of its agent.
func IsEchoRequest(b []byte) bool { return isEcho(b, echoRequest) }

// EchoReplyID returns the identifier of an echo reply; ok is false when
// b is not one.
func EchoReplyID(b []byte) (id uint32, ok bool) {
	if !isEcho(b, echoReply) {
		return 0, false
	}
	return be32(b[4:]), true
}

// AnswerEcho turns the echo request b into its reply, in place, and
// reports whether b was an echo request.
func AnswerEcho(b []byte) bool {
	if !IsEchoRequest(b) {
		return false
	}
	b[1] = echoReply
	return true
}

func isEcho(b []byte, typ byte) bool {
	return len(b) == EchoLen && b[0] == echoVersion && b[1] == typ && b[2] == 0 && b[3] == 0
}
