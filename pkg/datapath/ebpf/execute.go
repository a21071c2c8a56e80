//go:build linux

package ebpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/packet"
)

// Execute's frames enter the kernel through a veth pair of the
// datapath's own: the agent writes a frame to one end with an AF_PACKET
// socket, its skb mark naming an exec slot that holds the output (a port,
// or a tunnel with its key and remote endpoint), and exec_in on the other
// end's ingress sends it there with the same helpers a flow uses. Tunnel
// encapsulation needs the skb's tunnel metadata, which only a BPF program
// (or the kernel itself) can attach: that is why Execute goes through the
// kernel rather than a socket per port.
const (
	injectName = "ngr-inj0" // the agent writes here
	injectPeer = "ngr-inj1" // exec_in runs here
	// injectMTU lets any frame through: the output's own MTU applies.
	injectMTU = 65000
)

type injector struct {
	fd      int
	ifindex int
	att     *attachment
	slots   *ebpf.Map
	seq     atomic.Uint32
	// sendBatch's buffers.
	txMu sync.Mutex
	msgs []unix.Mmsghdr
	iovs []unix.Iovec
	oobs []byte
}

// nextSeq returns the mark of the next injected frame: its exec slot is
// mark % execSlots, its sequence mark / execSlots. 0 means "not ours".
func (inj *injector) nextSeq() uint32 {
	seq := inj.seq.Add(1)
	if seq == 0 {
		seq = inj.seq.Add(1)
	}
	return seq
}

// newInjector creates the veth pair (replacing one a previous datapath
// left), attaches exec_in and opens the socket.
func newInjector(dp *Datapath) (*injector, error) {
	inj := &injector{fd: -1, slots: dp.objs.ExecSlots}
	if l, err := dp.nl.LinkByName(injectName); err == nil {
		if err := dp.nl.LinkDel(l); err != nil {
			return nil, fmt.Errorf("datapath: remove stale %s: %w", injectName, err)
		}
	}
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: injectName, MTU: injectMTU}, PeerName: injectPeer}
	if err := dp.nl.LinkAdd(veth); err != nil {
		return nil, fmt.Errorf("datapath: create %s: %w", injectName, err)
	}
	fail := func(err error) (*injector, error) {
		inj.close(dp)
		return nil, fmt.Errorf("datapath: injection device: %w", err)
	}
	var ifindex, peer int
	for _, name := range []string{injectName, injectPeer} {
		l, err := dp.nl.LinkByName(name)
		if err != nil {
			return fail(err)
		}
		// No IPv6 (router solicitations, MLD) on a device no host uses.
		_ = dp.inNetns(func() error {
			return os.WriteFile("/proc/sys/net/ipv6/conf/"+name+"/disable_ipv6", []byte("1"), 0)
		})
		if err := dp.nl.LinkSetMTU(l, injectMTU); err != nil {
			return fail(err)
		}
		if err := dp.nl.LinkSetUp(l); err != nil {
			return fail(err)
		}
		if name == injectName {
			ifindex = l.Attrs().Index
		} else {
			peer = l.Attrs().Index
		}
	}
	inj.ifindex = ifindex
	var err error
	if inj.att, err = dp.attach(peer, dp.objs.ExecIn, "exec_in"); err != nil {
		return fail(err)
	}
	err = dp.inNetns(func() error {
		// Protocol 0: the socket sends only, and receives nothing.
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		inj.fd = fd
		// Straight to the device: the frame goes through no qdisc.
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifindex})
	})
	if err != nil {
		return fail(fmt.Errorf("packet socket: %w", err))
	}
	return inj, nil
}

func (inj *injector) close(dp *Datapath) error {
	if inj == nil {
		return nil
	}
	var errs []error
	if inj.fd >= 0 {
		errs = append(errs, unix.Close(inj.fd))
		inj.fd = -1
	}
	// Unpinned too: the device goes, and the next instance makes its own.
	errs = append(errs, dp.inNetns(func() error { return inj.att.detach(dp.nl) }))
	if l, err := dp.nl.LinkByName(injectName); err == nil {
		errs = append(errs, dp.nl.LinkDel(l)) // takes the peer with it
	}
	return errors.Join(errs...)
}

// send hands frame to the kernel for one output.
func (inj *injector) send(frame []byte, act *kernelAction) error {
	seq := inj.nextSeq()
	slot := execSlot{Seq: seq / execSlots, Act: *act}
	if err := inj.slots.Update(seq%execSlots, &slot, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("write exec slot: %w", err)
	}
	var oob [unix.SizeofCmsghdr + 8]byte
	putMark(oob[:], seq)
	if err := unix.Sendmsg(inj.fd, frame, oob[:unix.CmsgSpace(4)], nil, 0); err != nil {
		return fmt.Errorf("inject: %w", err)
	}
	return nil
}

// headroom is the space kept in front of a frame for pushed VLAN tags.
const headroom = 64

var execBufs = sync.Pool{New: func() any { b := make([]byte, 2048); return &b }}

// rewriteDecoder finds the headers NAT rewrites: a flow's frame is the
// overlay's inner frame, never a tunnel to look into.
var rewriteDecoder packet.Decoder

