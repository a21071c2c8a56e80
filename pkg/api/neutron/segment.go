package neutron

import (
	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/neutron"
)

// Segments (segment).

var segmentAttrs = std.with(attrs{
	"name":             {post: true, put: true},
	"network_id":       {post: true, required: true},
	"network_type":     {post: true, required: true},
	"physical_network": {post: true},
	"segmentation_id":  {post: true},
})

func init() { delete(segmentAttrs, "tags") }

func decodeSegmentReq(b Body, _ *identity.Context, post bool) (neutron.SegmentRequest, error) {
	var r neutron.SegmentRequest
	var err error
	if r.StdRequest, err = decodeStd(b); err != nil {
		return r, err
	}
	if !post {
		return r, nil
	}
	if r.NetworkID, _, err = b.uuid("network_id"); err != nil {
		return r, err
	}
	if r.NetworkType, err = b.optStr("network_type", 0); err != nil {
		return r, err
	}
	if b.has("physical_network") && !b.isNull("physical_network") {
		if r.PhysicalNetwork, err = b.optStr("physical_network", 64); err != nil {
			return r, err
		}
	}
	if id, null, ok, err := b.integer("segmentation_id"); err != nil {
		return r, err
	} else if ok && !null {
		r.SegmentationID = &id
	}
	return r, nil
}

func viewSegment(_ *viewer, x *neutron.NetSegment) map[string]any {
	m := stdView(&x.Std, true)
	delete(m, "tags")
	m["network_id"], m["network_type"] = x.NetworkID, x.NetworkType
	m["physical_network"], m["segmentation_id"] = strOrNil(x.PhysicalNetwork), nil
	if x.NetworkType != "flat" {
		m["segmentation_id"] = x.SegmentationID
	}
	return m
}
