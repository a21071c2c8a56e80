//go:build linux

package ebpf

import (
	"fmt"

	"github.com/nagare/nagare/pkg/datapath"
)

// Name is the name the kernel datapath is registered under
// (nagare-agent --datapath ebpf; the default where Supported).
const Name = "ebpf"

func init() {
	datapath.Register(Name, func(cfg datapath.Config) (datapath.Datapath, error) {
		var opts Options
		if cfg.Host != "" {
			pin, err := DefaultPinDir(cfg.Host, cfg.Netns)
			if err != nil {
				return nil, fmt.Errorf("datapath: %w", err)
			}
			opts.PinDir = pin
		}
		return New(cfg, opts)
	})
	datapath.RegisterProbe(Name, Supported)
}
