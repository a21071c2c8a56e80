package native

import (
	"errors"
	"net/http"

	"github.com/nagare/nagare/pkg/model"
)

// link sets a port's peer: PUT /ports/{id}/link {"peer_id": "…"}. The store
// keeps the link symmetric and refuses taken or bound peers.
func (a *API) link(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(r)
	if err != nil {
		writeError(w, err)
		return
	}
	var req model.Port
	if err := model.Decode(model.PortKind, body, &req, false); err != nil {
		writeError(w, err)
		return
	}
	if req.PeerID == "" {
		writeError(w, badField("peer_id", "is required"))
		return
	}
	o, err := a.store.Modify(r.Context(), model.PortKind, pathID(r, "id"), 0, func(o model.Object) error {
		o.(*model.Port).PeerID = req.PeerID
		return nil
	})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.writeObject(w, r, http.StatusOK, o)
}

func (a *API) unlink(w http.ResponseWriter, r *http.Request) {
	_, err := a.store.Modify(r.Context(), model.PortKind, pathID(r, "id"), 0, func(o model.Object) error {
		o.(*model.Port).PeerID = ""
		return nil
	})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// Binding is a port bound to an interface of a host. It is stored on the
// port (host_id + interface_name), as MidoNet 5 did, so a port has at most one.
type Binding struct {
	HostID        string `json:"host_id"`
	InterfaceName string `json:"interface_name"`
	PortID        string `json:"port_id"`
}

func (a *API) listBindings(w http.ResponseWriter, r *http.Request) {
	hostID := pathID(r, "id")
	if _, err := a.store.Get(r.Context(), model.HostKind, hostID); err != nil {
		a.fail(w, r, err)
		return
	}
	ports, _, err := a.store.List(r.Context(), model.PortKind, "host_id", hostID)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := []Binding{}
	for _, o := range ports {
		p := o.(*model.Port)
		out = append(out, Binding{p.HostID, p.InterfaceName, p.ID})
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) bind(w http.ResponseWriter, r *http.Request) {
	hostID := pathID(r, "id")
	body, err := readBody(r)
	if err != nil {
		writeError(w, err)
		return
	}
	var req struct {
		InterfaceName string `json:"interface_name"`
		PortID        string `json:"port_id"`
		HostID        string `json:"host_id"`
	}
	if err := decodeStrict(body, &req); err != nil {
		writeError(w, err)
		return
	}
	switch {
	case req.HostID != "" && req.HostID != hostID:
		writeError(w, badField("host_id", "is %s but the URL names host %s", req.HostID, hostID))
		return
	case req.InterfaceName == "":
		writeError(w, badField("interface_name", "is required"))
		return
	case !model.IsUUID(req.PortID):
		writeError(w, badField("port_id", "%q is not a UUID of a port", req.PortID))
		return
	}
	if _, err := a.store.Get(r.Context(), model.HostKind, hostID); err != nil {
		a.fail(w, r, err)
		return
	}
	_, err = a.store.Modify(r.Context(), model.PortKind, req.PortID, 0, func(o model.Object) error {
		p := o.(*model.Port)
		if p.Bound() && (p.HostID != hostID || p.InterfaceName != req.InterfaceName) {
			return model.Conflictf("port %s is already bound to interface %s on host %s; unbind it first", p.ID, p.InterfaceName, p.HostID)
		}
		p.HostID, p.InterfaceName = hostID, req.InterfaceName
		return nil
	})
	if errors.Is(err, model.ErrNotFound) {
		err = badField("port_id", "port %s does not exist", req.PortID)
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, Binding{hostID, req.InterfaceName, req.PortID})
}

func (a *API) unbind(w http.ResponseWriter, r *http.Request) {
	hostID, iface := pathID(r, "id"), r.PathValue("iface")
	ports, _, err := a.store.List(r.Context(), model.PortKind, "host_id", hostID)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	for _, o := range ports {
		p := o.(*model.Port)
		if p.InterfaceName != iface {
			continue
		}
		_, err := a.store.Modify(r.Context(), model.PortKind, p.ID, 0, func(o model.Object) error {
			p := o.(*model.Port)
			if p.HostID != hostID || p.InterfaceName != iface {
				return model.Conflictf("the binding of %s on host %s changed meanwhile", iface, hostID)
			}
			p.HostID, p.InterfaceName = "", ""
			return nil
		})
		if err != nil {
			a.fail(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
		return
	}
	writeError(w, &httpError{http.StatusNotFound, "NotFound", "", "host " + hostID + " has no binding for interface " + iface})
}
