// Command nagare-bench runs Nagare's benchmarks and prints one table.
//
//	nagare-bench api      control plane: port creates/s and latency, list of 10k ports
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/nagare/nagare/pkg/bench"
)

func main() {
	fs := flag.NewFlagSet("nagare-bench", flag.ExitOnError)
	clients := fs.String("clients", "1,8,64", "API concurrency levels")
	creates := fs.Int("creates", 2000, "port creates per concurrency level")
	listPorts := fs.Int("list-ports", 10000, "ports present when timing a full list")
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: nagare-bench api [flags]")
		os.Exit(2)
	}
	what := os.Args[1]
	_ = fs.Parse(os.Args[2:])
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	logf := func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }
	switch what {
	case "api":
		var levels []int
		for _, s := range strings.Split(*clients, ",") {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 {
				fmt.Fprintf(os.Stderr, "--clients: %q is not a positive number\n", s)
				os.Exit(2)
			}
			levels = append(levels, n)
		}
		res, err := bench.RunAPI(ctx, bench.APIConfig{Clients: levels, Creates: *creates, ListPorts: *listPorts, Repeats: 5}, logf)
		if err != nil {
			fmt.Fprintln(os.Stderr, "nagare-bench:", err)
			os.Exit(1)
		}
		tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "case\tclients\tcreates/s\tp50\tp99")
		for _, r := range res {
			fmt.Fprintf(tw, "API port create (embedded etcd, fsync)\t%d\t%.0f\t%s\t%s\n", r.Clients, r.PerSecond, r.P50.Round(10e3), r.P99.Round(10e3))
		}
		last := res[len(res)-1]
		fmt.Fprintf(tw, "API list all ports\t1\t%d ports\t%s\t\n", last.ListPorts, last.ListLatency.Round(10e3))
		tw.Flush()
	default:
		fmt.Fprintf(os.Stderr, "nagare-bench: unknown benchmark %q (have: api)\n", what)
		os.Exit(2)
	}
}
