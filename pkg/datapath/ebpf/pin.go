//go:build linux

package ebpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/flowstate"
)

// Restarts. With Options.PinDir set, every map and every TCX link is
// pinned under PinDir/v<layout version>, so that the kernel keeps
// forwarding when the agent stops, crashes or is upgraded: Close releases
// the datapath's file descriptors without detaching anything. The next
// New with the same PinDir adopts what it finds: the maps (the flows, the
// port slots the flows' outputs name, the counters), the links (their
// programs replaced atomically by the new instance's), the VXLAN device.
//
// Adopted flows keep forwarding, but the agent that installed them is
// gone with their tags, so Invalidate cannot find them: they are removed
// Options.AdoptGrace after the start unless installed again, and the
// packets after that miss and are simulated anew (as OVS revalidates the
// kernel flows it finds at start). Ports not attached again within the
// grace period are detached.
//
// A layout version other than this build's (or maps that no longer fit
// this configuration, such as another MaxFlows) is migrated by
// rebuilding: fresh maps are created, the programs replaced on every
// interface, and the old pins removed; flows are learned again.

const bpfFSMagic = 0xcafe4a11

// ensureBPFFS mounts the BPF filesystem on /sys/fs/bpf if nothing is
// mounted there, as Cilium's agent does. Idempotent.
func ensureBPFFS(dir string) error {
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/bpf", &st); err == nil && st.Type == bpfFSMagic {
		return os.MkdirAll(dir, 0o700)
	}
	if err := os.MkdirAll("/sys/fs/bpf", 0o755); err != nil {
		return fmt.Errorf("create /sys/fs/bpf: %w", err)
	}
	if err := unix.Mount("bpf", "/sys/fs/bpf", "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("mount the BPF filesystem on /sys/fs/bpf: %w", err)
	}
	if err := unix.Statfs(dir, &st); err == nil && st.Type != bpfFSMagic {
		return fmt.Errorf("%s is not on a BPF filesystem", dir)
	}
	return os.MkdirAll(dir, 0o700)
}

// versionDir is where this layout's objects are pinned.
func (dp *Datapath) versionDir() string {
	return filepath.Join(dp.opts.PinDir, "v"+strconv.Itoa(layoutVersion))
}

// loadPinned loads the collection reusing the maps pinned by a previous
// instance of the same layout, rebuilding when they do not fit. It
// reports whether maps were adopted.
func (dp *Datapath) loadPinned(spec *ebpf.CollectionSpec) (bool, error) {
	if err := ensureBPFFS(dp.opts.PinDir); err != nil {
		return false, err
	}
	dir := dp.versionDir()
	_, statErr := os.Stat(filepath.Join(dir, datapathMapFlows))
	existed := statErr == nil
	// Other layouts: their links keep forwarding until ours replace them.
	entries, err := os.ReadDir(dp.opts.PinDir)
	if err != nil {
		return false, err
	}
	for _, e := range entries {
		if e.IsDir() && e.Name() != filepath.Base(dir) {
			dp.stale = append(dp.stale, filepath.Join(dp.opts.PinDir, e.Name()))
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "links"), 0o700); err != nil {
		return false, err
	}
	for name, m := range spec.Maps {
		if !strings.HasPrefix(name, ".") { // not the data sections
			m.Pinning = ebpf.PinByName
		}
	}
	opts := &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: dir}}
	err = spec.LoadAndAssign(&dp.objs, opts)
	if errors.Is(err, ebpf.ErrMapIncompatible) {
		dp.log.Warn("datapath: pinned maps do not fit this configuration; rebuilding them (flows are learned again)", "dir", dir, "err", err)
		if err := dp.unpinMaps(dir); err != nil {
			return false, err
		}
		existed = false
		err = spec.LoadAndAssign(&dp.objs, opts)
	}
	if err != nil {
		return false, err
	}
	if len(dp.stale) > 0 {
		dp.log.Warn("datapath: found pinned state of another layout; migrating by rebuilding (flows are learned again)", "old", dp.stale)
	}
	return existed, nil
}

