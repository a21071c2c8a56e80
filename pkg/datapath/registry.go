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
	m map[string]Factory
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
	why := ""
	if name == "ebpf" {
		why = " (the eBPF datapath is not built yet)"
	}
	return nil, fmt.Errorf("datapath %q is not available%s; this binary has: %s", name, why, strings.Join(Names(), ", "))
}

// New builds a datapath of the implementation registered under name.
func New(name string, cfg Config) (Datapath, error) {
	f, err := Lookup(name)
	if err != nil {
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
