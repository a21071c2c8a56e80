package cli

import (
	"strings"
	"testing"
)

func TestNATLines(t *testing.T) {
	body := `{"router_id":"r","truncated":3,"translations":[
	 {"type":"dnat","protocol":"tcp","inside_global":"10.81.14.201:80","inside_local":"172.16.20.100:80","outside_local":"192.0.2.9:5555","outside_global":"192.0.2.9:5555","state":"established","ttl_seconds":118,"host_id":"h0"},
	 {"type":"snat","protocol":"udp","inside_global":"10.81.14.201:1025","inside_local":"172.16.20.100:53000","outside_local":"192.0.2.53:53","outside_global":"192.0.2.53:53","state":"new","ttl_seconds":-1,"host_id":"h1"}]}`
	lines, _, err := natLines([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"Pro  Inside global      Inside local         Outside local   Outside global  State        TTL  Host",
		"tcp  10.81.14.201:80    172.16.20.100:80     192.0.2.9:5555  192.0.2.9:5555  established  118  h0",
		"udp  10.81.14.201:1025  172.16.20.100:53000  192.0.2.53:53   192.0.2.53:53   new          -    h1",
		"(3 more bindings not published: hosts publish at most their first few thousand)",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	if _, _, err := natLines([]byte(`[1]`)); err == nil {
		t.Fatal("a malformed answer was rendered")
	}
}
