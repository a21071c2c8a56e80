package ui

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
	"github.com/nagare/nagare/pkg/sim"
)

// Details: what the side panel shows for a clicked object besides its
// fields — its chains with their rules (jumps followed), a router's
// routes, a host's bindings — read from the NSDB when asked.

// ChainView is a chain with its rules in evaluation order.
type ChainView struct {
	Role  string     `json:"role"` // "inbound filter", "pre-routing", "jump target", …
	ID    string     `json:"id"`
	Name  string     `json:"name,omitempty"`
	Rules []RuleView `json:"rules"`
}

// RuleView is one rule, described the way traces describe it.
type RuleView struct {
	ID       string `json:"id"`
	Position int    `json:"position"`
	Type     string `json:"type"`
	// Text is "rule 2 (proto 6 dst-port 22): drop", a trace step's words.
	Text        string `json:"text"`
	JumpChainID string `json:"jump_chain_id,omitempty"`
}

// Details is the answer of GET /ui/api/objects/{kind}/{id}.
type Details struct {
	Kind   string         `json:"kind"`
	Object model.Object   `json:"object"`
	Chains []ChainView    `json:"chains"`
	Routes []*model.Route `json:"routes,omitempty"`
}

// maxChains bounds the chains one answer follows through jumps.
const maxChains = 32

