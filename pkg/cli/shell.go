package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/chzyer/readline"
	"github.com/google/shlex"
)

// RunScript runs commands from r, one per line (a script or a pipe), and
// stops at the first failure, which it reports on errOut and returns.
// Blank lines and # comments are skipped; exit and quit stop early.
func (e *Engine) RunScript(ctx context.Context, r io.Reader, errOut io.Writer) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "exit" || line == "quit" {
			return nil
		}
		if line == "help" {
			fmt.Fprint(e.Out, Help)
			continue
		}
		if err := e.Run(ctx, line); err != nil {
			fmt.Fprintln(errOut, err)
			return err
		}
	}
	return sc.Err()
}

// Interactive runs the nagare> prompt until exit, quit or Ctrl-D, with
// history in histFile and tab completion of verbs, types, fields, values
// and aliases. Failed commands are reported and the prompt continues.
func (e *Engine) Interactive(ctx context.Context, histFile string) error {
	rl, err := readline.NewEx(&readline.Config{
		Prompt:            "nagare> ",
		HistoryFile:       histFile,
		HistorySearchFold: true,
		AutoComplete:      &completer{e: e, ctx: ctx},
		InterruptPrompt:   "^C",
		EOFPrompt:         "exit",
	})
	if err != nil {
		return err
	}
	defer rl.Close()
	out, errOut := e.Out, rl.Stderr()
	e.Out = rl.Stdout()
	defer func() { e.Out = out }()
	for {
		line, err := rl.Readline()
		if errors.Is(err, readline.ErrInterrupt) {
			continue // Ctrl-C abandons the line, as in a shell
		}
		if err != nil {
			return nil // io.EOF: Ctrl-D
		}
		switch strings.TrimSpace(line) {
		case "exit", "quit":
			return nil
		case "help", "?":
			fmt.Fprint(e.Out, Help)
			continue
		}
		if err := e.Run(ctx, line); err != nil {
			fmt.Fprintln(errOut, err)
		}
	}
}

// Help is the grammar in brief.
const Help = `Commands (verbs may come first, after the object, or after the child type):
  list TYPE [FIELD VALUE…]          list bridge · list router name edge
  OBJ list CHILD · OBJ CHILD list    router router0 list port · router router0 route list
  show OBJ [FIELD] · OBJ show        show router router0 · router router0 show id
  create TYPE FIELD VALUE…           create bridge name tenant-a
  OBJ add CHILD FIELD VALUE…         bridge bridge0 add port · host host0 binding add interface eth1 port bridge0:port0
  OBJ set FIELD VALUE…               bridge bridge0 port port0 set peer router0:port0
  OBJ clear FIELD…                   router router0 clear infilter
  delete OBJ · OBJ delete [CHILD ID] router router0 delete route route0
  describe [TYPE|OBJ]                fields, values and children of a type
  trace port PORT src IP dst IP …    what the simulation does with a packet; nothing is sent:
                                     trace port bridge0:port1 src 10.0.1.11 dst 10.0.2.12 proto tcp dst-port 22
                                     (describe trace for ttl, length, df, src-mac, dst-mac, vlan, arp, host…)
  host HOST show datapath            the datapath as the host's agent reports it (mm-dpctl)
  host HOST list flow                its flows, one per line
  router ROUTER list nat             its NAT translations on every live host (Pro, Inside global,
  show ip nat translations [router ROUTER]    Inside local, Outside local, Outside global, State, TTL, Host)
Stateful services (describe rule, describe pool, describe vip … give every field):
  NAT       chain chain0 add rule dst 10.81.14.201 proto 6 dst-port 80 type dnat action accept target 172.16.20.100:80
            chain chain0 add rule dst 10.81.14.201 type rev_snat action accept
            chain chain1 add rule src 172.16.20.0/24 out-ports router0:port0 type snat action accept target 10.81.14.201
            chain chain1 add rule src 172.16.20.0/24 type rev_dnat action accept
            router router0 set infilter chain0 outfilter chain1   (targets: IP[-IP][:PORT[-PORT]],…)
  security  chain chain2 add rule flow return-flow type accept · add rule ct-state established type accept
  groups    chain chain2 add rule port-group pgroup0 proto 6 dst-port 22 type accept
            chain chain2 add rule ip-address-group-src ipg0 type accept · add rule ct-state !established type reject
            create port-group name web stateful true · port-group pgroup0 add member port bridge0:port1
            create ip-address-group name web · ip-address-group ipg0 add address address 172.16.20.100
  load      create health-monitor type http delay 1 timeout 1 max-retries 2 url-path /
  balancer  create load-balancer name lb · load-balancer lb0 add pool lb-method round_robin health-monitor hm0
            pool lb0:pool0 add member address 172.16.20.100 port 80 weight 2
            load-balancer lb0 add vip address 10.81.14.202 port 80 pool lb0:pool0 persistence source_ip
            router router0 set load-balancer lb0
OBJ is a path of TYPE ID steps: router router0 port port0. ID is an alias (router0, the
index among siblings in creation order; deleting renumbers later siblings), a UUID, or a
composed alias (router0:port0). Id-less objects are named by a field: bridge bridge0 dhcp
subnet 10.0.0.0/24. Lists are comma-separated; ! negates a rule condition (src !10.0.0.0/8).
`

// completer offers the words the parser would accept at the cursor.
type completer struct {
	e   *Engine
	ctx context.Context
}

// Do implements readline.AutoCompleter.
func (c *completer) Do(line []rune, pos int) ([][]rune, int) {
	head := string(line[:pos])
	partial, cands := c.e.Complete(c.ctx, head)
	out := make([][]rune, 0, len(cands))
	for _, s := range cands {
		out = append(out, []rune(s[len(partial):]+" "))
	}
	return out, len([]rune(partial))
}

// Complete returns the word being typed at the end of head and the words
// that may replace it, sorted.
func (e *Engine) Complete(ctx context.Context, head string) (partial string, cands []string) {
	words, err := shlex.Split(head)
	if err != nil {
		words = strings.Fields(head)
	}
	if len(words) > 0 && !strings.HasSuffix(head, " ") {
		partial, words = words[len(words)-1], words[:len(words)-1]
	}
	p := &parser{words: words, offer: &offers{}}
	_, _ = p.command()
	all := p.offer.words
	for _, a := range p.offer.aliases {
		all = append(all, e.aliasCandidates(ctx, a)...)
	}
	for _, w := range all {
		if strings.HasPrefix(w, partial) && !slices.Contains(cands, w) {
			cands = append(cands, w)
		}
	}
	slices.Sort(cands)
	return partial, cands
}

// aliasCandidates asks the server for the aliases an offer stands for;
// completion is best effort, so failures offer nothing.
func (e *Engine) aliasCandidates(ctx context.Context, a aliasOffer) []string {
	if e.API == nil {
		return nil
	}
	s := newSession(ctx, e.API)
	var objs []*object
	var err error
	short := false
	if a.ref {
		if a.row.Kind == nil {
			return nil
		}
		objs, err = s.all(a.row)
	} else {
		var path []*object
		if path, err = s.resolvePath(a.path); err != nil {
			return nil
		}
		if len(path) == 0 {
			objs, err = s.all(a.row)
		} else {
			objs, err = s.children(a.row, path[len(path)-1])
			short = true
		}
	}
	if err != nil {
		return nil
	}
	var out []string
	for _, o := range objs {
		name, err := s.alias(o)
		if short {
			name, err = s.shortAlias(o)
		}
		if err == nil {
			out = append(out, name)
		}
	}
	return out
}
