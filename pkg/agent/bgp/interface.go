package bgp

import (
	"context"
	"log/slog"
	"net/netip"
	"time"
)

// Speaker is one BGP speaker: the sessions of one uplink port with its
// peers, from the port's address. The GoBGP-backed implementation lives
// in pkg/agent/bgp/gobgp; the controller (Controller) speaks only to
// this interface.
type Speaker interface {
	// Start brings the speaker up with its configuration; it fails if the
	// listener cannot be opened. Events arrive on the Events given to
	// the factory from then until Stop.
	Start(ctx context.Context) error
	// Stop ends every session (a Cease to each peer) and the speaker.
	Stop()

	// AddPeer starts a session with a peer.
	AddPeer(ctx context.Context, p PeerConfig) error
	// UpdatePeer changes a peer's configuration; the session is reset
	// when what changed needs it.
	UpdatePeer(ctx context.Context, p PeerConfig) error
	// RemovePeer ends a session and forgets the peer.
	RemovePeer(ctx context.Context, addr netip.Addr) error
	// EnablePeer lets a peer that was shut down (for announcing too many
	// prefixes) connect again.
	EnablePeer(ctx context.Context, addr netip.Addr) error
	// ResetPeer ends an established session (a Cease), forgetting what
	// the peer announced; it is tried again at once. A session that is
	// not established is left alone. BFD down resets the session.
	ResetPeer(ctx context.Context, addr netip.Addr) error
	// Peers reports every session's state and counters.
	Peers(ctx context.Context) ([]PeerStatus, error)

	// Advertise announces prefixes to every peer, with this speaker's
	// address as next hop. Announcing a prefix twice is harmless.
	Advertise(ctx context.Context, prefixes []netip.Prefix) error
	// Withdraw withdraws announced prefixes; unknown ones are ignored.
	Withdraw(ctx context.Context, prefixes []netip.Prefix) error
}

// Events receives what a speaker learns. Calls come from the speaker's
// goroutines, one at a time and in order; they must not block for long
// (hand the work to a goroutine of the receiver's).
type Events interface {
	// PeerChanged reports a session's new state.
	PeerChanged(st PeerStatus)
	// BestPaths reports changed best paths: new or replaced routes, and
	// withdrawals (Route.Withdrawn).
	BestPaths(routes []Route)
}

// Factory makes a speaker.
type Factory func(cfg SpeakerConfig, ev Events) (Speaker, error)

// SpeakerConfig is a speaker's identity.
type SpeakerConfig struct {
	// ASN is the router's autonomous system.
	ASN uint32
	// RouterID is the BGP identifier (an IPv4 address, unique among the
	// speakers of the AS: the uplink port's address).
	RouterID netip.Addr
	// Address is the speaker's own (the port's address), the next hop
	// of what it announces. The speaker only connects to its peers and
	// never listens: see package gobgp on connection collisions.
	Address netip.Addr
	// Interface binds the speaker's sockets, listener and BFD to an
	// interface (SO_BINDTODEVICE), so its sessions leave by the uplink's
	// speaker interface whatever the host's routing table says.
	Interface string
	Log       *slog.Logger
}

// PeerConfig is one BGP neighbour.
type PeerConfig struct {
	Address netip.Addr
	ASN     uint32
	// Port is the peer's TCP port (default 179).
	Port uint16
	// LocalAddress is the address the session is opened from.
	LocalAddress netip.Addr
	// Interface binds the session's sockets and BFD (SO_BINDTODEVICE).
	Interface string
	KeepAlive time.Duration
	HoldTime  time.Duration
	// ConnectRetry is how often a connection is attempted.
	ConnectRetry time.Duration
	// MaxPrefixes shuts the session down when the peer announces more
	// (counted per address family); 0 is no limit.
	MaxPrefixes uint32
	// Password signs the session's segments (TCP MD5, RFC 2385); empty:
	// unsigned.
	Password string
}

// SessionState is a BGP session's FSM state (RFC 4271 §8).
type SessionState string

const (
	StateIdle        SessionState = "idle"
	StateConnect     SessionState = "connect"
	StateActive      SessionState = "active"
	StateOpenSent    SessionState = "opensent"
	StateOpenConfirm SessionState = "openconfirm"
	StateEstablished SessionState = "established"
)

// PeerStatus is a session as the speaker sees it.
type PeerStatus struct {
	Address netip.Addr
	ASN     uint32
	State   SessionState
	// Since is when the session was established; zero unless it is.
	Since time.Time
	// PrefixLimit says the peer was shut down for announcing more than
	// MaxPrefixes; it stays down until EnablePeer.
	PrefixLimit bool
	// Received counts the prefixes the peer announces now, Accepted those
	// that entered the table, Sent those announced to it.
	Received, Accepted, Sent uint32
	// Flaps counts the times the session went down.
	Flaps uint32
	// Reason says why the session last went down (empty if it never did).
	Reason string
}

// Route is a best path as a speaker reports it.
type Route struct {
	Prefix  netip.Prefix
	NextHop netip.Addr
	// Peer announced it.
	Peer netip.Addr
	// ASPath, first AS first.
	ASPath    []uint32
	Withdrawn bool
}
