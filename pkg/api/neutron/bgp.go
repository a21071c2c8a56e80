package neutron

import (
	"net/http"
	"strings"
	"time"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/neutron"
)

// BGP dynamic routing (bgp, bgp_4byte_asn, bgp_dragent_scheduler) and the
// agents (agent).

var speakerAttrs = attrs{
	"id": {}, "tenant_id": {post: true}, "project_id": {post: true},
	"name":                              {post: true, put: true},
	"local_as":                          {post: true, required: true},
	"ip_version":                        {post: true, required: true},
	"advertise_floating_ip_host_routes": {post: true, put: true},
	"advertise_tenant_networks":         {post: true, put: true},
	"peers":                             {post: true},
	"networks":                          {post: true},
}

func asNumber(b Body, name string) (int64, error) {
	n, _, _, err := b.integer(name)
	if err != nil {
		return 0, err
	}
	if n < 1 || int64(n) > neutron.MaxASN {
		return 0, invalid(name, "'%d' is not in range 1 through %d", n, neutron.MaxASN)
	}
	return int64(n), nil
}

func decodeSpeaker(b Body, _ *identity.Context, post bool) (neutron.BGPSpeakerRequest, error) {
	var r neutron.BGPSpeakerRequest
	var err error
	if r.StdRequest, err = decodeStd(b); err != nil {
		return r, err
	}
	if post {
		if r.LocalAS, err = asNumber(b, "local_as"); err != nil {
			return r, err
		}
		if r.IPVersion, err = ipVersion(b); err != nil {
			return r, err
		}
		for _, k := range []string{"peers", "networks"} {
			if xs, _, err := b.stringList(k); err != nil {
				return r, err
			} else if len(xs) > 0 {
				return r, invalid(k, "%s are added with add_%s", k, map[string]string{"peers": "bgp_peer", "networks": "gateway_network"}[k])
			}
		}
	}
	if r.AdvertiseFloatingIPs, err = b.optBool("advertise_floating_ip_host_routes"); err != nil {
		return r, err
	}
	r.AdvertiseTenants, err = b.optBool("advertise_tenant_networks")
	return r, err
}

func viewSpeaker(_ *viewer, x *neutron.BGPSpeaker) map[string]any {
	return map[string]any{"id": x.ID, "tenant_id": x.ProjectID, "project_id": x.ProjectID, "name": x.Name, "local_as": x.LocalAS,
		"ip_version": x.IPVersion, "advertise_floating_ip_host_routes": x.AdvertiseFloatingIPs,
		"advertise_tenant_networks": x.AdvertiseTenantNetwork, "peers": nonNil(x.Peers), "networks": nonNil(x.Networks)}
}

var peerAttrs = attrs{
	"id": {}, "tenant_id": {post: true}, "project_id": {post: true},
	"name":      {post: true, put: true},
	"peer_ip":   {post: true, required: true},
	"remote_as": {post: true, required: true},
	"auth_type": {post: true},
	"password":  {post: true, put: true},
}

func decodePeer(b Body, _ *identity.Context, post bool) (neutron.BGPPeerRequest, error) {
	var r neutron.BGPPeerRequest
	var err error
	if r.StdRequest, err = decodeStd(b); err != nil {
		return r, err
	}
	if post {
		if r.PeerIP, _, err = b.ip("peer_ip"); err != nil {
			return r, err
		}
		if r.RemoteAS, err = asNumber(b, "remote_as"); err != nil {
			return r, err
		}
		r.AuthType = "none"
		if v, ok, err := b.str("auth_type", 0); err != nil {
			return r, err
		} else if ok {
			if v != "none" && v != "md5" {
				return r, invalid("auth_type", "'%s' is not in ['none', 'md5']", v)
			}
			r.AuthType = v
		}
	}
	if b.has("password") && !b.isNull("password") {
		r.Password, err = b.optStr("password", 255)
	}
	return r, err
}

