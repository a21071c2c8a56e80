package model

import (
	"encoding/json"
	"errors"
	"testing"
)

// FuzzDecodeValidate drives the API's decode+validate path with arbitrary
// bodies for every kind: it must never panic, every failure must be a
// FieldError naming a field, and whatever passes must survive a JSON
// round trip unchanged (what is stored is what was validated).
func FuzzDecodeValidate(f *testing.F) {
	seeds := []string{
		`{"name":"internal"}`, `{"bridge_id":"` + id1 + `","vlan":10}`,
		`{"router_id":"` + id1 + `","address":"10.0.0.1","network":"10.0.0.0/24"}`,
		`{"router_id":"` + id1 + `","dst":"10.0.0.0/24","port_id":"` + id2 + `","weight":5}`,
		`{"chain_id":"` + id1 + `","type":"dnat","targets":["10.0.0.5:80"],"proto":6,"dst_port":"80"}`,
		`{"bridge_id":"` + id1 + `","subnet":"10.0.0.0/24","gateway":"10.0.0.1","opt121_routes":["10.1.0.0/16=10.0.0.254"]}`,
		`{"chain_id":"` + id1 + `","type":"accept","ethertype":2054,"arp_sha":"02:00:00:00:00:01","inv_arp_sha":true,"src":"10.0.0.5"}`,
		`{"chain_id":"` + id1 + `","type":"drop","proto":58,"src_port":"136","nd_target":"2001:db8::7/64","inv_nd_target":true}`,
		`{"name":null}`, `{"mac":"02:00:00:00:00:01"}`, `[]`, `"x"`, `{"a":{"b":[1,2,{}]}}`,
	}
	for i := range Kinds() {
		for _, s := range seeds {
			f.Add(uint8(i), []byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, ki uint8, body []byte) {
		k := Kinds()[int(ki)%len(Kinds())]
		o := k.New()
		err := Decode(k, body, o, true)
		if err == nil {
			ApplyDefaults(o)
			err = Validate(o)
		}
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field == "" {
				t.Fatalf("%s: error without a field: %v", k.Name, err)
			}
			return
		}
		b, err := json.Marshal(o)
		if err != nil {
			t.Fatalf("%s: valid object does not marshal: %v", k.Name, err)
		}
		back := k.New()
		// The store reads objects back with plain json.Unmarshal.
		if err := json.Unmarshal(b, back); err != nil {
			t.Fatalf("%s: marshalled object %s does not unmarshal: %v", k.Name, b, err)
		}
		ApplyDefaults(back)
		if err := Validate(back); err != nil {
			t.Fatalf("%s: round-tripped object %s invalid: %v", k.Name, b, err)
		}
		b2, _ := json.Marshal(back)
		if string(b) != string(b2) {
			t.Fatalf("%s: round trip changed\n%s\n%s", k.Name, b, b2)
		}
	})
}
