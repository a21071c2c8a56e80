package slowpath

import (
	"net/netip"
	"sync"
	"time"

	"github.com/nagare/nagare/pkg/packet"
)

// parking holds packets waiting for a next hop's ARP/ND answer, bounded in
// count and time (MidoNet's waiting room: 3 s).
type parking struct {
	mu    sync.Mutex
	items map[parkKey][]parked
	total int
}

type parkKey struct {
	router string
	ip     netip.Addr
}

type parked struct {
	inPort int32
	portID string
	frame  []byte
	at     time.Time
}

const (
	parkTimeout  = 3 * time.Second
	parkPerKey   = 16
	parkTotalMax = 4096
)

func newParking() *parking { return &parking{items: map[parkKey][]parked{}} }

func (p *parking) add(router string, ip netip.Addr, inPort int32, portID string, frame []byte, now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := parkKey{router, ip}
	list := p.items[k]
	// Drop expired ones first, so a dead next hop cannot fill the lot.
	for len(list) > 0 && now.Sub(list[0].at) > parkTimeout {
		list = list[1:]
		p.total--
	}
	if len(list) >= parkPerKey || p.total >= parkTotalMax {
		p.items[k] = list
		return false
	}
	p.items[k] = append(list, parked{inPort, portID, append([]byte(nil), frame...), now})
	p.total++
	return true
}

func (p *parking) take(router string, ip netip.Addr, now time.Time) []parked {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := parkKey{router, ip}
	list := p.items[k]
	delete(p.items, k)
	p.total -= len(list)
	out := list[:0]
	for _, it := range list {
		if now.Sub(it.at) <= parkTimeout {
			out = append(out, it)
		}
	}
	return out
}

// ReleaseParked simulates again the packets that waited for router's
// neighbor ip, now resolved (here, or on another host and replicated).
func (h *Handler) ReleaseParked(router string, ip netip.Addr) {
	list := h.park.take(router, ip, time.Now())
	if len(list) == 0 {
		return
	}
	v := h.view.Load()
	w := h.getWorker(v)
	defer h.workers.Put(w)
	for _, it := range list {
		w.pkt.Decode(it.frame)
		if w.pkt.Drop != packet.DropNone {
			continue
		}
		h.simulate(v, w, it.inPort, it.portID, &w.pkt, it.frame, nil, false)
	}
}
