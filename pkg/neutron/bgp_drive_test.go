package neutron

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/nagare/nagare/pkg/model"
)

// testIDs names test objects with UUIDs (the model's references are)
// and back.
var testIDs = map[string]string{}

func tid(name string) string {
	id := DerivedID("test", name)
	testIDs[id] = name
	return id
}

func tname(id string) string {
	if n, ok := testIDs[id]; ok {
		return n
	}
	return id
}

// bgpSummary renders a speaker's translation one object a line, ids by
// their test names.
func bgpSummary(objs []model.Object) []string {
	out := eachLine(objs, func(o model.Object) string {
		switch x := o.(type) {
		case *model.BGPNetwork:
			return fmt.Sprintf("network %s %s", tname(x.RouterID), x.Network)
		case *model.BGPPeer:
			line := fmt.Sprintf("peer %s %s asn %d port %s", tname(x.RouterID), x.Address, x.ASN, tname(x.PortID))
			if x.Password != "" {
				line += " password " + x.Password
			}
			return line
		case *model.Route:
			return fmt.Sprintf("route %s %s via %s port %s", tname(x.RouterID), x.Dst, x.Gateway, tname(x.PortID))
		default:
			return fmt.Sprintf("%T", o)
		}
	})
	slices.Sort(out)
	return out
}

