//go:build linux

package ebpf_test

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/datapath/ebpf"
	"github.com/nagare/nagare/pkg/datapath/netnstest"
	"github.com/nagare/nagare/pkg/packet"
)

// TestReleasedDatapathAnswersEchoes: a pinned datapath whose agent is gone
// (closed, pins kept) still answers its tunnel peers' echo requests from
// the kernel — what tells them its datapath forwards — and nothing else:
// a probe for the agent goes unanswered. The peer is a real UDP socket on
// the VXLAN port, in a namespace of its own across a veth.
func TestReleasedDatapathAnswersEchoes(t *testing.T) {
	host, peer := netnstest.New(t, "eh"), netnstest.New(t, "ep")
	netnstest.Veth(t, host, "ul", peer, "ul")
	host.Run(t, "ip", "addr", "add", "10.78.0.1/24", "dev", "ul")
	peer.Run(t, "ip", "addr", "add", "10.78.0.2/24", "dev", "ul")
	pinDir := filepath.Join("/sys/fs/bpf", fmt.Sprintf("nagare-echo-test-%d", os.Getpid()))
	t.Cleanup(func() { os.RemoveAll(pinDir) })
	local, remote := netip.MustParseAddr("10.78.0.1"), netip.MustParseAddr("10.78.0.2")

	dp, err := ebpf.New(datapath.Config{Netns: host.Path}, ebpf.Options{PinDir: pinDir})
	if err != nil {
		t.Fatal(err)
	}
	if err := dp.SetTunnels(datapath.TunnelConfig{LocalIP: local, VXLAN: true, Peers: []netip.Addr{remote}}); err != nil {
		t.Fatal(err)
	}
	if err := dp.Close(); err != nil { // the agent is gone; the kernel side stays
		t.Fatal(err)
	}

	var conn *net.UDPConn
	if err := peer.Do(func() error {
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(remote, packet.DefaultVXLANPort)))
		conn = c
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	to := net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, packet.DefaultVXLANPort))
	send := func(payload []byte) {
		t.Helper()
		buf := make([]byte, 8+len(payload))
		if _, err := packet.EncapVXLAN(buf, payload, packet.ProbeTunnelKey); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.WriteToUDP(buf, to); err != nil {
			t.Fatal(err)
		}
	}
	recv := func(wait time.Duration) ([]byte, netip.AddrPort, error) {
		buf := make([]byte, 2048)
		if err := conn.SetReadDeadline(time.Now().Add(wait)); err != nil {
			t.Fatal(err)
		}
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		return buf[:n], from, err
	}

	// Neighbour resolution may hold the first answer back: a few tries.
	var reply []byte
	for id := uint32(1); id <= 5 && reply == nil; id++ {
		send(packet.AppendEchoRequest(nil, id))
		b, from, err := recv(time.Second)
		if err != nil {
			t.Logf("echo %d: %v", id, err)
			continue
		}
		key, payload, err := packet.DecapVXLAN(b)
		if err != nil || key != packet.ProbeTunnelKey || from.Addr() != local {
			t.Fatalf("answer from %s: key %#x payload %x (%v)", from, key, payload, err)
		}
		if rid, ok := packet.EchoReplyID(payload); !ok || rid != id {
			t.Fatalf("answer %x to echo request %d", payload, id)
		}
		reply = payload
	}
	if reply == nil {
		t.Fatal("the released datapath answered no echo request")
	}
	// A gateway's probe (type 1) is the agent's to answer: nothing comes.
	send([]byte{1, 1, 0, 0, 0, 0, 0, 9})
	if b, _, err := recv(500 * time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("a probe for the dead agent was answered: %x (%v)", b, err)
	}
}
