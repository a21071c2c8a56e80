package datapath

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Factory builds a datapath of one implementation from its configuration.
type Factory func(cfg Config) (Datapath, error)

// The registry of implementations, filled by their packages' init
// functions (as database/sql's drivers are): a binary offers the
// datapaths it links.
var registry struct {
	sync.RWMutex
	m      map[string]Factory
	probes map[string]func() error
}

// Register makes an implementation available to New under name. It
// panics if the name is taken: two packages claiming one name is a
// build mistake.
func Register(name string, f Factory) {
	registry.Lock()
	defer registry.Unlock()
	if registry.m == nil {
		registry.m = map[string]Factory{}
	}
	if _, dup := registry.m[name]; dup || f == nil {
		panic("datapath: Register " + name + " twice or with a nil factory")
	}
	registry.m[name] = f
}

// RegisterProbe gives a registered implementation a test of whether it
// can run here (kernel features, privileges); Default and New consult it.
func RegisterProbe(name string, probe func() error) {
	registry.Lock()
	defer registry.Unlock()
	if registry.probes == nil {
		registry.probes = map[string]func() error{}
	}
	registry.probes[name] = probe
}

// Supported reports whether the implementation registered under name can
// run here, and if not why.
func Supported(name string) error {
	if _, err := Lookup(name); err != nil {
		return err
	}
	registry.RLock()
	probe := registry.probes[name]
	registry.RUnlock()
	if probe == nil {
		return nil
	}
	if err := probe(); err != nil {
		return fmt.Errorf("datapath %q cannot run here: %w", name, err)
	}
	return nil
}

// Preference is the order Default tries implementations in: the kernel
// datapath where the kernel supports it (as OVS and Cilium keep the fast
// path in the kernel), else the userspace one.
var Preference = []string{"ebpf", "userspace"}

// Default returns the first implementation of Preference that is
// registered and can run here, and for each one passed over, why.
func Default() (name string, passed []error) {
	for _, n := range Preference {
		if err := Supported(n); err != nil {
			passed = append(passed, err)
			continue
		}
		return n, passed
	}
	return "", passed
}

// Names lists the registered implementations, sorted.
func Names() []string {
	registry.RLock()
	defer registry.RUnlock()
	names := make([]string, 0, len(registry.m))
	for n := range registry.m {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Lookup returns the factory registered under name, or an error that says
// what this binary offers instead.
func Lookup(name string) (Factory, error) {
	registry.RLock()
	f, ok := registry.m[name]
	registry.RUnlock()
	if ok {
		return f, nil
	}
	return nil, fmt.Errorf("datapath %q is not available; this binary has: %s", name, strings.Join(Names(), ", "))
}

// New builds a datapath of the implementation registered under name.
func New(name string, cfg Config) (Datapath, error) {
	f, err := Lookup(name)
	if err != nil {
		return nil, err
	}
	if err := Supported(name); err != nil {
		return nil, err
	}
	dp, err := f(cfg)
	if err != nil {
		return nil, fmt.Errorf("start the %s datapath: %w", name, err)
	}
	return dp, nil
}

// Link is a network interface where a datapath may bind a port: a VM's
// tap or veth, an uplink.
type Link struct {
	Name string
	// Index identifies this incarnation of the interface (the kernel's
	// ifindex): an interface deleted and created again under the same
	// name, as a VM's tap is when the VM reboots, has a new one.
	Index int
	// Up is the interface's administrative state.
	Up bool
	// Running says frames can pass: the interface is up and has a
	// carrier (the kernel's IFF_RUNNING; a veth whose peer is down is up
	// but not running). Uplinks fail over on it.
	Running bool
}

// LinkEvent says that a link appeared or changed, or (Deleted) went away.
type LinkEvent struct {
	Link
	Deleted bool
}

// LinkSource is implemented by a datapath whose interfaces are its own
// (the in-memory datapath's), to tell the agent which exist. A datapath
// without it binds the kernel's interfaces of Config.Netns, which the
// agent watches over netlink.
type LinkSource interface {
	// Links lists the interfaces now.
	Links(ctx context.Context) ([]Link, error)
	// WatchLinks calls fn with every existing interface, then with every
	// change, on one goroutine, until ctx is done; it returns ctx's
	// error, or the error that ended the watch.
	WatchLinks(ctx context.Context, fn func(LinkEvent)) error
}
