package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/nagare/nagare/pkg/bench"
)

// lbBench is `nagare-bench lb`: HTTP requests/s through a VIP, each on a
// new connection, beside direct routing and the kernel (IPVS when present).
func lbBench(ctx context.Context, args []string) error {
	var cfg bench.LBConfig
	fs := flag.NewFlagSet("nagare-bench lb", flag.ExitOnError)
	fs.DurationVar(&cfg.Dur, "dur", 0, "measurement window per case (default 5s)")
	fs.IntVar(&cfg.Clients, "clients", 0, "concurrent connections (default 8)")
	fs.IntVar(&cfg.Reps, "reps", 0, "windows per case, median reported (default 3)")
	fs.StringVar(&cfg.AgentBin, "agent", "", "nagare-agent binary (default: next to nagare-bench)")
	_ = fs.Parse(args)
	if cfg.AgentBin == "" {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		cfg.AgentBin = filepath.Join(filepath.Dir(self), "nagare-agent")
	}
	res, err := bench.RunLB(ctx, cfg, logf)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "case\trequests/s (new connection each)\truns\tfailed")
	for _, r := range res {
		if r.Skipped != "" {
			fmt.Fprintf(tw, "%s\t-\t\t%s\n", r.Case, r.Skipped)
			continue
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%d\n", r.Case, r.Rate, r.Runs, r.Errors)
	}
	return tw.Flush()
}