func viewPeer(_ *viewer, x *neutron.BGPPeer) map[string]any {
	return map[string]any{"id": x.ID, "tenant_id": x.ProjectID, "project_id": x.ProjectID, "name": x.Name,
		"peer_ip": x.PeerIP.String(), "remote_as": x.RemoteAS, "auth_type": x.AuthType}
}

// registerBGP adds the speakers' actions and the agents.
func (a *API) registerBGP(mux *http.ServeMux) {
	for _, add := range []bool{true, false} {
		verb := "remove"
		if add {
			verb = "add"
		}
		a.action(mux, "bgp-speakers/{id}/"+verb+"_bgp_peer", func(r *http.Request, c *identity.Context, id string, b Body) (any, error) {
			peer, _, err := b.uuid("bgp_peer_id")
			if err == nil && peer == "" {
				err = neutron.HTTPBadRequest("Failed to parse request. Required attribute 'bgp_peer_id' not specified")
			}
			if err == nil {
				err = a.svc.SpeakerPeer(r.Context(), c, id, peer, add)
			}
			return map[string]any{"bgp_peer_id": peer}, err
		})
		a.action(mux, "bgp-speakers/{id}/"+verb+"_gateway_network", func(r *http.Request, c *identity.Context, id string, b Body) (any, error) {
			net, _, err := b.uuid("network_id")
			if err == nil && net == "" {
				err = neutron.HTTPBadRequest("Failed to parse request. Required attribute 'network_id' not specified")
			}
			if err == nil {
				err = a.svc.SpeakerNetwork(r.Context(), c, id, net, add)
			}
			return map[string]any{"network_id": net}, err
		})
	}
	mux.HandleFunc("GET "+Prefix+"/bgp-speakers/{id}/get_advertised_routes", func(w http.ResponseWriter, r *http.Request) {
		routes, err := a.svc.AdvertisedRoutes(r.Context(), caller(r), pathID(r, "id"))
		out := []map[string]string{}
		for _, rt := range routes {
			out = append(out, map[string]string{"destination": rt.Destination.String(), "next_hop": rt.NextHop.String()})
		}
		a.reply(w, r, err, http.StatusOK, map[string]any{"advertised_routes": out})
	})
	mux.HandleFunc("GET "+Prefix+"/bgp-speakers/{id}/bgp-dragents", func(w http.ResponseWriter, r *http.Request) {
		agents, err := a.svc.SpeakerAgents(r.Context(), caller(r), pathID(r, "id"))
		a.reply(w, r, err, http.StatusOK, map[string]any{"agents": viewAgents(agents)})
	})

	base := Prefix + "/agents"
	mux.HandleFunc("GET "+base, func(w http.ResponseWriter, r *http.Request) {
		c := caller(r)
		lq, err := parseList(r, agentAttrs, c)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		// agent_type compares case-insensitively, as Neutron's MySQL
		// collation makes it ("BGP Dynamic Routing Agent").
		types := lq.filters["agent_type"]
		delete(lq.filters, "agent_type")
		agents, err := a.svc.Agents(r.Context(), c)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		items := []map[string]any{}
		for _, m := range viewAgents(agents) {
			ok := len(types) == 0
			for _, t := range types {
				ok = ok || strings.EqualFold(t, m["agent_type"].(string))
			}
			if ok && lq.matches(m) {
				items = append(items, m)
			}
		}
		a.writeCollection(w, r, "agents", items, lq, nil)
	})
	mux.HandleFunc("GET "+base+"/{id}", func(w http.ResponseWriter, r *http.Request) {
		ag, err := a.svc.GetAgent(r.Context(), caller(r), pathID(r, "id"))
		a.replyAgent(w, r, ag, err)
	})
	mux.HandleFunc("PUT "+base+"/{id}", func(w http.ResponseWriter, r *http.Request) {
		c := caller(r)
		b, err := readBody(r, "agent")
		if err == nil {
			err = agentAttrs.check(b, false, c, "agent")
		}
		var req neutron.AgentRequest
		if err == nil {
			req.AdminStateUp, err = b.optBool("admin_state_up")
		}
		if err == nil {
			req.Description, err = b.optStr("description", 255)
		}
		var ag *neutron.Agent
		if err == nil {
			ag, err = a.svc.UpdateAgent(r.Context(), c, pathID(r, "id"), req)
		}
		a.replyAgent(w, r, ag, err)
	})
	mux.HandleFunc("DELETE "+base+"/{id}", func(w http.ResponseWriter, r *http.Request) {
		a.done(w, r, a.svc.DeleteAgent(r.Context(), caller(r), pathID(r, "id")), http.StatusNoContent)
	})
	mux.HandleFunc("GET "+base+"/{id}/bgp-drinstances", func(w http.ResponseWriter, r *http.Request) {
		ag, err := a.svc.GetAgent(r.Context(), caller(r), pathID(r, "id"))
		var speakers []map[string]any
		if err == nil {
			err = a.read(r.Context(), caller(r), func(v *viewer) error {
				for _, id := range ag.Speakers {
					if o, err := v.Get(neutron.BGPSpeakerKind, id); err == nil {
						speakers = append(speakers, viewSpeaker(v, o.(*neutron.BGPSpeaker)))
					}
				}
				return nil
			})
		}
		a.reply(w, r, err, http.StatusOK, map[string]any{"bgp_speakers": nonNil(speakers)})
	})
	mux.HandleFunc("POST "+base+"/{id}/bgp-drinstances", func(w http.ResponseWriter, r *http.Request) {
		doc, err := readJSON(r)
		var speaker string
		if err == nil {
			speaker, _, err = Body(doc).uuid("bgp_speaker_id")
		}
		if err == nil {
			err = a.svc.ScheduleSpeaker(r.Context(), caller(r), pathID(r, "id"), speaker)
		}
		a.reply(w, r, err, http.StatusCreated, map[string]any{})
	})
	mux.HandleFunc("DELETE "+base+"/{id}/bgp-drinstances/{speaker}", func(w http.ResponseWriter, r *http.Request) {
		a.done(w, r, a.svc.UnscheduleSpeaker(r.Context(), caller(r), pathID(r, "id"), pathID(r, "speaker")), http.StatusNoContent)
	})
}

