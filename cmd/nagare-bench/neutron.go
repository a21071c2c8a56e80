package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/nagare/nagare/pkg/bench"
)

// neutronBench is `nagare-bench neutron`: Neutron port creates by
// concurrent clients through the whole stack, and the list of every port.
func neutronBench(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("nagare-bench neutron", flag.ExitOnError)
	clients := fs.Int("clients", 8, "concurrent clients (each logs in with a password and keeps its token)")
	creates := fs.Int("creates", 2000, "port creates timed")
	listPorts := fs.Int("list-ports", 10000, "ports present when timing the list")
	profile := fs.String("cpuprofile", "", "write a CPU profile of the timed creates to FILE and of the timed lists to FILE.list")
	_ = fs.Parse(args)
	res, err := bench.RunNeutron(ctx, bench.NeutronConfig{Clients: *clients, Creates: *creates, ListPorts: *listPorts, Repeats: 5,
		CPUProfile: *profile}, logf)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "case\tclients\tcreates/s\tp50\tp99\tCPU each")
	fmt.Fprintf(tw, "Neutron port create (auth + translation + etcd txn, fsync)\t%d\t%.0f\t%s\t%s\t%s\n", res.Clients, res.PerSecond, res.P50.Round(10e3),
		res.P99.Round(10e3), res.CPUPerCreate.Round(10e3))
	fmt.Fprintf(tw, "GET /v2.0/ports (every port)\t1\t%d ports\t%s\t\t%s\n", res.ListPorts, res.ListHTTP.Round(10e3), res.ListCPU.Round(10e3))
	if res.ListCLI > 0 {
		fmt.Fprintf(tw, "openstack port list (whole command)\t1\t%d ports\t%s\t\t\n", res.ListPorts, res.ListCLI.Round(10e6))
	}
	return tw.Flush()
}