// Execute implements datapath.Datapath: the actions are applied here, in
// order, with pkg/packet's rewrites, and each output hands the frame as it
// is at that point to the kernel.
func (dp *Datapath) Execute(inPort int32, frame []byte, actions []flow.Action) error {
	if len(frame) < 14 {
		return fmt.Errorf("datapath: execute: frame of %d bytes is shorter than an Ethernet header", len(frame))
	}
	if dp.isClosed() {
		return datapath.ErrClosed
	}
	ps := dp.ports.Load()
	in := ps.byIndex[inPort] // nil for a generated packet
	var outs [maxActs]kernelAction
	var big []kernelAction
	for i := range actions {
		a := &actions[i]
		var out *port
		switch a.Type {
		case flow.ActOutput:
			if out = ps.byIndex[a.Port]; out == nil {
				return fmt.Errorf("datapath: execute: action %d: output to port %d (%s): %w", i, a.Port, a.PortID, datapath.ErrUnknownPort)
			}
		case flow.ActInnerSrc, flow.ActInnerDst:
			if !a.Addr.IsValid() {
				return fmt.Errorf("datapath: execute: action %d: %s to %q: not an address", i, a.Type, a.Addr)
			}
			continue
		case flow.ActSetDSCP, flow.ActMirror:
			if err := a.Check(); err != nil {
				return fmt.Errorf("datapath: execute: action %d: %w", i, err)
			}
			continue
		}
		k, err := compileAction(a, out)
		if err != nil {
			return fmt.Errorf("datapath: execute: action %d: %w", i, err)
		}
		if i < maxActs {
			outs[i] = k
		} else {
			if big == nil {
				big = make([]kernelAction, len(actions))
			}
			big[i] = k
		}
	}
	kact := func(i int) *kernelAction {
		if i < maxActs {
			return &outs[i]
		}
		return &big[i]
	}

	bp := execBufs.Get().(*[]byte)
	defer execBufs.Put(bp)
	if len(*bp) < headroom+len(frame) {
		*bp = make([]byte, headroom+len(frame))
	}
	buf := *bp
	start, end := headroom, headroom+len(frame)
	copy(buf[start:], frame)
	var p packet.Parsed
	decoded := false
	for i := range actions {
		a := &actions[i]
		switch a.Type {
		case flow.ActSetEthSrc:
			copy(buf[start+6:start+12], a.MAC[:])
		case flow.ActSetEthDst:
			copy(buf[start:start+6], a.MAC[:])
		case flow.ActPushVLAN:
			if start < 4 {
				dp.drops.add(datapath.DropVLANHeadroom, 1)
				return nil
			}
			copy(buf[start-4:], buf[start:start+12])
			start -= 4
			decoded = false
			binary.BigEndian.PutUint16(buf[start+12:], packet.EtherTypeVLAN)
			binary.BigEndian.PutUint16(buf[start+14:], a.VLAN&0x0fff)
		case flow.ActPopVLAN:
			if end-start < 18 || !isTPID(binary.BigEndian.Uint16(buf[start+12:])) {
				dp.drops.add(datapath.DropPopUntagged, 1)
				return nil
			}
			copy(buf[start+4:start+16], buf[start:start+12])
			start += 4
			decoded = false
		case flow.ActDecTTL:
			if !packet.DecFrameTTL(buf[start:end], a.Count) {
				dp.drops.add(datapath.DropTTLExpired, 1)
				return nil
			}
		case flow.ActMirror:
			dp.mu.Lock()
			local := dp.tun.cfg.LocalIP
			dp.mu.Unlock()
			if err := dp.mirror.Send(local, a.Underlay, a.Tunnel, a.TunnelKey, buf[start:end]); err != nil {
				dp.drops.add(datapath.DropMirrorTxError, 1)
			}
		case flow.ActSetIPSrc, flow.ActSetIPDst, flow.ActSetL4Src, flow.ActSetL4Dst, flow.ActSetICMPID, flow.ActInnerSrc, flow.ActInnerDst, flow.ActSetDSCP:
			if !decoded {
				rewriteDecoder.Decode(&p, buf[start:end])
				decoded = true
			}
			if a.Rewrite(&p) != nil {
				dp.drops.add(datapath.DropRewriteRefused, 1)
				return nil
			}
		case flow.ActEncap:
			if a.Tunnel == packet.TunnelGRE {
				if err := dp.sendGRE(buf[:end], start, a); err != nil {
					return fmt.Errorf("datapath: execute: %w", err)
				}
				continue
			}
			fallthrough
		case flow.ActOutput:
			if dp.queueOutput(in, buf[start:end], kact(i)) {
				continue // sent at the end of the batch
			}
			if err := dp.inj.send(buf[start:end], kact(i)); err != nil {
				if a.Type == flow.ActEncap {
					dp.drops.add(datapath.DropTunnelTxError, 1)
				} else {
					dp.drops.add(datapath.DropTxError, 1)
				}
				return fmt.Errorf("datapath: execute: %w", err)
			}
		}
	}
	return nil
}

func isTPID(t uint16) bool { return t == packet.EtherTypeVLAN || t == packet.EtherTypeQinQ }
