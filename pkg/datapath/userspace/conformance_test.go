//go:build linux

package userspace_test

import (
	"testing"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/datapath/dptest"
	"github.com/nagare/nagare/pkg/datapath/userspace"
)

// TestConformance runs the datapath conformance suite (privileged: it
// creates network namespaces; skipped when not root).
func TestConformance(t *testing.T) {
	dptest.Run(t, func(t *testing.T, cfg datapath.Config) datapath.Datapath {
		dp, err := userspace.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return dp
	})
}
