package neutron

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

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
	for _, f := range []struct {
		name, single string
		dst          *[2]int
		port         int
	}{{"internal_port_range", "internal_port", &r.InternalRange, r.InternalPort}, {"external_port_range", "external_port", &r.ExternalRange, r.ExternalPort}} {
		v, err := portRange(b, f.name)
		if err != nil {
			return r, err
		}
		if v[0] != 0 && f.port != 0 {
			return r, neutron.BadResourceRequest("port_forwarding", "%s and %s cannot both be given", f.single, f.name)
		}
		*f.dst = v
	}
	if post && ((r.InternalPort == 0 && r.InternalRange[0] == 0) || (r.ExternalPort == 0 && r.ExternalRange[0] == 0)) {
		return r, neutron.BadResourceRequest("port_forwarding", "internal_port or internal_port_range, and external_port or external_port_range are required")
	}
	return r, nil
}

// portRange reads a port range ("1300:1399" or "1300"; neutron-lib's
// validate_port_range_or_none with ports 1 to 65535); null is none.
func portRange(b Body, name string) ([2]int, error) {
	var out [2]int
	if !b.has(name) || b.isNull(name) {
		return out, nil
	}
	var x any
	if _, err := b.raw(name, &x, "not a port range"); err != nil {
		return out, err
	}
	text := fmt.Sprint(x)
	if f, ok := x.(float64); ok {
		text = strconv.Itoa(int(f))
	}
	parts := strings.Split(text, ":")
	if len(parts) > 2 {
		return out, invalid(name, "Port range must be two integers separated by a colon")
	}
	for i, p := range parts {
		if p == "" {
			return out, invalid(name, "Port range must be two integers separated by a colon")
		}
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return out, invalid(name, "Invalid port: %s", p)
		}
		out[i] = n
	}
	if len(parts) == 1 {
		out[1] = out[0]
	}
	if out[1] < out[0] {
		return out, invalid(name, "The first port %d in port range %s is bigger than the second port %d", out[0], text, out[1])
	}
	return out, nil
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

// viewForwarding shows a forwarding as Neutron's PortForwarding object
// does: the ranges always, a single port also as internal_port or
// external_port (null for a range).
func viewForwarding(x *neutron.PortForwarding) map[string]any {
	il, ih := x.InternalRange()
	el, eh := x.ExternalRange()
	one := func(lo, hi int) any {
		if lo == hi {
			return lo
		}
		return nil
	}
	return map[string]any{"id": x.ID, "internal_port_id": x.InternalPortID, "internal_ip_address": x.InternalIPAddress.String(),
		"internal_port": one(il, ih), "external_port": one(el, eh), "protocol": x.Protocol, "description": x.Description,
		"internal_port_range": fmt.Sprintf("%d:%d", il, ih), "external_port_range": fmt.Sprintf("%d:%d", el, eh)}
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
