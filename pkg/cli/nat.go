package cli

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/nagare/nagare/pkg/agentstatus"
)

// A router's NAT bindings on every live host, as their agents publish
// them, in the columns of Cisco's `show ip nat translations`:
//
//	router router0 list nat          (also: router router0 nat list, show ip nat translations router router0)
//	Pro  Inside global     Inside local      Outside local   Outside global  State        TTL  Host
//	tcp  10.81.14.201:80   172.16.20.100:80  192.0.2.9:5555  192.0.2.9:5555  established  118  host0
//
// For an SNAT the inside local address is the VM's, the inside global the
// router's; for a DNAT (outside to inside) the inside global is the public
// address the client dialled and the inside local the VM it reaches. TTL
// is the lifetime left in seconds. `show ip nat translations` without a
// router prints every router's table under a `router ALIAS` line.

var routerViews = []View{
	{Word: "nat", Path: "nat-translations", Render: natLines,
		Doc: "the router's NAT translations on every live host (router router0 list nat; show ip nat translations [router router0])"},
}

// natAnswer is the API's answer (api/native.NATTranslations).
type natAnswer struct {
	RouterID     string                       `json:"router_id"`
	Truncated    int                          `json:"truncated"`
	Translations []agentstatus.NATTranslation `json:"translations"`
}

var natHeader = []string{"Pro", "Inside global", "Inside local", "Outside local", "Outside global", "State", "TTL", "Host"}

// natLines prints the header and one aligned line per binding. The host,
// an id until printed, is last so that replacing it by its alias does not
// shift the columns.
func natLines(body []byte) ([]string, any, error) {
	var a natAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		return nil, nil, fmt.Errorf("the NAT translations are not what the server serves: %w", err)
	}
	rows := [][]string{natHeader}
	for _, t := range a.Translations {
		ttl := "-"
		if t.TTL >= 0 {
			ttl = strconv.FormatInt(t.TTL, 10)
		}
		rows = append(rows, []string{t.Protocol, t.InsideGlobal, t.InsideLocal, t.OutsideLocal, t.OutsideGlobal,
			orDash(t.State), ttl, orDash(t.HostID)})
	}
	width := make([]int, len(natHeader))
	for _, r := range rows {
		for i, c := range r {
			width[i] = max(width[i], len(c))
		}
	}
	out := make([]string, 0, len(rows)+1)
	for _, r := range rows {
		var b strings.Builder
		for i, c := range r {
			if i == len(r)-1 {
				b.WriteString(c)
				break
			}
			fmt.Fprintf(&b, "%-*s  ", width[i], c)
		}
		out = append(out, b.String())
	}
	if a.Truncated > 0 {
		out = append(out, fmt.Sprintf("(%d more bindings not published: hosts publish at most their first few thousand)", a.Truncated))
	}
	return out, json.RawMessage(body), nil
}

// natAll is `show ip nat translations` without a router: every router's
// table that has bindings, each under a `router ALIAS` line; -o json
// prints the list of the API's answers.
func (e *Engine) natAll(s *session, c *Command) error {
	routers, err := s.all(rowsByName["router"])
	if err != nil {
		return err
	}
	var (
		lines []string
		js    = []json.RawMessage{}
	)
	for _, r := range routers {
		b, err := s.api.Get(s.ctx, "/routers/"+r.id()+"/"+c.View.Path)
		if isNotFound(err) {
			continue // deleted meanwhile
		}
		if err != nil {
			return err
		}
		var a natAnswer
		if err := json.Unmarshal(b, &a); err != nil {
			return &InternalError{Err: fmt.Errorf("GET /routers/%s/%s: %w", r.id(), c.View.Path, err)}
		}
		if len(a.Translations) == 0 && a.Truncated == 0 {
			continue
		}
		js = append(js, json.RawMessage(b))
		more, _, err := natLines(b)
		if err != nil {
			return &InternalError{Err: err}
		}
		lines = append(lines, "router "+r.id())
		lines = append(lines, more...)
	}
	if e.JSON {
		return e.printJSON(js)
	}
	return e.printLines(s, lines)
}

// showIPNAT parses Cisco's `show ip nat translations [router OBJ]` (after
// "show"): the router's NAT view, or every router's when none is named.
func (p *parser) showIPNAT() (*Command, error) {
	p.i++ // "ip"
	for _, w := range []string{"nat", "translations"} {
		if p.eof(w) {
			return nil, ErrIncomplete
		}
		if p.words[p.i] != w {
			return nil, p.syntax(p.i, "show ip nat translations [router ROUTER]")
		}
		p.i++
	}
	router := rowsByName["router"]
	c := &Command{Verb: VerbShow, View: router.view("nat")}
	if p.eof(router.Word) {
		return c, nil
	}
	if p.words[p.i] != router.Word {
		return nil, p.syntax(p.i, "show ip nat translations [router ROUTER]")
	}
	path, err := p.pathFrom(nil, nil, modeValue)
	if err != nil {
		return nil, err
	}
	c.Path = path
	return p.end(c)
}
