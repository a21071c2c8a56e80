package neutron

import (
	"net/http"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/neutron"
)

// Port forwardings live under their floating IP.

var forwardingAttrs = attrs{
	"id":                  {},
	"internal_port_id":    {post: true, put: true, required: true},
	"internal_ip_address": {post: true, put: true, required: true},
	"internal_port":       {post: true, put: true},
	"external_port":       {post: true, put: true},
	"protocol":            {post: true, put: true, required: true},
	"description":         {post: true, put: true},
	"internal_port_range": {post: true, put: true},
	"external_port_range": {post: true, put: true},
}

func (a *API) registerForwardings(mux *http.ServeMux) {
	pf := Prefix + "/floatingips/{fip}/port_forwardings"
	mux.HandleFunc("GET "+pf, a.listForwardings)
	mux.HandleFunc("POST "+pf, a.createForwarding)
	mux.HandleFunc("GET "+pf+"/{id}", a.showForwarding)
	mux.HandleFunc("PUT "+pf+"/{id}", a.updateForwarding)
	mux.HandleFunc("DELETE "+pf+"/{id}", a.deleteForwarding)
}

func decodeForwarding(b Body, post bool) (neutron.PortForwardingRequest, error) {
	var r neutron.PortForwardingRequest
	var err error
	if r.Description, err = b.optStr("description", 255); err != nil {
		return r, err
	}
	if r.InternalPortID, _, err = b.uuid("internal_port_id"); err != nil {
		return r, err
	}
	if v, ok, err := b.ip("internal_ip_address"); err != nil {
		return r, err
	} else if ok {
		if !v.Is4() {
			return r, invalid("internal_ip_address", "'%s' is not a valid IPv4 address", v)
		}
		r.InternalIPAddress = v
	}
	for _, f := range []struct {
		name string
		dst  *int
	}{{"internal_port", &r.InternalPort}, {"external_port", &r.ExternalPort}} {
		n, null, ok, err := b.integer(f.name)
		if err != nil {
			return r, err
		}
		if ok && !null {
			if n < 1 || n > 65535 {
				return r, invalid(f.name, "'%d' is not in range 1 through 65535", n)
			}
			*f.dst = n
		}
	}
	if v, ok, err := b.str("protocol", 0); err != nil {
		return r, err
	} else if ok {
		if v != "tcp" && v != "udp" {
			return r, invalid("protocol", "'%s' is not in ['tcp', 'udp']", v)
		}
		r.Protocol = v
	}
	for _, rng := range []string{"internal_port_range", "external_port_range"} {
		if b.has(rng) && !b.isNull(rng) {
			return r, neutron.BadResourceRequest("port_forwarding", "%s is not implemented: give internal_port and external_port", rng)
		}
	}
	if post && (r.InternalPort == 0 || r.ExternalPort == 0) {
		return r, neutron.BadResourceRequest("port_forwarding", "internal_port and external_port are required")
	}
	return r, nil
}

// readForwarding reads and decodes a port_forwarding body.
func readForwarding(r *http.Request, c *identity.Context, post bool) (neutron.PortForwardingRequest, error) {
	b, err := readBody(r, "port_forwarding")
	if err == nil {
		err = forwardingAttrs.check(b, post, c, "port_forwarding")
	}
	if err != nil {
		return neutron.PortForwardingRequest{}, err
	}
	return decodeForwarding(b, post)
}

func viewForwarding(x *neutron.PortForwarding) map[string]any {
	return map[string]any{"id": x.ID, "internal_port_id": x.InternalPortID, "internal_ip_address": x.InternalIPAddress.String(),
		"internal_port": x.InternalPort, "external_port": x.ExternalPort, "protocol": x.Protocol, "description": x.Description,
		"internal_port_range": rangeText(x.InternalPort), "external_port_range": rangeText(x.ExternalPort)}
}

func (a *API) listForwardings(w http.ResponseWriter, r *http.Request) {
	c := caller(r)
	lq, err := parseList(r, forwardingAttrs, c)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	pfs, err := a.svc.ListPortForwardings(r.Context(), c, pathID(r, "fip"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var items []map[string]any
	for _, pf := range pfs {
		if m := viewForwarding(pf); lq.matches(m) {
			items = append(items, m)
		}
	}
	a.writeCollection(w, r, "port_forwardings", items, lq, neutron.PortForwardingKind)
}

// replyForwarding answers one port forwarding (with the fields asked for)
// or the error.
func (a *API) replyForwarding(w http.ResponseWriter, r *http.Request, pf *neutron.PortForwarding, err error, status int) {
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, status, map[string]any{"port_forwarding": project(viewForwarding(pf), fields(r))})
}

func (a *API) showForwarding(w http.ResponseWriter, r *http.Request) {
	pf, err := a.svc.GetPortForwarding(r.Context(), caller(r), pathID(r, "fip"), pathID(r, "id"))
	a.replyForwarding(w, r, pf, err, http.StatusOK)
}

func (a *API) createForwarding(w http.ResponseWriter, r *http.Request) {
	var pf *neutron.PortForwarding
	c := caller(r)
	req, err := readForwarding(r, c, true)
	if err == nil {
		pf, err = a.svc.CreatePortForwarding(r.Context(), c, pathID(r, "fip"), req)
	}
	a.replyForwarding(w, r, pf, err, http.StatusCreated)
}

func (a *API) updateForwarding(w http.ResponseWriter, r *http.Request) {
	var pf *neutron.PortForwarding
	c := caller(r)
	req, err := readForwarding(r, c, false)
	if err == nil {
		pf, err = a.svc.UpdatePortForwarding(r.Context(), c, pathID(r, "fip"), pathID(r, "id"), req)
	}
	a.replyForwarding(w, r, pf, err, http.StatusOK)
}

func (a *API) deleteForwarding(w http.ResponseWriter, r *http.Request) {
	a.done(w, r, a.svc.DeletePortForwarding(r.Context(), caller(r), pathID(r, "fip"), pathID(r, "id")), http.StatusNoContent)
}
