package neutron

import (
	"context"
	"errors"
	"slices"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

// Agents (agent, bgp_dragent_scheduler): every host a nagare-agent
// registered shows as Neutron agents of the roles one nagare-agent plays:
// the L2 agent (bindings, the datapath, DHCP, metadata-free) and the BGP
// dynamic routing agent (BGP speakers are scheduled on it). They are
// derived from the native hosts: alive while the host's lease lives. Only
// what an operator sets (admin state, description) and the BGP speakers
// scheduled on an agent are stored.

// Agent types.
const (
	AgentTypeNagare = "Nagare agent"
	AgentTypeBGP    = "BGP dynamic routing agent"
)

// Agent is a Neutron agent of a host.
type Agent struct {
	ID, Type, Binary, Topic string
	Host                    *model.Host
	Alive                   bool
	Settings                *AgentSettings
	Speakers                []string // BGP speakers scheduled here
}

// AgentSettings are what an operator set on an agent.
type AgentSettings struct {
	model.Meta
	HostID       string `json:"host_id" nagare:"ref=host,ondelete=cascade,required"`
	AdminStateUp bool   `json:"admin_state_up"`
	Description  string `json:"description,omitempty"`
}

// SpeakerBinding schedules a BGP speaker on a BGP agent: its host's
// nagare-agent speaks for it.
type SpeakerBinding struct {
	model.Meta
	AgentID   string `json:"agent_id" nagare:"unique"`
	HostID    string `json:"host_id" nagare:"ref=host,ondelete=cascade,required"`
	SpeakerID string `json:"bgp_speaker_id" nagare:"ref=neutron-bgp-speaker,ondelete=cascade,required"`
}

var (
	AgentSettingsKind  = model.RegisterInternal("neutron-agent-settings", "neutron-agent-settings", "What an operator set on a Neutron agent.", &AgentSettings{}, nil)
	SpeakerBindingKind = model.RegisterInternal("neutron-bgp-speaker-binding", "neutron-bgp-speaker-bindings", "A BGP speaker scheduled on a BGP agent.", &SpeakerBinding{}, nil)
)

// agentTypes are the roles of a nagare-agent, as Neutron agents.
var agentTypes = []struct{ typ, topic string }{{AgentTypeNagare, "N/A"}, {AgentTypeBGP, "bgp_dragent"}}

func agentID(hostID, typ string) string { return DerivedID("agent", hostID, typ) }

// AgentRequest is what an update of an agent asks.
type AgentRequest struct {
	AdminStateUp *bool
	Description  *string
}

// Agents are the agents of the registered hosts (admins only).
func (s *Service) Agents(ctx context.Context, c *identity.Context) ([]*Agent, error) {
	if !c.IsAdmin() {
		return nil, PolicyNotAuthorized("get_agent")
	}
	alive, err := s.store.AliveHosts(ctx)
	if err != nil {
		return nil, err
	}
	var out []*Agent
	err = s.view(ctx, func(tx *nsdb.Tx) error {
		hosts, err := listOf[*model.Host](tx, "", "")
		if err != nil {
			return err
		}
		for _, h := range hosts {
			for _, t := range agentTypes {
				a, err := agentOf(tx, h, t.typ, t.topic, alive[h.ID])
				if err != nil {
					return err
				}
				out = append(out, a)
			}
		}
		return nil
	})
	return out, err
}

func agentOf(tx *nsdb.Tx, h *model.Host, typ, topic string, alive bool) (*Agent, error) {
	a := &Agent{ID: agentID(h.ID, typ), Type: typ, Binary: "nagare-agent", Topic: topic, Host: h, Alive: alive,
		Settings: &AgentSettings{AdminStateUp: true}}
	o, err := tx.Get(AgentSettingsKind, a.ID)
	switch {
	case err == nil:
		a.Settings = o.(*AgentSettings)
	case !errors.Is(err, model.ErrNotFound):
		return nil, err
	}
	if typ == AgentTypeBGP {
		bs, err := listOf[*SpeakerBinding](tx, "host_id", h.ID)
		if err != nil {
			return nil, err
		}
		for _, b := range bs {
			a.Speakers = append(a.Speakers, b.SpeakerID)
		}
	}
	return a, nil
}

// GetAgent reads an agent.
func (s *Service) GetAgent(ctx context.Context, c *identity.Context, id string) (*Agent, error) {
	all, err := s.Agents(ctx, c)
	if err != nil {
		return nil, err
	}
	if i := slices.IndexFunc(all, func(a *Agent) bool { return a.ID == id }); i >= 0 {
		return all[i], nil
	}
	return nil, NewError(NotFound, "AgentNotFound", "Agent %s could not be found.", id)
}

// UpdateAgent sets an agent's admin state or description.
func (s *Service) UpdateAgent(ctx context.Context, c *identity.Context, id string, r AgentRequest) (*Agent, error) {
	a, err := s.GetAgent(ctx, c, id)
	if err != nil {
		return nil, err
	}
	_, err = s.store.Update(ctx, func(tx *nsdb.Tx) error {
		st := *a.Settings
		st.ID, st.HostID = id, a.Host.ID
		set(&st.AdminStateUp, r.AdminStateUp)
		set(&st.Description, r.Description)
		if _, err := tx.Get(AgentSettingsKind, id); errors.Is(err, model.ErrNotFound) {
			_, err = tx.Create(&st)
			return err
		} else if err != nil {
			return err
		}
		return tx.Put(&st)
	})
	if err != nil {
		return nil, err
	}
	return s.GetAgent(ctx, c, id)
}

// DeleteAgent forgets the host of a dead agent (an alive agent registers
// again at once, so it is refused).
func (s *Service) DeleteAgent(ctx context.Context, c *identity.Context, id string) error {
	a, err := s.GetAgent(ctx, c, id)
	if err != nil {
		return err
	}
	if a.Alive {
		return inUse("AgentInUse", "Agent %s is alive: its host %s registers again; stop its nagare-agent first.", id, a.Host.Name)
	}
	_, err = s.store.Update(ctx, func(tx *nsdb.Tx) error { return tx.Delete(model.HostKind, a.Host.ID) })
	return err
}

// bgpAgent reads a BGP agent for scheduling.
func (s *Service) bgpAgent(ctx context.Context, c *identity.Context, id string) (*Agent, error) {
	a, err := s.GetAgent(ctx, c, id)
	var e *Error
	if errors.As(err, &e) && e.Class == NotFound || err == nil && (a.Type != AgentTypeBGP || !a.Settings.AdminStateUp) {
		return nil, NewError(NotFound, "DrAgentInvalid", "BgpDrAgent %s is invalid or has been disabled.", id)
	}
	return a, err
}

// ScheduleSpeaker schedules a BGP speaker on a BGP agent (the static
// scheduler: an agent hosts one speaker).
func (s *Service) ScheduleSpeaker(ctx context.Context, c *identity.Context, agent, speaker string) error {
	a, err := s.bgpAgent(ctx, c, agent)
	if err != nil {
		return err
	}
	_, err = s.store.Update(ctx, func(tx *nsdb.Tx) error {
		if _, err := get[*BGPSpeaker](tx, c, speaker); err != nil {
			return err
		}
		if owner, err := tx.UniqueOwner(SpeakerBindingKind, SpeakerBindingKind.Field("agent_id"), "", agent); err != nil {
			return err
		} else if owner != "" {
			return conflict("DrAgentAssociationError", "BgpDrAgent %s is already associated to a BGP speaker.", agent)
		}
		_, err := tx.Create(&SpeakerBinding{Meta: model.Meta{ID: DerivedID("speaker-binding", agent, speaker)}, AgentID: agent, HostID: a.Host.ID, SpeakerID: speaker})
		return err
	})
	return err
}

// UnscheduleSpeaker removes a BGP speaker from a BGP agent.
func (s *Service) UnscheduleSpeaker(ctx context.Context, c *identity.Context, agent, speaker string) error {
	if _, err := s.bgpAgent(ctx, c, agent); err != nil {
		return err
	}
	_, err := s.store.Update(ctx, func(tx *nsdb.Tx) error {
		err := tx.Delete(SpeakerBindingKind, DerivedID("speaker-binding", agent, speaker))
		if errors.Is(err, model.ErrNotFound) {
			return NewError(NotFound, "DrAgentNotHostingBgpSpeaker", "BGP speaker %s is not hosted by the BgpDrAgent %s.", speaker, agent)
		}
		return err
	})
	return err
}

// SpeakerAgents are the BGP agents a speaker is scheduled on.
func (s *Service) SpeakerAgents(ctx context.Context, c *identity.Context, speaker string) ([]*Agent, error) {
	if err := s.view(ctx, func(tx *nsdb.Tx) error { _, err := get[*BGPSpeaker](tx, c, speaker); return err }); err != nil {
		return nil, err
	}
	all, err := s.Agents(ctx, c)
	return slices.DeleteFunc(all, func(a *Agent) bool { return !slices.Contains(a.Speakers, speaker) }), err
}
