//go:build linux

package ebpf_test

import (
	"testing"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/datapath/dptest"
	"github.com/nagare/nagare/pkg/datapath/ebpf"
)

// TestConformance runs the datapath conformance suite against the kernel
// datapath (privileged: it creates network namespaces and loads BPF
// programs; skipped when not root), attached with TCX and with clsact.
func TestConformance(t *testing.T) {
	for _, mode := range []ebpf.AttachMode{ebpf.AttachTCX, ebpf.AttachClsact} {
		t.Run(mode.String(), func(t *testing.T) {
			dptest.Run(t, dptest.Namespaces("ebpf-"+mode.String(), func(t *testing.T, cfg datapath.Config) datapath.Datapath {
				dp, err := ebpf.New(cfg, ebpf.Options{Attach: mode})
				if err != nil {
					t.Fatal(err)
				}
				return dp
			}))
		})
	}
}
