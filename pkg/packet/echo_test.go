package packet

import "testing"

func TestEcho(t *testing.T) {
	req := AppendEchoRequest(nil, 0xdeadbeef)
	eq(t, "request", string(req), string([]byte{1, 3, 0, 0, 0xde, 0xad, 0xbe, 0xef}))
	if !IsEchoRequest(req) {
		t.Fatal("AppendEchoRequest's payload is no echo request")
	}
	if _, ok := EchoReplyID(req); ok {
		t.Error("a request reads as a reply")
	}
	if !AnswerEcho(req) {
		t.Fatal("AnswerEcho refused a request")
	}
	if id, ok := EchoReplyID(req); !ok || id != 0xdeadbeef {
		t.Errorf("reply id %#x %v, want 0xdeadbeef", id, ok)
	}
	if AnswerEcho(req) {
		t.Error("AnswerEcho answered a reply")
	}
	for _, b := range [][]byte{
		nil,
		{1, 3, 0, 0, 0, 0, 0},       // short
		{1, 3, 0, 0, 0, 0, 0, 0, 0}, // long
		{2, 3, 0, 0, 0, 0, 0, 0},    // version
		{1, 1, 0, 0, 0, 0, 0, 1},    // a gateway's request
		{1, 3, 1, 0, 0, 0, 0, 0},    // flags
		{1, 3, 0, 1, 0, 0, 0, 0},    // reserved
	} {
		c := append([]byte(nil), b...)
		if IsEchoRequest(b) || AnswerEcho(c) || string(c) != string(b) {
			t.Errorf("%x taken for an echo request", b)
		}
	}
}

// FuzzEcho: whatever the bytes, an answered request is a reply with the
// same identifier, and nothing else is changed.
func FuzzEcho(f *testing.F) {
	f.Add(AppendEchoRequest(nil, 7))
	f.Add([]byte{1, 4, 0, 0, 0, 0, 0, 9})
	f.Add([]byte{1, 1, 0, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		c := append([]byte(nil), b...)
		if !AnswerEcho(c) {
			if string(c) != string(b) {
				t.Fatalf("refused %x but changed it to %x", b, c)
			}
			return
		}
		id, ok := EchoReplyID(c)
		if !ok || id != be32(b[4:]) {
			t.Fatalf("answer %x of %x: reply %v id %#x", c, b, ok, id)
		}
	})
}