func TestTranslateBGPSpeaker(t *testing.T) {
	port := func(id, addr, network string) *model.Port {
		return &model.Port{Meta: model.Meta{ID: tid(id)}, Address: netip.MustParseAddr(addr), Network: netip.MustParsePrefix(network)}
	}
	prov := func(router, network string, uplinks ...*model.Port) ProviderRouter {
		return ProviderRouter{Router: &model.Router{Meta: model.Meta{ID: tid(router)}}, NetworkID: network,
			ExtPort: port("ext-"+router, "172.24.4.1", "172.24.4.0/24"), Uplinks: uplinks}
	}
	route := func(dst, hop, network string) AdvertisedRoute {
		return AdvertisedRoute{netip.MustParsePrefix(dst), netip.MustParseAddr(hop), network}
	}
	peer := func(id, ip string, as int64, auth, password string) *BGPPeer {
		return &BGPPeer{Std: Std{Meta: model.Meta{ID: id}}, PeerIP: netip.MustParseAddr(ip), RemoteAS: as, AuthType: auth, Password: password}
	}
	sp := &BGPSpeaker{Std: Std{Meta: model.Meta{ID: "sp"}}, LocalAS: 64512, IPVersion: 4}
	up1, up2 := port("up1", "198.51.100.2", "198.51.100.0/30"), port("up2", "198.51.101.2", "198.51.101.0/30")
	for _, tc := range []struct {
		name string
		in   SpeakerInput
		want []string
		err  string // in the error; "" none
	}{
		{"no provider router: nothing to drive",
			SpeakerInput{Peers: []*BGPPeer{peer("p", "203.0.113.9", 65001, "md5", "x")}, Routes: []AdvertisedRoute{route("10.0.0.0/24", "172.24.4.20", "ext")}},
			nil, ""},
		{"routes of its network, a peer on the uplink holding its address",
			SpeakerInput{Providers: []ProviderRouter{prov("r", "ext", up1, up2)},
				Peers: []*BGPPeer{peer("p", "198.51.101.1", 65002, "none", "")},
				Routes: []AdvertisedRoute{route("10.0.0.0/24", "172.24.4.20", "ext"), route("172.24.4.30/32", "172.24.4.20", "ext"),
					route("10.9.0.0/24", "172.25.0.5", "other")}},
			[]string{"network r 10.0.0.0/24", "network r 172.24.4.30/32", "peer r 198.51.101.1 asn 65002 port up2",
				"route r 10.0.0.0/24 via 172.24.4.20 port ext-r", "route r 172.24.4.30/32 via 172.24.4.20 port ext-r"}, ""},
		{"one network per prefix, a route per next hop",
			SpeakerInput{Providers: []ProviderRouter{prov("r", "ext", up1)},
				Routes: []AdvertisedRoute{route("10.0.0.0/24", "172.24.4.20", "ext"), route("10.0.0.0/24", "172.24.4.21", "ext")}},
			[]string{"network r 10.0.0.0/24", "route r 10.0.0.0/24 via 172.24.4.20 port ext-r", "route r 10.0.0.0/24 via 172.24.4.21 port ext-r"}, ""},
		{"no route through a port that does not reach the next hop",
			SpeakerInput{Providers: []ProviderRouter{prov("r", "ext", up1)}, Routes: []AdvertisedRoute{route("10.0.0.0/24", "172.25.0.20", "ext")}},
			[]string{"network r 10.0.0.0/24"}, ""},
		{"md5: the password signs the session; none: a password stored is not used",
			SpeakerInput{Providers: []ProviderRouter{prov("r", "ext", up1, up2)},
				Peers: []*BGPPeer{peer("p", "198.51.100.1", 65001, "md5", "secret"), peer("q", "198.51.101.1", 65003, "none", "unused")}},
			[]string{"peer r 198.51.100.1 asn 65001 port up1 password secret", "peer r 198.51.101.1 asn 65003 port up2"}, ""},
		{"a password no TCP MD5 key can be is refused, the rest translated",
			SpeakerInput{Providers: []ProviderRouter{prov("r", "ext", up1)},
				Peers: []*BGPPeer{peer("p", "198.51.100.1", 65001, "md5", strings.Repeat("k", 81)), peer("q", "198.51.100.1", 65003, "none", "")}},
			[]string{"peer r 198.51.100.1 asn 65003 port up1"}, "password: 81 characters"},
		{"a peer no uplink reaches",
			SpeakerInput{Providers: []ProviderRouter{prov("r", "ext", up1)}, Peers: []*BGPPeer{peer("p", "192.0.2.1", 65001, "none", "")}},
			nil, "peer_ip 192.0.2.1 is on no uplink port"},
		{"the uplink's own address is not a peer",
			SpeakerInput{Providers: []ProviderRouter{prov("r", "ext", up1)}, Peers: []*BGPPeer{peer("p", "198.51.100.2", 65001, "none", "")}},
			nil, "peer_ip 198.51.100.2"},
		{"a peer of the other IP version is not the speaker's",
			SpeakerInput{Providers: []ProviderRouter{prov("r", "ext", up1)}, Peers: []*BGPPeer{peer("p", "2001:db8::1", 65001, "none", "")}},
			nil, ""},
		{"two provider routers, a peer on each that reaches it",
			SpeakerInput{Providers: []ProviderRouter{prov("r", "ext", up1), prov("s", "ext", port("up3", "198.51.100.3", "198.51.100.0/30"))},
				Peers: []*BGPPeer{peer("p", "198.51.100.1", 65001, "", "")}},
			[]string{"peer r 198.51.100.1 asn 65001 port up1", "peer s 198.51.100.1 asn 65001 port up3"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.in
			in.Speaker = sp
			objs, err := TranslateBGPSpeaker(in)
			if got := bgpSummary(objs); !slices.Equal(got, tc.want) {
				t.Errorf("translation:\n got %q\nwant %q", got, tc.want)
			}
			switch {
			case tc.err == "" && err != nil:
				t.Errorf("error %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Errorf("error %v, want one saying %q", err, tc.err)
			}
			// The same input names the same objects: ids derive from it.
			again, _ := TranslateBGPSpeaker(in)
			for i := range objs {
				if objs[i].GetMeta().ID != again[i].GetMeta().ID {
					t.Errorf("object %d: id %s then %s", i, objs[i].GetMeta().ID, again[i].GetMeta().ID)
				}
			}
		})
	}
}
