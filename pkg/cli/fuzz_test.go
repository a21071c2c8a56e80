package cli

import (
	"strings"
	"testing"
)

// Any line parses to a command or an error, never a panic, and so does
// completion's walk over it.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"show ip nat translations router router0",
		"router router0 list nat",
		"chain chain1 add rule src 172.16.20.0/24 out-ports router0:port0 type snat action accept target 10.81.14.201",
		"chain chain2 add rule ct-state !established type reject",
		"chain chain0 add rule ethertype 2054 arp-sha 02:00:00:00:00:01 src 10.0.0.5 type accept",
		"chain chain0 add rule ethertype 34525 proto 58 src-port 136 nd-target !fe80::1 type drop",
		"pool lb0:pool0 add member address 172.16.20.100 port 80 weight 2",
		"load-balancer lb0 add vip address 10.81.14.202 port 80 pool lb0:pool0 persistence source_ip",
		"trace port bridge0:port1 src 10.0.1.11 dst 10.0.2.12 proto tcp dst-port 22",
		"describe load-balancer pool member",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		words := strings.Fields(line)
		c, err := Parse(words)
		if err == nil && c != nil && c.Verb == 0 {
			t.Fatalf("%q: a command without a verb", line)
		}
		p := &parser{words: words, offer: &offers{}}
		_, _ = p.command()
	})
}
