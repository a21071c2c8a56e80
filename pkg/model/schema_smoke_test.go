package model

import "testing"

func TestRegistrySmoke(t *testing.T) {
	for _, k := range Kinds() {
		if KindByName(k.Name) != k || KindByName(k.Plural) != k {
			t.Errorf("%s not registered by name and plural", k.Name)
		}
		if k.Field("id") == nil || k.Field("revision") == nil {
			t.Errorf("%s lacks meta fields", k.Name)
		}
		for _, f := range k.Refs() {
			if KindByName(f.Ref) == nil {
				t.Errorf("%s.%s refs unknown kind %s", k.Name, f.JSON, f.Ref)
			}
		}
	}
}
