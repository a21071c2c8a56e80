package model

import "reflect"

// CopiesDirectly reports whether Clone copies objects of k without the
// JSON round trip.
func CopiesDirectly(k *Kind) bool { return copierOf(reflect.TypeOf(k.New()).Elem()) != nil }