func (u *UI) details(w http.ResponseWriter, r *http.Request) {
	v, ok := u.viewer(w, r)
	if !ok {
		return
	}
	k := model.KindByName(r.PathValue("kind"))
	id := r.PathValue("id")
	if k == nil || !streamed[k] {
		writeError(w, http.StatusNotFound, fmt.Sprintf("the dashboard shows no %q objects", r.PathValue("kind")))
		return
	}
	o, ok := u.hub.lookup(v, k, id)
	if !ok {
		// The same answer whether it does not exist or is another
		// project's: a member learns nothing about what exists elsewhere.
		writeError(w, http.StatusNotFound, k.Name+" "+id+" does not exist")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	d := Details{Kind: k.Name, Object: o, Chains: []ChainView{}}
	var err error
	switch x := o.(type) {
	case *model.Bridge:
		d.Chains, err = u.chains(ctx, [][2]string{{"inbound filter", x.InboundFilterID}, {"outbound filter", x.OutboundFilterID}})
	case *model.Router:
		d.Chains, err = u.chains(ctx, [][2]string{{"pre-routing", x.InboundFilterID}, {"post-routing", x.OutboundFilterID}})
		if err == nil {
			d.Routes, err = u.routes(ctx, x.ID)
		}
	case *model.Port:
		roots := [][2]string{{"inbound filter", x.InboundFilterID}, {"outbound filter", x.OutboundFilterID}}
		// Port security names its groups' chains.
		for _, id := range x.EgressChainIDs {
			roots = append(roots, [2]string{"port security: egress", id})
		}
		for _, id := range x.IngressChainIDs {
			roots = append(roots, [2]string{"port security: ingress", id})
		}
		d.Chains, err = u.chains(ctx, roots)
	}
	if err != nil {
		u.log.Error("dashboard: reading details failed", "kind", k.Name, "id", id, "err", err)
		writeError(w, http.StatusServiceUnavailable, "cannot read the details: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, d)
}

// chains reads the named chains and, breadth first, the chains their rules
// jump to (each once, at most maxChains).
func (u *UI) chains(ctx context.Context, roots [][2]string) ([]ChainView, error) {
	out := []ChainView{}
	type item struct{ role, id string }
	var queue []item
	for _, r := range roots {
		if r[1] != "" {
			queue = append(queue, item{r[0], r[1]})
		}
	}
	seen := map[string]bool{}
	for len(queue) > 0 && len(out) < maxChains {
		it := queue[0]
		queue = queue[1:]
		if seen[it.id] {
			continue
		}
		seen[it.id] = true
		o, err := u.store.Get(ctx, model.ChainKind, it.id)
		if errors.Is(err, model.ErrNotFound) {
			continue // deleted between the mirror and this read
		}
		if err != nil {
			return nil, err
		}
		c := o.(*model.Chain)
		rules, _, err := u.store.List(ctx, model.RuleKind, "chain_id", c.ID)
		if err != nil {
			return nil, err
		}
		cv := ChainView{Role: it.role, ID: c.ID, Name: c.Name, Rules: []RuleView{}}
		byID := map[string]*model.Rule{}
		for _, ro := range rules {
			byID[ro.GetMeta().ID] = ro.(*model.Rule)
		}
		for i, rid := range c.RuleIDs {
			rl := byID[rid]
			if rl == nil {
				continue
			}
			cv.Rules = append(cv.Rules, ruleView(rl, i+1))
			if rl.JumpChainID != "" && !seen[rl.JumpChainID] {
				queue = append(queue, item{"jump target of " + chainLabel(c), rl.JumpChainID})
			}
		}
		out = append(out, cv)
	}
	return out, nil
}

func chainLabel(c *model.Chain) string {
	if c.Name != "" {
		return c.Name
	}
	return c.ID
}

// ruleView words a rule as a trace step does ("rule 2 (cond): type").
func ruleView(r *model.Rule, pos int) RuleView {
	typ := string(r.Type)
	switch {
	case r.Type == model.RuleJump:
		typ += " to " + r.JumpChainID
	case r.Type.IsNAT() && len(r.Targets) > 0:
		var ts []string
		for _, t := range r.Targets {
			ts = append(ts, t.String())
		}
		typ += " " + strings.Join(ts, ",")
	}
	return RuleView{ID: r.ID, Position: pos, Type: string(r.Type), JumpChainID: r.JumpChainID,
		Text: fmt.Sprintf("rule %d (%s): %s", pos, sim.DescribeRule(r), typ)}
}

// routes lists a router's routes, longest prefix first.
func (u *UI) routes(ctx context.Context, routerID string) ([]*model.Route, error) {
	objs, _, err := u.store.List(ctx, model.RouteKind, "router_id", routerID)
	if err != nil {
		return nil, err
	}
	rs := make([]*model.Route, 0, len(objs))
	for _, o := range objs {
		rs = append(rs, o.(*model.Route))
	}
	slices.SortStableFunc(rs, func(a, b *model.Route) int { return b.Dst.Bits() - a.Dst.Bits() })
	return rs, nil
}

// HostDatapath is the answer of GET /ui/api/hosts/{id}/datapath.
type HostDatapath struct {
	Host   model.Object          `json:"host"`
	Status *nsdb.DatapathStatus  `json:"status"` // null when no agent runs there
	Series Series                `json:"series"`
	NAT    []nsdb.NATTranslation `json:"nat_translations"`
	// NATTruncated counts bindings the host held but did not publish.
	NATTruncated int `json:"nat_truncated"`
}

func (u *UI) hostDatapath(w http.ResponseWriter, r *http.Request) {
	if !requireAdmin(w, r, "a host's datapath") {
		return
	}
	v, ok := u.viewer(w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	host, ok := u.hub.lookup(v, model.HostKind, id)
	if !ok {
		writeError(w, http.StatusNotFound, "host "+id+" does not exist")
		return
	}
	// Agents republish counters only every half minute unless asked: ask,
	// so that while this page polls its graphs get a sample per poll (the
	// answer arrives through the history's watch, for the next poll).
	if _, _, err := u.store.RequestDatapathStatus(r.Context(), id); err != nil && !errors.Is(err, model.ErrNotFound) {
		slog.Debug("ui: ask for a fresh datapath status", "host", id, "err", err)
	}
	series, st := u.hist.hostHistory(id)
	out := HostDatapath{Host: host, Status: st, Series: series, NAT: []nsdb.NATTranslation{}}
	all, err := u.store.ListNATTranslations(r.Context())
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "cannot read the NAT translations: "+err.Error())
		return
	}
	now := time.Now()
	for _, h := range all {
		if h.HostID != id {
			continue
		}
		out.NATTruncated += h.Truncated
		for _, t := range h.Translations {
			t.TTL = -1
			if !t.Expires.IsZero() {
				t.TTL = max(0, int64(t.Expires.Sub(now).Round(time.Second)/time.Second))
			}
			out.NAT = append(out.NAT, t)
		}
	}
	writeJSON(w, http.StatusOK, out)
}