var agentAttrs = attrs{"id": {}, "agent_type": {}, "binary": {}, "topic": {}, "host": {}, "admin_state_up": {put: true},
	"alive": {}, "description": {put: true}, "configurations": {}, "created_at": {}, "started_at": {},
	"heartbeat_timestamp": {}, "availability_zone": {}, "resources_synced": {}}

func viewAgents(agents []*neutron.Agent) []map[string]any {
	out := []map[string]any{}
	for _, ag := range agents {
		out = append(out, viewAgent(ag))
	}
	return out
}

func viewAgent(ag *neutron.Agent) map[string]any {
	conf := map[string]any{"physical_networks": nonNil(ag.Host.PhysicalNetworks)}
	if ag.Type == neutron.AgentTypeBGP {
		conf = map[string]any{"bgp_speakers": len(ag.Speakers)}
	}
	beat := ""
	if ag.Alive {
		beat = time.Now().UTC().Format("2006-01-02 15:04:05")
	}
	return map[string]any{"id": ag.ID, "agent_type": ag.Type, "binary": ag.Binary, "topic": ag.Topic, "host": ag.Host.Name,
		"admin_state_up": ag.Settings.AdminStateUp, "alive": ag.Alive, "description": ag.Settings.Description, "configurations": conf,
		"created_at": "", "started_at": "", "heartbeat_timestamp": beat, "availability_zone": nil, "resources_synced": nil}
}

func (a *API) replyAgent(w http.ResponseWriter, r *http.Request, ag *neutron.Agent, err error) {
	var doc any
	if err == nil {
		doc = map[string]any{"agent": project(viewAgent(ag), fields(r))}
	}
	a.reply(w, r, err, http.StatusOK, doc)
}
