package agent

import (
	"fmt"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/datapath/ebpf"
	"github.com/nagare/nagare/pkg/datapath/userspace"
)

// newDatapath creates the datapath cfg.Datapath names. The kernel one pins
// its state per host and namespace, so that a restarted agent adopts the
// flows its predecessor left forwarding.
func newDatapath(cfg *Config) (datapath.Datapath, error) {
	dcfg := datapath.Config{Logger: cfg.Log, Netns: cfg.Netns}
	switch cfg.Datapath {
	case "ebpf":
		if err := ebpf.Supported(); err != nil {
			return nil, fmt.Errorf("--datapath ebpf: %w", err)
		}
		pin, err := ebpf.DefaultPinDir(cfg.HostName, cfg.Netns)
		if err != nil {
			return nil, fmt.Errorf("start the kernel datapath: %w", err)
		}
		dp, err := ebpf.New(dcfg, ebpf.Options{PinDir: pin})
		if err != nil {
			return nil, fmt.Errorf("start the kernel datapath: %w", err)
		}
		return dp, nil
	default:
		dp, err := userspace.New(dcfg)
		if err != nil {
			return nil, fmt.Errorf("start the userspace datapath: %w", err)
		}
		return dp, nil
	}
}
