//go:build linux

package userspace

import "github.com/nagare/nagare/pkg/datapath"

// Name is the name the userspace datapath is registered under
// (nagare-agent --datapath userspace, the default).
const Name = "userspace"

func init() {
	datapath.Register(Name, func(cfg datapath.Config) (datapath.Datapath, error) { return New(cfg) })
}
