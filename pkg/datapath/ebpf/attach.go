//go:build linux

package ebpf

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// AttachMode picks how programs are attached to interfaces.
type AttachMode int

const (
	// AttachAuto uses TCX where the kernel has it (6.6+), clsact otherwise,
	// as Cilium does.
	AttachAuto AttachMode = iota
	// AttachTCX uses TCX links: no qdisc, and another program on the
	// interface (a tc filter, another TCX link) runs independently.
	AttachTCX
	// AttachClsact adds a clsact qdisc and a direct-action BPF filter.
	AttachClsact
)

func (m AttachMode) String() string {
	switch m {
	case AttachAuto:
		return "auto"
	case AttachTCX:
		return "tcx"
	case AttachClsact:
		return "clsact"
	}
	return "invalid"
}

// attachment is a program attached to one interface's ingress.
type attachment struct {
	ifindex int
	mode    AttachMode
	link    link.Link // AttachTCX
	prog    string    // the program's name, for logs and the clsact filter
	pin     string    // where the TCX link is pinned; "" if it is not
}

// clsactPriority and clsactHandle name our filter among other tc users'.
const (
	clsactPriority = 0x4e47 // "NG"
	clsactHandle   = 1
)

// attachIngress attaches prog to the ingress of ifindex. It must run in
// the interface's network namespace (the kernel resolves ifindex there).
func attachIngress(mode AttachMode, nl *netlink.Handle, ifindex int, prog *ebpf.Program, name string) (*attachment, error) {
	if mode == AttachAuto || mode == AttachTCX {
		l, err := link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: prog, Attach: ebpf.AttachTCXIngress})
		if err == nil {
			return &attachment{ifindex: ifindex, mode: AttachTCX, link: l, prog: name}, nil
		}
		if mode == AttachTCX || !errors.Is(err, ebpf.ErrNotSupported) {
			return nil, fmt.Errorf("attach %s to ifindex %d with TCX: %w", name, ifindex, err)
		}
	}
	q := &netlink.Clsact{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: ifindex, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT}}
	if err := nl.QdiscReplace(q); err != nil {
		return nil, fmt.Errorf("attach %s to ifindex %d: add clsact qdisc: %w", name, ifindex, err)
	}
	f := &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{LinkIndex: ifindex, Parent: netlink.HANDLE_MIN_INGRESS,
			Handle: clsactHandle, Protocol: unix.ETH_P_ALL, Priority: clsactPriority},
		Fd: prog.FD(), Name: "nagare-" + name, DirectAction: true,
	}
	if err := nl.FilterReplace(f); err != nil {
		return nil, fmt.Errorf("attach %s to ifindex %d: add tc filter: %w", name, ifindex, err)
	}
	return &attachment{ifindex: ifindex, mode: AttachClsact, prog: name}, nil
}

// detach removes the program. An interface that is gone took the program
// with it, which is not an error.
func (a *attachment) detach(nl *netlink.Handle) error {
	if a == nil {
		return nil
	}
	if a.mode == AttachTCX {
		var err error
		if a.pin != "" {
			err = a.link.Unpin()
		}
		return errors.Join(err, a.link.Close())
	}
	f := &netlink.BpfFilter{FilterAttrs: netlink.FilterAttrs{LinkIndex: a.ifindex, Parent: netlink.HANDLE_MIN_INGRESS,
		Handle: clsactHandle, Protocol: unix.ETH_P_ALL, Priority: clsactPriority}}
	if err := nl.FilterDel(f); err != nil && !errors.Is(err, unix.ENODEV) && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("detach %s from ifindex %d: %w", a.prog, a.ifindex, err)
	}
	return nil
}

// release forgets the attachment without detaching: a TCX link's file
// descriptor is closed, and the program stays attached only if the link
// was pinned. Used when the datapath stops but forwarding must go on.
func (a *attachment) release() error {
	if a == nil || a.link == nil {
		return nil
	}
	return a.link.Close()
}
