package cli

import (
	"context"
	"slices"
	"strings"
	"testing"
)

func TestComplete(t *testing.T) {
	e, _, _ := newTestEngine(t)
	for _, l := range []string{"create router name r", "router router0 add port", "router router0 add port", "create chain"} {
		if err := e.Run(context.Background(), l); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		head    string
		partial string
		want    string // space-separated candidates; "+x" means "includes x"
	}{
		{"", "", "+list +create +router +tunnel-zone +health-monitor"},
		{"li", "li", "list"},
		{"list b", "b", "bridge"},
		{"list tunnel", "tunnel", "tunnel-zone"},
		{"router ", "", "router0 +list +name"},
		{"router r", "r", "router0"},
		{"router router0 ", "", "+list +add +set +delete +port +route +name"},
		{"router router0 port ", "", "port0 port1 +list +add"},
		{"router router0 add ", "", "bgp-network bgp-peer port route"},
		{"router router0 add route ty", "ty", "type"},
		{"router router0 add route type ", "", "blackhole normal reject"},
		{"router router0 add route type normal port ", "", "port router0:port0 router0:port1"},
		{"router router0 set infilter ", "", "chain chain0"},
		{"set router router0 ", "", "+name +state +infilter"},
		{"create bridge name x st", "st", "state"},
		{"router router0 set state ", "", "down up"},
		{"tunnel-zone tzone0 add member host ", "", "+host"},
		{"host ", "", "host0 +list"},
		{"show ", "", "+ip +router"},
		{"show ip nat ", "", "translations"},
		{"show ip nat translations ", "", "router"},
		{"router router0 list ", "", "+nat +port"},
	} {
		partial, got := e.Complete(context.Background(), tc.head)
		if partial != tc.partial {
			t.Errorf("%q: partial %q, want %q", tc.head, partial, tc.partial)
		}
		for _, w := range strings.Fields(tc.want) {
			if x, ok := strings.CutPrefix(w, "+"); ok {
				if !slices.Contains(got, x) {
					t.Errorf("%q: %v lacks %q", tc.head, got, x)
				}
			}
		}
		if !strings.Contains(tc.want, "+") && strings.Join(got, " ") != tc.want {
			t.Errorf("%q: got %v, want %s", tc.head, got, tc.want)
		}
	}
}

// The readline adapter returns suffixes of the candidates after the partial word.
func TestCompleterSuffixes(t *testing.T) {
	e, _, _ := newTestEngine(t)
	c := &completer{e: e, ctx: context.Background()}
	got, n := c.Do([]rune("list tunn"), len("list tunn"))
	if n != 4 || len(got) != 1 || string(got[0]) != "el-zone " {
		t.Fatalf("got %q %d", got, n)
	}
}