// unpinMaps removes the map pins in dir (not the links).
func (dp *Datapath) unpinMaps(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.IsDir() {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// adopt rebuilds the agent side from the pinned maps: the port slots in
// use, the action lists, and the flows (as adopted records).
func (dp *Datapath) adopt() error {
	var (
		ifindex, slot uint32
		info          portInfo
	)
	dp.adoptedSlots = map[uint32]uint32{}
	it := dp.objs.PortSlots.Iterate()
	for it.Next(&ifindex, &slot) {
		if err := dp.objs.Ports.Lookup(slot, &info); err == nil && info.Ifindex == ifindex {
			dp.adoptedSlots[ifindex] = slot
			// By name, for the agent to attach it again at the same
			// index (AdoptedPorts); an interface gone since is not.
			if l, err := dp.nl.LinkByIndex(int(ifindex)); err == nil {
				dp.adoptedPorts = append(dp.adoptedPorts, datapath.AdoptedPort{Interface: l.Attrs().Name, Index: info.Index, TunnelKey: info.TunnelKey})
			}
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("adopt ports: %w", err)
	}
	var (
		id   uint32
		list actionList
	)
	ait := dp.objs.Actions.Iterate()
	for ait.Next(&id, &list) {
		dp.lists.adopt(id, &list)
	}
	if err := ait.Err(); err != nil {
		return fmt.Errorf("adopt action lists: %w", err)
	}
	var (
		k kernelKey
		v flowValue
	)
	deadline := time.Now().Add(dp.opts.AdoptGrace)
	n := 0
	fit := dp.objs.Flows.Iterate()
	for fit.Next(&k, &v) {
		r := &flowRec{key: fromKernelKey(&k), class: flowClass(v.Class), mtu: int(v.Mtu), list: v.Acts,
			slow: v.Flags&flowSlow != 0, mono: v.Installed, adopted: deadline}
		r.wall = wallOf(v.Installed)
		if v.Flags&flowStateful != 0 {
			r.state = adoptedState
		}
		if !dp.lists.ref(r.list) && !r.slow {
			// A flow whose list is gone would only ever miss.
			_ = dp.objs.Flows.Delete(&k)
			continue
		}
		dp.table.link(r)
		n++
	}
	if err := fit.Err(); err != nil {
		return fmt.Errorf("adopt flows: %w", err)
	}
	dp.lists.dropUnused()
	nc, err := dp.adoptConns()
	if err != nil {
		return err
	}
	dp.adoptDeadline = deadline
	dp.log.Info("datapath: adopted the pinned datapath", "dir", dp.versionDir(), "flows", n, "connections", nc, "ports", len(dp.adoptedSlots),
		"grace", dp.opts.AdoptGrace)
	return nil
}

// AdoptedPorts implements datapath.PortAdopter: the ports the pinned maps
// held at New (none without adoption, or after the grace period). Their
// adopted flows match by these indexes.
func (dp *Datapath) AdoptedPorts() []datapath.AdoptedPort {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	return slices.Clone(dp.adoptedPorts)
}

// adoptedState marks an adopted stateful flow (the state keys went with
// the agent): TCP FIN and RST still go to the agent.
var adoptedState = []flowstate.Key{{}}

// finishAdoption ends the grace period: adopted flows not installed
// again are removed, and ports not attached again are detached.
func (dp *Datapath) finishAdoption() {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	if dp.adoptDeadline.IsZero() || time.Now().Before(dp.adoptDeadline) {
		return
	}
	dp.adoptDeadline = time.Time{}
	rs := dp.table.all(func(r *flowRec) bool { return !r.adopted.IsZero() })
	if err := dp.removeFlows(rs); err != nil {
		dp.log.Warn("datapath: remove the adopted flows", "err", err)
	}
	n := len(rs)
	dp.table.expired.Add(uint64(n))
	ps := dp.ports.Load()
	for ifindex, slot := range dp.adoptedSlots {
		if p := ps.bySlot[slot]; p != nil && p.ifindex == int(ifindex) {
			continue
		}
		stale := &port{slot: slot, ifindex: int(ifindex)}
		if err := dp.unpublishPort(stale); err != nil {
			dp.log.Warn("datapath: remove a port not attached again", "ifindex", ifindex, "err", err)
		}
		if err := dp.inNetns(func() error { return dp.detachPinned(int(ifindex), "port_in") }); err != nil {
			dp.log.Warn("datapath: detach a port not attached again", "ifindex", ifindex, "err", err)
		}
	}
	dp.adoptedSlots, dp.adoptedPorts = nil, nil
	for _, dir := range dp.stale {
		if err := os.RemoveAll(dir); err != nil {
			dp.log.Warn("datapath: remove the pins of an old layout", "dir", dir, "err", err)
		}
	}
	dp.stale = nil
	dp.log.Info("datapath: adoption finished", "adopted flows removed", n)
}

func flowClass(c uint8) datapath.FlowClass {
	if datapath.FlowClass(c) >= datapath.NumFlowClasses {
		return datapath.ClassNormal
	}
	return datapath.FlowClass(c)
}

// linkPin is where the link of program name on ifindex is pinned.
func (dp *Datapath) linkPin(ifindex int, name string) string {
	return filepath.Join(dp.versionDir(), "links", fmt.Sprintf("%s-%d", name, ifindex))
}

// adoptLink takes over a pinned TCX link on ifindex, replacing its
// program with prog; nil if there is none (or it no longer holds the
// interface). Runs in the datapath's namespace.
func (dp *Datapath) adoptLink(ifindex int, prog *ebpf.Program, name string) *attachment {
	paths := []string{dp.linkPin(ifindex, name)}
	for _, old := range dp.stale {
		paths = append(paths, filepath.Join(old, "links", fmt.Sprintf("%s-%d", name, ifindex)))
	}
	for i, path := range paths {
		l, err := link.LoadPinnedLink(path, nil)
		if err != nil {
			continue
		}
		info, err := l.Info()
		if err != nil || info.TCX() == nil || int(info.TCX().Ifindex) != ifindex || l.Update(prog) != nil {
			_ = l.Unpin()
			_ = l.Close()
			continue
		}
		if i > 0 { // an old layout's: pin it where this layout looks
			_ = l.Unpin()
			if err := l.Pin(paths[0]); err != nil {
				dp.log.Warn("datapath: pin an adopted link", "err", err)
			}
		}
		return &attachment{ifindex: ifindex, mode: AttachTCX, link: l, prog: name, pin: paths[0]}
	}
	return nil
}

// detachPinned detaches and unpins the link of name on ifindex, if any.
func (dp *Datapath) detachPinned(ifindex int, name string) error {
	l, err := link.LoadPinnedLink(dp.linkPin(ifindex, name), nil)
	if err != nil {
		return nil
	}
	return errors.Join(l.Unpin(), l.Close())
}

// Destroy stops the datapath like Close and removes everything it leaves
// behind for a successor: programs detached, pins and devices removed.
// For an agent taken out of service, and tests.
func (dp *Datapath) Destroy() error {
	dp.mu.Lock()
	dp.destroy = true
	dp.mu.Unlock()
	err := dp.Close()
	if dp.opts.PinDir != "" {
		err = errors.Join(err, os.RemoveAll(dp.opts.PinDir))
	}
	return err
}
