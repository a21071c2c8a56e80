package hostclaim

import (
	"fmt"
	"slices"
	"testing"
)

// Every router has one owner among the alive hosts; when a host dies only
// its routers move, and they spread over the others.
func TestRendezvous(t *testing.T) {
	hosts := []string{"h1", "h2", "h3", "h4"}
	owner := map[string]string{}
	count := map[string]int{}
	for i := range 400 {
		r := fmt.Sprintf("router-%d", i)
		o := Rendezvous(r, hosts)
		if !slices.Contains(hosts, o) {
			t.Fatalf("owner %q of %s is not a host", o, r)
		}
		if again := Rendezvous(r, []string{"h4", "h2", "h1", "h3"}); again != o {
			t.Fatalf("owner of %s depends on the hosts' order: %s, %s", r, o, again)
		}
		owner[r] = o
		count[o]++
	}
	for _, h := range hosts {
		if count[h] < 50 { // 100 expected; a skewed hash would starve a host
			t.Errorf("host %s owns %d of 400 routers", h, count[h])
		}
	}
	moved := map[string]int{}
	for r, o := range owner {
		n := Rendezvous(r, []string{"h1", "h2", "h4"}) // h3 died
		if o != "h3" && n != o {
			t.Fatalf("%s moved from live host %s to %s", r, o, n)
		}
		if o == "h3" {
			moved[n]++
		}
	}
	if len(moved) != 3 {
		t.Errorf("h3's routers went to %v, want all three others", moved)
	}
	if got := Rendezvous("r", nil); got != "" {
		t.Errorf("owner with no hosts = %q", got)
	}
}

func TestHealthIfName(t *testing.T) {
	got := HealthIfName("0a1b2c3d-4e5f-6789-abcd-ef0123456789")
	if got != "nhm0a1b2c3d4e5f" || len(got) > 15 {
		t.Errorf("IfName = %q", got)
	}
}
